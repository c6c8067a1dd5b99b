package gateway

import (
	"context"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	gatewayv1 "github.com/kubecord/kubecord/gen/kubecord/gateway/v1"
	"github.com/kubecord/kubecord/services/gateway/internal/shard"
)

func protoState(st shard.ShardStatus) gatewayv1.Shard_State {
	switch st.State {
	case shard.StateIdle:
		return gatewayv1.Shard_STATE_WAITING
	case shard.StateConnecting, shard.StateWaiting:
		if st.Reconnects > 0 {
			return gatewayv1.Shard_STATE_RECONNECTING
		}
		return gatewayv1.Shard_STATE_WAITING
	case shard.StateIdentifying:
		return gatewayv1.Shard_STATE_IDENTIFYING
	case shard.StateResuming:
		return gatewayv1.Shard_STATE_RESUMING
	case shard.StateReady:
		return gatewayv1.Shard_STATE_READY
	case shard.StateStopped, shard.StateFailed:
		return gatewayv1.Shard_STATE_STOPPED
	}
	return gatewayv1.Shard_STATE_UNSPECIFIED
}

func (s *Server) shardProto(st shard.ShardStatus) *gatewayv1.Shard {
	wm := st.Seq
	if hw, ok := s.hub.Watermark(st.ID); ok {
		wm = min(wm, hw)
	}
	return &gatewayv1.Shard{
		ShardId:         uint32(st.ID),
		ShardCount:      uint32(s.shardCount.Load()),
		State:           protoState(st),
		Latency:         durationpb.New(st.Latency),
		LastSequence:    st.Seq,
		ResumeWatermark: wm,
		EventsPerSecond: st.EventsPerSecond,
		Reconnects:      uint64(max(st.Reconnects, 0)),
		SessionId:       st.SessionID,
		LastError:       st.LastError,
	}
}

// ListShards implements gatewayv1.GatewayServiceServer.
func (s *Server) ListShards(context.Context, *gatewayv1.ListShardsRequest) (*gatewayv1.ListShardsResponse, error) {
	resp := &gatewayv1.ListShardsResponse{GatewayId: s.cfg.GatewayID, ShardCount: uint32(s.shardCount.Load())}
	if m := s.manager.Load(); m != nil {
		for _, st := range m.Status() {
			resp.Shards = append(resp.Shards, s.shardProto(st))
		}
	}
	return resp, nil
}

// GetShard implements gatewayv1.GatewayServiceServer.
func (s *Server) GetShard(_ context.Context, req *gatewayv1.GetShardRequest) (*gatewayv1.GetShardResponse, error) {
	if m := s.manager.Load(); m != nil {
		for _, st := range m.Status() {
			if st.ID == int(req.GetShardId()) {
				return &gatewayv1.GetShardResponse{Shard: s.shardProto(st)}, nil
			}
		}
	}
	return nil, status.Errorf(codes.NotFound, "shard %d is not run by this gateway pod (%s); ListShards shows the ones it runs", req.GetShardId(), s.cfg.GatewayID)
}

// ListGroups implements gatewayv1.GatewayServiceServer.
func (s *Server) ListGroups(context.Context, *gatewayv1.ListGroupsRequest) (*gatewayv1.ListGroupsResponse, error) {
	resp := &gatewayv1.ListGroupsResponse{}
	for _, g := range s.hub.Groups() {
		pg := &gatewayv1.Group{
			Name:             g.Name,
			Buffered:         uint64(g.Buffered + g.InFlight),
			BufferedBytes:    uint64(g.BufferedBytes),
			OldestAge:        durationpb.New(g.OldestAge),
			Delivered:        g.Delivered + g.Redelivered,
			Acked:            g.Acked,
			Redelivered:      g.Redelivered,
			Lost:             g.Lost,
			RetriesExhausted: g.Exhausted,
			Rejected:         g.Rejected,
			MaxBuffered:      uint64(g.MaxBuffered),
			MaxBufferedBytes: uint64(g.MaxBufferedBytes),
		}
		for _, m := range g.Members {
			pg.Members = append(pg.Members, &gatewayv1.GroupMember{
				MemberId:    m.ID,
				InFlight:    uint32(m.InFlight),
				Credit:      uint32(max(m.MaxInFlight-m.InFlight, 0)),
				ConnectedAt: timestamppb.New(m.ConnectedAt),
				Peer:        m.Peer,
			})
		}
		resp.Groups = append(resp.Groups, pg)
	}
	return resp, nil
}

// collector exports shard and group figures at scrape time, from the same snapshots as the
// status RPCs, so the hot path keeps no metric of its own beyond a few atomic counters.
type collector struct {
	s *Server

	shardState, shardLatency, shardSeq, shardWatermark, shardRate, shardReconnects *prometheus.Desc
	received, decodeErrors, routeErrors, duplicates                                *prometheus.Desc
	groupMembers, groupBuffered, groupBytes, groupInFlight, groupAge               *prometheus.Desc
	groupDelivered, groupRedelivered, groupAcked, groupLost, groupRejected         *prometheus.Desc
	groupExhausted, sessionResets                                                  *prometheus.Desc
	shardCount, ownedShards, reshardTarget, reshardHeld                            *prometheus.Desc
}

