package delivery

import (
	"context"
	"fmt"
	"time"
)

// Member is one consumer in a group. Next and Ack may be called from different goroutines.
type Member struct {
	g           *group
	id          string
	seed        uint64
	peer        string
	connectedAt time.Time

	// Guarded by g.mu.
	maxInFlight int
	inflight    map[uint64]*entry // by delivery tag
	ready       []*keyState       // keys this member owns with buffered events, round robin
	gaps        []Gap
	closed      bool
	err         error

	notify chan struct{} // capacity 1: "something may be ready"
	done   chan struct{} // closed when the member leaves
}

// ID returns the member's id (assigned by the hub when the join request left it empty).
func (m *Member) ID() string { return m.id }

// String returns the member's id, for logs.
func (m *Member) String() string { return m.id }

// Group returns the member's group name.
func (m *Member) Group() string { return m.g.name }

// Done is closed when the member has left (Close, replacement, eviction or hub close).
func (m *Member) Done() <-chan struct{} { return m.done }

// Err says why the member left: nil after Close, else ErrReplaced, ErrAckTimeout or ErrHubClosed.
func (m *Member) Err() error {
	m.g.mu.Lock()
	defer m.g.mu.Unlock()
	return m.err
}

func (m *Member) signal() {
	select {
	case m.notify <- struct{}{}:
	default:
	}
}

// Notify returns a channel that receives when deliveries or gaps may have become available;
// pair it with TryNext in a select loop that also waits on other things.
func (m *Member) Notify() <-chan struct{} { return m.notify }

// TryNext is Next without waiting: it returns what is available now, possibly nothing.
func (m *Member) TryNext(buf []Item, limit int) ([]Item, error) {
	return m.take(buf[:0], max(limit, 1))
}

// Next waits until gaps or deliveries are available within the member's credit and returns
// up to limit of them, appended to buf[:0]. Gaps come first. It returns ctx.Err() when ctx
// ends and an error wrapping ErrMemberClosed (or the eviction reason) once the member left.
func (m *Member) Next(ctx context.Context, buf []Item, limit int) ([]Item, error) {
	if limit < 1 {
		limit = 1
	}
	for {
		items, err := m.take(buf[:0], limit)
		if err != nil || len(items) > 0 {
			return items, err
		}
		select {
		case <-ctx.Done():
			return buf[:0], ctx.Err()
		case <-m.done:
		case <-m.notify:
		}
	}
}

func (m *Member) take(items []Item, limit int) ([]Item, error) {
	g := m.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if m.closed {
		if m.err != nil {
			return items, fmt.Errorf("%w: %w", ErrMemberClosed, m.err)
		}
		return items, ErrMemberClosed
	}
	for len(m.gaps) > 0 && len(items) < limit {
		gap := m.gaps[0]
		m.gaps = m.gaps[1:]
		items = append(items, Item{Gap: &gap})
	}
	if len(m.gaps) == 0 {
		m.gaps = nil
	}
	var now time.Time
	// The ready ring is consumed from next and compacted once at the end, so its backing
	// array is kept: slicing it from the front would drop its capacity and make the next
	// schedule allocate, once per event at low rates.
	next := 0
	for len(items) < limit && len(m.inflight) < m.maxInFlight && next < len(m.ready) {
		ks := m.ready[next]
		m.ready[next] = nil
		next++
		ks.readyIn = false
		if len(ks.q) == 0 || (ks.inflight > 0 && ks.owner != m) {
			// Emptied by overflow drops since it was queued; or, defensively, owned elsewhere.
			g.maybeForget(ks)
			continue
		}
		e := ks.q[0]
		ks.q[0] = nil
		if len(ks.q) == 1 {
			ks.q = ks.q[:0] // drained: keep the backing array for the key's next event
		} else {
			ks.q = ks.q[1:]
		}
		g.unlink(e)
		if now.IsZero() {
			now = time.Now()
		}
		e.tag = g.hub.tags.Add(1)
		e.attempt++
		e.member = m
		e.sentAt = now
		m.inflight[e.tag] = e
		ks.inflight++
		ks.owner = m
		if len(ks.q) > 0 {
			m.ready = append(m.ready, ks)
			ks.readyIn = true
		}
		d := Delivery{Event: e.rec.ev, Tag: e.tag, Attempt: e.attempt}
		if e.rec.replayed {
			d.Attempt++
		}
		d.Redelivered = d.Attempt > 1
		if d.Redelivered {
			g.redelivered++
		} else {
			g.delivered++
		}
		items = append(items, Item{Delivery: d})
	}
	if next > 0 {
		n := copy(m.ready, m.ready[next:])
		clear(m.ready[n:])
		m.ready = m.ready[:n]
	}
	return items, nil
}

