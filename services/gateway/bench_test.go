package gateway

import (
	"context"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kubecord/kubecord/discordsim"
	gatewayv1 "github.com/kubecord/kubecord/gen/kubecord/gateway/v1"
	"github.com/kubecord/kubecord/services/gateway/internal/delivery"
	"github.com/kubecord/kubecord/services/gateway/internal/shard"
)

// BenchmarkDispatchPath measures the gateway's own work per event, without sockets: routing
// key, decode, encode, publish to one group, take, frame assembly, ack. Add the shard's
// inflate and frame parsing (services/gateway/internal/shard benchmarks) for the full
// per-event CPU of the gateway process.
func BenchmarkDispatchPath(b *testing.B) {
	big, err := os.ReadFile("../../internal/discordjson/testdata/events/MESSAGE_CREATE.json")
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name string
		data []byte
	}{
		{"MESSAGE_CREATE_small", messageCreate(0, 1, 900000000000000001).Data},
		{"MESSAGE_CREATE_5KB", big},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			s, err := New(Config{Token: "t", Groups: []string{"bot"}}, quietLogger())
			if err != nil {
				b.Fatal(err)
			}
			m, err := s.hub.Join(delivery.JoinRequest{Group: "bot", MaxInFlight: 256})
			if err != nil {
				b.Fatal(err)
			}
			var buf []delivery.Item
			var frame []byte
			b.SetBytes(int64(len(tc.data)))
			b.ReportAllocs()
			c0 := cpuTime()
			for i := range b.N {
				s.HandleDispatch(shard.Dispatch{ShardID: 0, ShardCount: 1, Seq: uint64(i + 1), Name: "MESSAGE_CREATE", Data: tc.data, ReceivedAt: time.Now()})
				items, err := m.TryNext(buf, 64)
				if err != nil {
					b.Fatal(err)
				}
				buf = items
				for _, it := range items {
					frame = appendDeliveryFrame(frame[:0], it.Delivery, it.Delivery.Event.Payload)
					if _, err := m.Ack(it.Delivery.Tag); err != nil {
						b.Fatal(err)
					}
				}
			}
			// CPU time, unlike ns/op, does not grow when other processes share the machine.
			b.ReportMetric((cpuTime()-c0).Seconds()/float64(b.N)*10_000, "cpu-s/10k-events")
			if s.stats.decodeErrors.Load() != 0 {
				b.Fatalf("%d decode errors", s.stats.decodeErrors.Load())
			}
		})
	}
}

