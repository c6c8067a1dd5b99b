package discordsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRESTAuthVersionsAndRouting(t *testing.T) {
	t.Parallel()
	s, _ := restSim(t, RESTConfig{})
	bot := newRESTClient(t, s, botToken(s))
	anon := newRESTClient(t, s, "")
	wrong := newRESTClient(t, s, "not-a-token")
	base := s.URL() + "/api"
	for _, tc := range []struct {
		name   string
		c      *restClient
		method string
		url    string
		status int
		body   string // expected exact body, or "" to skip
		code   int    // expected JSON code when body is ""
	}{
		{"no token", anon, "GET", base + "/v10/users/@me", 401, `{"message": "401: Unauthorized", "code": 0}`, 0},
		{"wrong token", wrong, "GET", base + "/v10/users/@me", 401, `{"message": "401: Unauthorized", "code": 0}`, 0},
		{"v10", bot, "GET", base + "/v10/users/@me", 200, "", 0},
		{"v9", bot, "GET", base + "/v9/users/@me", 200, "", 0},
		{"v6", bot, "GET", base + "/v6/users/@me", 200, "", 0},
		{"no version is v6", bot, "GET", base + "/users/@me", 200, "", 0},
		{"v5 discontinued", bot, "GET", base + "/v5/users/@me", 400, "", 50041},
		{"v3 discontinued", bot, "GET", base + "/v3/users/@me", 400, "", 50041},
		{"v11 unknown", bot, "GET", base + "/v11/users/@me", 400, "", 50041},
		{"unknown route", bot, "GET", base + "/v10/nope/at/all", 404, `{"message": "404: Not Found", "code": 0}`, 0},
		{"documented but not simulated", bot, "GET", base + "/v10/guilds/1/stickers", 404, `{"message": "404: Not Found", "code": 0}`, 0},
		{"wrong method", bot, "PUT", base + "/v10/users/@me", 405, "", 0},
		{"bad snowflake", bot, "GET", base + "/v10/channels/abc", 400, "", 50035},
		{"unknown channel", bot, "GET", base + "/v10/channels/1", 404, "", 10003},
		{"unknown guild", bot, "GET", base + "/v10/guilds/1", 404, "", 10004},
		{"unknown webhook", anon, "POST", base + "/v10/webhooks/1/tok", 404, "", 10015},
		{"unknown interaction", anon, "POST", base + "/v10/interactions/1/tok/callback", 404, "", 10062},
	} {
		r := tc.c.do(tc.method, tc.url, map[string]string{"content": "x"})
		if r.status != tc.status {
			t.Errorf("%s: status %d, want %d (body %s)", tc.name, r.status, tc.status, r.body)
			continue
		}
		if tc.body != "" && string(r.body) != tc.body {
			t.Errorf("%s: body %s, want %s", tc.name, r.body, tc.body)
		}
		if tc.body == "" && tc.status >= 400 && tc.code != 0 {
			if e := r.apiErr(t); e.Code != tc.code || e.Message == "" {
				t.Errorf("%s: error %+v, want code %d with a message", tc.name, e, tc.code)
			}
		}
	}
	var me User
	bot.do("GET", "/users/@me", nil).want(t, 200).decode(t, &me)
	if me.ID != s.Bots()[0].ID || !me.Bot {
		t.Fatalf("GET /users/@me = %+v, want the bot", me)
	}
	var gb GatewayBotInfo
	bot.do("GET", "/gateway/bot", nil).want(t, 200).decode(t, &gb)
	if gb.URL != s.GatewayURL() || gb.Shards < 1 || gb.SessionStartLimit.Total == 0 {
		t.Fatalf("GET /gateway/bot = %+v", gb)
	}
	st := s.RESTStats()
	if st.InvalidRequests != 2 || st.ByStatus["401"] != 2 || st.ByRoute["unmatched"] < 2 {
		t.Fatalf("stats: invalid %d, 401s %d, unmatched %d; want 2, 2, >=2", st.InvalidRequests, st.ByStatus["401"], st.ByRoute["unmatched"])
	}
}

func TestRESTBucketExhaustionHeaders(t *testing.T) {
	t.Parallel()
	s, clk := restSim(t, RESTConfig{Buckets: map[string]BucketLimit{"message-create": {Limit: 2, Window: 2 * time.Second}}})
	bot := newRESTClient(t, s, botToken(s))
	chans, _ := textChannels(s)
	path := "/channels/" + chans[0].String() + "/messages"
	var hash string
	for i := range 2 {
		r := bot.do("POST", path, map[string]string{"content": "hi " + strconv.Itoa(i)}).want(t, 200)
		if got := r.header.Get("X-RateLimit-Limit"); got != "2" {
			t.Fatalf("X-RateLimit-Limit %q, want 2", got)
		}
		if got := r.header.Get("X-RateLimit-Remaining"); got != strconv.Itoa(1-i) {
			t.Fatalf("X-RateLimit-Remaining %q, want %d", got, 1-i)
		}
		hash = r.header.Get("X-RateLimit-Bucket")
		if r.header.Get("X-RateLimit-Scope") != "" {
			t.Fatal("X-RateLimit-Scope on a success")
		}
	}
	clk.Advance(500 * time.Millisecond)
	r := bot.do("POST", path, map[string]string{"content": "too many"}).want(t, 429)
	var body rateLimitBody
	r.decode(t, &body)
	if body.Message != "You are being rate limited." || body.Global || body.RetryAfter != 1.5 {
		t.Fatalf("429 body %+v, want retry_after 1.5, global false", body)
	}
	h := r.header
	if h.Get("X-RateLimit-Scope") != "user" || h.Get("Retry-After") != "2" || h.Get("X-RateLimit-Remaining") != "0" ||
		h.Get("X-RateLimit-Bucket") != hash || h.Get("X-RateLimit-Reset-After") != "1.500" || h.Get("X-RateLimit-Global") != "" {
		t.Fatalf("429 headers %v", h)
	}
	reset, err := strconv.ParseFloat(h.Get("X-RateLimit-Reset"), 64)
	want := float64(clk.Now().Add(1500*time.Millisecond).UnixNano()) / 1e9
	if err != nil || reset < want-0.002 || reset > want+0.002 {
		t.Fatalf("X-RateLimit-Reset %q, want about %.3f", h.Get("X-RateLimit-Reset"), want)
	}
	clk.Advance(1500 * time.Millisecond)
	bot.do("POST", path, map[string]string{"content": "after reset"}).want(t, 200)

	st := s.RESTStats()
	if st.RateLimited != 1 || st.RateLimitedByScope["user"] != 1 || st.RateLimitedByBucket[hash] != 1 ||
		st.RateLimitedByBot[s.Bots()[0].ID.String()] != 1 || st.InvalidRequests != 1 || len(st.RateLimitEvents) != 1 {
		t.Fatalf("stats after one 429: %+v", st)
	}
	if ev := st.RateLimitEvents[0]; ev.Route != "POST /channels/{channel.id}/messages" || ev.RetryAfter != 1.5 || ev.Global {
		t.Fatalf("429 event %+v", ev)
	}
}

