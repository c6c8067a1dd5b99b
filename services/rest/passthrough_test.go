package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bwmarrin/discordgo"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kubecord/kubecord/discordsim"
	restv1 "github.com/kubecord/kubecord/gen/kubecord/rest/v1"
)

func get(t *testing.T, url string, h http.Header) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func TestPassthroughReturnsDiscordsAnswerUnchanged(t *testing.T) {
	t.Parallel()
	sim := startSim(t, discordsim.RESTConfig{})
	s := startService(t, serviceConfig(sim))
	auth := http.Header{"Authorization": {"Bot " + tokenB}}
	tests := []struct {
		name, path string
		h          http.Header
	}{
		{"v10 with the caller's token", "/api/v10/users/@me", auth},
		{"v9", "/api/v9/users/@me", auth},
		{"default bot", "/api/v10/users/@me", nil},
		{"unknown route", "/api/v10/no/such/route", auth},
		{"query kept", "/api/v10/users/@me?x=1&x=2", auth},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			direct := tc.h
			if direct == nil {
				direct = http.Header{"Authorization": {"Bot " + tokenA}}
			}
			wantCode, wantH, wantBody := get(t, sim.URL()+tc.path, direct)
			code, h, body := get(t, strings.TrimSuffix(s.base, "/api/v10")+tc.path, tc.h)
			if code != wantCode || !bytes.Equal(body, wantBody) {
				t.Errorf("passthrough answered %d %s, Discord %d %s", code, body, wantCode, wantBody)
			}
			for _, k := range []string{"Content-Type", "X-Ratelimit-Bucket", "X-Ratelimit-Limit"} {
				if h.Get(k) != wantH.Get(k) {
					t.Errorf("header %s = %q, Discord sent %q", k, h.Get(k), wantH.Get(k))
				}
			}
		})
	}
}

func TestPassthroughSharedSecretForConfiguredBots(t *testing.T) {
	t.Parallel()
	sim := startSim(t, discordsim.RESTConfig{})
	cfg := serviceConfig(sim)
	cfg.AuthSecret = "a-shared-secret-0123456789"
	s := startService(t, cfg)
	if code, h, _ := get(t, s.base+"/users/@me", nil); code != http.StatusUnauthorized || h.Get(HeaderRefused) == "" {
		t.Errorf("borrowing the default bot without the secret: %d, want a 401 from Kubecord", code)
	}
	if code, _, _ := get(t, s.base+"/users/@me", http.Header{HeaderAuth: {cfg.AuthSecret}}); code != http.StatusOK {
		t.Errorf("with the secret: %d, want 200", code)
	}
	if code, _, _ := get(t, s.base+"/users/@me", http.Header{"Authorization": {"Bot " + tokenB}}); code != http.StatusOK {
		t.Errorf("with the caller's own token: %d, want 200", code)
	}
	if code, _, _ := get(t, s.base+"/users/@me", http.Header{HeaderAuth: {cfg.AuthSecret}, HeaderBot: {"nobody"}}); code != http.StatusUnauthorized {
		t.Errorf("an unknown bot name: %d, want 401", code)
	}
}

func TestBodyOverTheLimitIsNotSent(t *testing.T) {
	t.Parallel()
	sim := startSim(t, discordsim.RESTConfig{})
	cfg := serviceConfig(sim)
	cfg.MaxBodyBytes = 1024
	s := startService(t, cfg)
	big := []byte(`{"content":"` + strings.Repeat("x", 2000) + `"}`)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.base+"/channels/1/messages", bytes.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("passthrough: %d, want 413", resp.StatusCode)
	}
	// Without Content-Length (chunked), the limit holds too.
	req, err = http.NewRequestWithContext(t.Context(), http.MethodPost, s.base+"/channels/1/messages", io.MultiReader(bytes.NewReader(big)))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = -1
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("passthrough, chunked: %d, want 413", resp.StatusCode)
	}
	_, err = s.client.Do(t.Context(), &restv1.DoRequest{Method: "POST", Path: "/channels/1/messages", Body: big})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("Do: %v, want INVALID_ARGUMENT", err)
	}
	_, err = s.client.Do(t.Context(), &restv1.DoRequest{Method: "POST", Path: "/channels/1/messages",
		Files: []*restv1.File{{Name: "a.bin", Data: make([]byte, 2000)}}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("Do with a big file: %v, want INVALID_ARGUMENT", err)
	}
	if n := sim.RESTStats().Requests; n != 0 {
		t.Errorf("the simulator saw %d requests, want none", n)
	}
}