// Ack settles the deliveries with the given tags and returns how many were in flight on
// this member; unknown tags (already acked, or from before a redelivery) are ignored.
func (m *Member) Ack(tags ...uint64) (int, error) {
	return m.settle(tags, &m.g.acked)
}

// Nack gives deliveries back. With Requeue they are delivered again, ahead of later events of
// their keys, to the member that owns each key (this one, unless membership changed), with
// their attempt incremented; with Reject they are dropped, counted as rejected, and no longer
// hold the watermark. It returns how many tags were in flight on this member.
func (m *Member) Nack(requeue bool, tags ...uint64) (int, error) {
	if !requeue {
		return m.settle(tags, &m.g.rejected)
	}
	g := m.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if m.closed {
		return 0, ErrMemberClosed
	}
	var held []*entry
	for _, tag := range tags {
		if e, ok := m.inflight[tag]; ok {
			delete(m.inflight, tag)
			held = append(held, e)
		}
	}
	g.requeue(held)
	for _, e := range held {
		if ks := g.keys[e.key]; ks != nil {
			g.schedule(ks)
		}
	}
	// Like an ack, a nack returns credit: wake the member even when the requeued keys were
	// already in its ready ring (schedule only signals when it adds a key).
	if len(held) > 0 && len(m.ready) > 0 {
		m.signal()
	}
	return len(held), nil
}

// settle ends deliveries for good (ack or reject), counting them in counter.
func (m *Member) settle(tags []uint64, counter *uint64) (int, error) {
	g := m.g
	g.mu.Lock()
	if m.closed {
		g.mu.Unlock()
		return 0, ErrMemberClosed
	}
	var done []*record
	for _, tag := range tags {
		e, ok := m.inflight[tag]
		if !ok {
			continue
		}
		delete(m.inflight, tag)
		e.member = nil
		ks := g.keys[e.key]
		ks.inflight--
		if ks.inflight == 0 {
			ks.owner = nil
			g.schedule(ks)
			g.maybeForget(ks)
		}
		*counter++
		done = append(done, e.rec)
	}
	if len(done) > 0 && len(m.ready) > 0 {
		m.signal()
	}
	g.mu.Unlock()
	for _, r := range done {
		r.release()
	}
	return len(done), nil
}

// SetMaxInFlight changes the member's credit (1..Config.MaxInFlight). Lowering it below the
// events already in flight only stops new deliveries until acks bring it back under.
func (m *Member) SetMaxInFlight(n int) error {
	g := m.g
	if n < 1 || n > g.hub.cfg.MaxInFlight {
		return fmt.Errorf("%w: max in flight must be between 1 and %d, got %d", ErrInvalid, g.hub.cfg.MaxInFlight, n)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if m.closed {
		return ErrMemberClosed
	}
	m.maxInFlight = n
	m.signal()
	return nil
}

// MaxInFlight returns the member's current credit.
func (m *Member) MaxInFlight() int {
	m.g.mu.Lock()
	defer m.g.mu.Unlock()
	return m.maxInFlight
}

// Close removes the member from its group; its unacked events are redelivered to the others
// (or kept for the next member while the group lives).
func (m *Member) Close() {
	m.g.mu.Lock()
	defer m.g.mu.Unlock()
	m.g.leave(m, nil)
}