func TestRESTMajorParametersAndSharedBuckets(t *testing.T) {
	t.Parallel()
	s, _ := restSim(t, RESTConfig{Buckets: map[string]BucketLimit{"message-create": {Limit: 1, Window: time.Minute}}})
	bot := newRESTClient(t, s, botToken(s))
	chans, _ := textChannels(s)
	a, b := "/channels/"+chans[0].String(), "/channels/"+chans[1].String()
	ra := bot.do("POST", a+"/messages", map[string]string{"content": "a"}).want(t, 200)
	bot.do("POST", a+"/messages", map[string]string{"content": "a again"}).want(t, 429)
	// Same route, another channel: another counter, same bucket hash.
	rb := bot.do("POST", b+"/messages", map[string]string{"content": "b"}).want(t, 200)
	if ra.header.Get("X-RateLimit-Bucket") != rb.header.Get("X-RateLimit-Bucket") {
		t.Fatal("the same route on two channels reports different bucket hashes")
	}
	// Another route on the exhausted channel is not limited by message create.
	var m Message
	ra.decode(t, &m)
	edit := bot.do("PATCH", a+"/messages/"+m.ID.String(), map[string]string{"content": "edited"}).want(t, 200)
	if edit.header.Get("X-RateLimit-Bucket") == ra.header.Get("X-RateLimit-Bucket") {
		t.Fatal("message edit shares message create's bucket")
	}
	// Reaction routes share one bucket (1 per 0.25 s) across methods.
	react := a + "/messages/" + m.ID.String() + "/reactions/" + url.PathEscape("👍") + "/@me"
	put := bot.do("PUT", react, nil).want(t, 204)
	del := bot.do("DELETE", react, nil).want(t, 429)
	if put.header.Get("X-RateLimit-Bucket") != del.header.Get("X-RateLimit-Bucket") {
		t.Fatal("PUT and DELETE reaction report different buckets")
	}
	// Reading a message and listing messages share a bucket as well.
	g1 := bot.do("GET", a+"/messages/"+m.ID.String(), nil).want(t, 200)
	g2 := bot.do("GET", a+"/messages?limit=1", nil).want(t, 200)
	if g1.header.Get("X-RateLimit-Bucket") != g2.header.Get("X-RateLimit-Bucket") {
		t.Fatal("get message and list messages report different buckets")
	}
	if r1, r2 := g1.header.Get("X-RateLimit-Remaining"), g2.header.Get("X-RateLimit-Remaining"); r1 == r2 {
		t.Fatalf("remaining %s then %s: the shared bucket did not count both", r1, r2)
	}
}

func TestRESTGlobalLimitPerBot(t *testing.T) {
	t.Parallel()
	bots := []Bot{{Name: "one", Token: "token-one"}, {Name: "two", Token: "token-two"}}
	s, clk := restSim(t, RESTConfig{GlobalLimit: 5, GlobalWindow: time.Second}, bots...)
	one, two := newRESTClient(t, s, "token-one"), newRESTClient(t, s, "token-two")
	chans, _ := textChannels(s)
	// Five requests on five buckets (different channels) pass, the sixth is
	// refused by the global limit.
	for i := range 5 {
		one.do("GET", "/channels/"+chans[i%len(chans)].String()+"/messages", nil).want(t, 200)
	}
	r := one.do("GET", "/users/@me", nil).want(t, 429)
	var body rateLimitBody
	r.decode(t, &body)
	if !body.Global || body.RetryAfter <= 0 || body.RetryAfter > 1 {
		t.Fatalf("global 429 body %+v", body)
	}
	if r.header.Get("X-RateLimit-Global") != "true" || r.header.Get("X-RateLimit-Scope") != "global" ||
		r.header.Get("Retry-After") != "1" || r.header.Get("X-RateLimit-Bucket") != "" {
		t.Fatalf("global 429 headers %v: want Global, Scope global, Retry-After and no bucket headers", r.header)
	}
	// Another bot has its own global limit.
	two.do("GET", "/users/@me", nil).want(t, 200)
	clk.Advance(time.Second)
	one.do("GET", "/users/@me", nil).want(t, 200)
	st := s.RESTStats()
	if st.Global429 != 1 || st.RateLimitedByScope["global"] != 1 || st.RateLimitedByBucket["global"] != 1 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestRESTTokenRoutesBypassGlobal(t *testing.T) {
	t.Parallel()
	s, _ := restSim(t, RESTConfig{GlobalLimit: 2})
	bot := newRESTClient(t, s, botToken(s))
	anon := newRESTClient(t, s, "")
	chans, guilds := textChannels(s)
	var hook Webhook
	bot.do("POST", "/channels/"+chans[0].String()+"/webhooks", map[string]string{"name": "hooky"}).want(t, 200).decode(t, &hook)
	in, err := s.CreateInteraction(InteractionSpec{GuildID: guilds[0], ChannelID: chans[0]})
	if err != nil {
		t.Fatal(err)
	}
	bot.do("GET", "/users/@me", nil).want(t, 200)
	bot.do("GET", "/users/@me", nil).want(t, 429) // the bot's global limit is spent
	// Webhook execution and interaction callbacks still work.
	anon.do("POST", "/webhooks/"+hook.ID.String()+"/"+hook.Token+"?wait=true", map[string]string{"content": "via hook"}).want(t, 200)
	anon.do("POST", "/interactions/"+in.ID.String()+"/"+in.Token+"/callback",
		map[string]any{"type": 4, "data": map[string]string{"content": "pong"}}).want(t, 204)
	anon.do("POST", "/webhooks/"+in.ApplicationID.String()+"/"+in.Token, map[string]string{"content": "followup"}).want(t, 200)
	if st := s.RESTStats(); st.Global429 != 1 {
		t.Fatalf("global 429s = %d, want 1", st.Global429)
	}
}

func TestRESTInvalidRequestBan(t *testing.T) {
	t.Parallel()
	s, clk := restSim(t, RESTConfig{InvalidLimit: 5, InvalidWindow: time.Minute})
	bot := newRESTClient(t, s, botToken(s))
	wrong := newRESTClient(t, s, "bad")
	// Shared-scope 429s do not count.
	if err := s.InjectRESTFault(RESTFault{Status: 429, Count: 3, Route: "/users/@me"}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		r := bot.do("GET", "/users/@me", nil).want(t, 429)
		if r.header.Get("X-RateLimit-Scope") != "shared" {
			t.Fatalf("injected 429 scope %q, want shared", r.header.Get("X-RateLimit-Scope"))
		}
	}
	if st := s.RESTStats(); st.InvalidRequests != 0 || st.RateLimitedByScope["shared"] != 3 {
		t.Fatalf("after shared 429s: invalid %d shared %d, want 0 and 3", st.InvalidRequests, st.RateLimitedByScope["shared"])
	}
	for range 6 {
		wrong.do("GET", "/users/@me", nil).want(t, 401)
	}
	// The sixth invalid request went over the limit: every request is refused.
	r := bot.do("GET", "/users/@me", nil).want(t, 403)
	if !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") || !strings.Contains(string(r.body), "error code: 1015") {
		t.Fatalf("ban response %q %s, want Cloudflare's plain text", r.header.Get("Content-Type"), r.body)
	}
	st := s.RESTStats()
	if st.Bans != 1 || st.BannedRequests != 1 || st.InvalidRequests != 6 {
		t.Fatalf("stats: bans %d banned requests %d invalid %d, want 1, 1, 6", st.Bans, st.BannedRequests, st.InvalidRequests)
	}
	clk.Advance(time.Minute)
	bot.do("GET", "/users/@me", nil).want(t, 200)
}

