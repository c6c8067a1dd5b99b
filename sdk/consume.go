package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	gatewayv1 "github.com/kubecord/kubecord/gen/kubecord/gateway/v1"
	"github.com/kubecord/kubecord/internal/discovery"
	"github.com/kubecord/kubecord/internal/runtime"
)

// consumers keeps one Consume stream open to every gateway pod.
type consumers struct {
	b        *Bot
	d        *dispatcher
	names    []string
	draining atomic.Bool
	stop     chan struct{} // closed when the drain starts

	mu     sync.Mutex
	active map[*stream]struct{}
	wg     sync.WaitGroup
	joined atomic.Int64 // streams that got Subscribed and are still open
}

func newConsumers(b *Bot, d *dispatcher, names []string) *consumers {
	return &consumers{b: b, d: d, names: names, stop: make(chan struct{}), active: map[*stream]struct{}{}}
}

// run consumes until ctx ends, then drains: stop taking events, finish the
// accepted ones, flush their acks, close the streams. Events received but not
// accepted stay unacked and the gateway redelivers them to other members.
func (c *consumers) run(ctx context.Context) error {
	// Streams outlive ctx by the drain, so they get their own context.
	sctx, scancel := context.WithCancel(context.WithoutCancel(ctx))
	defer scancel()

	var conns []*grpc.ClientConn
	defer func() {
		for _, cc := range conns {
			_ = cc.Close()
		}
	}()
	// Discoverers outlive the drain's wait on c.wg (they only resolve names);
	// they end with sctx.
	var discoverers sync.WaitGroup
	defer discoverers.Wait()
	defer scancel()
	for _, target := range c.b.cfg.gateways {
		if host, ok := strings.CutPrefix(target, "dns:///"); ok {
			discoverers.Add(1)
			go func() {
				defer discoverers.Done()
				c.discover(sctx, host)
			}()
			continue
		}
		cc, err := runtime.Dial(target, c.b.cfg.client)
		if err != nil {
			return fmt.Errorf("kubecord sdk: gateway %s: %w", target, err)
		}
		conns = append(conns, cc)
		c.wg.Add(1)
		go c.loop(sctx, target, cc)
	}
	if c.b.cfg.httpListen != "" {
		stopHTTP, err := c.serveHTTP(c.b.cfg.httpListen)
		if err != nil {
			scancel()
			c.wg.Wait()
			return err
		}
		defer stopHTTP()
	}
	c.b.log.Info("worker running", "gateways", c.b.cfg.gateways, "events", c.names)

	<-ctx.Done()
	c.b.log.Info("draining: finishing accepted events")
	c.mu.Lock()
	c.draining.Store(true)
	c.mu.Unlock()
	close(c.stop)
	handled := make(chan struct{})
	go func() { c.d.close(); close(handled) }()
	select {
	case <-handled:
	case <-time.After(c.b.cfg.drainTimeout):
		c.b.log.Warn("drain timed out: cancelling handlers", "timeout", c.b.cfg.drainTimeout)
		c.d.abort()
		<-handled
	}
	// Every accepted event is acked (or nacked) by now: flush and leave.
	c.mu.Lock()
	for s := range c.active {
		s.shutdown()
	}
	c.mu.Unlock()
	left := make(chan struct{})
	go func() { c.wg.Wait(); close(left) }()
	select {
	case <-left:
	case <-time.After(5 * time.Second):
		scancel()
		<-left
	}
	c.b.log.Info("drained")
	return nil
}

// discover keeps a stream to every gateway pod a DNS name resolves to. The
// streams drain like the others: ctx ends only after the drain.
func (c *consumers) discover(ctx context.Context, hostport string) {
	err := discovery.Follow(ctx, hostport, c.b.cfg.resolveInterval, nil, c.b.log, func(ctx context.Context, target string) {
		// Under c.mu, so the drain's wait on c.wg never races this Add.
		c.mu.Lock()
		if c.draining.Load() {
			c.mu.Unlock()
			return // a pod found while draining gets no stream
		}
		c.wg.Add(1)
		c.mu.Unlock()
		cc, err := runtime.Dial(target, c.b.cfg.client)
		if err != nil {
			c.wg.Done()
			c.b.log.Error("gateway", "target", target, "err", err)
			return
		}
		defer func() { _ = cc.Close() }()
		c.loop(ctx, target, cc)
	})
	if err != nil {
		c.b.log.Error("gateway discovery", "err", err)
	}
}

