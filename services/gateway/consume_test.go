package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	discordv1 "github.com/kubecord/kubecord/gen/kubecord/discord/v1"
	gatewayv1 "github.com/kubecord/kubecord/gen/kubecord/gateway/v1"
	"github.com/kubecord/kubecord/services/gateway/internal/delivery"
	"github.com/kubecord/kubecord/services/gateway/internal/shard"
)

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// serveLoopback serves s's GatewayService on a real loopback socket and returns a client.
func serveLoopback(t testing.TB, s *Server) gatewayv1.GatewayServiceClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	if err := s.Register(g, prometheus.NewRegistry()); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = g.Serve(lis) // returns when Stop is called below
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		s.hub.Close() // ends the streams so Stop does not wait for them
		g.Stop()
		<-done
	})
	return gatewayv1.NewGatewayServiceClient(conn)
}

func newTestServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.Token == "" {
		cfg.Token = "test-token"
	}
	s, err := New(cfg, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func messageCreate(shardID int, seq uint64, guild uint64) shard.Dispatch {
	d := fmt.Sprintf(`{"id":"%d","channel_id":"%d","guild_id":"%d","content":"hello %d","author":{"id":"80351110224678912","username":"nelly"},"timestamp":"2026-11-22T10:00:00.000000+00:00","tts":false,"mention_everyone":false,"mentions":[],"mention_roles":[],"attachments":[],"embeds":[],"pinned":false,"type":0}`,
		1100000000000000000+seq, 1200000000000000000+guild, guild, seq)
	return shard.Dispatch{ShardID: shardID, ShardCount: 1, Seq: seq, Name: "MESSAGE_CREATE", Data: []byte(d), ReceivedAt: time.Now()}
}

// consumer is a test member: it collects deliveries and acks them unless told not to.
type consumer struct {
	t      *testing.T
	stream gatewayv1.GatewayService_ConsumeClient
	cancel context.CancelFunc
	sub    *gatewayv1.Subscribed

	mu      sync.Mutex
	got     []*gatewayv1.Delivery
	gaps    []*gatewayv1.Gap
	batches []int // deliveries per DeliveryBatch message received
	done    chan error
}

func subscribe(t *testing.T, c gatewayv1.GatewayServiceClient, sub *gatewayv1.Subscribe, ack bool) *consumer {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	stream, err := c.Consume(ctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := stream.Send(&gatewayv1.ConsumeRequest{Kind: &gatewayv1.ConsumeRequest_Subscribe{Subscribe: sub}}); err != nil {
		cancel()
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		cancel()
		t.Fatalf("subscribe %s/%s: %v", sub.GetGroup(), sub.GetMemberId(), err)
	}
	cs := &consumer{t: t, stream: stream, cancel: cancel, sub: first.GetSubscribed(), done: make(chan error, 1)}
	if cs.sub == nil {
		cancel()
		t.Fatalf("first response is %v, want Subscribed", first)
	}
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				cs.done <- err
				return
			}
			var ds []*gatewayv1.Delivery
			switch k := resp.GetKind().(type) {
			case *gatewayv1.ConsumeResponse_Delivery:
				ds = []*gatewayv1.Delivery{k.Delivery}
			case *gatewayv1.ConsumeResponse_DeliveryBatch:
				ds = k.DeliveryBatch.GetDeliveries()
				cs.mu.Lock()
				cs.batches = append(cs.batches, len(ds))
				cs.mu.Unlock()
				if len(ds) < 2 {
					cs.t.Errorf("a DeliveryBatch of %d deliveries; lone deliveries come as Delivery", len(ds))
				}
			case *gatewayv1.ConsumeResponse_Gap:
				cs.mu.Lock()
				cs.gaps = append(cs.gaps, k.Gap)
				cs.mu.Unlock()
			}
			if len(ds) == 0 {
				continue
			}
			cs.mu.Lock()
			cs.got = append(cs.got, ds...)
			cs.mu.Unlock()
			if ack {
				ids := make([]uint64, 0, len(ds))
				for _, d := range ds {
					ids = append(ids, d.GetDeliveryId())
				}
				if err := stream.Send(&gatewayv1.ConsumeRequest{Kind: &gatewayv1.ConsumeRequest_Ack{Ack: &gatewayv1.Ack{DeliveryIds: ids}}}); err != nil {
					cs.done <- err
					return
				}
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-cs.done; err != nil {
			t.Logf("stream of %s ended: %v", cs.sub.GetMemberId(), err)
		}
	})
	return cs
}

