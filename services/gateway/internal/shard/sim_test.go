package shard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubecord/kubecord/discordsim"
	"github.com/kubecord/kubecord/services/gateway/internal/identify"
)

// recorder is a Handler that remembers every dispatch.
type recorder struct {
	mu       sync.Mutex
	seqs     map[int]map[uint64]int // shard -> seq -> times received
	names    map[int]map[string]int // shard -> event -> count
	readyAt  map[int][]time.Time
	order    map[int][]uint64
	badOrder []string
	// wrongShard lists GUILD_CREATEs that arrived on a shard the guild does not route to.
	wrongShard []string
}

func newRecorder() *recorder {
	return &recorder{seqs: map[int]map[uint64]int{}, names: map[int]map[string]int{}, readyAt: map[int][]time.Time{}, order: map[int][]uint64{}}
}

func (r *recorder) HandleDispatch(d Dispatch) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seqs[d.ShardID] == nil {
		r.seqs[d.ShardID] = map[uint64]int{}
		r.names[d.ShardID] = map[string]int{}
	}
	if d.Name == "READY" {
		r.readyAt[d.ShardID] = append(r.readyAt[d.ShardID], d.ReceivedAt)
		// A new session numbers from 1 again.
		r.seqs[d.ShardID] = map[uint64]int{}
		r.order[d.ShardID] = nil
	}
	r.seqs[d.ShardID][d.Seq]++
	r.names[d.ShardID][d.Name]++
	r.order[d.ShardID] = append(r.order[d.ShardID], d.Seq)
	if d.Name == "GUILD_CREATE" {
		var g struct {
			ID discordsim.Snowflake `json:"id"`
		}
		if err := json.Unmarshal(d.Data, &g); err != nil || discordsim.ShardFor(g.ID, d.ShardCount) != d.ShardID {
			r.wrongShard = append(r.wrongShard, fmt.Sprintf("guild %d on shard %d/%d (err %v)", g.ID, d.ShardID, d.ShardCount, err))
		}
	}
	if len(d.Data) == 0 || d.Data[0] != '{' && d.Name != "RESUMED" {
		r.badOrder = append(r.badOrder, fmt.Sprintf("shard %d seq %d %s has data %q", d.ShardID, d.Seq, d.Name, d.Data))
	}
}

func (r *recorder) count(shard int, name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.names[shard][name]
}

// missing returns the sequences in 1..last the shard's current session never received.
func (r *recorder) missing(shard int, last int64) []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int64
	for q := int64(1); q <= last; q++ {
		if r.seqs[shard][uint64(q)] == 0 {
			out = append(out, q)
		}
	}
	return out
}

// eventually bounds every wait on a condition. Conditions normally hold within
// milliseconds; the bound is generous because this machine is shared and -race is slow.
const eventually = 30 * time.Second

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not a wait for a condition
	}
}

func startSim(t *testing.T, cfg discordsim.Config) *discordsim.Server {
	t.Helper()
	// Heartbeat timers are short enough for the zombie tests, long enough that a loaded
	// machine running -race does not look like a dead connection.
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = time.Second
	}
	if cfg.HeartbeatTimeout == 0 {
		cfg.HeartbeatTimeout = 20 * time.Second
	}
	if cfg.IdentifyWindow == 0 {
		cfg.IdentifyWindow = 50 * time.Millisecond
	}
	if cfg.Guilds == 0 {
		cfg.Guilds = 6
	}
	sim, err := discordsim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	return sim
}

type harness struct {
	t      *testing.T
	sim    *discordsim.Server
	rec    *recorder
	m      *Manager
	cancel context.CancelFunc
	done   chan error
}

