package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/kubecord/kubecord/discordsim"
	gatewayv1 "github.com/kubecord/kubecord/gen/kubecord/gateway/v1"
	"github.com/kubecord/kubecord/internal/runtime"
	"github.com/kubecord/kubecord/services/gateway/internal/delivery"
	"github.com/kubecord/kubecord/services/gateway/internal/identify"
	"github.com/kubecord/kubecord/services/gateway/internal/shard"
)

// eventKey identifies an event as the simulator accounts for it.
type eventKey struct {
	session string
	seq     uint64
}

// tally is what one group received of one event.
type tally struct {
	first, redelivered int
	log                []string // each delivery, for failure messages
}

// recorder collects every delivery of every worker, per group.
type recorder struct {
	mu     sync.Mutex
	groups map[string]map[eventKey]*tally
	gaps   map[string]uint64
	// resets counts, per group, the session reset gaps announced (they lose no counted event).
	resets map[string]int
	guilds []uint64 // from GUILD_CREATE, in arrival order
	chunks int      // GUILD_MEMBERS_CHUNK events delivered
	// received counts, per shard and sequence, the dispatches the gateway's shards handed
	// over: it tells a loss before the gateway (shards, simulator) from one inside it.
	received map[[2]uint64]int
}

func newRecorder() *recorder {
	return &recorder{groups: map[string]map[eventKey]*tally{}, gaps: map[string]uint64{}, resets: map[string]int{}, received: map[[2]uint64]int{}}
}

func (r *recorder) add(group string, d *gatewayv1.Delivery) {
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.groups[group]
	if g == nil {
		g = map[eventKey]*tally{}
		r.groups[group] = g
	}
	k := eventKey{d.GetEvent().GetSessionId(), d.GetId().GetSequence()}
	tl := g[k]
	if tl == nil {
		tl = &tally{}
		g[k] = tl
	}
	if d.GetRedelivered() {
		tl.redelivered++
	} else {
		tl.first++
	}
	tl.log = append(tl.log, fmt.Sprintf("delivery %d attempt %d redelivered %v at %s", d.GetDeliveryId(), d.GetAttempt(), d.GetRedelivered(), time.Now().Format("15:04:05.000")))
	switch d.GetEvent().GetName() {
	case "GUILD_CREATE":
		r.guilds = append(r.guilds, d.GetEvent().GetGuildId())
	case "GUILD_MEMBERS_CHUNK":
		r.chunks++
	}
}

// harness is a simulator, a gateway served by internal/runtime on loopback, and workers.
type harness struct {
	t     *testing.T
	sim   *discordsim.Server
	token string
	store *MemorySessionStore
	cfg   Config
	rec   *recorder

	gw      *Server
	client  gatewayv1.GatewayServiceClient
	conn    *grpc.ClientConn
	stopGW  context.CancelFunc
	runDone chan error
}

const e2eShards = 2

func newHarness(t *testing.T, cfg Config, simOpts ...func(*discordsim.Config)) *harness {
	t.Helper()
	simCfg := discordsim.Config{
		Guilds: 24, Shards: e2eShards, HeartbeatInterval: 2 * time.Second,
		IdentifyWindow: 20 * time.Millisecond, SendLimit: 120, SendWindow: time.Second,
		MemberRequestInterval: 10 * time.Millisecond,
	}
	for _, o := range simOpts {
		o(&simCfg)
	}
	sim, err := discordsim.New(simCfg)
	if err != nil {
		t.Fatal(err)
	}
	// Not t.Context(): that ends before the cleanups, and the simulator must outlive the gateway.
	if err := sim.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	h := &harness{t: t, sim: sim, token: sim.Bots()[0].Token, store: NewMemorySessionStore(), rec: newRecorder()}
	cfg.Token = h.token
	cfg.RESTBase = sim.URL() + "/api/v10"
	cfg.Compression = shard.CompressionZlib
	cfg.Intents = 1<<0 | 1<<1 | 1<<7 | 1<<8 | 1<<9 | 1<<10 | 1<<11 | 1<<12 | 1<<15
	cfg.GatewayID = "e2e"
	// Every group the tests use exists from the first event on.
	cfg.Groups = []string{"bot", "state", "fast", "slow", "g"}
	cfg.Sessions = h.store
	cfg.ShardTiming = shard.Timing{
		BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		InvalidSessionMin: 10 * time.Millisecond, InvalidSessionMax: 50 * time.Millisecond,
		HelloTimeout: 5 * time.Second, SendLimit: 120, SendWindow: time.Second,
	}
	h.cfg = cfg
	h.startGateway()
	return h
}

