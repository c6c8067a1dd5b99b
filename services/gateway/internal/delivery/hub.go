package delivery

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Hub routes published events to groups and their members. It is safe for concurrent use.
type Hub struct {
	cfg Config

	// mu guards groups, list and closed. Publish holds it shared for the whole fan-out so a
	// group cannot appear or vanish while an event's reference count is being settled.
	// Lock order: Hub.mu, then group.mu, then shardTrack.mu.
	mu     sync.RWMutex
	groups map[string]*group
	list   []*group
	closed bool

	tracks sync.Map // int shard -> *shardTrack
	ord    atomic.Uint64
	tags   atomic.Uint64 // delivery tags, unique in the hub's lifetime

	duplicates atomic.Uint64

	// dropHook, when set (tests only), sees every event a group gives up, under the group's lock.
	dropHook func(group string, id EventID)
}

// NewHub returns a hub. Call Run to enforce group TTLs and ack timeouts.
func NewHub(cfg Config) *Hub {
	return &Hub{cfg: cfg.withDefaults(), groups: map[string]*group{}}
}

// record is one published event's hub-wide state, shared by the groups' entries.
type record struct {
	ev       *Event
	ord      uint64 // publish order, hub-wide
	track    *shardTrack
	epoch    uint64
	replayed bool
	refs     atomic.Int32 // groups that still owe an ack, drop or filter decision
	done     bool         // guarded by track.mu
}

// release settles one group's obligation; the last one marks the record done for the watermark.
func (r *record) release() {
	if r.refs.Add(-1) == 0 {
		r.track.markDone(r)
	}
}

// shardTrack follows one shard's outstanding events to compute its watermark.
type shardTrack struct {
	mu      sync.Mutex
	epoch   uint64
	highest uint64    // highest sequence published (or restored) in this session
	pending []*record // outstanding records of this epoch in sequence order; front may be done
	// replayedUpTo: sequences at or below it were received by an earlier gateway instance
	// and may have been delivered already; their deliveries are flagged as redelivered.
	replayedUpTo uint64
}

func (t *shardTrack) markDone(r *record) {
	t.mu.Lock()
	r.done = true
	t.trim()
	t.mu.Unlock()
}

func (t *shardTrack) trim() {
	i := 0
	for i < len(t.pending) && t.pending[i].done {
		t.pending[i] = nil
		i++
	}
	t.pending = t.pending[i:]
}

func (t *shardTrack) watermark() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.trim()
	if len(t.pending) == 0 {
		return t.highest
	}
	return t.pending[0].ev.ID.Seq - 1
}

func (h *Hub) track(shard int) *shardTrack {
	if t, ok := h.tracks.Load(shard); ok {
		return t.(*shardTrack)
	}
	t, _ := h.tracks.LoadOrStore(shard, &shardTrack{})
	return t.(*shardTrack)
}

// StartSession tells the hub that a shard identified afresh: sequences restart at 1, and the
// previous session's outstanding events no longer count toward the watermark (Discord cannot
// replay them anyway). They are still delivered. Call it before publishing the READY.
func (h *Hub) StartSession(shard int) {
	t := h.track(shard)
	t.mu.Lock()
	t.epoch++
	clear(t.pending)
	t.pending = nil
	t.highest = 0
	t.replayedUpTo = 0
	t.mu.Unlock()
}

// ResetSession starts a new session of shard, like StartSession, after the old one was
// lost (invalidated, or not resumable): Discord will not replay what it sent the old
// session after the last event received, so every group is told with a
// GapReasonSessionReset gap starting after that sequence. Events of the old session already
// published stay buffered and are delivered as usual.
func (h *Hub) ResetSession(shard int) {
	t := h.track(shard)
	t.mu.Lock()
	last := t.highest
	t.mu.Unlock()
	h.StartSession(shard)
	gap := Gap{Shard: shard, FirstSeq: last + 1, Reason: GapReasonSessionReset}
	h.mu.RLock()
	list := slices.Clone(h.list)
	h.mu.RUnlock()
	for _, g := range list {
		g.mu.Lock()
		g.announceGap(gap)
		g.mu.Unlock()
	}
}

