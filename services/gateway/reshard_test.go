package gateway

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kubecord/kubecord/discordsim"
	gatewayv1 "github.com/kubecord/kubecord/gen/kubecord/gateway/v1"

	"github.com/kubecord/kubecord/internal/redistest"
	"github.com/kubecord/kubecord/services/gateway/internal/shard"
)

func dispatch(shardID int, seq uint64, name, data string) shard.Dispatch {
	return shard.Dispatch{ShardID: shardID, ShardCount: 4, Seq: seq, Name: name, Data: []byte(data), ReceivedAt: time.Now()}
}

// TestShadow holds a new shard set's events: its sessions' READY and start-up
// GUILD_CREATEs are dropped, readiness follows the READY's guilds, the buffer keeps the
// most recent events, and going live publishes what the old set did not.
func TestShadow(t *testing.T) {
	t.Parallel()
	sh := newShadow(4)
	if !sh.hold(dispatch(0, 1, "READY", `{"session_id":"s0","guilds":[{"id":"10","unavailable":true},{"id":"11","unavailable":true}]}`)) {
		t.Fatal("READY not held")
	}
	sh.hold(dispatch(1, 1, "READY", `{"session_id":"s1","guilds":[]}`))
	if got := sh.newlyReady(); !slices.Equal(got, []int{1}) {
		t.Fatalf("ready after READY = %v, want [1] (shard 0 still loads 2 guilds)", got)
	}
	sh.hold(dispatch(0, 2, "GUILD_CREATE", `{"id":"10"}`))
	sh.hold(dispatch(0, 3, "MESSAGE_CREATE", `{"id":"100","guild_id":"10"}`))
	sh.hold(dispatch(0, 4, "GUILD_CREATE", `{"id":"11"}`))
	if got := sh.newlyReady(); !slices.Equal(got, []int{0}) {
		t.Fatalf("ready after both GUILD_CREATEs = %v, want [0]", got)
	}
	// A GUILD_CREATE after loading is an event (the bot joined a guild).
	sh.hold(dispatch(0, 5, "GUILD_CREATE", `{"id":"12"}`))
	for i := range 4 {
		sh.hold(dispatch(1, uint64(2+i), "MESSAGE_CREATE", fmt.Sprintf(`{"id":"%d"}`, 200+i)))
	}
	// 6 events into a buffer of 4: the oldest half went at the fifth.
	sh.mu.Lock()
	held, dropped := len(sh.events), sh.dropped
	sh.mu.Unlock()
	if held != 4 || dropped != 2 {
		t.Fatalf("held %d, dropped %d; want 4 and 2", held, dropped)
	}
	alreadyPublished := hashDispatch(dispatch(1, 99, "MESSAGE_CREATE", `{"id":"201"}`)) // another seq, same event
	seen := func(_ context.Context, hs []eventHash) ([]bool, error) {
		out := make([]bool, len(hs))
		for i, h := range hs {
			out[i] = h == alreadyPublished
		}
		return out, nil
	}
	started := map[int]string{}
	var published []string
	n, dedup, err := sh.goLive(t.Context(), seen, func(id int, s string, _ bool) { started[id] = s },
		func(d shard.Dispatch) bool { return d.Seq == 4 }, // as if its old shard's pod had died
		func(d shard.Dispatch, maybe bool) {
			published = append(published, fmt.Sprintf("%d/%d %v", d.ShardID, d.Seq, maybe))
		})
	if err != nil || n != 3 || dedup != 1 {
		t.Fatalf("goLive = %d published, %d deduplicated, %v; want 3, 1", n, dedup, err)
	}
	if want := []string{"1/2 false", "1/4 true", "1/5 false"}; !slices.Equal(published, want) {
		t.Errorf("published %v, want %v (buffer order, the already published one left out, the unsure one flagged)", published, want)
	}
	if started[0] != "s0" || started[1] != "s1" {
		t.Errorf("sessions started %v, want s0 and s1", started)
	}
	if sh.hold(dispatch(1, 9, "MESSAGE_CREATE", `{}`)) {
		t.Error("a live shadow still holds events")
	}
}

