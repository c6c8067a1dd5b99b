package rest

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/kubecord/kubecord/discordsim"
	restv1 "github.com/kubecord/kubecord/gen/kubecord/rest/v1"
	"github.com/kubecord/kubecord/internal/runtime"
)

// Test tokens: shaped like Discord's, so the redactor's shape rules apply too.
const (
	tokenA = "MTAwMDAwMDAwMDAwMDAwMDAx.GaAaAa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	tokenB = "MTAwMDAwMDAwMDAwMDAwMDAy.GbBbBb.bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func simBots() []discordsim.Bot {
	const privileged = 1<<1 | 1<<8 | 1<<15 // GUILD_MEMBERS, GUILD_PRESENCES, MESSAGE_CONTENT
	return []discordsim.Bot{{Name: "alpha", Token: tokenA, PrivilegedIntents: privileged}, {Name: "beta", Token: tokenB, PrivilegedIntents: privileged}}
}

// startSim runs a simulator with two bots and the given REST limits.
func startSim(t testing.TB, rc discordsim.RESTConfig) *discordsim.Server {
	t.Helper()
	s, err := discordsim.New(discordsim.Config{Guilds: 2, Members: 20, REST: rc, Bots: simBots()})
	if err != nil {
		t.Fatalf("discordsim.New: %v", err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("discordsim Start: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// textChannels learns the simulator's text channels the way a bot does:
// from the GUILD_CREATEs after identifying on the gateway.
func textChannels(t testing.TB, sim *discordsim.Server, token string) []string {
	t.Helper()
	return learnWorld(t, sim, token).channels
}

// world is what a bot learns from its GUILD_CREATEs.
type world struct {
	channels []string          // text channels
	guildOf  map[string]string // channel -> guild
	members  map[string][]string
}

func learnWorld(t testing.TB, sim *discordsim.Server, token string) world {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, resp, err := websocket.DefaultDialer.DialContext(ctx, sim.GatewayURL()+"/?v=10&encoding=json", nil)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		t.Fatalf("dialing the simulator's gateway: %v", err)
	}
	defer func() { _ = ws.Close() }()
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	identify := map[string]any{"op": 2, "d": map[string]any{
		"token": token, "intents": 1 | 1<<1 | 1<<8, // GUILDS, GUILD_MEMBERS, GUILD_PRESENCES: full member lists "properties": map[string]string{"os": "linux", "browser": "kubecord-test", "device": "kubecord-test"},
	}}
	var guilds int
	w := world{guildOf: map[string]string{}, members: map[string][]string{}}
	for {
		var p struct {
			Op int             `json:"op"`
			T  string          `json:"t"`
			D  json.RawMessage `json:"d"`
		}
		if err := ws.ReadJSON(&p); err != nil {
			t.Fatalf("reading the gateway: %v", err)
		}
		switch {
		case p.Op == 10:
			if err := ws.WriteJSON(identify); err != nil {
				t.Fatalf("identifying: %v", err)
			}
		case p.T == "READY":
			var r struct {
				Guilds []json.RawMessage `json:"guilds"`
			}
			if err := json.Unmarshal(p.D, &r); err != nil {
				t.Fatalf("READY: %v", err)
			}
			guilds = len(r.Guilds)
		case p.T == "GUILD_CREATE":
			var g struct {
				ID       string `json:"id"`
				Channels []struct {
					ID   string `json:"id"`
					Type int    `json:"type"`
				} `json:"channels"`
				Members []struct {
					User struct {
						ID  string `json:"id"`
						Bot bool   `json:"bot"`
					} `json:"user"`
				} `json:"members"`
			}
			if err := json.Unmarshal(p.D, &g); err != nil {
				t.Fatalf("GUILD_CREATE: %v", err)
			}
			for _, c := range g.Channels {
				if c.Type == 0 {
					w.channels = append(w.channels, c.ID)
					w.guildOf[c.ID] = g.ID
				}
			}
			for _, m := range g.Members {
				if !m.User.Bot {
					w.members[g.ID] = append(w.members[g.ID], m.User.ID)
				}
			}
			guilds--
			if guilds == 0 {
				if len(w.channels) == 0 {
					t.Fatal("the simulator has no text channel")
				}
				return w
			}
		}
	}
}

// service is a running REST service with its gRPC client.
type service struct {
	svc    *Service
	client restv1.RestServiceClient
	// base is the passthrough's API base, e.g. http://127.0.0.1:1234/api/v10.
	base string
	reg  *prometheus.Registry
}

// startService runs the REST service (gRPC on a loopback port and the
// passthrough) until the test ends.
func startService(t testing.TB, cfg Config) *service {
	t.Helper()
	if cfg.HTTPListen == "" {
		cfg.HTTPListen = "127.0.0.1:0"
	}
	svc, err := New(cfg, nil)
	if err != nil {
		t.Fatalf("rest.New: %v", err)
	}
	rcfg := runtime.DefaultConfig(0, 0)
	rcfg.MetricsListen = ""
	rcfg.DrainDelay = 0
	rcfg.LogLevel = "error"
	logger, err := runtime.NewLogger("error", "text", testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := runtime.NewServer(rcfg, svc, logger, grpc.MaxRecvMsgSize(64<<20))
	if err != nil {
		t.Fatalf("runtime.NewServer: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runtime.Run(ctx, srv) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("REST service stopped with %v", err)
		}
	})
	select {
	case <-srv.Ready():
	case err := <-done:
		done <- err
		t.Fatalf("REST service did not start: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("REST service not ready after 10s")
	}
	conn, err := runtime.Dial(srv.Addr().String(), rcfg.Client(), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		t.Fatalf("dialing the REST service: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &service{svc: svc, client: restv1.NewRestServiceClient(conn), base: "http://" + svc.HTTPAddr().String() + "/api/v10", reg: srv.Registry()}
}

// testWriter sends service logs to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// serviceConfig points a service at sim with both bots configured.
func serviceConfig(sim *discordsim.Server) Config {
	cfg := DefaultConfig()
	cfg.DiscordURL = sim.URL() + "/api"
	cfg.Bots = []Bot{{Name: "alpha", Token: tokenA}, {Name: "beta", Token: tokenB}}
	cfg.DefaultBot = "alpha"
	cfg.Limits.Margin = 3 * time.Millisecond
	cfg.HTTPListen = "127.0.0.1:0"
	return cfg
}

// hammer runs callers that each call fn in a loop until ctx ends and
// returns the number of calls that returned true.
func hammer(ctx context.Context, callers int, fn func(ctx context.Context, i int) bool) int {
	var mu sync.Mutex
	ok := 0
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			for ctx.Err() == nil {
				if fn(ctx, i) {
					mu.Lock()
					ok++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return ok
}

func doMsg(channel string) *restv1.DoRequest {
	return &restv1.DoRequest{Method: http.MethodPost, Path: "/channels/" + channel + "/messages", Body: []byte(`{"content":"hi"}`)}
}

func itoa(i int) string { return strconv.Itoa(i) }
