package gateway

import (
	"context"
	"reflect"
	"runtime"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	discordv1 "github.com/kubecord/kubecord/gen/kubecord/discord/v1"
	"github.com/kubecord/kubecord/internal/discordjson"
	"github.com/kubecord/kubecord/services/gateway/internal/delivery"
	"github.com/kubecord/kubecord/services/gateway/internal/shard"
)

// dispatchStats counts what the dispatch path did, for metrics.
type dispatchStats struct {
	received     atomic.Uint64
	decodeErrors atomic.Uint64
	routeErrors  atomic.Uint64
	duplicates   atomic.Uint64
	// sessionResets counts READYs of a new session where one was running: see Hub.ResetSession.
	sessionResets atomic.Uint64
}

var tracer = otel.Tracer("github.com/kubecord/kubecord/services/gateway")

var propagator = propagation.TraceContext{}

// HandleDispatch implements shard.Handler. It runs on the shard's read loop: it decodes the
// event once, encodes it once, and publishes it without waiting for any consumer.
func (s *Server) HandleDispatch(d shard.Dispatch) { s.dispatch(d, false) }

// dispatch publishes d; maybeDelivered flags its deliveries as redelivered (see
// delivery.Event.MaybeDelivered).
func (s *Server) dispatch(d shard.Dispatch, maybeDelivered bool) {
	n := s.stats.received.Add(1)
	if s.onDispatch != nil {
		s.onDispatch(d)
	}
	route, err := discordjson.RoutingKey(d.Name, d.Data)
	if err != nil {
		// Still delivered (keyless, routed by shard): losing the event would be worse.
		s.stats.routeErrors.Add(1)
		s.log.Warn("unreadable routing key; routing the event by shard", "shard", d.ShardID, "seq", d.Seq, "event", d.Name, "err", err)
	}
	// One allocation for the envelope's messages: they only live until the marshal below.
	env := &envelope{}
	env.receivedAt.Seconds, env.receivedAt.Nanos = d.ReceivedAt.Unix(), int32(d.ReceivedAt.Nanosecond())
	ev := &env.ev
	ev.ShardId = uint32(d.ShardID)
	ev.ShardCount = uint32(d.ShardCount)
	ev.Sequence = d.Seq
	ev.Name = d.Name
	ev.ReceivedAt = &env.receivedAt
	ev.Raw = d.Data
	if route.Kind != discordjson.RouteNone {
		env.routingKey.Kind, env.routingKey.Id = discordv1.RoutingKey_Kind(route.Kind), route.ID
		ev.RoutingKey = &env.routingKey
		if route.Kind == discordjson.RouteGuild {
			ev.GuildId = route.ID
		}
	}
	if tracingEnabled() {
		if sc := s.traceEvent(d); sc.IsValid() {
			carrier := propagation.MapCarrier{}
			propagator.Inject(trace.ContextWithSpanContext(context.Background(), sc), carrier)
			ev.TraceContext = carrier
		}
	}
	if err := discordjson.DecodeEvent(ev); err != nil {
		// The raw JSON still carries everything; consumers can decode it themselves.
		s.stats.decodeErrors.Add(1)
		s.log.Warn("event payload did not decode; delivering it raw", "shard", d.ShardID, "seq", d.Seq, "event", d.Name, "err", err)
	}
	if r := ev.GetReady(); r != nil && r.GetSessionId() != "" {
		// A READY of a new session: sequences restart and the previous session's watermark
		// is moot. A READY of the current session is a replay (a resume from sequence 0).
		if cur, ok := s.sessionIDs.Load(d.ShardID); !ok {
			s.hub.StartSession(d.ShardID)
			s.sessionIDs.Store(d.ShardID, r.GetSessionId())
		} else if cur.(string) != r.GetSessionId() {
			// The shard had a session and could not resume it (invalidated, expired, or
			// taken over too late): what Discord sent it in between is gone. Say so.
			s.hub.ResetSession(d.ShardID)
			s.sessionIDs.Store(d.ShardID, r.GetSessionId())
			s.stats.sessionResets.Add(1)
			s.log.Warn("session reset: the shard started a new session; events sent to the old one after it lost its connection are lost, and consumers are told with a gap",
				"shard", d.ShardID, "old_session", cur.(string), "new_session", r.GetSessionId())
		}
	}
	if id, ok := s.sessionIDs.Load(d.ShardID); ok {
		ev.SessionId = id.(string)
	}
	s.routeCommandReply(ev)

	payload, err := proto.Marshal(ev)
	if err != nil {
		// Marshalling a message we built cannot fail short of a bug; keep the shard alive.
		s.log.Error("encoding an event failed; it is not delivered", "shard", d.ShardID, "seq", d.Seq, "event", d.Name, "err", err)
		return
	}
	if !s.hub.Publish(&delivery.Event{
		ID:             delivery.EventID{Shard: d.ShardID, Seq: d.Seq},
		Name:           d.Name,
		Key:            route.ID,
		Payload:        payload,
		ReceivedAt:     d.ReceivedAt,
		MaybeDelivered: maybeDelivered,
	}) {
		s.stats.duplicates.Add(1)
	}
	// Let the delivery side run. Publish readied a member's stream goroutine, which would
	// otherwise wait until this read loop blocks on its socket or is preempted (10 ms
	// slices). Under a saturating feed the read loops never block: every hop of a delivery
	// round trip then waited a slice, acks fell behind the ingest rate and the buffer grew
	// (BenchmarkEndToEnd procs=2/replay on a loaded machine: acked 34k/s of 51k/s received,
	// p50 180 ms). A yield every yieldEvery events bounds that wait to a few hundred
	// microseconds of this loop's work. Measured on the replay: yielding after every event
	// cost about a quarter of the saturated throughput, every 8th about a tenth, for a p99
	// of 10-20 ms instead of 130-200 ms. Yielding never waits for a consumer.
	if n%yieldEvery == 0 {
		runtime.Gosched()
	}
}

