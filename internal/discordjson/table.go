package discordjson

import (
	"fmt"
	"reflect"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	discordv1 "github.com/kubecord/kubecord/gen/kubecord/discord/v1"
)

// kind is how a JSON value is turned into a field value.
type kind uint8

const (
	kBool kind = iota
	kString
	kBytes
	kInt32
	kUint32
	kInt64
	kUint64
	kSnowflake // fixed64: a decimal string (or number)
	kFloat
	kDouble
	kEnum
	kNullEnum // google.protobuf.NullValue: set exactly when the key is present
	kMessage
	kTimestamp // google.protobuf.Timestamp from an ISO 8601 string
	kValue     // google.protobuf.Value from any JSON value
)

// field is what the decoder knows about one JSON key of a message.
type field struct {
	fd   protoreflect.FieldDescriptor
	name string // the JSON key, for error paths
	kind kind
	list bool
	// For map fields: the key's and the value's decoding.
	mapKey *field
	mapVal *field
	// sub is the table of a message-typed field (or of a map's message values).
	sub *table
	// via is the chain of inline fields from the decoded message down to the one holding fd.
	via []protoreflect.FieldDescriptor
	// owner is the table of the message that holds fd (for merged keys, the inline message's).
	owner *table

	// Fast-path layout in the owner's generated struct (see fast.go).
	rep     rep
	off     uintptr
	goElem  reflect.Type // struct type of message values
	viaFast []viaStep    // layout of via; nil when via is empty or has no fast layout
}

// table maps the JSON keys of one message type to their fields. Tables are built once per
// message type and shared; they are read-only after building.
type table struct {
	md     protoreflect.MessageDescriptor
	fields map[string]*field
	// inlineDone is set once the keys of the message's inline field have been merged in.
	inlineDone bool
	// goStruct is the generated Go struct of md and goPtr a pointer to it; nil for messages
	// without one, which are decoded through protoreflect only.
	goStruct reflect.Type
	goPtr    reflect.Type
	// slots is an open-addressing index of fields by JSON key (see lookup), a power of two long
	// and at most half full.
	slots []*field
}

// keyHash mixes a key's length and three of its bytes. Keys of one message differ enough in
// those for short probe runs, and it is far cheaper than hashing every byte, which showed as the
// largest single cost in profiles of GUILD_CREATE when fields were found through a Go map.
func keyHash(k []byte) uint32 {
	n := len(k)
	if n == 0 {
		return 0
	}
	h := uint32(n)*0x9E3779B1 ^ uint32(k[0])*0x85EBCA77 ^ uint32(k[n-1])*0xC2B2AE3D ^ uint32(k[n/2])*0x27D4EB2F
	return h ^ h>>15
}

// index fills slots from fields.
func (t *table) index() {
	size := 1
	for size < 2*len(t.fields) {
		size <<= 1
	}
	t.slots = make([]*field, size)
	mask := uint32(size - 1)
	for key, f := range t.fields {
		i := keyHash([]byte(key)) & mask
		for t.slots[i] != nil {
			i = (i + 1) & mask
		}
		t.slots[i] = f
	}
}

// lookup returns the field for a JSON key, or nil. Every field's name is its key.
func (t *table) lookup(k []byte) *field {
	mask := uint32(len(t.slots) - 1)
	for i := keyHash(k) & mask; ; i = (i + 1) & mask {
		f := t.slots[i]
		if f == nil || f.name == string(k) {
			return f
		}
	}
}

var (
	tablesMu sync.RWMutex
	tables   = map[protoreflect.MessageDescriptor]*table{}
)

// tableFor returns the decoding table of md, building it (and the tables of every message it
// reaches) on first use.
func tableFor(md protoreflect.MessageDescriptor) (*table, error) {
	tablesMu.RLock()
	t, ok := tables[md]
	tablesMu.RUnlock()
	if ok {
		return t, nil
	}
	tablesMu.Lock()
	defer tablesMu.Unlock()
	if t, ok := tables[md]; ok {
		return t, nil
	}
	b := builder{new: map[protoreflect.MessageDescriptor]*table{}}
	t = b.table(md)
	for _, nt := range b.new {
		attachGo(nt)
	}
	for _, nt := range b.new {
		for _, f := range nt.fields {
			if f.kind == kMessage && f.rep != repSlow && f.sub.goStruct == nil {
				f.rep = repSlow
			}
		}
	}
	for _, nt := range b.new {
		if err := b.mergeInline(nt, 0); err != nil {
			return nil, err
		}
	}
	for _, nt := range b.new {
		for _, f := range nt.fields {
			if f.via != nil && nt.goStruct != nil && !attachVia(nt, f) {
				f.viaFast = nil
			}
		}
		nt.index()
	}
	for d, nt := range b.new {
		tables[d] = nt
	}
	return t, nil
}

