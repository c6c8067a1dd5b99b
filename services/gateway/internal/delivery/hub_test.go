package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"
)

// newHub returns a hub whose logs are discarded (the tests provoke warnings on purpose).
func newHub(cfg Config) *Hub {
	cfg.Logger = slog.New(slog.DiscardHandler)
	return NewHub(cfg)
}

func ev(shard int, seq uint64, name string, key uint64) *Event {
	return &Event{ID: EventID{Shard: shard, Seq: seq}, Name: name, Key: key, Payload: make([]byte, 10), ReceivedAt: time.Now()}
}

func mustJoin(t *testing.T, h *Hub, group, id string, credit int, events ...string) *Member {
	t.Helper()
	m, err := h.Join(JoinRequest{Group: group, MemberID: id, MaxInFlight: credit, Events: events})
	if err != nil {
		t.Fatalf("join %s/%s: %v", group, id, err)
	}
	return m
}

// takeNow returns what a member can take right now, without waiting.
func takeNow(t *testing.T, m *Member, limit int) []Item {
	t.Helper()
	items, err := m.take(nil, limit)
	if err != nil {
		t.Fatalf("take from %s: %v", m.id, err)
	}
	return items
}

func deliveries(items []Item) []Delivery {
	var out []Delivery
	for _, it := range items {
		if it.Gap == nil {
			out = append(out, it.Delivery)
		}
	}
	return out
}

func seqs(ds []Delivery) []uint64 {
	out := make([]uint64, len(ds))
	for i, d := range ds {
		out[i] = d.Event.ID.Seq
	}
	return out
}

func ackAll(t *testing.T, m *Member, ds []Delivery) {
	t.Helper()
	for _, d := range ds {
		if n, err := m.Ack(d.Tag); err != nil || n != 1 {
			t.Fatalf("ack %d on %s: n=%d err=%v", d.Tag, m.id, n, err)
		}
	}
}

// keyOwnedBy finds a routing key that the group's rendezvous hashing gives to member id.
func keyOwnedBy(t *testing.T, h *Hub, group, id string) uint64 {
	t.Helper()
	g := h.groups[group]
	g.mu.Lock()
	defer g.mu.Unlock()
	for k := uint64(1000); k < 100000; k++ {
		if g.pick(k).id == id {
			return k
		}
	}
	t.Fatalf("no key maps to %s", id)
	return 0
}

func TestFanOutBetweenGroupsLoadBalanceInside(t *testing.T) {
	t.Parallel()
	h := newHub(Config{})
	a := []*Member{mustJoin(t, h, "bot", "a1", 1000), mustJoin(t, h, "bot", "a2", 1000), mustJoin(t, h, "bot", "a3", 1000)}
	s := mustJoin(t, h, "state", "s1", 1000)

	const n = 600
	for i := 1; i <= n; i++ {
		if !h.Publish(ev(0, uint64(i), "MESSAGE_CREATE", uint64(i%40+1))) {
			t.Fatalf("publish %d refused", i)
		}
	}
	owner := map[uint64]string{}
	got := map[uint64]int{}
	for _, m := range a {
		ds := deliveries(takeNow(t, m, n))
		for _, d := range ds {
			got[d.Event.ID.Seq]++
			if o, ok := owner[d.Event.Key]; ok && o != m.id {
				t.Errorf("key %d delivered to %s and %s", d.Event.Key, o, m.id)
			}
			owner[d.Event.Key] = m.id
		}
		if len(ds) == 0 {
			t.Errorf("member %s got nothing: load is not balanced", m.id)
		}
		ackAll(t, m, ds)
	}
	sd := deliveries(takeNow(t, s, n))
	ackAll(t, s, sd)
	if len(sd) != n {
		t.Errorf("state group got %d events, want %d", len(sd), n)
	}
	for i := 1; i <= n; i++ {
		if got[uint64(i)] != 1 {
			t.Errorf("seq %d delivered %d times in group bot, want 1", i, got[uint64(i)])
		}
	}
	if wm, _ := h.Watermark(0); wm != n {
		t.Errorf("watermark = %d, want %d after every group acked everything", wm, n)
	}
}

