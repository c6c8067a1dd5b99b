package discordsim

import (
	"bytes"
	"compress/zlib"
	"encoding/json"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// eventTrace connects one session (all intents) and returns what it got.
func eventTrace(t *testing.T, seed uint64, n int) []string {
	s := newSim(t, Config{Guilds: 50, Members: 5000, Seed: seed})
	c := dial(t, s.GatewayURL(), "v=10&compress=zlib-stream")
	c.hello()
	c.identify(botToken(s), nil, AllIntents)
	for range 50 {
		c.untilEvent("GUILD_CREATE")
	}
	l, err := newLoadGen(s, LoadConfig{Rate: 1})
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		l.emitOne()
	}
	var out []string
	for range n {
		p := c.next()
		var d struct {
			GuildID Snowflake `json:"guild_id"`
			Content *string   `json:"content"`
		}
		if err := json.Unmarshal(p.D, &d); err != nil {
			t.Fatalf("%s: %v", p.event(), err)
		}
		if d.GuildID == 0 {
			t.Fatalf("%s without guild_id: %s", p.event(), p.D)
		}
		out = append(out, p.event()+" "+d.GuildID.String())
	}
	return out
}

func TestLoadDeterministicAndSkewed(t *testing.T) {
	t.Parallel()
	a := eventTrace(t, 11, 1000)
	b := eventTrace(t, 11, 1000)
	if !slices.Equal(a, b) {
		t.Fatal("two generators with the same seed produced different event sequences")
	}
	kinds := map[string]int{}
	guilds := map[string]int{}
	for _, e := range a {
		name, gid, _ := bytes.Cut([]byte(e), []byte(" "))
		kinds[string(name)]++
		guilds[string(gid)]++
	}
	for _, want := range loadEventNames {
		if kinds[want] == 0 {
			t.Errorf("no %s in 1000 generated events (mix %v)", want, kinds)
		}
	}
	if kinds["MESSAGE_CREATE"] < kinds["VOICE_STATE_UPDATE"] {
		t.Errorf("mix not shaped like chat traffic: %v", kinds)
	}
	counts := make([]int, 0, len(guilds))
	for _, n := range guilds {
		counts = append(counts, n)
	}
	slices.Sort(counts)
	slices.Reverse(counts)
	top := 0
	for _, n := range counts[:min(3, len(counts))] {
		top += n
	}
	if top < len(a)/2 {
		t.Errorf("the 3 busiest of 50 guilds carry %d of %d events; want most (Zipf skew)", top, len(a))
	}
}

func TestLoadPacedRate(t *testing.T) {
	t.Parallel()
	s := newSim(t, Config{Guilds: 20})
	c := dial(t, s.GatewayURL(), "v=10")
	c.hello()
	c.identify(botToken(s), nil, AllIntents)
	for range 20 {
		c.untilEvent("GUILD_CREATE")
	}
	if err := s.StartLoad(LoadConfig{Rate: 2000}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for range 400 {
		c.next()
	}
	took := time.Since(start)
	s.StopLoad()
	// 400 events at 2000/s take 200 ms; allow for a loaded machine.
	if took < 150*time.Millisecond || took > 3*time.Second {
		t.Fatalf("400 events at 2000/s took %v", took)
	}
	if err := s.StartLoad(LoadConfig{Rate: -1}); err == nil {
		t.Fatal("negative rate accepted")
	}
}

// benchClient reads a zlib-stream connection and inflates every message,
// as a bot does, counting dispatches.
type benchClient struct {
	ws       *websocket.Conn
	messages atomic.Int64
	wg       sync.WaitGroup
}

func newBenchClient(b *testing.B, s *Server, shard, shards int, compress string) *benchClient {
	url := s.GatewayURL() + "/?v=10&encoding=json"
	if compress != "" {
		url += "&compress=" + compress
	}
	ws, resp, err := websocket.DefaultDialer.DialContext(b.Context(), url, nil)
	if err != nil {
		b.Fatal(err)
	}
	_ = resp.Body.Close()
	bc := &benchClient{ws: ws}
	ident, _ := json.Marshal(map[string]any{"op": 2, "d": identifyBody(botToken(s), []int{shard, shards}, AllIntents)})
	if err := ws.WriteMessage(websocket.TextMessage, ident); err != nil {
		b.Fatal(err)
	}
	// One goroutine pulls websocket messages through the inflater, as a
	// bot's gateway reader does.
	src := &wsReader{ws: ws, count: &bc.messages}
	bc.wg.Go(func() {
		if compress != "zlib-stream" {
			_, _ = io.Copy(io.Discard, src)
			return
		}
		zr, err := zlib.NewReader(src)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, zr)
	})
	b.Cleanup(func() {
		_ = ws.Close()
		bc.wg.Wait()
	})
	return bc
}

// wsReader reads the concatenated websocket messages as one stream.
type wsReader struct {
	ws    *websocket.Conn
	cur   []byte
	count *atomic.Int64
}

