package identify

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

// testToken has the user-id.timestamp.hmac form; it is made up.
const testToken = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.c2VjcmV0LXBhcnQtb2YtdGhlLXRva2VuLTEyMzQ1"

func newClient(t testing.TB, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func newRedisLimiter(t *testing.T, addr string, cfg RedisConfig) *Redis {
	t.Helper()
	if cfg.Token == "" {
		cfg.Token = testToken
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "test-" + strings.ReplaceAll(t.Name(), "/", "-")
	}
	r, err := NewRedis(t.Context(), newClient(t, addr), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

type grant struct {
	shard int
	at    time.Time
}

// TestRedisWindowsAcrossLimiters runs two limiters (two pods) on one Redis, with
// the shards of every bucket split between them, and checks with Redis's own
// grant times that no bucket ever identifies twice within a window.
func TestRedisWindowsAcrossLimiters(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	const window = 200 * time.Millisecond
	tests := []struct {
		name           string
		maxConcurrency int
		shards         int
	}{
		{"one bucket", 1, 4},
		{"two buckets", 2, 8},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var grants []grant
			cfg := RedisConfig{
				Limit:  SessionStartLimit{Total: 100, Remaining: 100, MaxConcurrency: tc.maxConcurrency},
				Window: window,
				Poll:   20 * time.Millisecond,
			}
			pods := []*Redis{newRedisLimiter(t, srv.Addr, cfg), newRedisLimiter(t, srv.Addr, cfg)}
			for _, p := range pods {
				p.onGrant = func(id int, at time.Time) {
					mu.Lock()
					grants = append(grants, grant{id, at})
					mu.Unlock()
				}
			}
			start := time.Now()
			var wg sync.WaitGroup
			errs := make(chan error, tc.shards)
			for id := range tc.shards {
				pod := pods[(id/tc.maxConcurrency)%2]
				wg.Go(func() {
					if err := pod.Wait(t.Context(), id); err != nil {
						errs <- fmt.Errorf("Wait(%d): %w", id, err)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if len(grants) != tc.shards {
				t.Fatalf("got %d grants, want %d", len(grants), tc.shards)
			}
			perBucket := map[int][]time.Time{}
			for _, g := range grants {
				b := g.shard % tc.maxConcurrency
				perBucket[b] = append(perBucket[b], g.at)
			}
			for b, ts := range perBucket {
				slices.SortFunc(ts, func(x, y time.Time) int { return x.Compare(y) })
				for i := 1; i < len(ts); i++ {
					// Redis expires keys with millisecond precision.
					if d := ts[i].Sub(ts[i-1]); d < window-time.Millisecond {
						t.Errorf("bucket %d: identifies %d and %d were %s apart, want >= %s", b, i-1, i, d, window)
					}
				}
			}
			perBucketCount := tc.shards / tc.maxConcurrency
			if el, want := time.Since(start), time.Duration(perBucketCount-1)*window; el < want {
				t.Errorf("%d identifies per bucket took %s, want >= %s", perBucketCount, el, want)
			}
			l, err := pods[0].Limit(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if l.Remaining != 100-tc.shards {
				t.Errorf("shared remaining = %d, want %d", l.Remaining, 100-tc.shards)
			}
		})
	}
}

func TestRedisBudget(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	tests := []struct {
		name      string
		remaining int
		reserve   int
		plan      int
		planOK    bool
		waits     int // successful Waits before the refusal
	}{
		{"plan fits", 10, 0, 10, true, 10},
		{"plan too big", 3, 0, 4, false, 3},
		{"reserve kept", 5, 2, 4, false, 3},
		{"nothing left", 0, 0, 1, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Two pods share the budget: each Wait alternates between them.
			cfg := RedisConfig{
				Limit:   SessionStartLimit{Total: 1000, Remaining: tc.remaining, MaxConcurrency: 100},
				Reserve: tc.reserve,
				Window:  time.Millisecond,
			}
			pods := []*Redis{newRedisLimiter(t, srv.Addr, cfg), newRedisLimiter(t, srv.Addr, cfg)}
			err := pods[1].CheckPlan(t.Context(), tc.plan)
			if tc.planOK != (err == nil) {
				t.Fatalf("CheckPlan(%d) = %v, want ok=%v", tc.plan, err, tc.planOK)
			}
			if err != nil {
				if !errors.Is(err, ErrBudgetExhausted) {
					t.Errorf("CheckPlan error %v does not wrap ErrBudgetExhausted", err)
				}
				want := fmt.Sprintf("starting %d sessions needs %d identifies but %d of 1000 remain (%d kept in reserve)", tc.plan, tc.plan, tc.remaining, tc.reserve)
				if !strings.Contains(err.Error(), want) {
					t.Errorf("CheckPlan error %q does not contain %q", err, want)
				}
			}
			for id := range tc.waits {
				if err := pods[id%2].Wait(t.Context(), id); err != nil {
					t.Fatalf("Wait(%d): %v", id, err)
				}
			}
			if tc.waits < tc.plan {
				err := pods[tc.waits%2].Wait(t.Context(), tc.waits)
				if !errors.Is(err, ErrBudgetExhausted) {
					t.Fatalf("Wait past the budget = %v, want ErrBudgetExhausted", err)
				}
				want := fmt.Sprintf("%d of 1000 session starts remain (%d kept in reserve)", tc.remaining-tc.waits, tc.reserve)
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Wait error %q does not contain %q", err, want)
				}
			}
		})
	}
}

// TestRedisBudgetRace has more concurrent Waits on two pods than session starts
// left: exactly the budget's worth succeed.
func TestRedisBudgetRace(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	cfg := RedisConfig{Limit: SessionStartLimit{Total: 50, Remaining: 7, MaxConcurrency: 64}, Window: time.Millisecond}
	pods := []*Redis{newRedisLimiter(t, srv.Addr, cfg), newRedisLimiter(t, srv.Addr, cfg)}
	var mu sync.Mutex
	ok, exhausted := 0, 0
	var wg sync.WaitGroup
	for id := range 20 {
		wg.Go(func() {
			err := pods[id%2].Wait(t.Context(), id)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrBudgetExhausted):
				exhausted++
			default:
				t.Errorf("Wait(%d): %v", id, err)
			}
		})
	}
	wg.Wait()
	if ok != 7 || exhausted != 13 {
		t.Errorf("granted %d and refused %d, want 7 and 13", ok, exhausted)
	}
}

func TestRedisBudgetResets(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	r := newRedisLimiter(t, srv.Addr, RedisConfig{
		Limit:  SessionStartLimit{Total: 2, Remaining: 0, ResetAfter: 300 * time.Millisecond, MaxConcurrency: 1},
		Window: time.Millisecond,
	})
	if err := r.Wait(t.Context(), 0); !errors.Is(err, ErrBudgetExhausted) {
		t.Fatalf("Wait with no budget = %v, want ErrBudgetExhausted", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := r.Wait(t.Context(), 0)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrBudgetExhausted) || time.Now().After(deadline) {
			t.Fatalf("Wait after the reset time = %v, want nil", err)
		}
		time.Sleep(20 * time.Millisecond) // polling for the reset with a deadline
	}
	l, err := r.Limit(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if l.Remaining != 1 {
		t.Errorf("remaining after reset and one identify = %d, want 1", l.Remaining)
	}
}

func TestRedisWaitCancelSpendsNothing(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	r := newRedisLimiter(t, srv.Addr, RedisConfig{Limit: SessionStartLimit{Total: 5, Remaining: 5, MaxConcurrency: 1}, Window: time.Hour})
	if err := r.Wait(t.Context(), 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := r.Wait(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait in a full window with a short deadline = %v, want DeadlineExceeded", err)
	}
	l, err := r.Limit(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if l.Remaining != 4 {
		t.Errorf("remaining = %d, want 4 (a cancelled wait spends nothing)", l.Remaining)
	}
}

// TestRedisRestart loses Redis's state: the limiter reseeds it from the last
// budget it saw instead of failing or refilling to the total.
func TestRedisRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	r := newRedisLimiter(t, srv.Addr, RedisConfig{Limit: SessionStartLimit{Total: 100, Remaining: 10, MaxConcurrency: 1}, Window: time.Millisecond})
	for id := range 3 {
		if err := r.Wait(t.Context(), id); err != nil {
			t.Fatal(err)
		}
	}
	srv.Restart()
	deadline := time.Now().Add(10 * time.Second)
	var l SessionStartLimit
	for {
		var err error
		if l, err = r.Limit(t.Context()); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Limit after the restart: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // the client reconnects; poll with a deadline
	}
	if l.Remaining != 7 || l.Total != 100 {
		t.Errorf("limit after restart = %+v, want 7 of 100 remaining", l)
	}
	if err := r.Wait(t.Context(), 0); err != nil {
		t.Fatalf("Wait after the restart: %v", err)
	}
}

// TestRedisWaitDuringOutage: with Redis gone, Wait does not identify; it keeps
// asking until its context ends.
func TestRedisWaitDuringOutage(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	r := newRedisLimiter(t, srv.Addr, RedisConfig{Limit: SessionStartLimit{Total: 100, Remaining: 10}, Poll: 10 * time.Millisecond})
	srv.Stop()
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if err := r.Wait(ctx, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with redis down = %v, want DeadlineExceeded", err)
	}
	if err := r.CheckPlan(t.Context(), 1); err == nil || errors.Is(err, ErrBudgetExhausted) {
		t.Fatalf("CheckPlan with redis down = %v, want a redis error", err)
	}
}

func TestRedisKeysHideToken(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	r := newRedisLimiter(t, srv.Addr, RedisConfig{Prefix: "hide", Limit: SessionStartLimit{MaxConcurrency: 1}, Window: time.Minute})
	if err := r.Wait(t.Context(), 0); err != nil {
		t.Fatal(err)
	}
	keys, err := newClient(t, srv.Addr).Keys(t.Context(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Errorf("keys = %q, want the budget and one bucket", keys)
	}
	id, secret, _ := strings.Cut(testToken, ".")
	for _, k := range keys {
		if !strings.HasPrefix(k, "hide:identify:{") || strings.Contains(k, id) || strings.Contains(k, secret) {
			t.Errorf("key %q is not prefixed or holds part of the token", k)
		}
	}
	// The bot key depends only on the user id, so it survives a token reset.
	a, _ := BotKey(testToken)
	b, _ := BotKey("Bot " + id + ".other.token")
	if a != b {
		t.Errorf("BotKey differs for tokens of one bot: %q, %q", a, b)
	}
}

func TestRedisBadInput(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := newClient(t, srv.Addr)
	tests := []struct {
		name string
		cfg  RedisConfig
	}{
		{"no token", RedisConfig{}},
		{"blank token", RedisConfig{Token: "   "}},
		{"negative window", RedisConfig{Token: testToken, Window: -1}},
		{"negative reserve", RedisConfig{Token: testToken, Reserve: -1}},
		{"negative poll", RedisConfig{Token: testToken, Poll: -1}},
		{"remaining above total", RedisConfig{Token: testToken, Limit: SessionStartLimit{Total: 1, Remaining: 2}}},
		{"negative remaining", RedisConfig{Token: testToken, Limit: SessionStartLimit{Total: 1, Remaining: -2}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewRedis(t.Context(), c, tc.cfg)
			if err == nil {
				t.Fatalf("NewRedis(%+v) = nil error, want one", tc.cfg)
			}
			if strings.Contains(err.Error(), "c2VjcmV0") {
				t.Errorf("error %q holds the token", err)
			}
		})
	}
	if _, err := NewRedis(t.Context(), nil, RedisConfig{Token: testToken}); err == nil {
		t.Error("NewRedis(nil client) = nil error, want one")
	}
	r := newRedisLimiter(t, srv.Addr, RedisConfig{})
	if err := r.Wait(t.Context(), -1); err == nil {
		t.Error("Wait(-1) = nil, want an error")
	}
}

// TestRedisZeroLimitKeepsShared: a pod started without a fresh limit uses the
// shared budget instead of resetting it to the default.
func TestRedisZeroLimitKeepsShared(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a := newRedisLimiter(t, srv.Addr, RedisConfig{Prefix: "zero", Limit: SessionStartLimit{Total: 100, Remaining: 3, MaxConcurrency: 4}})
	b := newRedisLimiter(t, srv.Addr, RedisConfig{Prefix: "zero"})
	for _, r := range []*Redis{a, b} {
		l, err := r.Limit(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if l.Remaining != 3 || l.Total != 100 || l.MaxConcurrency != 4 {
			t.Errorf("limit = %+v, want the shared 3 of 100 with max concurrency 4", l)
		}
	}
	// Alone, the zero limit means MemoryConfig's defaults.
	c := newRedisLimiter(t, srv.Addr, RedisConfig{Prefix: "zero-alone"})
	l, err := c.Limit(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if l.Remaining != 1000 || l.Total != 1000 || l.MaxConcurrency != 1 {
		t.Errorf("default limit = %+v, want 1000 of 1000 with max concurrency 1", l)
	}
}

// TestBotKeyWithoutDots names a bot whose token has no user-id part (a test's made-up
// token) by a hash of the whole token, which never shows the token.
func TestBotKeyWithoutDots(t *testing.T) {
	a, err := BotKey("made-up-token")
	if err != nil {
		t.Fatalf("BotKey of a token without dots: %v", err)
	}
	if b, _ := BotKey("Bot made-up-token"); a != b {
		t.Errorf("BotKey differs with and without the Bot prefix: %q, %q", a, b)
	}
	if c, _ := BotKey("another-token"); c == a {
		t.Errorf("two tokens without dots got the same key %q", a)
	}
	if strings.Contains(a, "made-up") {
		t.Errorf("BotKey %q shows the token", a)
	}
}