// loop keeps a stream to one gateway pod open, reconnecting with backoff.
func (c *consumers) loop(ctx context.Context, target string, cc *grpc.ClientConn) {
	defer c.wg.Done()
	client := gatewayv1.NewGatewayServiceClient(cc)
	backoff := 100 * time.Millisecond
	for {
		started := time.Now()
		err := c.consume(ctx, target, client)
		if c.draining.Load() || ctx.Err() != nil {
			return
		}
		if time.Since(started) > 10*time.Second {
			backoff = 100 * time.Millisecond
		}
		c.b.log.Warn("gateway stream ended; reconnecting", "target", target, "err", err, "in", backoff)
		t := time.NewTimer(backoff + rand.N(backoff/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-c.stop:
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// consume runs one Consume stream until it ends.
func (c *consumers) consume(ctx context.Context, target string, client gatewayv1.GatewayServiceClient) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := client.Consume(sctx)
	if err != nil {
		return err
	}
	sub := &gatewayv1.Subscribe{
		Group:       c.b.cfg.group,
		MemberId:    c.b.cfg.memberID,
		EventNames:  c.names,
		MaxInFlight: c.b.cfg.maxInFlight,
		ShardIds:    c.b.cfg.shardIDs,
		// Whatever is ready comes in one message (the gateway caps the count and bytes);
		// each delivery is still handled and acked on its own.
		MaxBatch: maxBatch,
	}
	if err := st.Send(&gatewayv1.ConsumeRequest{Kind: &gatewayv1.ConsumeRequest_Subscribe{Subscribe: sub}}); err != nil {
		return fmt.Errorf("subscribing: %w", err)
	}
	first, err := st.Recv()
	if err != nil {
		if status.Code(err) == codes.FailedPrecondition || status.Code(err) == codes.InvalidArgument {
			c.b.log.Error("gateway refused the subscription", "target", target, "err", err)
		}
		return fmt.Errorf("waiting for Subscribed: %w", err)
	}
	subd := first.GetSubscribed()
	if subd == nil {
		return errors.New("gateway answered the subscription without Subscribed")
	}
	c.b.log.Info("joined group", "target", target, "gateway", subd.GetGatewayId(), "shards", len(subd.GetShardIds()))

	s := newStream(st, c.b)
	c.mu.Lock()
	c.active[s] = struct{}{}
	c.mu.Unlock()
	c.joined.Add(1)
	defer c.joined.Add(-1)
	defer func() {
		c.mu.Lock()
		delete(c.active, s)
		c.mu.Unlock()
		s.shutdown()
		<-s.sent
	}()
	go s.sender()

	for {
		msg, err := st.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("gateway closed the stream")
			}
			return err
		}
		switch k := msg.GetKind().(type) {
		case *gatewayv1.ConsumeResponse_Delivery:
			c.deliver(k.Delivery, s)
		case *gatewayv1.ConsumeResponse_DeliveryBatch:
			c.b.metrics.batches.Inc()
			for _, d := range k.DeliveryBatch.GetDeliveries() {
				c.deliver(d, s)
			}
		case *gatewayv1.ConsumeResponse_Gap:
			gap := k.Gap
			c.b.metrics.lost.Add(float64(gap.GetLost()))
			c.b.metrics.gaps.WithLabelValues(gapReasonLabel(gap.GetReason())).Inc()
			if gap.GetReason() == gatewayv1.Gap_REASON_SESSION_RESET {
				c.b.log.Warn("a shard's Discord session was reset: events Discord sent meanwhile are gone", "target", target,
					"ranges", gap.GetRanges())
			} else {
				c.b.log.Error("gateway lost events for this group", "target", target,
					"lost", gap.GetLost(), "reason", gap.GetReason().String())
			}
			for _, h := range c.b.handlers.gapHandlers() {
				h(sctx, gap)
			}
		case *gatewayv1.ConsumeResponse_Heartbeat, *gatewayv1.ConsumeResponse_Subscribed:
		}
	}
}

// maxBatch is the Subscribe.max_batch the SDK asks for: the gateway's own cap.
const maxBatch = 256

// deliver hands one delivery to the dispatcher, unless the worker is draining: then it is
// left unacked and the gateway redelivers it to another member.
func (c *consumers) deliver(d *gatewayv1.Delivery, s *stream) {
	if c.draining.Load() {
		return
	}
	redelivered := "false"
	if d.GetRedelivered() {
		redelivered = "true"
	}
	c.b.metrics.deliveries.WithLabelValues(redelivered).Inc()
	c.d.submit(work{d: d, s: s}, c.stop)
}

// stream is one Consume stream's send side: acks and nacks are batched by a
// single sender goroutine (gRPC streams allow one sender at a time).
type stream struct {
	st   gatewayv1.GatewayService_ConsumeClient
	b    *Bot
	wake chan struct{}
	sent chan struct{} // closed when the sender has finished

	mu     sync.Mutex
	acks   []uint64
	nacks  []*gatewayv1.Nack
	closed bool
}

func newStream(st gatewayv1.GatewayService_ConsumeClient, b *Bot) *stream {
	return &stream{st: st, b: b, wake: make(chan struct{}, 1), sent: make(chan struct{})}
}

func (s *stream) ack(id uint64) {
	s.mu.Lock()
	s.acks = append(s.acks, id)
	s.mu.Unlock()
	s.signal()
}

func (s *stream) nack(id uint64, reason string) {
	s.mu.Lock()
	s.nacks = append(s.nacks, &gatewayv1.Nack{DeliveryIds: []uint64{id}, Requeue: true, Reason: reason})
	s.mu.Unlock()
	s.signal()
}

func (s *stream) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// shutdown asks the sender to flush what is pending and half-close the stream.
func (s *stream) shutdown() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.signal()
}