// RestoreSession primes a shard's tracking after a gateway restart that resumes a session:
// seq is the sequence the session resumes from (everything at or below it was handled) and
// receivedUpTo the highest sequence the previous instance had received; replayed events up
// to it are flagged as redelivered because a consumer may have seen them.
func (h *Hub) RestoreSession(shard int, seq, receivedUpTo uint64) {
	t := h.track(shard)
	t.mu.Lock()
	t.epoch++
	clear(t.pending)
	t.pending = nil
	t.highest = seq
	t.replayedUpTo = receivedUpTo
	t.mu.Unlock()
}

// EndReplay ends the flagging of a restored session's replay: call it when the shard
// receives RESUMED, which Discord sends after the replayed events. A session taken over
// from a pod that died is restored with receivedUpTo at its maximum, because nobody knows
// what the dead pod received; everything Discord replays is then flagged as redelivered,
// and EndReplay stops the flagging where the replay ends.
func (h *Hub) EndReplay(shard int) {
	t := h.track(shard)
	t.mu.Lock()
	t.replayedUpTo = min(t.replayedUpTo, t.highest)
	t.mu.Unlock()
}

// Watermark returns the shard's delivery watermark and whether the hub knows the shard.
func (h *Hub) Watermark(shard int) (uint64, bool) {
	t, ok := h.tracks.Load(shard)
	if !ok {
		return 0, false
	}
	return t.(*shardTrack).watermark(), true
}

// Duplicates counts events refused by Publish because their sequence was already published
// in the current session (Discord replaying after a resume from the watermark).
func (h *Hub) Duplicates() uint64 { return h.duplicates.Load() }

// Publish offers an event to every group. It never waits for a consumer: each group
// buffers it (or drops its oldest event to make room). It returns false when the event is
// a duplicate of one already published in the shard's current session, or the hub is
// closed. Publish keeps ev; the caller must not modify it afterwards.
func (h *Hub) Publish(ev *Event) bool {
	t := h.track(ev.ID.Shard)
	rec := &record{ev: ev, track: t}

	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.closed {
		return false
	}
	n := len(h.list)
	t.mu.Lock()
	if ev.ID.Seq <= t.highest {
		t.mu.Unlock()
		h.duplicates.Add(1)
		return false
	}
	t.highest = ev.ID.Seq
	rec.epoch = t.epoch
	rec.replayed = ev.ID.Seq <= t.replayedUpTo || ev.MaybeDelivered
	rec.ord = h.ord.Add(1)
	rec.refs.Store(int32(n))
	if n > 0 {
		t.pending = append(t.pending, rec)
	}
	t.mu.Unlock()

	for _, g := range h.list {
		g.offer(rec)
	}
	return true
}

// Declare creates a durable group: it buffers events before its first member joins and
// never expires, so events from the gateway's start on reach it (the state cache's group,
// or a bot's main group). Declaring an existing group makes it durable. The filter of a
// declared group is all events until a member sets its own.
func (h *Hub) Declare(group string) error {
	if !validGroupName(group) {
		return fmt.Errorf("%w: group name %q must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-'", ErrInvalid, group)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return ErrHubClosed
	}
	g, ok := h.groups[group]
	if !ok {
		g = newGroup(h, group, groupFilter{})
		h.groups[group] = g
		h.list = append(h.list, g)
	}
	g.mu.Lock()
	g.durable = true
	g.mu.Unlock()
	return nil
}

// JoinRequest describes a member joining a group.
type JoinRequest struct {
	// Group names the group: 1 to 64 characters of [A-Za-z0-9._-].
	Group string
	// MemberID names the member (at most 128 bytes); empty assigns one.
	MemberID string
	// Replace lets the join take over a live member with the same id (its unacked events are
	// redelivered), so a restarted worker can reclaim its id before its old stream is known
	// dead. Without it such a join fails with ErrMemberExists.
	Replace bool
	// Events filters by event name; empty means every event.
	Events []string
	// Shards filters by shard; empty means every shard.
	Shards []int
	// Peer describes the member's connection, for status.
	Peer string
	// MaxInFlight is the member's credit: how many unacked events it may hold (1..Config.MaxInFlight).
	MaxInFlight int
}

