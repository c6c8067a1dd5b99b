package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/klauspost/compress/zlib"
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
//
// procs=2/replay takes the simulator's cost out of the machine too: the child records the
// simulator's traffic first (one session per shard: READY, GUILD_CREATEs, then the load
// mix), compresses it as zlib-stream before the clock starts, and replays it as fast as
// the gateway reads, so the gateway's ingest rate is bounded by the gateway and the worker.
func BenchmarkEndToEnd(b *testing.B) {
	for _, tc := range []struct {
		name     string
		world    string // "": simulator and worker in this process; else the child's mode
		rate     float64
		maxBatch uint32
	}{
		{"procs=1/rate=10k", "", 10_000, 256},
		{"procs=1/rate=20k", "", 20_000, 256},
		{"procs=1/rate=max", "", 400_000, 256},
		{"procs=1/rate=max/batch=1", "", 400_000, 1},
		{"procs=2/rate=10k", "sim", 10_000, 256},
		{"procs=2/rate=max", "sim", 400_000, 256},
		{"procs=2/replay/rate=max", "replay", 0, 256},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for range b.N {
				var world e2eWorld
				if tc.world != "" {
					world = startWorldProcess(b, tc.world)
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
	// Exhausted counts replayed shards that ran out of recorded events.
	Exhausted int64 `json:"exhausted"`
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
	if s1.Exhausted > 0 {
		b.Errorf("%d replayed shards ran out of recorded events in the window: the figures understate the rate; record more (replayEventsPerShard)", s1.Exhausted)
	}
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

// localWorld runs the simulator (or a replay of its recorded traffic) and the worker in
// the calling process.
type localWorld struct {
	sim    *discordsim.Server
	replay *replayServer // instead of sim
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

func (l *localWorld) simURL() string {
	if l.replay != nil {
		return l.replay.url
	}
	return l.sim.URL()
}

func (l *localWorld) token() string {
	if l.replay != nil {
		return "replay-token"
	}
	return l.sim.Bots()[0].Token
}

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
	if l.replay != nil {
		l.replay.start() // as fast as the sockets take it, whatever the rate
		return nil
	}
	return l.sim.StartLoad(discordsim.LoadConfig{Rate: rate})
}

func (l *localWorld) stopLoad() {
	if l.replay == nil {
		l.sim.StopLoad()
	}
}

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
	st := worldStats{Acked: l.w.acked.Load(), Samples: len(lat)}
	if l.replay != nil {
		st.Emitted, st.Exhausted = l.replay.sent.Load(), l.replay.exhausted.Load()
	} else {
		ls := l.sim.LoadStats()
		st.Skipped, st.Emitted = ls.Skipped, ls.Emitted
	}
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
	if l.replay != nil {
		l.replay.close()
	} else {
		l.sim.Close()
	}
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

// startWorldProcess starts the child; mode "sim" runs the simulator live, "replay" replays
// traffic it recorded from the simulator beforehand.
func startWorldProcess(b *testing.B, mode string) e2eWorld {
	args := []string{"-test.run=^TestBenchWorldProcess$", "-test.count=1", "-test.v=false", "-test.timeout=10m"}
	if prof := os.Getenv("KUBECORD_BENCH_WORLD_CPUPROFILE"); prof != "" {
		args = append(args, "-test.cpuprofile="+prof) // profiles the child: simulator or replay, and worker
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), benchWorldEnv+"="+mode)
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
	var world *localWorld
	var err error
	switch os.Getenv(benchWorldEnv) {
	case "sim":
		world, err = newLocalWorld()
	case "replay":
		world, err = newReplayWorld(replayEventsPerShard)
	default:
		t.Skip("only run by BenchmarkEndToEnd in a child process")
	}
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
	// The worker acks once it holds 64 or more (at the end of a gRPC message, so flushes
	// fall anywhere, not on multiples of 64): wait for all but the last 63.
	want := max(int64(b.N)-63, 0)
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

// replayEventsPerShard is how many load events the replay records per shard: more than
// the gateway can take in the warm-up and window at 140k events/s.
const replayEventsPerShard = 250_000

// replayServer is a minimal Discord for the gateway's shards: GET /gateway/bot, and a
// websocket per shard that sends Hello, reads Identify, then writes the shard's recorded
// session, pre-compressed and pre-framed, as fast as the socket takes it.
type replayServer struct {
	replayRecording
	url   string
	srv   *http.Server
	begin chan struct{}
	once  sync.Once
	wg    sync.WaitGroup

	sent      atomic.Int64 // load events written
	exhausted atomic.Int64
}

// replayRecording is the simulator's traffic, framed and compressed for replay.
type replayRecording struct {
	Streams  [][]byte // per shard: the websocket frames of the session after Hello
	Setup    []int    // per shard: bytes of Streams before the first load event
	Hello    []byte   // the websocket frame of Hello, the same first bytes of every stream
	PerShard []int64  // load events recorded per shard
}

// loadReplay returns a recording of perShard load events per shard. Recording takes about
// a minute, so it is cached in the temporary directory for the next runs.
func loadReplay(perShard int) (replayRecording, error) {
	path := filepath.Join(os.TempDir(), fmt.Sprintf("kubecord-bench-replay-v1-%d.gob", perShard))
	var rec replayRecording
	if f, err := os.Open(path); err == nil {
		err = gob.NewDecoder(bufio.NewReader(f)).Decode(&rec)
		_ = f.Close() // read only
		if err == nil && len(rec.Streams) > 0 {
			return rec, nil
		}
		rec = replayRecording{}
	}
	frames, setup, err := recordSimulator(perShard)
	if err != nil {
		return rec, err
	}
	hello := []byte(`{"t":null,"s":null,"op":10,"d":{"heartbeat_interval":600000}}`)
	for i, fs := range frames {
		// One zlib stream per connection, as Discord does: Hello compresses to the same
		// bytes at the start of every stream.
		var buf bytes.Buffer
		zw := zlib.NewWriter(&buf)
		var ws []byte
		offsets := make([]int, 0, len(fs)+1)
		for j, f := range append([][]byte{hello}, fs...) {
			if _, err := zw.Write(f); err != nil {
				return rec, err
			}
			if err := zw.Flush(); err != nil {
				return rec, err
			}
			if j == 0 {
				if rec.Hello == nil {
					rec.Hello = appendWSFrame(nil, buf.Bytes())
				}
			} else {
				offsets = append(offsets, len(ws))
				ws = appendWSFrame(ws, buf.Bytes())
			}
			buf.Reset()
		}
		rec.Streams = append(rec.Streams, ws)
		rec.Setup = append(rec.Setup, offsets[setup[i]])
		rec.PerShard = append(rec.PerShard, int64(len(fs)-setup[i]))
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "kubecord-bench-replay-*")
	if err != nil {
		return rec, nil // no cache: the next run records again
	}
	if err := gob.NewEncoder(tmp).Encode(&rec); err == nil && tmp.Close() == nil {
		_ = os.Rename(tmp.Name(), path) // best effort, like the whole cache
	} else {
		_ = tmp.Close()
	}
	_ = os.Remove(tmp.Name()) // gone already when the rename succeeded
	return rec, nil
}

// newReplayWorld records the simulator's traffic and returns a world that replays it.
func newReplayWorld(perShard int) (*localWorld, error) {
	rec, err := loadReplay(perShard)
	if err != nil {
		return nil, err
	}
	r := &replayServer{begin: make(chan struct{}), replayRecording: rec}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r.url = "http://" + lis.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v10/gateway/bot", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"url":"ws://%s/ws","shards":%d,"session_start_limit":{"total":1000,"remaining":1000,"reset_after":86400000,"max_concurrency":16}}`,
			lis.Addr().String(), len(r.Streams))
	})
	mux.HandleFunc("/ws", r.serveWS)
	r.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = r.srv.Serve(lis) }() // ends with close
	return &localWorld{replay: r}, nil
}

