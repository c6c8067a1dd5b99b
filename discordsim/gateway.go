package discordsim

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
)

// Gateway opcodes.
const (
	opDispatch       = 0
	opHeartbeat      = 1
	opIdentify       = 2
	opPresenceUpdate = 3
	opVoiceState     = 4
	opResume         = 6
	opReconnect      = 7
	opRequestMembers = 8
	opInvalidSession = 9
	opHello          = 10
	opHeartbeatAck   = 11
)

// Gateway close codes (protocol.md §9).
const (
	CloseUnknownError         = 4000
	CloseUnknownOpcode        = 4001
	CloseDecodeError          = 4002
	CloseNotAuthenticated     = 4003
	CloseAuthenticationFailed = 4004
	CloseAlreadyAuthenticated = 4005
	CloseInvalidSeq           = 4007
	CloseRateLimited          = 4008
	CloseSessionTimedOut      = 4009
	CloseInvalidShard         = 4010
	CloseShardingRequired     = 4011
	CloseInvalidAPIVersion    = 4012
	CloseInvalidIntents       = 4013
	CloseDisallowedIntents    = 4014
)

// maxInbound is the largest client payload Discord accepts (4096 bytes).
const maxInbound = 4096

type compression int

const (
	compressNone compression = iota
	compressZlib
	compressZstd
)

// gatewayState holds every session and connection of the gateway.
type gatewayState struct {
	s *Server

	mu       sync.RWMutex
	sessions map[string]*session
	// live indexes identified sessions by shard count, then shard id, for dispatch.
	live  map[int]map[int]map[*session]struct{}
	conns map[*gwConn]struct{}
	// noContent counts live sessions without MESSAGE_CONTENT, so the load
	// generator only builds content-less message variants when needed.
	noContent atomic.Int32
	// liveSessions counts indexed sessions; replay memory is shared among them.
	liveSessions atomic.Int32
	// closed refuses new connections once the server is closing.
	closed bool
	connWG sync.WaitGroup

	idMu      sync.Mutex
	buckets   map[int]time.Time // identify rate-limit key -> last identify
	idLog     []IdentifyRecord  // accepted identifies, oldest first, at most maxIdentifyLog
	budgets   map[Snowflake]*budget
	memberReq map[[2]Snowflake]time.Time // (bot, guild) -> last full member request

	stats gatewayCounters

	// afterWrite, if set before the first connection, runs in each writer
	// after a batch is flushed and before it is recorded as sent: tests use
	// it to hold a writer in the window the accounting must cover.
	afterWrite func(batch []outItem)
}

type budget struct {
	used    int
	resetAt time.Time
}

func newGatewayState(s *Server) *gatewayState {
	return &gatewayState{
		s:         s,
		sessions:  map[string]*session{},
		live:      map[int]map[int]map[*session]struct{}{},
		conns:     map[*gwConn]struct{}{},
		buckets:   map[int]time.Time{},
		budgets:   map[Snowflake]*budget{},
		memberReq: map[[2]Snowflake]time.Time{},
		stats:     newGatewayCounters(),
	}
}

// budgetLocked returns b's session start budget, refilled if its window passed.
func (g *gatewayState) budgetLocked(botID Snowflake, now time.Time) *budget {
	b, ok := g.budgets[botID]
	if !ok {
		b = &budget{used: g.s.cfg.SessionStartUsed, resetAt: now.Add(g.s.cfg.SessionStartReset)}
		g.budgets[botID] = b
	}
	if !now.Before(b.resetAt) {
		b.used, b.resetAt = 0, now.Add(g.s.cfg.SessionStartReset)
	}
	return b
}

func (g *gatewayState) sessionStartLimit(botID Snowflake, now time.Time) SessionStartLimit {
	g.idMu.Lock()
	defer g.idMu.Unlock()
	b := g.budgetLocked(botID, now)
	return SessionStartLimit{
		Total:          g.s.cfg.SessionStartTotal,
		Remaining:      g.s.cfg.SessionStartTotal - b.used,
		ResetAfter:     int(b.resetAt.Sub(now).Milliseconds()),
		MaxConcurrency: g.s.cfg.MaxConcurrency,
	}
}

var upgrader = websocket.Upgrader{
	ReadBufferSize:  4096,
	WriteBufferSize: 16384,
	// Bots are not browsers; Discord does not check Origin either.
	CheckOrigin: func(*http.Request) bool { return true },
}