var memberSeq atomic.Uint64

// Join adds a member to a group, creating the group if needed.
func (h *Hub) Join(req JoinRequest) (*Member, error) {
	if !validGroupName(req.Group) {
		return nil, fmt.Errorf("%w: group name %q must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-'", ErrInvalid, req.Group)
	}
	if req.MaxInFlight < 1 || req.MaxInFlight > h.cfg.MaxInFlight {
		return nil, fmt.Errorf("%w: max in flight must be between 1 and %d, got %d", ErrInvalid, h.cfg.MaxInFlight, req.MaxInFlight)
	}
	if len(req.MemberID) > 128 {
		return nil, fmt.Errorf("%w: member id must be at most 128 bytes", ErrInvalid)
	}
	id := req.MemberID
	if id == "" {
		id = fmt.Sprintf("m-%d-%d", time.Now().UnixNano(), memberSeq.Add(1))
	}
	filter := groupFilter{names: normalizeFilter(req.Events), shards: normalizeFilter(req.Shards)}

	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, ErrHubClosed
	}
	g, ok := h.groups[req.Group]
	if !ok {
		g = newGroup(h, req.Group, filter)
		h.groups[req.Group] = g
		h.list = append(h.list, g)
	}
	// Holding h.mu across the join keeps the sweeper from expiring g meanwhile.
	m, err := g.join(id, req, filter)
	h.mu.Unlock()
	return m, err
}

func normalizeFilter[T cmp.Ordered](values []T) []T {
	if len(values) == 0 {
		return nil
	}
	f := slices.Clone(values)
	slices.Sort(f)
	return slices.Compact(f)
}

func validGroupName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// GroupStats is a snapshot of one group, for status RPCs and metrics.
type GroupStats struct {
	Name             string
	Events           []string // the event name filter; empty = all
	Shards           []int    // the shard filter; empty = all
	Members          []MemberStats
	Buffered         int
	BufferedBytes    int64
	OldestAge        time.Duration // age of the oldest buffered event; 0 when empty
	InFlight         int
	Delivered        uint64 // first deliveries
	Redelivered      uint64
	Acked            uint64
	Lost             uint64
	Filtered         uint64
	Rejected         uint64 // nacked without requeue
	Exhausted        uint64 // dropped after Config.MaxAttempts deliveries without an ack
	MaxBuffered      int
	MaxBufferedBytes int64
	EmptySince       time.Time // zero while members are live
}

// MemberStats is a snapshot of one member.
type MemberStats struct {
	ID          string
	MaxInFlight int
	InFlight    int
	Ready       int // keys with events waiting for this member
	ConnectedAt time.Time
	Peer        string
}

// Groups returns a snapshot of every group, sorted by name.
func (h *Hub) Groups() []GroupStats {
	h.mu.RLock()
	list := slices.Clone(h.list)
	h.mu.RUnlock()
	now := time.Now()
	out := make([]GroupStats, 0, len(list))
	for _, g := range list {
		out = append(out, g.stats(now))
	}
	slices.SortFunc(out, func(a, b GroupStats) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}

// Run enforces group TTLs and ack timeouts until ctx is done, then returns nil.
func (h *Hub) Run(ctx context.Context) error {
	tick := time.NewTicker(h.cfg.SweepInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick.C:
			h.sweep(now)
		}
	}
}

// sweep evicts members past their ack timeout and deletes groups empty for longer than the TTL.
func (h *Hub) sweep(now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	kept := h.list[:0]
	for _, g := range h.list {
		g.evictStuck(now)
		if g.expire(now) {
			delete(h.groups, g.name)
			continue
		}
		kept = append(kept, g)
	}
	clear(h.list[len(kept):])
	h.list = kept
}

// Close ends every member with ErrHubClosed and refuses further joins and publishes.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	for _, g := range h.list {
		g.closeAll(ErrHubClosed)
	}
}

// MaxInFlight returns the largest credit a member may grant (Config.MaxInFlight).
func (h *Hub) MaxInFlight() int { return h.cfg.MaxInFlight }
