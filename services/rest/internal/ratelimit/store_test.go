package ratelimit

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kubecord/kubecord/internal/redistest"
)

// storeFactory returns a fresh, empty store for one test.
type storeFactory func(t *testing.T) Store

func memoryFactory(*testing.T) Store { return NewMemoryStore() }

// redisFactory starts one redis-server for the calling test and hands out
// stores with distinct prefixes, so subtests do not see each other's state.
func redisFactory(t *testing.T) storeFactory {
	addr := redistest.Start(t).Addr
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = rdb.Close() })
	var n atomic.Int64
	return func(*testing.T) Store {
		return NewRedisStore(rdb, "test"+strconv.FormatInt(n.Add(1), 10)+":")
	}
}

func TestStores(t *testing.T) {
	t.Parallel()
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		storeSuite(t, memoryFactory)
	})
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		storeSuite(t, redisFactory(t))
	})
}

var (
	routeA  = Route{Key: "POST /channels/{major}/messages", Major: "channels:1"}
	routeA2 = Route{Key: "POST /channels/{major}/messages", Major: "channels:2"}
	routeB  = Route{Key: "PATCH /channels/{major}/messages/{id}", Major: "channels:1"}
	hookA   = Route{Key: "POST /webhooks/{major}/{token}", Major: "webhooks:1:aa", Exempt: true, WebhookToken: true}
	hookB   = Route{Key: "POST /webhooks/{major}/{token}", Major: "webhooks:1:bb", Exempt: true, WebhookToken: true}
)

func acq(r Route) Acquire {
	return Acquire{Bot: "bot1", Route: r, Global: !r.Exempt, GlobalLimit: 1000, GlobalWindow: time.Second,
		InvalidLimit: 100, InvalidWindow: time.Minute, ProbeTTL: 5 * time.Second}
}

// limits is the observation of a 2xx carrying bucket headers.
func limits(r Route, hash string, limit, remaining int, resetID int64, resetAfter time.Duration) Observation {
	return Observation{Bot: "bot1", Route: r, Status: 200, Hash: hash, HasLimit: true, Limit: limit,
		Remaining: remaining, ResetID: resetID, ResetAfter: resetAfter, InvalidWindow: time.Minute, BadTTL: time.Minute}
}

func mustAcquire(t *testing.T, s Store, a Acquire) Grant {
	t.Helper()
	g, err := s.Acquire(t.Context(), a)
	if err != nil {
		t.Fatalf("Acquire(%s): %v", a.Route.Key, err)
	}
	return g
}

func mustObserve(t *testing.T, s Store, o Observation) {
	t.Helper()
	if err := s.Observe(t.Context(), o); err != nil {
		t.Fatalf("Observe: %v", err)
	}
}

func wantGranted(t *testing.T, g Grant, what string) {
	t.Helper()
	if g.Wait != 0 || g.Refused {
		t.Fatalf("%s: got %+v, want granted", what, g)
	}
}

func wantWait(t *testing.T, g Grant, reason Reason, atLeast, atMost time.Duration, what string) {
	t.Helper()
	if g.Refused || g.Reason != reason || g.Wait < atLeast || g.Wait > atMost {
		t.Fatalf("%s: got %+v, want a %s wait in [%s, %s]", what, g, reason, atLeast, atMost)
	}
}

