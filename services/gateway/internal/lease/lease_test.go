package lease

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kubecord/kubecord/internal/redistest"
)

const (
	testTTL   = time.Second
	testRenew = 100 * time.Millisecond
)

func newClient(t testing.TB, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// pod is a running Redis manager.
type pod struct {
	m      *Redis
	cancel context.CancelFunc // kills the pod: it stops renewing without releasing
	exited chan struct{}      // closed when Run returned, with its error in err
	err    error
}

// wait returns Run's error once it returned.
func (p *pod) wait() error {
	<-p.exited
	return p.err
}

func startPod(t *testing.T, addr, prefix, id string, shards int, ttl time.Duration) *pod {
	t.Helper()
	m, err := New(newClient(t, addr), Config{Prefix: prefix, PodID: id, Shards: shards, TTL: ttl, Renew: testRenew})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	p := &pod{m: m, cancel: cancel, exited: make(chan struct{})}
	go func() {
		p.err = m.Run(ctx)
		close(p.exited)
	}()
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = m.Stop(sctx) // a pod stopped by the test already returns nil here
		cancel()
		<-p.exited
	})
	return p
}

// checkFair reports why the pods' split of shards is not yet fair: every shard
// owned by exactly one pod, shares of floor or ceil of shards/pods, and Redis
// agreeing with what each pod reports.
func checkFair(ctx context.Context, c *redis.Client, prefix string, shards int, pods []*pod) error {
	owner := map[int]string{}
	lo, hi := shards/len(pods), (shards+len(pods)-1)/len(pods)
	for _, p := range pods {
		owned := p.m.Owned()
		if len(owned) < lo || len(owned) > hi {
			return fmt.Errorf("pod %s owns %v, want %d to %d shards", p.m.pod, owned, lo, hi)
		}
		for _, s := range owned {
			if o, dup := owner[s]; dup {
				return fmt.Errorf("shard %d owned by %s and %s", s, o, p.m.pod)
			}
			owner[s] = p.m.pod
		}
	}
	for s := range shards {
		o, ok := owner[s]
		if !ok {
			return fmt.Errorf("shard %d owned by no pod", s)
		}
		v, err := c.Get(ctx, "{"+prefix+"}:lease:shard:"+fmt.Sprint(s)).Result()
		if err != nil {
			return fmt.Errorf("reading lease of shard %d: %w", s, err)
		}
		if !strings.HasPrefix(v, o+":") {
			return fmt.Errorf("shard %d reported by %s but its lease says %q", s, o, v)
		}
	}
	return nil
}

func waitFair(t *testing.T, c *redis.Client, prefix string, shards int, pods ...*pod) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(15 * time.Second)
	for {
		err := checkFair(t.Context(), c, prefix, shards, pods)
		if err == nil {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no fair split after 15s: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // polling for convergence with a deadline
	}
}

func TestConverge(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := newClient(t, srv.Addr)
	tests := []struct {
		name   string
		pods   int
		shards int
	}{
		{"one pod", 1, 4},
		{"two pods odd shards", 2, 5},
		{"three pods", 3, 10},
		{"more pods than shards", 3, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			prefix := "conv-" + strings.ReplaceAll(tc.name, " ", "-")
			var pods []*pod
			for i := range tc.pods {
				pods = append(pods, startPod(t, srv.Addr, prefix, fmt.Sprintf("pod-%d", i), tc.shards, testTTL))
			}
			waitFair(t, c, prefix, tc.shards, pods...)
			// Changes ends at the owned set.
			for _, p := range pods {
				deadline := time.Now().Add(5 * time.Second)
				for {
					var last []int
					select {
					case last = <-p.m.Changes():
					case <-time.After(50 * time.Millisecond):
						last = nil
					}
					if slices.Equal(last, p.m.Owned()) && last != nil || len(p.m.Owned()) == 0 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("pod %s: Changes gave %v, Owned is %v", p.m.pod, last, p.m.Owned())
					}
				}
			}
		})
	}
}

func TestJoinRebalances(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := newClient(t, srv.Addr)
	a := startPod(t, srv.Addr, "join", "a", 6, testTTL)
	waitFair(t, c, "join", 6, a)
	b := startPod(t, srv.Addr, "join", "b", 6, testTTL)
	d := waitFair(t, c, "join", 6, a, b)
	if d >= testTTL {
		t.Errorf("rebalancing after a join took %s, want under the TTL %s", d, testTTL)
	}
	if got := a.m.Owned(); !slices.Equal(got, []int{0, 1, 2}) {
		t.Errorf("first pod kept %v, want [0 1 2] (it releases its highest shards)", got)
	}
}

