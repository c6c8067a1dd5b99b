package delivery

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

type evState int

const (
	stBuffered evState = iota
	stInFlight
	stRequeued
	stAcked
	stLost
)

func (s evState) String() string {
	return [...]string{"buffered", "in flight", "requeued", "acked", "lost"}[s]
}

type modelEvent struct {
	ev  *Event
	ord int
}

type modelStatus struct {
	state  evState
	holder *Member
}

// model mirrors what the hub must do, event by event, and checks every delivery against it.
type model struct {
	t       *testing.T
	events  []modelEvent
	filters map[string]map[string]bool // group -> accepted names (nil = all)
	status  map[string]map[EventID]*modelStatus
	byKey   map[string]map[uint64][]*modelEvent
	credit  map[*Member]int
	held    map[*Member]int
}

func newModel(t *testing.T, filters map[string][]string) *model {
	md := &model{t: t, filters: map[string]map[string]bool{}, status: map[string]map[EventID]*modelStatus{},
		byKey: map[string]map[uint64][]*modelEvent{}, credit: map[*Member]int{}, held: map[*Member]int{}}
	for g, names := range filters {
		md.status[g] = map[EventID]*modelStatus{}
		md.byKey[g] = map[uint64][]*modelEvent{}
		if names != nil {
			md.filters[g] = map[string]bool{}
			for _, n := range names {
				md.filters[g][n] = true
			}
		}
	}
	return md
}

func (md *model) published(e *Event) {
	me := &modelEvent{ev: e, ord: len(md.events)}
	md.events = append(md.events, *me)
	for g := range md.status {
		if f := md.filters[g]; f != nil && !f[e.Name] {
			continue
		}
		md.status[g][e.ID] = &modelStatus{state: stBuffered}
		k := e.routingKey()
		md.byKey[g][k] = append(md.byKey[g][k], me)
	}
}

func (md *model) dropped(g string, id EventID) {
	st := md.status[g][id]
	if st == nil || (st.state != stBuffered && st.state != stRequeued) {
		md.t.Fatalf("group %s dropped %v in state %v", g, id, st)
	}
	st.state = stLost
}

func (md *model) delivered(m *Member, d Delivery) {
	t := md.t
	g := m.Group()
	st := md.status[g][d.Event.ID]
	if st == nil {
		t.Fatalf("group %s got %v (%s) it did not subscribe to", g, d.Event.ID, d.Event.Name)
	}
	if st.state != stBuffered && st.state != stRequeued {
		t.Fatalf("group %s: %v delivered to %s while %v", g, d.Event.ID, m.ID(), st.state)
	}
	if want := st.state == stRequeued; d.Redelivered != want {
		t.Fatalf("group %s: %v redelivered=%v, want %v", g, d.Event.ID, d.Redelivered, want)
	}
	// Per-key order: everything earlier of the key is settled or held by this same member.
	for _, prev := range md.byKey[g][d.Event.routingKey()] {
		if prev.ev == d.Event {
			break
		}
		ps := md.status[g][prev.ev.ID]
		switch {
		case ps.state == stAcked || ps.state == stLost:
		case ps.state == stInFlight && ps.holder == m:
		default:
			t.Fatalf("group %s: %v handed to %s while earlier %v of the same key is %v (holder %v)",
				g, d.Event.ID, m.ID(), prev.ev.ID, ps.state, ps.holder)
		}
	}
	if md.held[m] >= md.credit[m] {
		t.Fatalf("member %s handed another event while holding %d with credit %d", m.ID(), md.held[m], md.credit[m])
	}
	st.state, st.holder = stInFlight, m
	md.held[m]++
}

func (md *model) acked(m *Member, d Delivery) {
	st := md.status[m.Group()][d.Event.ID]
	st.state, st.holder = stAcked, nil
	md.held[m]--
}