func (c *consumer) deliveries() []*gatewayv1.Delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*gatewayv1.Delivery(nil), c.got...)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // generous: the test machine is shared
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond) // polling interval, bounded by the deadline
	}
}

func TestConsumeFanOutAndLoadBalance(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, Config{})
	client := serveLoopback(t, s)
	a1 := subscribe(t, client, &gatewayv1.Subscribe{Group: "bot", MemberId: "a1", MaxInFlight: 50}, true)
	a2 := subscribe(t, client, &gatewayv1.Subscribe{Group: "bot", MemberId: "a2", MaxInFlight: 50}, true)
	st := subscribe(t, client, &gatewayv1.Subscribe{Group: "state", MaxInFlight: 10, RawOnly: true}, true)
	if st.sub.GetMemberId() == "" || st.sub.GetGroup() != "state" || st.sub.GetHeartbeatInterval().AsDuration() != DefaultStreamHeartbeat {
		t.Errorf("Subscribed = %v", st.sub)
	}
	const n = 300
	for i := 1; i <= n; i++ {
		s.HandleDispatch(messageCreate(0, uint64(i), uint64(900000000000000000+i%12)))
	}
	waitFor(t, "every group to ack everything", func() bool {
		wm, _ := s.hub.Watermark(0)
		return wm == n
	})
	check := func(group string, ds []*gatewayv1.Delivery) {
		seen := map[uint64]int{}
		for _, d := range ds {
			seen[d.GetId().GetSequence()]++
			if d.GetRedelivered() || d.GetAttempt() != 1 {
				t.Errorf("%s: seq %d redelivered=%v attempt=%d", group, d.GetId().GetSequence(), d.GetRedelivered(), d.GetAttempt())
			}
			ev := d.GetEvent()
			if ev.GetSequence() != d.GetId().GetSequence() || ev.GetName() != "MESSAGE_CREATE" || len(ev.GetRaw()) == 0 || ev.GetGuildId() == 0 {
				t.Errorf("%s: event envelope %v", group, ev)
			}
			if ev.GetRoutingKey().GetKind() != discordv1.RoutingKey_KIND_GUILD || ev.GetRoutingKey().GetId() != ev.GetGuildId() {
				t.Errorf("%s: routing key %v, want the guild", group, ev.GetRoutingKey())
			}
		}
		for i := 1; i <= n; i++ {
			if seen[uint64(i)] != 1 {
				t.Errorf("%s: seq %d delivered %d times, want 1", group, i, seen[uint64(i)])
			}
		}
	}
	bot := append(a1.deliveries(), a2.deliveries()...)
	check("bot", bot)
	check("state", st.deliveries())
	if len(a1.deliveries()) == 0 || len(a2.deliveries()) == 0 {
		t.Errorf("load not balanced: a1 %d, a2 %d", len(a1.deliveries()), len(a2.deliveries()))
	}
	owner := map[uint64]string{}
	for name, c := range map[string]*consumer{"a1": a1, "a2": a2} {
		for _, d := range c.deliveries() {
			g := d.GetEvent().GetGuildId()
			if o, ok := owner[g]; ok && o != name {
				t.Errorf("guild %d went to %s and %s", g, o, name)
			}
			owner[g] = name
		}
	}
	if mc := bot[0].GetEvent().GetMessageCreate(); mc == nil || !strings.HasPrefix(mc.GetMessage().GetContent(), "hello") {
		t.Errorf("typed payload missing: %v", bot[0].GetEvent().GetPayload())
	}
	if st.deliveries()[0].GetEvent().GetPayload() != nil {
		t.Errorf("raw_only member got a typed payload")
	}

	groups, err := client.ListGroups(t.Context(), &gatewayv1.ListGroupsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(groups.GetGroups()) != 2 || groups.GetGroups()[0].GetName() != "bot" || len(groups.GetGroups()[0].GetMembers()) != 2 ||
		groups.GetGroups()[0].GetAcked() != n || groups.GetGroups()[0].GetMembers()[0].GetPeer() == "" {
		t.Errorf("ListGroups = %v", groups)
	}
}

