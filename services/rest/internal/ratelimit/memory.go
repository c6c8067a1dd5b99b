package ratelimit

import (
	"context"
	"math"
	"sync"
	"time"
)

// bucketIdle is how long a bucket is kept after its reset once nobody uses
// it; re-learning it later costs one probe.
const bucketIdle = 5 * time.Minute

// sweepEvery is the number of Acquire calls between sweeps of idle buckets.
const sweepEvery = 4096

// MemoryStore keeps ratelimit state in this process. The zero value is not
// usable; call NewMemoryStore.
type MemoryStore struct {
	now func() time.Time

	mu      sync.Mutex
	bots    map[string]*memBot
	invalid map[int64]int64 // invalid responses per slot (InvalidWindow/invalidSlots)
	calls   int
}

// memBot is the state of one bot token.
type memBot struct {
	routes  map[string]string // route key -> bucket hash
	buckets map[string]*bucketState
	// Global slots: answered requests hold theirs until a release time,
	// requests in flight until an answer (or a fallback expiry).
	globalDone     []time.Time
	globalInflight []time.Time
	globalUntil    time.Time            // a global 429 blocks the bot until then
	badUntil       time.Time            // the token was rejected until then
	badWebhooks    map[string]time.Time // major -> rejected until
	lastActivity   time.Time
}

// bucketState is one bucket. limit 0 and !unlimited means unknown.
type bucketState struct {
	limit      int
	remaining  int
	resetAt    time.Time
	window     time.Duration // longest reset_after seen: the window length
	resetID    int64
	fresh      bool // reset locally; no answer from the new window yet
	probeUntil time.Time
	unlimited  bool // answers carry no limit headers
	lastUsed   time.Time
}

// globalPoll is how long a request waits for a global slot held by
// requests still in flight. Answers in this process wake it at once (see
// Limiter.globalWake); the poll covers answers seen by other replicas.
const globalPoll = 20 * time.Millisecond

// pruneTimes drops the leading times not after now. Both global lists
// are appended in time order (now plus a constant), so they stay sorted
// and only their heads expire.
func pruneTimes(ts []time.Time, now time.Time) []time.Time {
	i := 0
	for i < len(ts) && !ts[i].After(now) {
		i++
	}
	if i == len(ts) {
		return ts[:0]
	}
	return ts[i:]
}

// invalidSlots is how many slots an invalid-request window is cut into.
const invalidSlots = 10

// NewMemoryStore returns an empty in-process store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{now: time.Now, bots: map[string]*memBot{}, invalid: map[int64]int64{}}
}

var _ Store = (*MemoryStore)(nil)

func (m *MemoryStore) bot(name string) *memBot {
	b := m.bots[name]
	if b == nil {
		b = &memBot{routes: map[string]string{}, buckets: map[string]*bucketState{}, badWebhooks: map[string]time.Time{}}
		m.bots[name] = b
	}
	return b
}

// bucketKey names the bucket of a route: its hash when known, else the
// route itself, always split by the major parameter.
func bucketKey(hash, route, major string) string {
	if hash != "" {
		return "h:" + hash + "|" + major
	}
	return "r:" + route + "|" + major
}

func (m *MemoryStore) invalidCount(now time.Time, window time.Duration) int64 {
	if window <= 0 {
		return 0
	}
	slotLen := window / invalidSlots
	cur := now.UnixNano() / int64(slotLen)
	var n int64
	for s, c := range m.invalid {
		if s > cur-invalidSlots {
			n += c
		} else {
			delete(m.invalid, s)
		}
	}
	return n
}

// Acquire implements Store.
func (m *MemoryStore) Acquire(_ context.Context, a Acquire) (Grant, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.calls%sweepEvery == 0 {
		m.sweep(now)
	}
	bot := m.bot(a.Bot)
	bot.lastActivity = now
	if now.Before(bot.badUntil) && !a.Route.WebhookToken {
		return Grant{Refused: true, Reason: ReasonBadToken, Wait: bot.badUntil.Sub(now)}, nil
	}
	if until, ok := bot.badWebhooks[a.Route.Major]; ok && a.Route.WebhookToken {
		if now.Before(until) {
			return Grant{Refused: true, Reason: ReasonBadWebhook, Wait: until.Sub(now)}, nil
		}
		delete(bot.badWebhooks, a.Route.Major)
	}
	if a.InvalidLimit > 0 && m.invalidCount(now, a.InvalidWindow) >= a.InvalidLimit {
		return Grant{Refused: true, Reason: ReasonInvalid, Wait: a.InvalidWindow / invalidSlots}, nil
	}
	key := bucketKey(bot.routes[a.Route.Key], a.Route.Key, a.Route.Major)
	b := bot.buckets[key]
	if b == nil {
		b = &bucketState{}
		bot.buckets[key] = b
	}
	b.lastUsed = now
	probe := false
	switch {
	case b.unlimited:
	case b.limit == 0:
		if now.Before(b.probeUntil) {
			return Grant{Wait: b.probeUntil.Sub(now), Reason: ReasonProbe}, nil
		}
		probe = true
	default:
		if !now.Before(b.resetAt) {
			if b.fresh && b.remaining <= 0 && now.Before(b.resetAt.Add(a.ProbeTTL)) {
				// The new window has not answered yet; resetting again
				// could overrun it if answers are slow.
				return Grant{Wait: a.ProbeTTL / 16, Reason: ReasonBucket}, nil
			}
			if !b.fresh || b.remaining <= 0 {
				b.remaining = b.limit
				b.resetAt = now.Add(b.window)
				b.fresh = true
			}
		}
		if b.remaining <= 0 {
			return Grant{Wait: b.resetAt.Sub(now), Reason: ReasonBucket}, nil
		}
	}
	if a.Global {
		if now.Before(bot.globalUntil) {
			return Grant{Wait: bot.globalUntil.Sub(now), Reason: ReasonGlobal}, nil
		}
		bot.globalDone = pruneTimes(bot.globalDone, now)
		bot.globalInflight = pruneTimes(bot.globalInflight, now)
		if len(bot.globalDone)+len(bot.globalInflight) >= a.GlobalLimit {
			wait := time.Duration(math.MaxInt64)
			if len(bot.globalInflight) > 0 {
				wait = globalPoll
			}
			if len(bot.globalDone) > 0 {
				wait = min(wait, bot.globalDone[0].Sub(now))
			}
			return Grant{Wait: max(wait, time.Microsecond), Reason: ReasonGlobal}, nil
		}
		bot.globalInflight = append(bot.globalInflight, now.Add(a.ProbeTTL))
	}
	if probe {
		b.probeUntil = now.Add(a.ProbeTTL)
	} else if !b.unlimited {
		b.remaining--
	}
	return Grant{}, nil
}

