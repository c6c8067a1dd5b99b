package delivery

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// entry is one event's state inside one group. While buffered it sits in the group's
// age-ordered list and at its key's queue; while in flight it sits in its member's map.
type entry struct {
	rec        *record
	key        uint64
	size       int64
	prev, next *entry // group buffer list, oldest first
	attempt    uint32
	member     *Member // in flight on this member; nil while buffered
	tag        uint64
	sentAt     time.Time
}

// keyState is one routing key's state inside a group.
type keyState struct {
	key      uint64
	q        []*entry // buffered events of the key, in delivery order
	inflight int
	owner    *Member // member holding the in-flight events; nil when none
	readyIn  bool    // queued in some member's ready ring
}

type group struct {
	hub  *Hub
	name string

	mu         sync.Mutex
	filter     groupFilter
	nameSet    map[string]struct{} // nil = every event
	shardSet   map[int]struct{}    // nil = every shard
	members    map[string]*Member
	live       []*Member // sorted by id
	keys       map[uint64]*keyState
	head, tail *entry
	count      int
	bytes      int64
	orphanGaps []Gap // gaps to announce to the next member, when none was live
	emptySince time.Time
	durable    bool // declared: never expires

	delivered, redelivered, acked, lost, filtered, rejected, exhausted uint64
}

// groupFilter is what a group subscribes to: sorted, deduplicated; nil means all.
type groupFilter struct {
	names  []string
	shards []int
}

func (f groupFilter) equal(o groupFilter) bool {
	return slices.Equal(f.names, o.names) && slices.Equal(f.shards, o.shards)
}

func (f groupFilter) String() string {
	s := "all events"
	if len(f.names) > 0 {
		s = "events [" + strings.Join(f.names, ",") + "]"
	}
	if len(f.shards) > 0 {
		s += fmt.Sprintf(" of shards %v", f.shards)
	}
	return s
}

func newGroup(h *Hub, name string, filter groupFilter) *group {
	g := &group{hub: h, name: name, members: map[string]*Member{}, keys: map[uint64]*keyState{}, emptySince: time.Now()}
	g.setFilter(filter)
	return g
}

func (g *group) setFilter(f groupFilter) {
	g.filter = f
	g.nameSet, g.shardSet = nil, nil
	if f.names != nil {
		g.nameSet = make(map[string]struct{}, len(f.names))
		for _, n := range f.names {
			g.nameSet[n] = struct{}{}
		}
	}
	if f.shards != nil {
		g.shardSet = make(map[int]struct{}, len(f.shards))
		for _, s := range f.shards {
			g.shardSet[s] = struct{}{}
		}
	}
}

func (g *group) wants(ev *Event) bool {
	if g.nameSet != nil {
		if _, ok := g.nameSet[ev.Name]; !ok {
			return false
		}
	}
	if g.shardSet != nil {
		if _, ok := g.shardSet[ev.ID.Shard]; !ok {
			return false
		}
	}
	return true
}

// offer buffers rec for the group, or settles it at once when the filter excludes it.
func (g *group) offer(rec *record) {
	g.mu.Lock()
	if !g.wants(rec.ev) {
		g.filtered++
		g.mu.Unlock()
		rec.release()
		return
	}
	e := &entry{rec: rec, key: rec.ev.routingKey(), size: int64(len(rec.ev.Payload))}
	if !g.makeRoom(e.size) {
		g.recordLoss(e)
		g.mu.Unlock()
		rec.release()
		return
	}
	g.pushBack(e)
	ks := g.keys[e.key]
	if ks == nil {
		ks = &keyState{key: e.key}
		g.keys[e.key] = ks
	}
	ks.q = append(ks.q, e)
	g.schedule(ks)
	g.mu.Unlock()
}

// makeRoom drops the oldest buffered events until one of size fits. It returns false when
// the event alone exceeds the byte bound.
func (g *group) makeRoom(size int64) bool {
	cfg := &g.hub.cfg
	if size > cfg.MaxBufferedBytes {
		return false
	}
	for g.head != nil && (g.count+1 > cfg.MaxBufferedEvents || g.bytes+size > cfg.MaxBufferedBytes) {
		g.dropOldest()
	}
	return true
}