func TestPerKeyOrderAndCredit(t *testing.T) {
	t.Parallel()
	h := newHub(Config{})
	m := mustJoin(t, h, "bot", "a", 3)
	for i := 1; i <= 10; i++ {
		h.Publish(ev(0, uint64(i), "MESSAGE_CREATE", 7))
	}
	var all []uint64
	for len(all) < 10 {
		ds := deliveries(takeNow(t, m, 100))
		if len(ds) > 3 {
			t.Fatalf("got %d deliveries with credit 3", len(ds))
		}
		if len(ds) == 0 {
			t.Fatalf("stalled after %v", all)
		}
		if more := takeNow(t, m, 100); len(more) != 0 {
			t.Fatalf("credit exhausted but got %d more", len(more))
		}
		all = append(all, seqs(ds)...)
		ackAll(t, m, ds)
	}
	if !slices.IsSorted(all) {
		t.Errorf("one key's events out of order: %v", all)
	}
}

func TestRedeliveryOfDepartedMember(t *testing.T) {
	t.Parallel()
	h := newHub(Config{})
	a := mustJoin(t, h, "bot", "a", 10)
	for i := 1; i <= 5; i++ {
		h.Publish(ev(0, uint64(i), "MESSAGE_CREATE", 1))
	}
	first := deliveries(takeNow(t, a, 3))
	ackAll(t, a, first[:1]) // seq 1 handled; 2 and 3 in flight when a leaves
	b := mustJoin(t, h, "bot", "b", 10)
	a.Close()
	if _, err := a.Next(t.Context(), nil, 1); !errors.Is(err, ErrMemberClosed) {
		t.Errorf("Next after Close: err = %v, want ErrMemberClosed", err)
	}
	ds := deliveries(takeNow(t, b, 10))
	if got := seqs(ds); !slices.Equal(got, []uint64{2, 3, 4, 5}) {
		t.Fatalf("b got %v, want [2 3 4 5]", got)
	}
	for _, d := range ds {
		wantRe := d.Event.ID.Seq <= 3
		if d.Redelivered != wantRe {
			t.Errorf("seq %d redelivered=%v, want %v", d.Event.ID.Seq, d.Redelivered, wantRe)
		}
		if wantRe && d.Attempt != 2 {
			t.Errorf("seq %d attempt=%d, want 2", d.Event.ID.Seq, d.Attempt)
		}
	}
	if wm, _ := h.Watermark(0); wm != 1 {
		t.Errorf("watermark = %d, want 1", wm)
	}
	ackAll(t, b, ds)
	if wm, _ := h.Watermark(0); wm != 5 {
		t.Errorf("watermark = %d, want 5", wm)
	}
	st := h.Groups()[0]
	if st.Redelivered != 2 || st.Delivered != 5 || st.Acked != 5 {
		t.Errorf("stats = %+v, want 5 delivered, 2 redelivered, 5 acked", st)
	}
}

func TestKeyWaitsForPreviousOwnerToAck(t *testing.T) {
	t.Parallel()
	h := newHub(Config{})
	a := mustJoin(t, h, "bot", "a", 10)
	// Find a key that moves to "b" once b joins, by joining b to a scratch group first.
	mustJoin(t, h, "scratch", "a", 1)
	mustJoin(t, h, "scratch", "b", 1)
	key := keyOwnedBy(t, h, "scratch", "b")

	h.Publish(ev(0, 1, "MESSAGE_CREATE", key))
	held := deliveries(takeNow(t, a, 10))
	if len(held) != 1 {
		t.Fatalf("a got %d, want 1", len(held))
	}
	b := mustJoin(t, h, "bot", "b", 10)
	h.Publish(ev(0, 2, "MESSAGE_CREATE", key))
	if got := takeNow(t, b, 10); len(got) != 0 {
		t.Fatalf("b got seq %v while seq 1 of the same key is unacked on a", seqs(deliveries(got)))
	}
	if got := takeNow(t, a, 10); len(got) != 0 {
		t.Fatalf("a got %v although the key now belongs to b", seqs(deliveries(got)))
	}
	ackAll(t, a, held)
	got := deliveries(takeNow(t, b, 10))
	if !slices.Equal(seqs(got), []uint64{2}) || got[0].Redelivered {
		t.Fatalf("b got %+v after a acked, want seq 2 first delivery", got)
	}
}

