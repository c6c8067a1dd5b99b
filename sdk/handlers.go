package sdk

//go:generate go run ./internal/genevents

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"google.golang.org/protobuf/reflect/protoreflect"

	discordv1 "github.com/kubecord/kubecord/gen/kubecord/discord/v1"
	gatewayv1 "github.com/kubecord/kubecord/gen/kubecord/gateway/v1"
)

// eventHandler handles one delivered event.
type eventHandler func(ctx context.Context, ev *discordv1.Event) error

// registry maps Discord event names to handlers.
type registry struct {
	mu     sync.RWMutex
	byName map[string][]eventHandler
	all    []eventHandler
	gaps   []func(ctx context.Context, gap *gatewayv1.Gap)
}

func newRegistry() *registry { return &registry{byName: map[string][]eventHandler{}} }

// payloadFields maps a typed event's message name to its case of
// Event.payload, built once from the descriptor.
var payloadFields = func() map[protoreflect.FullName]protoreflect.FieldDescriptor {
	oneof := (&discordv1.Event{}).ProtoReflect().Descriptor().Oneofs().ByName("payload")
	m := make(map[protoreflect.FullName]protoreflect.FieldDescriptor, oneof.Fields().Len())
	for i := 0; i < oneof.Fields().Len(); i++ {
		f := oneof.Fields().Get(i)
		m[f.Message().FullName()] = f
	}
	return m
}()

// EventName returns the Discord event name of a typed payload, e.g.
// "MESSAGE_CREATE" for *discordv1.MessageCreate.
func EventName[T Payload]() string {
	var zero T
	f := payloadFields[zero.ProtoReflect().Descriptor().FullName()]
	return strings.ToUpper(string(f.Name()))
}

// On registers a handler for one typed event; T picks the event, checked at
// compile time. Register handlers before Run: the worker subscribes to the
// events it has handlers for. The event's envelope (shard, sequence, raw
// JSON) is available from the context with [EventFrom].
func On[T Payload](b *Bot, h func(ctx context.Context, e T) error) {
	var zero T
	field := payloadFields[zero.ProtoReflect().Descriptor().FullName()]
	name := strings.ToUpper(string(field.Name()))
	b.handlers.add(name, func(ctx context.Context, ev *discordv1.Event) error {
		m := ev.ProtoReflect()
		if !m.Has(field) {
			// The gateway sent raw only (or the payload did not decode):
			// nothing typed to hand over.
			return fmt.Errorf("%s event has no typed payload (raw only)", name)
		}
		return h(ctx, m.Get(field).Message().Interface().(T))
	})
}

// OnEvent registers a handler for events by Discord name, typed or not
// (e.g. an event Kubecord has no message for yet: read Event.raw). The name
// "*" receives every event the worker subscribes to.
func OnEvent(b *Bot, name string, h func(ctx context.Context, ev *discordv1.Event) error) {
	b.handlers.add(name, h)
}

// OnGap registers a function the worker calls when a gateway tells the group that events
// are gone: its buffer overflowed (Gap.lost events, with their ranges), an event ran out of
// delivery attempts, or a shard's session was reset and Discord will not replay what it sent
// meanwhile (REASON_SESSION_RESET). A bot that keeps its own state from events can resync
// there. It runs on the stream's receive loop: keep it short, hand long work off.
func OnGap(b *Bot, h func(ctx context.Context, gap *gatewayv1.Gap)) {
	b.handlers.mu.Lock()
	defer b.handlers.mu.Unlock()
	b.handlers.gaps = append(b.handlers.gaps, h)
}

func (r *registry) gapHandlers() []func(context.Context, *gatewayv1.Gap) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.gaps
}

func (r *registry) add(name string, h eventHandler) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if name == "*" {
		r.all = append(r.all, h)
		return
	}
	r.byName[name] = append(r.byName[name], h)
}

// lookup returns the handlers for an event name.
func (r *registry) lookup(name string) []eventHandler {
	r.mu.RLock()
	defer r.mu.RUnlock()
	hs := r.byName[name]
	if len(r.all) == 0 {
		return hs
	}
	out := make([]eventHandler, 0, len(hs)+len(r.all))
	out = append(out, hs...)
	return append(out, r.all...)
}

// eventNames is the subscription filter: the names with handlers, or none
// (everything) when a "*" handler exists.
func (r *registry) eventNames() ([]string, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if len(r.byName) == 0 && len(r.all) == 0 {
		return nil, fmt.Errorf("kubecord sdk: no handlers registered: add some with sdk.On before Run")
	}
	if len(r.all) > 0 {
		return nil, nil
	}
	names := make([]string, 0, len(r.byName))
	for n := range r.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

type eventKey struct{}

// EventFrom returns the envelope of the event a handler is handling: shard,
// sequence, routing key, raw JSON, trace context. Nil outside a handler.
func EventFrom(ctx context.Context) *discordv1.Event {
	ev, _ := ctx.Value(eventKey{}).(*discordv1.Event)
	return ev
}
