package discordsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const allNonPrivileged = AllIntents &^ privilegedIntents

func botToken(s *Server) string { return s.Bots()[0].Token }

func TestReadyAndGuildCreatePerShard(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		shards int
		query  string
	}{
		{"one shard json", 1, "v=10&encoding=json"},
		{"three shards zlib", 3, "v=10&encoding=json&compress=zlib-stream"},
		{"two shards zstd v9", 2, "v=9&encoding=json&compress=zstd-stream"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newSim(t, Config{Guilds: 30, Members: 3000, MaxConcurrency: tc.shards})
			seen := map[Snowflake]int{}
			for shard := range tc.shards {
				c := dial(t, s.GatewayURL(), tc.query)
				c.hello()
				r := c.identify(botToken(s), []int{shard, tc.shards}, AllIntents)
				if r.SessionID == "" || r.ResumeGatewayURL == "" || r.ResumeGatewayURL == s.GatewayURL() {
					t.Fatalf("READY session_id %q resume_gateway_url %q (gateway %s): want both set and distinct", r.SessionID, r.ResumeGatewayURL, s.GatewayURL())
				}
				if r.Shard[0] != shard || r.Shard[1] != tc.shards || r.User.ID != s.Bots()[0].ID {
					t.Fatalf("READY shard %v user %v, want [%d %d] and the bot", r.Shard, r.User.ID, shard, tc.shards)
				}
				for _, g := range r.Guilds {
					if !g.Unavailable || ShardFor(g.ID, tc.shards) != shard {
						t.Fatalf("READY guild %v unavailable=%v on shard %d", g.ID, g.Unavailable, shard)
					}
				}
				for range r.Guilds {
					p := c.untilEvent("GUILD_CREATE")
					var gc struct {
						ID          Snowflake `json:"id"`
						MemberCount int       `json:"member_count"`
						Channels    []Channel `json:"channels"`
					}
					if err := json.Unmarshal(p.D, &gc); err != nil {
						t.Fatal(err)
					}
					if ShardFor(gc.ID, tc.shards) != shard {
						t.Fatalf("GUILD_CREATE %v arrived on shard %d", gc.ID, shard)
					}
					if gc.MemberCount < 2 || len(gc.Channels) == 0 {
						t.Fatalf("GUILD_CREATE %v has %d members %d channels", gc.ID, gc.MemberCount, len(gc.Channels))
					}
					seen[gc.ID]++
				}
			}
			if len(seen) != 30 {
				t.Fatalf("got GUILD_CREATE for %d guilds, want all 30 exactly once across shards", len(seen))
			}
			for id, n := range seen {
				if n != 1 {
					t.Fatalf("guild %v got %d GUILD_CREATEs", id, n)
				}
			}
		})
	}
}