func TestShardFilter(t *testing.T) {
	t.Parallel()
	h := newHub(Config{})
	m := mustJoin(t, h, "bot", "a", 10)
	if _, err := h.Join(JoinRequest{Group: "bot", MemberID: "b", MaxInFlight: 1, Shards: []int{1}}); !errors.Is(err, ErrFilterConflict) {
		t.Fatalf("join with a shard filter into an unfiltered group: %v", err)
	}
	s1, err := h.Join(JoinRequest{Group: "one", MemberID: "b", MaxInFlight: 10, Shards: []int{1}})
	if err != nil {
		t.Fatal(err)
	}
	h.Publish(ev(0, 1, "X", 1))
	h.Publish(ev(1, 1, "X", 2))
	if got := deliveries(takeNow(t, m, 10)); len(got) != 2 {
		t.Errorf("unfiltered group got %d events, want 2", len(got))
	}
	got := deliveries(takeNow(t, s1, 10))
	if len(got) != 1 || got[0].Event.ID.Shard != 1 {
		t.Errorf("shard-1 group got %+v, want only shard 1's event", got)
	}
}

func TestNack(t *testing.T) {
	t.Parallel()
	h := newHub(Config{})
	m := mustJoin(t, h, "bot", "a", 10)
	for i := 1; i <= 3; i++ {
		h.Publish(ev(0, uint64(i), "X", 5))
	}
	ds := deliveries(takeNow(t, m, 10))
	if n, err := m.Nack(Requeue, ds[0].Tag); n != 1 || err != nil {
		t.Fatalf("nack requeue: n=%d err=%v", n, err)
	}
	again := deliveries(takeNow(t, m, 10))
	if len(again) != 1 || again[0].Event.ID.Seq != 1 || !again[0].Redelivered || again[0].Attempt != 2 {
		t.Fatalf("after requeue got %+v, want seq 1 attempt 2 redelivered", again)
	}
	if n, err := m.Nack(Reject, again[0].Tag, ds[1].Tag); n != 2 || err != nil {
		t.Fatalf("nack reject: n=%d err=%v", n, err)
	}
	if wm, _ := h.Watermark(0); wm != 2 {
		t.Errorf("watermark = %d, want 2 (rejected events are settled)", wm)
	}
	ackAll(t, m, ds[2:])
	st := h.Groups()[0]
	if st.Rejected != 2 || st.Acked != 1 || st.Lost != 0 {
		t.Errorf("stats %+v, want 2 rejected, 1 acked, 0 lost", st)
	}
	if n, _ := m.Ack(ds[0].Tag); n != 0 {
		t.Errorf("acking a stale tag settled %d deliveries", n)
	}
}