// serveWS upgrades a gateway connection and runs its reader until it ends.
func (g *gatewayState) serveWS(w http.ResponseWriter, r *http.Request) {
	if !websocket.IsWebSocketUpgrade(r) {
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": "this is the gateway: connect with a websocket", "code": 0})
		return
	}
	q := r.URL.Query()
	closeCode, closeReason := 0, ""
	v, err := strconv.Atoi(q.Get("v"))
	if err != nil || (v != 9 && v != 10) {
		closeCode, closeReason = CloseInvalidAPIVersion, "Invalid API version: the gateway accepts v=10 or v=9."
	}
	switch q.Get("encoding") {
	case "", "json":
	case "etf":
		closeCode, closeReason = CloseDecodeError, "encoding=etf is not supported by discordsim; use encoding=json."
	default:
		closeCode, closeReason = CloseDecodeError, "Unknown encoding: use encoding=json."
	}
	comp := compressNone
	switch q.Get("compress") {
	case "":
	case "zlib-stream":
		comp = compressZlib
	case "zstd-stream":
		comp = compressZstd
	default:
		closeCode, closeReason = CloseDecodeError, "Unknown compress: use zlib-stream or zstd-stream."
	}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		http.Error(w, "simulator closing", http.StatusServiceUnavailable)
		return
	}
	g.connWG.Add(1)
	g.mu.Unlock()
	defer g.connWG.Done()

	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		g.s.log.Debug("gateway upgrade failed", "err", err)
		return
	}
	c, err := newGWConn(g, ws, comp, v)
	if err != nil {
		g.s.log.Error("gateway connection setup", "err", err)
		_ = ws.Close()
		return
	}
	g.mu.Lock()
	g.conns[c] = struct{}{}
	if g.closed {
		// Close ran while this connection was upgrading.
		closeCode, closeReason = websocket.CloseGoingAway, "simulator shutting down"
	}
	g.mu.Unlock()
	g.stats.connections.Add(1)
	var writerDone sync.WaitGroup
	writerDone.Go(c.writeLoop)
	if closeCode != 0 {
		c.closeWith(closeCode, closeReason)
	} else {
		c.sendControl(mustJSON(map[string]any{"op": opHello, "d": map[string]any{"heartbeat_interval": g.s.cfg.HeartbeatInterval.Milliseconds()}}))
		c.readLoop()
	}
	writerDone.Wait()
	c.detach()
	g.mu.Lock()
	delete(g.conns, c)
	g.mu.Unlock()
}

// closeAll closes every connection for shutdown.
func (g *gatewayState) closeAll() {
	g.mu.Lock()
	g.closed = true
	conns := make([]*gwConn, 0, len(g.conns))
	for c := range g.conns {
		conns = append(conns, c)
	}
	g.mu.Unlock()
	for _, c := range conns {
		c.closeWith(websocket.CloseGoingAway, "simulator shutting down")
	}
}

func (g *gatewayState) wait() { g.connWG.Wait() }

// janitor drops sessions that stayed disconnected longer than ResumeTimeout.
func (g *gatewayState) janitor() {
	t := time.NewTicker(max(g.s.cfg.ResumeTimeout/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-g.s.done:
			return
		case now := <-t.C:
			g.mu.Lock()
			for id, sess := range g.sessions {
				if sess.expired(now, g.s.cfg.ResumeTimeout) {
					delete(g.sessions, id)
					g.unindexLocked(sess)
					g.stats.retire(sess)
				}
			}
			g.mu.Unlock()
		}
	}
}

func (g *gatewayState) indexLocked(sess *session) {
	byShard := g.live[sess.numShards]
	if byShard == nil {
		byShard = map[int]map[*session]struct{}{}
		g.live[sess.numShards] = byShard
	}
	set := byShard[sess.shardID]
	if set == nil {
		set = map[*session]struct{}{}
		byShard[sess.shardID] = set
	}
	if _, dup := set[sess]; !dup {
		g.liveSessions.Add(1)
		if sess.intents&IntentMessageContent == 0 {
			g.noContent.Add(1)
		}
	}
	set[sess] = struct{}{}
}

