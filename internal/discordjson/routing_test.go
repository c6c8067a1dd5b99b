package discordjson

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	discordv1 "github.com/kubecord/kubecord/gen/kubecord/discord/v1"
)

func TestRoutingKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, event, d string
		want           Route
	}{
		{"guild message", "MESSAGE_CREATE", `{"id":"5","channel_id":"2","author":{"id":"3"},"guild_id":"1"}`, Route{RouteGuild, 1}},
		{"DM message", "MESSAGE_CREATE", `{"id":"5","channel_id":"2","author":{"id":"3"}}`, Route{RouteChannel, 2}},
		{"guild null", "MESSAGE_CREATE", `{"guild_id":null,"channel_id":"2"}`, Route{RouteChannel, 2}},
		{"guild create uses id", "GUILD_CREATE", `{"members":[{"user":{"id":"9"}}],"id":"1","channels":[]}`, Route{RouteGuild, 1}},
		{"guild delete", "GUILD_DELETE", `{"unavailable":true,"id":"1"}`, Route{RouteGuild, 1}},
		{"guild channel", "CHANNEL_CREATE", `{"id":"2","guild_id":"1"}`, Route{RouteGuild, 1}},
		{"DM channel", "CHANNEL_CREATE", `{"id":"2","type":1,"recipients":[{"id":"3"}]}`, Route{RouteChannel, 2}},
		{"thread delete", "THREAD_DELETE", `{"id":"7","guild_id":"1","parent_id":"2","type":11}`, Route{RouteGuild, 1}},
		{"member add", "GUILD_MEMBER_ADD", `{"user":{"id":"3"},"guild_id":"1"}`, Route{RouteGuild, 1}},
		{"DM interaction", "INTERACTION_CREATE", `{"id":"8","user":{"id":"3","username":"u"},"type":2}`, Route{RouteUser, 3}},
		{"DM interaction with channel", "INTERACTION_CREATE", `{"id":"8","user":{"id":"3"},"channel_id":"2"}`, Route{RouteChannel, 2}},
		{"user update", "USER_UPDATE", `{"id":"3","username":"u"}`, Route{RouteUser, 3}},
		{"entitlement", "ENTITLEMENT_CREATE", `{"id":"9","user_id":"3","sku_id":"4"}`, Route{RouteUser, 3}},
		{"typing in DM", "TYPING_START", `{"user_id":"3","channel_id":"2","timestamp":1}`, Route{RouteChannel, 2}},
		{"ready", "READY", `{"v":10,"user":{"id":"3","bot":true},"guilds":[{"id":"1","unavailable":true}],"session_id":"s"}`, Route{}},
		{"resumed", "RESUMED", `{"_trace":["x"]}`, Route{}},
		{"null d", "RECONNECT", `null`, Route{}},
		{"numeric snowflake", "MESSAGE_CREATE", `{"guild_id":1}`, Route{RouteGuild, 1}},
		{"stops at guild_id", "MESSAGE_CREATE", `{"guild_id":"1","rest":[1,2,`, Route{RouteGuild, 1}},
		{"escaped snowflake", "MESSAGE_CREATE", `{"guild_id":"\u0031"}`, Route{RouteGuild, 1}},
		{"ids that are not snowflakes are passed over", "MESSAGE_CREATE",
			`{"guild_id":"x","channel_id":true,"user":"3","user_id":{"a":1},"author":{"id":"4"}}`, Route{}},
		{"user that is not an object", "CHANNEL_UPDATE", `{"user":"3","id":"2"}`, Route{RouteChannel, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := RoutingKey(tt.event, []byte(tt.d))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRoutingKeyErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, d, want string }{
		{"not an object", `[]`, "MESSAGE_CREATE: reading routing key: event payload is not a JSON object"},
		{"malformed before the key", `{"content":"x,"guild_id":"1"}`, "MESSAGE_CREATE: reading routing key: expected ',' or '}'"},
		{"malformed user", `{"user":{"id":"1",}}`, "MESSAGE_CREATE: reading routing key: expected object key string"},
		{"truncated", `{"channel_id":"2"`, "MESSAGE_CREATE: reading routing key: unexpected end of JSON input"},
		{"deep", `{"x":` + nest(100, "[", "", "]") + `}`, "MESSAGE_CREATE: reading routing key: JSON nested deeper than 64 levels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := RoutingKey("MESSAGE_CREATE", []byte(tt.d))
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error = %v, want prefix %q", err, tt.want)
			}
		})
	}
}

// TestRoutingKeyMatchesDecode checks, on every payload in testdata, that the cheap reader agrees
// with the fully decoded payload: a payload whose top-level guild_id (or, for GUILD_CREATE/UPDATE/
// DELETE, id) decodes to a guild routes to that guild.
func TestRoutingKeyMatchesDecode(t *testing.T) {
	t.Parallel()
	for _, path := range eventFiles(t) {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		name := eventName(path)
		r, err := RoutingKey(name, raw)
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(path), err)
			continue
		}
		m, err := Decode(name, raw)
		if err != nil {
			t.Fatal(err)
		}
		key := "guild_id"
		if routeSelf[name] == RouteGuild {
			key = "id"
		}
		var guild uint64
		if f := eventCases[name].table.fields[key]; f != nil {
			target := m.ProtoReflect()
			for _, ifd := range f.via {
				target = target.Get(ifd).Message()
			}
			guild = target.Get(f.fd).Uint()
		}
		switch {
		case guild != 0 && r != (Route{Kind: RouteGuild, ID: guild}):
			t.Errorf("%s: route %v, want guild %d", filepath.Base(path), r, guild)
		case guild == 0 && r.Kind == RouteGuild:
			t.Errorf("%s: route %v, but the payload has no guild", filepath.Base(path), r)
		}
	}
}

func TestRouteProto(t *testing.T) {
	t.Parallel()
	got := Route{Kind: RouteChannel, ID: 5}.Proto()
	if got.GetKind() != discordv1.RoutingKey_KIND_CHANNEL || got.GetId() != 5 {
		t.Errorf("got %v", got)
	}
	if k := (Route{}).Proto().GetKind(); k != discordv1.RoutingKey_KIND_UNSPECIFIED {
		t.Errorf("empty route kind = %v", k)
	}
	for k := RouteNone; k <= RouteUser; k++ {
		if k.String() == "" {
			t.Errorf("kind %d has no name", k)
		}
	}
}