func TestFilters(t *testing.T) {
	t.Parallel()
	h := newHub(Config{})
	m := mustJoin(t, h, "bot", "a", 10, "MESSAGE_CREATE", "GUILD_CREATE")
	if _, err := h.Join(JoinRequest{Group: "bot", MemberID: "b", MaxInFlight: 1, Events: []string{"MESSAGE_CREATE"}}); !errors.Is(err, ErrFilterConflict) {
		t.Fatalf("join with another filter: err = %v, want ErrFilterConflict", err)
	}
	// Same set in another order is the same filter.
	mustJoin(t, h, "bot", "c", 1, "GUILD_CREATE", "MESSAGE_CREATE", "GUILD_CREATE")
	h.Publish(ev(0, 1, "TYPING_START", 1))
	h.Publish(ev(0, 2, "MESSAGE_CREATE", 1))
	h.Publish(ev(0, 3, "PRESENCE_UPDATE", 1))
	if wm, _ := h.Watermark(0); wm != 1 {
		t.Errorf("watermark = %d, want 1 (filtered seq 1 counts as handled)", wm)
	}
	var got []uint64
	for _, mm := range []*Member{m, h.groups["bot"].members["c"]} {
		ds := deliveries(takeNow(t, mm, 10))
		got = append(got, seqs(ds)...)
		ackAll(t, mm, ds)
	}
	if !slices.Equal(got, []uint64{2}) {
		t.Errorf("delivered %v, want only [2]", got)
	}
	if wm, _ := h.Watermark(0); wm != 3 {
		t.Errorf("watermark = %d, want 3", wm)
	}
}

func TestOverflowDropsOldestAndAnnouncesGap(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		joinFirst bool
	}{
		{"live member", true},
		{"no member yet", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHub(Config{MaxBufferedEvents: 5})
			var m *Member
			if tc.joinFirst {
				m = mustJoin(t, h, "bot", "a", 1)
				h.Publish(ev(0, 1, "X", 1))
				ackAll(t, m, deliveries(takeNow(t, m, 1)))
			} else {
				mustJoin(t, h, "bot", "tmp", 1).Close() // creates the group, then leaves it empty
				h.Publish(ev(0, 1, "X", 1))             // buffered, no member
			}
			for i := 2; i <= 9; i++ {
				h.Publish(ev(0, uint64(i), "X", uint64(i%3)))
			}
			if m == nil {
				m = mustJoin(t, h, "bot", "a", 1)
			}
			items := takeNow(t, m, 100)
			if len(items) == 0 || items[0].Gap == nil {
				t.Fatalf("first item is not a gap: %+v", items)
			}
			gap := *items[0].Gap
			wantFirst := uint64(2)
			if !tc.joinFirst {
				wantFirst = 1
			}
			wantCount := uint64(4 - int(wantFirst) + 1) // 9 events (or 8), 5 kept
			if gap.Shard != 0 || gap.FirstSeq != wantFirst || gap.LastSeq != 4 || gap.Count != wantCount || gap.Reason != GapReasonOverflow {
				t.Errorf("gap = %+v, want shard 0 seqs %d..4 count %d", gap, wantFirst, wantCount)
			}
			st := h.Groups()[0]
			if st.Lost != wantCount || st.Buffered != 4 {
				t.Errorf("stats lost=%d buffered=%d, want %d and 4", st.Lost, st.Buffered, wantCount)
			}
			// The rest drains in order: 5..9.
			var rest []uint64
			ds := deliveries(items)
			for len(ds) > 0 {
				rest = append(rest, seqs(ds)...)
				ackAll(t, m, ds)
				ds = deliveries(takeNow(t, m, 100))
			}
			slices.Sort(rest)
			if !slices.Equal(rest, []uint64{5, 6, 7, 8, 9}) {
				t.Errorf("delivered %v, want 5..9", rest)
			}
			if wm, _ := h.Watermark(0); wm != 9 {
				t.Errorf("watermark = %d, want 9 (drops count as handled)", wm)
			}
		})
	}
}

func TestOverflowByBytes(t *testing.T) {
	t.Parallel()
	h := newHub(Config{MaxBufferedBytes: 25})
	m := mustJoin(t, h, "bot", "a", 1)
	h.Publish(ev(0, 1, "X", 1)) // 10 bytes each
	h.Publish(ev(0, 2, "X", 1))
	h.Publish(ev(0, 3, "X", 1)) // 30 > 25: drops seq 1
	big := ev(0, 4, "X", 1)
	big.Payload = make([]byte, 26) // can never fit: lost itself
	h.Publish(big)
	st := h.Groups()[0]
	if st.Lost != 2 || st.BufferedBytes != 20 {
		t.Fatalf("lost=%d bytes=%d, want 2 and 20", st.Lost, st.BufferedBytes)
	}
	items := takeNow(t, m, 10)
	if items[0].Gap == nil || items[0].Gap.Count != 2 || items[0].Gap.FirstSeq != 1 || items[0].Gap.LastSeq != 4 {
		t.Errorf("gap = %+v, want 2 lost between 1 and 4", items[0].Gap)
	}
}

