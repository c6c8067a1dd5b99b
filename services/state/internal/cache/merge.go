package cache

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// presentKeys returns the top-level keys of the JSON object raw, or nil when raw is not an
// object. Update events are partial: a key that is absent must not clear the cached field,
// and only the raw JSON tells absent from empty. It scans without decoding values (updates
// are frequent); keys with escapes or invalid UTF-8 take the encoding/json path.
func presentKeys(raw []byte) map[string]bool {
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return nil
	}
	keys := make(map[string]bool, 16)
	i = skipSpace(raw, i+1)
	if i < len(raw) && raw[i] == '}' {
		return keys
	}
	for {
		if i >= len(raw) || raw[i] != '"' {
			return nil
		}
		end := stringEnd(raw, i)
		if end < 0 {
			return nil
		}
		key := raw[i+1 : end-1]
		if bytes.IndexByte(key, '\\') >= 0 || !utf8.Valid(key) {
			return presentKeysSlow(raw)
		}
		i = skipSpace(raw, end)
		if i >= len(raw) || raw[i] != ':' {
			return nil
		}
		if i = skipValue(raw, skipSpace(raw, i+1)); i < 0 {
			return nil
		}
		keys[string(key)] = true
		i = skipSpace(raw, i)
		if i >= len(raw) {
			return nil
		}
		switch raw[i] {
		case ',':
			i = skipSpace(raw, i+1)
		case '}':
			return keys
		default:
			return nil
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index just past the string starting at b[i] == '"', or -1.
func stringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// skipValue returns the index just past the JSON value starting at b[i], or -1 when it is
// cut short. Nested values are skipped by bracket depth; scalars are not validated.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				if i = stringEnd(b, i); i < 0 {
					return -1
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	case ',', '}', ']', ':':
		return -1
	default:
		start := i
		for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\t' && b[i] != '\n' && b[i] != '\r' {
			i++
		}
		if i == start {
			return -1
		}
		return i
	}
}

// presentKeysSlow is presentKeys through encoding/json, for keys with escapes.
func presentKeysSlow(raw []byte) map[string]bool {
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