// appendWSFrame appends a final, unmasked binary websocket frame (server to client).
func appendWSFrame(b, payload []byte) []byte {
	b = append(b, 0x82)
	switch n := len(payload); {
	case n < 126:
		b = append(b, byte(n))
	case n < 1<<16:
		b = append(b, 126, byte(n>>8), byte(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}

func (r *replayServer) start() { r.once.Do(func() { close(r.begin) }) }

func (r *replayServer) serveWS(w http.ResponseWriter, req *http.Request) {
	up := websocket.Upgrader{}
	ws, err := up.Upgrade(w, req, nil)
	if err != nil {
		return // Upgrade answered the client
	}
	r.wg.Add(1)
	defer r.wg.Done()
	defer func() { _ = ws.Close() }()
	raw := ws.UnderlyingConn()
	if _, err := raw.Write(r.Hello); err != nil {
		return
	}
	_, msg, err := ws.ReadMessage()
	if err != nil {
		return
	}
	var ident struct {
		Op int `json:"op"`
		D  struct {
			Shard [2]int `json:"shard"`
		} `json:"d"`
	}
	if err := json.Unmarshal(msg, &ident); err != nil || ident.Op != 2 || ident.D.Shard[0] >= len(r.Streams) {
		slog.Warn("replay: expected an Identify", "msg", string(msg), "err", err)
		return
	}
	go func() {
		for { // heartbeats and anything else the shard sends are read and dropped
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
	id := ident.D.Shard[0]
	stream, setup := r.Streams[id], r.Setup[id]
	if _, err := raw.Write(stream[:setup]); err != nil { // READY, GUILD_CREATEs
		return
	}
	<-r.begin
	const chunk = 64 << 10
	for rest := stream[setup:]; len(rest) > 0; {
		n := min(chunk, len(rest))
		if _, err := raw.Write(rest[:n]); err != nil {
			return
		}
		rest = rest[n:]
	}
	r.sent.Add(r.PerShard[id])
	r.exhausted.Add(1)
	<-req.Context().Done() // keep the session open: a closed socket would make the shard reconnect
}

func (r *replayServer) close() {
	r.start()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = r.srv.Shutdown(ctx)
	_ = r.srv.Close() // hijacked websockets are not closed by Shutdown
	r.wg.Wait()
}

// recordSimulator runs the simulator and a recording gateway (no compression, no groups)
// until every shard received perShard load events after its GUILD_CREATEs. It returns the
// dispatch frames per shard, as Discord would send them, and per shard the index of the
// first load event.
func recordSimulator(perShard int) ([][][]byte, []int, error) {
	sim, err := discordsim.New(discordsim.Config{Guilds: 200, Shards: 2, IdentifyWindow: 20 * time.Millisecond, ResumeBuffer: 100_000})
	if err != nil {
		return nil, nil, err
	}
	if err := sim.Start(context.Background()); err != nil {
		return nil, nil, err
	}
	defer sim.Close()
	rec, err := New(Config{Token: sim.Bots()[0].Token, RESTBase: sim.URL() + "/api/v10", Compression: "none",
		Intents: 1<<0 | 1<<7 | 1<<8 | 1<<9 | 1<<10 | 1<<11 | 1<<12 | 1<<15, GatewayID: "recorder"}, quietLogger())
	if err != nil {
		return nil, nil, err
	}
	var mu sync.Mutex
	frames := make([][][]byte, 2)
	guildCreates := 0
	rec.onDispatch = func(d shard.Dispatch) {
		f := fmt.Appendf(nil, `{"t":%q,"s":%d,"op":0,"d":`, d.Name, d.Seq)
		f = append(append(f, d.Data...), '}')
		mu.Lock()
		if d.ShardID < len(frames) {
			frames[d.ShardID] = append(frames[d.ShardID], f)
		}
		if d.Name == "GUILD_CREATE" {
			guildCreates++
		}
		mu.Unlock()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := rec.Start(ctx); err != nil {
		return nil, nil, err
	}
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		_ = rec.Stop(sctx) // the recording is complete either way
	}()
	wait := func(what string, cond func() bool) error {
		for deadline := time.Now().Add(2 * time.Minute); !cond(); {
			if time.Now().After(deadline) {
				return fmt.Errorf("recording the simulator: timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond) // polling, bounded by the deadline
		}
		return nil
	}
	if err := wait("the GUILD_CREATEs", func() bool { mu.Lock(); defer mu.Unlock(); return guildCreates >= 200 }); err != nil {
		return nil, nil, err
	}
	mu.Lock()
	setup := []int{len(frames[0]), len(frames[1])}
	mu.Unlock()
	if err := sim.StartLoad(discordsim.LoadConfig{Rate: 400_000}); err != nil {
		return nil, nil, err
	}
	err = wait("the load events", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(frames[0]) >= setup[0]+perShard && len(frames[1]) >= setup[1]+perShard
	})
	sim.StopLoad()
	if err != nil {
		return nil, nil, err
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range frames {
		frames[i] = frames[i][:setup[i]+perShard]
	}
	return frames, setup, nil
}
