package discordsim

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLimiterFixedWindow(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	l := newLimiter(clk.Now, []bucketSpec{{Name: "b", Limit: 3, Window: time.Second}}, nil)
	key := limKey{owner: 1, bucket: l.bucket("b"), major: 42}
	for i := range 3 {
		d := l.take(key)
		if !d.ok || d.remaining != 2-i || d.limit != 3 {
			t.Fatalf("take %d: %+v, want ok with remaining %d", i, d, 2-i)
		}
	}
	d := l.take(key)
	if d.ok || d.remaining != 0 || d.retryAfter != time.Second {
		t.Fatalf("4th take: %+v, want refused with retry after 1s", d)
	}
	clk.Advance(400 * time.Millisecond)
	if d := l.take(key); d.ok || d.retryAfter != 600*time.Millisecond {
		t.Fatalf("take after 400ms: %+v, want refused with 600ms left", d)
	}
	// Another major parameter and another owner have their own counters.
	if d := l.take(limKey{owner: 1, bucket: key.bucket, major: 43}); !d.ok {
		t.Fatalf("other major parameter refused: %+v", d)
	}
	if d := l.take(limKey{owner: 2, bucket: key.bucket, major: 42}); !d.ok {
		t.Fatalf("other owner refused: %+v", d)
	}
	if d := l.take(limKey{owner: 1, bucket: key.bucket, major: 42, token: "x"}); !d.ok {
		t.Fatalf("other webhook token refused: %+v", d)
	}
	clk.Advance(600 * time.Millisecond)
	if d := l.take(key); !d.ok || d.remaining != 2 {
		t.Fatalf("take after the window: %+v, want a fresh window", d)
	}
}

func TestLimiterOverrideAndSweep(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	l := newLimiter(clk.Now, bucketTable, map[string]BucketLimit{"message-create": {Limit: 1, Window: 10 * time.Millisecond}})
	id := l.bucket("message-create")
	if sp := l.specs[id]; sp.Limit != 1 || sp.Window != 10*time.Millisecond {
		t.Fatalf("override not applied: %+v", sp)
	}
	if l.hashes[id] == l.hashes[l.bucket("message-edit")] || len(l.hashes[id]) != 32 {
		t.Fatalf("bucket hashes %q / %q: want distinct 32-char hashes", l.hashes[id], l.hashes[l.bucket("message-edit")])
	}
	for i := range 1000 {
		l.take(limKey{owner: 1, bucket: id, major: uint64(i)})
	}
	clk.Advance(2 * time.Minute)
	l.take(limKey{owner: 1, bucket: id, major: 1}) // triggers the sweep of its shard
	total := 0
	for i := range l.shards {
		l.shards[i].mu.Lock()
		clk := clk.Now().UnixNano()
		if clk >= l.shards[i].sweepAt {
			l.shards[i].sweep(clk)
		}
		total += len(l.shards[i].m)
		l.shards[i].mu.Unlock()
	}
	if total > 1 {
		t.Fatalf("%d expired windows kept after the sweep, want at most 1", total)
	}
}

// TestLimiterConcurrent proves that under contention a bucket never grants
// more than its limit per window.
func TestLimiterConcurrent(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	l := newLimiter(clk.Now, []bucketSpec{{Name: "b", Limit: 100, Window: time.Hour}}, nil)
	var granted atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range 500 {
				if l.take(limKey{owner: 7, bucket: 0, major: uint64(i % 3)}).ok {
					granted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if got := granted.Load(); got != 300 {
		t.Fatalf("granted %d, want exactly 3 buckets x 100", got)
	}
}

func TestInvalidTracker(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	tr := newInvalidTracker(clk.Now, 3, time.Minute)
	for i := range 3 {
		if tr.record("1.2.3.4") {
			t.Fatalf("record %d started a ban below the limit", i)
		}
	}
	if banned, _ := tr.isBanned("1.2.3.4"); banned {
		t.Fatal("banned at the limit, want banned only above it")
	}
	if !tr.record("1.2.3.4") {
		t.Fatal("4th invalid request did not start a ban")
	}
	banned, until := tr.isBanned("1.2.3.4")
	if !banned || !until.After(clk.Now()) {
		t.Fatalf("isBanned = %v until %v, want banned", banned, until)
	}
	if b, _ := tr.isBanned("5.6.7.8"); b {
		t.Fatal("another IP is banned")
	}
	clk.Advance(time.Minute)
	if b, _ := tr.isBanned("1.2.3.4"); b {
		t.Fatal("still banned after the window")
	}
	if n := tr.count("1.2.3.4"); n != 0 {
		t.Fatalf("count after the window = %d, want 0", n)
	}
}

func BenchmarkLimiterTake(b *testing.B) {
	l := newLimiter(time.Now, bucketTable, nil)
	id := l.bucket("message-create")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := uint64(0)
		for pb.Next() {
			i++
			l.take(limKey{owner: 1, bucket: id, major: i % 1024})
		}
	})
}

func BenchmarkLimiterTakeOneBucket(b *testing.B) {
	l := newLimiter(time.Now, bucketTable, nil)
	id := l.bucket("message-create")
	b.ReportAllocs()
	for b.Loop() {
		l.take(limKey{owner: 1, bucket: id, major: 1})
	}
}

func BenchmarkRouterMatch(b *testing.B) {
	lim := newLimiter(time.Now, bucketTable, nil)
	rt := newRouter(lim, restRoutes())
	paths := make([]string, 64)
	for i := range paths {
		paths[i] = "/channels/" + strconv.Itoa(1000+i) + "/messages/" + strconv.Itoa(2000+i) + "/reactions/%F0%9F%91%8D/@me"
	}
	b.ReportAllocs()
	c := &reqCtx{}
	for i := 0; b.Loop(); i++ {
		if r, _ := rt.match("PUT", paths[i%len(paths)], c); r == nil {
			b.Fatal("no match")
		}
	}
}

func TestInvalidTrackerForgetsOldIPs(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	tr := newInvalidTracker(clk.Now, 1, time.Minute)
	tr.record("banned")
	tr.record("banned")
	for i := range maxTrackedIPs {
		tr.record("ip" + strconv.Itoa(i))
	}
	clk.Advance(time.Minute)
	tr.record("fresh")
	tr.mu.Lock()
	n, banned := len(tr.byIP), tr.banned
	tr.mu.Unlock()
	if n != 1 || banned != 0 {
		t.Fatalf("tracking %d IPs (%d banned) after their windows ended, want only the fresh one", n, banned)
	}
}
