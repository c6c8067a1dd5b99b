package sdk

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"runtime/debug"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	discordv1 "github.com/kubecord/kubecord/gen/kubecord/discord/v1"
	gatewayv1 "github.com/kubecord/kubecord/gen/kubecord/gateway/v1"
)

// work is one delivery and the stream to answer it on.
type work struct {
	d *gatewayv1.Delivery
	s *stream
}

// dispatcher runs handlers on lanes: a routing key always maps to the same
// lane, so one guild's events run one at a time in order while different
// guilds run concurrently.
type dispatcher struct {
	b      *Bot
	lanes  []chan work
	seed   maphash.Seed
	wg     sync.WaitGroup
	ctx    context.Context // handlers' base context; cancelled when a drain times out
	cancel context.CancelFunc
	tracer trace.Tracer

	mu     sync.RWMutex // held for reading while submitting, for writing to close
	closed bool
}

func newDispatcher(b *Bot) *dispatcher {
	ctx, cancel := context.WithCancel(context.Background())
	d := &dispatcher{
		b:      b,
		lanes:  make([]chan work, b.cfg.concurrency),
		seed:   maphash.MakeSeed(),
		ctx:    ctx,
		cancel: cancel,
		tracer: otel.Tracer("github.com/kubecord/kubecord/sdk"),
	}
	for i := range d.lanes {
		// Credit bounds what is in flight; a little room per lane keeps the
		// receive loops from waiting on a busy guild.
		d.lanes[i] = make(chan work, 64)
		d.wg.Add(1)
		go d.lane(d.lanes[i])
	}
	return d
}

func (d *dispatcher) lane(ch chan work) {
	defer d.wg.Done()
	for w := range ch {
		d.handle(w)
	}
}

// laneOf picks the lane of an event's routing key (or its shard when it has
// none).
func (d *dispatcher) laneOf(ev *discordv1.Event) int {
	var h maphash.Hash
	h.SetSeed(d.seed)
	rk := ev.GetRoutingKey()
	if rk.GetKind() == discordv1.RoutingKey_KIND_UNSPECIFIED {
		_ = h.WriteByte(0xff)
		writeUint64(&h, uint64(ev.GetShardId()))
	} else {
		_ = h.WriteByte(byte(rk.GetKind()))
		writeUint64(&h, rk.GetId())
	}
	return int(h.Sum64() % uint64(len(d.lanes)))
}

func writeUint64(h *maphash.Hash, v uint64) {
	var b [8]byte
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
	_, _ = h.Write(b[:])
}

// submit queues a delivery on its lane. It blocks while the lane is full,
// which only happens when one guild is busier than its handler; stop aborts.
func (d *dispatcher) submit(w work, stop <-chan struct{}) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return false
	}
	select {
	case d.lanes[d.laneOf(w.d.GetEvent())] <- w:
		return true
	case <-stop:
		return false
	}
}

// close stops taking work and waits until every queued delivery is handled.
// Submitters blocked on a full lane must be released first (their stop
// channel closed), or close waits for them.
func (d *dispatcher) close() {
	d.mu.Lock()
	if !d.closed {
		d.closed = true
		for _, ch := range d.lanes {
			close(ch)
		}
	}
	d.mu.Unlock()
	d.wg.Wait()
}

// abort cancels the handlers' context (a drain ran out of time).
func (d *dispatcher) abort() { d.cancel() }

func (d *dispatcher) handle(w work) {
	ev := w.d.GetEvent()
	name := ev.GetName()
	handlers := d.b.handlers.lookup(name)
	ctx := context.WithValue(d.ctx, eventKey{}, ev)
	if tc := ev.GetTraceContext(); len(tc) > 0 {
		ctx = propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier(tc))
	}
	ctx, span := d.tracer.Start(ctx, "kubecord.handle "+name, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("discord.event", name),
			attribute.Int64("discord.shard_id", int64(ev.GetShardId())),
			attribute.Int64("discord.sequence", int64(ev.GetSequence())),
			attribute.String("discord.guild_id", fmt.Sprint(ev.GetGuildId())),
			attribute.Bool("kubecord.redelivered", w.d.GetRedelivered()),
		))
	defer span.End()
	if d.b.cfg.handlerTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.b.cfg.handlerTimeout)
		defer cancel()
	}

	var failed error
	start := time.Now()
	for _, h := range handlers {
		if err := d.call(ctx, h, ev); err != nil {
			failed = errors.Join(failed, err)
		}
	}
	took := time.Since(start)
	d.b.metrics.duration.WithLabelValues(name).Observe(took.Seconds())
	if d.b.cfg.slowHandler > 0 && took > d.b.cfg.slowHandler {
		d.b.metrics.slow.WithLabelValues(name).Inc()
		d.b.log.Warn("slow handler", "event", name, "shard", ev.GetShardId(), "seq", ev.GetSequence(),
			"guild", ev.GetGuildId(), "took", took)
	}
	if failed == nil {
		w.s.ack(w.d.GetDeliveryId())
		return
	}
	span.RecordError(failed)
	span.SetStatus(codes.Error, failed.Error())
	d.b.metrics.errors.WithLabelValues(name).Inc()
	requeue := d.b.cfg.failure == RequeueOnFailure && w.d.GetAttempt() < d.b.cfg.maxAttempts && d.ctx.Err() == nil
	d.b.log.Error("handler failed", "event", name, "shard", ev.GetShardId(), "seq", ev.GetSequence(),
		"guild", ev.GetGuildId(), "attempt", w.d.GetAttempt(), "requeue", requeue, "err", failed)
	if requeue {
		w.s.nack(w.d.GetDeliveryId(), failed.Error())
		return
	}
	w.s.ack(w.d.GetDeliveryId())
}

// call runs one handler, turning a panic into an error.
func (d *dispatcher) call(ctx context.Context, h eventHandler, ev *discordv1.Event) (err error) {
	defer func() {
		if r := recover(); r != nil {
			d.b.metrics.panics.WithLabelValues(ev.GetName()).Inc()
			d.b.log.Error("handler panicked", "event", ev.GetName(), "shard", ev.GetShardId(), "seq", ev.GetSequence(),
				"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return h(ctx, ev)
}