func TestWatermarkIsMinimumOverGroups(t *testing.T) {
	t.Parallel()
	h := newHub(Config{})
	fast := mustJoin(t, h, "fast", "f", 100)
	slow := mustJoin(t, h, "slow", "s", 100)
	for i := 1; i <= 5; i++ {
		h.Publish(ev(3, uint64(i), "X", uint64(i)))
	}
	ackAll(t, fast, deliveries(takeNow(t, fast, 100)))
	sd := deliveries(takeNow(t, slow, 100))
	bySeq := map[uint64]Delivery{}
	for _, d := range sd {
		bySeq[d.Event.ID.Seq] = d
	}
	steps := []struct {
		ack  uint64
		want uint64
	}{{2, 0}, {1, 2}, {4, 2}, {3, 4}, {5, 5}}
	for _, s := range steps {
		ackAll(t, slow, []Delivery{bySeq[s.ack]})
		if wm, _ := h.Watermark(3); wm != s.want {
			t.Errorf("after acking %d: watermark = %d, want %d", s.ack, wm, s.want)
		}
	}
	if _, ok := h.Watermark(9); ok {
		t.Errorf("unknown shard reported a watermark")
	}
}

func TestSessionsDuplicatesAndReplays(t *testing.T) {
	t.Parallel()
	h := newHub(Config{})
	m := mustJoin(t, h, "bot", "a", 100)
	h.Publish(ev(0, 1, "READY", 0))
	h.Publish(ev(0, 2, "X", 1))
	if h.Publish(ev(0, 2, "X", 1)) {
		t.Errorf("duplicate seq 2 accepted")
	}
	if h.Duplicates() != 1 {
		t.Errorf("duplicates = %d, want 1", h.Duplicates())
	}
	ds := deliveries(takeNow(t, m, 100))
	if len(ds) != 2 {
		t.Fatalf("got %d deliveries, want 2", len(ds))
	}
	// A new session restarts sequences; the old session's unacked events stop holding the watermark.
	h.StartSession(0)
	if !h.Publish(ev(0, 1, "READY", 0)) {
		t.Fatalf("seq 1 of a new session refused")
	}
	if wm, _ := h.Watermark(0); wm != 0 {
		t.Errorf("watermark = %d, want 0 with seq 1 of the new session unacked", wm)
	}
	ackAll(t, m, ds)
	ackAll(t, m, deliveries(takeNow(t, m, 100)))
	if wm, _ := h.Watermark(0); wm != 1 {
		t.Errorf("watermark = %d, want 1", wm)
	}

	// After a restart the new hub resumes at 10 and flags replays up to 12.
	h2 := newHub(Config{})
	m2 := mustJoin(t, h2, "bot", "a", 100)
	h2.RestoreSession(0, 10, 12)
	if wm, _ := h2.Watermark(0); wm != 10 {
		t.Errorf("restored watermark = %d, want 10", wm)
	}
	if h2.Publish(ev(0, 10, "X", 1)) {
		t.Errorf("seq 10 (at the resume point) accepted")
	}
	for s := uint64(11); s <= 13; s++ {
		h2.Publish(ev(0, s, "X", 1))
	}
	for _, d := range deliveries(takeNow(t, m2, 100)) {
		if want := d.Event.ID.Seq <= 12; d.Redelivered != want {
			t.Errorf("replayed seq %d redelivered=%v, want %v", d.Event.ID.Seq, d.Redelivered, want)
		}
	}
}