func TestRESTMessageCreateDispatched(t *testing.T) {
	t.Parallel()
	s, _ := restSim(t, RESTConfig{})
	chans, guilds := textChannels(s)
	c := dial(t, s.GatewayURL(), "v=10&encoding=json")
	c.hello()
	c.identify(botToken(s), nil, AllIntents)
	bot := newRESTClient(t, s, botToken(s))
	var m Message
	bot.do("POST", "/channels/"+chans[0].String()+"/messages", map[string]any{"content": "hello gateway", "nonce": "n1"}).want(t, 200).decode(t, &m)
	p := c.untilEvent("MESSAGE_CREATE")
	var ev messageEvent
	if err := json.Unmarshal(p.D, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.ID != m.ID || ev.Content != "hello gateway" || ev.GuildID == nil || *ev.GuildID != guilds[0] || ev.Member == nil {
		t.Fatalf("MESSAGE_CREATE %s, want the created message %v with guild %v and member", p.D, m.ID, guilds[0])
	}
	// Edits, reactions, deletes and typing reach the gateway too.
	bot.do("PATCH", "/channels/"+chans[0].String()+"/messages/"+m.ID.String(), map[string]string{"content": "edited"}).want(t, 200)
	c.untilEvent("MESSAGE_UPDATE")
	bot.do("PUT", "/channels/"+chans[0].String()+"/messages/"+m.ID.String()+"/reactions/"+url.PathEscape("🎉")+"/@me", nil).want(t, 204)
	c.untilEvent("MESSAGE_REACTION_ADD")
	bot.do("POST", "/channels/"+chans[0].String()+"/typing", nil).want(t, 204)
	c.untilEvent("TYPING_START")
	bot.do("DELETE", "/channels/"+chans[0].String()+"/messages/"+m.ID.String(), nil).want(t, 204)
	del := c.untilEvent("MESSAGE_DELETE")
	if !strings.Contains(string(del.D), m.ID.String()) {
		t.Fatalf("MESSAGE_DELETE %s, want id %v", del.D, m.ID)
	}
}

func TestRESTMessageHistory(t *testing.T) {
	t.Parallel()
	s, _ := restSim(t, RESTConfig{Buckets: map[string]BucketLimit{"message-create": {Limit: 1000}, "messages-read": {Limit: 1000}, "bulk-delete": {Limit: 100}}})
	bot := newRESTClient(t, s, botToken(s))
	chans, _ := textChannels(s)
	path := "/channels/" + chans[0].String() + "/messages"
	var ids []Snowflake
	for i := range 10 {
		var m Message
		bot.do("POST", path, map[string]string{"content": strconv.Itoa(i)}).want(t, 200).decode(t, &m)
		ids = append(ids, m.ID)
	}
	list := func(q string) []string {
		var ms []Message
		bot.do("GET", path+q, nil).want(t, 200).decode(t, &ms)
		var out []string
		for _, m := range ms {
			out = append(out, m.Content)
		}
		return out
	}
	for _, tc := range []struct {
		q    string
		want string
	}{
		{"", "9 8 7 6 5 4 3 2 1 0"},
		{"?limit=3", "9 8 7"},
		{"?before=" + ids[5].String() + "&limit=2", "4 3"},
		{"?after=" + ids[5].String() + "&limit=2", "7 6"},
		{"?after=" + ids[7].String(), "9 8"},
		{"?around=" + ids[5].String() + "&limit=3", "6 5 4"},
	} {
		if got := strings.Join(list(tc.q), " "); got != tc.want {
			t.Errorf("GET messages%s = %q, want %q", tc.q, got, tc.want)
		}
	}
	for _, q := range []string{"?limit=0", "?limit=101", "?limit=x", "?before=x"} {
		if e := bot.do("GET", path+q, nil).want(t, 400).apiErr(t); e.Code != 50035 || len(e.Errors) == 0 {
			t.Errorf("GET messages%s: %+v, want 50035 with errors", q, e)
		}
	}
	// Bulk delete: 2..100 ids under 14 days old.
	bot.do("POST", path+"/bulk-delete", map[string]any{"messages": []Snowflake{ids[0], ids[1], ids[9] + 1}}).want(t, 204)
	if got := strings.Join(list("?limit=100"), " "); got != "9 8 7 6 5 4 3 2" {
		t.Fatalf("after bulk delete: %q", got)
	}
	if e := bot.do("POST", path+"/bulk-delete", map[string]any{"messages": []Snowflake{ids[2]}}).want(t, 400).apiErr(t); e.Code != 50035 {
		t.Fatalf("bulk delete of one: %+v", e)
	}
	old := Snowflake(uint64(time.Now().Add(-15*24*time.Hour).UnixMilli()-DiscordEpoch) << 22)
	if e := bot.do("POST", path+"/bulk-delete", map[string]any{"messages": []Snowflake{ids[2], old}}).want(t, 400).apiErr(t); e.Code != 50034 {
		t.Fatalf("bulk delete of an old message: %+v", e)
	}
	// Pins.
	bot.do("PUT", "/channels/"+chans[0].String()+"/pins/"+ids[3].String(), nil).want(t, 204)
	var pins []Message
	bot.do("GET", "/channels/"+chans[0].String()+"/pins", nil).want(t, 200).decode(t, &pins)
	if len(pins) != 1 || pins[0].ID != ids[3] || !pins[0].Pinned {
		t.Fatalf("pins = %+v", pins)
	}
}

func TestRESTOldMessageDeleteSublimit(t *testing.T) {
	t.Parallel()
	s, clk := restSim(t, RESTConfig{Buckets: map[string]BucketLimit{"delete-old-message": {Limit: 1, Window: time.Hour}, "message-create": {Limit: 10}}})
	bot := newRESTClient(t, s, botToken(s))
	chans, _ := textChannels(s)
	path := "/channels/" + chans[0].String() + "/messages/"
	var a, b, c Message
	bot.do("POST", path[:len(path)-1], map[string]string{"content": "a"}).want(t, 200).decode(t, &a)
	bot.do("POST", path[:len(path)-1], map[string]string{"content": "b"}).want(t, 200).decode(t, &b)
	bot.do("POST", path[:len(path)-1], map[string]string{"content": "c"}).want(t, 200).decode(t, &c)
	clk.Advance(15 * 24 * time.Hour)
	bot.do("DELETE", path+a.ID.String(), nil).want(t, 204)
	r := bot.do("DELETE", path+b.ID.String(), nil).want(t, 429)
	if r.header.Get("X-RateLimit-Bucket") == "" || r.header.Get("X-RateLimit-Scope") != "user" {
		t.Fatalf("old-message sublimit 429 headers %v", r.header)
	}
}

func TestRESTReactions(t *testing.T) {
	t.Parallel()
	s, clk := restSim(t, RESTConfig{})
	bot := newRESTClient(t, s, botToken(s))
	chans, guilds := textChannels(s)
	var m Message
	bot.do("POST", "/channels/"+chans[0].String()+"/messages", map[string]string{"content": "react"}).want(t, 200).decode(t, &m)
	base := "/channels/" + chans[0].String() + "/messages/" + m.ID.String() + "/reactions/"
	step := func() { clk.Advance(250 * time.Millisecond) }
	bot.do("PUT", base+url.PathEscape("👍")+"/@me", nil).want(t, 204)
	step()
	if e := customEmoji(s, guilds[0]); e != "" {
		bot.do("PUT", base+url.PathEscape(e)+"/@me", nil).want(t, 204)
		step()
	}
	for _, bad := range []string{"notanemoji", "x:abc", "%25ZZ", ":999"} {
		if e := bot.do("PUT", base+bad+"/@me", nil).want(t, 400).apiErr(t); e.Code != 10014 {
			t.Fatalf("emoji %q: %+v, want 10014", bad, e)
		}
		step()
	}
	var users []User
	bot.do("GET", base+url.PathEscape("👍"), nil).want(t, 200).decode(t, &users)
	step()
	if len(users) != 1 || users[0].ID != s.Bots()[0].ID {
		t.Fatalf("reactors = %+v, want the bot", users)
	}
	var got Message
	bot.do("GET", "/channels/"+chans[0].String()+"/messages/"+m.ID.String(), nil).want(t, 200).decode(t, &got)
	if len(got.Reactions) == 0 || !got.Reactions[0].Me || got.Reactions[0].Count != 1 || got.Reactions[0].Emoji.Name != "👍" {
		t.Fatalf("reactions = %+v", got.Reactions)
	}
	bot.do("DELETE", base+url.PathEscape("👍")+"/@me", nil).want(t, 204)
	step()
	bot.do("DELETE", base[:len(base)-1], nil).want(t, 204)
	var cleared Message
	bot.do("GET", "/channels/"+chans[0].String()+"/messages/"+m.ID.String(), nil).want(t, 200).decode(t, &cleared)
	if len(cleared.Reactions) != 0 {
		t.Fatalf("reactions after clearing = %+v", cleared.Reactions)
	}
}

func TestRESTMessageValidation(t *testing.T) {
	t.Parallel()
	s, _ := restSim(t, RESTConfig{MaxBodyBytes: 4096, Buckets: map[string]BucketLimit{"message-create": {Limit: 1000}}})
	bot := newRESTClient(t, s, botToken(s))
	chans, _ := textChannels(s)
	path := "/channels/" + chans[0].String() + "/messages"
	var category Snowflake
	s.world.mu.RLock()
	for id, ch := range s.world.channels {
		if ch.Type == channelGuildCategory {
			category = id
			break
		}
	}
	s.world.mu.RUnlock()
	longTitle := strings.Repeat("t", 257)
	for _, tc := range []struct {
		name   string
		ct     string
		path   string
		body   string
		status int
		code   int
		errAt  []string // path into "errors" that must hold _errors
	}{
		{"empty", "application/json", path, `{}`, 400, 50006, nil},
		{"empty content", "application/json", path, `{"content":""}`, 400, 50006, nil},
		{"content too long", "application/json", path, `{"content":"` + strings.Repeat("é", 2001) + `"}`, 400, 50035, []string{"content"}},
		{"too many embeds", "application/json", path, `{"embeds":[` + strings.TrimSuffix(strings.Repeat(`{"title":"x"},`, 11), ",") + `]}`, 400, 50035, []string{"embeds"}},
		{"embed title too long", "application/json", path, `{"embeds":[{"title":"ok"},{"title":"` + longTitle + `"}]}`, 400, 50035, []string{"embeds", "1", "title"}},
		{"nonce too long", "application/json", path, `{"content":"x","nonce":"` + strings.Repeat("n", 26) + `"}`, 400, 50035, []string{"nonce"}},
		{"wrong type", "application/json", path, `{"content":5}`, 400, 50035, []string{"content"}},
		{"invalid json", "application/json", path, `{"content":`, 400, 50109, nil},
		{"bad content type", "text/plain", path, `hello`, 400, 50035, []string{}},
		{"too large", "application/json", path, `{"content":"` + strings.Repeat("x", 5000) + `"}`, 413, 40005, nil},
		{"unknown channel", "application/json", "/channels/1/messages", `{"content":"x"}`, 404, 10003, nil},
		{"non-text channel", "application/json", "/channels/" + category.String() + "/messages", `{"content":"x"}`, 400, 50008, nil},
		{"unknown message", "application/json", path + "/1", ``, 404, 10008, nil},
	} {
		method := "POST"
		if strings.HasSuffix(tc.path, "/1") {
			method = "GET"
		}
		r := bot.doType(method, tc.path, tc.ct, tc.body)
		if r.status != tc.status {
			t.Errorf("%s: status %d, want %d (%s)", tc.name, r.status, tc.status, r.body)
			continue
		}
		e := r.apiErr(t)
		if e.Code != tc.code {
			t.Errorf("%s: code %d, want %d (%s)", tc.name, e.Code, tc.code, r.body)
		}
		if tc.errAt != nil {
			var cur any = map[string]any(e.Errors)
			for _, k := range tc.errAt {
				m, _ := cur.(map[string]any)
				cur = m[k]
			}
			m, _ := cur.(map[string]any)
			if list, _ := m["_errors"].([]any); len(list) == 0 {
				t.Errorf("%s: no _errors at %v in %s", tc.name, tc.errAt, r.body)
			}
		}
	}
}

func TestRESTMultipartUpload(t *testing.T) {
	t.Parallel()
	s, _ := restSim(t, RESTConfig{MaxBodyBytes: 1 << 16})
	bot := newRESTClient(t, s, botToken(s))
	chans, _ := textChannels(s)
	build := func(files map[string][]byte) (string, []byte) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", `form-data; name="payload_json"`)
		h.Set("Content-Type", "application/json")
		pw, _ := mw.CreatePart(h)
		_, _ = pw.Write([]byte(`{"content":"with files","attachments":[{"id":0,"description":"a picture"}]}`))
		i := 0
		for name, data := range files {
			fh := textproto.MIMEHeader{}
			fh.Set("Content-Disposition", fmt.Sprintf(`form-data; name="files[%d]"; filename="%s"`, i, name))
			fh.Set("Content-Type", "image/png")
			fw, _ := mw.CreatePart(fh)
			_, _ = fw.Write(data)
			i++
		}
		_ = mw.Close()
		return mw.FormDataContentType(), buf.Bytes()
	}
	ct, body := build(map[string][]byte{"cat.png": bytes.Repeat([]byte{1}, 1234)})
	var m Message
	bot.doType("POST", "/channels/"+chans[0].String()+"/messages", ct, body).want(t, 200).decode(t, &m)
	if m.Content != "with files" || len(m.Attachments) != 1 || m.Attachments[0].Filename != "cat.png" ||
		m.Attachments[0].Size != 1234 || m.Attachments[0].Description != "a picture" || m.Attachments[0].ContentType != "image/png" {
		t.Fatalf("message %+v", m)
	}
	ct, body = build(map[string][]byte{"huge.bin": make([]byte, 1<<17)})
	if e := bot.doType("POST", "/channels/"+chans[1].String()+"/messages", ct, body).want(t, 413).apiErr(t); e.Code != 40005 {
		t.Fatalf("oversized upload: %+v", e)
	}
}

