package state

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"

	gatewayv1 "github.com/kubecord/kubecord/gen/kubecord/gateway/v1"
	"github.com/kubecord/kubecord/internal/runtime"
	"github.com/kubecord/kubecord/services/state/internal/cache"
)

// Group is the consumer group the state service joins on every gateway.
const Group = "state"

// consumer keeps one Consume stream to one gateway address open, applying each delivery to the
// cache and acking it only after it is applied: events in flight when the stream breaks (or
// that could not be applied) are redelivered by the gateway.
type consumer struct {
	s      *Server
	c      *cache.Cache
	addr   string
	conn   *grpc.ClientConn
	client gatewayv1.GatewayServiceClient
	log    *slog.Logger
}

func newConsumer(s *Server, c *cache.Cache, addr string) (*consumer, error) {
	conn, err := runtime.Dial(addr, s.cfg.Client)
	if err != nil {
		return nil, fmt.Errorf("connecting to gateway %s: %w", addr, err)
	}
	return &consumer{s: s, c: c, addr: addr, conn: conn, client: gatewayv1.NewGatewayServiceClient(conn),
		log: s.log.With("component", "consumer", "gateway", addr)}, nil
}

// run consumes until ctx is cancelled, reconnecting with capped exponential backoff.
func (k *consumer) run(ctx context.Context) {
	k.s.consumers.Add(1)
	defer k.s.consumers.Add(-1)
	defer func() { _ = k.conn.Close() }()
	backoff := k.s.cfg.ReconnectMin
	for {
		applied, err := k.session(ctx)
		if ctx.Err() != nil {
			return
		}
		k.s.metrics.reconnects.Inc()
		if applied > 0 {
			backoff = k.s.cfg.ReconnectMin // the stream worked: this is a fresh failure
		}
		k.log.Warn("consume stream ended; reconnecting", slog.Any("error", err), slog.Uint64("applied", applied), slog.Duration("backoff", backoff))
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, k.s.cfg.ReconnectMax)
	}
}

// session runs one Consume stream and returns how many events it applied and why it ended.
func (k *consumer) session(ctx context.Context) (uint64, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := k.client.Consume(sctx)
	if err != nil {
		return 0, fmt.Errorf("opening the stream: %w", err)
	}
	sub := &gatewayv1.Subscribe{Group: Group, MemberId: k.s.cfg.MemberID, MaxInFlight: k.s.cfg.MaxInFlight,
		EventNames: k.s.cfg.EventNames}
	if err := stream.Send(&gatewayv1.ConsumeRequest{Kind: &gatewayv1.ConsumeRequest_Subscribe{Subscribe: sub}}); err != nil {
		return 0, fmt.Errorf("subscribing: %w", err)
	}
	first, err := stream.Recv()
	if err != nil {
		return 0, fmt.Errorf("waiting for Subscribed: %w", err)
	}
	subscribed := first.GetSubscribed()
	if subscribed == nil {
		return 0, errors.New("the gateway's first message was not Subscribed")
	}
	k.log.Info("consuming", slog.String("gateway_id", subscribed.GetGatewayId()), slog.String("member_id", subscribed.GetMemberId()),
		slog.Any("shards", subscribed.GetShardIds()), slog.Uint64("shard_count", uint64(subscribed.GetShardCount())))

	// A stream that hears nothing (not even a heartbeat) for two intervals is dead.
	silence := 2 * subscribed.GetHeartbeatInterval().AsDuration()
	if silence <= 0 {
		silence = time.Minute
	}
	watchdog := time.AfterFunc(silence, cancel)
	defer watchdog.Stop()

	var applied uint64
	for {
		msg, err := stream.Recv()
		if err != nil {
			return applied, fmt.Errorf("receiving: %w", err)
		}
		watchdog.Reset(silence)
		switch kind := msg.GetKind().(type) {
		case *gatewayv1.ConsumeResponse_Delivery:
			if err := k.handle(sctx, stream, kind.Delivery, watchdog, silence); err != nil {
				return applied, err
			}
			applied++
		case *gatewayv1.ConsumeResponse_Gap:
			g := kind.Gap
			k.s.metrics.lost.Add(float64(g.GetLost()))
			k.log.Warn("the gateway lost events for the state group; affected guilds stay stale until their next GUILD_CREATE",
				slog.Uint64("lost", g.GetLost()), slog.String("reason", g.GetReason().String()))
		case *gatewayv1.ConsumeResponse_Heartbeat:
		}
	}
}

// handle applies one delivery and acks it. A failed apply (the store is unreachable) is retried
// here with capped backoff until it succeeds or the service stops: nothing could be applied
// meanwhile anyway, and retrying in place keeps the order of the guild's events. (Dropping
// the stream instead would leave the event to the gateway's ack timeout before redelivery.)
func (k *consumer) handle(ctx context.Context, stream gatewayv1.GatewayService_ConsumeClient, d *gatewayv1.Delivery, watchdog *time.Timer, silence time.Duration) error {
	ev := d.GetEvent()
	backoff := k.s.cfg.ReconnectMin
	for attempt := 1; ; attempt++ {
		start := time.Now()
		err := k.c.Apply(ctx, ev)
		k.s.metrics.applyTime.Observe(time.Since(start).Seconds())
		if err == nil {
			break
		}
		k.s.metrics.applyErrors.Inc()
		k.log.Warn("applying an event failed; retrying", slog.Any("error", err), slog.Int("attempt", attempt), slog.Duration("backoff", backoff))
		watchdog.Reset(silence + backoff) // not reading the stream while retrying is expected
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("stopped while retrying delivery %d: %w", d.GetDeliveryId(), err)
		case <-t.C:
		}
		backoff = min(backoff*2, k.s.cfg.ReconnectMax)
	}
	k.s.metrics.applied.WithLabelValues(ev.GetName()).Inc()
	ack := &gatewayv1.Ack{DeliveryIds: []uint64{d.GetDeliveryId()}}
	if err := stream.Send(&gatewayv1.ConsumeRequest{Kind: &gatewayv1.ConsumeRequest_Ack{Ack: ack}}); err != nil {
		return fmt.Errorf("acking: %w", err)
	}
	return nil
}