func storeSuite(t *testing.T, newStore storeFactory) {
	t.Run("unknown bucket is probed by one request", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		wantGranted(t, mustAcquire(t, s, acq(routeA)), "first request")
		wantWait(t, mustAcquire(t, s, acq(routeA)), ReasonProbe, time.Second, 5*time.Second, "second request during probe")
		mustObserve(t, s, limits(routeA, "h1", 3, 2, 1000, time.Minute))
		wantGranted(t, mustAcquire(t, s, acq(routeA)), "after probe 1")
		wantGranted(t, mustAcquire(t, s, acq(routeA)), "after probe 2")
		wantWait(t, mustAcquire(t, s, acq(routeA)), ReasonBucket, 50*time.Second, time.Minute, "bucket empty")
		// Another channel is another bucket even with the same hash.
		wantGranted(t, mustAcquire(t, s, acq(routeA2)), "other major")
	})
	t.Run("bucket resets after reset_after", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		wantGranted(t, mustAcquire(t, s, acq(routeA)), "probe")
		mustObserve(t, s, limits(routeA, "h1", 1, 0, 1000, 150*time.Millisecond))
		g := mustAcquire(t, s, acq(routeA))
		wantWait(t, g, ReasonBucket, time.Millisecond, 150*time.Millisecond, "empty bucket")
		deadline := time.Now().Add(5 * time.Second)
		for g.Wait > 0 && time.Now().Before(deadline) {
			time.Sleep(g.Wait) // waiting exactly what the store asked for is the behaviour under test
			g = mustAcquire(t, s, acq(routeA))
		}
		wantGranted(t, g, "after reset")
		// The bucket now waits for the new window's answer.
		wantWait(t, mustAcquire(t, s, acq(routeA)), ReasonBucket, time.Microsecond, 150*time.Millisecond, "window used up again")
	})
	t.Run("routes with one hash share a bucket", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		wantGranted(t, mustAcquire(t, s, acq(routeA)), "probe A")
		mustObserve(t, s, limits(routeA, "shared", 3, 2, 1000, time.Minute))
		wantGranted(t, mustAcquire(t, s, acq(routeB)), "probe B")
		mustObserve(t, s, limits(routeB, "shared", 3, 1, 1000, time.Minute))
		wantGranted(t, mustAcquire(t, s, acq(routeA)), "A after sharing")
		wantWait(t, mustAcquire(t, s, acq(routeB)), ReasonBucket, time.Second, time.Minute, "B sees A's use")
	})
	t.Run("answers from an older window are ignored", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		wantGranted(t, mustAcquire(t, s, acq(routeA)), "probe")
		mustObserve(t, s, limits(routeA, "h", 5, 4, 2000, time.Minute))
		mustObserve(t, s, limits(routeA, "h", 5, 0, 1000, time.Minute)) // late, older window
		for i := range 4 {
			wantGranted(t, mustAcquire(t, s, acq(routeA)), "request "+strconv.Itoa(i))
		}
		wantWait(t, mustAcquire(t, s, acq(routeA)), ReasonBucket, time.Second, time.Minute, "fifth")
	})
	t.Run("route without limit headers is unlimited", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		wantGranted(t, mustAcquire(t, s, acq(routeA)), "probe")
		mustObserve(t, s, Observation{Bot: "bot1", Route: routeA, Status: 200})
		for i := range 20 {
			wantGranted(t, mustAcquire(t, s, acq(routeA)), "request "+strconv.Itoa(i))
		}
	})
	t.Run("a 5xx without headers teaches nothing", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		wantGranted(t, mustAcquire(t, s, acq(routeA)), "probe")
		mustObserve(t, s, Observation{Bot: "bot1", Route: routeA, Status: 502})
		wantGranted(t, mustAcquire(t, s, acq(routeA)), "probe again")
		wantWait(t, mustAcquire(t, s, acq(routeA)), ReasonProbe, time.Second, 5*time.Second, "still unknown")
	})
	t.Run("global limit spans buckets and skips exempt routes", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		a := func(major int) Acquire {
			x := acq(Route{Key: "GET /channels/{major}", Major: "channels:" + strconv.Itoa(major)})
			x.GlobalLimit, x.GlobalWindow = 3, time.Minute
			return x
		}
		for i := range 3 {
			wantGranted(t, mustAcquire(t, s, a(i)), "global "+strconv.Itoa(i))
		}
		// In flight, the three hold their slots until they are answered...
		wantWait(t, mustAcquire(t, s, a(9)), ReasonGlobal, time.Microsecond, 20*time.Millisecond, "fourth bucket, three in flight")
		// ... and then for a global window after their answer.
		for i := range 3 {
			r := a(i).Route
			mustObserve(t, s, Observation{Bot: "bot1", Route: r, Status: 200, Global: true, GlobalWindow: time.Minute})
		}
		wantWait(t, mustAcquire(t, s, a(9)), ReasonGlobal, 50*time.Second, time.Minute, "fourth bucket, three answered")
		h := acq(hookA)
		h.GlobalLimit, h.GlobalWindow = 3, time.Minute
		wantGranted(t, mustAcquire(t, s, h), "webhook-token route")
		other := a(10)
		other.Bot = "bot2"
		wantGranted(t, mustAcquire(t, s, other), "other bot")
	})
	t.Run("429 with retry_after empties the bucket", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		wantGranted(t, mustAcquire(t, s, acq(routeA)), "probe")
		mustObserve(t, s, limits(routeA, "h", 5, 4, 1000, 100*time.Millisecond))
		wantGranted(t, mustAcquire(t, s, acq(routeA)), "second")
		o := limits(routeA, "h", 5, 3, 1000, 100*time.Millisecond)
		o.Status, o.RetryAfter, o.Scope, o.Invalid = 429, 30*time.Second, "user", true
		mustObserve(t, s, o)
		wantWait(t, mustAcquire(t, s, acq(routeA)), ReasonBucket, 20*time.Second, 30*time.Second, "after 429")
	})
	t.Run("global 429 blocks every bucket of the bot", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		wantGranted(t, mustAcquire(t, s, acq(routeA)), "probe")
		mustObserve(t, s, Observation{Bot: "bot1", Route: routeA, Status: 429, Global429: true, Scope: "global", RetryAfter: 20 * time.Second, Invalid: true, InvalidWindow: time.Minute})
		wantWait(t, mustAcquire(t, s, acq(routeA2)), ReasonGlobal, 10*time.Second, 20*time.Second, "other bucket")
		wantGranted(t, mustAcquire(t, s, acq(hookA)), "exempt route")
	})
	t.Run("invalid-request guard refuses at the threshold", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		a := acq(routeA)
		a.InvalidLimit = 3
		for range 2 {
			mustObserve(t, s, Observation{Bot: "bot1", Route: routeA, Status: 403, Invalid: true, InvalidWindow: time.Minute})
		}
		wantGranted(t, mustAcquire(t, s, a), "below threshold")
		mustObserve(t, s, Observation{Bot: "bot9", Route: routeA, Status: 403, Invalid: true, InvalidWindow: time.Minute})
		g := mustAcquire(t, s, a)
		if !g.Refused || g.Reason != ReasonInvalid {
			t.Fatalf("at threshold: got %+v, want refused for invalid requests", g)
		}
		st, err := s.Stats(t.Context())
		if err != nil || st.Invalid != 3 {
			t.Fatalf("Stats = %+v, %v; want 3 invalid", st, err)
		}
	})
	t.Run("bad webhook token locks only that webhook", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		wantGranted(t, mustAcquire(t, s, acq(hookA)), "webhook probe")
		mustObserve(t, s, Observation{Bot: "bot1", Route: hookA, Status: 401, BadWebhook: true, BadTTL: time.Minute, Invalid: true, InvalidWindow: time.Minute})
		g := mustAcquire(t, s, acq(hookA))
		if !g.Refused || g.Reason != ReasonBadWebhook {
			t.Fatalf("bad webhook: got %+v, want refused", g)
		}
		wantGranted(t, mustAcquire(t, s, acq(hookB)), "other token of the same webhook")
		wantGranted(t, mustAcquire(t, s, acq(routeA)), "bot route")
	})
	t.Run("bad bot token refuses the bot but not webhook routes", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		wantGranted(t, mustAcquire(t, s, acq(routeA)), "probe")
		mustObserve(t, s, Observation{Bot: "bot1", Route: routeA, Status: 401, BadToken: true, BadTTL: time.Minute, Invalid: true, InvalidWindow: time.Minute})
		g := mustAcquire(t, s, acq(routeA2))
		if !g.Refused || g.Reason != ReasonBadToken {
			t.Fatalf("bad token: got %+v, want refused", g)
		}
		wantGranted(t, mustAcquire(t, s, acq(hookA)), "webhook route")
		other := acq(routeA)
		other.Bot = "bot2"
		wantGranted(t, mustAcquire(t, s, other), "other bot")
	})
	t.Run("concurrent acquires never exceed the bucket", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		wantGranted(t, mustAcquire(t, s, acq(routeA)), "probe")
		mustObserve(t, s, limits(routeA, "h", 10, 9, 1000, time.Minute))
		var granted atomic.Int64
		ctx := t.Context()
		done := make(chan error, 8)
		for range 8 {
			go func() {
				for range 5 {
					g, err := s.Acquire(ctx, acq(routeA))
					if err != nil {
						done <- err
						return
					}
					if g.Wait == 0 && !g.Refused {
						granted.Add(1)
					}
				}
				done <- nil
			}()
		}
		for range 8 {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		if got := granted.Load(); got != 9 {
			t.Fatalf("granted %d of 40 concurrent requests, want exactly the 9 remaining", got)
		}
	})
}

func TestMemoryStoreSweepsIdleBuckets(t *testing.T) {
	t.Parallel()
	s := NewMemoryStore()
	now := time.Unix(1_800_000_000, 0)
	s.now = func() time.Time { return now }
	ctx := context.Background()
	for i := range 100 {
		r := Route{Key: "GET /channels/{major}", Major: "channels:" + strconv.Itoa(i)}
		if _, err := s.Acquire(ctx, acq(r)); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(2 * bucketIdle)
	s.sweep(now)
	st, _ := s.Stats(ctx)
	if st.Buckets != 0 {
		t.Fatalf("%d buckets left after sweeping idle ones, want 0", st.Buckets)
	}
}
