package discordjson

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/dynamicpb"

	discordv1 "github.com/kubecord/kubecord/gen/kubecord/discord/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files and generated payloads in testdata")

// eventFiles returns the payload files under testdata/events. A file is named after its event,
// optionally with a variant: MESSAGE_CREATE.json, MESSAGE_CREATE.dm.json.
func eventFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "events", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no payloads under testdata/events")
	}
	return files
}

func eventName(path string) string {
	return strings.SplitN(filepath.Base(path), ".", 2)[0]
}

// render is the golden form of a decoded payload: protojson with Discord's key names, with
// whitespace normalised because protojson deliberately varies it between builds.
func render(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		t.Fatalf("protojson: %v", err)
	}
	var compact, out bytes.Buffer
	if err := json.Compact(&compact, b); err != nil {
		t.Fatal(err)
	}
	if err := json.Indent(&out, compact.Bytes(), "", "  "); err != nil {
		t.Fatal(err)
	}
	out.WriteByte('\n')
	return out.Bytes()
}

func TestGolden(t *testing.T) {
	for _, path := range eventFiles(t) {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".json"), func(t *testing.T) {
			t.Parallel()
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			name := eventName(path)
			got, err := Decode(name, raw)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if got == nil {
				t.Fatalf("Decode(%s) returned no payload: the event is not typed", name)
			}
			// The result must be a valid protobuf message (UTF-8 strings and all).
			if _, err := proto.Marshal(got); err != nil {
				t.Fatalf("proto.Marshal of the decoded payload: %v", err)
			}

			// DecodeEvent must agree with Decode and fill the matching oneof case.
			ev := &discordv1.Event{Name: name, Raw: raw}
			if err := DecodeEvent(ev); err != nil {
				t.Fatalf("DecodeEvent: %v", err)
			}
			fd := ev.ProtoReflect().WhichOneof(payloadOneof)
			if fd == nil || !strings.EqualFold(string(fd.Name()), name) {
				t.Fatalf("DecodeEvent set payload case %v, want %s", fd, strings.ToLower(name))
			}
			if !proto.Equal(ev.ProtoReflect().Get(fd).Message().Interface(), got) {
				t.Fatal("DecodeEvent and Decode disagree")
			}

			golden := strings.TrimSuffix(path, ".json") + ".golden"
			text := render(t, got)
			if *update {
				if err := os.WriteFile(golden, text, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			wantMsg := got.ProtoReflect().New().Interface()
			if err := protojson.Unmarshal(want, wantMsg); err != nil {
				t.Fatalf("parsing %s: %v", golden, err)
			}
			if !proto.Equal(got, wantMsg) {
				t.Errorf("%s: decoded payload differs from the golden file\n--- got\n%s\n--- want\n%s", name, text, want)
			}
		})
	}
}

// TestEveryTypedEventHasAPayload keeps testdata in step with the contract: a typed event added to
// the Event oneof needs a realistic payload here.
func TestEveryTypedEventHasAPayload(t *testing.T) {
	t.Parallel()
	have := map[string]bool{}
	for _, path := range eventFiles(t) {
		have[eventName(path)] = true
	}
	var missing []string
	for name := range eventCases {
		if !have[name] {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("typed events without a payload under testdata/events: %s", strings.Join(missing, ", "))
	}
	if len(eventCases) == 0 {
		t.Fatal("no typed events found in the Event oneof")
	}
}

// TestReflectionPathAgrees decodes every payload into dynamic messages, which only the
// protoreflect path can fill, and checks the result equals the fast path's.
func TestReflectionPathAgrees(t *testing.T) {
	t.Parallel()
	for _, path := range eventFiles(t) {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		fast, err := Decode(eventName(path), raw)
		if err != nil {
			t.Fatal(err)
		}
		dyn := dynamicpb.NewMessage(fast.ProtoReflect().Descriptor())
		if err := DecodeInto(dyn, raw); err != nil {
			t.Fatalf("%s: %v", filepath.Base(path), err)
		}
		if !proto.Equal(dyn, fast) {
			t.Errorf("%s: protoreflect path differs from the fast path\n%v\n%v", filepath.Base(path), dyn, fast)
		}
	}
}