func TestRetriesOnlyIdempotentMethods(t *testing.T) {
	t.Parallel()
	sim := startSim(t, discordsim.RESTConfig{})
	ch := textChannels(t, sim, tokenA)[0]
	cfg := serviceConfig(sim)
	cfg.RetryBackoff = time.Millisecond
	s := startService(t, cfg)
	if err := sim.InjectRESTFault(discordsim.RESTFault{Route: "/users/@me", Method: "GET", Status: 502, Count: 2}); err != nil {
		t.Fatal(err)
	}
	res, err := s.client.Do(t.Context(), &restv1.DoRequest{Method: "GET", Path: "/users/@me"})
	if err != nil || res.GetStatus() != http.StatusOK || res.GetRateLimit().GetRetries() != 2 {
		t.Fatalf("GET after two 502s: %v %v, want 200 after 2 retries", res, err)
	}
	if err := sim.InjectRESTFault(discordsim.RESTFault{Route: "/messages", Method: "POST", Status: 503, Count: 1}); err != nil {
		t.Fatal(err)
	}
	before := sim.RESTStats().Requests
	res, err = s.client.Do(t.Context(), doMsg(ch))
	if err != nil || res.GetStatus() != http.StatusServiceUnavailable {
		t.Fatalf("POST after a 503: %v %v, want the 503 returned, not retried", res, err)
	}
	if n := sim.RESTStats().Requests - before; n != 1 {
		t.Errorf("a failed POST was sent %d times, want once", n)
	}
	if err := sim.InjectRESTFault(discordsim.RESTFault{Route: "/users/@me", Method: "GET", Drop: true, Count: 1}); err != nil {
		t.Fatal(err)
	}
	res, err = s.client.Do(t.Context(), &restv1.DoRequest{Method: "GET", Path: "/users/@me"})
	if err != nil || res.GetStatus() != http.StatusOK {
		t.Fatalf("GET after a dropped connection: %v %v, want 200 after a retry", res, err)
	}
}

func TestDoUploadsFiles(t *testing.T) {
	t.Parallel()
	sim := startSim(t, discordsim.RESTConfig{})
	ch := textChannels(t, sim, tokenA)[0]
	s := startService(t, serviceConfig(sim))
	res, err := s.client.Do(t.Context(), &restv1.DoRequest{
		Method: "POST", Path: "/api/v10/channels/" + ch + "/messages",
		Body:           []byte(`{"content":"with a file","attachments":[{"id":0,"filename":"hello.txt"}]}`),
		Files:          []*restv1.File{{Name: "hello.txt", ContentType: "text/plain", Data: []byte("hello, world")}},
		AuditLogReason: "testing uploads",
	})
	if err != nil || res.GetStatus() != http.StatusOK {
		t.Fatalf("upload: %v %v", res, err)
	}
	var m struct {
		Attachments []struct {
			Filename string `json:"filename"`
			Size     int    `json:"size"`
		} `json:"attachments"`
	}
	if err := json.Unmarshal(res.GetBody(), &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Attachments) != 1 || m.Attachments[0].Filename != "hello.txt" || m.Attachments[0].Size != 12 {
		t.Errorf("attachments %+v, want hello.txt of 12 bytes", m.Attachments)
	}
}