func TestRESTInteractions(t *testing.T) {
	t.Parallel()
	s, clk := restSim(t, RESTConfig{Buckets: map[string]BucketLimit{"webhook": {Limit: 100}}})
	anon := newRESTClient(t, s, "")
	chans, guilds := textChannels(s)
	in, err := s.CreateInteraction(InteractionSpec{GuildID: guilds[0], ChannelID: chans[0]})
	if err != nil {
		t.Fatal(err)
	}
	cb := "/interactions/" + in.ID.String() + "/" + in.Token + "/callback"
	if e := anon.do("POST", "/interactions/"+in.ID.String()+"/wrong/callback", map[string]any{"type": 4}).want(t, 401).apiErr(t); e.Code != 50027 {
		t.Fatalf("wrong token: %+v", e)
	}
	if e := anon.do("POST", "/webhooks/"+in.ApplicationID.String()+"/"+in.Token, map[string]string{"content": "early"}).want(t, 404).apiErr(t); e.Code != 10015 {
		t.Fatalf("followup before the response: %+v", e)
	}
	var res struct {
		Interaction struct {
			ID                Snowflake  `json:"id"`
			ResponseMessageID *Snowflake `json:"response_message_id"`
		} `json:"interaction"`
		Resource struct {
			Message Message `json:"message"`
		} `json:"resource"`
	}
	anon.do("POST", cb+"?with_response=true", map[string]any{"type": 4, "data": map[string]string{"content": "pong"}}).want(t, 200).decode(t, &res)
	if res.Interaction.ID != in.ID || res.Resource.Message.Content != "pong" || res.Resource.Message.InteractionMetadata == nil {
		t.Fatalf("callback response %+v", res)
	}
	if e := anon.do("POST", cb, map[string]any{"type": 4, "data": map[string]string{"content": "again"}}).want(t, 400).apiErr(t); e.Code != 40060 {
		t.Fatalf("second callback: %+v", e)
	}
	orig := "/webhooks/" + in.ApplicationID.String() + "/" + in.Token + "/messages/@original"
	var m Message
	anon.do("GET", orig, nil).want(t, 200).decode(t, &m)
	if m.ID != res.Resource.Message.ID {
		t.Fatalf("@original = %v, want %v", m.ID, res.Resource.Message.ID)
	}
	anon.do("PATCH", orig, map[string]string{"content": "edited"}).want(t, 200).decode(t, &m)
	if m.Content != "edited" || m.EditedTimestamp == nil {
		t.Fatalf("edited @original = %+v", m)
	}
	var f Message
	anon.do("POST", "/webhooks/"+in.ApplicationID.String()+"/"+in.Token, map[string]string{"content": "followup"}).want(t, 200).decode(t, &f)
	anon.do("DELETE", "/webhooks/"+in.ApplicationID.String()+"/"+in.Token+"/messages/"+f.ID.String(), nil).want(t, 204)
	anon.do("DELETE", orig, nil).want(t, 204)

	// An interaction not answered within the window is gone.
	late, err := s.CreateInteraction(InteractionSpec{GuildID: guilds[0], ChannelID: chans[0]})
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(4 * time.Second)
	if e := anon.do("POST", "/interactions/"+late.ID.String()+"/"+late.Token+"/callback", map[string]any{"type": 5}).want(t, 404).apiErr(t); e.Code != 10062 {
		t.Fatalf("late callback: %+v", e)
	}
	if _, err := s.CreateInteraction(InteractionSpec{GuildID: 1}); err == nil {
		t.Fatal("CreateInteraction in an unknown guild succeeded")
	}
}

