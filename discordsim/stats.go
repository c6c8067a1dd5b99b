package discordsim

import (
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// SeqRange is an inclusive range of sequence numbers.
type SeqRange struct {
	From int64 `json:"from"`
	To   int64 `json:"to"`
}

// seqSet records which sequence numbers were written, as sorted disjoint
// ranges: a session that sent a million events in order costs one range.
//
// A writer records a batch only once it is known to be written, but the
// client may read the batch's first bytes before that. So that the
// accounting is exact for a caller who has already seen an event arrive,
// writers bracket each batch with begin and end, and snapshot waits for the
// batches in flight when it was called (bounded by the write deadline).
type seqSet struct {
	mu     sync.Mutex
	ranges []SeqRange
	// flying counts batches being written; idle counts the times flying
	// fell to zero, so a snapshot waits for the batches in flight when it
	// started and not for later ones (no starvation under constant load).
	flying int
	idle   uint64
	cond   *sync.Cond
}

// begin marks a batch that may contain this session's events as being
// written. Call it before any byte of the batch reaches the socket.
func (s *seqSet) begin() {
	s.mu.Lock()
	s.flying++
	s.mu.Unlock()
}

// end closes a batch begun with begin, after its written seqs were added.
func (s *seqSet) end() {
	s.mu.Lock()
	s.flying--
	if s.flying == 0 {
		s.idle++
		if s.cond != nil {
			s.cond.Broadcast()
		}
	}
	s.mu.Unlock()
}

func (s *seqSet) add(seq int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.ranges)
	if n > 0 {
		last := &s.ranges[n-1]
		if seq == last.To+1 {
			last.To = seq
			return
		}
		if seq >= last.From && seq <= last.To {
			return
		}
	}
	// General case (a replay re-sends, or out of order): insert and merge.
	i, _ := slices.BinarySearchFunc(s.ranges, seq, func(r SeqRange, v int64) int {
		switch {
		case r.To < v:
			return -1
		case r.From > v:
			return 1
		}
		return 0
	})
	if i < n && s.ranges[i].From <= seq && seq <= s.ranges[i].To {
		return
	}
	s.ranges = slices.Insert(s.ranges, i, SeqRange{seq, seq})
	if i+1 < len(s.ranges) && s.ranges[i+1].From == seq+1 {
		s.ranges[i].To = s.ranges[i+1].To
		s.ranges = slices.Delete(s.ranges, i+1, i+2)
	}
	if i > 0 && s.ranges[i-1].To == seq-1 {
		s.ranges[i-1].To = s.ranges[i].To
		s.ranges = slices.Delete(s.ranges, i, i+1)
	}
}

// snapshot returns the written ranges once every batch in flight at the
// call has been written and recorded (or has failed).
func (s *seqSet) snapshot() []SeqRange {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.flying > 0 {
		if s.cond == nil {
			s.cond = sync.NewCond(&s.mu)
		}
		for start := s.idle; s.flying > 0 && s.idle == start; {
			s.cond.Wait()
		}
	}
	return slices.Clone(s.ranges)
}

// SeqSet is a snapshot of the sequence numbers written to a session.
type SeqSet []SeqRange

// Contains reports whether seq was written.
func (s SeqSet) Contains(seq int64) bool {
	_, ok := slices.BinarySearchFunc(s, seq, func(r SeqRange, v int64) int {
		switch {
		case r.To < v:
			return -1
		case r.From > v:
			return 1
		}
		return 0
	})
	return ok
}

// Count is the number of distinct sequence numbers written.
func (s SeqSet) Count() int64 {
	var n int64
	for _, r := range s {
		n += r.To - r.From + 1
	}
	return n
}

// Missing returns the written sequence numbers not in received, so a test
// can assert that every event the simulator sent reached the bot.
func (s SeqSet) Missing(received map[int64]bool) []int64 {
	var out []int64
	for _, r := range s {
		for q := r.From; q <= r.To; q++ {
			if !received[q] {
				out = append(out, q)
			}
		}
	}
	return out
}

