package delivery

import (
	"slices"
	"testing"
)

func gaps(items []Item) []Gap {
	var out []Gap
	for _, it := range items {
		if it.Gap != nil {
			out = append(out, *it.Gap)
		}
	}
	return out
}

// TestMaxAttempts drops an event that keeps coming back unacked, whether nacked for requeue
// or held by members that leave: after Config.MaxAttempts deliveries it is counted as
// exhausted, announced as a gap, no longer holds the watermark, and its key's later events
// flow again.
func TestMaxAttempts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		giveBack func(t *testing.T, h *Hub, m *Member, d Delivery) *Member
	}{
		{"nacked", func(t *testing.T, _ *Hub, m *Member, d Delivery) *Member {
			mustNack(t, m, d)
			return m
		}},
		{"held by members that leave", func(t *testing.T, h *Hub, m *Member, _ Delivery) *Member {
			m.Close()
			return mustJoin(t, h, "bot", "a", 1)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHub(Config{MaxAttempts: 3})
			m := mustJoin(t, h, "bot", "a", 1)
			h.Publish(ev(0, 1, "POISON", 7))
			h.Publish(ev(0, 2, "NEXT", 7)) // same key: waits behind the poison event
			for attempt := uint32(1); attempt <= 3; attempt++ {
				items := takeNow(t, m, 10)
				ds := deliveries(items)
				if len(ds) != 1 || ds[0].Event.ID.Seq != 1 || ds[0].Attempt != attempt {
					t.Fatalf("attempt %d: got %+v, want seq 1 at attempt %d", attempt, ds, attempt)
				}
				if g := gaps(items); len(g) != 0 {
					t.Fatalf("attempt %d: gaps %+v before the attempts ran out", attempt, g)
				}
				if wm, _ := h.Watermark(0); wm != 0 {
					t.Fatalf("watermark %d while seq 1 is still being retried", wm)
				}
				m = tc.giveBack(t, h, m, ds[0])
			}
			items := takeNow(t, m, 10)
			wantGap := []Gap{{Shard: 0, FirstSeq: 1, LastSeq: 1, Count: 1, Reason: GapReasonRetriesExhausted}}
			if got := gaps(items); !slices.Equal(got, wantGap) {
				t.Fatalf("gaps after 3 attempts = %+v, want %+v", got, wantGap)
			}
			if got := seqs(deliveries(items)); !slices.Equal(got, []uint64{2}) {
				t.Fatalf("after the poison event was dropped got %v, want [2]", got)
			}
			ackAll(t, m, deliveries(items))
			if wm, _ := h.Watermark(0); wm != 2 {
				t.Errorf("watermark = %d, want 2 (the dropped event settled)", wm)
			}
			st := h.Groups()[0]
			if st.Exhausted != 1 || st.Lost != 0 || st.Buffered != 0 || st.InFlight != 0 {
				t.Errorf("stats = exhausted %d, lost %d, buffered %d, in flight %d; want 1, 0, 0, 0",
					st.Exhausted, st.Lost, st.Buffered, st.InFlight)
			}
		})
	}
}

// TestResetSession announces a session reset to every group, live or not, and restarts the
// shard's sequences without disturbing what is still buffered.
func TestResetSession(t *testing.T) {
	t.Parallel()
	h := newHub(Config{})
	if err := h.Declare("state"); err != nil {
		t.Fatal(err)
	}
	m := mustJoin(t, h, "bot", "a", 10)
	h.Publish(ev(0, 1, "X", 1))
	h.Publish(ev(0, 2, "X", 1))
	h.ResetSession(0)
	if !h.Publish(ev(0, 1, "READY", 0)) {
		t.Fatal("the new session's seq 1 was refused as a duplicate")
	}
	items := takeNow(t, m, 10)
	want := []Gap{{Shard: 0, FirstSeq: 3, Reason: GapReasonSessionReset}}
	if got := gaps(items); !slices.Equal(got, want) {
		t.Errorf("live member's gaps = %+v, want %+v", got, want)
	}
	if got := len(deliveries(items)); got != 3 {
		t.Errorf("%d deliveries, want 3 (both sessions' events)", got)
	}
	late := mustJoin(t, h, "state", "s", 10)
	if got := gaps(takeNow(t, late, 10)); !slices.Equal(got, want) {
		t.Errorf("the declared group's first member got gaps %+v, want %+v", got, want)
	}
}