func TestCloseCodes(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 5000)
	limited := Bot{Token: "limited-token", Name: "limited"}
	for _, tc := range []struct {
		name  string
		query string
		do    func(c *testClient, tok string)
		want  int
	}{
		{"bad version", "v=8&encoding=json", nil, CloseInvalidAPIVersion},
		{"no version", "encoding=json", nil, CloseInvalidAPIVersion},
		{"etf", "v=10&encoding=etf", nil, CloseDecodeError},
		{"unknown opcode", "v=10", func(c *testClient, tok string) {
			c.identify(tok, nil, IntentGuilds)
			c.send(42, nil)
		}, CloseUnknownOpcode},
		{"decode error", "v=10", func(c *testClient, _ string) { c.sendRaw("{not json") }, CloseDecodeError},
		{"payload too big", "v=10", func(c *testClient, _ string) { c.sendRaw(`{"op":1,"d":"` + long + `"}`) }, CloseDecodeError},
		{"not authenticated", "v=10", func(c *testClient, _ string) { c.send(opRequestMembers, map[string]any{"guild_id": "1"}) }, CloseNotAuthenticated},
		{"bad token", "v=10", func(c *testClient, _ string) { c.send(opIdentify, identifyBody("nope", nil, 1)) }, CloseAuthenticationFailed},
		{"already authenticated", "v=10", func(c *testClient, tok string) {
			c.identify(tok, nil, IntentGuilds)
			c.send(opIdentify, identifyBody(tok, nil, IntentGuilds))
		}, CloseAlreadyAuthenticated},
		{"invalid seq", "v=10", func(c *testClient, tok string) {
			r := c.identify(tok, nil, IntentGuilds)
			c2 := dial(c.t, strings.TrimSuffix(r.ResumeGatewayURL, "/"), "v=10")
			c2.hello()
			c2.send(opResume, map[string]any{"token": tok, "session_id": r.SessionID, "seq": 1_000_000})
			if got := c2.closeCode(); got != CloseInvalidSeq {
				c.t.Errorf("resume with future seq closed with %d, want 4007", got)
			}
			c.sendRaw("{bad") // end the first connection with a known code
		}, CloseDecodeError},
		{"invalid shard", "v=10", func(c *testClient, tok string) { c.send(opIdentify, identifyBody(tok, []int{2, 2}, 1)) }, CloseInvalidShard},
		{"invalid shard shape", "v=10", func(c *testClient, tok string) { c.send(opIdentify, identifyBody(tok, []int{0}, 1)) }, CloseInvalidShard},
		{"sharding required", "v=10", func(c *testClient, tok string) { c.send(opIdentify, identifyBody(tok, []int{0, 1}, 1)) }, -CloseShardingRequired},
		{"invalid intents", "v=10", func(c *testClient, tok string) { c.send(opIdentify, identifyBody(tok, nil, 1<<30)) }, CloseInvalidIntents},
		{"missing intents", "v=10", func(c *testClient, tok string) { c.send(opIdentify, map[string]any{"token": tok}) }, CloseInvalidIntents},
		{"disallowed intents", "v=10", func(c *testClient, _ string) {
			c.send(opIdentify, identifyBody(limited.Token, nil, IntentGuilds|IntentMessageContent))
		}, CloseDisallowedIntents},
		{"large threshold out of range", "v=10", func(c *testClient, tok string) {
			d := identifyBody(tok, nil, 1)
			d["large_threshold"] = 500
			c.send(opIdentify, d)
		}, CloseUnknownOpcode},
		{"send limit", "v=10", func(c *testClient, _ string) {
			for range 121 {
				c.send(opHeartbeat, nil)
			}
		}, CloseRateLimited},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := Config{Guilds: 4, Members: 100, IdentifyWindow: time.Millisecond}
			want := tc.want
			if want < 0 {
				// Sharding required: more guilds on one shard than allowed.
				cfg.MaxGuildsPerShard, want = 3, -want
			}
			s := newSim(t, cfg)
			// A second bot without privileged intents, added after New.
			s.botsMu.Lock()
			b := limited
			b.ID = s.newID()
			s.bots = append(s.bots, &b)
			s.botsMu.Unlock()
			c := dial(t, s.GatewayURL(), tc.query)
			if tc.do != nil {
				c.hello()
				tc.do(c, botToken(s))
			}
			if got := c.closeCode(); got != want {
				t.Fatalf("close code %d, want %d", got, want)
			}
			if n := s.GatewayStats().Closes[fmt.Sprint(want)]; n < 1 {
				t.Fatalf("stats closes[%d] = %d, want >= 1", want, n)
			}
		})
	}
}

func TestHeartbeatAckAndTimeout(t *testing.T) {
	t.Parallel()
	// Long enough that the gaps between the test's own heartbeats (an
	// identify on a busy machine under -race) stay far inside the 1.5x
	// timeout, short enough that the timeout at the end comes soon.
	s := newSim(t, Config{Guilds: 2, HeartbeatInterval: 2 * time.Second})
	c := dial(t, s.GatewayURL(), "v=10")
	if iv := c.hello(); iv != 2000 {
		t.Fatalf("heartbeat_interval %d, want 2000", iv)
	}
	// Heartbeats are accepted (and ACKed) before Identify too.
	c.send(opHeartbeat, nil)
	c.until(func(p payload) bool { return p.Op == opHeartbeatAck })
	c.identify(botToken(s), nil, IntentGuilds)
	c.send(opHeartbeat, 1)
	c.until(func(p payload) bool { return p.Op == opHeartbeatAck })
	// Server-requested heartbeat (op 1).
	if n := s.RequestHeartbeat(Target{}); n != 1 {
		t.Fatalf("RequestHeartbeat affected %d connections, want 1", n)
	}
	c.until(func(p payload) bool { return p.Op == opHeartbeat })
	// Stop heartbeating: the server closes with 4009 after 1.5 intervals.
	if got := c.closeCode(); got != CloseSessionTimedOut {
		t.Fatalf("close code %d, want 4009", got)
	}
	if st := s.GatewayStats(); st.HeartbeatTimeouts != 1 || st.Sessions[0].Resumable {
		t.Fatalf("heartbeat timeouts %d, session resumable %v: want 1 and false", st.HeartbeatTimeouts, st.Sessions[0].Resumable)
	}
}