// startGateway runs a fresh gateway service (same session store) until stopGateway.
func (h *harness) startGateway() {
	t := h.t
	t.Helper()
	cfg := h.cfg
	lim, err := identify.NewMemory(identify.MemoryConfig{Window: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Identify = lim
	gw, err := New(cfg, e2eLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	gw.onDispatch = func(d shard.Dispatch) {
		h.rec.mu.Lock()
		h.rec.received[[2]uint64{uint64(d.ShardID), d.Seq}]++
		h.rec.mu.Unlock()
	}
	rcfg := runtime.DefaultConfig(0, 0)
	rcfg.Listen = "127.0.0.1:0"
	rcfg.MetricsListen = ""
	rcfg.DrainDelay = 0
	rcfg.ShutdownTimeout = 5 * time.Second
	srv, err := runtime.NewServer(rcfg, gw, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runtime.Run(ctx, srv) }()
	select {
	case <-srv.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("gateway did not start: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("gateway did not become ready")
	}
	conn, err := grpc.NewClient(srv.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	h.gw, h.conn, h.client, h.stopGW, h.runDone = gw, conn, gatewayv1.NewGatewayServiceClient(conn), cancel, done
	t.Cleanup(h.stopGateway)
}

func (h *harness) stopGateway() {
	if h.stopGW == nil {
		return
	}
	h.stopGW()
	if err := <-h.runDone; err != nil {
		h.t.Errorf("gateway run: %v", err)
	}
	_ = h.conn.Close() // the server is gone; nothing to report
	h.stopGW = nil
}

// waitShardsReady waits until every shard has a ready session.
func (h *harness) waitShardsReady() {
	h.t.Helper()
	waitFor(h.t, "shards ready", func() bool {
		resp, err := h.client.ListShards(h.t.Context(), &gatewayv1.ListShardsRequest{})
		if err != nil || len(resp.GetShards()) != e2eShards {
			return false
		}
		for _, s := range resp.GetShards() {
			if s.GetState() != gatewayv1.Shard_STATE_READY {
				return false
			}
		}
		return true
	})
}

// workerMode says how a test worker acks.
type workerMode struct {
	// noAck holds every delivery without acking (up to its credit).
	noAck bool
	// pace acks one delivery per tick: a slow consumer.
	pace time.Duration
	// credit is max in flight (default 32).
	credit uint32
}

type worker struct {
	group, id string
	cancel    context.CancelFunc
	done      chan struct{}
	mu        sync.Mutex
	received  int
}

func (w *worker) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.received
}

// kill ends the worker's stream at once, as a crashed process would.
func (w *worker) kill() {
	w.cancel()
	<-w.done
}

func (h *harness) worker(group, id string, mode workerMode) *worker {
	t := h.t
	t.Helper()
	if mode.credit == 0 {
		mode.credit = 32
	}
	ctx, cancel := context.WithCancel(t.Context())
	stream, err := h.client.Consume(ctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	sub := &gatewayv1.Subscribe{Group: group, MemberId: id, MaxInFlight: mode.credit}
	if err := stream.Send(&gatewayv1.ConsumeRequest{Kind: &gatewayv1.ConsumeRequest_Subscribe{Subscribe: sub}}); err != nil {
		cancel()
		t.Fatal(err)
	}
	if first, err := stream.Recv(); err != nil || first.GetSubscribed() == nil {
		cancel()
		t.Fatalf("subscribing %s/%s: %v %v", group, id, first, err)
	}
	w := &worker{group: group, id: id, cancel: cancel, done: make(chan struct{})}
	acks := make(chan uint64, 4096)
	var wg sync.WaitGroup
	wg.Go(func() { // acker
		var tick <-chan time.Time
		if mode.pace > 0 {
			tk := time.NewTicker(mode.pace)
			defer tk.Stop()
			tick = tk.C
		}
		for {
			select {
			case <-ctx.Done():
				return
			case id := <-acks:
				if tick != nil {
					select {
					case <-tick:
					case <-ctx.Done():
						return
					}
				}
				if err := stream.Send(&gatewayv1.ConsumeRequest{Kind: &gatewayv1.ConsumeRequest_Ack{Ack: &gatewayv1.Ack{DeliveryIds: []uint64{id}}}}); err != nil {
					return
				}
			}
		}
	})
	go func() {
		defer close(w.done)
		defer wg.Wait()
		defer cancel()
		for {
			resp, err := stream.Recv()
			if err != nil {
				return
			}
			switch k := resp.GetKind().(type) {
			case *gatewayv1.ConsumeResponse_Delivery:
				h.rec.add(group, k.Delivery)
				w.mu.Lock()
				w.received++
				w.mu.Unlock()
				if !mode.noAck {
					select {
					case acks <- k.Delivery.GetDeliveryId():
					case <-ctx.Done():
						return
					}
				}
			case *gatewayv1.ConsumeResponse_Gap:
				h.rec.mu.Lock()
				h.rec.gaps[group] += k.Gap.GetLost()
				if k.Gap.GetReason() == gatewayv1.Gap_REASON_SESSION_RESET {
					h.rec.resets[group]++
				}
				h.rec.mu.Unlock()
			}
		}
	}()
	t.Cleanup(w.kill)
	return w
}

// sentByBot returns every (session, seq) the simulator wrote to the bot's sessions that
// the gateway knew: a session whose READY never reached the gateway (the connection broke
// right after Identify) cannot be resumed by anyone, as with Discord; it is logged.
func (h *harness) sentByBot() map[eventKey]bool {
	known := map[string]bool{}
	h.rec.mu.Lock()
	for _, g := range h.rec.groups {
		for k := range g {
			known[k.session] = true
		}
	}
	h.rec.mu.Unlock()
	out := map[eventKey]bool{}
	for _, s := range h.sim.Sessions() {
		if !known[s.SessionID] {
			if s.Sent.Count() > 0 {
				h.t.Logf("session %s (shard %v) was never seen by the gateway; %d events written to it are not counted", s.SessionID, s.Shard, s.Sent.Count())
			}
			continue
		}
		for _, r := range s.Sent {
			for q := r.From; q <= r.To; q++ {
				out[eventKey{s.SessionID, uint64(q)}] = true
			}
		}
	}
	return out
}

// verify waits until each group has received every event the simulator sent, then checks
// the loss accounting: every (session, seq) reached each group, at most once without the
// redelivered flag, and nothing arrived that was not sent.
func (h *harness) verify(groups ...string) {
	t := h.t
	t.Helper()
	var missing []string
	shardOf := map[string]uint64{}
	deadline := time.Now().Add(60 * time.Second)
	for {
		missing = missing[:0]
		sent := h.sentByBot()
		for _, s := range h.sim.Sessions() {
			shardOf[s.SessionID] = uint64(s.Shard[0])
		}
		h.rec.mu.Lock()
		for _, g := range groups {
			n, seenByShards := 0, 0
			for k := range sent {
				if tl := h.rec.groups[g][k]; tl == nil || tl.first+tl.redelivered == 0 {
					n++
					if h.rec.received[[2]uint64{shardOf[k.session], k.seq}] > 0 {
						seenByShards++
					}
				}
			}
			if n > 0 {
				var some []eventKey
				for k := range sent {
					if tl := h.rec.groups[g][k]; (tl == nil || tl.first+tl.redelivered == 0) && len(some) < 10 {
						some = append(some, k)
					}
				}
				missing = append(missing, fmt.Sprintf("%s: %d of %d (%d of them received by the shards), e.g. %v", g, n, len(sent), seenByShards, some))
			}
		}
		h.rec.mu.Unlock()
		if len(missing) == 0 && len(sent) > 0 {
			break
		}
		if time.Now().After(deadline) {
			st := h.sim.GatewayStats()
			t.Fatalf("events never delivered: %v (gaps %v; groups %+v; simulator closes %v, client closes %v, resumes %d, identifies %d)",
				missing, h.rec.gaps, h.gw.Hub().Groups(), st.Closes, st.ClientCloses, st.Resumes, st.Identifies)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, bounded by the deadline
	}
	sent := h.sentByBot()
	h.rec.mu.Lock()
	defer h.rec.mu.Unlock()
	for _, g := range groups {
		redelivered := 0
		for k, tl := range h.rec.groups[g] {
			if !sent[k] {
				t.Errorf("group %s received %v, which the simulator never sent", g, k)
			}
			if tl.first > 1 {
				t.Errorf("group %s received %v %d times without the redelivered flag: %v", g, k, tl.first, tl.log)
			}
			redelivered += tl.redelivered
		}
		if h.rec.gaps[g] != 0 {
			t.Errorf("group %s was told of %d lost events", g, h.rec.gaps[g])
		}
		t.Logf("group %s: %d events, %d redeliveries", g, len(h.rec.groups[g]), redelivered)
	}
}

// load runs the simulator's traffic generator for d.
func (h *harness) load(rate float64, d time.Duration, during func()) {
	h.t.Helper()
	if err := h.sim.StartLoad(discordsim.LoadConfig{Rate: rate}); err != nil {
		h.t.Fatal(err)
	}
	start := time.Now()
	if during != nil {
		during()
	}
	if rest := d - time.Since(start); rest > 0 {
		<-time.After(rest)
	}
	h.sim.StopLoad()
}

func TestEndToEndFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end against discordsim")
	}
	t.Parallel()
	tests := []struct {
		name   string
		cfg    Config
		fault  func(h *harness, victim *worker)
		expect func(t *testing.T, st discordsim.GatewayStats)
	}{
		{name: "forced disconnect", fault: func(h *harness, _ *worker) {
			h.sim.Disconnect(discordsim.ShardTarget(0), 4000)
			h.sim.Disconnect(discordsim.ShardTarget(1), 1006)
		}, expect: func(t *testing.T, st discordsim.GatewayStats) {
			if st.Resumes < 2 {
				t.Errorf("resumes = %d, want at least 2", st.Resumes)
			}
		}},
		{name: "op 7 reconnect", fault: func(h *harness, _ *worker) {
			h.sim.SendReconnect(discordsim.ShardTarget(1))
		}, expect: func(t *testing.T, st discordsim.GatewayStats) {
			if st.Resumes < 1 {
				t.Errorf("resumes = %d, want at least 1", st.Resumes)
			}
		}},
		{name: "invalid session resumable", fault: func(h *harness, _ *worker) {
			h.sim.InvalidateSession(discordsim.ShardTarget(0), true)
		}},
		{name: "invalid session not resumable", fault: func(h *harness, _ *worker) {
			h.sim.InvalidateSession(discordsim.ShardTarget(0), false)
		}, expect: func(t *testing.T, st discordsim.GatewayStats) {
			if st.Identifies < e2eShards+1 {
				t.Errorf("identifies = %d, want a new session after the invalid one", st.Identifies)
			}
		}},
		{name: "zombie connection", fault: func(h *harness, _ *worker) {
			h.sim.Zombie(discordsim.ShardTarget(1), true)
			// Detection takes one to two heartbeat intervals; traffic keeps flowing meanwhile.
			waitFor(h.t, "the zombie shard to resume", func() bool { return h.sim.GatewayStats().Resumes > 0 })
		}, expect: func(t *testing.T, st discordsim.GatewayStats) {
			if st.Resumes < 1 {
				t.Errorf("resumes = %d, want the zombie shard to resume", st.Resumes)
			}
		}},
		{name: "worker killed mid-stream", fault: func(h *harness, victim *worker) {
			waitFor(h.t, "the victim to hold deliveries", func() bool { return victim.count() > 0 })
			victim.kill()
		}},
		{name: "worker stops acking", cfg: Config{Delivery: delivery.Config{AckTimeout: 1500 * time.Millisecond, SweepInterval: 100 * time.Millisecond}},
			fault: func(h *harness, victim *worker) {
				waitFor(h.t, "the victim to hold deliveries", func() bool { return victim.count() > 0 })
			}},
	}
	for _, tc := range tests {
		// Sequential: each case is timing-sensitive (heartbeats, ack timeouts) on a small machine.
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.cfg)
			h.waitShardsReady()
			h.worker("bot", "bot-1", workerMode{})
			h.worker("bot", "bot-2", workerMode{})
			h.worker("state", "state-1", workerMode{credit: 256})
			victim := h.worker("bot", "victim", workerMode{noAck: true, credit: 8})
			h.load(400, 1200*time.Millisecond, func() {
				<-time.After(300 * time.Millisecond)
				tc.fault(h, victim)
			})
			if tc.name != "worker killed mid-stream" && tc.name != "worker stops acking" {
				victim.kill() // its held events must reach the other members, flagged
			}
			h.verify("bot", "state")
			if tc.expect != nil {
				tc.expect(t, h.sim.GatewayStats())
			}
			// Only a session that could not be resumed loses events at Discord, and then the
			// groups are told.
			wantReset := tc.name == "invalid session not resumable"
			h.rec.mu.Lock()
			for _, g := range []string{"bot", "state"} {
				if got := h.rec.resets[g]; (got > 0) != wantReset {
					t.Errorf("group %s got %d session reset gaps, want them: %v", g, got, wantReset)
				}
			}
			h.rec.mu.Unlock()
		})
	}
}

func TestEndToEndSlowGroupBesideFastGroup(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end against discordsim")
	}
	t.Parallel()
	h := newHarness(t, Config{})
	h.waitShardsReady()
	fast := h.worker("fast", "fast-1", workerMode{credit: 64})
	h.worker("slow", "slow-1", workerMode{credit: 4, pace: 5 * time.Millisecond}) // about 200 events/s
	h.load(800, time.Second, nil)
	// The fast group keeps up while the slow one is still far behind.
	sentNow := len(h.sentByBot())
	waitFor(t, "the fast group to catch up", func() bool { return fast.count() >= sentNow })
	var slow delivery.GroupStats
	for _, g := range h.gw.Hub().Groups() {
		if g.Name == "slow" {
			slow = g
		}
	}
	if slow.Buffered < 100 {
		t.Errorf("slow group has only %d buffered when the fast one caught up; the test did not make it slow", slow.Buffered)
	}
	t.Logf("fast caught up with %d events while slow had %d buffered (oldest %s)", sentNow, slow.Buffered, slow.OldestAge)
	h.verify("fast", "slow")
}

