package shard

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/kubecord/kubecord/discordsim"
	"github.com/kubecord/kubecord/services/gateway/internal/identify"
)

// TestDynamicStartStop runs a dynamic manager: shards start and stop one by one while Run
// runs, a stopped shard's session is returned and saved, and a restarted shard resumes it.
func TestDynamicStartStop(t *testing.T) {
	t.Parallel()
	sim := startSim(t, discordsim.Config{Guilds: 6, Shards: 3})
	rec := newRecorder()
	cfg := baseConfig(t, sim, rec)
	cfg.ShardCount = 3
	cfg.Dynamic = true
	store := NewMemorySessionStore()
	cfg.Sessions = store
	h := runManager(t, sim, cfg)
	if ids := h.m.ShardIDs(); len(ids) != 0 {
		t.Fatalf("a dynamic manager runs %v before StartShards, want none", ids)
	}
	ctx := t.Context()
	if err := h.m.StartShards(ctx, []int{2, 0}); err != nil {
		t.Fatalf("StartShards: %v", err)
	}
	first := h.waitReady(0)
	h.waitReady(2)
	for _, tc := range []struct {
		name string
		ids  []int
		want string
	}{
		{"running", []int{0}, "already running"},
		{"out of range", []int{3}, "outside 0..2"},
		{"negative", []int{-1}, "outside 0..2"},
	} {
		if err := h.m.StartShards(ctx, tc.ids); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("StartShards(%v) [%s] = %v, want an error containing %q", tc.ids, tc.name, err, tc.want)
		}
	}
	sess, ok, err := h.m.StopShard(ctx, 0)
	if err != nil || !ok || sess.ID != first.SessionID || sess.Seq == 0 {
		t.Fatalf("StopShard(0) = %+v, %v, %v; want session %s with its last sequence", sess, ok, err, first.SessionID)
	}
	if got := h.m.ShardIDs(); len(got) != 1 || got[0] != 2 {
		t.Fatalf("after StopShard(0) the manager runs %v, want [2]", got)
	}
	if saved, ok, _ := store.Load(ctx, 0); !ok || saved.ID != sess.ID {
		t.Fatalf("stored session after StopShard = %+v, %v; want %s", saved, ok, sess.ID)
	}
	if _, ok, err := h.m.StopShard(ctx, 1); ok || err != nil {
		t.Errorf("StopShard of a shard not run = %v, %v; want nothing", ok, err)
	}
	if err := h.m.StartShards(ctx, []int{0}); err != nil {
		t.Fatalf("restarting shard 0: %v", err)
	}
	again := h.waitReady(0)
	if again.SessionID != first.SessionID || again.Resumes != 1 {
		t.Errorf("restarted shard 0: session %s, %d resumes; want %s resumed", again.SessionID, again.Resumes, first.SessionID)
	}
	if st := sim.GatewayStats(); st.Identifies != 2 {
		t.Errorf("%d identifies, want 2 (the restart resumes)", st.Identifies)
	}
	if err := h.stop(); err != nil {
		t.Errorf("Run = %v", err)
	}
	if err := h.m.StartShards(ctx, []int{1}); err == nil {
		t.Error("StartShards after Run returned = nil error, want one")
	}
}

func TestDynamicRefusals(t *testing.T) {
	t.Parallel()
	sim := startSim(t, discordsim.Config{Guilds: 2, Shards: 2})
	rec := newRecorder()
	cfg := baseConfig(t, sim, rec)
	static := runManager(t, sim, cfg)
	if err := static.m.StartShards(t.Context(), []int{0}); err == nil || !strings.Contains(err.Error(), "Dynamic") {
		t.Errorf("StartShards on a fixed manager = %v, want an error naming Config.Dynamic", err)
	}
	bad := cfg
	bad.Dynamic = true
	bad.ShardIDs = []int{0}
	if _, err := NewManager(bad); err == nil {
		t.Error("a dynamic manager with ShardIDs = nil error, want one")
	}

	// A start that would exhaust the session budget is refused before anything connects.
	lim, err := identify.NewMemory(identify.MemoryConfig{Limit: identify.SessionStartLimit{Total: 1000, Remaining: 1, MaxConcurrency: 1}})
	if err != nil {
		t.Fatal(err)
	}
	// Its own simulator: the fixed manager above is still identifying on the first one.
	budgetSim := startSim(t, discordsim.Config{Guilds: 2, Shards: 2})
	dyn := baseConfig(t, budgetSim, newRecorder())
	dyn.Dynamic = true
	dyn.Identify = lim
	h := runManager(t, budgetSim, dyn)
	before := budgetSim.GatewayStats().Identifies
	err = h.m.StartShards(t.Context(), []int{0, 1})
	if !errors.Is(err, identify.ErrBudgetExhausted) || !strings.Contains(err.Error(), "1 of 1000") {
		t.Errorf("StartShards over the budget = %v, want ErrBudgetExhausted naming 1 of 1000", err)
	}
	if got := budgetSim.GatewayStats().Identifies; got != before {
		t.Errorf("%d identifies after a refused start", got-before)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := h.m.StopShard(ctx, 0); err != nil {
		t.Errorf("StopShard of nothing with a done context = %v", err)
	}
}