func TestGroupTTL(t *testing.T) {
	t.Parallel()
	h := newHub(Config{GroupTTL: time.Minute})
	m := mustJoin(t, h, "bot", "a", 1)
	h.Publish(ev(0, 1, "X", 1))
	takeNow(t, m, 1)
	m.Close()
	h.Publish(ev(0, 2, "X", 1))
	h.sweep(time.Now())
	if len(h.Groups()) != 1 {
		t.Fatalf("group expired before its TTL")
	}
	// A member coming back within the TTL gets everything, seq 1 flagged as redelivered.
	m = mustJoin(t, h, "bot", "b", 10)
	ds := deliveries(takeNow(t, m, 10))
	if !slices.Equal(seqs(ds), []uint64{1, 2}) || !ds[0].Redelivered || ds[1].Redelivered {
		t.Fatalf("got %+v, want seq 1 (redelivered) and 2", ds)
	}
	m.Close()
	h.sweep(time.Now().Add(2 * time.Minute))
	if n := len(h.Groups()); n != 0 {
		t.Fatalf("%d groups after the TTL, want 0", n)
	}
	if wm, _ := h.Watermark(0); wm != 2 {
		t.Errorf("watermark = %d, want 2 once the expired group's events are given up", wm)
	}
}

func TestDeclaredGroupBuffersBeforeMembersAndNeverExpires(t *testing.T) {
	t.Parallel()
	h := newHub(Config{GroupTTL: time.Minute})
	if err := h.Declare("state"); err != nil {
		t.Fatal(err)
	}
	if err := h.Declare("bad name"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Declare(bad name) = %v, want ErrInvalid", err)
	}
	h.Publish(ev(0, 1, "READY", 0))
	h.sweep(time.Now().Add(time.Hour))
	if wm, _ := h.Watermark(0); wm != 0 {
		t.Errorf("watermark = %d, want 0 while the declared group holds seq 1", wm)
	}
	m := mustJoin(t, h, "state", "s", 1)
	if ds := deliveries(takeNow(t, m, 1)); len(ds) != 1 || ds[0].Event.ID.Seq != 1 {
		t.Errorf("got %+v, want the event published before the member joined", ds)
	}
}

func TestAckTimeoutEvicts(t *testing.T) {
	t.Parallel()
	h := newHub(Config{AckTimeout: time.Second})
	stuck := mustJoin(t, h, "bot", "stuck", 5)
	h.Publish(ev(0, 1, "X", 1))
	if len(takeNow(t, stuck, 5)) != 1 {
		t.Fatal("no delivery")
	}
	healthy := mustJoin(t, h, "bot", "healthy", 5)
	h.sweep(time.Now())
	select {
	case <-stuck.Done():
		t.Fatal("evicted before the ack timeout")
	default:
	}
	h.sweep(time.Now().Add(2 * time.Second))
	<-stuck.Done()
	if _, err := stuck.Next(t.Context(), nil, 1); !errors.Is(err, ErrAckTimeout) {
		t.Errorf("Next on evicted member: %v, want ErrAckTimeout", err)
	}
	ds := deliveries(takeNow(t, healthy, 5))
	if len(ds) != 1 || !ds[0].Redelivered {
		t.Errorf("healthy member got %+v, want the redelivered event", ds)
	}
}

func TestReplaceSameMemberID(t *testing.T) {
	t.Parallel()
	h := newHub(Config{})
	old := mustJoin(t, h, "bot", "w", 5)
	h.Publish(ev(0, 1, "X", 1))
	takeNow(t, old, 5)
	if _, err := h.Join(JoinRequest{Group: "bot", MemberID: "w", MaxInFlight: 5}); !errors.Is(err, ErrMemberExists) {
		t.Fatalf("join with a live member's id: err = %v, want ErrMemberExists", err)
	}
	nw, err := h.Join(JoinRequest{Group: "bot", MemberID: "w", MaxInFlight: 5, Replace: true})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(old.Err(), ErrReplaced) {
		t.Errorf("old member err = %v, want ErrReplaced", old.Err())
	}
	ds := deliveries(takeNow(t, nw, 5))
	if len(ds) != 1 || !ds[0].Redelivered {
		t.Errorf("new member got %+v, want the redelivered event", ds)
	}
	if _, err := old.Ack(1); !errors.Is(err, ErrMemberClosed) {
		t.Errorf("ack on replaced member: %v", err)
	}
}

