package discordjson

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// decoder decodes one JSON document into messages described by tables.
type decoder struct {
	scanner
}

// pathError is an error inside a JSON document, with the path to it collected innermost first as
// the error travels up the recursion (so the success path never builds paths).
type pathError struct {
	rev []string
	err error
}

func (e *pathError) Error() string { return e.path() + ": " + e.err.Error() }

func (e *pathError) Unwrap() error { return e.err }

func (e *pathError) path() string {
	var b strings.Builder
	for i := len(e.rev) - 1; i >= 0; i-- {
		b.WriteString(e.rev[i])
	}
	return b.String()
}

// at adds a path segment to err.
func at(err error, seg string) error {
	var pe *pathError
	if errors.As(err, &pe) {
		pe.rev = append(pe.rev, seg)
		return pe
	}
	return &pathError{rev: []string{seg}, err: err}
}

func atKey(err error, key string) error { return at(err, "."+key) }

func atIndex(err error, i int) error { return at(err, "["+strconv.Itoa(i)+"]") }

// typeName names the JSON type a value starting with c has, for errors.
func typeName(c byte) string {
	switch c {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	if c == '-' || ('0' <= c && c <= '9') {
		return "number"
	}
	return describeByte(c)
}

func mismatch(want string, c byte) error {
	return fmt.Errorf("expected %s, found %s", want, typeName(c))
}

// object decodes a JSON object into m. The scanner is at the object's first byte; depth is the
// nesting depth of the object itself.
func (d *decoder) object(m protoreflect.Message, t *table, depth int) error {
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
		if f == nil {
			// Unknown keys stay in the event's raw JSON.
			if err := d.skipValue(depth); err != nil {
				return atKey(err, string(key))
			}
		} else {
			target := m
			for _, ifd := range f.via {
				target = target.Mutable(ifd).Message()
			}
			if err := d.field(target, f, depth); err != nil {
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

// field decodes the value of f into m.
func (d *decoder) field(m protoreflect.Message, f *field, depth int) error {
	c, err := d.next()
	if err != nil {
		return err
	}
	switch {
	case f.mapKey != nil:
		if c == 'n' {
			return d.literal("null")
		}
		m.Clear(f.fd)
		return d.mapField(m.Mutable(f.fd).Map(), f, depth)
	case f.list:
		if c == 'n' {
			return d.literal("null")
		}
		m.Clear(f.fd)
		return d.listField(m, f, depth)
	case f.kind == kMessage:
		if c == 'n' {
			return d.literal("null")
		}
		return d.object(m.Mutable(f.fd).Message(), f.sub, depth+1)
	}
	v, ok, err := d.scalar(f, c, depth)
	if err != nil || !ok {
		return err
	}
	m.Set(f.fd, v)
	return nil
}

func (d *decoder) listField(m protoreflect.Message, f *field, depth int) error {
	c, err := d.next()
	if err != nil {
		return err
	}
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
	list := m.Mutable(f.fd).List()
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
			if err := d.object(list.AppendMutable().Message(), f.sub, depth+2); err != nil {
				return atIndex(err, i)
			}
		default:
			v, ok, err := d.scalar(f, c, depth+1)
			if err != nil {
				return atIndex(err, i)
			}
			if ok {
				list.Append(v)
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

func (d *decoder) mapField(mp protoreflect.Map, f *field, depth int) error {
	c, err := d.next()
	if err != nil {
		return err
	}
	if c != '{' {
		return mismatch("object", c)
	}
	if depth+1 > MaxDepth {
		return d.errorf("JSON nested deeper than " + strconv.Itoa(MaxDepth) + " levels")
	}
	empty, err := d.openObject()
	if err != nil {
		return err
	}
	for !empty {
		rawKey, err := d.readKey()
		if err != nil {
			return err
		}
		keyText := string(rawKey)
		key, err := mapKey(f.mapKey, keyText)
		if err != nil {
			return atKey(err, keyText)
		}
		c, err := d.next()
		if err != nil {
			return err
		}
		switch {
		case c == 'n' && f.mapVal.kind != kValue && f.mapVal.kind != kNullEnum:
			if err := d.literal("null"); err != nil {
				return atKey(err, keyText)
			}
		case f.mapVal.kind == kMessage:
			if err := d.object(mp.Mutable(key).Message(), f.mapVal.sub, depth+2); err != nil {
				return atKey(err, keyText)
			}
		default:
			v, ok, err := d.scalar(f.mapVal, c, depth+1)
			if err != nil {
				return atKey(err, keyText)
			}
			if ok {
				mp.Set(key, v)
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

// mapKey converts a JSON object key to a protobuf map key of f's kind.
func mapKey(f *field, text string) (protoreflect.MapKey, error) {
	b := []byte(text)
	switch f.kind {
	case kString:
		return protoreflect.ValueOfString(text).MapKey(), nil
	case kBool:
		switch text {
		case "true":
			return protoreflect.ValueOfBool(true).MapKey(), nil
		case "false":
			return protoreflect.ValueOfBool(false).MapKey(), nil
		}
		return protoreflect.MapKey{}, fmt.Errorf("invalid boolean map key %q", text)
	case kSnowflake:
		v, ok := parseUint(b)
		if !ok {
			return protoreflect.MapKey{}, fmt.Errorf("invalid snowflake %q", text)
		}
		return protoreflect.ValueOfUint64(v).MapKey(), nil
	}
	v, err := intValue(f, b, true)
	if err != nil {
		return protoreflect.MapKey{}, err
	}
	return v.MapKey(), nil
}

// scalar decodes a value that is not a message (timestamps and Values included). The scanner is
// at its first byte c. ok is false for a null that leaves the field unset.
func (d *decoder) scalar(f *field, c byte, depth int) (v protoreflect.Value, ok bool, err error) {
	if c == 'n' {
		if err := d.literal("null"); err != nil {
			return v, false, err
		}
		switch f.kind {
		case kNullEnum:
			return protoreflect.ValueOfEnum(0), true, nil
		case kValue:
			return protoreflect.ValueOfMessage(structpb.NewNullValue().ProtoReflect()), true, nil
		}
		return v, false, nil
	}
	switch f.kind {
	case kBool:
		switch c {
		case 't':
			return protoreflect.ValueOfBool(true), true, d.literal("true")
		case 'f':
			return protoreflect.ValueOfBool(false), true, d.literal("false")
		}
		return v, false, mismatch("boolean", c)
	case kString:
		if c != '"' {
			return v, false, mismatch("string", c)
		}
		b, err := d.readString()
		if err != nil {
			return v, false, err
		}
		return protoreflect.ValueOfString(string(b)), true, nil
	case kBytes:
		if c != '"' {
			return v, false, mismatch("base64 string", c)
		}
		b, err := d.readString()
		if err != nil {
			return v, false, err
		}
		out, err := base64.StdEncoding.DecodeString(string(b))
		if err != nil {
			return v, false, fmt.Errorf("invalid base64: %w", err)
		}
		return protoreflect.ValueOfBytes(out), true, nil
	case kSnowflake:
		id, err := readSnowflake(&d.scanner, c)
		if err != nil {
			return v, false, err
		}
		return protoreflect.ValueOfUint64(id), true, nil
	case kInt32, kUint32, kInt64, kUint64, kEnum:
		return d.integer(f, c)
	case kFloat, kDouble:
		if c != '-' && (c < '0' || c > '9') {
			return v, false, mismatch("number", c)
		}
		text, _, err := d.readNumber()
		if err != nil {
			return v, false, err
		}
		x, err := parseFloat(text)
		if err != nil {
			return v, false, fmt.Errorf("number %s out of range", text)
		}
		if f.kind == kFloat {
			if math.Abs(x) > math.MaxFloat32 {
				return v, false, fmt.Errorf("number %s out of range for float", text)
			}
			return protoreflect.ValueOfFloat32(float32(x)), true, nil
		}
		return protoreflect.ValueOfFloat64(x), true, nil
	case kNullEnum:
		return v, false, mismatch("null", c)
	case kTimestamp:
		if c != '"' {
			return v, false, mismatch("ISO 8601 timestamp string", c)
		}
		b, err := d.readString()
		if err != nil {
			return v, false, err
		}
		sec, nanos, err := parseTimestamp(b)
		if err != nil {
			return v, false, fmt.Errorf("%w %q", err, b)
		}
		ts := &timestamppb.Timestamp{Seconds: sec, Nanos: nanos}
		return protoreflect.ValueOfMessage(ts.ProtoReflect()), true, nil
	case kValue:
		val, err := d.anyValue(c, depth)
		if err != nil {
			return v, false, err
		}
		return protoreflect.ValueOfMessage(val.ProtoReflect()), true, nil
	}
	return v, false, fmt.Errorf("field %s has an unsupported type", f.fd.FullName())
}

// integer decodes an integer field. 64-bit fields also accept a decimal string, the form Discord
// uses for permission bitfields and other values beyond 2^53.
func (d *decoder) integer(f *field, c byte) (protoreflect.Value, bool, error) {
	var text []byte
	quoted := false
	switch {
	case c == '"' && (f.kind == kInt64 || f.kind == kUint64):
		b, err := d.readString()
		if err != nil {
			return protoreflect.Value{}, false, err
		}
		text, quoted = b, true
	case c == '-' || ('0' <= c && c <= '9'):
		b, isInt, err := d.readNumber()
		if err != nil {
			return protoreflect.Value{}, false, err
		}
		if !isInt {
			// 1e3 or 2.0 still name an integer; anything else is wrong.
			x, err := parseFloat(b)
			if err != nil || x != math.Trunc(x) || math.Abs(x) > 1<<53 {
				return protoreflect.Value{}, false, fmt.Errorf("expected an integer, found %s", b)
			}
			b = strconv.AppendInt(nil, int64(x), 10)
		}
		text = b
	default:
		return protoreflect.Value{}, false, mismatch("integer", c)
	}
	v, err := intValue(f, text, quoted)
	return v, err == nil, err
}

// intValue parses decimal integer text into a value of f's integer kind, checking its range.
func intValue(f *field, text []byte, quoted bool) (protoreflect.Value, error) {
	neg := len(text) > 0 && text[0] == '-'
	digitsText := text
	if neg {
		digitsText = text[1:]
	}
	if quoted && (len(digitsText) == 0 || (digitsText[0] == '0' && len(digitsText) > 1)) {
		return protoreflect.Value{}, fmt.Errorf("invalid integer %q", text)
	}
	u, ok := parseUint(digitsText)
	if !ok {
		return protoreflect.Value{}, fmt.Errorf("invalid or out of range integer %q", text)
	}
	bad := func() (protoreflect.Value, error) {
		return protoreflect.Value{}, fmt.Errorf("integer %s out of range for %s", text, f.fd.Kind())
	}
	switch f.kind {
	case kUint64:
		if neg && u != 0 {
			return bad()
		}
		return protoreflect.ValueOfUint64(u), nil
	case kUint32:
		if (neg && u != 0) || u > math.MaxUint32 {
			return bad()
		}
		return protoreflect.ValueOfUint32(uint32(u)), nil
	}
	var i int64
	switch {
	case !neg && u <= math.MaxInt64:
		i = int64(u)
	case neg && u <= 1<<63:
		i = -int64(u-1) - 1
	default:
		return bad()
	}
	switch f.kind {
	case kInt64:
		return protoreflect.ValueOfInt64(i), nil
	case kInt32, kEnum:
		if i < math.MinInt32 || i > math.MaxInt32 {
			return bad()
		}
		if f.kind == kEnum {
			return protoreflect.ValueOfEnum(protoreflect.EnumNumber(i)), nil
		}
		return protoreflect.ValueOfInt32(int32(i)), nil
	}
	return bad()
}

// anyValue decodes any JSON value into a google.protobuf.Value. depth is that of the field
// holding it.
func (d *decoder) anyValue(c byte, depth int) (*structpb.Value, error) {
	switch c {
	case '"':
		b, err := d.readString()
		if err != nil {
			return nil, err
		}
		return structpb.NewStringValue(string(b)), nil
	case 't', 'f':
		word := "true"
		if c == 'f' {
			word = "false"
		}
		if err := d.literal(word); err != nil {
			return nil, err
		}
		return structpb.NewBoolValue(c == 't'), nil
	case 'n':
		if err := d.literal("null"); err != nil {
			return nil, err
		}
		return structpb.NewNullValue(), nil
	case '{':
		if depth+1 > MaxDepth {
			return nil, d.errorf("JSON nested deeper than " + strconv.Itoa(MaxDepth) + " levels")
		}
		st := &structpb.Struct{Fields: map[string]*structpb.Value{}}
		empty, err := d.openObject()
		if err != nil {
			return nil, err
		}
		for !empty {
			k, err := d.readKey()
			if err != nil {
				return nil, err
			}
			key := string(k)
			c, err := d.next()
			if err != nil {
				return nil, err
			}
			v, err := d.anyValue(c, depth+1)
			if err != nil {
				return nil, atKey(err, key)
			}
			st.Fields[key] = v
			closed, err := d.endOfContainer('}')
			if err != nil {
				return nil, err
			}
			empty = closed
		}
		return structpb.NewStructValue(st), nil
	case '[':
		if depth+1 > MaxDepth {
			return nil, d.errorf("JSON nested deeper than " + strconv.Itoa(MaxDepth) + " levels")
		}
		lv := &structpb.ListValue{}
		empty, err := d.openArray()
		if err != nil {
			return nil, err
		}
		for i := 0; !empty; i++ {
			c, err := d.next()
			if err != nil {
				return nil, err
			}
			v, err := d.anyValue(c, depth+1)
			if err != nil {
				return nil, atIndex(err, i)
			}
			lv.Values = append(lv.Values, v)
			closed, err := d.endOfContainer(']')
			if err != nil {
				return nil, err
			}
			empty = closed
		}
		return structpb.NewListValue(lv), nil
	}
	text, _, err := d.readNumber()
	if err != nil {
		return nil, err
	}
	x, err := parseFloat(text)
	if err != nil {
		return nil, fmt.Errorf("number %s out of range", text)
	}
	return structpb.NewNumberValue(x), nil
}
