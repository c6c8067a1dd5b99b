// Package identify coordinates IDENTIFY payloads across gateway shards.
//
// Discord allows max_concurrency identifies per 5 seconds, one per bucket
// shard_id % max_concurrency, and a daily budget of session starts
// (session_start_limit). Going over the window earns an Invalid Session; going
// over the budget resets the bot token. A Limiter keeps every shard of a bot
// inside both. This package holds the interface and an in-memory
// implementation for one process; a shared (Redis) one comes later and
// satisfies the same interface.
package identify

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// DefaultWindow is Discord's 5 s identify window plus a margin: Discord measures the
// window when an identify arrives, and two identifies granted exactly 5 s apart can
// arrive closer than that.
const DefaultWindow = 5*time.Second + 250*time.Millisecond

// SessionStartLimit mirrors session_start_limit from GET /gateway/bot.
type SessionStartLimit struct {
	// Total is the number of session starts allowed per reset period (1000/day for most bots).
	Total int
	// Remaining is the number of session starts left in the current period.
	Remaining int
	// ResetAfter is how long until Remaining returns to Total.
	ResetAfter time.Duration
	// MaxConcurrency is the number of identify buckets per window.
	MaxConcurrency int
}

// Limiter decides when a shard may send IDENTIFY.
type Limiter interface {
	// Wait blocks until shardID may identify, then counts one session start. Callers
	// that arrive first are served first within a bucket. It returns an error wrapping
	// ErrBudgetExhausted when no session start is left, or ctx's error.
	Wait(ctx context.Context, shardID int) error
	// CheckPlan returns an error wrapping ErrBudgetExhausted when starting the given
	// number of new sessions would use up the remaining daily budget.
	CheckPlan(ctx context.Context, starts int) error
	// Update replaces the known limits with fresh ones from GET /gateway/bot.
	Update(ctx context.Context, limit SessionStartLimit) error
}

// Rearmer is implemented by limiters that restart a bucket's window when the identify
// actually went out. Discord measures the window between identifies as they arrive; a
// shard delayed between its grant and its send (a busy machine, a slow write) would
// otherwise leave less than a window before the next grant of its bucket.
type Rearmer interface {
	// Sent restarts the window of shardID's bucket from now.
	Sent(ctx context.Context, shardID int) error
}

// ErrBudgetExhausted is wrapped by errors about the daily session start budget.
var ErrBudgetExhausted = errors.New("identify session start budget exhausted")

