// Package multipod_test runs several real `kubecord gateway` processes against one
// simulator and one real redis-server, and proves with the simulator's accounting that
// moving shards between pods (rolling restart, kill -9, scaling, a Redis restart) loses no
// event and never identifies again.
package multipod_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kubecord/kubecord/discordsim"
	gatewayv1 "github.com/kubecord/kubecord/gen/kubecord/gateway/v1"
	"github.com/kubecord/kubecord/internal/redistest"
	"github.com/kubecord/kubecord/internal/testutil"
)

// bin is the kubecord binary built once for the package's tests.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kubecord-multipod-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "kubecord")
	args := []string{"build", "-o", bin}
	if raceBuild {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "github.com/kubecord/kubecord/cmd/kubecord")...)
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building kubecord: %v\n%s", err, out)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// Timings of the test cluster: Discord's protocol with short identify windows, and leases
// short enough that a killed pod's shards move within seconds.
const (
	simWindow = 500 * time.Millisecond
	// idWindow is the pods' identify window: the simulator's plus a margin, as Discord's
	// 5 s gets 250 ms, here larger for a loaded CI machine.
	idWindow   = simWindow + 300*time.Millisecond
	leaseTTL   = 2 * time.Second
	leaseRenew = 250 * time.Millisecond
	group      = "mp"
)

// cluster is one simulator, one redis-server, gateway pods and a worker consuming from
// every pod.
type cluster struct {
	t      *testing.T
	sim    *discordsim.Server
	redis  *redistest.Server
	token  string
	shards int
	rec    *recorder
	// noRedis runs pods without Redis: each owns every shard, coordinating in memory.
	noRedis bool

	mu   sync.Mutex
	pods map[string]*pod
}

type clusterConfig struct {
	shards, concurrency int
	used                int // session starts already spent today
}

func newCluster(t *testing.T, cc clusterConfig) *cluster {
	t.Helper()
	if cc.concurrency == 0 {
		cc.concurrency = 1
	}
	sim, err := discordsim.New(discordsim.Config{Guilds: 40, Shards: cc.shards, MaxConcurrency: cc.concurrency,
		IdentifyWindow: simWindow, ResumeBuffer: 200_000, SessionStartUsed: cc.used})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	c := &cluster{t: t, sim: sim, redis: redistest.Start(t), token: sim.Bots()[0].Token, shards: cc.shards,
		rec: newRecorder(), pods: map[string]*pod{}}
	return c
}

// pod is one `kubecord gateway` process.
type pod struct {
	name, addr string
	cmd        *exec.Cmd
	logs       *testutil.SyncBuffer
	exited     chan struct{}
	stopWorker context.CancelFunc
	workerDone chan struct{}
}