func testLogger(t *testing.T) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("SHARD_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// baseConfig is a Config for sim with fast timers.
func baseConfig(t *testing.T, sim *discordsim.Server, rec *recorder) Config {
	t.Helper()
	lim, err := identify.NewMemory(identify.MemoryConfig{
		Limit: identify.SessionStartLimit{Total: 1000, Remaining: 1000, MaxConcurrency: sim.Config().MaxConcurrency},
		// The simulator measures the window when an identify arrives; the margin covers
		// the jitter between sending and arriving.
		Window: sim.Config().IdentifyWindow + 60*time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return Config{
		Token:       sim.Bots()[0].Token,
		GatewayURL:  sim.GatewayURL(),
		Intents:     1 | 1<<9 | 1<<11 | 1<<10 | 1<<7 | 1<<8 | 1<<1,
		ShardCount:  sim.Config().Shards,
		Compression: CompressionZlib,
		Identify:    lim,
		Sessions:    NewMemorySessionStore(),
		Handler:     rec,
		Logger:      testLogger(t),
		Timing: Timing{
			InvalidSessionMin: 10 * time.Millisecond,
			InvalidSessionMax: 30 * time.Millisecond,
			BackoffMin:        20 * time.Millisecond,
			BackoffMax:        200 * time.Millisecond,
		},
	}
}

func runManager(t *testing.T, sim *discordsim.Server, cfg Config) *harness {
	t.Helper()
	m, err := NewManager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	h := &harness{t: t, sim: sim, rec: cfg.Handler.(*recorder), m: m, cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- m.Run(ctx) }()
	// Tests that care about Run's error call stop themselves; later calls return nil.
	t.Cleanup(func() { _ = h.stop() })
	return h
}

// stop cancels Run and returns its error (once; later calls return nil).
func (h *harness) stop() error {
	h.cancel()
	select {
	case err, ok := <-h.done:
		if ok {
			close(h.done)
		}
		return err
	case <-time.After(eventually):
		h.t.Fatalf("Run did not return within %s of cancel", eventually)
		return nil
	}
}

func (h *harness) status(id int) ShardStatus {
	for _, s := range h.m.Status() {
		if s.ID == id {
			return s
		}
	}
	h.t.Fatalf("no status for shard %d", id)
	return ShardStatus{}
}

func (h *harness) waitReady(id int) ShardStatus {
	h.t.Helper()
	waitFor(h.t, eventually, fmt.Sprintf("shard %d ready", id), func() bool { return h.status(id).State == StateReady })
	return h.status(id)
}

// simSession returns the sim's accounting of a session.
func (h *harness) simSession(id string) discordsim.SessionStats {
	h.t.Helper()
	for _, s := range h.sim.Sessions() {
		if s.SessionID == id {
			return s
		}
	}
	h.t.Fatalf("simulator has no session %q", id)
	return discordsim.SessionStats{}
}

// assertNoGap checks that the shard received every sequence the simulator assigned in
// its current session, once the simulator is quiet.
func (h *harness) assertNoGap(id int) {
	h.t.Helper()
	st := h.status(id)
	var last int64
	waitFor(h.t, eventually, fmt.Sprintf("shard %d to catch up with the simulator", id), func() bool {
		last = h.simSession(st.SessionID).LastSeq
		return int64(h.status(id).Seq) >= last
	})
	if miss := h.rec.missing(id, last); len(miss) > 0 {
		h.t.Fatalf("shard %d missed %d of %d sequences, first %v", id, len(miss), last, miss[:min(10, len(miss))])
	}
	h.rec.mu.Lock()
	bad := slices.Clone(h.rec.badOrder)
	h.rec.mu.Unlock()
	if len(bad) > 0 {
		h.t.Fatalf("bad dispatches: %v", bad[:min(5, len(bad))])
	}
}

func TestSimIdentifyReadyGuildCreate(t *testing.T) {
	t.Parallel()
	for _, comp := range []string{CompressionZlib, CompressionZstd, CompressionNone} {
		t.Run("compress="+comp, func(t *testing.T) {
			t.Parallel()
			sim := startSim(t, discordsim.Config{Guilds: 8, Shards: 2})
			rec := newRecorder()
			cfg := baseConfig(t, sim, rec)
			cfg.Compression = comp
			h := runManager(t, sim, cfg)
			for id := range 2 {
				st := h.waitReady(id)
				if st.SessionID == "" || st.Identifies != 1 {
					t.Fatalf("shard %d status %+v, want a session from one identify", id, st)
				}
			}
			// Each guild's GUILD_CREATE reaches the shard it routes to.
			waitFor(t, eventually, "GUILD_CREATE for every guild", func() bool {
				return rec.count(0, "GUILD_CREATE")+rec.count(1, "GUILD_CREATE") == 8
			})
			rec.mu.Lock()
			wrong := slices.Clone(rec.wrongShard)
			rec.mu.Unlock()
			if len(wrong) > 0 {
				t.Fatalf("GUILD_CREATE on the wrong shard: %v", wrong)
			}
			if rec.count(0, "READY") != 1 || rec.count(1, "READY") != 1 {
				t.Fatalf("READY counts %d/%d, want 1 each", rec.count(0, "READY"), rec.count(1, "READY"))
			}
			for id := range 2 {
				h.assertNoGap(id)
			}
			if st := sim.GatewayStats(); st.Identifies != 2 || st.IdentifyRateLimited != 0 {
				t.Fatalf("simulator saw %d identifies (%d rate limited), want 2 and 0", st.Identifies, st.IdentifyRateLimited)
			}
		})
	}
}

// faultCase is a fault injected into a running shard under load.
type faultCase struct {
	name        string
	inject      func(sim *discordsim.Server, sessionID string) int
	wantResume  bool // the same session continues; else a new one is identified
	simCfg      discordsim.Config
	compression string
}

func TestSimFaultsUnderLoad(t *testing.T) {
	t.Parallel()
	tests := []faultCase{
		{name: "disconnect 4000 resumes", wantResume: true, inject: func(sim *discordsim.Server, id string) int {
			return sim.Disconnect(discordsim.SessionTarget(id), 4000)
		}},
		{name: "disconnect 4008 resumes zstd", wantResume: true, compression: CompressionZstd, inject: func(sim *discordsim.Server, id string) int {
			return sim.Disconnect(discordsim.SessionTarget(id), 4008)
		}},
		{name: "op 7 resumes", wantResume: true, inject: func(sim *discordsim.Server, id string) int {
			return sim.SendReconnect(discordsim.SessionTarget(id))
		}},
		{name: "op 9 true resumes", wantResume: true, inject: func(sim *discordsim.Server, id string) int {
			return sim.InvalidateSession(discordsim.SessionTarget(id), true)
		}},
		{name: "op 9 false identifies", wantResume: false, inject: func(sim *discordsim.Server, id string) int {
			return sim.InvalidateSession(discordsim.SessionTarget(id), false)
		}},
		{name: "zombie resumes", wantResume: true, simCfg: discordsim.Config{HeartbeatInterval: 700 * time.Millisecond},
			inject: func(sim *discordsim.Server, id string) int {
				return sim.Zombie(discordsim.SessionTarget(id), true)
			}},
		{name: "disconnect 4009 identifies", wantResume: false, inject: func(sim *discordsim.Server, id string) int {
			return sim.Disconnect(discordsim.SessionTarget(id), 4009)
		}},
		{name: "disconnect 4007 identifies", wantResume: false, inject: func(sim *discordsim.Server, id string) int {
			return sim.Disconnect(discordsim.SessionTarget(id), 4007)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			simCfg := tc.simCfg
			simCfg.Guilds, simCfg.Shards = 4, 1
			sim := startSim(t, simCfg)
			rec := newRecorder()
			cfg := baseConfig(t, sim, rec)
			if tc.compression != "" {
				cfg.Compression = tc.compression
			}
			h := runManager(t, sim, cfg)
			before := h.waitReady(0)
			if err := sim.StartLoad(discordsim.LoadConfig{Rate: 200}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, eventually, "some load", func() bool { return h.status(0).Seq > before.Seq+200 })
			if n := tc.inject(sim, before.SessionID); n != 1 {
				t.Fatalf("fault reached %d connections, want 1", n)
			}
			waitFor(t, eventually, "the shard back after the fault", func() bool {
				st := h.status(0)
				return st.State == StateReady && (st.Resumes > 0 || st.Identifies > 1)
			})
			// Traffic continues on the recovered session for a while.
			mid := h.status(0).Seq
			waitFor(t, eventually, "load after recovery", func() bool { return h.status(0).Seq > mid+200 })
			sim.StopLoad()
			after := h.status(0)
			if tc.wantResume {
				if after.SessionID != before.SessionID || after.Resumes < 1 || after.Identifies != 1 {
					t.Fatalf("after the fault: %+v, want session %s resumed without a new identify", after, before.SessionID)
				}
			} else if after.SessionID == before.SessionID || after.Identifies != 2 {
				t.Fatalf("after the fault: %+v, want a new identified session", after)
			}
			h.assertNoGap(0)
			if st := sim.GatewayStats(); st.IdentifyRateLimited != 0 || st.Closes["4008"] != 0 && tc.name != "disconnect 4008 resumes zstd" {
				t.Fatalf("simulator stats: %d identifies rate limited, closes %v", st.IdentifyRateLimited, st.Closes)
			}
		})
	}
}

func TestSimFatalCloseCodes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code    int
		allStop bool
		want    string
	}{
		{4004, true, "bot token"},
		{4010, false, "invalid shard"},
		{4011, false, "sharding required"},
		{4012, false, "API version"},
		{4013, false, "invalid intents"},
		{4014, false, "disallowed intents"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			t.Parallel()
			sim := startSim(t, discordsim.Config{Guilds: 4, Shards: 2})
			rec := newRecorder()
			h := runManager(t, sim, baseConfig(t, sim, rec))
			h.waitReady(0)
			h.waitReady(1)
			if n := sim.Disconnect(discordsim.ShardTarget(0), tc.code); n != 1 {
				t.Fatalf("disconnect reached %d connections", n)
			}
			waitFor(t, eventually, "shard 0 failed", func() bool { return h.status(0).State == StateFailed })
			if tc.allStop {
				select {
				case err := <-h.done:
					h.done <- err
				case <-time.After(eventually):
					t.Fatalf("Run did not return within %s after 4004", eventually)
				}
			} else {
				// The other shard keeps running.
				if st := h.status(1); st.State != StateReady {
					t.Fatalf("shard 1 is %s after shard 0's fatal close, want ready", st.State)
				}
			}
			err := h.stop()
			if !errors.Is(err, ErrFatal) || !strings.Contains(err.Error(), fmt.Sprint(tc.code)) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run error = %v, want ErrFatal with %d and %q", err, tc.code, tc.want)
			}
			if strings.Contains(err.Error(), sim.Bots()[0].Token) {
				t.Fatal("the error contains the token")
			}
			if got := h.status(0).LastError; !strings.Contains(got, fmt.Sprint(tc.code)) {
				t.Fatalf("status last error %q does not name the code", got)
			}
		})
	}
}

