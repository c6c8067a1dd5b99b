package discordsim

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is an injectable clock for ratelimit windows.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// restSim starts a small simulator with the REST config rc and a fake clock.
func restSim(t testing.TB, rc RESTConfig, bots ...Bot) (*Server, *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	if rc.Now == nil {
		rc.Now = clk.Now
	}
	s, err := New(Config{Guilds: 3, Members: 60, REST: rc, Bots: bots})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	// Not t.Context(): it is cancelled before cleanups run, and Close is
	// the cleanup that stops the simulator.
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(s.Close)
	return s, clk
}

// restClient speaks to the simulator's REST API as one bot.
type restClient struct {
	t     testing.TB
	base  string
	token string
	hc    *http.Client
}

func newRESTClient(t testing.TB, s *Server, token string) *restClient {
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	return &restClient{t: t, base: s.URL() + "/api/v10", token: token, hc: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// response is a read REST response.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decoding %s: %v", r.body, err)
	}
}

// apiErr decodes an error body.
func (r response) apiErr(t testing.TB) apiError {
	t.Helper()
	var e apiError
	r.decode(t, &e)
	return e
}

// do sends a request; body may be nil, a string (sent as JSON) or any value
// (JSON-encoded).
func (c *restClient) do(method, path string, body any) response {
	c.t.Helper()
	return c.doType(method, path, "application/json", body)
}

// doNoFatal sends a JSON request from any goroutine and returns the status
// (0 on a transport error, which it reports).
func (c *restClient) doNoFatal(method, path, body string) int {
	req, err := http.NewRequestWithContext(c.t.Context(), method, c.base+path, strings.NewReader(body))
	if err != nil {
		c.t.Error(err)
		return 0
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bot "+c.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Error(err)
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

func (c *restClient) doType(method, path, ct string, body any) response {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(enc)
	}
	url := path
	if !strings.HasPrefix(path, "http") {
		url = c.base + path
	}
	req, err := http.NewRequestWithContext(c.t.Context(), method, url, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if rd != nil && ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bot "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// want fails unless the response has status.
func (r response) want(t testing.TB, status int) response {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	return r
}

// textChannels returns some text channel ids of the world, in a stable order,
// with their guild ids.
func textChannels(s *Server) (chans, guilds []Snowflake) {
	s.world.mu.RLock()
	defer s.world.mu.RUnlock()
	for _, gid := range s.world.guildOrder {
		g := s.world.guilds[gid]
		for _, ch := range g.textChannels {
			chans = append(chans, ch)
			guilds = append(guilds, gid)
		}
	}
	return chans, guilds
}

// someMember returns a non-bot member of guild gid.
func someMember(t testing.TB, s *Server, gid Snowflake) Snowflake {
	t.Helper()
	s.world.mu.RLock()
	defer s.world.mu.RUnlock()
	var uid Snowflake
	s.world.forEachMemberLocked(s.world.guilds[gid], 0, func(m Member) bool {
		if m.User != nil && !m.User.Bot {
			uid = m.User.ID
			return false
		}
		return true
	})
	if uid == 0 {
		t.Fatal("guild has no member")
	}
	return uid
}

// customEmoji returns "name:id" of a custom emoji in gid, or "" if none.
func customEmoji(s *Server, gid Snowflake) string {
	s.world.mu.RLock()
	defer s.world.mu.RUnlock()
	var ids []Snowflake
	for id := range s.world.guilds[gid].Emojis {
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return ""
	}
	slices.Sort(ids)
	return s.world.guilds[gid].Emojis[ids[0]].Name + ":" + ids[0].String()
}