// TestCoordinators runs the reshard plan through both coordinators: proposals are refused
// while one is under way or from a count that is not active, phases advance by CAS, and
// done makes the new count active.
func TestCoordinators(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = c.Close() })
	for name, co := range map[string]coordinator{"memory": newMemoryCoordinator(), "redis": newRedisCoordinator(c, "kubecord:bot")} {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			if n, err := co.InitActive(ctx, 2); err != nil || n != 2 {
				t.Fatalf("InitActive = %d, %v", n, err)
			}
			if n, _ := co.InitActive(ctx, 8); n != 2 {
				t.Fatalf("a second InitActive changed the active count to %d", n)
			}
			if ok, _ := co.Propose(ctx, 3, 4); ok {
				t.Fatal("a proposal from a count that is not active was accepted")
			}
			if ok, err := co.Propose(ctx, 2, 4); !ok || err != nil {
				t.Fatalf("Propose = %v, %v", ok, err)
			}
			if ok, _ := co.Propose(ctx, 2, 6); ok {
				t.Fatal("a second proposal during the first was accepted")
			}
			p, ok, err := co.Plan(ctx)
			if !ok || err != nil || p != (reshardPlan{From: 2, To: 4, Phase: phaseWarming}) {
				t.Fatalf("Plan = %+v, %v, %v", p, ok, err)
			}
			for _, id := range []int{0, 1, 1, 3} {
				if err := co.MarkReady(ctx, id); err != nil {
					t.Fatal(err)
				}
			}
			if n, _ := co.ReadyCount(ctx); n != 3 {
				t.Fatalf("ReadyCount = %d, want 3", n)
			}
			h1, h2 := hashDispatch(dispatch(0, 1, "X", "a")), hashDispatch(dispatch(0, 1, "X", "b"))
			if err := co.AddSeen(ctx, []eventHash{h1}); err != nil {
				t.Fatal(err)
			}
			if got, err := co.Seen(ctx, []eventHash{h2, h1}); err != nil || !slices.Equal(got, []bool{false, true}) {
				t.Fatalf("Seen = %v, %v", got, err)
			}
			if ok, _ := co.Advance(ctx, reshardPlan{From: 2, To: 4, Phase: phaseSwitching}, phaseDone); ok {
				t.Fatal("advancing from a phase the plan is not in succeeded")
			}
			if ok, err := co.Advance(ctx, p, phaseSwitching); !ok || err != nil {
				t.Fatalf("Advance to switching = %v, %v", ok, err)
			}
			p.Phase = phaseSwitching
			if ok, err := co.Advance(ctx, p, phaseDone); !ok || err != nil {
				t.Fatalf("Advance to done = %v, %v", ok, err)
			}
			if n, _ := co.Active(ctx); n != 4 {
				t.Fatalf("active count after done = %d, want 4", n)
			}
			if ok, _ := co.Propose(ctx, 4, 8); !ok {
				t.Fatal("a new proposal after a finished plan was refused")
			}
			// A cancelled plan keeps the active count and lets the next one through.
			warming := reshardPlan{From: 4, To: 8, Phase: phaseWarming}
			if ok, _ := co.Cancel(ctx, reshardPlan{From: 4, To: 8, Phase: phaseSwitching}, "x"); ok {
				t.Fatal("cancelling from a phase the plan is not in succeeded")
			}
			if ok, err := co.Cancel(ctx, warming, "shard 3: close 4011"); !ok || err != nil {
				t.Fatalf("Cancel = %v, %v", ok, err)
			}
			st, err := coordStatus(ctx, co)
			if err != nil || st.Active != 4 || st.Phase != phaseCancelled || st.Reason != "shard 3: close 4011" {
				t.Fatalf("status after Cancel = %+v, %v; want 4 active, cancelled with its reason", st, err)
			}
			if ok, _ := co.Propose(ctx, 4, 6); !ok {
				t.Fatal("a new proposal after a cancelled plan was refused")
			}
		})
	}
}

