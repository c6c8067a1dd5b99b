package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

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
	joined    atomic.Bool
	acked     atomic.Int64
	mu        sync.Mutex
	latencies []time.Duration
}

func runBenchWorker(ctx context.Context, client gatewayv1.GatewayServiceClient, group string, maxBatch uint32, w *benchWorker) error {
	stream, err := client.Consume(ctx)
	if err != nil {
		return err
	}
	if err := stream.Send(&gatewayv1.ConsumeRequest{Kind: &gatewayv1.ConsumeRequest_Subscribe{Subscribe: &gatewayv1.Subscribe{Group: group, MaxInFlight: 4096, MaxBatch: maxBatch}}}); err != nil {
		return err
	}
	if _, err := stream.Recv(); err != nil {
		return err
	}
	w.joined.Store(true)
	acks := make([]uint64, 0, 64)
	lat := make([]time.Duration, 0, 1024)
	var one [1]*gatewayv1.Delivery
	for {
		resp, err := stream.Recv()
		if err != nil {
			return nil // the benchmark ended the stream
		}
		var ds []*gatewayv1.Delivery
		switch k := resp.GetKind().(type) {
		case *gatewayv1.ConsumeResponse_Delivery:
			one[0] = k.Delivery
			ds = one[:]
		case *gatewayv1.ConsumeResponse_DeliveryBatch:
			ds = k.DeliveryBatch.GetDeliveries()
		default:
			continue
		}
		now := time.Now()
		for _, d := range ds {
			lat = append(lat, now.Sub(d.GetEvent().GetReceivedAt().AsTime()))
			acks = append(acks, d.GetDeliveryId())
		}
		// Ack at least every 64 deliveries, and at the end of every batch of at least 64.
		if len(acks) >= 64 || len(lat) >= 1024 {
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
// through the gateway's shards, hub and a gRPC loopback worker that acks in batches. It
// reports acked events/s, CPU per 10k events and the latency from frame received (stamped
// by the shard) to the worker's handler.
//
// procs=1 runs everything in this process: cpu-s/10k-events includes the simulator, which
// generates and compresses every frame, and the worker. procs=2 runs the simulator and the
// worker in a child process (this test binary re-executed, see TestBenchWorldProcess), so
// gateway-cpu-s/10k-events is the gateway's own cost and world-cpu-s/10k-events the
// simulator's and worker's. Rates: "max" asks the simulator for far more than the pipeline
// can take; "10k" is the latency point of the issue. batch=1 is a worker that does not ask
// for DeliveryBatch messages (one gRPC message per delivery, as before batches).
func BenchmarkEndToEnd(b *testing.B) {
	for _, tc := range []struct {
		name     string
		split    bool
		rate     float64
		maxBatch uint32
	}{
		{"procs=1/rate=10k", false, 10_000, 256},
		{"procs=1/rate=20k", false, 20_000, 256},
		{"procs=1/rate=max", false, 400_000, 256},
		{"procs=1/rate=max/batch=1", false, 400_000, 1},
		{"procs=2/rate=10k", true, 10_000, 256},
		{"procs=2/rate=max", true, 400_000, 256},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for range b.N {
				var world e2eWorld
				if tc.split {
					world = startWorldProcess(b)
				} else {
					world = startWorldHere(b)
				}
				benchEndToEnd(b, world, tc.rate, tc.maxBatch, 3*time.Second)
			}
		})
	}
}

// e2eWorld is what surrounds the gateway in the end-to-end benchmark: the simulator that
// feeds its shards and the worker that consumes its group, in this process or a child.
type e2eWorld interface {
	simURL() string
	token() string
	// startWorker starts the worker on the gateway at addr and waits until it joined.
	startWorker(addr string, maxBatch uint32) error
	startLoad(rate float64) error
	stopLoad()
	// mark starts a latency window; stats reports the latencies since the last mark.
	mark() error
	stats() (worldStats, error)
	close()
}

// worldStats is a snapshot of the world's counters.
type worldStats struct {
	Acked   int64         `json:"acked"`
	CPU     time.Duration `json:"cpu"` // of the world's process; 0 when it is this process
	P50     time.Duration `json:"p50"`
	P99     time.Duration `json:"p99"`
	Samples int           `json:"samples"`
	Skipped int64         `json:"skipped"`
	Emitted int64         `json:"emitted"`
}

func benchEndToEnd(b *testing.B, world e2eWorld, rate float64, maxBatch uint32, dur time.Duration) {
	defer world.close()
	cfg := Config{Token: world.token(), RESTBase: world.simURL() + "/api/v10", Compression: shard.CompressionZlib,
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
	addr := serveBench(b, gw)
	defer func() {
		stopRun()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := gw.Stop(sctx); err != nil {
			b.Logf("stopping the gateway: %v", err)
		}
	}()
	if err := world.startWorker(addr, maxBatch); err != nil {
		b.Fatal(err)
	}
	// Let READY and GUILD_CREATEs pass before measuring.
	deadline := time.Now().Add(30 * time.Second)
	for gw.hub.Groups()[0].Acked < 100 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling, bounded by the deadline
	}
	if err := world.startLoad(rate); err != nil {
		b.Fatal(err)
	}
	<-time.After(500 * time.Millisecond) // warm-up at the target rate
	if err := world.mark(); err != nil {
		b.Fatal(err)
	}
	s0, err := world.stats()
	if err != nil {
		b.Fatal(err)
	}
	c0, t0, r0 := cpuTime(), time.Now(), gw.stats.received.Load()
	<-time.After(dur) // the measurement window
	s1, err := world.stats()
	if err != nil {
		b.Fatal(err)
	}
	c1, t1, r1 := cpuTime(), time.Now(), gw.stats.received.Load()
	world.stopLoad()
	b.Logf("group after the window: %+v; world: %+v", gw.hub.Groups(), s1)
	secs := t1.Sub(t0).Seconds()
	events := float64(s1.Acked - s0.Acked)
	if events == 0 {
		b.Fatal("no events acked in the window")
	}
	b.ReportMetric(float64(r1-r0)/secs, "received/s")
	b.ReportMetric(events/secs, "events/s")
	if s1.CPU == 0 {
		b.ReportMetric((c1-c0).Seconds()/events*10_000, "cpu-s/10k-events")
	} else {
		b.ReportMetric((c1-c0).Seconds()/events*10_000, "gateway-cpu-s/10k-events")
		b.ReportMetric((s1.CPU-s0.CPU).Seconds()/events*10_000, "world-cpu-s/10k-events")
	}
	if s1.Samples > 0 {
		b.ReportMetric(float64(s1.P50.Microseconds()), "p50-µs")
		b.ReportMetric(float64(s1.P99.Microseconds()), "p99-µs")
	}
	b.ReportMetric(float64(s1.Skipped-s0.Skipped), "sim-skipped")
}

// serveBench serves gw's GatewayService on a loopback port until the benchmark ends.
func serveBench(b *testing.B, gw *Server) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	g := grpc.NewServer()
	if err := gw.Register(g, prometheus.NewRegistry()); err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = g.Serve(lis) // returns when Stop is called below
	}()
	b.Cleanup(func() {
		gw.hub.Close() // ends the streams so Stop does not wait for them
		g.Stop()
		<-done
	})
	return lis.Addr().String()
}