func (md *model) nacked(m *Member, d Delivery, requeue bool) {
	st := md.status[m.Group()][d.Event.ID]
	md.held[m]--
	if requeue {
		st.state, st.holder = stRequeued, nil
		return
	}
	st.state, st.holder = stAcked, nil // settled: rejected counts like an ack for the model
}

func (md *model) left(m *Member) {
	for _, st := range md.status[m.Group()] {
		if st.state == stInFlight && st.holder == m {
			st.state, st.holder = stRequeued, nil
		}
	}
	delete(md.held, m)
}

// checkWatermark asserts the hub's watermark is exactly "everything at or below is settled".
func (md *model) checkWatermark(h *Hub, shard int, highest uint64) {
	want := highest
	for _, e := range md.events {
		if e.ev.ID.Shard != shard {
			continue
		}
		for g := range md.status {
			if st := md.status[g][e.ev.ID]; st != nil && st.state != stAcked && st.state != stLost {
				want = min(want, e.ev.ID.Seq-1)
			}
		}
	}
	if got, _ := h.Watermark(shard); got != want {
		md.t.Fatalf("shard %d watermark = %d, want %d", shard, got, want)
	}
}

// TestRandomizedAgainstModel drives the hub with random publishes, joins, leaves, takes,
// acks and credit changes, and checks every step against the model: exactly one first
// delivery per group, redeliveries flagged, per-key order, credit, exact watermark, and in
// the end every event acked or counted lost.
func TestRandomizedAgainstModel(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed <= 30; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			runRandomized(t, seed)
		})
	}
}

