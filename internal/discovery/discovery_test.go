package discovery

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestFollow(t *testing.T) {
	t.Parallel()
	var addrs atomic.Value
	addrs.Store([]string{"10.0.0.1", "10.0.0.2"})
	fail := atomic.Bool{}
	lookup := func(_ context.Context, host string) ([]string, error) {
		if host != "gw" {
			t.Errorf("looked up %q, want gw", host)
		}
		if fail.Load() {
			return nil, errors.New("no answer")
		}
		return addrs.Load().([]string), nil
	}
	var mu sync.Mutex
	live := map[string]bool{}
	started := map[string]int{}
	snapshot := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for a, ok := range live {
			if ok {
				out = append(out, a)
			}
		}
		slices.Sort(out)
		return out
	}
	wait := func(want ...string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !slices.Equal(snapshot(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("live runs %v, want %v", snapshot(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- Follow(ctx, "gw:7001", 5*time.Millisecond, lookup, slog.New(slog.NewTextHandler(io.Discard, nil)),
			func(ctx context.Context, target string) {
				mu.Lock()
				live[target] = true
				started[target]++
				mu.Unlock()
				<-ctx.Done()
				mu.Lock()
				live[target] = false
				mu.Unlock()
			})
	}()
	wait("10.0.0.1:7001", "10.0.0.2:7001")
	fail.Store(true) // a failed lookup keeps what runs
	time.Sleep(30 * time.Millisecond)
	wait("10.0.0.1:7001", "10.0.0.2:7001")
	fail.Store(false)
	addrs.Store([]string{"10.0.0.2", "10.0.0.3"})
	wait("10.0.0.2:7001", "10.0.0.3:7001")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := snapshot(); len(got) != 0 {
		t.Errorf("runs still live after Follow returned: %v", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if started["10.0.0.2:7001"] != 1 {
		t.Errorf("10.0.0.2 started %d times, want once (kept across resolutions)", started["10.0.0.2:7001"])
	}
}

func TestFollowBadAddress(t *testing.T) {
	t.Parallel()
	err := Follow(t.Context(), "no-port", time.Second, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), func(context.Context, string) {})
	if err == nil {
		t.Fatal("Follow accepted an address without a port")
	}
}