func newCollector(s *Server) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("kubecord_gateway_"+name, help, labels, nil)
	}
	return &collector{
		s:                s,
		shardState:       d("shard_state", "1 for the shard's current state.", "shard", "state"),
		shardLatency:     d("shard_latency_seconds", "Last heartbeat round trip of the shard.", "shard"),
		shardSeq:         d("shard_sequence", "Last sequence received by the shard.", "shard"),
		shardWatermark:   d("shard_watermark", "Highest sequence every group has settled: the resume point.", "shard"),
		shardRate:        d("shard_events_per_second", "Dispatches per second received by the shard.", "shard"),
		shardReconnects:  d("shard_reconnects_total", "Reconnections of the shard since the pod started.", "shard"),
		received:         d("events_received_total", "Dispatches received from all shards."),
		decodeErrors:     d("event_decode_errors_total", "Dispatches whose payload did not decode (delivered raw)."),
		routeErrors:      d("event_route_errors_total", "Dispatches whose routing key was unreadable (routed by shard)."),
		duplicates:       d("events_duplicate_total", "Dispatches replayed by Discord after a resume and already held (not delivered twice)."),
		groupMembers:     d("group_members", "Live members of the group.", "group"),
		groupBuffered:    d("group_buffered_events", "Events waiting for a member.", "group"),
		groupBytes:       d("group_buffered_bytes", "Payload bytes waiting for a member.", "group"),
		groupInFlight:    d("group_in_flight_events", "Events delivered and not yet acked.", "group"),
		groupAge:         d("group_oldest_age_seconds", "Age of the oldest waiting event: the group's lag.", "group"),
		groupDelivered:   d("group_delivered_total", "First deliveries.", "group"),
		groupRedelivered: d("group_redelivered_total", "Redeliveries (flagged to the consumer).", "group"),
		groupAcked:       d("group_acked_total", "Acked deliveries.", "group"),
		groupLost:        d("group_lost_total", "Events dropped on buffer overflow or expiry (announced as gaps).", "group"),
		groupRejected:    d("group_rejected_total", "Deliveries nacked without requeue.", "group"),
		groupExhausted:   d("group_retries_exhausted_total", "Events dropped after --max-attempts deliveries without an ack (announced as gaps).", "group"),
		sessionResets:    d("session_resets_total", "Sessions replaced by a new one (not resumable): events Discord sent meanwhile are lost, announced as gaps."),
		shardCount:       d("shard_count", "The bot's active shard count."),
		ownedShards:      d("owned_shards", "Shards this pod runs (its leased share)."),
		reshardTarget:    d("reshard_target_shards", "Shard count of a reshard this pod is warming up; 0 when none."),
		reshardHeld:      d("reshard_held_events", "Events the new shard set holds until it goes live."),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.shardState, c.shardLatency, c.shardSeq, c.shardWatermark, c.shardRate, c.shardReconnects,
		c.received, c.decodeErrors, c.routeErrors, c.duplicates, c.groupMembers, c.groupBuffered, c.groupBytes, c.groupInFlight,
		c.groupAge, c.groupDelivered, c.groupRedelivered, c.groupAcked, c.groupLost, c.groupRejected,
		c.groupExhausted, c.sessionResets, c.shardCount, c.ownedShards, c.reshardTarget, c.reshardHeld} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	s := c.s
	gauge(c.shardCount, float64(s.shardCount.Load()))
	s.genMu.Lock()
	next := s.next
	s.genMu.Unlock()
	var target, held float64
	if next != nil {
		target, held = float64(next.count), float64(next.shadow.held())
	}
	gauge(c.reshardTarget, target)
	gauge(c.reshardHeld, held)
	if m := s.manager.Load(); m != nil {
		gauge(c.ownedShards, float64(len(m.ShardIDs())))
		for _, st := range m.Status() {
			id := strconv.Itoa(st.ID)
			gauge(c.shardState, 1, id, string(st.State))
			gauge(c.shardLatency, st.Latency.Seconds(), id)
			gauge(c.shardSeq, float64(st.Seq), id)
			gauge(c.shardWatermark, float64(s.shardProto(st).GetResumeWatermark()), id)
			gauge(c.shardRate, st.EventsPerSecond, id)
			counter(c.shardReconnects, float64(st.Reconnects), id)
		}
	}
	counter(c.received, float64(s.stats.received.Load()))
	counter(c.decodeErrors, float64(s.stats.decodeErrors.Load()))
	counter(c.routeErrors, float64(s.stats.routeErrors.Load()))
	counter(c.duplicates, float64(s.stats.duplicates.Load()))
	counter(c.sessionResets, float64(s.stats.sessionResets.Load()))
	for _, g := range s.hub.Groups() {
		gauge(c.groupMembers, float64(len(g.Members)), g.Name)
		gauge(c.groupBuffered, float64(g.Buffered), g.Name)
		gauge(c.groupBytes, float64(g.BufferedBytes), g.Name)
		gauge(c.groupInFlight, float64(g.InFlight), g.Name)
		gauge(c.groupAge, g.OldestAge.Seconds(), g.Name)
		counter(c.groupDelivered, float64(g.Delivered), g.Name)
		counter(c.groupRedelivered, float64(g.Redelivered), g.Name)
		counter(c.groupAcked, float64(g.Acked), g.Name)
		counter(c.groupLost, float64(g.Lost), g.Name)
		counter(c.groupRejected, float64(g.Rejected), g.Name)
		counter(c.groupExhausted, float64(g.Exhausted), g.Name)
	}
}