func TestStopHandsOver(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := newClient(t, srv.Addr)
	const ttl = 5 * time.Second // long, so only the release can explain a quick handover
	pods := []*pod{
		startPod(t, srv.Addr, "stop", "a", 9, ttl),
		startPod(t, srv.Addr, "stop", "b", 9, ttl),
		startPod(t, srv.Addr, "stop", "c", 9, ttl),
	}
	waitFair(t, c, "stop", 9, pods...)
	if err := pods[1].m.Stop(t.Context()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := pods[1].wait(); err != nil {
		t.Errorf("Run after Stop = %v, want nil", err)
	}
	var sets [][]int
	for set := range pods[1].m.Changes() {
		sets = append(sets, set)
	}
	if len(sets) == 0 || len(sets[len(sets)-1]) != 0 {
		t.Errorf("Changes after Stop gave %v, want an empty set last, then closed", sets)
	}
	if got := pods[1].m.Owned(); len(got) != 0 {
		t.Errorf("Owned after Stop = %v, want none", got)
	}
	d := waitFair(t, c, "stop", 9, pods[0], pods[2])
	if d >= ttl {
		t.Errorf("handover after Stop took %s, want well under the TTL %s", d, ttl)
	}
	if err := pods[1].m.Stop(t.Context()); err != nil {
		t.Errorf("second Stop = %v, want nil", err)
	}
}

func TestKilledPodExpires(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := newClient(t, srv.Addr)
	a := startPod(t, srv.Addr, "kill", "a", 6, testTTL)
	b := startPod(t, srv.Addr, "kill", "b", 6, testTTL)
	waitFair(t, c, "kill", 6, a, b)
	b.cancel()
	if err := b.wait(); !errors.Is(err, context.Canceled) {
		t.Errorf("Run after its context ended = %v, want context.Canceled", err)
	}
	killed := time.Now()
	waitFair(t, c, "kill", 6, a)
	// The dead pod renewed its leases at most one renew interval before dying.
	if d, min := time.Since(killed), testTTL-testRenew-50*time.Millisecond; d < min {
		t.Errorf("a killed pod's shards moved after %s, want no sooner than its leases expire (%s)", d, min)
	}
}

// TestFencing overwrites a lease behind its owner's back: the owner's
// compare-and-renew notices and drops the shard instead of renewing it.
func TestFencing(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := newClient(t, srv.Addr)
	a := startPod(t, srv.Addr, "fence", "a", 3, testTTL)
	waitFair(t, c, "fence", 3, a)
	if err := c.Set(t.Context(), "{fence}:lease:shard:1", "intruder:1", 2*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Equal(a.m.Owned(), []int{0, 2}) {
		if time.Now().After(deadline) {
			t.Fatalf("owner still reports %v after its lease was taken, want [0 2]", a.m.Owned())
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
	if v, err := c.Get(t.Context(), "{fence}:lease:shard:1").Result(); err != nil || v != "intruder:1" {
		t.Fatalf("the intruder's lease = %q, %v; the owner must not overwrite it", v, err)
	}
	waitFair(t, c, "fence", 3, a) // the intruder's lease expires and the shard comes back
}

// TestRedisRestart loses every lease at once: the pods keep their shards
// through the outage and take their leases back when Redis returns.
func TestRedisRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := newClient(t, srv.Addr)
	a := startPod(t, srv.Addr, "restart", "a", 6, testTTL)
	b := startPod(t, srv.Addr, "restart", "b", 6, testTTL)
	waitFair(t, c, "restart", 6, a, b)
	before := [][]int{a.m.Owned(), b.m.Owned()}
	srv.Stop()
	for range 5 {
		time.Sleep(testRenew) // several failed renewals must not change the owned sets
		if got := [][]int{a.m.Owned(), b.m.Owned()}; !slices.EqualFunc(got, before, slices.Equal) {
			t.Fatalf("owned sets during the outage = %v, want %v kept", got, before)
		}
	}
	srv.Restart()
	waitFair(t, c, "restart", 6, a, b)
	if got := [][]int{a.m.Owned(), b.m.Owned()}; !slices.EqualFunc(got, before, slices.Equal) {
		t.Errorf("owned sets after the restart = %v, want the same as before %v", got, before)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { _ = c.Close() })
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no pod id", Config{Shards: 1}},
		{"no shards", Config{PodID: "a"}},
		{"negative ttl", Config{PodID: "a", Shards: 1, TTL: -1}},
		{"renew not under ttl", Config{PodID: "a", Shards: 1, TTL: time.Second, Renew: time.Second}},
		{"default renew over short ttl", Config{PodID: "a", Shards: 1, TTL: time.Second}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := New(c, tc.cfg); err == nil {
				t.Errorf("New(%+v) = nil error, want one", tc.cfg)
			}
		})
	}
	if _, err := New(nil, Config{PodID: "a", Shards: 1}); err == nil {
		t.Error("New(nil client) = nil error, want one")
	}
	m, err := New(c, Config{PodID: "a", Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Stop(t.Context()); err != nil {
		t.Errorf("Stop before Run = %v, want nil", err)
	}
	if err := m.Run(t.Context()); err == nil {
		t.Error("Run after Stop = nil, want an error")
	}
}

func TestMemory(t *testing.T) {
	t.Parallel()
	if _, err := NewMemory(0); err == nil {
		t.Error("NewMemory(0) = nil error, want one")
	}
	m, err := NewMemory(3)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var runErr error
	wg.Go(func() { runErr = m.Run(t.Context()) })
	if got := <-m.Changes(); !slices.Equal(got, []int{0, 1, 2}) {
		t.Errorf("first change = %v, want every shard", got)
	}
	if got := m.Owned(); !slices.Equal(got, []int{0, 1, 2}) {
		t.Errorf("Owned = %v, want every shard", got)
	}
	if err := m.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if runErr != nil {
		t.Errorf("Run after Stop = %v, want nil", runErr)
	}
	if got, ok := <-m.Changes(); !ok || len(got) != 0 {
		t.Errorf("change after Stop = %v, %v; want an empty set", got, ok)
	}
	if _, ok := <-m.Changes(); ok {
		t.Error("Changes still open after Stop")
	}
	if len(m.Owned()) != 0 {
		t.Errorf("Owned after Stop = %v, want none", m.Owned())
	}
}

// TestHandOffWaitsForRelease runs two pods in HandOff mode: a shard over the first
// pod's share leaves its owned set at once, but no other pod can take it until the
// first pod calls Release; then the second takes it within a renew interval or so.
func TestHandOffWaitsForRelease(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := newClient(t, srv.Addr)
	start := func(id string) *pod {
		m, err := New(newClient(t, srv.Addr), Config{Prefix: "handoff", PodID: id, Shards: 4, TTL: 5 * time.Second, Renew: testRenew, HandOff: true})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		p := &pod{m: m, cancel: cancel, exited: make(chan struct{})}
		go func() {
			p.err = m.Run(ctx)
			close(p.exited)
		}()
		t.Cleanup(func() {
			_ = m.Stop(context.Background())
			cancel()
			<-p.exited
		})
		return p
	}
	a := start("a")
	waitFair(t, c, "handoff", 4, a)
	b := start("b")
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Equal(a.m.Owned(), []int{0, 1}) {
		if time.Now().After(deadline) {
			t.Fatalf("first pod owns %v, want [0 1] once a second pod joined", a.m.Owned())
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
	// Shards 2 and 3 are being handed off: still leased by a, so b cannot take them.
	for range 5 {
		time.Sleep(testRenew)
		if got := b.m.Owned(); len(got) != 0 {
			t.Fatalf("second pod took %v before the first released anything", got)
		}
		for _, s := range []int{2, 3} {
			v, err := c.Get(t.Context(), fmt.Sprintf("{handoff}:lease:shard:%d", s)).Result()
			if err != nil || !strings.HasPrefix(v, "a:") {
				t.Fatalf("lease of shard %d during hand-off = %q, %v; want it kept by a", s, v, err)
			}
		}
	}
	key, value := a.m.Fence(2)
	if v, err := c.Get(t.Context(), key).Result(); err != nil || v != value {
		t.Fatalf("Fence(2) = %q, %q but Redis holds %q, %v", key, value, v, err)
	}
	released := time.Now()
	for _, s := range []int{2, 3} {
		if err := a.m.Release(t.Context(), s); err != nil {
			t.Fatalf("Release(%d): %v", s, err)
		}
	}
	waitFair(t, c, "handoff", 4, a, b)
	if d := time.Since(released); d > 2*testRenew+500*time.Millisecond {
		t.Errorf("second pod took the released shards after %s, want about a renew interval (%s)", d, testRenew)
	}
	if err := a.m.Release(t.Context(), 3); err != nil {
		t.Errorf("releasing a shard no longer held = %v, want nil", err)
	}
	if got := b.m.Owned(); !slices.Equal(got, []int{2, 3}) {
		t.Errorf("second pod owns %v, want [2 3]", got)
	}
}

// TestRejoinHoldsClaims loses Redis's data while one of two pods is gone too: the pod that
// re-registers takes its own leases back at once but claims the other pod's shards only
// after a lease TTL, the time a live pod has to re-register, so a Redis restart cannot
// hand a running pod's shards to another.
func TestRejoinHoldsClaims(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := newClient(t, srv.Addr)
	a := startPod(t, srv.Addr, "rejoin", "a", 4, testTTL)
	b := startPod(t, srv.Addr, "rejoin", "b", 4, testTTL)
	waitFair(t, c, "rejoin", 4, a, b)
	mine := a.m.Owned()
	b.cancel() // b stops renewing (as if it had not re-registered yet)
	<-b.exited
	if err := c.FlushAll(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	flushed := time.Now()
	for time.Since(flushed) < testTTL-2*testRenew {
		if got := a.m.Owned(); !slices.Equal(got, mine) {
			t.Fatalf("%s after Redis lost its data, the pod owns %v, want only its own %v until a TTL passed", time.Since(flushed), got, mine)
		}
		time.Sleep(testRenew / 2)
	}
	waitFair(t, c, "rejoin", 4, a)
	if d := time.Since(flushed); d < testTTL {
		t.Errorf("free shards claimed %s after the data loss, want no sooner than the TTL %s", d, testTTL)
	}
}