func TestDoRejectsBadRequests(t *testing.T) {
	t.Parallel()
	sim := startSim(t, discordsim.RESTConfig{})
	s := startService(t, serviceConfig(sim))
	tests := []struct {
		name string
		req  *restv1.DoRequest
		want codes.Code
	}{
		{"bad method", &restv1.DoRequest{Method: "BREW", Path: "/users/@me"}, codes.InvalidArgument},
		{"relative path", &restv1.DoRequest{Method: "GET", Path: "users/@me"}, codes.InvalidArgument},
		{"dot segments", &restv1.DoRequest{Method: "GET", Path: "/users/../../x"}, codes.InvalidArgument},
		{"authorization header", &restv1.DoRequest{Method: "GET", Path: "/users/@me", Headers: []*restv1.Header{{Name: "authorization", Value: "x"}}}, codes.InvalidArgument},
		{"header injection", &restv1.DoRequest{Method: "GET", Path: "/users/@me", Headers: []*restv1.Header{{Name: "X-A", Value: "a\r\nB: c"}}}, codes.InvalidArgument},
		{"unknown bot", &restv1.DoRequest{Method: "GET", Path: "/users/@me", Bot: "nobody"}, codes.InvalidArgument},
		{"long audit reason", &restv1.DoRequest{Method: "GET", Path: "/users/@me", AuditLogReason: strings.Repeat("r", 513)}, codes.InvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.client.Do(t.Context(), tc.req); status.Code(err) != tc.want {
				t.Errorf("Do: %v, want %s", err, tc.want)
			}
		})
	}
	if n := sim.RESTStats().Requests; n != 0 {
		t.Errorf("the simulator saw %d requests, want none", n)
	}
}

// lockedBuffer collects log output from concurrent handlers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestTokensNeverInErrorsOrLogs(t *testing.T) {
	t.Parallel()
	// Nothing listens on this address: every request fails at the network.
	l := httptest.NewServer(http.NotFoundHandler())
	dead := l.URL
	l.Close()
	var logs lockedBuffer
	cfg := DefaultConfig()
	cfg.DiscordURL = dead + "/api"
	cfg.HTTPListen = ""
	cfg.Bots = []Bot{{Name: "alpha", Token: tokenA}}
	cfg.RetryBackoff = time.Millisecond
	svc, err := New(cfg, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	const hookToken = "webhook-secret-token-do-not-leak"
	for _, req := range []*restv1.DoRequest{
		{Method: "GET", Path: "/users/@me"},
		{Method: "POST", Path: "/webhooks/1/" + hookToken, Body: []byte(`{}`)},
		{Method: "GET", Path: "/users/@me", Token: "Bot per-request-token-do-not-leak"},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		_, err := svc.Do(ctx, req)
		cancel()
		if status.Code(err) != codes.Unavailable {
			t.Errorf("Do %s: %v, want UNAVAILABLE", req.GetPath(), err)
		}
		for _, secret := range []string{tokenA, hookToken, "per-request-token-do-not-leak"} {
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Errorf("error %q contains a token", err)
			}
		}
	}
	rec := httptest.NewRecorder()
	svc.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/v10/webhooks/1/"+hookToken, strings.NewReader("{}")))
	out := logs.String() + rec.Body.String()
	for _, secret := range []string{tokenA, hookToken, "per-request-token-do-not-leak"} {
		if strings.Contains(out, secret) {
			t.Errorf("a token appears in the logs or a passthrough answer:\n%s", out)
		}
	}
	if err := svc.Stop(t.Context()); err != nil {
		t.Error(err)
	}
}