func TestZombieStopsAcks(t *testing.T) {
	t.Parallel()
	s := newSim(t, Config{Guilds: 1})
	c := dial(t, s.GatewayURL(), "v=10")
	c.hello()
	r := c.identify(botToken(s), nil, AllIntents)
	// A presence update is answered in order after the heartbeats before
	// it, so waiting for its PRESENCE_UPDATE proves they were handled.
	barrier := func() int {
		c.send(opPresenceUpdate, map[string]any{"since": nil, "activities": []any{}, "status": "online", "afk": false})
		acks := 0
		for {
			p := c.next()
			if p.Op == opHeartbeatAck {
				acks++
			}
			if p.event() == "PRESENCE_UPDATE" {
				return acks
			}
		}
	}
	s.Zombie(SessionTarget(r.SessionID), true)
	c.send(opHeartbeat, nil)
	if acks := barrier(); acks != 0 {
		t.Fatalf("zombie connection sent %d ACKs, want 0", acks)
	}
	s.Zombie(SessionTarget(r.SessionID), false)
	s.DropNextAck(SessionTarget(r.SessionID), 1)
	c.send(opHeartbeat, nil)
	c.send(opHeartbeat, nil)
	if acks := barrier(); acks != 1 {
		t.Fatalf("got %d ACKs for 2 heartbeats with one ACK dropped, want 1", acks)
	}
}

func TestIdentifyWindowAndConcurrency(t *testing.T) {
	t.Parallel()
	const window = time.Second
	s := newSim(t, Config{Guilds: 8, Shards: 4, MaxConcurrency: 2, IdentifyWindow: window})
	tok := botToken(s)
	ident := func(shard int) payload {
		c := dial(t, s.GatewayURL(), "v=10")
		c.hello()
		c.send(opIdentify, identifyBody(tok, []int{shard, 4}, IntentGuilds))
		return c.until(func(p payload) bool { return p.event() == "READY" || p.Op == opInvalidSession })
	}
	start := time.Now()
	// Shards 0 and 1 use buckets 0 and 1: both succeed at once.
	var bucket0 time.Time // no earlier than shard 0's identify was accepted
	for shard := range 2 {
		if p := ident(shard); p.event() != "READY" {
			t.Fatalf("shard %d: got op %d, want READY", shard, p.Op)
		}
		if shard == 0 {
			bucket0 = time.Now()
		}
	}
	// Shard 2 shares bucket 0 with shard 0: within the window it gets op 9.
	// Shard 0 was accepted after start, so if less than the window has
	// passed since start, shard 2 was answered inside it.
	p := ident(2)
	if time.Since(start) >= window {
		t.Skip("machine too slow to observe the 1s identify window")
	}
	if p.Op != opInvalidSession || string(p.D) != "false" {
		t.Fatalf("shard 2 inside the window: got op %d d=%s, want op 9 false", p.Op, p.D)
	}
	// Once the window since shard 0's identify has certainly passed, the
	// next attempt must succeed: no retries, however slow the machine.
	select {
	case <-time.After(time.Until(bucket0.Add(window))):
	case <-t.Context().Done():
		return
	}
	if p := ident(2); p.event() != "READY" {
		t.Fatalf("shard 2 after the window: got op %d %s, want READY", p.Op, p.event())
	}
	st := s.GatewayStats()
	if st.IdentifyRateLimited != 1 || st.Identifies != 3 {
		t.Fatalf("identifies %d, rate limited %d: want 3 and 1", st.Identifies, st.IdentifyRateLimited)
	}
}