// MemoryConfig configures a Memory limiter.
type MemoryConfig struct {
	// Limit is the starting limit, normally from GET /gateway/bot. MaxConcurrency < 1
	// is taken as 1; Total 0 means 1000; ResetAfter 0 means 24 h.
	Limit SessionStartLimit
	// Window is the identify window; 0 means DefaultWindow. Tests shorten it.
	Window time.Duration
	// Reserve is the number of session starts kept back for emergencies: the budget counts
	// as exhausted when Remaining reaches Reserve.
	Reserve int
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Memory is a Limiter for the shards of one process.
type Memory struct {
	window  time.Duration
	reserve int
	now     func() time.Time

	mu        sync.Mutex
	limit     SessionStartLimit
	resetAt   time.Time
	nextSlot  map[int]time.Time // bucket -> scheduled time of its next identify
	lastGrant map[int]time.Time // bucket -> when its last identify was allowed
}

var _ Limiter = (*Memory)(nil)

// NewMemory returns an in-memory Limiter.
func NewMemory(cfg MemoryConfig) (*Memory, error) {
	if cfg.Window < 0 {
		return nil, fmt.Errorf("identify window %s is negative", cfg.Window)
	}
	if cfg.Reserve < 0 {
		return nil, fmt.Errorf("identify reserve %d is negative", cfg.Reserve)
	}
	m := &Memory{
		window:    cfg.Window,
		reserve:   cfg.Reserve,
		now:       cfg.Now,
		nextSlot:  map[int]time.Time{},
		lastGrant: map[int]time.Time{},
	}
	if m.window == 0 {
		m.window = DefaultWindow
	}
	if m.now == nil {
		m.now = time.Now
	}
	if err := m.Update(context.Background(), cfg.Limit); err != nil {
		return nil, err
	}
	return m, nil
}

// Update implements Limiter.
func (m *Memory) Update(_ context.Context, limit SessionStartLimit) error {
	if limit.Total < 0 || limit.Remaining < 0 || limit.ResetAfter < 0 {
		return fmt.Errorf("session start limit %+v has negative fields", limit)
	}
	if limit.Total == 0 {
		limit.Total = 1000
		if limit.Remaining == 0 {
			limit.Remaining = limit.Total
		}
	}
	if limit.Remaining > limit.Total {
		return fmt.Errorf("session start limit has remaining %d above total %d", limit.Remaining, limit.Total)
	}
	if limit.ResetAfter == 0 {
		limit.ResetAfter = 24 * time.Hour
	}
	if limit.MaxConcurrency < 1 {
		limit.MaxConcurrency = 1
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.limit = limit
	m.resetAt = m.now().Add(limit.ResetAfter)
	return nil
}

// Limit returns the current view of the session start limit.
func (m *Memory) Limit() SessionStartLimit {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.refill(m.now())
	l := m.limit
	l.ResetAfter = max(m.resetAt.Sub(m.now()), 0)
	return l
}

// refill restores the budget once its reset time has passed. Callers hold mu.
func (m *Memory) refill(now time.Time) {
	if !now.Before(m.resetAt) {
		m.limit.Remaining = m.limit.Total
		m.resetAt = now.Add(m.limit.ResetAfter)
	}
}

// CheckPlan implements Limiter.
func (m *Memory) CheckPlan(_ context.Context, starts int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.refill(now)
	if starts > m.limit.Remaining-m.reserve {
		return fmt.Errorf("%w: starting %d sessions needs %d identifies but %d of %d remain (%d kept in reserve) until %s; resume existing sessions or wait",
			ErrBudgetExhausted, starts, starts, m.limit.Remaining, m.limit.Total, m.reserve, m.resetAt.Sub(now).Round(time.Second))
	}
	return nil
}

// Wait implements Limiter. The slot is reserved on entry, so callers in one bucket
// identify in the order they called Wait.
func (m *Memory) Wait(ctx context.Context, shardID int) error {
	if shardID < 0 {
		return fmt.Errorf("shard id %d is negative", shardID)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("waiting for identify window of shard %d: %w", shardID, err)
	}
	m.mu.Lock()
	now := m.now()
	m.refill(now)
	if m.limit.Remaining <= m.reserve {
		err := fmt.Errorf("%w: shard %d cannot identify: %d of %d session starts remain (%d kept in reserve) until %s",
			ErrBudgetExhausted, shardID, m.limit.Remaining, m.limit.Total, m.reserve, m.resetAt.Sub(now).Round(time.Second))
		m.mu.Unlock()
		return err
	}
	bucket := shardID % m.limit.MaxConcurrency
	slot := m.nextSlot[bucket]
	if slot.Before(now) {
		slot = now
	}
	m.nextSlot[bucket] = slot.Add(m.window)
	m.limit.Remaining--
	m.mu.Unlock()

	for wait := slot.Sub(now); ; {
		if wait > 0 {
			if err := sleepCtx(ctx, wait); err != nil {
				// The slot stays taken (the window is conservative), but the session start
				// was not used, so it goes back to the budget.
				m.mu.Lock()
				if m.limit.Remaining < m.limit.Total {
					m.limit.Remaining++
				}
				m.mu.Unlock()
				return fmt.Errorf("waiting for identify window of shard %d: %w", shardID, err)
			}
		}
		// A waiter woken late pushes the next grant of its bucket back, so grants are a
		// full window apart in fact, not only on the schedule.
		m.mu.Lock()
		now = m.now()
		earliest := m.lastGrant[bucket].Add(m.window)
		if !now.Before(earliest) {
			m.lastGrant[bucket] = now
			if next := now.Add(m.window); m.nextSlot[bucket].Before(next) {
				m.nextSlot[bucket] = next
			}
			m.mu.Unlock()
			return nil
		}
		m.mu.Unlock()
		wait = earliest.Sub(now)
	}
}

var _ Rearmer = (*Memory)(nil)

// Sent implements Rearmer.
func (m *Memory) Sent(_ context.Context, shardID int) error {
	if shardID < 0 {
		return fmt.Errorf("shard id %d is negative", shardID)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	bucket := shardID % m.limit.MaxConcurrency
	now := m.now()
	if now.After(m.lastGrant[bucket]) {
		m.lastGrant[bucket] = now
	}
	if next := now.Add(m.window); m.nextSlot[bucket].Before(next) {
		m.nextSlot[bucket] = next
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