// BenchmarkBufferedEventMemory reports the heap held per buffered event of a realistic
// small MESSAGE_CREATE: the encoded event (raw JSON plus typed payload) and the hub's
// bookkeeping, for one group.
func BenchmarkBufferedEventMemory(b *testing.B) {
	const n = 50_000
	for range b.N {
		s, err := New(Config{Token: "t", Groups: []string{"bot"}, Delivery: delivery.Config{MaxBufferedEvents: n}}, quietLogger())
		if err != nil {
			b.Fatal(err)
		}
		ds := make([]shard.Dispatch, n)
		for i := range ds {
			ds[i] = messageCreate(0, uint64(i+1), uint64(900000000000000000+i%500))
		}
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for _, d := range ds {
			s.HandleDispatch(d)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		st := s.hub.Groups()[0]
		if st.Buffered != n {
			b.Fatalf("buffered %d, want %d", st.Buffered, n)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/buffered-event")
		b.ReportMetric(float64(st.BufferedBytes)/n, "payload-bytes/event")
		runtime.KeepAlive(ds)
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchWorker consumes a group over gRPC loopback, acking in batches, and records the
// latency from frame received (Event.received_at, stamped by the shard) to the moment the
// worker has the delivery in hand (handler start).
type benchWorker struct {
	acked     atomic.Int64
	mu        sync.Mutex
	latencies []time.Duration
}

func runBenchWorker(ctx context.Context, client gatewayv1.GatewayServiceClient, group string, w *benchWorker) error {
	stream, err := client.Consume(ctx)
	if err != nil {
		return err
	}
	if err := stream.Send(&gatewayv1.ConsumeRequest{Kind: &gatewayv1.ConsumeRequest_Subscribe{Subscribe: &gatewayv1.Subscribe{Group: group, MaxInFlight: 4096}}}); err != nil {
		return err
	}
	if _, err := stream.Recv(); err != nil {
		return err
	}
	acks := make([]uint64, 0, 64)
	lat := make([]time.Duration, 0, 1024)
	for {
		resp, err := stream.Recv()
		if err != nil {
			return nil // the benchmark ended the stream
		}
		d := resp.GetDelivery()
		if d == nil {
			continue
		}
		lat = append(lat, time.Since(d.GetEvent().GetReceivedAt().AsTime()))
		acks = append(acks, d.GetDeliveryId())
		if len(acks) == cap(acks) || len(lat) == cap(lat) {
			if err := stream.Send(&gatewayv1.ConsumeRequest{Kind: &gatewayv1.ConsumeRequest_Ack{Ack: &gatewayv1.Ack{DeliveryIds: acks}}}); err != nil {
				return nil
			}
			w.acked.Add(int64(len(acks)))
			acks = acks[:0]
			w.mu.Lock()
			w.latencies = append(w.latencies, lat...)
			w.mu.Unlock()
			lat = lat[:0]
		}
	}
}

// BenchmarkEndToEnd runs the simulator's generated traffic (zlib-stream, realistic mix)
// through the gateway's shards, hub and a gRPC loopback worker that acks, all in this
// process. It reports acked events/s, process CPU per 10k events (simulator included: it
// generates and compresses every frame) and the latency from frame received to the
// worker's handler. Rates: "max" asks the simulator for far more than the pipeline can
// take; "10k" is the latency point of the issue.
func BenchmarkEndToEnd(b *testing.B) {
	for _, tc := range []struct {
		name string
		rate float64
		dur  time.Duration
	}{{"rate=10k", 10_000, 3 * time.Second}, {"rate=20k", 20_000, 3 * time.Second}, {"rate=max", 400_000, 3 * time.Second}} {
		b.Run(tc.name, func(b *testing.B) {
			for range b.N {
				benchEndToEnd(b, tc.rate, tc.dur)
			}
		})
	}
}

func benchEndToEnd(b *testing.B, rate float64, dur time.Duration) {
	sim, err := discordsim.New(discordsim.Config{Guilds: 200, Shards: 2, IdentifyWindow: 20 * time.Millisecond, ResumeBuffer: 100_000})
	if err != nil {
		b.Fatal(err)
	}
	if err := sim.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer sim.Close()
	cfg := Config{Token: sim.Bots()[0].Token, RESTBase: sim.URL() + "/api/v10", Compression: shard.CompressionZlib,
		Intents: 1<<0 | 1<<7 | 1<<8 | 1<<9 | 1<<10 | 1<<11 | 1<<12 | 1<<15, GatewayID: "bench",
		Groups: []string{"bench"}, Delivery: delivery.Config{MaxInFlight: 4096, MaxBufferedEvents: 1 << 20, MaxBufferedBytes: 1 << 30}}
	gw, err := New(cfg, quietLogger())
	if err != nil {
		b.Fatal(err)
	}
	runCtx, stopRun := context.WithCancel(context.Background())
	if err := gw.Start(runCtx); err != nil {
		stopRun()
		b.Fatal(err)
	}
	defer func() {
		stopRun()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := gw.Stop(sctx); err != nil {
			b.Logf("stopping the gateway: %v", err)
		}
	}()
	client := serveLoopback(b, gw)

	ctx, cancel := context.WithCancel(context.Background())
	w := &benchWorker{}
	done := make(chan error, 1)
	go func() { done <- runBenchWorker(ctx, client, "bench", w) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("worker: %v", err)
		}
	}()
	// Let READY and GUILD_CREATEs pass before measuring.
	deadline := time.Now().Add(30 * time.Second)
	for gw.hub.Groups()[0].Acked < 100 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling, bounded by the deadline
	}
	if err := sim.StartLoad(discordsim.LoadConfig{Rate: rate}); err != nil {
		b.Fatal(err)
	}
	<-time.After(500 * time.Millisecond) // warm-up at the target rate
	w.mu.Lock()
	w.latencies = w.latencies[:0]
	w.mu.Unlock()
	a0, c0, t0, r0 := w.acked.Load(), cpuTime(), time.Now(), gw.stats.received.Load()
	<-time.After(dur) // the measurement window
	a1, c1, t1, r1 := w.acked.Load(), cpuTime(), time.Now(), gw.stats.received.Load()
	b.ReportMetric(float64(r1-r0)/t1.Sub(t0).Seconds(), "received/s")
	b.Logf("group after the window: %+v; simulator: %+v", gw.hub.Groups(), sim.LoadStats())
	sim.StopLoad()
	events := float64(a1 - a0)
	if events == 0 {
		b.Fatal("no events acked in the window")
	}
	b.ReportMetric(events/t1.Sub(t0).Seconds(), "events/s")
	b.ReportMetric((c1-c0).Seconds()/events*10_000, "cpu-s/10k-events")
	w.mu.Lock()
	lat := slices.Clone(w.latencies)
	w.mu.Unlock()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
	b.ReportMetric(float64(sim.LoadStats().Skipped), "sim-skipped")
}

// BenchmarkConsumeLoopback measures dispatch path plus delivery over a real gRPC loopback
// stream to a worker that acks in batches: everything after the shard's inflate, without
// the simulator's cost in the process.
func BenchmarkConsumeLoopback(b *testing.B) {
	s, err := New(Config{Token: "t", Groups: []string{"bench"},
		Delivery: delivery.Config{MaxInFlight: 4096, MaxBufferedEvents: 1 << 22, MaxBufferedBytes: 1 << 32}}, quietLogger())
	if err != nil {
		b.Fatal(err)
	}
	client := serveLoopback(b, s)
	ctx, cancel := context.WithCancel(context.Background())
	w := &benchWorker{}
	done := make(chan error, 1)
	go func() { done <- runBenchWorker(ctx, client, "bench", w) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("worker: %v", err)
		}
	}()
	ds := make([]shard.Dispatch, 1000)
	for i := range ds {
		ds[i] = messageCreate(0, 0, uint64(900000000000000000+i%200))
	}
	b.ReportAllocs()
	b.ResetTimer()
	c0, t0 := cpuTime(), time.Now()
	for i := range b.N {
		d := ds[i%len(ds)]
		d.Seq = uint64(i + 1)
		d.ReceivedAt = time.Now()
		s.HandleDispatch(d)
	}
	// The worker flushes acks 64 at a time: wait for all but the last partial batch.
	want := int64(b.N) &^ 63
	deadline := time.Now().Add(time.Minute)
	for w.acked.Load() < want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // polling, bounded by the deadline
	}
	b.StopTimer()
	if got := w.acked.Load(); got < want {
		b.Fatalf("acked %d of %d", got, want)
	}
	b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "events/s")
	b.ReportMetric((cpuTime()-c0).Seconds()/float64(b.N)*10_000, "cpu-s/10k-events")
	w.mu.Lock()
	lat := slices.Clone(w.latencies)
	w.mu.Unlock()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
}
