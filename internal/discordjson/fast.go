package discordjson

import (
	"reflect"
	"strconv"
	"strings"
	"unsafe"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The fast path writes decoded values straight into the fields of generated Go structs, as
// generated code does (msg.Id = 5), at offsets found once by reflection from the struct tags.
// protoreflect's Set converts every value through reflect.Value, which costs an allocation per
// scalar; writing directly makes the decoder about twice as fast (see BenchmarkDecode). Fields
// whose Go shape the fast path does not know (maps, oneof members) fall back to protoreflect for
// that field only, and messages that are not generated structs use protoreflect throughout.

// rep is how a field is laid out in its generated Go struct.
type rep uint8

const (
	repSlow   rep = iota // not handled by the fast path: use protoreflect
	repDirect            // the value itself (proto3 scalars without presence, bytes)
	repPtr               // a pointer: optional scalars and message fields
	repSlice             // a slice: repeated fields
)

var (
	timestampPtrType = reflect.TypeFor[*timestamppb.Timestamp]()
	valuePtrType     = reflect.TypeFor[*structpb.Value]()
)

// goStructOf returns the generated struct type of md, or nil when md has no generated Go type
// registered (dynamic messages).
func goStructOf(md protoreflect.MessageDescriptor) reflect.Type {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName())
	if err != nil || mt.Descriptor() != md {
		return nil
	}
	t := reflect.TypeOf(mt.Zero().Interface())
	if t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return nil
	}
	return t.Elem()
}

// attachGo fills the fast-path layout of t's own fields (not yet the inline-merged ones).
func attachGo(t *table) {
	st := goStructOf(t.md)
	if st == nil {
		return
	}
	t.goStruct = st
	t.goPtr = reflect.PointerTo(st)
	byNumber := map[protoreflect.FieldNumber]reflect.StructField{}
	for i := range st.NumField() {
		sf := st.Field(i)
		tag := sf.Tag.Get("protobuf")
		if tag == "" {
			continue
		}
		parts := strings.Split(tag, ",")
		if len(parts) < 2 {
			continue
		}
		n, err := strconv.Atoi(parts[1])
		if err != nil {
			continue
		}
		byNumber[protoreflect.FieldNumber(n)] = sf
	}
	for _, f := range t.fields {
		if f.via != nil {
			continue
		}
		sf, ok := byNumber[f.fd.Number()]
		if !ok {
			continue // a oneof member: its Go field is an interface
		}
		f.off = sf.Offset
		f.rep = repFor(f, sf.Type)
		if f.rep == repPtr && f.kind == kMessage {
			f.goElem = sf.Type.Elem()
		}
		if f.rep == repSlice && f.kind == kMessage {
			f.goElem = sf.Type.Elem().Elem()
		}
	}
}

// repFor checks that the Go type of a field is what the fast path will write, and says how.
func repFor(f *field, gt reflect.Type) rep {
	if f.mapKey != nil {
		return repSlow
	}
	base := gt
	r := repDirect
	switch {
	case f.list:
		if gt.Kind() != reflect.Slice {
			return repSlow
		}
		base, r = gt.Elem(), repSlice
		if f.kind == kMessage {
			if base.Kind() != reflect.Pointer || base.Elem().Kind() != reflect.Struct {
				return repSlow
			}
			return repSlice
		}
		if f.kind == kTimestamp || f.kind == kValue || f.kind == kNullEnum || f.kind == kBytes {
			return repSlow // rare; protoreflect handles them
		}
	case f.kind == kMessage:
		if gt.Kind() != reflect.Pointer || gt.Elem().Kind() != reflect.Struct {
			return repSlow
		}
		return repPtr
	case f.kind == kTimestamp:
		if gt != timestampPtrType {
			return repSlow
		}
		return repPtr
	case f.kind == kValue:
		if gt != valuePtrType {
			return repSlow
		}
		return repPtr
	case gt.Kind() == reflect.Pointer:
		base, r = gt.Elem(), repPtr
	}
	want := map[kind]reflect.Kind{
		kBool: reflect.Bool, kString: reflect.String, kBytes: reflect.Slice, kInt32: reflect.Int32,
		kUint32: reflect.Uint32, kInt64: reflect.Int64, kUint64: reflect.Uint64, kSnowflake: reflect.Uint64,
		kFloat: reflect.Float32, kDouble: reflect.Float64, kEnum: reflect.Int32, kNullEnum: reflect.Int32,
	}[f.kind]
	if base.Kind() != want || (f.kind == kBytes && base.Elem().Kind() != reflect.Uint8) {
		return repSlow
	}
	return r
}