func TestSimFatalFromRealCauses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(*Config, *discordsim.Server)
		simCfg discordsim.Config
		want   int
	}{
		{"bad token", func(c *Config, _ *discordsim.Server) { c.Token = "MTIzNDU2Nzg5.bad.token-value-that-is-wrong" }, discordsim.Config{}, 4004},
		{"unknown intent bits", func(c *Config, _ *discordsim.Server) { c.Intents = 1 << 40 }, discordsim.Config{}, 4013},
		{"privileged intent not enabled", func(c *Config, _ *discordsim.Server) { c.Intents = 1 << 15 },
			discordsim.Config{Bots: []discordsim.Bot{{ID: 1 << 40, Name: "plain", Token: "MTA5OTUxMTYyNzc3Ng.plain.bot-token-for-tests-000000", PrivilegedIntents: 0}}}, 4014},
		{"too many guilds per shard", func(*Config, *discordsim.Server) {}, discordsim.Config{Guilds: 5, MaxGuildsPerShard: 2}, 4011},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sim := startSim(t, tc.simCfg)
			rec := newRecorder()
			cfg := baseConfig(t, sim, rec)
			cfg.Intents = 1
			tc.mutate(&cfg, sim)
			logs := &lockedBuffer{}
			cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			m, err := NewManager(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), eventually)
			defer cancel()
			err = m.Run(ctx)
			if !errors.Is(err, ErrFatal) || !strings.Contains(err.Error(), fmt.Sprint(tc.want)) {
				t.Fatalf("Run = %v, want fatal %d", err, tc.want)
			}
			if strings.Contains(err.Error(), cfg.Token) {
				t.Fatal("the error contains the token")
			}
			if out := logs.String(); out == "" || strings.Contains(out, cfg.Token) {
				t.Fatalf("debug logs (%d bytes) are empty or contain the token", len(out))
			}
		})
	}
}