func TestSessionStartBudget(t *testing.T) {
	t.Parallel()
	s := newSim(t, Config{Guilds: 2, SessionStartTotal: 3, SessionStartUsed: 1, IdentifyWindow: time.Nanosecond})
	tok := botToken(s)
	info := s.gatewayBotInfo(s.bots[0]).(GatewayBotInfo)
	if info.SessionStartLimit.Total != 3 || info.SessionStartLimit.Remaining != 2 || info.SessionStartLimit.MaxConcurrency != 1 {
		t.Fatalf("session_start_limit %+v, want total 3 remaining 2 max_concurrency 1", info.SessionStartLimit)
	}
	first := dial(t, s.GatewayURL(), "v=10")
	first.hello()
	first.identify(tok, nil, IntentGuilds)
	c := dial(t, s.GatewayURL(), "v=10")
	c.hello()
	c.identify(tok, nil, IntentGuilds)
	if got := s.gatewayBotInfo(s.bots[0]).(GatewayBotInfo).SessionStartLimit.Remaining; got != 0 {
		t.Fatalf("remaining %d after two identifies, want 0", got)
	}
	// Over budget: Discord resets the token and ends every session.
	c3 := dial(t, s.GatewayURL(), "v=10")
	c3.hello()
	c3.send(opIdentify, identifyBody(tok, nil, IntentGuilds))
	for i, cl := range []*testClient{c3, first, c} {
		if got := cl.closeCode(); got != CloseAuthenticationFailed {
			t.Fatalf("connection %d closed with %d, want 4004", i, got)
		}
	}
	if _, ok := s.botByToken(tok); ok {
		t.Fatal("token still valid after the budget was overrun")
	}
}

func TestResumeReplaysThenResumed(t *testing.T) {
	t.Parallel()
	s := newSim(t, Config{Guilds: 3})
	tok := botToken(s)
	c := dial(t, s.GatewayURL(), "v=10&compress=zlib-stream")
	c.hello()
	r := c.identify(tok, nil, AllIntents)
	gid := s.world.guildOrder[0]
	var last int64
	for range 3 {
		last = *c.untilEvent("GUILD_CREATE").S
	}
	s.Dispatch(gid, "TYPING_START", map[string]any{"n": 1})
	if p := c.untilEvent("TYPING_START"); *p.S != last+1 {
		t.Fatalf("seq %d, want %d", *p.S, last+1)
	}
	last++
	if n := s.Disconnect(SessionTarget(r.SessionID), 4000); n != 1 {
		t.Fatalf("Disconnect affected %d, want 1", n)
	}
	if got := c.closeCode(); got != 4000 {
		t.Fatalf("close %d, want 4000", got)
	}
	// Missed while disconnected.
	for i := range 5 {
		s.Dispatch(gid, "TYPING_START", map[string]any{"n": i + 2})
	}
	c2 := dial(t, r.ResumeGatewayURL, "v=10&compress=zlib-stream")
	c2.hello()
	c2.send(opResume, map[string]any{"token": tok, "session_id": r.SessionID, "seq": last})
	for i := range 5 {
		p := c2.next()
		if p.event() != "TYPING_START" || *p.S != last+1+int64(i) {
			t.Fatalf("replay %d: got %s seq %v, want TYPING_START seq %d", i, p.event(), p.S, last+1+int64(i))
		}
	}
	if p := c2.next(); p.event() != "RESUMED" {
		t.Fatalf("after replay got op %d %s, want RESUMED", p.Op, p.event())
	}
	s.Dispatch(gid, "TYPING_START", map[string]any{"live": true})
	if p := c2.untilEvent("TYPING_START"); *p.S != last+6 {
		t.Fatalf("live seq %d, want %d", *p.S, last+6)
	}
	sent, ok := s.SentSeqs(r.SessionID)
	if !ok || sent.Count() != last+6 || len(sent) != 1 {
		t.Fatalf("sent %v, want one range 1..%d", sent, last+6)
	}
	if st := s.GatewayStats(); st.Resumes != 1 {
		t.Fatalf("resumes %d, want 1", st.Resumes)
	}
}