func TestJoinValidation(t *testing.T) {
	t.Parallel()
	h := newHub(Config{MaxInFlight: 10})
	tests := []struct {
		name string
		req  JoinRequest
	}{
		{"empty group", JoinRequest{MaxInFlight: 1}},
		{"long group", JoinRequest{Group: strings.Repeat("g", 65), MaxInFlight: 1}},
		{"bad group characters", JoinRequest{Group: "bot group", MaxInFlight: 1}},
		{"zero credit", JoinRequest{Group: "g"}},
		{"credit over cap", JoinRequest{Group: "g", MaxInFlight: 11}},
		{"long member id", JoinRequest{Group: "g", MaxInFlight: 1, MemberID: string(make([]byte, 129))}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := h.Join(tc.req); !errors.Is(err, ErrInvalid) {
				t.Errorf("err = %v, want ErrInvalid", err)
			}
		})
	}
	m := mustJoin(t, h, "g", "", 1)
	if m.ID() == "" {
		t.Error("no member id assigned")
	}
	if err := m.SetMaxInFlight(0); !errors.Is(err, ErrInvalid) {
		t.Errorf("SetMaxInFlight(0) = %v, want ErrInvalid", err)
	}
}

func TestNextWaitsAndWakes(t *testing.T) {
	t.Parallel()
	h := newHub(Config{})
	m := mustJoin(t, h, "bot", "a", 1)
	got := make(chan []Item, 1)
	go func() {
		items, err := m.Next(t.Context(), nil, 10)
		if err != nil {
			got <- nil
			return
		}
		got <- items
	}()
	h.Publish(ev(0, 1, "X", 1))
	select {
	case items := <-got:
		if len(items) != 1 {
			t.Fatalf("got %d items, want 1", len(items))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Next did not wake on publish")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := m.Next(ctx, nil, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("Next with cancelled ctx: %v", err)
	}
	h.Close()
	if _, err := m.Next(t.Context(), nil, 1); !errors.Is(err, ErrHubClosed) {
		t.Errorf("Next after hub close: %v, want ErrHubClosed", err)
	}
	if h.Publish(ev(0, 2, "X", 1)) {
		t.Error("publish accepted after close")
	}
	if _, err := h.Join(JoinRequest{Group: "bot", MaxInFlight: 1}); !errors.Is(err, ErrHubClosed) {
		t.Errorf("join after close: %v", err)
	}
}

func TestRunStopsWithContext(t *testing.T) {
	t.Parallel()
	h := newHub(Config{SweepInterval: time.Millisecond, AckTimeout: time.Millisecond})
	m := mustJoin(t, h, "bot", "a", 1)
	h.Publish(ev(0, 1, "X", 1))
	takeNow(t, m, 1)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	select {
	case <-m.Done(): // evicted by Run's sweep
	case <-time.After(5 * time.Second):
		t.Fatal("Run never evicted the member")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

func ExampleHub() {
	h := NewHub(Config{})
	m, _ := h.Join(JoinRequest{Group: "bot", MaxInFlight: 10})
	h.Publish(&Event{ID: EventID{Shard: 0, Seq: 1}, Name: "MESSAGE_CREATE", Key: 42, Payload: []byte("...")})
	items, _ := m.Next(context.Background(), nil, 10)
	for _, it := range items {
		_, _ = m.Ack(it.Delivery.Tag)
		fmt.Println(it.Delivery.Event.Name, it.Delivery.Event.ID.Seq)
	}
	wm, _ := h.Watermark(0)
	fmt.Println("watermark", wm)
	// Output:
	// MESSAGE_CREATE 1
	// watermark 1
}