// attachVia records the Go layout of a merged field's inline chain; false means the chain
// cannot be walked by the fast path.
func attachVia(t *table, f *field) bool {
	cur := t
	f.viaFast = make([]viaStep, 0, len(f.via))
	for _, ifd := range f.via {
		inl := cur.fields[string(ifd.Name())]
		if inl == nil || inl.fd != ifd || inl.rep != repPtr || inl.goElem == nil {
			return false
		}
		f.viaFast = append(f.viaFast, viaStep{off: inl.off, elem: inl.goElem})
		cur = inl.sub
	}
	return true
}

// viaStep is one inline field on the way to a merged key's field: its offset and struct type.
type viaStep struct {
	off  uintptr
	elem reflect.Type
}

// newStruct allocates a zeroed generated message struct.
func newStruct(t reflect.Type) unsafe.Pointer {
	return reflect.New(t).UnsafePointer()
}

// reflectAt views the generated struct at p as a protoreflect.Message.
func (t *table) reflectAt(p unsafe.Pointer) protoreflect.Message {
	return reflect.NewAt(t.goStruct, p).Interface().(proto.Message).ProtoReflect()
}

// objectFast is object for a generated struct at p.
func (d *decoder) objectFast(p unsafe.Pointer, t *table, depth int) error {
	c, err := d.next()
	if err != nil {
		return err
	}
	if c != '{' {
		return mismatch("object", c)
	}
	if depth > MaxDepth {
		return d.errorf("JSON nested deeper than " + strconv.Itoa(MaxDepth) + " levels")
	}
	empty, err := d.openObject()
	if err != nil {
		return err
	}
	for !empty {
		key, err := d.readKey()
		if err != nil {
			return err
		}
		f := t.lookup(key)
		switch {
		case f == nil:
			if err := d.skipValue(depth); err != nil {
				return atKey(err, string(key))
			}
		case f.via != nil:
			target := p
			if f.viaFast == nil {
				// The chain has no fast layout: walk it with protoreflect.
				m := t.reflectAt(p)
				for _, ifd := range f.via {
					m = m.Mutable(ifd).Message()
				}
				err = d.field(m, f, depth)
			} else {
				for _, step := range f.viaFast {
					slot := (*unsafe.Pointer)(unsafe.Add(target, step.off))
					if *slot == nil {
						*slot = newStruct(step.elem)
					}
					target = *slot
				}
				err = d.fieldFast(target, f, depth)
			}
			if err != nil {
				return atKey(err, f.name)
			}
		default:
			if err := d.fieldFast(p, f, depth); err != nil {
				return atKey(err, f.name)
			}
		}
		closed, err := d.endOfContainer('}')
		if err != nil {
			return err
		}
		empty = closed
	}
	return nil
}

// fieldFast decodes f's value into the struct at p (the struct that owns f).
func (d *decoder) fieldFast(p unsafe.Pointer, f *field, depth int) error {
	if f.rep == repSlow {
		return d.field(f.owner.reflectAt(p), f, depth)
	}
	fp := unsafe.Add(p, f.off)
	c, err := d.next()
	if err != nil {
		return err
	}
	if f.rep == repSlice {
		if c == 'n' {
			return d.literal("null")
		}
		return d.listFast(fp, f, c, depth)
	}
	if f.kind == kMessage {
		if c == 'n' {
			return d.literal("null")
		}
		slot := (*unsafe.Pointer)(fp)
		if *slot == nil {
			*slot = newStruct(f.goElem)
		}
		return d.objectFast(*slot, f.sub, depth+1)
	}
	v, ok, err := d.scalar(f, c, depth)
	if err != nil || !ok {
		return err
	}
	store(fp, f, v)
	return nil
}