func (r *wsReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		_, data, err := r.ws.ReadMessage()
		if err != nil {
			return 0, err
		}
		r.cur = data
		r.count.Add(1)
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkLoadDispatch measures generated events delivered per second to
// real clients over loopback that read and inflate every message, and the
// process CPU (simulator plus clients) per 10k events.
//
//	go test -run '^$' -bench BenchmarkLoadDispatch -benchtime 200000x ./discordsim/
func BenchmarkLoadDispatch(b *testing.B) {
	for _, tc := range []struct {
		name     string
		shards   int
		compress string
	}{{"zlib-4shards", 4, "zlib-stream"}, {"zlib-1shard", 1, "zlib-stream"}, {"none-4shards", 4, ""}} {
		b.Run(tc.name, func(b *testing.B) {
			s := newSim(b, Config{Guilds: 1000, Members: 100_000, Shards: tc.shards, MaxConcurrency: tc.shards, HeartbeatInterval: time.Hour})
			clients := make([]*benchClient, tc.shards)
			for i := range clients {
				clients[i] = newBenchClient(b, s, i, tc.shards, tc.compress)
			}
			total := func() int64 {
				var n int64
				for _, c := range clients {
					n += c.messages.Load()
				}
				return n
			}
			waitFor := func(n int64) {
				deadline := time.Now().Add(time.Minute)
				for total() < n {
					if time.Now().After(deadline) {
						b.Fatalf("only %d of %d messages arrived", total(), n)
					}
					time.Sleep(time.Millisecond)
				}
			}
			// Hello + READY + one GUILD_CREATE per guild.
			waitFor(int64(2*tc.shards + 1000))
			l, err := newLoadGen(s, LoadConfig{Rate: 1})
			if err != nil {
				b.Fatal(err)
			}
			base := total()
			b.ReportAllocs()
			cpu0 := cpuTime()
			start := time.Now()
			b.ResetTimer()
			for i := range b.N {
				l.emitOne()
				// Stay within the send queue: a real client that falls
				// 50,000 messages behind is disconnected.
				for i%1000 == 999 && int64(i)-(total()-base) > 20_000 {
					time.Sleep(100 * time.Microsecond)
				}
			}
			waitFor(base + int64(b.N))
			b.StopTimer()
			el := time.Since(start)
			cpu := cpuTime() - cpu0
			b.ReportMetric(float64(b.N)/el.Seconds(), "events/s")
			b.ReportMetric(cpu.Seconds()/float64(b.N)*10_000, "cpu-s/10k-events")
		})
	}
}

// BenchmarkLoadPaced runs the paced generator at 50,000 events/s for the
// benchmark time against 4 zlib-stream shards and reports what arrived.
//
//	go test -run '^$' -bench BenchmarkLoadPaced -benchtime 3x ./discordsim/
func BenchmarkLoadPaced(b *testing.B) {
	const rate = 50_000
	s := newSim(b, Config{Guilds: 1000, Members: 100_000, Shards: 4, MaxConcurrency: 4, HeartbeatInterval: time.Hour})
	clients := make([]*benchClient, 4)
	for i := range clients {
		clients[i] = newBenchClient(b, s, i, 4, "zlib-stream")
	}
	total := func() int64 {
		var n int64
		for _, c := range clients {
			n += c.messages.Load()
		}
		return n
	}
	for deadline := time.Now().Add(time.Minute); total() < 1008; {
		if time.Now().After(deadline) {
			b.Fatal("GUILD_CREATEs never arrived")
		}
		time.Sleep(time.Millisecond)
	}
	for range b.N {
		base := total()
		if err := s.StartLoad(LoadConfig{Rate: rate}); err != nil {
			b.Fatal(err)
		}
		cpu0 := cpuTime() // after building the generator's templates
		start := time.Now()
		time.Sleep(time.Second) // the measurement window itself
		st := s.LoadStats()
		s.StopLoad()
		el := time.Since(start)
		for deadline := time.Now().Add(30 * time.Second); total()-base < st.Emitted; {
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d events arrived", total()-base, st.Emitted)
			}
			time.Sleep(time.Millisecond)
		}
		delivered := time.Since(start)
		cpu := cpuTime() - cpu0
		b.ReportMetric(float64(st.Emitted)/el.Seconds(), "generated/s")
		b.ReportMetric(float64(st.Emitted)/delivered.Seconds(), "delivered/s")
		b.ReportMetric(float64(st.Skipped), "skipped")
		b.ReportMetric(cpu.Seconds()/float64(st.Emitted)*10_000, "cpu-s/10k-events")
	}
}