// start runs a gateway pod named name (on addr, or a free port) and a worker member
// consuming from it.
func (c *cluster) start(name, addr string, extra ...string) *pod {
	t := c.t
	t.Helper()
	if addr == "" {
		addr = testutil.FreeAddr(t)
	}
	p := &pod{name: name, addr: addr, logs: &testutil.SyncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, "gateway",
		"--listen", addr, "--metrics-listen", "",
		"--rest-base", c.sim.URL()+"/api/v10",
		"--gateway-id", name, "--groups", group,
		"--lease-ttl", leaseTTL.String(), "--lease-renew", leaseRenew.String(),
		"--session-save", "200ms", "--handoff-timeout", "3s",
		"--identify-window", idWindow.String(),
		"--drain-delay", "200ms", "--stream-heartbeat", "1s", "--reshard-check", "0")
	if !c.noRedis {
		p.cmd.Args = append(p.cmd.Args, "--redis-url", "redis://"+c.redis.Addr)
	}
	p.cmd.Args = append(p.cmd.Args, extra...)
	p.cmd.Env = append(os.Environ(), "KUBECORD_TOKEN="+c.token)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting pod %s: %v", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		c.stop(p, syscall.SIGKILL)
		// The race detector reports as it finds one, so a pod killed afterwards still shows it.
		if logs := p.logs.String(); strings.Contains(logs, "WARNING: DATA RACE") {
			i := strings.Index(logs, "WARNING: DATA RACE")
			t.Errorf("pod %s had a data race:\n%s", name, logs[i:min(len(logs), i+6000)])
		}
		if t.Failed() {
			t.Logf("logs of pod %s:\n%s", name, tail(p.logs.String(), 60))
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	p.stopWorker, p.workerDone = cancel, make(chan struct{})
	go func() {
		defer close(p.workerDone)
		c.rec.consume(ctx, p)
	}()
	c.mu.Lock()
	c.pods[name] = p
	c.mu.Unlock()
	return p
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// stop ends a pod with sig (SIGTERM: a graceful hand-off; SIGKILL: a crash) and waits
// for the process to exit. The pod's worker stops when the process is gone.
func (c *cluster) stop(p *pod, sig syscall.Signal) {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Signal(sig)
		select {
		case <-p.exited:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
			c.t.Errorf("pod %s did not exit within 30s of %v", p.name, sig)
		}
	}
	p.stopWorker()
	<-p.workerDone
	c.mu.Lock()
	if c.pods[p.name] == p {
		delete(c.pods, p.name)
	}
	c.mu.Unlock()
}

// ready returns the shards each running pod reports ready.
func (c *cluster) ready() map[string][]uint32 {
	c.mu.Lock()
	pods := make([]*pod, 0, len(c.pods))
	for _, p := range c.pods {
		pods = append(pods, p)
	}
	c.mu.Unlock()
	out := map[string][]uint32{}
	for _, p := range pods {
		out[p.name] = shardsOf(p.addr, c.shards)
	}
	return out
}

// listShards asks a pod for its shards; nil when it does not answer.
func listShards(addr string) *gatewayv1.ListShardsResponse {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	res, err := gatewayv1.NewGatewayServiceClient(conn).ListShards(ctx, &gatewayv1.ListShardsRequest{})
	if err != nil {
		return nil
	}
	return res
}

// shardsOf returns the shards of a count-shard set a pod reports ready.
func shardsOf(addr string, count int) []uint32 {
	var ids []uint32
	for _, s := range listShards(addr).GetShards() {
		if s.GetState() == gatewayv1.Shard_STATE_READY && s.GetShardCount() == uint32(count) {
			ids = append(ids, s.GetShardId())
		}
	}
	slices.Sort(ids)
	return ids
}

// waitSpread waits until every shard is ready on exactly one pod, with each pod holding
// a fair share (floor or ceil of shards/pods), and returns how long it took.
func (c *cluster) waitSpread(timeout time.Duration) time.Duration {
	c.t.Helper()
	start := time.Now()
	var last map[string][]uint32
	for time.Since(start) < timeout {
		last = c.ready()
		if spreadOK(last, c.shards) == nil {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond) // polling with a deadline
	}
	c.t.Fatalf("shards not spread fairly over the pods after %s: %v (%v)", timeout, last, spreadOK(last, c.shards))
	return 0
}

func spreadOK(byPod map[string][]uint32, shards int) error {
	if len(byPod) == 0 {
		return errors.New("no pod")
	}
	lo, hi := shards/len(byPod), (shards+len(byPod)-1)/len(byPod)
	seen := map[uint32]string{}
	for name, ids := range byPod {
		if len(ids) < lo || len(ids) > hi {
			return fmt.Errorf("pod %s runs %d shards, want %d..%d", name, len(ids), lo, hi)
		}
		for _, id := range ids {
			if other, dup := seen[id]; dup {
				return fmt.Errorf("shard %d ready on %s and %s", id, other, name)
			}
			seen[id] = name
		}
	}
	if len(seen) != shards {
		return fmt.Errorf("%d of %d shards ready", len(seen), shards)
	}
	return nil
}

// recorder is the worker: one member of the group per pod, recording every delivery.
type recorder struct {
	mu     sync.Mutex
	got    map[eventKey]*tally
	total  int
	latest time.Time
	// messages counts, per MESSAGE_CREATE message id, first and redelivered deliveries:
	// the identity of an event across shard sets, which number events differently.
	messages map[string]*tally
}

type eventKey struct {
	session string
	seq     uint64
}

type tally struct{ first, redelivered int }

func (tl *tally) count(redelivered bool) {
	if redelivered {
		tl.redelivered++
	} else {
		tl.first++
	}
}

func newRecorder() *recorder {
	return &recorder{got: map[eventKey]*tally{}, messages: map[string]*tally{}}
}

// consume keeps a Consume stream to the pod open (reconnecting while the pod restarts)
// and acks every delivery after recording it.
func (r *recorder) consume(ctx context.Context, p *pod) {
	conn, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return
	}
	defer func() { _ = conn.Close() }()
	client := gatewayv1.NewGatewayServiceClient(conn)
	for ctx.Err() == nil {
		_ = r.stream(ctx, client, p.name)
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (r *recorder) stream(ctx context.Context, client gatewayv1.GatewayServiceClient, member string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := client.Consume(ctx)
	if err != nil {
		return err
	}
	if err := st.Send(&gatewayv1.ConsumeRequest{Kind: &gatewayv1.ConsumeRequest_Subscribe{Subscribe: &gatewayv1.Subscribe{
		Group: group, MemberId: "worker-" + member, MaxInFlight: 1000}}}); err != nil {
		return err
	}
	for {
		res, err := st.Recv()
		if err != nil {
			return err
		}
		d := res.GetDelivery()
		if d == nil {
			continue
		}
		r.add(d)
		if err := st.Send(&gatewayv1.ConsumeRequest{Kind: &gatewayv1.ConsumeRequest_Ack{Ack: &gatewayv1.Ack{
			DeliveryIds: []uint64{d.GetDeliveryId()}}}}); err != nil {
			return err
		}
	}
}

func (r *recorder) add(d *gatewayv1.Delivery) {
	ev := d.GetEvent()
	if ev.GetSequence() == 0 {
		return // RESUMED carries no sequence
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	k := eventKey{ev.GetSessionId(), ev.GetSequence()}
	tl := r.got[k]
	if tl == nil {
		tl = &tally{}
		r.got[k] = tl
	}
	tl.count(d.GetRedelivered())
	if ev.GetName() == "MESSAGE_CREATE" {
		var m struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(ev.GetRaw(), &m) == nil {
			mt := r.messages[m.ID]
			if mt == nil {
				mt = &tally{}
				r.messages[m.ID] = mt
			}
			mt.count(d.GetRedelivered())
		}
	}
	r.total++
	r.latest = time.Now()
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}

// accounting compares what the simulator sent with what the worker received.
type accounting struct {
	sent, received, missing, unflaggedDups, flaggedDups int
	firstMissing                                        []string
}

func (c *cluster) account() accounting {
	var a accounting
	c.rec.mu.Lock()
	defer c.rec.mu.Unlock()
	for _, s := range c.sim.Sessions() {
		for _, rg := range s.Sent {
			for seq := rg.From; seq <= rg.To; seq++ {
				a.sent++
				tl := c.rec.got[eventKey{s.SessionID, uint64(seq)}]
				if tl == nil || tl.first+tl.redelivered == 0 {
					a.missing++
					if len(a.firstMissing) < 10 {
						a.firstMissing = append(a.firstMissing, fmt.Sprintf("shard %d session %s seq %d", s.Shard[0], s.SessionID, seq))
					}
					continue
				}
				a.received++
				if tl.first > 1 {
					a.unflaggedDups += tl.first - 1
				}
				if tl.first+tl.redelivered > 1 {
					a.flaggedDups += tl.redelivered - max(0, 1-tl.first)
				}
			}
		}
	}
	return a
}

// identifies is the simulator's identify count so far.
func (c *cluster) identifies() int64 { return c.sim.GatewayStats().Identifies }

// settle stops the load, waits until everything sent was received (or the deadline),
// and checks the accounting: nothing lost, duplicates only when flagged, and no identify
// since the count was wantIdentifies.
func (c *cluster) settle(wantIdentifies int64) accounting {
	c.t.Helper()
	c.sim.StopLoad()
	deadline := time.Now().Add(30 * time.Second)
	var a accounting
	for {
		a = c.account()
		if a.missing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond) // polling with a deadline
	}
	st := c.sim.GatewayStats()
	c.t.Logf("accounting: %d sent, %d received, %d missing, %d flagged redeliveries, %d unflagged duplicates; identifies %d, resumes %d",
		a.sent, a.received, a.missing, a.flaggedDups, a.unflaggedDups, st.Identifies, st.Resumes)
	if a.sent == 0 {
		c.t.Error("the simulator sent nothing: the test proves nothing")
	}
	if a.missing > 0 {
		c.t.Errorf("%d events sent by the simulator never reached the group, e.g. %v", a.missing, a.firstMissing)
	}
	if a.unflaggedDups > 0 {
		c.t.Errorf("%d duplicate deliveries were not flagged as redelivered", a.unflaggedDups)
	}
	if st.Identifies != wantIdentifies {
		c.t.Errorf("the simulator saw %d identifies, want %d (moving shards must resume, not identify)", st.Identifies, wantIdentifies)
	}
	if st.IdentifyRateLimited != 0 {
		c.t.Errorf("%d identifies were sent inside their bucket's window", st.IdentifyRateLimited)
	}
	return a
}

// load starts the simulator's generated traffic and waits until the worker receives it.
func (c *cluster) load(rate float64) {
	c.t.Helper()
	if err := c.sim.StartLoad(discordsim.LoadConfig{Rate: rate}); err != nil {
		c.t.Fatal(err)
	}
	c.waitFlow()
}

// waitFlow waits until the worker receives new events.
func (c *cluster) waitFlow() {
	c.t.Helper()
	before := c.rec.count()
	deadline := time.Now().Add(15 * time.Second)
	for c.rec.count() < before+50 {
		if time.Now().After(deadline) {
			c.t.Fatalf("events stopped flowing to the worker (%d received)", c.rec.count())
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
}

// resumesAfter waits until the simulator has seen n more resumes than before and returns
// how long that took from since.
func (c *cluster) resumesAfter(before int64, n int, since time.Time) time.Duration {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for c.sim.GatewayStats().Resumes < before+int64(n) {
		if time.Now().After(deadline) {
			c.t.Fatalf("%d resumes after %s, want %d", c.sim.GatewayStats().Resumes-before, time.Since(since), n)
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
	return time.Since(since)
}

func TestRollingRestart(t *testing.T) {
	c := newCluster(t, clusterConfig{shards: 4})
	a := c.start("pod-a", "")
	b := c.start("pod-b", "")
	c.waitSpread(30 * time.Second)
	ids := c.identifies()
	c.load(400)
	for _, p := range []*pod{a, b} {
		moved := len(c.ready()[p.name])
		before := c.sim.GatewayStats().Resumes
		began := time.Now()
		c.stop(p, syscall.SIGTERM)
		took := c.resumesAfter(before, moved, began)
		t.Logf("SIGTERM %s: its %d shards resumed on the other pod %s after the signal", p.name, moved, took.Round(time.Millisecond))
		c.waitFlow()
		c.start(p.name, p.addr)
		c.waitSpread(30 * time.Second)
		c.waitFlow()
	}
	c.settle(ids)
}

func TestKill9(t *testing.T) {
	c := newCluster(t, clusterConfig{shards: 4})
	c.start("pod-a", "")
	b := c.start("pod-b", "")
	c.waitSpread(30 * time.Second)
	ids := c.identifies()
	c.load(400)
	moved := len(c.ready()["pod-b"])
	before := c.sim.GatewayStats().Resumes
	began := time.Now()
	c.stop(b, syscall.SIGKILL)
	took := c.resumesAfter(before, moved, began)
	t.Logf("SIGKILL pod-b: its %d shards resumed on pod-a %s after the kill (lease TTL %s)", moved, took.Round(time.Millisecond), leaseTTL)
	if took < leaseTTL/2 {
		t.Errorf("shards of a killed pod moved after %s, before its leases (TTL %s) could expire", took, leaseTTL)
	}
	c.waitSpread(30 * time.Second)
	c.waitFlow()
	a := c.settle(ids)
	if a.flaggedDups == 0 {
		t.Log("no replayed event was flagged: the killed pod had everything acked and saved")
	}
}

func TestScale(t *testing.T) {
	c := newCluster(t, clusterConfig{shards: 6})
	a := c.start("pod-a", "")
	b := c.start("pod-b", "")
	c.waitSpread(30 * time.Second)
	ids := c.identifies()
	c.load(400)
	p3 := c.start("pod-c", "")
	d := c.waitSpread(30 * time.Second)
	t.Logf("scale 2 -> 3: fair spread after %s: %v", d.Round(time.Millisecond), c.ready())
	c.waitFlow()
	began := time.Now()
	c.stop(b, syscall.SIGTERM)
	c.stop(p3, syscall.SIGTERM)
	c.waitSpread(30 * time.Second)
	t.Logf("scale 3 -> 1: every shard on %s %s after the first SIGTERM", a.name, time.Since(began).Round(time.Millisecond))
	c.waitFlow()
	c.settle(ids)
}

// TestRedisRestart loses Redis (and every lease, session and identify key in it) under
// load: the pods keep serving their shards through the outage, take their leases back
// and save their sessions again when Redis returns, without moving or re-identifying a
// shard; a pod killed afterwards still hands its shards over by resuming.
func TestRedisRestart(t *testing.T) {
	c := newCluster(t, clusterConfig{shards: 4})
	c.start("pod-a", "")
	c.start("pod-b", "")
	c.waitSpread(30 * time.Second)
	ids := c.identifies()
	c.load(400)
	before := c.ready()
	c.redis.Stop()
	c.waitFlow()             // events still flow with Redis down
	time.Sleep(2 * leaseTTL) // longer than a lease: nothing may move
	if got := c.ready(); !mapsEqual(got, before) {
		t.Errorf("shards moved during the Redis outage: %v, want %v", got, before)
	}
	c.waitFlow()
	c.redis.Restart()
	deadline := time.Now().Add(15 * time.Second)
	for {
		n, err := countKeys(c.redis.Addr, "*:lease:shard:*")
		if err == nil && n == c.shards {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("leases in Redis after its restart: %d, %v; want %d", n, err, c.shards)
		}
		time.Sleep(50 * time.Millisecond) // polling with a deadline
	}
	if got := c.ready(); !mapsEqual(got, before) {
		t.Errorf("shards after the Redis restart: %v, want unchanged %v", got, before)
	}
	c.waitFlow()
	// The sessions Redis lost are saved again, so a pod killed now still hands its shards
	// over by resuming.
	deadline = time.Now().Add(15 * time.Second)
	for {
		n, err := countKeys(c.redis.Addr, "*:session:*")
		if err == nil && n == c.shards {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sessions in Redis after its restart: %d, %v; want %d", n, err, c.shards)
		}
		time.Sleep(50 * time.Millisecond) // polling with a deadline
	}
	c.mu.Lock()
	b := c.pods["pod-b"]
	c.mu.Unlock()
	c.stop(b, syscall.SIGKILL)
	c.waitSpread(30 * time.Second)
	c.waitFlow()
	c.settle(ids)
}

func mapsEqual(a, b map[string][]uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// countKeys counts the keys matching pattern (KEYS is fine on a test server).
func countKeys(addr, pattern string) (int, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer func() { _ = c.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	keys, err := c.Keys(ctx, pattern).Result()
	return len(keys), err
}

// TestIdentifyWindows starts 64 shards with max_concurrency 16 across 3 pods at once: the
// identify windows and the budget are shared through Redis, so the 64 identifies fit in
// ceil(64/16) = 4 windows and none is rate limited.
func TestIdentifyWindows(t *testing.T) {
	const shards, conc = 64, 16
	c := newCluster(t, clusterConfig{shards: shards, concurrency: conc})
	for _, name := range []string{"pod-a", "pod-b", "pod-c"} {
		c.start(name, "")
	}
	c.waitSpread(60 * time.Second)
	log := c.sim.IdentifyLog()
	if len(log) != shards {
		t.Fatalf("%d identifies, want %d", len(log), shards)
	}
	perBucket := map[int][]time.Time{}
	for _, r := range log {
		perBucket[r.Shard%conc] = append(perBucket[r.Shard%conc], r.At)
	}
	for b, times := range perBucket {
		for i := 1; i < len(times); i++ {
			if gap := times[i].Sub(times[i-1]); gap < simWindow {
				t.Errorf("bucket %d: identifies %s apart, inside the %s window", b, gap, simWindow)
			}
		}
	}
	span := log[len(log)-1].At.Sub(log[0].At)
	windows := int(span/idWindow) + 1
	t.Logf("%d shards, max_concurrency %d, 3 pods: %d identifies over %s = %d windows of %s (ceil(N/C) = %d)",
		shards, conc, len(log), span.Round(time.Millisecond), windows, idWindow, (shards+conc-1)/conc)
	if want := (shards + conc - 1) / conc; windows > want {
		t.Errorf("start-up took %d identify windows, want at most %d", windows, want)
	}
	if st := c.sim.GatewayStats(); st.IdentifyRateLimited != 0 {
		t.Errorf("%d identifies were rate limited", st.IdentifyRateLimited)
	}
}

// TestReshard grows the bot from 2 to 4 shards under load, on two pods, because GET
// /gateway/bot starts recommending 4: the new set warms up in shadow, takes over, and the
// worker sees every message posted during the change exactly once.
func TestReshard(t *testing.T) {
	c := newCluster(t, clusterConfig{shards: 2})
	c.start("pod-a", "", "--reshard-check", "300ms")
	c.start("pod-b", "", "--reshard-check", "300ms")
	c.waitSpread(30 * time.Second)
	ids := c.identifies()
	c.load(300)

	poster := c.post()
	time.Sleep(300 * time.Millisecond) // messages before the change, too
	if err := c.sim.SetRecommendedShards(4); err != nil {
		t.Fatal(err)
	}
	c.shards = 4
	took := c.waitSpread(60 * time.Second)
	t.Logf("reshard 2 -> 4 on 2 pods: the 4 new shards were live %s after Discord began recommending 4", took.Round(time.Millisecond))
	time.Sleep(300 * time.Millisecond) // messages after the change, too
	c.checkMessages(poster.stop())
	if got := c.identifies(); got != ids+4 {
		t.Errorf("%d identifies since start-up, want 4 (one per new shard)", got-ids)
	}
	for name, p := range c.pods {
		for _, line := range strings.Split(p.logs.String(), "\n") {
			if strings.Contains(line, "resharding done") {
				t.Logf("%s: %s", name, line)
			}
		}
		if n := listShards(p.addr).GetShardCount(); n != 4 {
			t.Errorf("pod %s reports shard count %d, want 4", name, n)
		}
	}
}

// TestBudgetRefused starts a pod whose shards would need more identifies than the daily
// session start budget has left: the pod refuses, with an error naming the numbers, and
// spends nothing.
func TestBudgetRefused(t *testing.T) {
	c := newCluster(t, clusterConfig{shards: 4, used: 998})
	p := c.start("pod-a", "")
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("a pod whose start would exhaust the session budget is still running after 30s")
	}
	if p.cmd.ProcessState.Success() {
		t.Error("the pod exited with status 0, want a failure")
	}
	logs := p.logs.String()
	if want := "2 of 1000 remain"; !strings.Contains(logs, want) || !strings.Contains(logs, "starting 4 sessions") {
		t.Errorf("the pod's error does not name the numbers (want %q and \"starting 4 sessions\"):\n%s", want, tail(logs, 20))
	}
	if n := c.identifies(); n != 0 {
		t.Errorf("%d identifies, want none", n)
	}
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "remain") {
			t.Logf("the pod said: %s", line)
			break
		}
	}
}

// poster is a person posting a message every few milliseconds.
type poster struct {
	mu     sync.Mutex
	posted []string
	quit   chan struct{}
	done   chan struct{}
}

// post starts a poster; stop it to get the ids of the messages posted.
func (c *cluster) post() *poster {
	p := &poster{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for i := uint64(0); ; i++ {
			select {
			case <-p.quit:
				return
			case <-time.After(5 * time.Millisecond):
			}
			ch, user, err := c.sim.ChatSpot(i)
			if err != nil {
				c.t.Errorf("ChatSpot: %v", err)
				return
			}
			m, err := c.sim.UserMessage(ch, user, fmt.Sprintf("message %d", i))
			if err != nil {
				c.t.Errorf("UserMessage: %v", err)
				return
			}
			p.mu.Lock()
			p.posted = append(p.posted, m.ID.String())
			p.mu.Unlock()
		}
	}()
	return p
}

func (p *poster) stop() []string {
	close(p.quit)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.posted
}

// checkMessages waits until every posted message reached the worker and checks none
// arrived twice without the redelivered flag.
func (c *cluster) checkMessages(posted []string) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var missing, dups, flagged int
	for {
		missing, dups, flagged = 0, 0, 0
		c.rec.mu.Lock()
		for _, id := range posted {
			tl := c.rec.messages[id]
			switch {
			case tl == nil:
				missing++
			case tl.first > 1:
				dups += tl.first - 1
			}
			if tl != nil {
				flagged += tl.redelivered
			}
		}
		c.rec.mu.Unlock()
		if missing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond) // polling with a deadline
	}
	c.t.Logf("%d messages posted: %d missing, %d unflagged duplicates, %d flagged redeliveries", len(posted), missing, dups, flagged)
	if len(posted) == 0 {
		c.t.Error("no message was posted: the check proves nothing")
	}
	if missing > 0 {
		c.t.Errorf("%d posted messages never reached the worker", missing)
	}
	if dups > 0 {
		c.t.Errorf("%d messages reached the worker twice without the redelivered flag", dups)
	}
}

// kubecord runs the kubecord binary with the bot's token in the environment.
func (c *cluster) kubecord(args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "KUBECORD_TOKEN="+c.token)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestReshardByCommand reshards a one-pod bot from 2 to 3 shards with `kubecord reshard`.
func TestReshardByCommand(t *testing.T) {
	c := newCluster(t, clusterConfig{shards: 2})
	c.start("pod-a", "")
	c.waitSpread(30 * time.Second)
	ids := c.identifies()
	redisURL := "redis://" + c.redis.Addr
	if out, err := c.kubecord("reshard", "--redis-url", redisURL, "--shard-count", "2"); err == nil || !strings.Contains(out, "already runs 2 shards") {
		t.Errorf("resharding to the current count = %v, %q; want a refusal saying so", err, out)
	}
	c.load(300)
	poster := c.post()
	time.Sleep(200 * time.Millisecond)
	out, err := c.kubecord("reshard", "--redis-url", redisURL, "--shard-count", "3")
	if err != nil || !strings.Contains(out, "resharding from 2 to 3 shards") {
		t.Fatalf("kubecord reshard = %v, %q", err, out)
	}
	if out, err := c.kubecord("reshard", "--redis-url", redisURL, "--shard-count", "5"); err == nil || !strings.Contains(out, "under way") {
		t.Errorf("a second reshard during the first = %v, %q; want a refusal saying one is under way", err, out)
	}
	c.shards = 3
	took := c.waitSpread(60 * time.Second)
	t.Logf("kubecord reshard 2 -> 3 on one pod: live after %s", took.Round(time.Millisecond))
	time.Sleep(200 * time.Millisecond)
	c.checkMessages(poster.stop())
	if got := c.identifies(); got != ids+3 {
		t.Errorf("%d identifies since start-up, want 3", got-ids)
	}
	out, err = c.kubecord("reshard", "--redis-url", redisURL, "--status")
	if err != nil || !strings.Contains(out, "active shard count: 3") || !strings.Contains(out, "reshard 2 -> 3: done") {
		t.Errorf("kubecord reshard --status = %v, %q", err, out)
	}
	if out, err := c.kubecord("reshard", "--shard-count", "3"); err == nil || !strings.Contains(out, "--gateway") || !strings.Contains(out, "--redis-url") {
		t.Errorf("reshard without --gateway or --redis-url = %v, %q; want an error naming both flags", err, out)
	}
}

// TestReshardWithoutRedis reshards a pod that runs without Redis (as `kubecord all` does),
// asked over gRPC with `kubecord reshard --gateway`.
func TestReshardWithoutRedis(t *testing.T) {
	c := newCluster(t, clusterConfig{shards: 2})
	c.noRedis = true
	p := c.start("pod-a", "")
	c.waitSpread(30 * time.Second)
	ids := c.identifies()
	c.load(300)
	poster := c.post()
	time.Sleep(200 * time.Millisecond)
	out, err := c.kubecord("reshard", "--gateway", p.addr, "--shard-count", "3")
	if err != nil || !strings.Contains(out, "resharding from 2 to 3 shards") {
		t.Fatalf("kubecord reshard --gateway = %v, %q", err, out)
	}
	if out, err := c.kubecord("reshard", "--gateway", p.addr, "--shard-count", "5"); err == nil || !strings.Contains(out, "under way") {
		t.Errorf("a second reshard during the first = %v, %q; want a refusal saying one is under way", err, out)
	}
	c.shards = 3
	took := c.waitSpread(60 * time.Second)
	t.Logf("reshard 2 -> 3 without Redis: live after %s", took.Round(time.Millisecond))
	time.Sleep(200 * time.Millisecond)
	c.checkMessages(poster.stop())
	if got := c.identifies(); got != ids+3 {
		t.Errorf("%d identifies since start-up, want 3", got-ids)
	}
	out, err = c.kubecord("reshard", "--gateway", p.addr, "--status")
	if err != nil || !strings.Contains(out, "active shard count: 3") || !strings.Contains(out, "reshard 2 -> 3: done") {
		t.Errorf("kubecord reshard --gateway --status = %v, %q", err, out)
	}
}

// TestReshardPodKilled kills one of two pods (kill -9) in the middle of a reshard: the other
// pod takes over both shard sets, the reshard finishes, and no posted message is lost or
// reaches the worker twice without the redelivered flag. It reshards from 4 shards down to
// 2, so whichever new shard the killed pod ran has the id of a shard of the old set.
func TestReshardPodKilled(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after time.Duration // from the reshard request to the kill
		// logLine, when set, is the line of pod-b's log that triggers the kill.
		logLine string
	}{
		{name: "while warming", after: 300 * time.Millisecond},
		{name: "while switching"}, // as soon as the plan says switching
		// Its old shards handed off, pod-b's shadow holds the only copy of what they no
		// longer receive: the pod taking its new shards over must have it replayed.
		{name: "after handing off its old shards", logLine: "shard handed off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, clusterConfig{shards: 4})
			c.start("pod-a", "")
			b := c.start("pod-b", "")
			c.waitSpread(30 * time.Second)
			c.load(300)
			poster := c.post()
			time.Sleep(300 * time.Millisecond)
			redisURL := "redis://" + c.redis.Addr
			if out, err := c.kubecord("reshard", "--redis-url", redisURL, "--shard-count", "2"); err != nil {
				t.Fatalf("kubecord reshard = %v, %q", err, out)
			}
			switch {
			case tc.after > 0:
				time.Sleep(tc.after)
			case tc.logLine != "":
				// Counted from the switch on: pod-b may hand off a new shard while warming. Its
				// old shards go within a reshard step of the switch; should that have happened
				// before the count was taken, the wait ends at its deadline and the kill still
				// comes after the hand-off.
				waitSwitching(t, b.addr)
				seen := strings.Count(b.logs.String(), tc.logLine)
				for deadline := time.Now().Add(5 * time.Second); strings.Count(b.logs.String(), tc.logLine) == seen && time.Now().Before(deadline); {
					time.Sleep(time.Millisecond) // polling with a deadline
				}
			default:
				waitSwitching(t, b.addr)
			}
			c.stop(b, syscall.SIGKILL)
			c.shards = 2
			took := c.waitSpread(60 * time.Second)
			t.Logf("pod-b killed %s: the 2 new shards were live on pod-a %s later", tc.name, took.Round(time.Millisecond))
			time.Sleep(300 * time.Millisecond)
			c.checkMessages(poster.stop())
		})
	}
}

// waitSwitching waits until the pod at addr reports the reshard in its switching phase.
func waitSwitching(t *testing.T, addr string) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	client := gatewayv1.NewGatewayServiceClient(conn)
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := client.GetReshardStatus(t.Context(), &gatewayv1.GetReshardStatusRequest{})
		if err == nil && st.GetReshard().GetPhase() == gatewayv1.ReshardPlan_PHASE_SWITCHING {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reshard never reached the switching phase (last status %v, %v)", st, err)
		}
		time.Sleep(2 * time.Millisecond) // polling with a deadline
	}
}