func TestRESTWebhooks(t *testing.T) {
	t.Parallel()
	s, _ := restSim(t, RESTConfig{Buckets: map[string]BucketLimit{"webhook": {Limit: 100}}})
	bot := newRESTClient(t, s, botToken(s))
	anon := newRESTClient(t, s, "")
	chans, _ := textChannels(s)
	if e := bot.do("POST", "/channels/"+chans[0].String()+"/webhooks", map[string]string{"name": ""}).want(t, 400).apiErr(t); e.Code != 50035 {
		t.Fatalf("empty webhook name: %+v", e)
	}
	var h Webhook
	bot.do("POST", "/channels/"+chans[0].String()+"/webhooks", map[string]string{"name": "hooky"}).want(t, 200).decode(t, &h)
	if h.Token == "" || h.ChannelID != chans[0] {
		t.Fatalf("webhook %+v", h)
	}
	var got Webhook
	anon.do("GET", "/webhooks/"+h.ID.String()+"/"+h.Token, nil).want(t, 200).decode(t, &got)
	if got.ID != h.ID || got.User != nil {
		t.Fatalf("GET webhook by token = %+v, want no user", got)
	}
	if e := anon.do("POST", "/webhooks/"+h.ID.String()+"/wrong", map[string]string{"content": "x"}).want(t, 401).apiErr(t); e.Code != 50027 {
		t.Fatalf("wrong webhook token: %+v", e)
	}
	anon.do("POST", "/webhooks/"+h.ID.String()+"/"+h.Token, map[string]string{"content": "no wait"}).want(t, 204)
	var m Message
	anon.do("POST", "/webhooks/"+h.ID.String()+"/"+h.Token+"?wait=true", map[string]string{"content": "wait", "username": "Custom"}).want(t, 200).decode(t, &m)
	if m.WebhookID == nil || *m.WebhookID != h.ID || m.Author.Username != "Custom" || !m.Author.Bot {
		t.Fatalf("webhook message %+v", m)
	}
	anon.do("PATCH", "/webhooks/"+h.ID.String()+"/"+h.Token+"/messages/"+m.ID.String(), map[string]string{"content": "edited"}).want(t, 200)
	var list []Webhook
	bot.do("GET", "/channels/"+chans[0].String()+"/webhooks", nil).want(t, 200).decode(t, &list)
	if len(list) != 1 {
		t.Fatalf("channel webhooks = %+v", list)
	}
	anon.do("DELETE", "/webhooks/"+h.ID.String()+"/"+h.Token, nil).want(t, 204)
	anon.do("POST", "/webhooks/"+h.ID.String()+"/"+h.Token, map[string]string{"content": "gone"}).want(t, 404)
}