// TestDiscordgoThroughPassthrough points an existing Go Discord library
// at the passthrough. It changes discordgo's package-level endpoints, so
// it does not run in parallel with anything else using discordgo.
func TestDiscordgoThroughPassthrough(t *testing.T) {
	sim := startSim(t, discordsim.RESTConfig{})
	ch := textChannels(t, sim, tokenA)[0]
	s := startService(t, serviceConfig(sim))
	oldAPI, oldChannels, oldUsers := discordgo.EndpointAPI, discordgo.EndpointChannels, discordgo.EndpointUsers
	t.Cleanup(func() {
		discordgo.EndpointAPI, discordgo.EndpointChannels, discordgo.EndpointUsers = oldAPI, oldChannels, oldUsers
	})
	discordgo.EndpointAPI = s.base + "/"
	discordgo.EndpointChannels = discordgo.EndpointAPI + "channels/"
	discordgo.EndpointUsers = discordgo.EndpointAPI + "users/"

	dg, err := discordgo.New("Bot " + tokenB)
	if err != nil {
		t.Fatal(err)
	}
	me, err := dg.User("@me")
	if err != nil {
		t.Fatalf("discordgo User(@me) through the passthrough: %v", err)
	}
	if me.Username == "" || !me.Bot {
		t.Errorf("user %+v, want the bot", me)
	}
	m, err := dg.ChannelMessageSendComplex(ch, &discordgo.MessageSend{
		Content: "hello from discordgo",
		Files:   []*discordgo.File{{Name: "a.txt", ContentType: "text/plain", Reader: strings.NewReader("attached")}},
	})
	if err != nil {
		t.Fatalf("discordgo ChannelMessageSendComplex through the passthrough: %v", err)
	}
	if m.Content != "hello from discordgo" || len(m.Attachments) != 1 || m.Author == nil || m.Author.ID != me.ID {
		t.Errorf("message %+v, want the content, one attachment and the bot as author", m)
	}
	for range 12 {
		if _, err := dg.ChannelMessageSend(ch, "burst"); err != nil {
			t.Fatalf("burst through the passthrough: %v", err)
		}
	}
	assertNo429(t, sim)
}

func FuzzPassthrough(f *testing.F) {
	sim := startSim(f, discordsim.RESTConfig{GlobalLimit: 1 << 20})
	cfg := serviceConfig(sim)
	cfg.RequestTimeout = 50 * time.Millisecond
	cfg.Limits.GlobalLimit = 1 << 20
	cfg.MaxBodyBytes = 4096
	svc, err := New(cfg, nil)
	if err != nil {
		f.Fatal(err)
	}
	h := svc.Handler()
	f.Add("GET", "/api/v10/users/@me", "Authorization", "Bot "+tokenA, "")
	f.Add("POST", "/api/v9/channels/1/messages", "Content-Type", "application/json", `{"content":"x"}`)
	f.Add("PUT", "/api/v10/channels/1/messages/2/reactions/%F0%9F%91%8D/@me", "X-Kubecord-Bot", "beta", "")
	f.Add("POST", "/api/v10/webhooks/1/tok", "", "", "{}")
	f.Add("GET", "/api/v1x/../x", "Authorization", "Bearer ", "")
	f.Add("DELETE", "/nope", "Connection", "close", "")
	f.Fuzz(func(t *testing.T, method, path, hname, hvalue, body string) {
		u, err := url.Parse("http://kubecord" + path)
		if err != nil || method == "" || strings.ContainsAny(method, " \r\n\t") {
			return
		}
		req := httptest.NewRequest(http.MethodGet, "/", strings.NewReader(body))
		req.Method, req.URL = method, u
		if hname != "" && !strings.ContainsAny(hname, " :\r\n") && !strings.ContainsAny(hvalue, "\r\n") {
			req.Header.Set(hname, hvalue)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code < 100 || rec.Code > 599 {
			t.Fatalf("status %d", rec.Code)
		}
		if strings.Contains(rec.Body.String(), tokenA) || strings.Contains(rec.Body.String(), tokenB) {
			t.Fatal("a configured token leaked into an answer")
		}
	})
}