// lockedBuffer collects log output from several goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// grantLog wraps a Limiter and records when each shard was allowed to identify.
type grantLog struct {
	identify.Limiter
	mu     sync.Mutex
	grants map[int][]time.Time
}

func (g *grantLog) Wait(ctx context.Context, shardID int) error {
	err := g.Limiter.Wait(ctx, shardID)
	if err == nil {
		g.mu.Lock()
		g.grants[shardID] = append(g.grants[shardID], time.Now())
		g.mu.Unlock()
	}
	return err
}

func TestSimIdentifyWindows(t *testing.T) {
	t.Parallel()
	const window = 250 * time.Millisecond
	sim := startSim(t, discordsim.Config{Guilds: 12, Shards: 6, MaxConcurrency: 2, IdentifyWindow: window})
	rec := newRecorder()
	cfg := baseConfig(t, sim, rec)
	grants := &grantLog{Limiter: cfg.Identify, grants: map[int][]time.Time{}}
	cfg.Identify = grants
	h := runManager(t, sim, cfg)
	for id := range 6 {
		h.waitReady(id)
	}
	// The simulator measures every bucket's window as identifies arrive.
	if st := sim.GatewayStats(); st.IdentifyRateLimited != 0 || st.Identifies != 6 {
		t.Fatalf("simulator: %d identifies, %d rate limited; want 6 and 0", st.Identifies, st.IdentifyRateLimited)
	}
	grants.mu.Lock()
	defer grants.mu.Unlock()
	for id := range 6 {
		if len(grants.grants[id]) != 1 {
			t.Fatalf("shard %d identified %d times, want once", id, len(grants.grants[id]))
		}
	}
	// Shards k and k+2 share a bucket: a window apart, and in shard order.
	for id := 2; id < 6; id++ {
		a, b := grants.grants[id-2][0], grants.grants[id][0]
		if d := b.Sub(a); d < window {
			t.Errorf("shards %d and %d (same bucket) identified %s apart, want >= %s", id-2, id, d, window)
		}
	}
	// Buckets fill in order: shard 2 (second round) never before shard 1 (first round).
	if grants.grants[2][0].Before(grants.grants[1][0]) {
		t.Errorf("shard 2 identified before shard 1")
	}
}