// gatewayCounters is the gateway's accounting.
type gatewayCounters struct {
	connections, identifies, identifyRateLimited, resumes, resumeFailed atomic.Int64
	invalidSessions, reconnects, heartbeats, heartbeatTimeouts          atomic.Int64
	tokenResets, memberRequests, memberRequestsLimited, dispatches      atomic.Int64

	mu           sync.Mutex
	closes       map[int]int64
	clientCloses map[int]int64
	events       map[string]int64
	sessions     map[string]*session
	order        []*session
}

func newGatewayCounters() gatewayCounters {
	return gatewayCounters{closes: map[int]int64{}, clientCloses: map[int]int64{}, events: map[string]int64{}, sessions: map[string]*session{}}
}

func (g *gatewayCounters) serverClose(code int) {
	g.mu.Lock()
	g.closes[code]++
	g.mu.Unlock()
}

func (g *gatewayCounters) clientClose(code int) {
	g.mu.Lock()
	g.clientCloses[code]++
	g.mu.Unlock()
}

func (g *gatewayCounters) countEvents(items []outItem) {
	var n int64
	g.mu.Lock()
	for i := range items {
		if items[i].seq != 0 {
			g.events[items[i].event]++
			n++
		}
	}
	g.mu.Unlock()
	g.dispatches.Add(n)
}

// track keeps a session's accounting for the simulator's lifetime.
func (g *gatewayCounters) track(sess *session) {
	g.mu.Lock()
	g.sessions[sess.id] = sess
	g.order = append(g.order, sess)
	g.mu.Unlock()
}

// retire frees an ended session's replay buffer; its accounting stays.
func (g *gatewayCounters) retire(sess *session) {
	sess.mu.Lock()
	clear(sess.ring)
	sess.ring, sess.ringHead, sess.ringBytes = nil, 0, 0
	sess.dead = true
	sess.mu.Unlock()
}

// SessionStats is one session's accounting.
type SessionStats struct {
	SessionID string    `json:"session_id"`
	BotID     Snowflake `json:"bot_id"`
	Shard     [2]int    `json:"shard"`
	Intents   int64     `json:"intents"`
	// LastSeq is the last sequence number assigned.
	LastSeq int64 `json:"last_seq"`
	// Sent are the sequence numbers written to the client's socket.
	Sent      SeqSet `json:"sent"`
	Connected bool   `json:"connected"`
	Resumable bool   `json:"resumable"`
}

// GatewayStats is the gateway's accounting, from GatewayStats() and GET /_sim/stats.
type GatewayStats struct {
	Connections           int64            `json:"connections"`
	Identifies            int64            `json:"identifies"`
	IdentifyRateLimited   int64            `json:"identify_rate_limited"`
	Resumes               int64            `json:"resumes"`
	ResumeFailed          int64            `json:"resume_failed"`
	InvalidSessions       int64            `json:"invalid_sessions"`
	Reconnects            int64            `json:"reconnects"`
	Heartbeats            int64            `json:"heartbeats"`
	HeartbeatTimeouts     int64            `json:"heartbeat_timeouts"`
	TokenResets           int64            `json:"token_resets"`
	MemberRequests        int64            `json:"member_requests"`
	MemberRequestsLimited int64            `json:"member_requests_rate_limited"`
	Dispatches            int64            `json:"dispatches"`
	Closes                map[string]int64 `json:"closes"`
	ClientCloses          map[string]int64 `json:"client_closes"`
	Events                map[string]int64 `json:"events"`
	Sessions              []SessionStats   `json:"sessions"`
	// Shards sums the sessions by [shard_id, num_shards].
	Shards []ShardStats `json:"shards"`
}

// ShardStats is the accounting of every session identified as one shard.
type ShardStats struct {
	Shard    [2]int `json:"shard"`
	Sessions int    `json:"sessions"`
	// Connected is how many of them have a live connection.
	Connected int `json:"connected"`
	// Sent is the number of dispatches written, over all its sessions.
	Sent int64 `json:"sent"`
}