func TestRESTGuildRoutes(t *testing.T) {
	t.Parallel()
	s, _ := restSim(t, RESTConfig{})
	bot := newRESTClient(t, s, botToken(s))
	_, guilds := textChannels(s)
	gid := guilds[0]
	g := "/guilds/" + gid.String()
	c := dial(t, s.GatewayURL(), "v=10&encoding=json")
	c.hello()
	c.identify(botToken(s), nil, AllIntents)

	var guild guildObject
	bot.do("GET", g+"?with_counts=true", nil).want(t, 200).decode(t, &guild)
	if guild.ID != gid || len(guild.Roles) == 0 || guild.ApproximateMemberCount == nil || *guild.ApproximateMemberCount < 2 {
		t.Fatalf("guild %+v", guild)
	}
	var chs []Channel
	bot.do("GET", g+"/channels", nil).want(t, 200).decode(t, &chs)
	if len(chs) == 0 {
		t.Fatal("no channels")
	}
	var created Channel
	bot.do("POST", g+"/channels", map[string]any{"name": "new-room", "type": 0}).want(t, 201).decode(t, &created)
	c.untilEvent("CHANNEL_CREATE")
	bot.do("PATCH", "/channels/"+created.ID.String(), map[string]string{"name": "renamed"}).want(t, 200)
	c.untilEvent("CHANNEL_UPDATE")
	bot.do("PATCH", "/channels/"+created.ID.String(), map[string]string{"topic": "t1"}).want(t, 200)
	// The third rename within 10 minutes hits the name/topic sublimit.
	bot.do("PATCH", "/channels/"+created.ID.String(), map[string]string{"name": "again"}).want(t, 429)
	bot.do("DELETE", "/channels/"+created.ID.String(), nil).want(t, 200)
	c.untilEvent("CHANNEL_DELETE")

	var members []Member
	bot.do("GET", g+"/members?limit=5", nil).want(t, 200).decode(t, &members)
	if len(members) != 5 {
		t.Fatalf("listed %d members, want 5", len(members))
	}
	var next []Member
	bot.do("GET", g+"/members?limit=2&after="+members[4].User.ID.String(), nil).want(t, 200).decode(t, &next)
	if len(next) == 0 || next[0].User.ID <= members[4].User.ID {
		t.Fatalf("members after %v = %+v", members[4].User.ID, next)
	}
	uid := someMember(t, s, gid)
	var role Role
	bot.do("POST", g+"/roles", map[string]any{"name": "Testers", "color": 255}).want(t, 200).decode(t, &role)
	c.untilEvent("GUILD_ROLE_CREATE")
	bot.do("PUT", g+"/members/"+uid.String()+"/roles/"+role.ID.String(), nil).want(t, 204)
	c.untilEvent("GUILD_MEMBER_UPDATE")
	var mem Member
	bot.do("GET", g+"/members/"+uid.String(), nil).want(t, 200).decode(t, &mem)
	if !containsID(mem.Roles, role.ID) {
		t.Fatalf("member roles %v lack %v", mem.Roles, role.ID)
	}
	bot.do("PATCH", g+"/members/"+uid.String(), map[string]string{"nick": "nicky"}).want(t, 200)
	bot.do("PATCH", g+"/roles/"+role.ID.String(), map[string]string{"name": "Testers 2"}).want(t, 200)
	c.untilEvent("GUILD_ROLE_UPDATE")
	bot.do("DELETE", g+"/members/"+uid.String()+"/roles/"+role.ID.String(), nil).want(t, 204)
	bot.do("DELETE", g+"/roles/"+role.ID.String(), nil).want(t, 204)
	c.untilEvent("GUILD_ROLE_DELETE")
	if e := bot.do("DELETE", g+"/roles/"+role.ID.String(), nil).want(t, 404).apiErr(t); e.Code != 10011 {
		t.Fatalf("deleting a deleted role: %+v", e)
	}
	bot.do("PUT", g+"/bans/"+uid.String(), map[string]int{"delete_message_seconds": 0}).want(t, 204)
	c.untilEvent("GUILD_MEMBER_REMOVE")
	if e := bot.do("GET", g+"/members/"+uid.String(), nil).want(t, 404).apiErr(t); e.Code != 10007 {
		t.Fatalf("banned member still there: %+v", e)
	}
	var bans []banObject
	bot.do("GET", g+"/bans", nil).want(t, 200).decode(t, &bans)
	if len(bans) != 1 || bans[0].User.ID != uid {
		t.Fatalf("bans = %+v", bans)
	}
	bot.do("DELETE", g+"/bans/"+uid.String(), nil).want(t, 204)
	bot.do("GET", g+"/bans/"+uid.String(), nil).want(t, 404)

	// DMs go to shard 0 as guild-less events.
	other := someMember(t, s, guilds[len(guilds)-1])
	var dm Channel
	bot.do("POST", "/users/@me/channels", map[string]string{"recipient_id": other.String()}).want(t, 200).decode(t, &dm)
	var dm2 Channel
	bot.do("POST", "/users/@me/channels", map[string]string{"recipient_id": other.String()}).want(t, 200).decode(t, &dm2)
	if dm.ID == 0 || dm.ID != dm2.ID || dm.Type != 1 {
		t.Fatalf("DM channels %+v / %+v, want one DM channel", dm, dm2)
	}
	bot.do("POST", "/channels/"+dm.ID.String()+"/messages", map[string]string{"content": "psst"}).want(t, 200)
	p := c.untilEvent("MESSAGE_CREATE")
	if strings.Contains(string(p.D), `"guild_id"`) {
		t.Fatalf("DM MESSAGE_CREATE has a guild: %s", p.D)
	}
}