func (g *gatewayState) unindexLocked(sess *session) {
	if set := g.live[sess.numShards][sess.shardID]; set != nil {
		if _, ok := set[sess]; ok {
			g.liveSessions.Add(-1)
			if sess.intents&IntentMessageContent == 0 {
				g.noContent.Add(-1)
			}
		}
		delete(set, sess)
		if len(set) == 0 {
			delete(g.live[sess.numShards], sess.shardID)
		}
		if len(g.live[sess.numShards]) == 0 {
			delete(g.live, sess.numShards)
		}
	}
}

// killSession makes sess unresumable and stops its dispatches.
func (g *gatewayState) killSession(sess *session) {
	g.mu.Lock()
	if _, ok := g.sessions[sess.id]; ok {
		delete(g.sessions, sess.id)
		g.stats.retire(sess)
	}
	g.unindexLocked(sess)
	g.mu.Unlock()
	sess.mu.Lock()
	sess.dead = true
	sess.conn = nil
	sess.mu.Unlock()
}

// outItem is one message queued for a connection's writer.
type outItem struct {
	frame []byte
	pong  bool  // a websocket pong answering a client ping
	seq   int64 // 0 for non-dispatch messages
	event string
	sess  *session
}

// gwConn is one websocket connection.
type gwConn struct {
	g    *gatewayState
	ws   *websocket.Conn
	comp compression
	v    int

	mu        sync.Mutex
	queue     []outItem
	spare     []outItem
	closeCode int
	closeMsg  string
	notify    chan struct{}
	reconnect *time.Timer

	sess            atomic.Pointer[session]
	zombie          atomic.Bool
	dropAcks        atomic.Int32
	payloadCompress atomic.Bool
	remote          string

	// Reader-goroutine state.
	sends       int
	windowStart time.Time

	// Writer-goroutine state.
	flying []*session // sessions of the batch being written
	zbuf   bytes.Buffer
	zw     *zlib.Writer
	zstd   *zstd.Encoder
}

func newGWConn(g *gatewayState, ws *websocket.Conn, comp compression, v int) (*gwConn, error) {
	c := &gwConn{g: g, ws: ws, comp: comp, v: v, notify: make(chan struct{}, 1), remote: ws.RemoteAddr().String()}
	switch comp {
	case compressZlib:
		zw, err := zlib.NewWriterLevel(&c.zbuf, g.s.cfg.CompressionLevel)
		if err != nil {
			return nil, fmt.Errorf("creating zlib writer: %w", err)
		}
		c.zw = zw
	case compressZstd:
		enc, err := zstd.NewWriter(&c.zbuf, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<18),
			zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithLowerEncoderMem(true))
		if err != nil {
			return nil, fmt.Errorf("creating zstd encoder: %w", err)
		}
		c.zstd = enc
	}
	// Frames over 4096 bytes are read whole and answered with 4002 like
	// Discord; only absurd ones hit gorilla's own limit (close 1009).
	ws.SetReadLimit(1 << 20)
	// Only the writer goroutine writes: pings are answered through its
	// queue and a client's close frame just ends the connection.
	ws.SetPingHandler(func(data string) error {
		c.enqueue(outItem{frame: []byte(data), pong: true})
		return nil
	})
	ws.SetCloseHandler(func(int, string) error { return nil })
	return c, nil
}