// TestEveryEventReachedEveryShard runs generated load against 8 zlib-stream
// shards, forces a disconnect and a resume in the middle, and proves with
// the accounting that every (shard, seq) the simulator wrote arrived, and
// that each session's sequence numbers are gapless.
func TestEveryEventReachedEveryShard(t *testing.T) {
	t.Parallel()
	const shards = 8
	// The clients never heartbeat: an hour-long interval keeps a slow run
	// (race detector, busy machine) from timing their sessions out.
	s := newSim(t, Config{Guilds: 200, Members: 20_000, Shards: shards, MaxConcurrency: shards, HeartbeatInterval: time.Hour})
	type shardClient struct {
		c       *testClient
		session string
		resume  string
		got     map[int64]bool
	}
	clients := make([]*shardClient, shards)
	for i := range clients {
		c := dial(t, s.GatewayURL(), "v=10&compress=zlib-stream")
		c.hello()
		r := c.identify(botToken(s), []int{i, shards}, AllIntents)
		clients[i] = &shardClient{c: c, session: r.SessionID, resume: r.ResumeGatewayURL, got: map[int64]bool{1: true}}
	}
	if err := s.StartLoad(LoadConfig{Rate: 1000}); err != nil {
		t.Fatal(err)
	}
	// Read a while, then drop shard 0 mid-stream and resume it.
	read := func(sc *shardClient, n int) {
		for range n {
			if p := sc.c.next(); p.S != nil {
				sc.got[*p.S] = true
			}
		}
	}
	read(clients[0], 100)
	s.Disconnect(ShardTarget(0), CloseUnknownError)
	for {
		if _, ok := <-clients[0].c.in; !ok {
			break
		}
	}
	last := int64(0)
	for q := range clients[0].got {
		last = max(last, q)
	}
	// Resume from the last seq actually received.
	c2 := dial(t, clients[0].resume, "v=10&compress=zlib-stream")
	c2.hello()
	c2.send(opResume, map[string]any{"token": botToken(s), "session_id": clients[0].session, "seq": last})
	clients[0].c = c2
	read(clients[0], 200)
	s.StopLoad()
	if st := s.LoadStats(); st.Running {
		t.Fatal("load still running after StopLoad")
	}
	for i, sc := range clients {
		st := s.GatewayStats()
		var lastSeq int64
		for _, ss := range st.Sessions {
			if ss.SessionID == sc.session {
				lastSeq = ss.LastSeq
			}
		}
		for int64(len(sc.got)) < lastSeq {
			p := sc.c.next()
			if p.S != nil {
				sc.got[*p.S] = true
			}
		}
		// The client has every seq up to lastSeq, so the writer has
		// flushed them; SentSeqs waits for a batch still being recorded.
		set, _ := s.SentSeqs(sc.session)
		if missing := set.Missing(sc.got); len(missing) > 0 {
			t.Fatalf("shard %d: %d sent events never arrived, first %v", i, len(missing), missing[0])
		}
		if len(set) != 1 || set[0].From != 1 || set[0].To != lastSeq {
			t.Fatalf("shard %d: sent %v, want one range 1..%d", i, set, lastSeq)
		}
	}
	if st := s.GatewayStats(); st.Resumes != 1 || st.Dispatches < 200 {
		t.Fatalf("resumes %d dispatches %d", st.Resumes, st.Dispatches)
	}
}

// BenchmarkThousandShards builds the largest world (10,000 guilds, 1,000,000
// members), connects 1,000 zlib-stream shards (each reading and inflating),
// waits for every READY and GUILD_CREATE, then generates 50,000 events/s for
// one second and reports what arrived.
//
//	go test -run '^$' -bench BenchmarkThousandShards -benchtime 1x ./discordsim/
func BenchmarkThousandShards(b *testing.B) {
	const shards, rate = 1000, 50_000
	start := time.Now()
	s := newSim(b, Config{Guilds: 10_000, Members: 1_000_000, Shards: shards, MaxConcurrency: shards, HeartbeatInterval: time.Hour})
	clients := make([]*benchClient, shards)
	for i := range clients {
		clients[i] = newBenchClient(b, s, i, shards, "zlib-stream")
	}
	total := func() int64 {
		var n int64
		for _, c := range clients {
			n += c.messages.Load()
		}
		return n
	}
	// Hello + READY per shard, one GUILD_CREATE per guild.
	for deadline := time.Now().Add(5 * time.Minute); total() < 2*shards+10_000; {
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d messages arrived", total(), 2*shards+10_000)
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.ReportMetric(time.Since(start).Seconds(), "setup-s")
	for range b.N {
		base := total()
		if err := s.StartLoad(LoadConfig{Rate: rate}); err != nil {
			b.Fatal(err)
		}
		cpu0 := cpuTime() // after building the generator's templates
		t0 := time.Now()
		time.Sleep(time.Second) // the measurement window itself
		st := s.LoadStats()
		s.StopLoad()
		gen := time.Since(t0)
		for deadline := time.Now().Add(time.Minute); total()-base < st.Emitted; {
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d events arrived", total()-base, st.Emitted)
			}
			time.Sleep(time.Millisecond)
		}
		cpu := cpuTime() - cpu0
		b.ReportMetric(float64(st.Emitted)/gen.Seconds(), "generated/s")
		b.ReportMetric(float64(st.Emitted)/time.Since(t0).Seconds(), "delivered/s")
		b.ReportMetric(cpu.Seconds()/float64(st.Emitted)*10_000, "cpu-s/10k-events")
	}
}
