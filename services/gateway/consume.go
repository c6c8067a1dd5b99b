package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	discordv1 "github.com/kubecord/kubecord/gen/kubecord/discord/v1"
	gatewayv1 "github.com/kubecord/kubecord/gen/kubecord/gateway/v1"
	"github.com/kubecord/kubecord/services/gateway/internal/delivery"
)

const (
	// sendBatch is how many deliveries the stream takes from the hub per lock round trip.
	sendBatch = 64
	// maxDeliveryBatch caps Subscribe.max_batch: deliveries per DeliveryBatch message.
	maxDeliveryBatch = 256
	// maxBatchBytes bounds the encoded events of one DeliveryBatch, far below gRPC's default
	// 4 MiB receive limit; a bigger event still goes out, alone.
	maxBatchBytes = 1 << 20
)

// Consume implements gatewayv1.GatewayServiceServer: a member's event stream.
func (s *Server) Consume(stream gatewayv1.GatewayService_ConsumeServer) error {
	if s.draining.Load() {
		return status.Error(codes.Unavailable, "this gateway pod is shutting down; reconnect to another pod")
	}
	first, err := stream.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return status.Error(codes.InvalidArgument, "the stream closed before its Subscribe message")
		}
		return err
	}
	sub := first.GetSubscribe()
	if sub == nil {
		return status.Error(codes.InvalidArgument, "the first Consume message must be a Subscribe naming the group")
	}
	credit := int(sub.GetMaxInFlight())
	if credit == 0 {
		credit = s.cfg.DefaultMaxInFlight
	}
	shards := make([]int, 0, len(sub.GetShardIds()))
	for _, id := range sub.GetShardIds() {
		shards = append(shards, int(id))
	}
	req := delivery.JoinRequest{
		Group:       sub.GetGroup(),
		MemberID:    sub.GetMemberId(),
		Events:      sub.GetEventNames(),
		Shards:      shards,
		MaxInFlight: credit,
		// The contract: a live member id is taken over (its stream ends with ABORTED and its
		// unacked deliveries move to the new stream), so a restarted worker keeps its guilds.
		Replace: true,
	}
	if p, ok := peer.FromContext(stream.Context()); ok && p.Addr != nil {
		req.Peer = p.Addr.String()
	}
	m, err := s.hub.Join(req)
	if err != nil {
		return joinError(err)
	}
	defer m.Close()
	log := s.log.With("group", m.Group(), "member", m.ID())
	log.Info("member joined", "peer", req.Peer, "max_in_flight", credit, "events", sub.GetEventNames(), "shards", shards)

	subscribed := &gatewayv1.Subscribed{
		MemberId:          m.ID(),
		Group:             m.Group(),
		GatewayId:         s.cfg.GatewayID,
		ShardCount:        uint32(s.shardCount.Load()),
		HeartbeatInterval: durationpb.New(s.cfg.StreamHeartbeat),
	}
	if mgr := s.manager.Load(); mgr != nil {
		for _, id := range mgr.ShardIDs() {
			subscribed.ShardIds = append(subscribed.ShardIds, uint32(id))
		}
	}
	if err := stream.Send(&gatewayv1.ConsumeResponse{Kind: &gatewayv1.ConsumeResponse_Subscribed{Subscribed: subscribed}}); err != nil {
		return err
	}

	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	go s.consumeRequests(stream, m, cancel)

	heartbeat := time.NewTicker(s.cfg.StreamHeartbeat)
	defer heartbeat.Stop()
	snd := &deliverySender{stream: stream, group: m.Group(), rawOnly: sub.GetRawOnly(),
		maxBatch: int(min(sub.GetMaxBatch(), maxDeliveryBatch))}
	take := max(snd.maxBatch, sendBatch)
	var buf []delivery.Item
	for {
		items, err := m.TryNext(buf, take)
		if err != nil {
			return memberError(err)
		}
		buf = items
		if err := snd.send(items); err != nil {
			return err
		}
		if len(items) > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			cause := context.Cause(ctx)
			if errors.Is(cause, errClientDone) {
				log.Info("member closed its stream")
				return nil
			}
			if _, ok := status.FromError(cause); ok && status.Code(cause) != codes.Unknown {
				return cause
			}
			if s.draining.Load() || stream.Context().Err() != nil {
				return status.Error(codes.Unavailable, "the stream ended (gateway shutting down or client gone); reconnect, to another pod if needed")
			}
			return status.FromContextError(ctx.Err()).Err()
		case <-m.Done():
		case <-m.Notify():
		case now := <-heartbeat.C:
			hb := &gatewayv1.ConsumeResponse{Kind: &gatewayv1.ConsumeResponse_Heartbeat{Heartbeat: &gatewayv1.Heartbeat{SentAt: timestamppb.New(now)}}}
			if err := stream.Send(hb); err != nil {
				return err
			}
		}
	}
}