// TestSentSeqsCoverWhatArrived holds a connection's writer after it flushed
// a dispatch and before it recorded it as sent. The client already has the
// event, so the accounting must not report it unsent: SentSeqs waits for the
// batch in flight and then includes it.
func TestSentSeqsCoverWhatArrived(t *testing.T) {
	t.Parallel()
	s := newSim(t, Config{Guilds: 1})
	var hold atomic.Bool
	held := make(chan struct{}, 1)
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // runs before the server's Close, which waits for the writer
	s.gw.afterWrite = func(batch []outItem) {
		if slices.ContainsFunc(batch, func(it outItem) bool { return it.event == "TYPING_START" }) && hold.CompareAndSwap(false, true) {
			held <- struct{}{}
			<-release
		}
	}
	c := dial(t, s.GatewayURL(), "v=10")
	c.hello()
	r := c.identify(botToken(s), nil, AllIntents)
	c.untilEvent("GUILD_CREATE")
	s.Dispatch(s.world.guildOrder[0], "TYPING_START", map[string]any{"held": true})
	p := c.untilEvent("TYPING_START")
	select {
	case <-held:
	case <-time.After(20 * time.Second):
		t.Fatal("the writer never reached the hook")
	}
	got := make(chan SeqSet, 1)
	go func() {
		set, _ := s.SentSeqs(r.SessionID)
		got <- set
	}()
	// A snapshot that does not wait would come back at once without the
	// event; give it the chance to (this can only pass a broken build).
	select {
	case set := <-got:
		unblock()
		t.Fatalf("SentSeqs returned %v while the batch with seq %d was written but unrecorded", set, *p.S)
	case <-time.After(100 * time.Millisecond):
	}
	unblock()
	select {
	case set := <-got:
		if !set.Contains(*p.S) || len(set) != 1 || set[0].From != 1 {
			t.Fatalf("sent %v, want one range 1..%d", set, *p.S)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("SentSeqs still waiting after the batch was recorded")
	}
	if st := s.GatewayStats(); st.Events["TYPING_START"] != 1 {
		t.Fatalf("TYPING_START counted %d times, want 1", st.Events["TYPING_START"])
	}
}

// TestDispatchRawMessage checks that a json.RawMessage payload goes out
// byte for byte (not decoded and re-encoded) and that an invalid one is
// refused rather than corrupting the stream.
func TestDispatchRawMessage(t *testing.T) {
	t.Parallel()
	s := newSim(t, Config{Guilds: 1})
	c := dial(t, s.GatewayURL(), "v=10")
	c.hello()
	c.identify(botToken(s), nil, AllIntents)
	gid := s.world.guildOrder[0]
	s.Dispatch(gid, "TYPING_START", json.RawMessage(`{"broken":`))
	raw := json.RawMessage(`{ "user_id": "1",  "timestamp": 1 }`) // re-encoding would drop the spaces
	s.Dispatch(gid, "TYPING_START", raw)
	p := c.untilEvent("TYPING_START")
	if string(p.D) != string(raw) {
		t.Fatalf("d = %s, want %s unchanged", p.D, raw)
	}
	if st := s.GatewayStats(); st.Events["TYPING_START"] != 1 {
		t.Fatalf("TYPING_START sent %d times, want 1 (the invalid payload must not go out)", st.Events["TYPING_START"])
	}
}

func TestResumeTooOldOrUnknown(t *testing.T) {
	t.Parallel()
	s := newSim(t, Config{Guilds: 1, ResumeBuffer: 4})
	tok := botToken(s)
	c := dial(t, s.GatewayURL(), "v=10")
	c.hello()
	r := c.identify(tok, nil, AllIntents)
	gid := s.world.guildOrder[0]
	for range 10 {
		s.Dispatch(gid, "TYPING_START", map[string]any{})
	}
	c.until(func(p payload) bool { return p.S != nil && *p.S == 12 })
	s.Disconnect(SessionTarget(r.SessionID), 4000)
	c.closeCode()
	for _, tc := range []struct {
		name, session string
		seq           int64
	}{{"seq older than buffer", r.SessionID, 2}, {"unknown session", "nope", 1}} {
		c2 := dial(t, r.ResumeGatewayURL, "v=10")
		c2.hello()
		c2.send(opResume, map[string]any{"token": tok, "session_id": tc.session, "seq": tc.seq})
		if p := c2.next(); p.Op != opInvalidSession || string(p.D) != "false" {
			t.Fatalf("%s: got op %d d=%s, want op 9 false", tc.name, p.Op, p.D)
		}
	}
}

func TestReconnectAndInvalidSession(t *testing.T) {
	t.Parallel()
	s := newSim(t, Config{Guilds: 1, IdentifyWindow: time.Millisecond})
	tok := botToken(s)
	c := dial(t, s.GatewayURL(), "v=10")
	c.hello()
	r := c.identify(tok, nil, IntentGuilds)
	if n := s.SendReconnect(ShardTarget(0)); n != 1 {
		t.Fatalf("SendReconnect affected %d", n)
	}
	if p := c.until(func(p payload) bool { return p.Op == opReconnect }); string(p.D) != "null" {
		t.Fatalf("op 7 d = %s, want null", p.D)
	}
	s.InvalidateSession(SessionTarget(r.SessionID), true)
	if p := c.until(func(p payload) bool { return p.Op == opInvalidSession }); string(p.D) != "true" {
		t.Fatalf("op 9 d = %s, want true", p.D)
	}
	// A resumable invalidation keeps the session: resume works.
	c2 := dial(t, r.ResumeGatewayURL, "v=10")
	c2.hello()
	c2.send(opResume, map[string]any{"token": tok, "session_id": r.SessionID, "seq": 2})
	c2.untilEvent("RESUMED")
	s.InvalidateSession(SessionTarget(r.SessionID), false)
	if p := c2.until(func(p payload) bool { return p.Op == opInvalidSession }); string(p.D) != "false" {
		t.Fatalf("op 9 d = %s, want false", p.D)
	}
	// Not resumable any more; the same connection may identify again.
	c2.identify(tok, nil, IntentGuilds)
	c3 := dial(t, r.ResumeGatewayURL, "v=10")
	c3.hello()
	c3.send(opResume, map[string]any{"token": tok, "session_id": r.SessionID, "seq": 2})
	if p := c3.next(); p.Op != opInvalidSession {
		t.Fatalf("resume of an invalidated session: got op %d, want 9", p.Op)
	}
}

func TestClientNormalCloseEndsSession(t *testing.T) {
	t.Parallel()
	s := newSim(t, Config{Guilds: 1})
	tok := botToken(s)
	c := dial(t, s.GatewayURL(), "v=10")
	c.hello()
	r := c.identify(tok, nil, IntentGuilds)
	if err := c.ws.WriteControl(8, []byte{0x03, 0xe8}, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for s.GatewayStats().Sessions[0].Resumable {
		if time.Now().After(deadline) {
			t.Fatal("session still resumable after the client closed with 1000")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c2 := dial(t, r.ResumeGatewayURL, "v=10")
	c2.hello()
	c2.send(opResume, map[string]any{"token": tok, "session_id": r.SessionID, "seq": 1})
	if p := c2.next(); p.Op != opInvalidSession {
		t.Fatalf("got op %d, want 9", p.Op)
	}
}

func TestIntentsFilterDispatches(t *testing.T) {
	t.Parallel()
	s := newSim(t, Config{Guilds: 1})
	c := dial(t, s.GatewayURL(), "v=10")
	c.hello()
	c.identify(botToken(s), nil, IntentGuilds|IntentGuildMessages)
	gid := s.world.guildOrder[0]
	s.Dispatch(gid, "TYPING_START", map[string]any{}) // filtered: no GUILD_MESSAGE_TYPING
	s.Dispatch(gid, "MESSAGE_CREATE", map[string]any{"content": "secret", "author": map[string]any{"id": "1"}, "mentions": []any{}})
	p := c.untilEvent("MESSAGE_CREATE")
	var m struct {
		Content string `json:"content"`
	}
	if err := json.Unmarshal(p.D, &m); err != nil {
		t.Fatal(err)
	}
	if m.Content != "" {
		t.Fatalf("content %q without MESSAGE_CONTENT, want empty", m.Content)
	}
	if ev := s.GatewayStats().Events; ev["TYPING_START"] != 0 {
		t.Fatalf("TYPING_START sent %d times to a session without its intent", ev["TYPING_START"])
	}
}

func TestPresenceAndVoiceStateUpdates(t *testing.T) {
	t.Parallel()
	s := newSim(t, Config{Guilds: 1})
	c := dial(t, s.GatewayURL(), "v=10")
	c.hello()
	c.identify(botToken(s), nil, AllIntents)
	gid := s.world.guildOrder[0]
	c.send(opPresenceUpdate, map[string]any{"since": nil, "activities": []any{}, "status": "dnd", "afk": false})
	p := c.untilEvent("PRESENCE_UPDATE")
	if !strings.Contains(string(p.D), `"status":"dnd"`) {
		t.Fatalf("PRESENCE_UPDATE %s, want status dnd", p.D)
	}
	s.world.mu.RLock()
	vc := s.world.guilds[gid].voiceChannels[0]
	s.world.mu.RUnlock()
	c.send(opVoiceState, map[string]any{"guild_id": gid, "channel_id": vc, "self_mute": true, "self_deaf": false})
	p = c.untilEvent("VOICE_STATE_UPDATE")
	var vs VoiceState
	if err := json.Unmarshal(p.D, &vs); err != nil || vs.ChannelID == nil || *vs.ChannelID != vc || !vs.SelfMute {
		t.Fatalf("VOICE_STATE_UPDATE %s (%v), want the bot in %v self-muted", p.D, err, vc)
	}
	c.untilEvent("VOICE_SERVER_UPDATE")
}

func TestGatewayHTTPEndpoints(t *testing.T) {
	t.Parallel()
	s := newSim(t, Config{Guilds: 1})
	c := dial(t, s.GatewayURL(), "v=10")
	c.hello()
	r := c.identify(botToken(s), nil, IntentGuilds)
	// The GUILD_CREATE follows READY; on a loaded machine it may not be written yet, and
	// the fault below would then cut it off.
	c.untilEvent("GUILD_CREATE")
	resp, err := http.Post(s.URL()+"/_sim/faults/disconnect", "application/json", strings.NewReader(`{"session_id":"`+r.SessionID+`","code":4000}`))
	if err != nil {
		t.Fatal(err)
	}
	var out struct{ Affected int }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Affected != 1 {
		t.Fatalf("fault endpoint: %v affected %d, want 1", err, out.Affected)
	}
	_ = resp.Body.Close()
	if got := c.closeCode(); got != 4000 {
		t.Fatalf("close %d, want 4000", got)
	}
	resp, err = http.Get(s.URL() + "/_sim/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var st struct {
		Gateway GatewayStats `json:"gateway"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if st.Gateway.Identifies != 1 || len(st.Gateway.Sessions) != 1 || st.Gateway.Sessions[0].Sent.Count() < 2 {
		t.Fatalf("stats %+v: want 1 identify and a session with READY+GUILD_CREATE sent", st.Gateway)
	}
	if sh := st.Gateway.Shards; len(sh) != 1 || sh[0].Shard != [2]int{0, 1} || sh[0].Sent != 2 || sh[0].Connected != 0 {
		t.Fatalf("shard stats %+v, want shard [0 1] with 2 sent and no live connection", sh)
	}
	var sent struct {
		Sent  SeqSet `json:"sent"`
		Count int64  `json:"count"`
	}
	getJSON(t, s.URL()+"/_sim/sessions/"+r.SessionID+"/sent", &sent)
	if sent.Count != 2 || !sent.Sent.Contains(1) || !sent.Sent.Contains(2) || sent.Sent.Contains(3) {
		t.Fatalf("sent seqs %+v, want 1..2", sent)
	}
	// Load over HTTP: start, observe, stop.
	var ls LoadStats
	postJSON(t, s.URL()+"/_sim/load", `{"rate":500,"mix":{"typing":1}}`, &ls)
	if !ls.Running || ls.Rate != 500 {
		t.Fatalf("load after POST: %+v", ls)
	}
	postJSON(t, s.URL()+"/_sim/load", `{"rate":0}`, &ls)
	if ls.Running {
		t.Fatal("load still running after rate 0")
	}
	resp2, err := http.Post(s.URL()+"/_sim/faults/bogus", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp2.Body.Close()
	if resp2.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown fault: status %d, want 404", resp2.StatusCode)
	}
}

func TestGuildOutage(t *testing.T) {
	t.Parallel()
	s := newSim(t, Config{Guilds: 3, IdentifyWindow: time.Nanosecond})
	gid := s.world.guildOrder[1]
	c := dial(t, s.GatewayURL(), "v=10")
	c.hello()
	c.identify(botToken(s), nil, AllIntents)
	for range 3 {
		c.untilEvent("GUILD_CREATE")
	}
	if err := s.SetGuildUnavailable(gid, true); err != nil {
		t.Fatal(err)
	}
	p := c.untilEvent("GUILD_DELETE")
	if want := `{"id":"` + gid.String() + `","unavailable":true}`; string(p.D) != want {
		t.Fatalf("GUILD_DELETE %s, want %s", p.D, want)
	}
	// A session started during the outage gets no GUILD_CREATE for it.
	c2 := dial(t, s.GatewayURL(), "v=10")
	c2.hello()
	r := c2.identify(botToken(s), nil, AllIntents)
	if len(r.Guilds) != 3 {
		t.Fatalf("READY lists %d guilds, want 3 (the one in outage as unavailable)", len(r.Guilds))
	}
	for range 2 {
		var g struct{ ID Snowflake }
		if err := json.Unmarshal(c2.untilEvent("GUILD_CREATE").D, &g); err != nil || g.ID == gid {
			t.Fatalf("GUILD_CREATE for %v during its outage (%v)", g.ID, err)
		}
	}
	// Recovery: a full GUILD_CREATE on both sessions.
	resp, err := http.Post(s.URL()+"/_sim/faults/outage", "application/json", strings.NewReader(`{"guild_id":"`+gid.String()+`","on":false}`))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	for _, cl := range []*testClient{c, c2} {
		var g struct {
			ID       Snowflake `json:"id"`
			Channels []Channel `json:"channels"`
		}
		if err := json.Unmarshal(cl.untilEvent("GUILD_CREATE").D, &g); err != nil || g.ID != gid || len(g.Channels) == 0 {
			t.Fatalf("recovery GUILD_CREATE for %v with %d channels (%v), want %v", g.ID, len(g.Channels), err, gid)
		}
	}
	if err := s.SetGuildUnavailable(12345, true); err == nil {
		t.Fatal("outage of an unknown guild accepted")
	}
}

func TestSessionStartBudgetRefills(t *testing.T) {
	t.Parallel()
	s := newSim(t, Config{Guilds: 1, SessionStartTotal: 5, SessionStartUsed: 3, SessionStartReset: 200 * time.Millisecond})
	limit := func() SessionStartLimit { return s.gatewayBotInfo(s.bots[0]).(GatewayBotInfo).SessionStartLimit }
	if l := limit(); l.Remaining != 2 || l.ResetAfter <= 0 || l.ResetAfter > 200 {
		t.Fatalf("session_start_limit %+v, want remaining 2 and reset_after in (0, 200] ms", l)
	}
	deadline := time.Now().Add(20 * time.Second)
	for limit().Remaining != 5 {
		if time.Now().After(deadline) {
			t.Fatalf("budget never refilled: %+v", limit())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Resumes do not spend the budget.
	c := dial(t, s.GatewayURL(), "v=10")
	c.hello()
	r := c.identify(botToken(s), nil, IntentGuilds)
	s.Disconnect(SessionTarget(r.SessionID), CloseUnknownError)
	c.closeCode()
	before := limit().Remaining
	c2 := dial(t, r.ResumeGatewayURL, "v=10")
	c2.hello()
	c2.send(opResume, map[string]any{"token": botToken(s), "session_id": r.SessionID, "seq": 1})
	c2.untilEvent("RESUMED")
	if after := limit().Remaining; after != before && after != 5 {
		t.Fatalf("a resume changed remaining from %d to %d", before, after)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

func postJSON(t *testing.T, url, body string, v any) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: status %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
}
