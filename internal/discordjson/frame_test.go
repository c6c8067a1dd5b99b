package discordjson

import (
	"strings"
	"testing"
)

func TestParseFrame(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		frame string
		want  Frame
	}{
		{"dispatch", `{"t":"MESSAGE_CREATE","s":42,"op":0,"d":{"id":"1","content":"x"}}`,
			Frame{Op: 0, Seq: 42, Type: "MESSAGE_CREATE", D: []byte(`{"id":"1","content":"x"}`)}},
		{"keys in Discord's usual order", `{"op":0,"d":{"a":[1,2]},"s":1,"t":"READY"}`,
			Frame{Op: 0, Seq: 1, Type: "READY", D: []byte(`{"a":[1,2]}`)}},
		{"hello", `{"t":null,"s":null,"op":10,"d":{"heartbeat_interval":41250,"_trace":["[\"gateway-prd\"]"]}}`,
			Frame{Op: 10, D: []byte(`{"heartbeat_interval":41250,"_trace":["[\"gateway-prd\"]"]}`)}},
		{"heartbeat ack without d", `{"op":11}`, Frame{Op: 11}},
		{"reconnect with null d", `{"t":null,"s":null,"op":7,"d":null}`, Frame{Op: 7, D: []byte("null")}},
		{"invalid session", `{"t":null,"s":null,"op":9,"d":false}`, Frame{Op: 9, D: []byte("false")}},
		{"whitespace", " {\n\t\"op\" : 0 , \"d\" : { } , \"s\" : 7 , \"t\" : \"RESUMED\" }\r\n",
			Frame{Op: 0, Seq: 7, Type: "RESUMED", D: []byte("{ }")}},
		{"untyped event name", `{"op":0,"s":3,"t":"SOMETHING_NEW","d":{}}`,
			Frame{Op: 0, Seq: 3, Type: "SOMETHING_NEW", D: []byte("{}")}},
		{"escaped event name", `{"op":0,"s":3,"t":"TYPING\u005fSTART","d":{}}`,
			Frame{Op: 0, Seq: 3, Type: "TYPING_START", D: []byte("{}")}},
		{"unknown keys", `{"op":0,"x":{"y":[true,null]},"d":[],"s":9,"t":"X"}`,
			Frame{Op: 0, Seq: 9, Type: "X", D: []byte("[]")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseFrame([]byte(tt.frame))
			if err != nil {
				t.Fatal(err)
			}
			if got.Op != tt.want.Op || got.Seq != tt.want.Seq || got.Type != tt.want.Type ||
				string(got.D) != string(tt.want.D) || (got.D == nil) != (tt.want.D == nil) {
				t.Errorf("got %+v (d %q), want %+v (d %q)", got, got.D, tt.want, tt.want.D)
			}
		})
	}
}

func TestParseFrameErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, frame, want string }{
		{"empty", ``, "unexpected end of JSON input"},
		{"not an object", `[0]`, "gateway payload is not a JSON object"},
		{"no op", `{"d":{}}`, `gateway payload has no "op"`},
		{"op string", `{"op":"0"}`, "invalid character '\"' looking for a value"},
		{"op negative", `{"op":-1}`, `"op" "-1" is not a valid opcode`},
		{"op fraction", `{"op":1.5}`, `"op" "1.5" is not a valid opcode`},
		{"op huge", `{"op":99999999999}`, `"op" "99999999999" is not a valid opcode`},
		{"seq negative", `{"op":0,"s":-5}`, `"s" "-5" is not a valid sequence number`},
		{"seq string", `{"op":0,"s":"5"}`, "invalid character '\"' looking for a value"},
		{"t number", `{"op":0,"t":5}`, `"t" must be a string or null`},
		{"t invalid UTF-8", "{\"op\":0,\"t\":\"\xff\"}", "invalid UTF-8 in string"},
		{"malformed d", `{"op":0,"d":{"a":}}`, "invalid character '}' looking for a value"},
		{"truncated d", `{"op":0,"d":{"a":[1,2`, "unexpected end of JSON input"},
		{"deep d", `{"op":0,"d":` + nest(100, "[", "", "]") + `}`, "JSON nested deeper than 64 levels"},
		{"trailing data", `{"op":0}{"op":1}`, "unexpected data after the gateway payload"},
		{"bad string in d", `{"op":0,"d":"a` + "\x01" + `"}`, "control character in string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := ParseFrame([]byte(tt.frame))
			if err == nil {
				t.Fatalf("no error; got %+v", f)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "parsing gateway frame: ") {
				t.Errorf("error = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestParseFrameAliases checks D points into the frame (no copy) and cannot grow into it.
func TestParseFrameAliases(t *testing.T) {
	t.Parallel()
	frame := []byte(`{"op":0,"d":{"id":"1"},"s":1,"t":"MESSAGE_DELETE"}`)
	f, err := ParseFrame(frame)
	if err != nil {
		t.Fatal(err)
	}
	if &f.D[0] != &frame[12] {
		t.Error("D does not alias the frame")
	}
	if cap(f.D) != len(f.D) {
		t.Errorf("cap(D) = %d, want %d so appends cannot overwrite the frame", cap(f.D), len(f.D))
	}
}

func TestParseFrameInternsKnownNames(t *testing.T) {
	// Not parallel: AllocsPerRun refuses to run beside parallel tests.
	frame := []byte(`{"op":0,"d":{},"s":1,"t":"MESSAGE_CREATE"}`)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := ParseFrame(frame); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("ParseFrame of a known event allocates %v times, want 0", allocs)
	}
}
