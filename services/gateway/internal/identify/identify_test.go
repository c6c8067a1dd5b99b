package identify

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMemoryWindowsPerBucket(t *testing.T) {
	t.Parallel()
	const window = 80 * time.Millisecond
	tests := []struct {
		name           string
		maxConcurrency int
		shards         int
	}{
		{"one bucket", 1, 3},
		{"two buckets", 2, 6},
		{"four buckets", 4, 8},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m, err := NewMemory(MemoryConfig{
				Limit:  SessionStartLimit{Total: 100, Remaining: 100, MaxConcurrency: tc.maxConcurrency},
				Window: window,
			})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			got := make([]time.Duration, tc.shards)
			for id := range tc.shards {
				if err := m.Wait(t.Context(), id); err != nil {
					t.Fatalf("Wait(%d): %v", id, err)
				}
				got[id] = time.Since(start)
			}
			for id, at := range got {
				round := id / tc.maxConcurrency
				if earliest := time.Duration(round) * window; at < earliest {
					t.Errorf("shard %d identified after %s, want no earlier than %s (window %d of its bucket)", id, at, earliest, round)
				}
			}
			// Identifies of the same bucket are at least one window apart. Times are taken
			// after Wait returns, so a late wake-up of the earlier one shrinks the gap seen
			// here (not the real one) by scheduling delay: allow for that.
			const slack = 30 * time.Millisecond
			for id := tc.maxConcurrency; id < tc.shards; id++ {
				if d := got[id] - got[id-tc.maxConcurrency]; d < window-slack {
					t.Errorf("shards %d and %d (same bucket) identified %s apart, want >= %s", id-tc.maxConcurrency, id, d, window)
				}
			}
			if rem := m.Limit().Remaining; rem != 100-tc.shards {
				t.Errorf("remaining = %d, want %d", rem, 100-tc.shards)
			}
		})
	}
}

func TestMemoryConcurrentFIFO(t *testing.T) {
	t.Parallel()
	const window = 30 * time.Millisecond
	m, err := NewMemory(MemoryConfig{Limit: SessionStartLimit{Total: 10, Remaining: 10, MaxConcurrency: 1}, Window: window})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var times []time.Time
	var wg sync.WaitGroup
	for id := range 4 {
		wg.Go(func() {
			if err := m.Wait(t.Context(), id); err != nil {
				t.Errorf("Wait(%d): %v", id, err)
				return
			}
			mu.Lock()
			times = append(times, time.Now())
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(times) != 4 {
		t.Fatalf("got %d identifies, want 4", len(times))
	}
	first, last := times[0], times[0]
	for _, tm := range times {
		if tm.Before(first) {
			first = tm
		}
		if tm.After(last) {
			last = tm
		}
	}
	if span := last.Sub(first); span < 3*window-5*time.Millisecond {
		t.Errorf("4 identifies in one bucket spanned %s, want >= %s", span, 3*window)
	}
}

func TestMemoryBudget(t *testing.T) {
	t.Parallel()
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
			m, err := NewMemory(MemoryConfig{
				Limit:   SessionStartLimit{Total: 1000, Remaining: tc.remaining, MaxConcurrency: 100},
				Reserve: tc.reserve,
				Window:  time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			err = m.CheckPlan(t.Context(), tc.plan)
			if tc.planOK != (err == nil) {
				t.Fatalf("CheckPlan(%d) = %v, want ok=%v", tc.plan, err, tc.planOK)
			}
			if err != nil {
				if !errors.Is(err, ErrBudgetExhausted) {
					t.Errorf("CheckPlan error %v does not wrap ErrBudgetExhausted", err)
				}
				if !strings.Contains(err.Error(), "of 1000 remain") {
					t.Errorf("CheckPlan error %q does not name the numbers", err)
				}
			}
			for id := range tc.waits {
				if err := m.Wait(t.Context(), id); err != nil {
					t.Fatalf("Wait(%d): %v", id, err)
				}
			}
			if tc.waits < tc.plan {
				err := m.Wait(t.Context(), tc.waits)
				if !errors.Is(err, ErrBudgetExhausted) {
					t.Fatalf("Wait past the budget = %v, want ErrBudgetExhausted", err)
				}
			}
		})
	}
}

func TestMemoryBudgetResets(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	m, err := NewMemory(MemoryConfig{
		Limit: SessionStartLimit{Total: 2, Remaining: 0, ResetAfter: time.Hour, MaxConcurrency: 1},
		Now:   clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Wait(t.Context(), 0); !errors.Is(err, ErrBudgetExhausted) {
		t.Fatalf("Wait with no budget = %v, want ErrBudgetExhausted", err)
	}
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	if err := m.Wait(t.Context(), 0); err != nil {
		t.Fatalf("Wait after the reset = %v, want nil", err)
	}
	if got := m.Limit().Remaining; got != 1 {
		t.Errorf("remaining after reset and one identify = %d, want 1", got)
	}
}

func TestMemoryWaitCancelRefunds(t *testing.T) {
	t.Parallel()
	m, err := NewMemory(MemoryConfig{Limit: SessionStartLimit{Total: 5, Remaining: 5, MaxConcurrency: 1}, Window: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Wait(t.Context(), 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := m.Wait(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait in a full window with a short deadline = %v, want DeadlineExceeded", err)
	}
	if got := m.Limit().Remaining; got != 4 {
		t.Errorf("remaining = %d, want 4 (the cancelled wait refunds its start)", got)
	}
}

func TestMemoryBadInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  MemoryConfig
	}{
		{"negative window", MemoryConfig{Window: -1}},
		{"negative reserve", MemoryConfig{Reserve: -1}},
		{"remaining above total", MemoryConfig{Limit: SessionStartLimit{Total: 1, Remaining: 2}}},
		{"negative remaining", MemoryConfig{Limit: SessionStartLimit{Total: 1, Remaining: -2}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := NewMemory(tc.cfg); err == nil {
				t.Fatalf("NewMemory(%+v) = nil error, want one", tc.cfg)
			}
		})
	}
	m, err := NewMemory(MemoryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Wait(t.Context(), -1); err == nil {
		t.Error("Wait(-1) = nil, want an error")
	}
}