func TestReshardMetrics(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, Config{})
	reg := prometheus.NewRegistry()
	if err := reg.Register(newCollector(s)); err != nil {
		t.Fatal(err)
	}
	g := &generation{count: 4, shadow: newShadow(10)}
	g.shadow.hold(dispatch(0, 1, "MESSAGE_CREATE", `{"id":"1"}`))
	g.shadow.hold(dispatch(1, 1, "MESSAGE_CREATE", `{"id":"2"}`))
	s.genMu.Lock()
	s.next = g
	s.genMu.Unlock()
	s.shardCount.Store(2)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]float64{}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			found[mf.GetName()] += mt.GetGauge().GetValue()
		}
	}
	for name, want := range map[string]float64{
		"kubecord_gateway_shard_count":           2,
		"kubecord_gateway_reshard_target_shards": 4,
		"kubecord_gateway_reshard_held_events":   2,
	} {
		if found[name] != want {
			t.Errorf("%s = %v, want %v", name, found[name], want)
		}
	}
}

// TestShadowLoadGrace counts a new shard as loaded once its READY is older than the grace,
// even with guilds still unavailable (an outage), so the switch is not held back forever.
func TestShadowLoadGrace(t *testing.T) {
	t.Parallel()
	sh := newShadow(10)
	sh.loadGrace = 50 * time.Millisecond
	sh.hold(dispatch(0, 1, "READY", `{"session_id":"s0","guilds":[{"id":"10","unavailable":true}]}`))
	if got := sh.newlyReady(); len(got) != 0 {
		t.Fatalf("ready = %v before the grace, want none", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if got := sh.newlyReady(); slices.Equal(got, []int{0}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("shard 0 never counted as loaded after the grace")
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
	if got := sh.newlyReady(); len(got) != 0 {
		t.Errorf("shard reported ready twice: %v", got)
	}
}

// TestReshardRPC reshards a gateway without Redis over gRPC: the status follows the plan to
// done, the pod ends up running the new count, and bad or untimely requests get a status
// code saying why.
func TestReshardRPC(t *testing.T) {
	t.Parallel()
	// The harness's groups have no consumers: a hand-off need not wait for acks.
	h := newHarness(t, Config{HandoffTimeout: 50 * time.Millisecond})
	h.waitShardsReady()
	ctx := t.Context()
	st, err := h.client.GetReshardStatus(ctx, &gatewayv1.GetReshardStatusRequest{})
	if err != nil || st.GetActiveShardCount() != e2eShards || st.GetReshard() != nil {
		t.Fatalf("GetReshardStatus = %v, %v; want %d active shards and no reshard", st, err, e2eShards)
	}
	for _, tc := range []struct {
		count uint32
		code  codes.Code
		want  string
	}{
		{0, codes.InvalidArgument, "at least 1"},
		{maxShardCount + 1, codes.InvalidArgument, "is over"},
		{e2eShards, codes.FailedPrecondition, "already runs 2 shards"},
	} {
		_, err := h.client.Reshard(ctx, &gatewayv1.ReshardRequest{ShardCount: tc.count})
		if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Reshard(%d) = %v, want %s containing %q", tc.count, err, tc.code, tc.want)
		}
	}
	resp, err := h.client.Reshard(ctx, &gatewayv1.ReshardRequest{ShardCount: 3})
	if err != nil || resp.GetFromShardCount() != e2eShards || resp.GetToShardCount() != 3 {
		t.Fatalf("Reshard(3) = %v, %v; want 2 -> 3", resp, err)
	}
	if _, err := h.client.Reshard(ctx, &gatewayv1.ReshardRequest{ShardCount: 4}); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "under way") {
		t.Errorf("a second Reshard during the first = %v, want FAILED_PRECONDITION saying one is under way", err)
	}
	waitFor(t, "the reshard to 3 shards to finish", func() bool {
		st, err := h.client.GetReshardStatus(ctx, &gatewayv1.GetReshardStatusRequest{})
		return err == nil && st.GetActiveShardCount() == 3 && st.GetReshard().GetPhase() == gatewayv1.ReshardPlan_PHASE_DONE
	})
	waitFor(t, "3 ready shards", func() bool {
		ls, err := h.client.ListShards(ctx, &gatewayv1.ListShardsRequest{})
		if err != nil || ls.GetShardCount() != 3 || len(ls.GetShards()) != 3 {
			return false
		}
		for _, sh := range ls.GetShards() {
			if sh.GetState() != gatewayv1.Shard_STATE_READY || sh.GetShardCount() != 3 {
				return false
			}
		}
		return true
	})
	if got := h.sim.GatewayStats().Identifies; got != e2eShards+3 {
		t.Errorf("%d identifies, want %d (the old set's and the new set's)", got, e2eShards+3)
	}
}

// TestReshardRPCRefusals covers a pod that cannot take a reshard: one with fixed shard ids,
// and one not started yet.
func TestReshardRPCRefusals(t *testing.T) {
	t.Parallel()
	fixed := serveLoopback(t, newTestServer(t, Config{ShardCount: 2, ShardIDs: []int{0}}))
	if _, err := fixed.Reshard(t.Context(), &gatewayv1.ReshardRequest{ShardCount: 4}); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "--shard-ids") {
		t.Errorf("Reshard on a pod with fixed shards = %v, want FAILED_PRECONDITION naming --shard-ids", err)
	}
	idle := serveLoopback(t, newTestServer(t, Config{}))
	if _, err := idle.Reshard(t.Context(), &gatewayv1.ReshardRequest{ShardCount: 4}); status.Code(err) != codes.Unavailable {
		t.Errorf("Reshard before Start = %v, want UNAVAILABLE", err)
	}
	if _, err := idle.GetReshardStatus(t.Context(), &gatewayv1.GetReshardStatusRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("GetReshardStatus before Start = %v, want UNAVAILABLE", err)
	}
}

