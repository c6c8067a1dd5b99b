package cache

import (
	"bytes"
	"encoding/json"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// presentKeys returns the top-level keys of the JSON object raw, or nil when raw is not an
// object. Update events are partial: a key that is absent must not clear the cached field,
// and only the raw JSON tells absent from empty.
func presentKeys(raw []byte) map[string]bool {
	if len(raw) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	keys := make(map[string]bool, 16)
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil
		}
		k, ok := t.(string)
		if !ok {
			return nil
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil
		}
		keys[k] = true
	}
	return keys
}

// presentKeysOr returns the keys of raw, or, without raw JSON (events built in code), the
// fields populated in msg.
func presentKeysOr(raw []byte, msg proto.Message) map[string]bool {
	if keys := presentKeys(raw); keys != nil {
		return keys
	}
	keys := make(map[string]bool, 16)
	msg.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		keys[string(fd.Name())] = true
		return true
	})
	return keys
}

// mergeKeys copies into dst the fields of src named in keys (clearing those src lacks: the
// key was present with a null or empty value) and leaves dst's other fields alone. dst and
// src are messages of the same type.
func mergeKeys(dst, src proto.Message, keys map[string]bool) {
	d, s := dst.ProtoReflect(), src.ProtoReflect()
	fields := d.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if !keys[string(fd.Name())] {
			continue
		}
		if s.Has(fd) {
			d.Set(fd, s.Get(fd))
		} else {
			d.Clear(fd)
		}
	}
}