func containsID(ids []Snowflake, id Snowflake) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func TestRESTFaults(t *testing.T) {
	t.Parallel()
	s, _ := restSim(t, RESTConfig{Buckets: map[string]BucketLimit{"users-me": {Limit: 100}}})
	bot := newRESTClient(t, s, botToken(s))
	for _, tc := range []struct {
		f      RESTFault
		status int
	}{
		{RESTFault{Status: 500}, 500},
		{RESTFault{Status: 502, Route: "/users/@me"}, 502},
		{RESTFault{Status: 503, Method: "GET"}, 503},
		{RESTFault{Status: 504}, 504},
	} {
		if err := s.InjectRESTFault(tc.f); err != nil {
			t.Fatal(err)
		}
		bot.do("GET", "/users/@me", nil).want(t, tc.status)
		bot.do("GET", "/users/@me", nil).want(t, 200)
	}
	// A fault on another route leaves this one alone.
	if err := s.InjectRESTFault(RESTFault{Status: 500, Route: "/guilds"}); err != nil {
		t.Fatal(err)
	}
	bot.do("GET", "/users/@me", nil).want(t, 200)
	s.ClearRESTFaults()
	// Latency.
	if err := s.InjectRESTFault(RESTFault{Latency: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	bot.do("GET", "/users/@me", nil).want(t, 200)
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("request with 50ms latency took %v", d)
	}
	// A dropped connection. A fresh connection, because Go's client retries
	// an idempotent request that failed on a reused one.
	if err := s.InjectRESTFault(RESTFault{Drop: true}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(t.Context(), "GET", s.URL()+"/api/v10/users/@me", nil)
	req.Header.Set("Authorization", "Bot "+botToken(s))
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := fresh.Do(req); err == nil {
		_ = resp.Body.Close()
		t.Fatalf("dropped request answered %d", resp.StatusCode)
	}
	for _, bad := range []RESTFault{{Status: 418}, {}, {Status: 500, Count: -1}} {
		if err := s.InjectRESTFault(bad); err == nil {
			t.Fatalf("InjectRESTFault(%+v) accepted", bad)
		}
	}
	// The dropped request is accounted after its connection closes, so the
	// client can get here first: wait for it.
	st := s.RESTStats()
	for deadline := time.Now().Add(5 * time.Second); st.ByStatus["0"] == 0 && time.Now().Before(deadline); st = s.RESTStats() {
		runtime.Gosched()
	}
	if st.Faults != 6 || st.ByRoute["unmatched"] != 0 || st.ByStatus["503"] != 1 || st.ByStatus["0"] != 1 {
		t.Fatalf("faults applied = %d (statuses %v, unmatched %d), want 6 (4 statuses, latency, drop)", st.Faults, st.ByStatus, st.ByRoute["unmatched"])
	}
}

func TestRESTAdminEndpoint(t *testing.T) {
	t.Parallel()
	s, _ := restSim(t, RESTConfig{})
	admin := s.URL()
	bot := newRESTClient(t, s, botToken(s))
	post := func(body string) int {
		req, _ := http.NewRequestWithContext(t.Context(), "POST", admin+"/_sim/rest/faults", strings.NewReader(body))
		resp, err := bot.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(`{"status":429,"retry_after_ms":2500,"count":1}`); code != 204 {
		t.Fatalf("POST fault: %d", code)
	}
	r := bot.do("GET", "/users/@me", nil).want(t, 429)
	var body rateLimitBody
	r.decode(t, &body)
	if body.RetryAfter != 2.5 || r.header.Get("X-RateLimit-Scope") != "shared" || r.header.Get("Retry-After") != "3" {
		t.Fatalf("injected 429: %+v %v", body, r.header)
	}
	if code := post(`{"status":200}`); code != 400 {
		t.Fatalf("bad fault accepted: %d", code)
	}
	if code := post(`{"bogus":1}`); code != 400 {
		t.Fatalf("unknown field accepted: %d", code)
	}
	var st RESTStats
	newRESTClient(t, s, "").do("GET", admin+"/_sim/rest/stats", nil).want(t, 200).decode(t, &st)
	if st.RateLimitedByScope["shared"] != 1 {
		t.Fatalf("stats over HTTP: %+v", st)
	}
}

// TestRESTConcurrentLimits hammers two channels from several goroutines: each
// bucket grants exactly its limit, and every answer is accounted.
func TestRESTConcurrentLimits(t *testing.T) {
	t.Parallel()
	s, _ := restSim(t, RESTConfig{Buckets: map[string]BucketLimit{"message-create": {Limit: 3, Window: time.Hour}}})
	bot := newRESTClient(t, s, botToken(s))
	chans, _ := textChannels(s)
	const workers, each = 4, 10
	var ok, limited atomicCounter
	done := make(chan struct{})
	for w := range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range each {
				path := "/channels/" + chans[(w+i)%2].String() + "/messages"
				switch r := bot.doNoFatal("POST", path, `{"content":"x"}`); r {
				case 200:
					ok.add()
				case 429:
					limited.add()
				default:
					t.Errorf("status %d", r)
				}
			}
		}()
	}
	for range workers {
		<-done
	}
	if ok.n != 6 || limited.n != workers*each-6 {
		t.Fatalf("%d ok, %d limited; want 6 (3 per channel) and %d", ok.n, limited.n, workers*each-6)
	}
	st := s.RESTStats()
	if st.ByRoute["POST /channels/{channel.id}/messages"] != workers*each || st.RateLimited != int64(limited.n) || st.ByStatus["200"] != 6 {
		t.Fatalf("stats %+v", st)
	}
	var msgs []Message
	bot.do("GET", "/channels/"+chans[0].String()+"/messages", nil).want(t, 200).decode(t, &msgs)
	if len(msgs) != 3 {
		t.Fatalf("channel holds %d messages, want 3", len(msgs))
	}
}

type atomicCounter struct {
	mu sync.Mutex
	n  int
}

func (c *atomicCounter) add() {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
}

func TestRESTCommandsAndLookups(t *testing.T) {
	t.Parallel()
	s, _ := restSim(t, RESTConfig{Buckets: map[string]BucketLimit{"commands": {Limit: 100}, "users-guilds": {Limit: 100}}})
	bot := newRESTClient(t, s, botToken(s))
	_, guilds := textChannels(s)
	app := s.Bots()[0].ID.String()
	global := "/applications/" + app + "/commands"
	var cmds []ApplicationCommand
	bot.do("PUT", global, []map[string]any{
		{"name": "ping", "description": "Ping the bot"},
		{"name": "Report User", "type": 2},
	}).want(t, 200).decode(t, &cmds)
	if len(cmds) != 2 || cmds[0].ID == 0 || cmds[0].ApplicationID != s.Bots()[0].ID || cmds[1].Type != 2 {
		t.Fatalf("bulk overwrite = %+v", cmds)
	}
	// Overwriting again keeps the ids of commands with the same name.
	var again []ApplicationCommand
	bot.do("PUT", global, []map[string]any{{"name": "ping", "description": "Ping v2"}}).want(t, 200).decode(t, &again)
	if len(again) != 1 || again[0].ID != cmds[0].ID || again[0].Description != "Ping v2" {
		t.Fatalf("second overwrite = %+v, want ping with id %v", again, cmds[0].ID)
	}
	var created ApplicationCommand
	bot.do("POST", global, map[string]any{"name": "echo", "description": "Echo"}).want(t, 201).decode(t, &created)
	bot.do("POST", global, map[string]any{"name": "echo", "description": "Echo 2"}).want(t, 200)
	bot.do("PATCH", global+"/"+created.ID.String(), map[string]any{"description": "Echo 3"}).want(t, 200)
	var got ApplicationCommand
	bot.do("GET", global+"/"+created.ID.String(), nil).want(t, 200).decode(t, &got)
	if got.Description != "Echo 3" || got.Name != "echo" {
		t.Fatalf("edited command = %+v", got)
	}
	bot.do("DELETE", global+"/"+created.ID.String(), nil).want(t, 204)
	if e := bot.do("GET", global+"/"+created.ID.String(), nil).want(t, 404).apiErr(t); e.Code != 10063 {
		t.Fatalf("deleted command: %+v", e)
	}
	for _, bad := range []map[string]any{{"name": "Bad Name", "description": "x"}, {"name": "ok"}, {"name": "", "description": "x"}} {
		if e := bot.do("POST", global, bad).want(t, 400).apiErr(t); e.Code != 50035 {
			t.Fatalf("command %v: %+v", bad, e)
		}
	}
	if e := bot.do("GET", "/applications/1/commands", nil).want(t, 403).apiErr(t); e.Code != 50001 {
		t.Fatalf("another application's commands: %+v", e)
	}
	guildCmds := "/applications/" + app + "/guilds/" + guilds[0].String() + "/commands"
	bot.do("POST", guildCmds, map[string]any{"name": "local", "description": "Guild only"}).want(t, 201)
	var list []ApplicationCommand
	bot.do("GET", guildCmds, nil).want(t, 200).decode(t, &list)
	if len(list) != 1 || list[0].GuildID == nil || *list[0].GuildID != guilds[0] {
		t.Fatalf("guild commands = %+v", list)
	}
	bot.do("GET", "/applications/"+app+"/guilds/1/commands", nil).want(t, 404)

	var emojis []Emoji
	bot.do("GET", "/guilds/"+guilds[0].String()+"/emojis", nil).want(t, 200).decode(t, &emojis)
	if len(emojis) > 0 {
		bot.do("GET", "/guilds/"+guilds[0].String()+"/emojis/"+emojis[0].ID.String(), nil).want(t, 200)
	}
	if e := bot.do("GET", "/guilds/"+guilds[0].String()+"/emojis/1", nil).want(t, 404).apiErr(t); e.Code != 10014 {
		t.Fatalf("unknown emoji: %+v", e)
	}

	var mine []struct {
		ID Snowflake `json:"id"`
	}
	bot.do("GET", "/users/@me/guilds", nil).want(t, 200).decode(t, &mine)
	if len(mine) != 3 {
		t.Fatalf("GET /users/@me/guilds = %d guilds, want 3", len(mine))
	}
	var page []struct {
		ID Snowflake `json:"id"`
	}
	bot.do("GET", "/users/@me/guilds?limit=1&after="+mine[0].ID.String(), nil).want(t, 200).decode(t, &page)
	if len(page) != 1 || page[0].ID != mine[1].ID {
		t.Fatalf("second page = %+v, want %v", page, mine[1].ID)
	}
	uid := someMember(t, s, guilds[0])
	var u User
	bot.do("GET", "/users/"+uid.String(), nil).want(t, 200).decode(t, &u)
	var found []Member
	bot.do("GET", "/guilds/"+guilds[0].String()+"/members/search?limit=5&query="+url.QueryEscape(u.Username[:3]), nil).want(t, 200).decode(t, &found)
	if len(found) == 0 {
		t.Fatalf("search for %q found nobody", u.Username[:3])
	}
	if e := bot.do("GET", "/guilds/"+guilds[0].String()+"/members/search", nil).want(t, 400).apiErr(t); e.Code != 50035 {
		t.Fatalf("search without query: %+v", e)
	}
}

func TestRESTChannelWriteLimits(t *testing.T) {
	t.Parallel()
	bots := []Bot{{Name: "one", Token: "token-one"}, {Name: "two", Token: "token-two"}}
	s, clk := restSim(t, RESTConfig{Buckets: map[string]BucketLimit{
		"message-create":       {Limit: 100},
		"channel-write-shared": {Limit: 3, Window: 10 * time.Second},
	}}, bots...)
	one, two := newRESTClient(t, s, "token-one"), newRESTClient(t, s, "token-two")
	chans, _ := textChannels(s)
	a, b := "/channels/"+chans[0].String(), "/channels/"+chans[1].String()
	// The shared limit counts both bots' writes to one channel.
	one.do("POST", a+"/messages", map[string]string{"content": "1"}).want(t, 200)
	two.do("POST", a+"/messages", map[string]string{"content": "2"}).want(t, 200)
	one.do("POST", a+"/messages", map[string]string{"content": "3"}).want(t, 200)
	r := two.do("POST", a+"/messages", map[string]string{"content": "4"}).want(t, 429)
	var body rateLimitBody
	r.decode(t, &body)
	if r.header.Get("X-RateLimit-Scope") != "shared" || body.Code != 20028 || body.Global || body.RetryAfter != 10 {
		t.Fatalf("shared write 429: %v %+v", r.header, body)
	}
	if st := s.RESTStats(); st.InvalidRequests != 0 || st.RateLimitedByScope["shared"] != 1 {
		t.Fatalf("shared 429 counted as invalid: %+v", st)
	}
	// Slowmode: one message per bot per rate_limit_per_user seconds.
	one.do("PATCH", b, map[string]int{"rate_limit_per_user": 5}).want(t, 200)
	one.do("POST", b+"/messages", map[string]string{"content": "slow"}).want(t, 200)
	two.do("POST", b+"/messages", map[string]string{"content": "other bot"}).want(t, 200)
	r = one.do("POST", b+"/messages", map[string]string{"content": "too fast"}).want(t, 429)
	r.decode(t, &body)
	if r.header.Get("X-RateLimit-Scope") != "user" || body.Code != 20016 || body.RetryAfter != 5 {
		t.Fatalf("slowmode 429: %v %+v", r.header, body)
	}
	clk.Advance(5 * time.Second)
	one.do("POST", b+"/messages", map[string]string{"content": "slow again"}).want(t, 200)
}

func TestRESTThreadsAndOverwrites(t *testing.T) {
	t.Parallel()
	s, _ := restSim(t, RESTConfig{})
	bot := newRESTClient(t, s, botToken(s))
	chans, guilds := textChannels(s)
	c := dial(t, s.GatewayURL(), "v=10&encoding=json")
	c.hello()
	c.identify(botToken(s), nil, AllIntents)
	ch := "/channels/" + chans[0].String()
	var m Message
	bot.do("POST", ch+"/messages", map[string]string{"content": "start a thread here"}).want(t, 200).decode(t, &m)
	var th Channel
	bot.do("POST", ch+"/messages/"+m.ID.String()+"/threads", map[string]any{"name": "discussion"}).want(t, 201).decode(t, &th)
	if th.ID != m.ID || th.Type != channelPublicThread || th.ParentID == nil || *th.ParentID != chans[0] || th.ThreadMetadata == nil {
		t.Fatalf("thread %+v", th)
	}
	c.untilEvent("THREAD_CREATE")
	if e := bot.do("POST", ch+"/messages/"+m.ID.String()+"/threads", map[string]any{"name": "again"}).want(t, 400).apiErr(t); e.Code != 160004 {
		t.Fatalf("second thread on a message: %+v", e)
	}
	// Messages work in the thread like in any text channel.
	bot.do("POST", "/channels/"+th.ID.String()+"/messages", map[string]string{"content": "in the thread"}).want(t, 200)
	ev := c.untilEvent("MESSAGE_CREATE")
	if !strings.Contains(string(ev.D), th.ID.String()) {
		t.Fatalf("thread MESSAGE_CREATE %s", ev.D)
	}
	bot.do("PUT", "/channels/"+th.ID.String()+"/thread-members/@me", nil).want(t, 204)
	bot.do("PUT", ch+"/thread-members/@me", nil).want(t, 400)
	var private Channel
	bot.do("POST", ch+"/threads", map[string]any{"name": "secret", "auto_archive_duration": 60}).want(t, 201).decode(t, &private)
	if private.Type != channelPrivateThread || private.ThreadMetadata.AutoArchiveDuration != 60 {
		t.Fatalf("private thread %+v", private)
	}
	if e := bot.do("POST", ch+"/threads", map[string]any{"name": "x", "auto_archive_duration": 5}).want(t, 400).apiErr(t); e.Code != 50035 {
		t.Fatalf("bad archive duration: %+v", e)
	}

	bot.do("PUT", ch+"/permissions/"+guilds[0].String(), map[string]any{"type": 0, "allow": "1024", "deny": "2048"}).want(t, 204)
	c.untilEvent("CHANNEL_UPDATE")
	var got Channel
	bot.do("GET", ch, nil).want(t, 200).decode(t, &got)
	found := false
	for _, o := range got.PermissionOverwrites {
		found = found || (o.ID == guilds[0] && o.Allow == "1024" && o.Deny == "2048")
	}
	if !found {
		t.Fatalf("overwrites %+v lack the new one", got.PermissionOverwrites)
	}
	bot.do("DELETE", ch+"/permissions/"+guilds[0].String(), nil).want(t, 204)
	if e := bot.do("PUT", ch+"/permissions/"+guilds[0].String(), map[string]any{"type": 3}).want(t, 400).apiErr(t); e.Code != 50035 {
		t.Fatalf("bad overwrite type: %+v", e)
	}
}