// errClientDone marks a client that half-closed its side of the stream: it leaves the group.
var errClientDone = errors.New("client closed the stream")

// consumeRequests reads acks, nacks and credit until the stream ends.
func (s *Server) consumeRequests(stream gatewayv1.GatewayService_ConsumeServer, m *delivery.Member, cancel context.CancelCauseFunc) {
	for {
		req, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				cancel(errClientDone)
			} else {
				cancel(err)
			}
			return
		}
		switch k := req.GetKind().(type) {
		case *gatewayv1.ConsumeRequest_Ack:
			_, err = m.Ack(k.Ack.GetDeliveryIds()...)
		case *gatewayv1.ConsumeRequest_Nack:
			_, err = m.Nack(k.Nack.GetRequeue(), k.Nack.GetDeliveryIds()...)
			if err == nil && k.Nack.GetReason() != "" {
				s.log.Debug("deliveries nacked", "group", m.Group(), "member", m.ID(),
					"count", len(k.Nack.GetDeliveryIds()), "requeue", k.Nack.GetRequeue(), "reason", k.Nack.GetReason())
			}
		case *gatewayv1.ConsumeRequest_Credit:
			limit := s.hub.MaxInFlight()
			next := min(m.MaxInFlight()+int(k.Credit.GetAdd()), limit)
			err = m.SetMaxInFlight(next)
		case *gatewayv1.ConsumeRequest_Subscribe:
			cancel(status.Error(codes.InvalidArgument, "Subscribe may only be the first message of a Consume stream; open a new stream to join another group"))
			return
		default:
			cancel(status.Error(codes.InvalidArgument, "unknown Consume request kind; upgrade the gateway or the client"))
			return
		}
		if err != nil {
			cancel(memberError(err))
			return
		}
	}
}

// deliverySender writes a member's deliveries and gaps to its stream. Deliveries are
// assembled around the event bytes encoded once in HandleDispatch: each frame goes out as the
// unknown fields of an empty ConsumeResponse, which proto marshalling emits verbatim, so the
// wire carries a normal ConsumeResponse{delivery} or ConsumeResponse{delivery_batch} without
// re-encoding the event for each group. One sender per stream; not safe for concurrent use.
type deliverySender struct {
	stream   gatewayv1.GatewayService_ConsumeServer
	group    string
	rawOnly  bool
	maxBatch int // deliveries per message; 0 or 1: no DeliveryBatch messages

	msg   gatewayv1.ConsumeResponse // reused: Send marshals it before returning
	frame []byte                    // reused frame buffer
	strip []byte                    // reused buffer of raw_only events
}

// batchHeaderRoom is reserved in front of a batch's body for its tag and length, so the
// header is written in place once the body's length is known (1 byte of tag, at most 10 of
// varint).
const batchHeaderRoom = 11