func runRandomized(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, seed*7919))
	filters := map[string][]string{"all": nil, "some": {"A", "B"}, "tiny": nil}
	md := newModel(t, filters)
	h := newHub(Config{MaxBufferedEvents: 8 + rng.IntN(40), MaxInFlight: 6})
	h.dropHook = md.dropped
	groupNames := []string{"all", "some", "tiny"}
	// The "tiny" group has a one-event buffer in spirit: it shares the hub config, so make
	// it slow instead, by giving its members little credit and rare acks.
	seq := map[int]uint64{}
	members := map[string][]*Member{}
	join := func(g string) {
		id := fmt.Sprintf("m%d", rng.IntN(5))
		credit := 1 + rng.IntN(5)
		if g == "tiny" {
			credit = 1
		}
		for _, m := range members[g] {
			if m.ID() == id {
				md.left(m)
				members[g] = slices.DeleteFunc(members[g], func(x *Member) bool { return x == m })
				break
			}
		}
		m, err := h.Join(JoinRequest{Group: g, MemberID: id, MaxInFlight: credit, Events: filters[g], Replace: true})
		if err != nil {
			t.Fatalf("join: %v", err)
		}
		md.credit[m] = credit
		members[g] = append(members[g], m)
	}
	inflight := map[*Member][]Delivery{}
	for _, g := range groupNames {
		join(g)
	}
	for step := 0; step < 1500; step++ {
		g := groupNames[rng.IntN(len(groupNames))]
		ms := members[g]
		switch r := rng.IntN(100); {
		case r < 40:
			shard := rng.IntN(2)
			seq[shard]++
			key := uint64(0)
			if rng.IntN(5) > 0 {
				key = uint64(1+rng.IntN(6))*2 + uint64(shard) // a guild lives on one shard
			}
			e := &Event{ID: EventID{Shard: shard, Seq: seq[shard]}, Name: []string{"A", "B", "C"}[rng.IntN(3)], Key: key, Payload: make([]byte, 1+rng.IntN(20))}
			// Register first: the publish may drop older events, reported through the hook.
			md.published(e)
			if !h.Publish(e) {
				t.Fatalf("publish %v refused", e.ID)
			}
		case r < 65 && len(ms) > 0:
			m := ms[rng.IntN(len(ms))]
			items, err := m.take(nil, 1+rng.IntN(4))
			if err != nil {
				t.Fatalf("take: %v", err)
			}
			for _, it := range items {
				if it.Gap != nil {
					continue
				}
				md.delivered(m, it.Delivery)
				inflight[m] = append(inflight[m], it.Delivery)
			}
		case r < 85 && len(ms) > 0:
			m := ms[rng.IntN(len(ms))]
			if g == "tiny" && rng.IntN(4) > 0 {
				continue
			}
			ds := inflight[m]
			rng.Shuffle(len(ds), func(i, j int) { ds[i], ds[j] = ds[j], ds[i] })
			n := rng.IntN(len(ds) + 1)
			for _, d := range ds[:n] {
				md.acked(m, d)
				if k, err := m.Ack(d.Tag); err != nil || k != 1 {
					t.Fatalf("ack: n=%d err=%v", k, err)
				}
			}
			inflight[m] = slices.Clone(ds[n:])
		case r < 88 && len(ms) > 0:
			m := ms[rng.IntN(len(ms))]
			// Nack a few held deliveries one by one, in random order: a key's events must go
			// back in publish order whatever order they are given back in.
			ds := inflight[m]
			if len(ds) == 0 {
				continue
			}
			rng.Shuffle(len(ds), func(i, j int) { ds[i], ds[j] = ds[j], ds[i] })
			n := 1 + rng.IntN(len(ds))
			for _, d := range ds[:n] {
				requeue := rng.IntN(2) == 0
				md.nacked(m, d, requeue) // first: a requeue may overflow and drop, reported through the hook
				if k, err := m.Nack(requeue, d.Tag); err != nil || k != 1 {
					t.Fatalf("nack: n=%d err=%v", k, err)
				}
			}
			inflight[m] = slices.Clone(ds[n:])
		case r < 92:
			join(g)
		case r < 97 && len(ms) > 0:
			i := rng.IntN(len(ms))
			m := ms[i]
			md.left(m)
			m.Close()
			delete(inflight, m)
			members[g] = slices.Delete(ms, i, i+1)
		case len(ms) > 0:
			m := ms[rng.IntN(len(ms))]
			c := 1 + rng.IntN(6)
			if err := m.SetMaxInFlight(c); err != nil {
				t.Fatal(err)
			}
			md.credit[m] = c // lowering never revokes what is held, it stops new deliveries
		}
		for shard := range 2 {
			md.checkWatermark(h, shard, seq[shard])
		}
	}

	// Drain: one member per group with full credit, acking everything.
	for _, g := range groupNames {
		for _, m := range members[g] {
			md.left(m)
			m.Close()
		}
		m, err := h.Join(JoinRequest{Group: g, MemberID: "drain", MaxInFlight: 6, Events: filters[g]})
		if err != nil {
			t.Fatal(err)
		}
		md.credit[m] = 6
		for {
			items, err := m.take(nil, 6)
			if err != nil {
				t.Fatal(err)
			}
			if len(items) == 0 {
				break
			}
			for _, it := range items {
				if it.Gap == nil {
					md.delivered(m, it.Delivery)
					md.acked(m, it.Delivery)
					if _, err := m.Ack(it.Delivery.Tag); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	}
	stats := map[string]GroupStats{}
	for _, s := range h.Groups() {
		stats[s.Name] = s
	}
	for _, g := range groupNames {
		var lost uint64
		for id, st := range md.status[g] {
			switch st.state {
			case stAcked:
			case stLost:
				lost++
			default:
				t.Errorf("group %s: %v ended %v", g, id, st.state)
			}
		}
		if stats[g].Lost != lost || stats[g].Buffered != 0 || stats[g].InFlight != 0 {
			t.Errorf("group %s stats %+v, model lost %d", g, stats[g], lost)
		}
	}
	for shard := range 2 {
		if wm, _ := h.Watermark(shard); wm != seq[shard] {
			t.Errorf("shard %d final watermark %d, want %d", shard, wm, seq[shard])
		}
	}
}

// TestConcurrentStress runs publishers and consumers on goroutines (for -race), with members
// leaving and joining mid-stream, then checks every event was acked exactly once per group
// (redeliveries aside, which must be flagged) and first deliveries of a key kept order.
func TestConcurrentStress(t *testing.T) {
	t.Parallel()
	const shards, perShard = 3, 3000
	h := newHub(Config{MaxInFlight: 64})
	var mu sync.Mutex
	type obs struct {
		first, acks int
	}
	seen := map[string]map[EventID]*obs{"a": {}, "b": {}}
	lastFirst := map[string]map[uint64]uint64{"a": {}, "b": {}}
	// Every event is routed by key = shard*100 + seq%7, so a key's order is its seq order.
	consume := func(ctx context.Context, m *Member, quitAfter int) {
		var buf []Item
		handled := 0
		for {
			items, err := m.Next(ctx, buf, 32)
			if err != nil {
				return
			}
			buf = items
			mu.Lock()
			for _, it := range items {
				if it.Gap != nil {
					t.Errorf("unexpected gap %+v", it.Gap)
					continue
				}
				d := it.Delivery
				o := seen[m.Group()][d.Event.ID]
				if o == nil {
					o = &obs{}
					seen[m.Group()][d.Event.ID] = o
				}
				if !d.Redelivered {
					o.first++
					k := d.Event.Key
					if last := lastFirst[m.Group()][k]; d.Event.ID.Seq <= last {
						t.Errorf("group %s key %d: seq %d first-delivered after %d", m.Group(), k, d.Event.ID.Seq, last)
					}
					lastFirst[m.Group()][k] = d.Event.ID.Seq
				}
			}
			mu.Unlock()
			for _, it := range items {
				handled++
				if quitAfter > 0 && handled >= quitAfter {
					m.Close() // leaves with the rest unacked: they must be redelivered
					return
				}
				if n, err := m.Ack(it.Delivery.Tag); err == nil && n == 1 {
					mu.Lock()
					seen[m.Group()][it.Delivery.Event.ID].acks++
					mu.Unlock()
				}
			}
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	start := func(group, id string, credit, quitAfter int) {
		m, err := h.Join(JoinRequest{Group: group, MemberID: id, MaxInFlight: credit})
		if err != nil {
			t.Error(err)
			return
		}
		wg.Go(func() { consume(ctx, m, quitAfter) })
	}
	start("a", "a1", 64, 0)
	start("a", "a2", 8, 500)
	start("b", "b1", 16, 0)
	var pubs sync.WaitGroup
	for s := range shards {
		pubs.Go(func() {
			for i := 1; i <= perShard; i++ {
				h.Publish(&Event{ID: EventID{Shard: s, Seq: uint64(i)}, Name: "X", Key: uint64(s*100 + i%7), Payload: []byte("x")})
				if s == 0 && i == perShard/2 {
					start("a", "a3", 4, 300)
					start("b", "b2", 32, 0)
				}
			}
		})
	}
	pubs.Wait()
	// a2 and a3 quit early; a4 joins late to make sure their keys keep flowing.
	start("a", "a4", 64, 0)
	deadline := time.Now().Add(20 * time.Second)
	for {
		done := true
		for s := range shards {
			if wm, _ := h.Watermark(s); wm != perShard {
				done = false
			}
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not everything was acked in time: %+v", h.Groups())
		}
		time.Sleep(5 * time.Millisecond) // polling the condition, bounded by the deadline
	}
	cancel()
	wg.Wait()
	for g, m := range seen {
		if len(m) != shards*perShard {
			t.Errorf("group %s saw %d events, want %d", g, len(m), shards*perShard)
		}
		for id, o := range m {
			if o.first != 1 || o.acks != 1 {
				t.Errorf("group %s %v: %d first deliveries and %d acks, want 1 and 1", g, id, o.first, o.acks)
			}
		}
	}
}