func (s *stream) sender() {
	defer close(s.sent)
	for range s.wake {
		s.mu.Lock()
		acks, nacks, closed := s.acks, s.nacks, s.closed
		s.acks, s.nacks = nil, nil
		s.mu.Unlock()
		if len(acks) > 0 {
			if err := s.st.Send(&gatewayv1.ConsumeRequest{Kind: &gatewayv1.ConsumeRequest_Ack{Ack: &gatewayv1.Ack{DeliveryIds: acks}}}); err != nil {
				// The stream is gone; the gateway redelivers what we could not ack.
				return
			}
		}
		for _, n := range nacks {
			if err := s.st.Send(&gatewayv1.ConsumeRequest{Kind: &gatewayv1.ConsumeRequest_Nack{Nack: n}}); err != nil {
				return
			}
		}
		if closed {
			_ = s.st.CloseSend()
			return
		}
	}
}

// serveHTTP serves /metrics, /healthz and /readyz on addr until the returned
// function is called.
func (c *consumers) serveHTTP(addr string) (func(), error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("kubecord sdk: HTTP listener %s: %w", addr, err)
	}
	gatherer := prometheus.DefaultGatherer
	if g, ok := c.b.cfg.registerer.(prometheus.Gatherer); ok {
		gatherer = g
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		switch {
		case c.draining.Load():
			http.Error(w, "draining", http.StatusServiceUnavailable)
		case c.joined.Load() == 0:
			http.Error(w, "not joined to any gateway yet", http.StatusServiceUnavailable)
		default:
			_, _ = io.WriteString(w, "ready\n")
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.b.log.Error("HTTP listener", "err", err)
		}
	}()
	c.b.log.Info("serving /metrics, /healthz, /readyz", "addr", l.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}

// gapReasonLabel is the metric label of a gap reason: the enum name without its prefix.
func gapReasonLabel(r gatewayv1.Gap_Reason) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "REASON_"))
}