func TestEndToEndRestartResumesFromWatermark(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end against discordsim")
	}
	t.Parallel()
	h := newHarness(t, Config{})
	h.waitShardsReady()
	busy := h.worker("bot", "bot-1", workerMode{})
	lazy := h.worker("bot", "lazy", workerMode{noAck: true, credit: 16})
	h.worker("state", "state-1", workerMode{pace: 2 * time.Millisecond, credit: 8})
	h.load(400, 1500*time.Millisecond, func() {
		waitFor(t, "traffic to flow, with the lazy worker holding events", func() bool { return lazy.count() > 0 && busy.count() > 150 })
		h.stopGateway() // lazy's events unacked, state behind: the watermark is well below the last received
		lazy.kill()
		h.startGateway()
		h.worker("bot", "bot-1", workerMode{})
		h.worker("state", "state-1", workerMode{credit: 64})
	})
	h.waitShardsReady()
	h.verify("bot", "state")
	st := h.sim.GatewayStats()
	if st.Identifies != e2eShards {
		t.Errorf("identifies = %d, want %d: the restart must resume, not identify", st.Identifies, e2eShards)
	}
	if st.Resumes < e2eShards {
		t.Errorf("resumes = %d, want at least %d", st.Resumes, e2eShards)
	}
}

func TestEndToEndRequestGuildMembers(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end against discordsim")
	}
	t.Parallel()
	h := newHarness(t, Config{})
	h.waitShardsReady()
	h.worker("g", "g-1", workerMode{})
	var guildID uint64
	waitFor(t, "a GUILD_CREATE", func() bool {
		h.rec.mu.Lock()
		defer h.rec.mu.Unlock()
		if len(h.rec.guilds) > 0 {
			guildID = h.rec.guilds[0]
		}
		return guildID != 0
	})
	q := ""
	var chunks, members int
	for attempt := 0; ; attempt++ {
		stream, err := h.client.RequestGuildMembers(t.Context(), &gatewayv1.RequestGuildMembersRequest{GuildId: guildID, Query: &q})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if status.Code(err) == codes.Unavailable && attempt < 50 {
			h.waitShardsReady() // the shard was reconnecting: Unavailable says retry
			continue
		}
		if err != nil {
			t.Fatalf("first chunk: %v", err)
		}
		chunks, members = 1, len(resp.GetChunk().GetMembers())
		for resp.GetChunk().GetChunkIndex() < resp.GetChunk().GetChunkCount()-1 {
			if resp, err = stream.Recv(); err != nil {
				t.Fatalf("after %d chunks: %v", chunks, err)
			}
			chunks++
			members += len(resp.GetChunk().GetMembers())
		}
		if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
			t.Errorf("stream after the last chunk: %v, want EOF", err)
		}
		break
	}
	if chunks == 0 || members == 0 {
		t.Errorf("got %d chunks with %d members", chunks, members)
	}
	// The chunks are ordinary events for the groups too.
	waitFor(t, "the chunks delivered to the group", func() bool {
		h.rec.mu.Lock()
		defer h.rec.mu.Unlock()
		return h.rec.chunks >= chunks
	})
}

// e2eLogger shows the gateway's warnings in the test log (-v) when KUBECORD_E2E_LOG is set.
func e2eLogger(t *testing.T) *slog.Logger {
	if os.Getenv("KUBECORD_E2E_LOG") == "" {
		return quietLogger()
	}
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}