// TestShadowResumePoint follows what a shadow shard's stored session says: nothing while
// the shard loads its guilds (a new owner would identify it and load them itself), the last
// event held before it was reported ready from then on (its later held events may be the
// only copy of what the retiring set no longer receives), nothing again after a new
// session's READY, the stored point of a shard adopted from a dead pod, and, once live,
// whatever the shard received.
func TestShadowResumePoint(t *testing.T) {
	t.Parallel()
	sh := newShadow(100)
	point := func(id int) string {
		seq, store, live := sh.resumePoint(id)
		return fmt.Sprintf("%d %v %v", seq, store, live)
	}
	if got := point(0); got != "0 false false" {
		t.Fatalf("a shard the shadow never saw: %s, want nothing stored", got)
	}
	sh.hold(dispatch(0, 1, "READY", `{"session_id":"s0","guilds":[{"id":"10","unavailable":true}]}`))
	sh.hold(dispatch(0, 2, "MESSAGE_CREATE", `{"id":"100","guild_id":"10"}`))
	if got := point(0); got != "0 false false" {
		t.Fatalf("while loading: %s, want nothing stored", got)
	}
	sh.hold(dispatch(0, 3, "GUILD_CREATE", `{"id":"10"}`))
	if got := sh.newlyReady(); !slices.Equal(got, []int{0}) {
		t.Fatalf("ready = %v, want [0]", got)
	}
	sh.hold(dispatch(0, 4, "MESSAGE_CREATE", `{"id":"101","guild_id":"10"}`))
	sh.hold(dispatch(0, 5, "MESSAGE_CREATE", `{"id":"102","guild_id":"10"}`))
	if got := point(0); got != "3 true false" {
		t.Errorf("after the shard was reported ready: %s, want 3 stored (frozen)", got)
	}
	// The session was invalidated: the new one has loaded nothing yet.
	sh.hold(dispatch(0, 1, "READY", `{"session_id":"s0b","guilds":[{"id":"10","unavailable":true}]}`))
	if got := point(0); got != "0 false false" {
		t.Errorf("after a new READY: %s, want nothing stored", got)
	}
	sh.adopt(1, "s1", 40)
	sh.hold(dispatch(1, 41, "MESSAGE_CREATE", `{"id":"103","guild_id":"11"}`))
	if got := point(1); got != "40 true false" {
		t.Errorf("an adopted shard: %s, want its stored 40", got)
	}
	if got := sh.newlyReady(); !slices.Equal(got, []int{1}) {
		t.Errorf("ready after the adoption = %v, want [1] (only loaded shards are stored)", got)
	}
	sh.forget(1)
	if got := point(1); got != "0 false false" {
		t.Errorf("a forgotten shard: %s, want nothing stored", got)
	}
	sh.mu.Lock()
	for _, d := range sh.events {
		if d.ShardID == 1 {
			t.Errorf("a forgotten shard's event is still held: %d/%d", d.ShardID, d.Seq)
		}
	}
	sh.mu.Unlock()
	started := map[int]string{}
	if _, _, err := sh.goLive(t.Context(), func(_ context.Context, hs []eventHash) ([]bool, error) { return make([]bool, len(hs)), nil },
		func(id int, s string, replaying bool) { started[id] = fmt.Sprintf("%s %v", s, replaying) }, func(shard.Dispatch) bool { return false }, func(shard.Dispatch, bool) {}); err != nil {
		t.Fatal(err)
	}
	if got := point(0); got != "0 true true" {
		t.Errorf("a live shadow: %s, want stored as any shard", got)
	}
	if len(started) != 1 || started[0] != "s0b false" {
		t.Errorf("sessions started at go-live = %v, want shard 0's s0b, not replaying", started)
	}
}