// builder builds the tables of a graph of messages; it runs under tablesMu.
type builder struct {
	new map[protoreflect.MessageDescriptor]*table
}

func (b *builder) table(md protoreflect.MessageDescriptor) *table {
	if t, ok := tables[md]; ok {
		return t
	}
	if t, ok := b.new[md]; ok {
		return t // possibly still being filled: recursive messages share the pointer
	}
	t := &table{md: md, fields: map[string]*field{}}
	b.new[md] = t
	fds := md.Fields()
	for i := range fds.Len() {
		fd := fds.Get(i)
		f := &field{fd: fd, name: string(fd.Name()), list: fd.IsList(), owner: t}
		if fd.IsMap() {
			f.mapKey = b.plain(fd.MapKey())
			f.mapVal = b.plain(fd.MapValue())
		} else {
			f.kind, f.sub = b.kindOf(fd)
		}
		t.fields[f.name] = f
	}
	return t
}

// plain builds the field of a map key or value.
func (b *builder) plain(fd protoreflect.FieldDescriptor) *field {
	f := &field{fd: fd, name: string(fd.Name())}
	f.kind, f.sub = b.kindOf(fd)
	return f
}

func (b *builder) kindOf(fd protoreflect.FieldDescriptor) (kind, *table) {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return kBool, nil
	case protoreflect.StringKind:
		return kString, nil
	case protoreflect.BytesKind:
		return kBytes, nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return kInt32, nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return kUint32, nil
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return kInt64, nil
	case protoreflect.Uint64Kind:
		return kUint64, nil
	case protoreflect.Fixed64Kind:
		return kSnowflake, nil
	case protoreflect.FloatKind:
		return kFloat, nil
	case protoreflect.DoubleKind:
		return kDouble, nil
	case protoreflect.EnumKind:
		if fd.Enum().FullName() == "google.protobuf.NullValue" {
			return kNullEnum, nil
		}
		return kEnum, nil
	}
	// Message and group kinds.
	switch fd.Message().FullName() {
	case "google.protobuf.Timestamp":
		return kTimestamp, nil
	case "google.protobuf.Value":
		return kValue, nil
	}
	return kMessage, b.table(fd.Message())
}

// mergeInline adds to t the keys of its inline field's message that t does not have itself,
// after merging that message's own inline field first.
func (b *builder) mergeInline(t *table, depth int) error {
	if t.inlineDone {
		return nil
	}
	if depth > MaxDepth {
		return fmt.Errorf("message %s: inline fields form a cycle", t.md.FullName())
	}
	var inline *field
	for _, f := range t.fields {
		if f.via != nil || !isInline(f.fd) {
			continue
		}
		if f.kind != kMessage || f.list || f.mapKey != nil {
			return fmt.Errorf("field %s: inline needs a singular message field", f.fd.FullName())
		}
		if inline != nil {
			return fmt.Errorf("message %s has two inline fields", t.md.FullName())
		}
		inline = f
	}
	if inline != nil {
		if err := b.mergeInline(inline.sub, depth+1); err != nil {
			return err
		}
		for key, sf := range inline.sub.fields {
			if _, own := t.fields[key]; own {
				continue
			}
			merged := *sf
			merged.via = append([]protoreflect.FieldDescriptor{inline.fd}, sf.via...)
			t.fields[key] = &merged
		}
	}
	t.inlineDone = true
	return nil
}

func isInline(fd protoreflect.FieldDescriptor) bool {
	opts, ok := fd.Options().(*descriptorpb.FieldOptions)
	if !ok || opts == nil {
		return false
	}
	v, ok := proto.GetExtension(opts, discordv1.E_Inline).(bool)
	return ok && v
}