// enforceBounds drops the oldest events while the buffer is over its bounds (after requeues).
func (g *group) enforceBounds() {
	cfg := &g.hub.cfg
	for g.head != nil && (g.count > cfg.MaxBufferedEvents || g.bytes > cfg.MaxBufferedBytes) {
		g.dropOldest()
	}
}

func (g *group) dropOldest() {
	e := g.head
	g.unlink(e)
	ks := g.keys[e.key]
	// The buffer's head is the head of its key's queue (requeue keeps each key's events in
	// queue order in the list too); the search is only defensive.
	if i := slices.Index(ks.q, e); i >= 0 {
		ks.q[i] = nil
		ks.q = slices.Delete(ks.q, i, i+1)
	}
	g.maybeForget(ks)
	g.recordLoss(e)
	e.rec.release()
}

// recordLoss counts an event dropped from the buffer and announces it as a gap.
func (g *group) recordLoss(e *entry) {
	g.lost++
	if g.hub.dropHook != nil {
		g.hub.dropHook(g.name, e.rec.ev.ID)
	}
	g.announceLoss(e.rec.ev.ID, GapReasonOverflow)
}

// announceLoss folds one lost event into every live member's pending gaps (or the next
// member's, when none is live).
func (g *group) announceLoss(id EventID, reason string) {
	if len(g.live) == 0 {
		g.orphanGaps = mergeGap(g.orphanGaps, id, reason)
		return
	}
	for _, m := range g.live {
		m.gaps = mergeGap(m.gaps, id, reason)
		m.signal()
	}
}

// announceGap adds gap as is to every live member's pending gaps (or the next member's).
func (g *group) announceGap(gap Gap) {
	if len(g.live) == 0 {
		g.orphanGaps = append(g.orphanGaps, gap)
		return
	}
	for _, m := range g.live {
		m.gaps = append(m.gaps, gap)
		m.signal()
	}
}

// mergeGap folds one lost event into the pending announcements, one Gap per shard and reason.
func mergeGap(gaps []Gap, id EventID, reason string) []Gap {
	for i := range gaps {
		if gaps[i].Shard == id.Shard && gaps[i].Reason == reason && gaps[i].Count > 0 {
			gaps[i].FirstSeq = min(gaps[i].FirstSeq, id.Seq)
			gaps[i].LastSeq = max(gaps[i].LastSeq, id.Seq)
			gaps[i].Count++
			return gaps
		}
	}
	return append(gaps, Gap{Shard: id.Shard, FirstSeq: id.Seq, LastSeq: id.Seq, Count: 1, Reason: reason})
}

// exhaust drops an in-flight entry (already out of its member's map) that ran out of
// attempts: it is settled for the watermark, counted and announced as a gap.
func (g *group) exhaust(e *entry, attempts uint32) {
	e.member = nil
	if ks := g.keys[e.key]; ks != nil {
		ks.inflight--
		if ks.inflight == 0 {
			ks.owner = nil
			g.schedule(ks)
			g.maybeForget(ks)
		}
	}
	g.exhausted++
	if g.hub.dropHook != nil {
		g.hub.dropHook(g.name, e.rec.ev.ID)
	}
	g.hub.cfg.Logger.Warn("dropping an event delivered too many times without an ack",
		"group", g.name, "shard", e.rec.ev.ID.Shard, "seq", e.rec.ev.ID.Seq, "event", e.rec.ev.Name,
		"attempts", attempts, "max_attempts", g.hub.cfg.MaxAttempts)
	g.announceLoss(e.rec.ev.ID, GapReasonRetriesExhausted)
	e.rec.release()
}

func (g *group) pushBack(e *entry) {
	e.prev, e.next = g.tail, nil
	if g.tail != nil {
		g.tail.next = e
	} else {
		g.head = e
	}
	g.tail = e
	g.count++
	g.bytes += e.size
}

func (g *group) pushFront(e *entry) {
	e.prev, e.next = nil, g.head
	if g.head != nil {
		g.head.prev = e
	} else {
		g.tail = e
	}
	g.head = e
	g.count++
	g.bytes += e.size
}

// insertAfter links e into the buffer list right after at, which is in the list.
func (g *group) insertAfter(at, e *entry) {
	e.prev, e.next = at, at.next
	if at.next != nil {
		at.next.prev = e
	} else {
		g.tail = e
	}
	at.next = e
	g.count++
	g.bytes += e.size
}

