package delivery

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// BenchmarkPublishDeliverAck measures the hub's cost per event for each number of groups:
// publish, take in batches of 64 by one member per group, ack.
func BenchmarkPublishDeliverAck(b *testing.B) {
	for _, groups := range []int{1, 4} {
		b.Run(fmt.Sprintf("groups=%d", groups), func(b *testing.B) {
			h := newHub(Config{MaxInFlight: 1024})
			ms := make([]*Member, groups)
			for i := range ms {
				m, err := h.Join(JoinRequest{Group: fmt.Sprint("g", i), MemberID: "m", MaxInFlight: 1024})
				if err != nil {
					b.Fatal(err)
				}
				ms[i] = m
			}
			payload := make([]byte, 600)
			bufs := make([][]Item, groups)
			tags := make([]uint64, 0, 64)
			now := time.Now()
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				h.Publish(&Event{ID: EventID{Seq: uint64(i + 1)}, Name: "MESSAGE_CREATE", Key: uint64(i % 500), Payload: payload, ReceivedAt: now})
				if i%64 == 63 || i == b.N-1 {
					for j, m := range ms {
						for {
							items, err := m.take(bufs[j][:0], 64)
							if err != nil {
								b.Fatal(err)
							}
							bufs[j] = items
							if len(items) == 0 {
								break
							}
							tags = tags[:0]
							for _, it := range items {
								tags = append(tags, it.Delivery.Tag)
							}
							if _, err := m.Ack(tags...); err != nil {
								b.Fatal(err)
							}
						}
					}
				}
			}
			b.StopTimer()
			if wm, _ := h.Watermark(0); wm != uint64(b.N) {
				b.Fatalf("watermark %d, want %d", wm, b.N)
			}
		})
	}
}

// BenchmarkConcurrentConsumers measures throughput with a real consumer goroutine per group
// blocked in Next, as the gRPC streams run it.
func BenchmarkConcurrentConsumers(b *testing.B) {
	h := newHub(Config{MaxInFlight: 4096, MaxBufferedEvents: 1 << 20})
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	done := make(chan struct{})
	const groups = 2
	for g := range groups {
		m, err := h.Join(JoinRequest{Group: fmt.Sprint("g", g), MaxInFlight: 4096})
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			defer func() { done <- struct{}{} }()
			var buf []Item
			tags := make([]uint64, 0, 256)
			for {
				items, err := m.Next(ctx, buf, 256)
				if err != nil {
					return
				}
				buf = items
				tags = tags[:0]
				for _, it := range items {
					tags = append(tags, it.Delivery.Tag)
				}
				if _, err := m.Ack(tags...); err != nil {
					return
				}
			}
		}()
	}
	payload := make([]byte, 600)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		h.Publish(&Event{ID: EventID{Seq: uint64(i + 1)}, Name: "MESSAGE_CREATE", Key: uint64(i % 500), Payload: payload})
	}
	for {
		if wm, _ := h.Watermark(0); wm == uint64(b.N) {
			break
		}
		runtime.Gosched()
	}
	b.StopTimer()
	cancel()
	for range groups {
		<-done
	}
}

// BenchmarkBufferedMemory reports the hub's own memory per buffered event (payload excluded:
// the payload is shared by every group and counted by MaxBufferedBytes).
func BenchmarkBufferedMemory(b *testing.B) {
	const n = 100_000
	payload := make([]byte, 1)
	for range b.N {
		h := newHub(Config{MaxBufferedEvents: n})
		if _, err := h.Join(JoinRequest{Group: "g", MemberID: "m", MaxInFlight: 1}); err != nil {
			b.Fatal(err)
		}
		evs := make([]Event, n)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := range evs {
			evs[i] = Event{ID: EventID{Seq: uint64(i + 1)}, Name: "MESSAGE_CREATE", Key: uint64(i % 5000), Payload: payload}
			h.Publish(&evs[i])
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/buffered-event")
		runtime.KeepAlive(h)
	}
}