func TestConsumeRedeliversWhenAMemberDisconnects(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, Config{})
	client := serveLoopback(t, s)
	lazy := subscribe(t, client, &gatewayv1.Subscribe{Group: "bot", MemberId: "lazy", MaxInFlight: 5}, false)
	for i := 1; i <= 8; i++ {
		s.HandleDispatch(messageCreate(0, uint64(i), 900000000000000001))
	}
	waitFor(t, "the lazy member to hold its credit", func() bool { return len(lazy.deliveries()) == 5 })
	good := subscribe(t, client, &gatewayv1.Subscribe{Group: "bot", MemberId: "good", MaxInFlight: 5}, true)
	lazy.cancel()
	waitFor(t, "the good member to get everything", func() bool { return len(good.deliveries()) == 8 })
	for _, d := range good.deliveries() {
		seq := d.GetId().GetSequence()
		if want := seq <= 5; d.GetRedelivered() != want || (want && d.GetAttempt() != 2) {
			t.Errorf("seq %d: redelivered=%v attempt=%d, want redelivered=%v", seq, d.GetRedelivered(), d.GetAttempt(), want)
		}
	}
	waitFor(t, "the watermark", func() bool { wm, _ := s.hub.Watermark(0); return wm == 8 })
}

func TestConsumeErrors(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, Config{})
	client := serveLoopback(t, s)
	taken := subscribe(t, client, &gatewayv1.Subscribe{Group: "bot", MemberId: "taken", EventNames: []string{"MESSAGE_CREATE"}}, true)
	// A Subscribe with a live member's id takes over, as the contract says: a restarted worker
	// whose old stream is half-open must not be locked out until keepalive notices.
	subscribe(t, client, &gatewayv1.Subscribe{Group: "bot", MemberId: "taken", EventNames: []string{"MESSAGE_CREATE"}}, true)
	if err := <-taken.done; status.Code(err) != codes.Aborted {
		t.Errorf("the replaced stream ended with %v, want Aborted", err)
	}
	taken.done <- nil // for the cleanup
	tests := []struct {
		name  string
		first *gatewayv1.ConsumeRequest
		want  codes.Code
	}{
		{"ack first", &gatewayv1.ConsumeRequest{Kind: &gatewayv1.ConsumeRequest_Ack{Ack: &gatewayv1.Ack{}}}, codes.InvalidArgument},
		{"bad group", &gatewayv1.ConsumeRequest{Kind: &gatewayv1.ConsumeRequest_Subscribe{Subscribe: &gatewayv1.Subscribe{Group: "no spaces"}}}, codes.InvalidArgument},
		{"credit over cap", &gatewayv1.ConsumeRequest{Kind: &gatewayv1.ConsumeRequest_Subscribe{Subscribe: &gatewayv1.Subscribe{Group: "g", MaxInFlight: 1 << 30}}}, codes.InvalidArgument},
		{"filter conflict", &gatewayv1.ConsumeRequest{Kind: &gatewayv1.ConsumeRequest_Subscribe{Subscribe: &gatewayv1.Subscribe{Group: "bot"}}}, codes.FailedPrecondition},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stream, err := client.Consume(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(tc.first); err != nil {
				t.Fatal(err)
			}
			_, err = stream.Recv()
			if status.Code(err) != tc.want {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("second subscribe", func(t *testing.T) {
		t.Parallel()
		c := subscribe(t, client, &gatewayv1.Subscribe{Group: "other"}, true)
		if err := c.stream.Send(&gatewayv1.ConsumeRequest{Kind: &gatewayv1.ConsumeRequest_Subscribe{Subscribe: &gatewayv1.Subscribe{Group: "x"}}}); err != nil {
			t.Fatal(err)
		}
		if err := <-c.done; status.Code(err) != codes.InvalidArgument {
			t.Errorf("err = %v, want InvalidArgument", err)
		}
		c.done <- nil // for the cleanup
	})
}

func TestConsumeGapAndCredit(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, Config{Delivery: delivery.Config{MaxBufferedEvents: 3}})
	client := serveLoopback(t, s)
	c := subscribe(t, client, &gatewayv1.Subscribe{Group: "bot", MaxInFlight: 1}, false)
	s.HandleDispatch(messageCreate(0, 1, 900000000000000001))
	waitFor(t, "seq 1 in flight", func() bool { return len(c.deliveries()) == 1 })
	for i := 2; i <= 10; i++ {
		s.HandleDispatch(messageCreate(0, uint64(i), 900000000000000001))
	}
	// seq 1 in flight, 2..10 offered to a 3-event buffer: 2..7 lost, 8..10 kept. The loss
	// may be announced in several Gap messages if the stream sends one between drops.
	var lost, from, to uint64
	waitFor(t, "the gaps", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		lost, from, to = 0, ^uint64(0), 0
		for _, g := range c.gaps {
			if g.GetReason() != gatewayv1.Gap_REASON_BUFFER_OVERFLOW || g.GetGroup() != "bot" {
				t.Errorf("gap %v", g)
			}
			lost += g.GetLost()
			from = min(from, g.GetRanges()[0].GetFrom().GetSequence())
			to = max(to, g.GetRanges()[0].GetTo().GetSequence())
		}
		return lost >= 6 && len(c.got) == 1
	})
	if lost != 6 || from != 2 || to != 7 {
		t.Errorf("gaps announce %d lost in %d..%d, want 6 lost in 2..7", lost, from, to)
	}
	if err := c.stream.Send(&gatewayv1.ConsumeRequest{Kind: &gatewayv1.ConsumeRequest_Credit{Credit: &gatewayv1.Credit{Add: 9}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "more credit to deliver the rest", func() bool { return len(c.deliveries()) == 4 })
	var ids []uint64
	for _, d := range c.deliveries() {
		ids = append(ids, d.GetDeliveryId())
	}
	if err := c.stream.Send(&gatewayv1.ConsumeRequest{Kind: &gatewayv1.ConsumeRequest_Nack{Nack: &gatewayv1.Nack{DeliveryIds: ids[:1], Requeue: true}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the requeued delivery", func() bool { return len(c.deliveries()) == 5 })
	if d := c.deliveries()[4]; d.GetId().GetSequence() != 1 || !d.GetRedelivered() || d.GetAttempt() != 2 {
		t.Errorf("requeued delivery = %v", d)
	}
}

// TestConsumeRetriesExhausted nacks one event for requeue until the gateway gives up on it:
// the stream announces a RETRIES_EXHAUSTED gap naming it, ListGroups counts it, and the
// next event of the same guild is delivered.
func TestConsumeRetriesExhausted(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, Config{Delivery: delivery.Config{MaxAttempts: 3}})
	client := serveLoopback(t, s)
	c := subscribe(t, client, &gatewayv1.Subscribe{Group: "bot", MaxInFlight: 1}, false)
	const guild = 900000000000000001
	s.HandleDispatch(messageCreate(0, 1, guild))
	s.HandleDispatch(messageCreate(0, 2, guild))
	for attempt := 1; attempt <= 3; attempt++ {
		waitFor(t, fmt.Sprintf("attempt %d", attempt), func() bool { return len(c.deliveries()) == attempt })
		d := c.deliveries()[attempt-1]
		if d.GetId().GetSequence() != 1 || d.GetAttempt() != uint32(attempt) {
			t.Fatalf("delivery %d = %v, want seq 1 at attempt %d", attempt, d, attempt)
		}
		nack := &gatewayv1.Nack{DeliveryIds: []uint64{d.GetDeliveryId()}, Requeue: true, Reason: "handler failed"}
		if err := c.stream.Send(&gatewayv1.ConsumeRequest{Kind: &gatewayv1.ConsumeRequest_Nack{Nack: nack}}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "seq 2 after seq 1 was given up", func() bool { return len(c.deliveries()) == 4 })
	if d := c.deliveries()[3]; d.GetId().GetSequence() != 2 || d.GetAttempt() != 1 {
		t.Errorf("delivery after the poison event = %v, want seq 2", d)
	}
	c.mu.Lock()
	gaps := slices.Clone(c.gaps)
	c.mu.Unlock()
	if len(gaps) != 1 || gaps[0].GetReason() != gatewayv1.Gap_REASON_RETRIES_EXHAUSTED || gaps[0].GetLost() != 1 ||
		gaps[0].GetRanges()[0].GetFrom().GetSequence() != 1 || gaps[0].GetRanges()[0].GetTo().GetSequence() != 1 {
		t.Errorf("gaps = %v, want one RETRIES_EXHAUSTED gap for seq 1", gaps)
	}
	resp, err := client.ListGroups(t.Context(), &gatewayv1.ListGroupsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if g := resp.GetGroups()[0]; g.GetRetriesExhausted() != 1 || g.GetLost() != 0 {
		t.Errorf("group = %v, want retries_exhausted 1 and lost 0", g)
	}
}

func TestDeliveryFrame(t *testing.T) {
	t.Parallel()
	ev := &discordv1.Event{ShardId: 3, Sequence: 42, Name: "MESSAGE_CREATE", Raw: []byte(`{}`),
		Payload: &discordv1.Event_MessageCreate{MessageCreate: &discordv1.MessageCreate{Message: &discordv1.Message{Content: "hi"}}}}
	payload, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		d    delivery.Delivery
	}{
		{"first", delivery.Delivery{Tag: 7, Attempt: 1, Event: &delivery.Event{ID: delivery.EventID{Shard: 3, Seq: 42}}}},
		{"redelivered shard 0", delivery.Delivery{Tag: 1 << 40, Attempt: 3, Redelivered: true, Event: &delivery.Event{ID: delivery.EventID{Shard: 0, Seq: 1}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			frame := appendDeliveryFrame(nil, tc.d, payload)
			var got gatewayv1.ConsumeResponse
			if err := proto.Unmarshal(frame, &got); err != nil {
				t.Fatal(err)
			}
			want := &gatewayv1.ConsumeResponse{Kind: &gatewayv1.ConsumeResponse_Delivery{Delivery: &gatewayv1.Delivery{
				DeliveryId:  tc.d.Tag,
				Event:       ev,
				Id:          &discordv1.EventId{ShardId: uint32(tc.d.Event.ID.Shard), Sequence: tc.d.Event.ID.Seq},
				Redelivered: tc.d.Redelivered,
				Attempt:     tc.d.Attempt,
			}}}
			if !proto.Equal(&got, want) {
				t.Errorf("frame decodes to %v, want %v", &got, want)
			}
			if again, _ := proto.Marshal(want); len(again) != len(frame) {
				t.Errorf("frame is %d bytes, proto.Marshal gives %d", len(frame), len(again))
			}
		})
	}
	stripped := stripTypedPayload(payload)
	var raw discordv1.Event
	if err := proto.Unmarshal(stripped, &raw); err != nil {
		t.Fatal(err)
	}
	if raw.GetPayload() != nil || raw.GetSequence() != 42 || string(raw.GetRaw()) != "{}" {
		t.Errorf("stripped event = %v", &raw)
	}
	if got := stripTypedPayload([]byte{0xff}); string(got) != "\xff" {
		t.Errorf("malformed input not passed through: %x", got)
	}
}

func TestCommandsNeedShards(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, Config{})
	client := serveLoopback(t, s)
	ctx := t.Context()
	if _, err := client.UpdateVoiceState(ctx, &gatewayv1.UpdateVoiceStateRequest{GuildId: 1}); status.Code(err) != codes.Unavailable {
		t.Errorf("UpdateVoiceState before start: %v", err)
	}
	if _, err := client.UpdatePresence(ctx, &gatewayv1.UpdatePresenceRequest{Status: "online"}); status.Code(err) != codes.Unavailable {
		t.Errorf("UpdatePresence before start: %v", err)
	}
	if _, err := client.SendCommand(ctx, &gatewayv1.SendCommandRequest{Op: 2, Data: []byte("{}")}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("SendCommand identify: %v", err)
	}
	if _, err := client.GetShard(ctx, &gatewayv1.GetShardRequest{ShardId: 0}); status.Code(err) != codes.NotFound {
		t.Errorf("GetShard: %v", err)
	}
	q := ""
	badMembers := []*gatewayv1.RequestGuildMembersRequest{
		{GuildId: 1},
		{GuildId: 1, Query: &q, UserIds: []uint64{1}},
		{GuildId: 1, UserIds: make([]uint64, 101)},
		{GuildId: 1, Query: &q, Nonce: strings.Repeat("n", 33)},
	}
	for _, req := range badMembers {
		stream, err := client.RequestGuildMembers(ctx, req)
		if err == nil {
			_, err = stream.Recv()
		}
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("RequestGuildMembers(%v): %v, want InvalidArgument", req, err)
		}
	}
}

func TestMetricsCollector(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, Config{})
	reg := prometheus.NewRegistry()
	if err := reg.Register(newCollector(s)); err != nil {
		t.Fatal(err)
	}
	m, err := s.hub.Join(delivery.JoinRequest{Group: "bot", MaxInFlight: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	s.HandleDispatch(messageCreate(0, 1, 900000000000000001))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]float64{}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			v := mt.GetGauge().GetValue() + mt.GetCounter().GetValue()
			found[mf.GetName()] += v
		}
	}
	for name, want := range map[string]float64{
		"kubecord_gateway_events_received_total": 1,
		"kubecord_gateway_group_buffered_events": 1,
		"kubecord_gateway_group_members":         1,
	} {
		if found[name] != want {
			t.Errorf("%s = %v, want %v", name, found[name], want)
		}
	}
}

// TestConsumeBatches checks DeliveryBatch over a real stream: members that ask for batches
// get runs of ready deliveries together (bounded by max_batch, the server's cap and the
// byte bound), lone deliveries and members that did not ask get Delivery, gaps come before
// the batch that follows them, and every event arrives once, in order.
func TestConsumeBatches(t *testing.T) {
	t.Parallel()
	big := func(seq uint64) shard.Dispatch {
		d := messageCreate(0, seq, 900000000000000001)
		d.Data = []byte(strings.Replace(string(d.Data), `"content":"hello`, `"content":"`+strings.Repeat("x", 200_000), 1))
		return d
	}
	tests := []struct {
		name        string
		maxBatch    uint32
		credit      uint32
		rawOnly     bool
		buffer      int // group buffer bound; 0 = default
		events      int
		event       func(seq uint64) shard.Dispatch
		wantBatches []int
		wantSingles int
		wantLost    uint64
	}{
		{name: "no batches asked", maxBatch: 0, credit: 100, events: 40, wantSingles: 40},
		{name: "max_batch 1", maxBatch: 1, credit: 100, events: 10, wantSingles: 10},
		{name: "runs of 16", maxBatch: 16, credit: 100, events: 40, wantBatches: []int{16, 16, 8}},
		{name: "raw only", maxBatch: 16, credit: 100, rawOnly: true, events: 20, wantBatches: []int{16, 4}},
		{name: "capped at 256", maxBatch: 5000, credit: 256, events: 300, wantBatches: []int{256, 44}},
		{name: "lone delivery", maxBatch: 16, credit: 100, events: 1, wantSingles: 1},
		{name: "byte bound", maxBatch: 16, credit: 100, events: 5, event: big, wantBatches: []int{2, 2}, wantSingles: 1},
		{name: "gap first", maxBatch: 16, credit: 100, buffer: 4, events: 10, wantBatches: []int{4}, wantLost: 6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newTestServer(t, Config{Groups: []string{"bot"}, Delivery: delivery.Config{MaxBufferedEvents: tc.buffer}})
			client := serveLoopback(t, s)
			event := tc.event
			if event == nil {
				event = func(seq uint64) shard.Dispatch { return messageCreate(0, seq, uint64(900000000000000000+seq%7)) }
			}
			// Buffered before the member joins, so the first take finds all of them ready.
			for i := 1; i <= tc.events; i++ {
				s.HandleDispatch(event(uint64(i)))
			}
			c := subscribe(t, client, &gatewayv1.Subscribe{Group: "bot", MaxInFlight: tc.credit, MaxBatch: tc.maxBatch, RawOnly: tc.rawOnly}, true)
			want := tc.events - int(tc.wantLost)
			waitFor(t, "every delivery", func() bool { return len(c.deliveries()) == want })
			c.mu.Lock()
			batches, gaps := append([]int(nil), c.batches...), append([]*gatewayv1.Gap(nil), c.gaps...)
			c.mu.Unlock()
			if !slices.Equal(batches, tc.wantBatches) {
				t.Errorf("batches of %v, want %v", batches, tc.wantBatches)
			}
			inBatches := 0
			for _, n := range batches {
				inBatches += n
			}
			if singles := want - inBatches; singles != tc.wantSingles {
				t.Errorf("%d lone deliveries, want %d", singles, tc.wantSingles)
			}
			var lost uint64
			for _, g := range gaps {
				lost += g.GetLost()
			}
			if lost != tc.wantLost {
				t.Errorf("gaps announce %d lost, want %d", lost, tc.wantLost)
			}
			for i, d := range c.deliveries() {
				wantSeq := uint64(i+1) + tc.wantLost
				if d.GetId().GetSequence() != wantSeq || d.GetEvent().GetSequence() != wantSeq || d.GetAttempt() != 1 {
					t.Fatalf("delivery %d is seq %d (event %d, attempt %d), want seq %d attempt 1", i, d.GetId().GetSequence(), d.GetEvent().GetSequence(), d.GetAttempt(), wantSeq)
				}
				if typed := d.GetEvent().GetPayload() != nil; typed == tc.rawOnly {
					t.Fatalf("delivery %d: typed payload present = %v with raw_only = %v", i, typed, tc.rawOnly)
				}
			}
			waitFor(t, "the watermark to pass every event", func() bool {
				wm, _ := s.hub.Watermark(0)
				return wm == uint64(tc.events)
			})
		})
	}
}

// TestDeliveryBatchFrame checks the hand-built DeliveryBatch frame against proto.Marshal of
// the same message, byte for byte, with and without raw_only.
func TestDeliveryBatchFrame(t *testing.T) {
	t.Parallel()
	ev := &discordv1.Event{ShardId: 3, Sequence: 42, Name: "MESSAGE_CREATE", Raw: []byte(`{"a":1}`),
		Payload: &discordv1.Event_MessageCreate{MessageCreate: &discordv1.MessageCreate{Message: &discordv1.Message{Content: "hi"}}}}
	payload, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	items := []delivery.Item{
		{Delivery: delivery.Delivery{Tag: 7, Attempt: 1, Event: &delivery.Event{ID: delivery.EventID{Shard: 3, Seq: 42}, Payload: payload}}},
		{Delivery: delivery.Delivery{Tag: 1 << 40, Attempt: 3, Redelivered: true, Event: &delivery.Event{ID: delivery.EventID{Shard: 0, Seq: 1}, Payload: payload}}},
		{Delivery: delivery.Delivery{Tag: 9, Attempt: 1, Event: &delivery.Event{ID: delivery.EventID{Shard: 3, Seq: 43}, Payload: payload}}},
	}
	for _, rawOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("raw_only=%v", rawOnly), func(t *testing.T) {
			t.Parallel()
			want := &gatewayv1.DeliveryBatch{}
			wantEv := proto.Clone(ev).(*discordv1.Event)
			if rawOnly {
				wantEv.Payload = nil
			}
			for _, it := range items {
				d := it.Delivery
				want.Deliveries = append(want.Deliveries, &gatewayv1.Delivery{DeliveryId: d.Tag, Event: wantEv,
					Id: &discordv1.EventId{ShardId: uint32(d.Event.ID.Shard), Sequence: d.Event.ID.Seq}, Redelivered: d.Redelivered, Attempt: d.Attempt})
			}
			wantMsg := &gatewayv1.ConsumeResponse{Kind: &gatewayv1.ConsumeResponse_DeliveryBatch{DeliveryBatch: want}}
			snd := &deliverySender{rawOnly: rawOnly, maxBatch: 16}
			prefix := []byte("keep")
			frame := snd.appendBatchFrame(append([]byte(nil), prefix...), items)
			if string(frame[:len(prefix)]) != "keep" {
				t.Fatalf("the frame overwrote the buffer's prefix: %q", frame[:len(prefix)])
			}
			var got gatewayv1.ConsumeResponse
			if err := proto.Unmarshal(frame[len(prefix):], &got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(&got, wantMsg) {
				t.Errorf("frame decodes to %v, want %v", &got, wantMsg)
			}
			again, err := proto.MarshalOptions{Deterministic: true}.Marshal(wantMsg)
			if err != nil {
				t.Fatal(err)
			}
			if len(again) != len(frame)-len(prefix) {
				t.Errorf("frame is %d bytes, proto.Marshal gives %d", len(frame)-len(prefix), len(again))
			}
		})
	}
}