func TestSimSendLimit(t *testing.T) {
	t.Parallel()
	sim := startSim(t, discordsim.Config{Guilds: 2, Shards: 1, SendLimit: 12, SendWindow: time.Second})
	rec := newRecorder()
	cfg := baseConfig(t, sim, rec)
	cfg.Timing.SendLimit, cfg.Timing.SendWindow = 12, time.Second
	h := runManager(t, sim, cfg)
	h.waitReady(0)
	start := time.Now()
	const commands = 15
	for i := range commands {
		presence := map[string]any{"since": nil, "activities": []any{}, "status": "online", "afk": false}
		if err := h.m.Send(t.Context(), 0, 3, presence); err != nil {
			t.Fatalf("command %d: %v", i, err)
		}
	}
	elapsed := time.Since(start)
	// Headroom for 1 s heartbeats in a 1 s window is 5 of 12, so 15 commands at 7 per
	// window need at least two more windows.
	if elapsed < 2*time.Second-100*time.Millisecond {
		t.Fatalf("15 commands took %s, want the send limit to spread them over >= 2s", elapsed)
	}
	st := sim.GatewayStats()
	if st.Closes["4008"] != 0 || st.ClientCloses["4008"] != 0 {
		t.Fatalf("simulator closed with 4008 (rate limited): %v", st.Closes)
	}
	if s := h.status(0); s.State != StateReady || s.Reconnects != 0 {
		t.Fatalf("shard after the burst: %+v, want ready and never reconnected", s)
	}
}

func TestSendErrors(t *testing.T) {
	t.Parallel()
	sim := startSim(t, discordsim.Config{Guilds: 2, Shards: 1})
	rec := newRecorder()
	cfg := baseConfig(t, sim, rec)
	m, err := NewManager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		shard, op int
		d         any
		want      error
		wantText  string
	}{
		{0, 2, nil, nil, "cannot be sent"},
		{0, 1, nil, nil, "cannot be sent"},
		{7, 3, nil, nil, "not run by this manager"},
		{0, 3, map[string]string{"x": strings.Repeat("a", 5000)}, nil, "4096"},
		{0, 3, map[string]any{"status": "online"}, ErrShardDown, "idle"},
		{0, 8, func() {}, nil, "encoding"},
	}
	for _, tc := range tests {
		err := m.Send(t.Context(), tc.shard, tc.op, tc.d)
		if err == nil || !strings.Contains(err.Error(), tc.wantText) || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("Send(shard %d, op %d) = %v, want an error with %q", tc.shard, tc.op, err, tc.wantText)
		}
	}
}