// localWorld runs the simulator and the worker in the calling process.
type localWorld struct {
	sim    *discordsim.Server
	w      benchWorker
	cancel context.CancelFunc
	done   chan error
	conn   *grpc.ClientConn
}

func newLocalWorld() (*localWorld, error) {
	sim, err := discordsim.New(discordsim.Config{Guilds: 200, Shards: 2, IdentifyWindow: 20 * time.Millisecond, ResumeBuffer: 100_000})
	if err != nil {
		return nil, err
	}
	if err := sim.Start(context.Background()); err != nil {
		return nil, err
	}
	return &localWorld{sim: sim}, nil
}

func startWorldHere(b *testing.B) e2eWorld {
	w, err := newLocalWorld()
	if err != nil {
		b.Fatal(err)
	}
	return w
}

func (l *localWorld) simURL() string { return l.sim.URL() }
func (l *localWorld) token() string  { return l.sim.Bots()[0].Token }

func (l *localWorld) startWorker(addr string, maxBatch uint32) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	l.conn = conn
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel, l.done = cancel, make(chan error, 1)
	go func() {
		l.done <- runBenchWorker(ctx, gatewayv1.NewGatewayServiceClient(conn), "bench", maxBatch, &l.w)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !l.w.joined.Load() {
		if time.Now().After(deadline) {
			return errors.New("the bench worker did not join in 30s")
		}
		select {
		case err := <-l.done:
			l.done <- err
			return fmt.Errorf("the bench worker ended before joining: %v", err)
		case <-time.After(5 * time.Millisecond): // polling, bounded by the deadline
		}
	}
	return nil
}

func (l *localWorld) startLoad(rate float64) error {
	return l.sim.StartLoad(discordsim.LoadConfig{Rate: rate})
}

func (l *localWorld) stopLoad() { l.sim.StopLoad() }

func (l *localWorld) mark() error {
	l.w.mu.Lock()
	l.w.latencies = l.w.latencies[:0]
	l.w.mu.Unlock()
	return nil
}

func (l *localWorld) stats() (worldStats, error) {
	l.w.mu.Lock()
	lat := slices.Clone(l.w.latencies)
	l.w.mu.Unlock()
	slices.Sort(lat)
	ls := l.sim.LoadStats()
	st := worldStats{Acked: l.w.acked.Load(), Samples: len(lat), Skipped: ls.Skipped, Emitted: ls.Emitted}
	if len(lat) > 0 {
		st.P50, st.P99 = lat[len(lat)/2], lat[len(lat)*99/100]
	}
	return st, nil
}

func (l *localWorld) close() {
	if l.cancel != nil {
		l.cancel()
		if err := <-l.done; err != nil {
			slog.Warn("bench worker", "err", err)
		}
	}
	if l.conn != nil {
		_ = l.conn.Close()
	}
	l.sim.Close()
}