// validSpanTracerProvider makes spans that record nothing but carry a valid, sampled
// context, enough to see HandleDispatch propagate it.
type validSpanTracerProvider struct{ embedded.TracerProvider }

func (validSpanTracerProvider) Tracer(string, ...trace.TracerOption) trace.Tracer {
	return validSpanTracer{}
}

type validSpanTracer struct{ embedded.Tracer }

func (validSpanTracer) Start(ctx context.Context, _ string, _ ...trace.SpanStartOption) (context.Context, trace.Span) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled})
	ctx = trace.ContextWithSpanContext(ctx, sc)
	return ctx, trace.SpanFromContext(ctx)
}

// TestTracingEnabled checks that events carry no trace context and cost no span while no
// tracer provider is installed, and carry the receipt span's context once one is. Not
// parallel: it swaps the global tracer provider and puts the default back.
func TestTracingEnabled(t *testing.T) {
	prev := otel.GetTracerProvider()
	if tracingEnabled() {
		t.Fatalf("tracing on with the default provider %T; the check in tracingEnabled is out of date", prev)
	}
	s := newTestServer(t, Config{Groups: []string{"bot"}})
	m, err := s.hub.Join(delivery.JoinRequest{Group: "bot", MaxInFlight: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	next := func(seq uint64) *discordv1.Event {
		t.Helper()
		s.HandleDispatch(messageCreate(0, seq, 900000000000000001))
		items, err := m.TryNext(nil, 1)
		if err != nil || len(items) != 1 {
			t.Fatalf("TryNext: %v, %v", items, err)
		}
		var ev discordv1.Event
		if err := proto.Unmarshal(items[0].Delivery.Event.Payload, &ev); err != nil {
			t.Fatal(err)
		}
		return &ev
	}
	if tc := next(1).GetTraceContext(); len(tc) != 0 {
		t.Errorf("trace context %v without a tracer provider", tc)
	}
	otel.SetTracerProvider(validSpanTracerProvider{})
	defer otel.SetTracerProvider(prev)
	if !tracingEnabled() {
		t.Fatal("tracing off with a provider installed")
	}
	if tp := next(2).GetTraceContext()["traceparent"]; !strings.HasPrefix(tp, "00-01000000000000000000000000000000-0200000000000000-01") {
		t.Errorf("traceparent %q, want the receipt span's context", tp)
	}
}