// enqueue queues an item for the writer. A client that falls SendQueue
// messages behind is disconnected (4000) rather than buffered without bound;
// its session stays resumable.
func (c *gwConn) enqueue(it outItem) {
	c.mu.Lock()
	if c.closeCode != 0 {
		c.mu.Unlock()
		return
	}
	if len(c.queue) >= c.g.s.cfg.SendQueue {
		c.closeCode, c.closeMsg = CloseUnknownError, "client too slow: send queue overflow"
		c.queue = c.queue[:0]
		c.g.s.log.Warn("gateway: closing slow connection", "remote", c.remote, "queued", c.g.s.cfg.SendQueue)
	} else {
		c.queue = append(c.queue, it)
	}
	c.mu.Unlock()
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

func (c *gwConn) sendControl(frame []byte) { c.enqueue(outItem{frame: frame}) }

// closeWith asks the writer to send a close frame with code and end the
// connection. Queued messages not yet written are dropped.
func (c *gwConn) closeWith(code int, reason string) {
	c.mu.Lock()
	if c.closeCode == 0 {
		c.closeCode, c.closeMsg = code, reason
	}
	if c.reconnect != nil {
		c.reconnect.Stop()
	}
	c.mu.Unlock()
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

func (c *gwConn) closing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeCode != 0
}

// Websocket opcodes of the frames the writer produces.
const (
	wsText   = 1
	wsBinary = 2
	wsClose  = 8
	wsPong   = 10
)

// writeLoop is the only writer of the socket and of the compression
// context, so every message is compressed in send order. It writes the
// websocket frames itself through a buffer and flushes once per batch: under
// load one syscall carries many messages, while each message stays its own
// websocket message ending with its own sync flush, as Discord sends them.
// gorilla/websocket still reads; its ping and close handlers are replaced so
// nothing else writes to the socket.
func (c *gwConn) writeLoop() {
	nc := c.ws.UnderlyingConn()
	bw := bufio.NewWriterSize(nc, 64<<10)
	defer func() {
		_ = c.ws.Close()
		if c.zstd != nil {
			_ = c.zstd.Close() // releases the encoder; its frame end goes nowhere
		}
	}()
	for range c.notify {
		c.mu.Lock()
		items := c.queue
		c.queue, c.spare = c.spare[:0], nil
		code, msg := c.closeCode, c.closeMsg
		c.mu.Unlock()
		if code < 0 {
			return // the peer is gone: nothing more can be written
		}
		_ = nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if code != 0 {
			c.g.stats.serverClose(code)
			body := binary.BigEndian.AppendUint16(nil, uint16(code))
			body = append(body, msg[:min(len(msg), 120)]...)
			if err := writeWSFrame(bw, wsClose, body); err == nil {
				_ = bw.Flush()
			}
			return
		}
		// Mark the batch's sessions as being written before any of it can
		// reach the client (bufio may flush mid-batch): a snapshot of the
		// accounting taken after the client saw an event then waits for
		// this batch to be recorded instead of missing it. A connection
		// serves one session, so this is almost always one begin.
		flying := c.flying[:0]
		for i := range items {
			if s := items[i].sess; items[i].seq != 0 && !slices.Contains(flying, s) {
				s.sent.begin()
				flying = append(flying, s)
			}
		}
		var failed error
		written := 0
		for ; written < len(items); written++ {
			if err := c.writeItem(bw, items[written]); err != nil {
				failed = err
				break
			}
		}
		if failed == nil {
			failed = bw.Flush()
			if h := c.g.afterWrite; h != nil {
				h(items)
			}
		} else {
			written = 0 // nothing of a failed batch is known to have arrived
		}
		for i := range written {
			if items[i].seq != 0 {
				items[i].sess.sent.add(items[i].seq)
			}
		}
		c.g.stats.countEvents(items[:written])
		for _, s := range flying {
			s.sent.end()
		}
		clear(flying)
		c.flying = flying[:0]
		clear(items)
		c.mu.Lock()
		c.spare = items[:0]
		c.mu.Unlock()
		if failed != nil {
			c.g.s.log.Debug("gateway write failed", "remote", c.remote, "err", failed)
			c.mu.Lock()
			if c.closeCode == 0 {
				c.closeCode = -1
			}
			c.mu.Unlock()
			return
		}
	}
}

// writeWSFrame writes one unmasked, unfragmented server frame.
func writeWSFrame(w *bufio.Writer, op byte, payload []byte) error {
	var hdr [10]byte
	hdr[0] = 0x80 | op
	n := 2
	switch l := len(payload); {
	case l < 126:
		hdr[1] = byte(l)
	case l <= 0xffff:
		hdr[1] = 126
		binary.BigEndian.PutUint16(hdr[2:], uint16(l))
		n = 4
	default:
		hdr[1] = 127
		binary.BigEndian.PutUint64(hdr[2:], uint64(l))
		n = 10
	}
	if _, err := w.Write(hdr[:n]); err != nil {
		return fmt.Errorf("writing frame header: %w", err)
	}
	if _, err := w.Write(payload); err != nil {
		return fmt.Errorf("writing frame: %w", err)
	}
	return nil
}

// writeItem compresses (per the connection's transport) and writes one message.
func (c *gwConn) writeItem(w *bufio.Writer, it outItem) error {
	if it.pong {
		return writeWSFrame(w, wsPong, it.frame)
	}
	frame := it.frame
	switch c.comp {
	case compressZlib:
		c.zbuf.Reset()
		if _, err := c.zw.Write(frame); err != nil {
			return fmt.Errorf("zlib compressing: %w", err)
		}
		if err := c.zw.Flush(); err != nil {
			return fmt.Errorf("zlib flushing: %w", err)
		}
		return writeWSFrame(w, wsBinary, c.zbuf.Bytes())
	case compressZstd:
		c.zbuf.Reset()
		if _, err := c.zstd.Write(frame); err != nil {
			return fmt.Errorf("zstd compressing: %w", err)
		}
		if err := c.zstd.Flush(); err != nil {
			return fmt.Errorf("zstd flushing: %w", err)
		}
		return writeWSFrame(w, wsBinary, c.zbuf.Bytes())
	}
	if c.payloadCompress.Load() && len(frame) > 1024 {
		// Payload compression: big messages as standalone zlib streams.
		c.zbuf.Reset()
		zw := zlib.NewWriter(&c.zbuf)
		if _, err := zw.Write(frame); err != nil {
			return fmt.Errorf("zlib compressing payload: %w", err)
		}
		if err := zw.Close(); err != nil {
			return fmt.Errorf("zlib closing payload: %w", err)
		}
		return writeWSFrame(w, wsBinary, c.zbuf.Bytes())
	}
	return writeWSFrame(w, wsText, frame)
}

// inbound is a client payload's envelope.
type inbound struct {
	Op *int            `json:"op"`
	D  json.RawMessage `json:"d"`
}

// decodeInbound parses one client frame. It is the decoder of outside input
// the fuzz target exercises: it never panics and reports the close code a
// bad frame earns.
func decodeInbound(msgType int, data []byte) (inbound, int, string) {
	var in inbound
	if msgType != websocket.TextMessage && msgType != websocket.BinaryMessage {
		return in, CloseDecodeError, "Error while decoding payload."
	}
	if len(data) > maxInbound {
		return in, CloseDecodeError, "Error while decoding payload: payload over 4096 bytes."
	}
	if err := json.Unmarshal(data, &in); err != nil {
		return in, CloseDecodeError, "Error while decoding payload."
	}
	if in.Op == nil {
		return in, CloseUnknownOpcode, "Unknown opcode: payload has no op."
	}
	return in, 0, ""
}

// readLoop reads client payloads until the connection ends.
func (c *gwConn) readLoop() {
	cfg := &c.g.s.cfg
	_ = c.ws.SetReadDeadline(time.Now().Add(cfg.HeartbeatTimeout))
	for {
		mt, data, err := c.ws.ReadMessage()
		if err != nil {
			c.readEnded(err)
			return
		}
		if c.closing() {
			continue // closed by the server: what the client still sends is ignored
		}
		now := time.Now()
		if now.Sub(c.windowStart) >= cfg.SendWindow {
			c.windowStart, c.sends = now, 0
		}
		c.sends++
		if c.sends > cfg.SendLimit {
			c.closeWith(CloseRateLimited, "You are being rate limited.")
			continue
		}
		in, code, reason := decodeInbound(mt, data)
		if code != 0 {
			c.closeWith(code, reason)
			continue
		}
		c.handle(*in.Op, in.D)
	}
}

// readEnded classifies why reading stopped: a heartbeat timeout, the client
// closing (1000/1001 end the session), or the server's own close.
func (c *gwConn) readEnded(err error) {
	var ne net.Error
	var ce *websocket.CloseError
	switch {
	case c.closing():
	case errors.As(err, &ne) && ne.Timeout():
		c.g.stats.heartbeatTimeouts.Add(1)
		if sess := c.sess.Load(); sess != nil {
			c.g.killSession(sess)
		}
		c.closeWith(CloseSessionTimedOut, "Session timed out: no heartbeat received.")
	case errors.As(err, &ce):
		c.g.stats.clientClose(ce.Code)
		if ce.Code == websocket.CloseNormalClosure || ce.Code == websocket.CloseGoingAway {
			if sess := c.sess.Load(); sess != nil {
				c.g.killSession(sess)
			}
		}
		c.closeWith(-1, "")
	default:
		c.g.stats.clientClose(websocket.CloseAbnormalClosure)
		c.closeWith(-1, "")
	}
	// A close code of -1 stops the writer without a close frame.
}

// detach unhooks the connection's session so it buffers for a resume.
func (c *gwConn) detach() {
	sess := c.sess.Swap(nil)
	if sess == nil {
		return
	}
	sess.mu.Lock()
	if sess.conn == c {
		sess.conn = nil
		sess.detachedAt = time.Now()
	}
	sess.mu.Unlock()
}

func (c *gwConn) handle(op int, d json.RawMessage) {
	cfg := &c.g.s.cfg
	sess := c.sess.Load()
	switch op {
	case opHeartbeat:
		_ = c.ws.SetReadDeadline(time.Now().Add(cfg.HeartbeatTimeout))
		c.g.stats.heartbeats.Add(1)
		if c.zombie.Load() {
			return
		}
		if c.dropAcks.Load() > 0 && c.dropAcks.Add(-1) >= 0 {
			return
		}
		c.sendControl([]byte(`{"op":11,"d":null,"s":null,"t":null}`))
	case opIdentify:
		if sess != nil {
			c.closeWith(CloseAlreadyAuthenticated, "You sent more than one identify payload.")
			return
		}
		c.identify(d)
	case opResume:
		if sess != nil {
			c.closeWith(CloseAlreadyAuthenticated, "You are already authenticated.")
			return
		}
		c.resume(d)
	case opPresenceUpdate, opVoiceState, opRequestMembers:
		if sess == nil {
			c.closeWith(CloseNotAuthenticated, "You sent a payload prior to identifying.")
			return
		}
		switch op {
		case opPresenceUpdate:
			c.presenceUpdate(sess, d)
		case opVoiceState:
			c.voiceStateUpdate(sess, d)
		default:
			c.requestMembers(sess, d)
		}
	default:
		if sess == nil {
			c.closeWith(CloseNotAuthenticated, "You sent a payload prior to identifying.")
			return
		}
		c.closeWith(CloseUnknownOpcode, "Unknown opcode "+strconv.Itoa(op)+".")
	}
}

// session is a gateway session: it outlives connections until it is
// resumed, invalidated or expires.
type session struct {
	id             string
	bot            *Bot
	shardID        int
	numShards      int
	intents        int64
	largeThreshold int
	createdAt      time.Time

	mu         sync.Mutex
	seq        int64
	ring       []outItem // replay buffer, oldest at ringHead
	ringHead   int
	ringBytes  int
	conn       *gwConn
	detachedAt time.Time
	dead       bool

	sent seqSet
	// live counts the gateway's live sessions, for the replay memory share.
	live *atomic.Int32
}

func newSessionID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never returns an error
	return hex.EncodeToString(b)
}

