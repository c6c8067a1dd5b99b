package state

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubecord/kubecord/discordsim"
	statev1 "github.com/kubecord/kubecord/gen/kubecord/state/v1"
	"github.com/kubecord/kubecord/internal/runtime"
	"github.com/kubecord/kubecord/services/gateway"
	"github.com/kubecord/kubecord/services/state/internal/cache"
)

// TestFollowsEveryGatewayPod runs two gateway pods, each owning one shard of two, behind one
// name (resolved to 127.0.0.1 and 127.0.0.2 on the same port, as a headless service resolves
// to pod IPs): the state service consumes from both and caches every guild. When a pod leaves
// the name, its consumer stops.
func TestFollowsEveryGatewayPod(t *testing.T) {
	t.Parallel()
	const guilds = 12
	sim, err := discordsim.New(discordsim.Config{Guilds: guilds, Members: 240, Shards: 2, MaxConcurrency: 2,
		HeartbeatInterval: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)

	// Pod A takes any free port on 127.0.0.1; pod B the same port on 127.0.0.2.
	a := startGatewayPod(t, sim, 0, "127.0.0.1:0")
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		t.Fatal(err)
	}
	startGatewayPod(t, sim, 1, net.JoinHostPort("127.0.0.2", port))

	var pods atomic.Value
	pods.Store([]string{"127.0.0.1", "127.0.0.2"})
	scfg := DefaultConfig()
	scfg.Gateways = []string{"dns:///gateway-headless:" + port}
	scfg.MemberID = "state-follow"
	scfg.ReconnectMin, scfg.ReconnectMax = 10*time.Millisecond, 100*time.Millisecond
	scfg.ResolveInterval = 50 * time.Millisecond
	scfg.LookupHost = func(_ context.Context, host string) ([]string, error) {
		if host != "gateway-headless" {
			t.Errorf("resolved %q, want gateway-headless", host)
		}
		return pods.Load().([]string), nil
	}
	st, err := NewWithStore(scfg, cache.NewMemory(), quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	cl := statev1.NewStateServiceClient(runService(t, st))
	var last *statev1.GetStatsResponse
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last stats: %v; consumers: %d", last, st.consumers.Load())
		}
	})
	waitFor(t, "every guild of both pods' shards cached", func() bool {
		s, err := cl.GetStats(t.Context(), &statev1.GetStatsRequest{})
		if err != nil {
			t.Fatalf("GetStats: %v", err)
		}
		last = s
		return s.GetGuilds() == guilds && s.GetUnavailableGuilds() == 0
	})
	if n := st.consumers.Load(); n != 2 {
		t.Fatalf("%d consumers, want one per gateway pod (2)", n)
	}
	pods.Store([]string{"127.0.0.1"})
	waitFor(t, "pod B's consumer to stop", func() bool { return st.consumers.Load() == 1 })
}

// startGatewayPod runs a gateway that owns one shard, listening on addr; it returns the address.
func startGatewayPod(t *testing.T, sim *discordsim.Server, shard int, addr string) string {
	t.Helper()
	gcfg := gateway.DefaultConfig()
	gcfg.Token = sim.Bots()[0].Token
	gcfg.RESTBase = sim.URL() + "/api/v10"
	gcfg.ShardCount = 2
	gcfg.ShardIDs = []int{shard}
	gcfg.Intents = 1<<0 | 1<<1 | 1<<9
	gcfg.GatewayID = "pod-" + string(rune('a'+shard))
	gcfg.Groups = []string{Group}
	gw, err := gateway.New(gcfg, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	rcfg := runtime.DefaultConfig(0, 0)
	rcfg.Listen = addr
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
		t.Fatalf("gateway pod %d: %v", shard, err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gateway pod %d: %v", shard, err)
		}
	})
	return srv.Addr().String()
}