// yieldEvery is how many events the shard read loops handle between yields.
const yieldEvery = 8

// envelope holds an event's protobuf envelope and its small sub-messages together.
type envelope struct {
	ev         discordv1.Event
	receivedAt timestamppb.Timestamp
	routingKey discordv1.RoutingKey
}

// tracerState caches whether the global tracer provider is OpenTelemetry's default, for
// the provider last seen.
type tracerState struct {
	tp      trace.TracerProvider
	enabled bool
}

var lastTracer atomic.Pointer[tracerState]

// tracingEnabled reports whether a tracer provider was installed (otel.SetTracerProvider).
// Until one is, OpenTelemetry's default provider makes spans that record nothing and carry
// no valid context, at a cost of several allocations per event (a third of the dispatch
// path's allocations), so HandleDispatch skips the span altogether.
func tracingEnabled() bool {
	tp := otel.GetTracerProvider()
	if st := lastTracer.Load(); st != nil && st.tp == tp {
		return st.enabled
	}
	// The default is an internal type of otel; should its name change, tracing stays on
	// (correct, only slower) and TestTracingEnabled fails.
	st := &tracerState{tp: tp, enabled: reflect.TypeOf(tp).String() != "*global.tracerProvider"}
	lastTracer.Store(st)
	return st.enabled
}

// traceEvent records a short span for the receipt of an event and returns its context, so
// a worker's handling and REST calls join the same trace. With no tracer provider installed
// the span is a no-op and invalid, and nothing is added to the event.
func (s *Server) traceEvent(d shard.Dispatch) trace.SpanContext {
	_, span := tracer.Start(context.Background(), "gateway.dispatch "+d.Name,
		trace.WithTimestamp(d.ReceivedAt), trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.Int("discord.shard_id", d.ShardID), attribute.Int64("discord.sequence", int64(d.Seq))))
	sc := span.SpanContext()
	span.End()
	return sc
}