// procWorld drives a localWorld in a child process (TestBenchWorldProcess) over its
// stdin and stdout, one command and one answer per line.
type procWorld struct {
	cmd      *exec.Cmd
	in       io.WriteCloser
	out      *bufio.Scanner
	url, tok string
}

const benchWorldEnv = "KUBECORD_BENCH_WORLD_PROCESS"

func startWorldProcess(b *testing.B) e2eWorld {
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchWorldProcess$", "-test.count=1", "-test.v=false")
	cmd.Env = append(os.Environ(), benchWorldEnv+"=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	p := &procWorld{cmd: cmd, in: in, out: bufio.NewScanner(outPipe)}
	line, err := p.read()
	if err != nil {
		p.close()
		b.Fatal(err)
	}
	if _, err := fmt.Sscanf(line, "ready %s %s", &p.url, &p.tok); err != nil {
		p.close()
		b.Fatalf("world process said %q: %v", line, err)
	}
	return p
}

func (p *procWorld) read() (string, error) {
	for p.out.Scan() {
		// The child is a test binary: skip anything that is not an answer (PASS, ok ...).
		if line, ok := strings.CutPrefix(p.out.Text(), "world: "); ok {
			if msg, failed := strings.CutPrefix(line, "error "); failed {
				return "", errors.New(msg)
			}
			return line, nil
		}
	}
	if err := p.out.Err(); err != nil {
		return "", err
	}
	return "", io.ErrUnexpectedEOF
}

func (p *procWorld) call(format string, args ...any) (string, error) {
	if _, err := fmt.Fprintf(p.in, format+"\n", args...); err != nil {
		return "", err
	}
	return p.read()
}

func (p *procWorld) simURL() string { return p.url }
func (p *procWorld) token() string  { return p.tok }

func (p *procWorld) startWorker(addr string, maxBatch uint32) error {
	_, err := p.call("worker %s %d", addr, maxBatch)
	return err
}

func (p *procWorld) startLoad(rate float64) error {
	_, err := p.call("load %f", rate)
	return err
}

func (p *procWorld) stopLoad() {
	_, _ = p.call("stop") // the benchmark only needs the load to end; close handles failures
}

func (p *procWorld) mark() error {
	_, err := p.call("mark")
	return err
}

func (p *procWorld) stats() (worldStats, error) {
	line, err := p.call("stats")
	if err != nil {
		return worldStats{}, err
	}
	var st worldStats
	err = json.Unmarshal([]byte(line), &st)
	return st, err
}

func (p *procWorld) close() {
	_ = p.in.Close() // the child closes its world and exits at the end of its input
	done := make(chan struct{})
	go func() {
		_ = p.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// TestBenchWorldProcess is the child side of BenchmarkEndToEnd/procs=2: it runs the
// simulator and the bench worker and answers the parent's commands. It does nothing in a
// normal test run.
func TestBenchWorldProcess(t *testing.T) {
	if os.Getenv(benchWorldEnv) != "1" {
		t.Skip("only run by BenchmarkEndToEnd in a child process")
	}
	world, err := newLocalWorld()
	if err != nil {
		t.Fatal(err)
	}
	defer world.close()
	say := func(format string, args ...any) {
		_, _ = fmt.Fprintf(os.Stdout, "world: "+format+"\n", args...) // the parent reads stdout
	}
	say("ready %s %s", world.simURL(), world.token())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		var err error
		switch f[0] {
		case "worker":
			var batch uint64
			if len(f) != 3 {
				err = errors.New("usage: worker ADDR MAX_BATCH")
			} else if batch, err = strconv.ParseUint(f[2], 10, 32); err == nil {
				err = world.startWorker(f[1], uint32(batch))
			}
		case "load":
			var rate float64
			if len(f) != 2 {
				err = errors.New("usage: load RATE")
			} else if rate, err = strconv.ParseFloat(f[1], 64); err == nil {
				err = world.startLoad(rate)
			}
		case "stop":
			world.stopLoad()
		case "mark":
			err = world.mark()
		case "stats":
			var st worldStats
			if st, err = world.stats(); err == nil {
				st.CPU = cpuTime()
				var js []byte
				if js, err = json.Marshal(st); err == nil {
					say("%s", js)
					continue
				}
			}
		default:
			err = fmt.Errorf("unknown command %q", f[0])
		}
		if err != nil {
			say("error %v", err)
			continue
		}
		say("ok")
	}
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
	go func() { done <- runBenchWorker(ctx, client, "bench", 256, w) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("worker: %v", err)
		}
	}()
	// Measure from the moment the worker is in (with a small b.N the loop below would
	// otherwise end before the stream opened).
	for deadline := time.Now().Add(30 * time.Second); !w.joined.Load(); {
		if time.Now().After(deadline) {
			b.Fatal("the bench worker did not join in 30s")
		}
		time.Sleep(time.Millisecond) // polling, bounded by the deadline
	}
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
