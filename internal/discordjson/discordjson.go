// Package discordjson decodes Discord's gateway JSON into the kubecord.discord.v1 protobuf
// messages.
//
// It is the only place Kubecord turns Discord's JSON into typed data, and it sits on the hot path
// of every event, so it does not use encoding/json: a small validating scanner walks the bytes
// once and fills the message, driven by per-message tables (JSON key to field, decoding kind and
// Go struct offset) built once from the descriptors. The JSON keys are the proto field names, by
// the contract's convention; fields marked (kubecord.discord.v1.inline) take the keys of the
// enclosing object that the message does not claim itself.
//
// What it accepts is what Discord sends: snowflakes as strings (numbers too), 64-bit integers as
// strings or numbers, ISO 8601 timestamps with any offset, nulls and missing keys (fields left
// unset), unknown keys (skipped; the envelope keeps the raw JSON). Anything malformed is an *Error
// naming the event and the JSON path, never a panic; nesting is limited to MaxDepth. Values of
// google.protobuf.Value fields hold numbers as doubles, so an integer beyond 2^53 there (a numeric
// message nonce) is rounded; the exact text is still in the envelope's raw JSON.
//
// Decoding writes straight into the generated Go structs (fast.go), which is 2.5 to 3.5 times
// faster than setting fields through protoreflect, and falls back to protoreflect for map fields
// and for messages without generated types (dynamicpb), which DecodeInto accepts.
//
// The gateway's per-frame work is ParseFrame (op, s, t and the bytes of d, without decoding d) and
// RoutingKey (reads only the key that routes the event). Decoding d happens once, later, with
// Decode or DecodeEvent.
package discordjson

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	discordv1 "github.com/kubecord/kubecord/gen/kubecord/discord/v1"
)

// Error is a decoding error: the event (or message type) being decoded, where in the JSON it went
// wrong and why.
type Error struct {
	// Event is the dispatch name, or the message's full name for DecodeInto.
	Event string
	// Path is the JSON path to the offending value, e.g. ".author.id" or ".members[3].roles[0]";
	// empty for errors at the top level.
	Path string
	// Err is the cause.
	Err error
}

func (e *Error) Error() string {
	if e.Path == "" {
		return e.Event + ": " + e.Err.Error()
	}
	return e.Event + ": " + e.Path + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

func newError(event string, err error) *Error {
	var pe *pathError
	if errors.As(err, &pe) {
		return &Error{Event: event, Path: pe.path(), Err: pe.err}
	}
	return &Error{Event: event, Err: err}
}

// eventCase is a typed dispatch event: the Event oneof field holding it and its decoding table.
type eventCase struct {
	fd    protoreflect.FieldDescriptor
	mt    protoreflect.MessageType
	table *table
}

var (
	// eventCases maps dispatch names (MESSAGE_CREATE) to their typed payloads. It is built at init
	// from the Event descriptor and read-only after.
	eventCases = map[string]eventCase{}
	// payloadOneof is Event's oneof of typed payloads.
	payloadOneof protoreflect.OneofDescriptor
	// initErr is kept rather than panicking so a contract mistake surfaces as a decoding error.
	initErr error
)

func init() {
	initErr = buildEventCases()
	// Common untyped names are interned too, so Frame.Type costs nothing for them.
	for _, name := range []string{"READY", "RESUMED", "RATE_LIMITED"} {
		knownNames[name] = name
	}
}

func buildEventCases() error {
	ev := (&discordv1.Event{}).ProtoReflect()
	md := ev.Descriptor()
	payloadOneof = md.Oneofs().ByName("payload")
	if payloadOneof == nil {
		return fmt.Errorf("%s has no oneof named payload", md.FullName())
	}
	fields := payloadOneof.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.Message() == nil {
			return fmt.Errorf("payload case %s is not a message", fd.FullName())
		}
		t, err := tableFor(fd.Message())
		if err != nil {
			return err
		}
		name := strings.ToUpper(string(fd.Name()))
		eventCases[name] = eventCase{fd: fd, mt: ev.NewField(fd).Message().Type(), table: t}
		knownNames[name] = name
	}
	return nil
}

// Typed reports whether the dispatch named name has a typed payload.
func Typed(name string) bool {
	_, ok := eventCases[name]
	return ok
}

// Decode decodes d, the raw "d" of the dispatch named name, into a new message of that event's
// payload type (MESSAGE_CREATE into *discordv1.MessageCreate). It returns (nil, nil) for events
// without a typed payload: their raw JSON is all there is.
func Decode(name string, d []byte) (proto.Message, error) {
	if initErr != nil {
		return nil, initErr
	}
	ec, ok := eventCases[name]
	if !ok {
		return nil, nil
	}
	msg := ec.mt.New()
	if err := decodeTop(msg, ec.table, d); err != nil {
		return nil, newError(name, err)
	}
	return msg.Interface(), nil
}

// DecodeEvent fills ev's payload oneof by decoding ev.Raw as the dispatch ev.Name. An event
// without a typed payload is left as it is.
func DecodeEvent(ev *discordv1.Event) error {
	if initErr != nil {
		return initErr
	}
	ec, ok := eventCases[ev.GetName()]
	if !ok {
		return nil
	}
	m := ev.ProtoReflect()
	m.Clear(ec.fd)
	payload := m.Mutable(ec.fd).Message()
	if err := decodeTop(payload, ec.table, ev.GetRaw()); err != nil {
		m.Clear(ec.fd)
		return newError(ev.GetName(), err)
	}
	return nil
}

// DecodeInto decodes the JSON object d into msg, which may be any message whose field names are
// JSON keys (all of kubecord.discord.v1). Fields already set are overwritten, or merged for
// message fields.
func DecodeInto(msg proto.Message, d []byte) error {
	m := msg.ProtoReflect()
	t, err := tableFor(m.Descriptor())
	if err != nil {
		return err
	}
	if err := decodeTop(m, t, d); err != nil {
		return newError(string(m.Descriptor().FullName()), err)
	}
	return nil
}

// decodeTop decodes the JSON document data, which must hold one object, into m, through the fast
// path when m is t's generated struct.
func decodeTop(m protoreflect.Message, t *table, data []byte) error {
	return decodeWith(m, t, data, true)
}

// decodeWith is decodeTop with the fast path optional, so benchmarks can compare the two.
func decodeWith(m protoreflect.Message, t *table, data []byte, fast bool) error {
	d := decoder{scanner: scanner{data: data}}
	var err error
	if msg := m.Interface(); fast && t.goPtr != nil && reflect.TypeOf(msg) == t.goPtr {
		err = d.objectFast(reflect.ValueOf(msg).UnsafePointer(), t, 1)
	} else {
		err = d.object(m, t, 1)
	}
	if err != nil {
		return err
	}
	d.ws()
	if d.pos != len(d.data) {
		return d.errorf("unexpected data after the JSON object")
	}
	return nil
}