// TestOldShardOf maps an event of the new shard set to the shard of the old set that
// received it: by guild, shard 0 for events without one.
func TestOldShardOf(t *testing.T) {
	t.Parallel()
	guild := uint64(3) << 22 // shard 3 of 4, 1 of 2
	for _, tc := range []struct {
		d     shard.Dispatch
		count int
		want  int
	}{
		{dispatch(3, 1, "MESSAGE_CREATE", fmt.Sprintf(`{"id":"1","guild_id":"%d"}`, guild)), 2, 1},
		{dispatch(3, 1, "MESSAGE_CREATE", fmt.Sprintf(`{"id":"1","guild_id":"%d"}`, guild)), 4, 3},
		{dispatch(0, 1, "MESSAGE_CREATE", `{"id":"1","channel_id":"5"}`), 2, 0},
		{dispatch(0, 1, "MESSAGE_CREATE", `{not json`), 2, 0},
	} {
		if got := oldShardOf(tc.d, tc.count); got != tc.want {
			t.Errorf("oldShardOf(%s, %d) = %d, want %d", tc.d.Data, tc.count, got, tc.want)
		}
	}
}

// TestReshardCancelled asks for a shard count Discord refuses (one shard for more guilds
// than a shard may hold: close 4011). The reshard is cancelled with the reason, the new set
// stops, the old set keeps serving, and the pod keeps running.
func TestReshardCancelled(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{HandoffTimeout: 50 * time.Millisecond},
		func(c *discordsim.Config) { c.MaxGuildsPerShard = 23 }) // 24 guilds: fine on 2 shards, not on 1
	h.waitShardsReady()
	ctx := t.Context()
	if _, err := h.client.Reshard(ctx, &gatewayv1.ReshardRequest{ShardCount: 1}); err != nil {
		t.Fatalf("Reshard(1) = %v", err)
	}
	var st *gatewayv1.GetReshardStatusResponse
	waitFor(t, "the reshard to be cancelled", func() bool {
		var err error
		st, err = h.client.GetReshardStatus(ctx, &gatewayv1.GetReshardStatusRequest{})
		return err == nil && st.GetReshard().GetPhase() == gatewayv1.ReshardPlan_PHASE_CANCELLED
	})
	if st.GetActiveShardCount() != e2eShards || !strings.Contains(st.GetReshard().GetReason(), "4011") {
		t.Errorf("status = %v, want %d active shards and a reason naming close 4011", st, e2eShards)
	}
	waitFor(t, "the new set to stop", func() bool {
		h.gw.genMu.Lock()
		defer h.gw.genMu.Unlock()
		return h.gw.next == nil
	})
	ls, err := h.client.ListShards(ctx, &gatewayv1.ListShardsRequest{})
	if err != nil || ls.GetShardCount() != e2eShards || len(ls.GetShards()) != e2eShards {
		t.Fatalf("ListShards = %v, %v; want the %d old shards", ls, err, e2eShards)
	}
	for _, sh := range ls.GetShards() {
		if sh.GetState() != gatewayv1.Shard_STATE_READY {
			t.Errorf("old shard %d is %v after the cancelled reshard, want ready", sh.GetShardId(), sh.GetState())
		}
	}
	// The old set still delivers, and a new reshard may be asked for.
	h.worker("bot", "bot-1", workerMode{})
	h.load(200, 300*time.Millisecond, func() {})
	h.verify("bot")
	if _, err := h.client.Reshard(ctx, &gatewayv1.ReshardRequest{ShardCount: 3}); err != nil {
		t.Errorf("Reshard(3) after a cancelled one = %v", err)
	}
}