// send sends items in order: gaps alone, runs of deliveries in batches when the member
// accepts them.
func (s *deliverySender) send(items []delivery.Item) error {
	for len(items) > 0 {
		if g := items[0].Gap; g != nil {
			if err := s.sendGap(g); err != nil {
				return err
			}
			items = items[1:]
			continue
		}
		n, size := 1, len(items[0].Delivery.Event.Payload)
		for n < len(items) && n < s.maxBatch && items[n].Gap == nil {
			size += len(items[n].Delivery.Event.Payload)
			if size > maxBatchBytes {
				break
			}
			n++
		}
		if n == 1 {
			s.frame = appendDeliveryFrame(s.frame[:0], items[0].Delivery, s.event(items[0].Delivery))
		} else {
			s.frame = s.appendBatchFrame(s.frame[:0], items[:n])
		}
		s.msg.ProtoReflect().SetUnknown(s.frame)
		if err := s.stream.Send(&s.msg); err != nil {
			return err
		}
		if cap(s.frame) > 4*maxBatchBytes {
			s.frame = nil // one huge event (a big GUILD_CREATE) should not pin its buffer
		}
		items = items[n:]
	}
	return nil
}

// event returns the encoded event to send for d.
func (s *deliverySender) event(d delivery.Delivery) []byte {
	if !s.rawOnly {
		return d.Event.Payload
	}
	s.strip = appendStrippedEvent(s.strip[:0], d.Event.Payload)
	return s.strip
}

// appendBatchFrame appends ConsumeResponse{delivery_batch: DeliveryBatch{deliveries}}.
func (s *deliverySender) appendBatchFrame(b []byte, items []delivery.Item) []byte {
	start := len(b)
	b = append(b, make([]byte, batchHeaderRoom)...)
	for _, it := range items {
		b = appendDelivery(b, fieldDeliveryBatchDeliveries, it.Delivery, s.event(it.Delivery))
	}
	body := len(b) - start - batchHeaderRoom
	hdr := protowire.SizeTag(fieldConsumeResponseDeliveryBatch) + protowire.SizeVarint(uint64(body))
	at := start + batchHeaderRoom - hdr
	h := protowire.AppendTag(b[at:at], fieldConsumeResponseDeliveryBatch, protowire.BytesType)
	protowire.AppendVarint(h, uint64(body))
	return append(b[:start], b[at:]...)
}

func (s *deliverySender) sendGap(g *delivery.Gap) error {
	rg := &gatewayv1.ShardRange{From: &discordv1.EventId{ShardId: uint32(g.Shard), Sequence: g.FirstSeq}}
	if g.LastSeq != 0 { // a session reset's range is open: nobody knows where it ends
		rg.To = &discordv1.EventId{ShardId: uint32(g.Shard), Sequence: g.LastSeq}
	}
	return s.stream.Send(&gatewayv1.ConsumeResponse{Kind: &gatewayv1.ConsumeResponse_Gap{Gap: &gatewayv1.Gap{
		Group:  s.group,
		Lost:   g.Count,
		Reason: gapReason(g.Reason),
		Ranges: []*gatewayv1.ShardRange{rg},
	}}})
}

func gapReason(r string) gatewayv1.Gap_Reason {
	switch r {
	case delivery.GapReasonOverflow:
		return gatewayv1.Gap_REASON_BUFFER_OVERFLOW
	case delivery.GapReasonRetriesExhausted:
		return gatewayv1.Gap_REASON_RETRIES_EXHAUSTED
	case delivery.GapReasonSessionReset:
		return gatewayv1.Gap_REASON_SESSION_RESET
	}
	return gatewayv1.Gap_REASON_UNSPECIFIED
}

// Field numbers of the messages assembled by hand; TestDeliveryFrame checks them against
// the generated code.
const (
	fieldConsumeResponseDelivery      = 2
	fieldConsumeResponseDeliveryBatch = 5
	fieldDeliveryBatchDeliveries      = 1
	fieldDeliveryID                   = 1
	fieldDeliveryEvent                = 2
	fieldDeliveryEventID              = 3
	fieldDeliveryRedelivered          = 4
	fieldDeliveryAttempt              = 5
	fieldEventIDShard                 = 1
	fieldEventIDSequence              = 2
	firstEventPayloadField            = 100 // Event's oneof payload cases start here
)

// appendDeliveryFrame appends the wire encoding of ConsumeResponse{delivery: Delivery{...}}
// whose event is the pre-encoded discordv1.Event in event.
func appendDeliveryFrame(b []byte, d delivery.Delivery, event []byte) []byte {
	return appendDelivery(b, fieldConsumeResponseDelivery, d, event)
}