// GatewayStats returns a snapshot of the gateway accounting. It covers
// every dispatch a client has already received: the sessions' snapshots
// wait for batches being written, and the counters are read after them.
func (s *Server) GatewayStats() GatewayStats {
	c := &s.gw.stats
	c.mu.Lock()
	order := slices.Clone(c.order)
	c.mu.Unlock()
	sessions := make([]SessionStats, 0, len(order))
	for _, sess := range order {
		sessions = append(sessions, sess.stats())
	}
	st := GatewayStats{
		Connections: c.connections.Load(), Identifies: c.identifies.Load(), IdentifyRateLimited: c.identifyRateLimited.Load(),
		Resumes: c.resumes.Load(), ResumeFailed: c.resumeFailed.Load(), InvalidSessions: c.invalidSessions.Load(),
		Reconnects: c.reconnects.Load(), Heartbeats: c.heartbeats.Load(), HeartbeatTimeouts: c.heartbeatTimeouts.Load(),
		TokenResets: c.tokenResets.Load(), MemberRequests: c.memberRequests.Load(),
		MemberRequestsLimited: c.memberRequestsLimited.Load(), Dispatches: c.dispatches.Load(),
		Closes: map[string]int64{}, ClientCloses: map[string]int64{}, Events: map[string]int64{},
		Sessions: sessions,
	}
	c.mu.Lock()
	for k, v := range c.closes {
		st.Closes[strconv.Itoa(k)] = v
	}
	for k, v := range c.clientCloses {
		st.ClientCloses[strconv.Itoa(k)] = v
	}
	for k, v := range c.events {
		st.Events[k] = v
	}
	c.mu.Unlock()
	byShard := map[[2]int]*ShardStats{}
	for _, ss := range sessions {
		sh := byShard[ss.Shard]
		if sh == nil {
			sh = &ShardStats{Shard: ss.Shard}
			byShard[ss.Shard] = sh
		}
		sh.Sessions++
		sh.Sent += ss.Sent.Count()
		if ss.Connected {
			sh.Connected++
		}
	}
	st.Shards = make([]ShardStats, 0, len(byShard))
	for _, sh := range byShard {
		st.Shards = append(st.Shards, *sh)
	}
	slices.SortFunc(st.Shards, func(a, b ShardStats) int {
		if a.Shard[1] != b.Shard[1] {
			return a.Shard[1] - b.Shard[1]
		}
		return a.Shard[0] - b.Shard[0]
	})
	return st
}

func (s *session) stats() SessionStats {
	s.mu.Lock()
	st := SessionStats{SessionID: s.id, BotID: s.bot.ID, Shard: [2]int{s.shardID, s.numShards}, Intents: s.intents,
		LastSeq: s.seq, Connected: s.conn != nil, Resumable: !s.dead}
	s.mu.Unlock()
	st.Sent = s.sent.snapshot()
	return st
}

// SentSeqs returns the sequence numbers written to a session, or false for
// an unknown session id.
func (s *Server) SentSeqs(sessionID string) (SeqSet, bool) {
	c := &s.gw.stats
	c.mu.Lock()
	sess := c.sessions[sessionID]
	c.mu.Unlock()
	if sess == nil {
		return nil, false
	}
	return sess.sent.snapshot(), true
}

// Sessions lists every session started so far with its accounting.
func (s *Server) Sessions() []SessionStats { return s.GatewayStats().Sessions }

// IdentifyRecord is one accepted Identify: which shard, and when the simulator took it.
type IdentifyRecord struct {
	Shard, Shards int
	At            time.Time
}

// maxIdentifyLog bounds the identify log; the older half is dropped when it fills.
const maxIdentifyLog = 10_000

// IdentifyLog returns the accepted identifies in the order they were taken (the most
// recent 5,000 to 10,000 of them): tests measure identify windows and start-up spans
// with it.
func (s *Server) IdentifyLog() []IdentifyRecord {
	g := s.gw
	g.idMu.Lock()
	defer g.idMu.Unlock()
	return slices.Clone(g.idLog)
}