// Observe implements Store.
func (m *MemoryStore) Observe(_ context.Context, o Observation) error {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	bot := m.bot(o.Bot)
	if o.Invalid && o.InvalidWindow > 0 {
		m.invalid[now.UnixNano()/int64(o.InvalidWindow/invalidSlots)]++
	}
	if o.BadToken {
		bot.badUntil = now.Add(o.BadTTL)
	}
	if o.BadWebhook {
		bot.badWebhooks[o.Route.Major] = now.Add(o.BadTTL)
	}
	if o.Global {
		if len(bot.globalInflight) > 0 {
			bot.globalInflight = bot.globalInflight[1:]
		}
		bot.globalDone = append(bot.globalDone, now.Add(o.GlobalWindow))
	}
	if o.Global429 {
		if until := now.Add(o.RetryAfter); until.After(bot.globalUntil) {
			bot.globalUntil = until
		}
	}
	oldKey := bucketKey(bot.routes[o.Route.Key], o.Route.Key, o.Route.Major)
	b := bot.buckets[oldKey]
	if b == nil {
		b = &bucketState{lastUsed: now}
		bot.buckets[oldKey] = b
	}
	if o.Hash != "" && bot.routes[o.Route.Key] != o.Hash {
		// The route's bucket hash is now known: requests of every route
		// with this hash share one bucket from here on.
		bot.routes[o.Route.Key] = o.Hash
		newKey := bucketKey(o.Hash, o.Route.Key, o.Route.Major)
		if nb := bot.buckets[newKey]; nb != nil {
			nb.probeUntil = time.Time{}
			b = nb
		} else {
			bot.buckets[newKey] = b
		}
		delete(bot.buckets, oldKey)
	}
	b.observe(now, o)
	return nil
}

// observe updates one bucket from a response.
func (b *bucketState) observe(now time.Time, o Observation) {
	b.probeUntil = time.Time{}
	if o.Status == 0 {
		return
	}
	if o.HasLimit {
		b.unlimited = false
		b.limit = o.Limit
		if o.ResetAfter > b.window {
			b.window = o.ResetAfter
		}
		switch {
		case o.ResetID > b.resetID:
			// First answer from a newer server window.
			if b.fresh || !now.Before(b.resetAt) || b.resetID == 0 {
				if b.fresh {
					b.remaining = min(b.remaining, o.Remaining)
				} else {
					b.remaining = o.Remaining
				}
			} else {
				b.remaining = min(b.remaining, o.Remaining)
			}
			b.resetID = o.ResetID
			b.resetAt = now.Add(o.ResetAfter)
			b.fresh = false
		case o.ResetID == b.resetID && !b.fresh:
			b.remaining = min(b.remaining, o.Remaining)
		}
	} else if o.Status != 429 && o.Status < 500 && b.limit == 0 {
		// Answered without limit headers: the route has no bucket of
		// its own. A 5xx (often from a proxy in front of Discord) says
		// nothing about limits, so the next request probes again.
		b.unlimited = true
	}
	if o.Status == 429 && !o.Global429 && o.RetryAfter > 0 {
		b.remaining = 0
		b.fresh = false
		if until := now.Add(o.RetryAfter); until.After(b.resetAt) {
			b.resetAt = until
		}
		if b.limit == 0 {
			// A 429 without limit headers: wait it out, then probe again.
			b.unlimited = false
			b.probeUntil = now.Add(o.RetryAfter)
		}
	}
}

// sweep drops buckets and bots idle for long enough to have fully reset.
func (m *MemoryStore) sweep(now time.Time) {
	for name, bot := range m.bots {
		for k, b := range bot.buckets {
			if now.Sub(b.lastUsed) > bucketIdle && now.After(b.resetAt.Add(bucketIdle)) {
				delete(bot.buckets, k)
			}
		}
		for k, until := range bot.badWebhooks {
			if now.After(until) {
				delete(bot.badWebhooks, k)
			}
		}
		if len(bot.buckets) == 0 && len(bot.badWebhooks) == 0 && now.Sub(bot.lastActivity) > bucketIdle &&
			now.After(bot.badUntil) && now.After(bot.globalUntil) {
			delete(m.bots, name)
		}
	}
}

// Stats implements Store.
func (m *MemoryStore) Stats(context.Context) (StoreStats, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var s StoreStats
	for _, b := range m.bots {
		s.Buckets += len(b.buckets)
	}
	for _, c := range m.invalid {
		s.Invalid += c
	}
	return s, nil
}