// appendDelivery appends a Delivery as field number field (bytes) of the enclosing message.
func appendDelivery(b []byte, field protowire.Number, d delivery.Delivery, event []byte) []byte {
	id := d.Event.ID
	idLen := 0
	if id.Shard != 0 {
		idLen += protowire.SizeTag(fieldEventIDShard) + protowire.SizeVarint(uint64(id.Shard))
	}
	if id.Seq != 0 {
		idLen += protowire.SizeTag(fieldEventIDSequence) + protowire.SizeVarint(id.Seq)
	}
	body := protowire.SizeTag(fieldDeliveryID) + protowire.SizeVarint(d.Tag) +
		protowire.SizeTag(fieldDeliveryEvent) + protowire.SizeBytes(len(event)) +
		protowire.SizeTag(fieldDeliveryEventID) + protowire.SizeBytes(idLen) +
		protowire.SizeTag(fieldDeliveryAttempt) + protowire.SizeVarint(uint64(d.Attempt))
	if d.Redelivered {
		body += protowire.SizeTag(fieldDeliveryRedelivered) + 1
	}
	if b == nil {
		b = make([]byte, 0, protowire.SizeTag(field)+protowire.SizeBytes(body))
	}
	b = protowire.AppendTag(b, field, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(body))
	b = protowire.AppendTag(b, fieldDeliveryID, protowire.VarintType)
	b = protowire.AppendVarint(b, d.Tag)
	b = protowire.AppendTag(b, fieldDeliveryEvent, protowire.BytesType)
	b = protowire.AppendBytes(b, event)
	b = protowire.AppendTag(b, fieldDeliveryEventID, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(idLen))
	if id.Shard != 0 {
		b = protowire.AppendTag(b, fieldEventIDShard, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(id.Shard))
	}
	if id.Seq != 0 {
		b = protowire.AppendTag(b, fieldEventIDSequence, protowire.VarintType)
		b = protowire.AppendVarint(b, id.Seq)
	}
	if d.Redelivered {
		b = protowire.AppendTag(b, fieldDeliveryRedelivered, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	b = protowire.AppendTag(b, fieldDeliveryAttempt, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(d.Attempt))
	return b
}

// stripTypedPayload returns the encoded Event without its typed payload (raw_only members).
// The input was produced by proto.Marshal in this process, so it is well formed; should it
// not be, the event is passed through whole rather than dropped.
func stripTypedPayload(event []byte) []byte {
	return appendStrippedEvent(make([]byte, 0, len(event)), event)
}

// appendStrippedEvent appends event without its typed payload fields to dst.
func appendStrippedEvent(dst, event []byte) []byte {
	out := dst
	rest := event
	for len(rest) > 0 {
		num, typ, n := protowire.ConsumeTag(rest)
		if n < 0 {
			return append(dst, event...)
		}
		m := protowire.ConsumeFieldValue(num, typ, rest[n:])
		if m < 0 {
			return append(dst, event...)
		}
		if num < firstEventPayloadField {
			out = append(out, rest[:n+m]...)
		}
		rest = rest[n+m:]
	}
	return out
}

func joinError(err error) error {
	switch {
	case errors.Is(err, delivery.ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, delivery.ErrFilterConflict), errors.Is(err, delivery.ErrMemberExists):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, delivery.ErrHubClosed):
		return status.Error(codes.Unavailable, "this gateway pod is shutting down; reconnect to another pod")
	}
	return status.Error(codes.Internal, fmt.Sprintf("joining the group: %v", err))
}

func memberError(err error) error {
	switch {
	case errors.Is(err, delivery.ErrAckTimeout):
		return status.Error(codes.Aborted, "evicted: a delivery stayed unacked past the gateway's ack timeout; its events went to other members. Ack every delivery, or nack what you cannot handle")
	case errors.Is(err, delivery.ErrReplaced):
		return status.Error(codes.Aborted, "another stream subscribed with this member id")
	case errors.Is(err, delivery.ErrHubClosed):
		return status.Error(codes.Unavailable, "this gateway pod is shutting down; reconnect to another pod")
	case errors.Is(err, delivery.ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, delivery.ErrMemberClosed):
		return status.Error(codes.Aborted, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}