// listFast decodes a JSON array into a repeated field's slice at fp. c is the value's first byte.
func (d *decoder) listFast(fp unsafe.Pointer, f *field, c byte, depth int) error {
	if c != '[' {
		return mismatch("array", c)
	}
	if depth+1 > MaxDepth {
		return d.errorf("JSON nested deeper than " + strconv.Itoa(MaxDepth) + " levels")
	}
	empty, err := d.openArray()
	if err != nil {
		return err
	}
	// A repeated key replaces, like any other (the last one wins). Every slice header has the
	// same layout, so one nil store resets any element type.
	*(*[]byte)(fp) = nil
	for i := 0; !empty; i++ {
		c, err := d.next()
		if err != nil {
			return err
		}
		switch {
		case c == 'n':
			// Discord sends no nulls inside arrays; dropping one keeps the rest usable.
			if err := d.literal("null"); err != nil {
				return atIndex(err, i)
			}
		case f.kind == kMessage:
			e := newStruct(f.goElem)
			if err := d.objectFast(e, f.sub, depth+2); err != nil {
				return atIndex(err, i)
			}
			appendTo(fp, e)
		default:
			v, ok, err := d.scalar(f, c, depth+1)
			if err != nil {
				return atIndex(err, i)
			}
			if ok {
				appendScalar(fp, f.kind, v)
			}
		}
		closed, err := d.endOfContainer(']')
		if err != nil {
			return err
		}
		empty = closed
	}
	return nil
}

// appendTo appends to the slice of T at fp. A []*Msg is appended to as []unsafe.Pointer, which
// has the same layout and is scanned the same way by the garbage collector.
func appendTo[T any](fp unsafe.Pointer, v T) {
	s := (*[]T)(fp)
	*s = append(*s, v)
}

func appendScalar(fp unsafe.Pointer, k kind, v protoreflect.Value) {
	switch k {
	case kBool:
		appendTo(fp, v.Bool())
	case kString:
		appendTo(fp, v.String())
	case kInt32:
		appendTo(fp, int32(v.Int()))
	case kEnum:
		appendTo(fp, int32(v.Enum()))
	case kUint32:
		appendTo(fp, uint32(v.Uint()))
	case kInt64:
		appendTo(fp, v.Int())
	case kUint64, kSnowflake:
		appendTo(fp, v.Uint())
	case kFloat:
		appendTo(fp, float32(v.Float()))
	case kDouble:
		appendTo(fp, v.Float())
	}
}

// store writes a decoded scalar (or Timestamp or Value message) into the field slot fp.
func store(fp unsafe.Pointer, f *field, v protoreflect.Value) {
	switch f.kind {
	case kTimestamp:
		*(**timestamppb.Timestamp)(fp) = v.Message().Interface().(*timestamppb.Timestamp)
		return
	case kValue:
		*(**structpb.Value)(fp) = v.Message().Interface().(*structpb.Value)
		return
	}
	if f.rep == repPtr {
		// Optional scalars: the pointer marks presence.
		switch f.kind {
		case kBool:
			x := v.Bool()
			*(**bool)(fp) = &x
		case kString:
			x := v.String()
			*(**string)(fp) = &x
		case kBytes:
			x := v.Bytes()
			*(**[]byte)(fp) = &x
		case kInt32:
			x := int32(v.Int())
			*(**int32)(fp) = &x
		case kEnum, kNullEnum:
			x := int32(v.Enum())
			*(**int32)(fp) = &x
		case kUint32:
			x := uint32(v.Uint())
			*(**uint32)(fp) = &x
		case kInt64:
			x := v.Int()
			*(**int64)(fp) = &x
		case kUint64, kSnowflake:
			x := v.Uint()
			*(**uint64)(fp) = &x
		case kFloat:
			x := float32(v.Float())
			*(**float32)(fp) = &x
		case kDouble:
			x := v.Float()
			*(**float64)(fp) = &x
		}
		return
	}
	switch f.kind {
	case kBool:
		*(*bool)(fp) = v.Bool()
	case kString:
		*(*string)(fp) = v.String()
	case kBytes:
		*(*[]byte)(fp) = v.Bytes()
	case kInt32:
		*(*int32)(fp) = int32(v.Int())
	case kEnum, kNullEnum:
		*(*int32)(fp) = int32(v.Enum())
	case kUint32:
		*(*uint32)(fp) = uint32(v.Uint())
	case kInt64:
		*(*int64)(fp) = v.Int()
	case kUint64, kSnowflake:
		*(*uint64)(fp) = v.Uint()
	case kFloat:
		*(*float32)(fp) = float32(v.Float())
	case kDouble:
		*(*float64)(fp) = v.Float()
	}
}