func (g *group) unlink(e *entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		g.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		g.tail = e.prev
	}
	e.prev, e.next = nil, nil
	g.count--
	g.bytes -= e.size
}

// maybeForget deletes a key that holds nothing, keeping the map bounded by the buffer.
func (g *group) maybeForget(ks *keyState) {
	if len(ks.q) == 0 && ks.inflight == 0 && !ks.readyIn {
		delete(g.keys, ks.key)
	}
}

// pick returns the live member with the highest rendezvous weight for key.
func (g *group) pick(key uint64) *Member {
	if len(g.live) == 1 {
		return g.live[0]
	}
	var best *Member
	var bestW uint64
	for _, m := range g.live {
		if w := mix64(key ^ m.seed); best == nil || w > bestW {
			best, bestW = m, w
		}
	}
	return best
}

// mix64 is the splitmix64 finalizer: a cheap, well-spread 64-bit hash.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// hashString is FNV-1a, to seed a member's rendezvous weights from its id.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return mix64(h)
}

// schedule puts a key with buffered events in its owner's ready ring, unless the key must
// wait: its events are in flight on another member than the one that owns it now.
func (g *group) schedule(ks *keyState) {
	if ks.readyIn || len(ks.q) == 0 || len(g.live) == 0 {
		return
	}
	t := g.pick(ks.key)
	if ks.inflight > 0 && ks.owner != t {
		return // rescheduled by the ack (or departure) that brings inflight to zero
	}
	t.ready = append(t.ready, ks)
	ks.readyIn = true
	t.signal()
}

// reschedule recomputes every key's owner after the live members changed.
func (g *group) reschedule() {
	for _, m := range g.live {
		for i, ks := range m.ready {
			ks.readyIn = false
			m.ready[i] = nil
		}
		m.ready = m.ready[:0]
	}
	// Keys in the age order of their oldest buffered event, not in map order: the oldest
	// waiting keys are served first, and the outcome does not vary from run to run.
	for e := g.head; e != nil; e = e.next {
		g.schedule(g.keys[e.key])
	}
	for _, ks := range g.keys {
		g.maybeForget(ks)
	}
}

func (g *group) join(id string, req JoinRequest, filter groupFilter) (*Member, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	old := g.members[id]
	if old != nil && !req.Replace {
		return nil, fmt.Errorf("%w: member %q of group %q is connected; use another member id, or wait for the old stream to end", ErrMemberExists, id, g.name)
	}
	liveOthers := len(g.live)
	if old != nil {
		liveOthers--
	}
	if liveOthers > 0 && !filter.equal(g.filter) {
		return nil, fmt.Errorf("%w: group %q has live members subscribed to %s, this subscription asks for %s; use the same filter or another group",
			ErrFilterConflict, g.name, g.filter, filter)
	}
	if old != nil {
		g.leave(old, ErrReplaced)
	}
	if liveOthers == 0 {
		// The group's filter follows its live members: a redeploy may change it.
		g.setFilter(filter)
	}
	m := &Member{
		g:           g,
		id:          id,
		seed:        hashString(id),
		maxInFlight: req.MaxInFlight,
		peer:        req.Peer,
		connectedAt: time.Now(),
		inflight:    map[uint64]*entry{},
		notify:      make(chan struct{}, 1),
		done:        make(chan struct{}),
		gaps:        g.orphanGaps,
	}
	g.orphanGaps = nil
	g.members[id] = m
	i, _ := slices.BinarySearchFunc(g.live, id, func(a *Member, id string) int { return strings.Compare(a.id, id) })
	g.live = slices.Insert(g.live, i, m)
	g.emptySince = time.Time{}
	g.reschedule()
	if len(m.gaps) > 0 {
		m.signal()
	}
	return m, nil
}

// leave removes m and requeues its unacked events, flagged for redelivery, ahead of later
// events of their keys.
func (g *group) leave(m *Member, err error) {
	if m.closed {
		return
	}
	m.closed = true
	m.err = err
	close(m.done)
	if g.members[m.id] == m {
		delete(g.members, m.id)
	}
	if i := slices.Index(g.live, m); i >= 0 {
		g.live = slices.Delete(g.live, i, i+1)
	}
	for i, ks := range m.ready {
		ks.readyIn = false
		m.ready[i] = nil
	}
	m.ready = nil
	m.gaps = nil

	held := make([]*entry, 0, len(m.inflight))
	for _, e := range m.inflight {
		held = append(held, e)
	}
	clear(m.inflight)
	g.requeue(held)
	if len(g.live) == 0 {
		g.emptySince = time.Now()
	}
	g.reschedule()
}