func (s *session) expired(now time.Time, timeout time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dead || (s.conn == nil && !s.detachedAt.IsZero() && now.Sub(s.detachedAt) > timeout)
}

// pushLocked assigns the next sequence number to a dispatch, keeps it for
// replay and queues it on the live connection. The caller holds s.mu.
func (s *session) pushLocked(cfg *Config, event string, d []byte) {
	s.seq++
	frame := make([]byte, 0, len(d)+len(event)+48)
	frame = append(frame, `{"t":"`...)
	frame = append(frame, event...)
	frame = append(frame, `","s":`...)
	frame = strconv.AppendInt(frame, s.seq, 10)
	frame = append(frame, `,"op":0,"d":`...)
	frame = append(frame, d...)
	frame = append(frame, '}')
	it := outItem{frame: frame, seq: s.seq, event: event, sess: s}
	s.ring = append(s.ring, it)
	s.ringBytes += len(frame)
	maxBytes := cfg.ResumeMemory / max(1, int(s.live.Load()))
	for len(s.ring)-s.ringHead > cfg.ResumeBuffer || (s.ringBytes > maxBytes && len(s.ring)-s.ringHead > 1) {
		s.ringBytes -= len(s.ring[s.ringHead].frame)
		s.ring[s.ringHead] = outItem{}
		s.ringHead++
	}
	if s.ringHead > 1024 && s.ringHead > len(s.ring)/2 {
		n := copy(s.ring, s.ring[s.ringHead:])
		clear(s.ring[n:])
		s.ring, s.ringHead = s.ring[:n], 0
	}
	if s.conn != nil {
		s.conn.enqueue(it)
	}
}

// firstSeqLocked is the oldest sequence number still in the replay buffer.
func (s *session) firstSeqLocked() int64 { return s.seq - int64(len(s.ring)-s.ringHead) + 1 }

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("discordsim: encoding %T: %v", v, err)) // only called with static shapes
	}
	return b
}
