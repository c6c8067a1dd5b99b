package ratelimit

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func snowflakeAt(t time.Time) string {
	return strconv.FormatUint(uint64(t.UnixMilli()-discordEpochMS)<<22, 10)
}

func TestParseRoute(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	recent := snowflakeAt(now.Add(-time.Hour))
	old := snowflakeAt(now.Add(-15 * 24 * time.Hour))
	tests := []struct {
		name, method, path string
		want               Route
	}{
		{"channel message", "post", "/channels/123/messages", Route{Key: "POST /channels/{major}/messages", Major: "channels:123"}},
		{"message id is minor", "GET", "/channels/123/messages/456", Route{Key: "GET /channels/{major}/messages/{id}", Major: "channels:123"}},
		{"guild member", "PATCH", "/guilds/9/members/77", Route{Key: "PATCH /guilds/{major}/members/{id}", Major: "guilds:9"}},
		{"reactions collapse", "PUT", "/channels/1/messages/2/reactions/%F0%9F%91%8D/@me", Route{Key: "* /channels/{major}/messages/{id}/reactions/*", Major: "channels:1"}},
		{"reactions of a user", "DELETE", "/channels/1/messages/2/reactions/name:55/66", Route{Key: "* /channels/{major}/messages/{id}/reactions/*", Major: "channels:1"}},
		{"reactions list", "GET", "/channels/1/messages/2/reactions", Route{Key: "* /channels/{major}/messages/{id}/reactions/*", Major: "channels:1"}},
		{"recent delete", "DELETE", "/channels/1/messages/" + recent, Route{Key: "DELETE /channels/{major}/messages/{id}", Major: "channels:1"}},
		{"old delete", "DELETE", "/channels/1/messages/" + old, Route{Key: "DELETE /channels/{major}/messages/{id} (old)", Major: "channels:1"}},
		{"webhook by bot", "GET", "/webhooks/42", Route{Key: "GET /webhooks/{major}", Major: "webhooks:42"}},
		{"webhook token", "POST", "/webhooks/42/secret-token", Route{Key: "POST /webhooks/{major}/{token}", Major: "webhooks:42:" + HashSecret("secret-token"), Exempt: true, WebhookToken: true}},
		{"interaction followup", "PATCH", "/webhooks/42/tok/messages/@original", Route{Key: "PATCH /webhooks/{major}/{token}/messages/@original", Major: "webhooks:42:" + HashSecret("tok"), Exempt: true, WebhookToken: true}},
		{"interaction callback", "POST", "/interactions/5/tok/callback", Route{Key: "POST /interactions/{major}/{token}/callback", Major: "interactions:5:" + HashSecret("tok"), Exempt: true, WebhookToken: true}},
		{"no major", "GET", "/users/@me", Route{Key: "GET /users/@me"}},
		{"invite code", "GET", "/invites/abcDEF", Route{Key: "GET /invites/{code}"}},
		{"unknown route", "GET", "/future/thing/123", Route{Key: "GET /future/thing/{id}"}},
		{"long unknown segment", "GET", "/x/" + strings.Repeat("a", 40), Route{Key: "GET /x/{param}"}},
		{"root", "GET", "/", Route{Key: "GET /"}},
		{"trailing slash", "GET", "/gateway/bot/", Route{Key: "GET /gateway/bot"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := ParseRoute(tc.method, tc.path, now)
			if got != tc.want {
				t.Errorf("ParseRoute(%q, %q) = %+v, want %+v", tc.method, tc.path, got, tc.want)
			}
			if strings.Contains(got.Key, "secret-token") || strings.Contains(got.Major, "secret-token") {
				t.Errorf("route %+v contains the raw webhook token", got)
			}
		})
	}
}

func TestStripVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		rest    string
		version int
		ok      bool
	}{
		{"/api/v10/channels/1", "/channels/1", 10, true},
		{"/api/v9/gateway", "/gateway", 9, true},
		{"/api/channels/1", "/channels/1", 0, true},
		{"/api/v10", "/", 10, true},
		{"/api", "/", 0, true},
		{"/apix/v10", "", 0, false},
		{"/channels/1", "", 0, false},
		{"/api/vx/channels", "/vx/channels", 0, true},
	}
	for _, tc := range tests {
		rest, v, ok := StripVersion(tc.in)
		if rest != tc.rest || v != tc.version || ok != tc.ok {
			t.Errorf("StripVersion(%q) = %q, %d, %v; want %q, %d, %v", tc.in, rest, v, ok, tc.rest, tc.version, tc.ok)
		}
	}
}

func FuzzParseRoute(f *testing.F) {
	for _, s := range []string{"/channels/1/messages", "/webhooks/1/tok/messages/@original", "/", "", "//", "/interactions/1/t/callback", "/channels/1/messages/99999999999999999999999"} {
		f.Add("GET", s)
	}
	now := time.Now()
	f.Fuzz(func(t *testing.T, method, path string) {
		r := ParseRoute(method, path, now)
		if !strings.HasPrefix(r.Key, strings.ToUpper(method)+" ") && !strings.HasPrefix(r.Key, "* ") {
			t.Fatalf("key %q does not start with the method", r.Key)
		}
		if r.WebhookToken && !r.Exempt {
			t.Fatalf("webhook-token route %q not exempt from the global limit", r.Key)
		}
		_, _, _ = StripVersion(path)
	})
}