func TestSimRestartResumes(t *testing.T) {
	t.Parallel()
	sim := startSim(t, discordsim.Config{Guilds: 4, Shards: 1})
	rec := newRecorder()
	cfg := baseConfig(t, sim, rec)
	h := runManager(t, sim, cfg)
	first := h.waitReady(0)
	if err := sim.StartLoad(discordsim.LoadConfig{Rate: 1000}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, eventually, "some load", func() bool { return h.status(0).Seq > first.Seq+100 })
	if err := h.stop(); err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
	saved, ok, err := cfg.Sessions.Load(t.Context(), 0)
	if err != nil || !ok || saved.ID != first.SessionID || saved.Seq == 0 {
		t.Fatalf("saved session %+v ok=%v err=%v, want session %s with its seq", saved, ok, err, first.SessionID)
	}
	// A new manager with the same store resumes; the recorder keeps the old sequences.
	h2 := runManager(t, sim, cfg)
	h2.waitReady(0)
	mid := h2.status(0).Seq
	waitFor(t, eventually, "load after restart", func() bool { return h2.status(0).Seq > mid+100 })
	sim.StopLoad()
	st := h2.status(0)
	if st.SessionID != first.SessionID || st.Resumes != 1 || st.Identifies != 0 {
		t.Fatalf("restarted shard %+v, want session %s resumed", st, first.SessionID)
	}
	h2.assertNoGap(0)
	if got := sim.GatewayStats().Identifies; got != 1 {
		t.Fatalf("simulator saw %d identifies, want 1 (the restart resumed)", got)
	}
}

func TestSimResumeFromWatermark(t *testing.T) {
	t.Parallel()
	sim := startSim(t, discordsim.Config{Guilds: 4, Shards: 1})
	rec := newRecorder()
	cfg := baseConfig(t, sim, rec)
	var wmMu sync.Mutex
	var wm uint64
	cfg.Watermark = func(int) uint64 { wmMu.Lock(); defer wmMu.Unlock(); return wm }
	h := runManager(t, sim, cfg)
	first := h.waitReady(0)
	if err := sim.StartLoad(discordsim.LoadConfig{Rate: 1000}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, eventually, "some load", func() bool { return h.status(0).Seq > first.Seq+300 })
	sim.StopLoad()
	last := h.status(0).Seq
	wmMu.Lock()
	wm = last - 100 // pretend the last 100 were received but not delivered everywhere
	wmMu.Unlock()
	sim.Disconnect(discordsim.SessionTarget(first.SessionID), 4000)
	waitFor(t, eventually, "resume", func() bool { return h.status(0).Resumes == 1 && h.status(0).State == StateReady })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	// Everything after the watermark is replayed (more than once if a slow machine caused
	// another resume), nothing at or before it.
	for q := wm + 1; q <= last; q++ {
		if rec.seqs[0][q] < 2 {
			t.Fatalf("seq %d received %d times, want at least 2 (replayed from the watermark %d)", q, rec.seqs[0][q], wm)
		}
	}
	if rec.seqs[0][wm] != 1 {
		t.Fatalf("seq %d at the watermark received %d times, want 1", wm, rec.seqs[0][wm])
	}
}

func TestSimServerRequestedHeartbeat(t *testing.T) {
	t.Parallel()
	sim := startSim(t, discordsim.Config{Guilds: 2, Shards: 1, HeartbeatInterval: 10 * time.Second})
	rec := newRecorder()
	h := runManager(t, sim, baseConfig(t, sim, rec))
	h.waitReady(0)
	before := sim.GatewayStats().Heartbeats
	sim.RequestHeartbeat(discordsim.ShardTarget(0))
	waitFor(t, eventually, "the requested heartbeat", func() bool { return sim.GatewayStats().Heartbeats > before })
	waitFor(t, eventually, "a latency from the ACK", func() bool { return h.status(0).Latency > 0 })
}

func TestSimBudgetRefused(t *testing.T) {
	t.Parallel()
	sim := startSim(t, discordsim.Config{Guilds: 4, Shards: 2})
	rec := newRecorder()
	cfg := baseConfig(t, sim, rec)
	lim, err := identify.NewMemory(identify.MemoryConfig{Limit: identify.SessionStartLimit{Total: 1000, Remaining: 1, MaxConcurrency: 1}})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Identify = lim
	m, err := NewManager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = m.Run(t.Context())
	if !errors.Is(err, identify.ErrBudgetExhausted) || !strings.Contains(err.Error(), "1 of 1000 remain") {
		t.Fatalf("Run = %v, want a refusal naming the budget", err)
	}
	if got := sim.GatewayStats().Connections; got != 0 {
		t.Fatalf("simulator saw %d connections, want none", got)
	}
}
