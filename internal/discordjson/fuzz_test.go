package discordjson

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"google.golang.org/protobuf/proto"
)

// seedPayloads adds every testdata payload plus hand-picked hostile inputs.
func seedPayloads(f *testing.F, add func(name string, raw []byte)) {
	f.Helper()
	for _, path := range eventFiles(f) {
		raw, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		add(eventName(path), raw)
	}
	for _, s := range []string{
		``, `{}`, `null`, `[]`, `{"id":"x"}`, `{"id":18446744073709551616}`, `{"content":"\ud800"}`,
		`{"timestamp":"2026-02-29T00:00:00Z"}`, `{"nonce":[[[[[[{"a":null}]]]]]]}`, `{"x":` + nest(70, "[", "", "]") + `}`,
		nest(70, `{"referenced_message":`, "{}", "}"), `{"mentions":[{"member":{"roles":["1",2,null]}}]}`,
		"{\"content\":\"\xff\"}", `{"data":{"resolved":{"users":{"1":{"id":"1"}}}}}`, `{"flags":-0}`, `{"id":"1"`,
	} {
		add("MESSAGE_CREATE", []byte(s))
		add("INTERACTION_CREATE", []byte(s))
	}
}

// FuzzDecode checks that no input panics, that errors are *Error, that a successful decode yields
// a valid protobuf message, decodes the same way twice, and that the same bytes framed as a
// dispatch parse and route too.
func FuzzDecode(f *testing.F) {
	seedPayloads(f, func(name string, raw []byte) { f.Add(name, raw) })
	f.Fuzz(func(t *testing.T, name string, raw []byte) {
		m, err := Decode(name, raw)
		if err != nil {
			var de *Error
			if !errors.As(err, &de) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			if m != nil {
				t.Fatal("message returned with an error")
			}
			return
		}
		if m == nil {
			return // untyped event
		}
		if _, err := proto.Marshal(m); err != nil {
			t.Fatalf("decoded message does not marshal: %v", err)
		}
		again, err := Decode(name, raw)
		if err != nil || !proto.Equal(m, again) {
			t.Fatalf("second decode differs: %v", err)
		}
		// Typed names are plain upper-case words, so the frame below is well-formed.
		frame := append(append([]byte(`{"op":0,"s":1,"t":"`+name+`","d":`), raw...), '}')
		fr, err := ParseFrame(frame)
		if err != nil {
			t.Fatalf("decodable payload does not parse as a frame's d: %v", err)
		}
		if !bytes.Equal(fr.D, bytes.TrimSpace(raw)) {
			t.Fatalf("framed d = %q, want %q", fr.D, raw)
		}
		if _, err := RoutingKey(name, raw); err != nil {
			t.Fatalf("decodable payload has no readable routing key: %v", err)
		}
	})
}

// FuzzParseFrame checks that no frame panics, that D comes from the frame, and that parsing is
// deterministic and D then decodes without panicking.
func FuzzParseFrame(f *testing.F) {
	seedPayloads(f, func(name string, raw []byte) {
		f.Add(append(append([]byte(`{"t":"`+name+`","s":42,"op":0,"d":`), raw...), '}'))
	})
	for _, s := range []string{
		`{"op":11}`, `{"t":null,"s":null,"op":7,"d":null}`, `{"op":10,"d":{"heartbeat_interval":41250}}`,
		`{"op":9,"d":false}`, `{"op":"0"}`, `{"op":0,"s":-1}`, `{"op":0,"t":"\u0041"}`, `{"op":0}{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		fr, err := ParseFrame(frame)
		if err != nil {
			return
		}
		if fr.D != nil && !bytes.Contains(frame, fr.D) {
			t.Fatal("D is not part of the frame")
		}
		again, err := ParseFrame(frame)
		if err != nil || again.Op != fr.Op || again.Seq != fr.Seq || again.Type != fr.Type || !bytes.Equal(again.D, fr.D) {
			t.Fatal("second parse differs")
		}
		if fr.D != nil {
			_, _ = Decode(fr.Type, fr.D)
			_, _ = RoutingKey(fr.Type, fr.D)
		}
	})
}