// requeue puts in-flight entries (already removed from their member's map) back into their
// keys' queues for redelivery, each at its publish-order place: ahead of the key's later
// events, behind any earlier event of the key already requeued (a member may nack or leave
// with an older event of the key requeued and not yet taken back). Inserting at the front
// instead would deliver a later event of the key before an earlier one.
func (g *group) requeue(held []*entry) {
	// Newest first, so the events that go to the front end up oldest first, and the result
	// does not depend on the order held came in (a member's in-flight map).
	slices.SortFunc(held, func(a, b *entry) int { return cmpUint64(b.rec.ord, a.rec.ord) })
	for _, e := range held {
		attempts := e.attempt
		if e.rec.replayed {
			attempts++ // as Next counts it
		}
		if int(attempts) >= g.hub.cfg.MaxAttempts {
			g.exhaust(e, attempts)
			continue
		}
		e.member = nil
		ks := g.keys[e.key]
		i, _ := slices.BinarySearchFunc(ks.q, e.rec.ord, func(x *entry, ord uint64) int { return cmpUint64(x.rec.ord, ord) })
		// The buffer list keeps each key's events in queue order (so its head is the head of
		// its key's queue): right after the key's previous buffered event, else at the front.
		if i > 0 {
			g.insertAfter(ks.q[i-1], e)
		} else {
			g.pushFront(e)
		}
		ks.q = slices.Insert(ks.q, i, e)
		ks.inflight--
		if ks.inflight == 0 {
			ks.owner = nil
		}
	}
	g.enforceBounds()
}

func cmpUint64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// evictStuck ends members that held an event unacked past the ack timeout.
func (g *group) evictStuck(now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	limit := now.Add(-g.hub.cfg.AckTimeout)
	for _, m := range slices.Clone(g.live) {
		for _, e := range m.inflight {
			if e.sentAt.Before(limit) {
				g.hub.cfg.Logger.Warn("evicting a member that stopped acking",
					"group", g.name, "member", m.id, "shard", e.rec.ev.ID.Shard, "seq", e.rec.ev.ID.Seq,
					"unacked_for", now.Sub(e.sentAt).Round(time.Millisecond), "in_flight", len(m.inflight))
				g.leave(m, ErrAckTimeout)
				break
			}
		}
	}
}

// expire reports whether the group has been without members past its TTL; if so it drops
// its buffer (counted as lost) so the watermark moves on.
func (g *group) expire(now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.durable || len(g.live) > 0 || g.emptySince.IsZero() || now.Sub(g.emptySince) < g.hub.cfg.GroupTTL {
		return false
	}
	n := g.count
	for g.head != nil {
		g.dropOldest()
	}
	g.hub.cfg.Logger.Warn("group expired without members", "group", g.name,
		"ttl", g.hub.cfg.GroupTTL, "lost_events", n)
	return true
}

func (g *group) closeAll(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, m := range slices.Clone(g.live) {
		g.leave(m, err)
	}
}

func (g *group) stats(now time.Time) GroupStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := GroupStats{
		Name:             g.name,
		Events:           slices.Clone(g.filter.names),
		Shards:           slices.Clone(g.filter.shards),
		Rejected:         g.rejected,
		Exhausted:        g.exhausted,
		MaxBuffered:      g.hub.cfg.MaxBufferedEvents,
		MaxBufferedBytes: g.hub.cfg.MaxBufferedBytes,
		Buffered:         g.count,
		BufferedBytes:    g.bytes,
		Delivered:        g.delivered,
		Redelivered:      g.redelivered,
		Acked:            g.acked,
		Lost:             g.lost,
		Filtered:         g.filtered,
		EmptySince:       g.emptySince,
	}
	if g.head != nil {
		s.OldestAge = now.Sub(g.head.rec.ev.ReceivedAt)
	}
	for _, m := range g.live {
		s.InFlight += len(m.inflight)
		s.Members = append(s.Members, MemberStats{ID: m.id, MaxInFlight: m.maxInFlight, InFlight: len(m.inflight), Ready: len(m.ready), ConnectedAt: m.connectedAt, Peer: m.peer})
	}
	return s
}
