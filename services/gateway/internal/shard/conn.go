package shard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kubecord/kubecord/internal/discordjson"
	"github.com/kubecord/kubecord/services/gateway/internal/identify"
)

// Gateway opcodes.
const (
	opDispatch          = 0
	opHeartbeat         = 1
	opIdentify          = 2
	opPresenceUpdate    = 3
	opVoiceStateUpdate  = 4
	opResume            = 6
	opReconnect         = 7
	opRequestMembers    = 8
	opInvalidSession    = 9
	opHello             = 10
	opHeartbeatACK      = 11
	opRequestSoundboard = 31
	opRequestChannel    = 43
)

// maxPayloadSize is the largest payload the gateway accepts from a client.
const maxPayloadSize = 4096

// apiVersion is the gateway version the shards speak.
const apiVersion = "10"

// shard is one gateway shard: a session that outlives its connections.
type shard struct {
	id int
	m  *Manager

	seq    atomic.Uint64 // last sequence received
	events atomic.Int64  // dispatches received
	// identifying is true from the moment Identify is sent until the connection that sent
	// it ends: a session start is spent, and stopping the shard before READY wastes it.
	identifying atomic.Bool

	started     chan struct{} // closed once the first identify or resume is under way
	startedOnce sync.Once

	mu         sync.Mutex
	state      State
	session    Session
	conn       *conn // the connection while its session is ready, else nil
	lastErr    string
	reconnects int64
	resumes    int64
	identifies int64
	latency    time.Duration
	rateAt     time.Time
	rateEvents int64
	rate       float64
}

func (s *shard) markStarted() { s.startedOnce.Do(func() { close(s.started) }) }

func (s *shard) setState(st State) {
	s.mu.Lock()
	s.state = st
	s.mu.Unlock()
}

// run keeps the shard connected until ctx is done or a fatal close. It returns nil when
// ctx ends and the fatal error otherwise.
func (s *shard) run(ctx context.Context) error {
	defer s.markStarted()
	log := s.m.log.With("shard", s.id)
	if sess, ok, err := s.m.sessions.Load(ctx, s.id); err != nil {
		log.Warn("loading the stored session failed; identifying", "err", err)
	} else if ok && sess.ID != "" {
		s.mu.Lock()
		s.session = sess
		s.mu.Unlock()
		s.seq.Store(sess.Seq)
		log.Info("resuming stored session", "seq", sess.Seq)
	}
	failures := 0
	for first := true; ; first = false {
		if !first {
			s.mu.Lock()
			s.reconnects++
			s.mu.Unlock()
		}
		act, healthy, err := s.connect(ctx, log)
		if ctx.Err() != nil {
			s.stop(log)
			return nil
		}
		if err != nil {
			s.mu.Lock()
			s.lastErr = err.Error()
			s.mu.Unlock()
		}
		var delay time.Duration
		switch act {
		case actFatalShard, actFatalAll:
			s.mu.Lock()
			s.state = StateFailed
			s.conn = nil
			s.mu.Unlock()
			log.Error("shard stopped", "err", err)
			err = fmt.Errorf("shard %d: %w", s.id, err)
			if act == actFatalAll {
				return &fatalAllError{err}
			}
			return err
		case actIdentify, actIdentifyAfterWait:
			s.forgetSession(ctx, log)
			if act == actIdentifyAfterWait {
				t := s.m.timing
				delay = t.InvalidSessionMin + rand.N(t.InvalidSessionMax-t.InvalidSessionMin+1)
			}
		}
		if act != actIdentifyAfterWait {
			var ce *websocket.CloseError
			if errors.As(err, &ce) && ce.Code == 4008 {
				healthy = false // rate limited: back off rather than reconnect at once
			}
			if healthy {
				failures = 0
				delay = rand.N(s.m.timing.BackoffMin)
			} else {
				failures++
				delay = backoff(s.m.timing.BackoffMin, s.m.timing.BackoffMax, failures)
			}
		}
		log.Info("reconnecting", "next", act.String(), "after", delay, "reason", err)
		s.setState(StateWaiting)
		if !sleep(ctx, delay) {
			s.stop(log)
			return nil
		}
	}
}

// currentSession returns the session with the last received sequence.
func (s *shard) currentSession() (Session, bool) {
	s.mu.Lock()
	sess := s.session
	s.mu.Unlock()
	sess.Seq = s.seq.Load()
	return sess, sess.ID != ""
}

// backoff is min*2^(failures-1), capped at max, with the upper half jittered.
func backoff(minDelay, maxDelay time.Duration, failures int) time.Duration {
	d := minDelay
	for i := 1; i < failures && d < maxDelay; i++ {
		d *= 2
	}
	d = min(d, maxDelay)
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// stop saves the session with the last received sequence so a new Manager in this
// process resumes it.
func (s *shard) stop(log *slog.Logger) {
	s.mu.Lock()
	s.state = StateStopped
	s.conn = nil
	sess := s.session
	s.mu.Unlock()
	if sess.ID == "" {
		return
	}
	sess.Seq = s.seq.Load()
	// The run context is done; saving gets its own short deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.m.sessions.Save(ctx, s.id, sess); err != nil {
		log.Error("saving the session on stop failed; the next start identifies", "err", err)
	}
}

func (s *shard) forgetSession(ctx context.Context, log *slog.Logger) {
	s.mu.Lock()
	s.session = Session{}
	s.mu.Unlock()
	s.seq.Store(0)
	if err := s.m.sessions.Save(ctx, s.id, Session{}); err != nil {
		log.Warn("clearing the stored session failed", "err", err)
	}
}

// conn is one websocket connection of a shard.
type conn struct {
	ws      *websocket.Conn
	limiter *sendLimiter
	hb      heartbeater
	timeout time.Duration

	writeMu sync.Mutex

	closeOnce sync.Once
	// reason is set when the shard closes the connection itself, to say what to do next.
	reasonMu  sync.Mutex
	reasonAct action
	reasonErr error
	hasReason bool
}

// write sends one payload. Protocol payloads (priority) are never held back by the
// command limit.
func (c *conn) write(ctx context.Context, payload []byte, priority bool) error {
	if priority {
		c.limiter.reserve(time.Now(), true)
	} else if err := c.limiter.wait(ctx); err != nil {
		return err
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if err := c.ws.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return fmt.Errorf("setting write deadline: %w", err)
	}
	if err := c.ws.WriteMessage(websocket.TextMessage, payload); err != nil {
		return fmt.Errorf("writing to the gateway: %w", err)
	}
	return nil
}

// closeWith ends the connection with a close code and records why, so the read loop,
// which fails next, knows what to do.
func (c *conn) closeWith(code int, act action, reason error) {
	c.reasonMu.Lock()
	if !c.hasReason {
		c.hasReason, c.reasonAct, c.reasonErr = true, act, reason
	}
	c.reasonMu.Unlock()
	c.closeOnce.Do(func() {
		msg := websocket.FormatCloseMessage(code, "")
		// Best effort: the peer may already be gone, and the socket is closed either way.
		_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
		_ = c.ws.Close()
	})
}

func (c *conn) reason() (action, error, bool) {
	c.reasonMu.Lock()
	defer c.reasonMu.Unlock()
	return c.reasonAct, c.reasonErr, c.hasReason
}

// gatewayURL adds the version, encoding and compression to a gateway URL.
func gatewayURL(base, compression string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("parsing gateway url: %w", err)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("gateway url %q has scheme %q, want wss or ws", u.Redacted(), u.Scheme)
	}
	if u.Path == "" {
		u.Path = "/"
	}
	q := u.Query()
	q.Set("v", apiVersion)
	q.Set("encoding", "json")
	if compression != CompressionNone {
		q.Set("compress", compression)
	} else {
		q.Del("compress")
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// connect runs one connection from dial to close. It returns what to do next, whether
// the session became ready on it, and why it ended.
func (s *shard) connect(ctx context.Context, log *slog.Logger) (next action, healthy bool, err error) {
	m := s.m
	defer s.identifying.Store(false)
	s.mu.Lock()
	sess := s.session
	s.mu.Unlock()
	resume := sess.ID != ""
	base := m.cfg.GatewayURL
	if resume && sess.ResumeURL != "" {
		base = sess.ResumeURL
	}
	target, err := gatewayURL(base, m.cfg.Compression)
	if err != nil {
		// A bad resume URL from the server: identify on the configured URL instead.
		if resume {
			return actIdentify, false, err
		}
		return actFatalAll, false, err
	}
	s.setState(StateConnecting)
	dialer := websocket.Dialer{HandshakeTimeout: m.timing.HandshakeTimeout, ReadBufferSize: 64 << 10, WriteBufferSize: 8 << 10}
	ws, resp, err := dialer.DialContext(ctx, target, nil)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close() // only the status matters
	}
	if err != nil {
		return actResume, false, fmt.Errorf("connecting to the gateway at %s: %w", hostOf(target), err)
	}
	ws.SetReadLimit(int64(m.timing.MaxMessageSize))
	dec, err := newStreamDecoder(m.cfg.Compression, m.timing.MaxMessageSize)
	if err != nil {
		_ = ws.Close()
		return actFatalAll, false, err
	}
	if z, ok := dec.(*zstdStream); ok {
		defer z.Close()
	}
	c := &conn{ws: ws, timeout: m.timing.WriteTimeout}
	defer func() {
		c.closeWith(closeResumable, actResume, nil)
		s.mu.Lock()
		if s.conn == c {
			s.conn = nil
		}
		s.mu.Unlock()
	}()

	connCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		<-connCtx.Done()
		if ctx.Err() != nil {
			c.closeWith(closeResumable, actStop, ctx.Err())
		}
	})

	r := &reader{ws: ws, dec: dec}
	interval, act, err := s.awaitHello(r, ws)
	if err != nil {
		if ctx.Err() != nil {
			return actStop, false, ctx.Err()
		}
		return act, false, err
	}
	c.limiter = newSendLimiter(m.timing.SendLimit, m.timing.SendWindow, interval)
	wg.Go(func() { s.heartbeatLoop(connCtx, c, interval, log) })
	if resume {
		s.setState(StateResuming)
		seq := s.seq.Load()
		if m.cfg.Watermark != nil {
			seq = min(seq, m.cfg.Watermark(s.id))
		}
		payload, err := json.Marshal(gatewayPayload{Op: opResume, D: resumeData{Token: m.cfg.Token, SessionID: sess.ID, Seq: seq}})
		if err != nil {
			return actFatalAll, false, fmt.Errorf("encoding resume: %w", err)
		}
		if err := c.write(connCtx, payload, true); err != nil {
			return actResume, false, fmt.Errorf("sending resume: %w", err)
		}
		log.Debug("resume sent", "seq", seq)
		s.markStarted()
	} else {
		s.setState(StateIdentifying)
		// Identify waits for its window while the read loop keeps answering the server.
		wg.Go(func() { s.identify(connCtx, c, log) })
	}
	return s.readLoop(connCtx, c, r, log)
}

func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "an invalid url"
	}
	return u.Host
}

type gatewayPayload struct {
	Op int `json:"op"`
	D  any `json:"d"`
}

type resumeData struct {
	Token     string `json:"token"`
	SessionID string `json:"session_id"`
	Seq       uint64 `json:"seq"`
}

type identifyProperties struct {
	OS      string `json:"os"`
	Browser string `json:"browser"`
	Device  string `json:"device"`
}

type identifyData struct {
	Token          string             `json:"token"`
	Properties     identifyProperties `json:"properties"`
	LargeThreshold int                `json:"large_threshold,omitempty"`
	Shard          [2]int             `json:"shard"`
	Presence       json.RawMessage    `json:"presence,omitempty"`
	Intents        uint64             `json:"intents"`
}

// identify waits for the shard's identify window and sends Identify.
func (s *shard) identify(ctx context.Context, c *conn, log *slog.Logger) {
	m := s.m
	err := m.limiter.Wait(ctx, s.id)
	s.markStarted()
	if err != nil {
		if errors.Is(err, identify.ErrBudgetExhausted) {
			c.closeWith(closeResumable, actFatalShard, err)
			return
		}
		c.closeWith(closeResumable, actResume, fmt.Errorf("waiting to identify: %w", err))
		return
	}
	payload, err := json.Marshal(gatewayPayload{Op: opIdentify, D: identifyData{
		Token:          m.cfg.Token,
		Properties:     identifyProperties{OS: "linux", Browser: "kubecord", Device: "kubecord"},
		LargeThreshold: m.cfg.LargeThreshold,
		Shard:          [2]int{s.id, m.cfg.ShardCount},
		Presence:       m.cfg.Presence,
		Intents:        m.cfg.Intents,
	}})
	if err != nil {
		c.closeWith(closeResumable, actFatalShard, fmt.Errorf("encoding identify: %w", err))
		return
	}
	if len(payload) > maxPayloadSize {
		c.closeWith(closeResumable, actFatalShard, fmt.Errorf("identify payload is %d bytes, over the gateway's %d byte limit; shorten the presence", len(payload), maxPayloadSize))
		return
	}
	s.identifying.Store(true)
	if err := c.write(ctx, payload, true); err != nil {
		s.identifying.Store(false)
		c.closeWith(closeResumable, actResume, fmt.Errorf("sending identify: %w", err))
		return
	}
	if r, ok := m.limiter.(identify.Rearmer); ok {
		if err := r.Sent(ctx, s.id); err != nil {
			log.Warn("restarting the identify window after the send failed; the window counts from the grant", "err", err)
		}
	}
	log.Debug("identify sent")
}

// heartbeatLoop sends heartbeats: the first after interval*jitter, then every interval.
// A heartbeat due while the previous one is unacknowledged means a zombie connection: it
// is closed with a resumable code.
func (s *shard) heartbeatLoop(ctx context.Context, c *conn, interval time.Duration, log *slog.Logger) {
	t := time.NewTimer(time.Duration(rand.Float64() * float64(interval)))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if c.hb.beat(time.Now()) {
			log.Warn("no heartbeat ACK since the last heartbeat; closing the zombie connection to resume")
			c.closeWith(closeResumable, actResume, errors.New("zombie connection: no heartbeat ACK"))
			return
		}
		if err := s.sendHeartbeat(ctx, c); err != nil {
			c.closeWith(closeResumable, actResume, err)
			return
		}
		log.Debug("heartbeat sent", "seq", s.seq.Load())
		t.Reset(interval)
	}
}

func (s *shard) sendHeartbeat(ctx context.Context, c *conn) error {
	var b [48]byte
	p := append(b[:0], `{"op":1,"d":`...)
	if seq := s.seq.Load(); seq > 0 {
		p = fmt.Appendf(p, "%d}", seq)
	} else {
		p = append(p, "null}"...)
	}
	if err := c.write(ctx, p, true); err != nil {
		return fmt.Errorf("sending heartbeat: %w", err)
	}
	return nil
}

// reader reads websocket messages into one reused buffer and decodes them.
type reader struct {
	ws  *websocket.Conn
	dec streamDecoder
	buf []byte
}

// next returns the next complete gateway payload; it aliases internal buffers until the
// following call.
func (r *reader) next() ([]byte, error) {
	for {
		_, rd, err := r.ws.NextReader()
		if err != nil {
			return nil, err
		}
		r.buf = r.buf[:0]
		for {
			if len(r.buf) == cap(r.buf) {
				r.buf = grow(r.buf, max(4096, cap(r.buf)))
			}
			n, err := rd.Read(r.buf[len(r.buf):cap(r.buf)])
			r.buf = r.buf[:len(r.buf)+n]
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, err
			}
		}
		msg, err := r.dec.Feed(r.buf)
		if err != nil {
			return nil, errDecode{err}
		}
		if msg != nil {
			return msg, nil
		}
	}
}

// errDecode marks a payload the shard could not decompress or parse.
type errDecode struct{ err error }

func (e errDecode) Error() string { return "decoding gateway message: " + e.err.Error() }
func (e errDecode) Unwrap() error { return e.err }

// awaitHello reads until Hello and returns its heartbeat interval. Op 7 may come first.
func (s *shard) awaitHello(r *reader, ws *websocket.Conn) (time.Duration, action, error) {
	if err := ws.SetReadDeadline(time.Now().Add(s.m.timing.HelloTimeout)); err != nil {
		return 0, actResume, fmt.Errorf("setting read deadline: %w", err)
	}
	for {
		msg, err := r.next()
		if err != nil {
			act, err := s.classifyReadError(err)
			return 0, act, fmt.Errorf("waiting for hello: %w", err)
		}
		f, err := discordjson.ParseFrame(msg)
		if err != nil {
			return 0, actResume, fmt.Errorf("waiting for hello: %w", err)
		}
		switch f.Op {
		case opHello:
			var hello struct {
				HeartbeatInterval float64 `json:"heartbeat_interval"`
			}
			if err := json.Unmarshal(f.D, &hello); err != nil {
				return 0, actResume, fmt.Errorf("decoding hello: %w", err)
			}
			if hello.HeartbeatInterval < 1 || hello.HeartbeatInterval > 10*60*1000 {
				return 0, actResume, fmt.Errorf("hello has heartbeat_interval %v ms, outside 1 ms..10 min", hello.HeartbeatInterval)
			}
			if err := ws.SetReadDeadline(time.Time{}); err != nil {
				return 0, actResume, fmt.Errorf("clearing read deadline: %w", err)
			}
			return time.Duration(hello.HeartbeatInterval * float64(time.Millisecond)), actResume, nil
		case opReconnect:
			return 0, actResume, errors.New("gateway asked to reconnect (op 7) before hello")
		}
	}
}

// classifyReadError turns the error that ended a read into the next step.
func (s *shard) classifyReadError(err error) (action, error) {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		act, fatal := classifyClose(ce.Code, s.id, s.m.cfg.ShardCount)
		if fatal != nil {
			return act, fatal
		}
		return act, fmt.Errorf("gateway closed the connection: %w", ce)
	}
	return actResume, fmt.Errorf("reading from the gateway: %w", err)
}

// readLoop handles payloads until the connection ends.
func (s *shard) readLoop(ctx context.Context, c *conn, r *reader, log *slog.Logger) (action, bool, error) {
	m := s.m
	healthy := false
	for {
		msg, err := r.next()
		now := time.Now()
		if err != nil {
			if act, why, ok := c.reason(); ok {
				if act == actStop && ctx.Err() != nil {
					return actStop, healthy, why
				}
				return act, healthy, why
			}
			act, err := s.classifyReadError(err)
			return act, healthy, err
		}
		f, err := discordjson.ParseFrame(msg)
		if err != nil {
			return actResume, healthy, fmt.Errorf("parsing gateway payload: %w", err)
		}
		switch f.Op {
		case opDispatch:
			if f.Seq > s.seq.Load() {
				s.seq.Store(f.Seq)
			}
			switch f.Type {
			case "READY":
				s.identifying.Store(false)
				if err := s.onReady(ctx, c, f.D, log); err != nil {
					return actIdentify, healthy, err
				}
				healthy = true
			case "RESUMED":
				s.mu.Lock()
				s.resumes++
				s.state = StateReady
				s.conn = c
				s.mu.Unlock()
				healthy = true
				log.Info("session resumed", "seq", s.seq.Load())
			}
			s.events.Add(1)
			m.handler.HandleDispatch(Dispatch{
				ShardID:    s.id,
				ShardCount: m.cfg.ShardCount,
				Seq:        f.Seq,
				Name:       f.Type,
				Data:       bytes.Clone(f.D),
				ReceivedAt: now,
			})
		case opHeartbeat:
			c.hb.requested(now)
			if err := s.sendHeartbeat(ctx, c); err != nil {
				return actResume, healthy, err
			}
		case opHeartbeatACK:
			c.hb.ack(now)
			log.Debug("heartbeat acknowledged", "latency", c.hb.lastLatency())
			s.mu.Lock()
			s.latency = c.hb.lastLatency()
			s.mu.Unlock()
		case opReconnect:
			c.closeWith(closeResumable, actResume, nil)
			return actResume, healthy, errors.New("gateway asked to reconnect (op 7)")
		case opInvalidSession:
			c.closeWith(closeResumable, actResume, nil)
			if bytes.Equal(bytes.TrimSpace(f.D), []byte("true")) {
				return actResume, healthy, errors.New("invalid session (op 9), resumable")
			}
			return actIdentifyAfterWait, healthy, errors.New("invalid session (op 9), not resumable")
		case opHello:
			// A second Hello changes nothing.
		default:
			log.Debug("ignoring unknown gateway op", "op", f.Op)
		}
	}
}

func (s *shard) onReady(ctx context.Context, c *conn, d []byte, log *slog.Logger) error {
	var ready struct {
		SessionID        string `json:"session_id"`
		ResumeGatewayURL string `json:"resume_gateway_url"`
	}
	if err := json.Unmarshal(d, &ready); err != nil {
		return fmt.Errorf("decoding READY: %w", err)
	}
	if ready.SessionID == "" {
		return errors.New("READY has no session_id")
	}
	sess := Session{ID: ready.SessionID, ResumeURL: ready.ResumeGatewayURL, Seq: s.seq.Load()}
	s.mu.Lock()
	s.session = sess
	s.identifies++
	s.state = StateReady
	s.conn = c
	s.mu.Unlock()
	if err := s.m.sessions.Save(ctx, s.id, sess); err != nil {
		log.Warn("saving the new session failed; a restart will identify", "err", err)
	}
	log.Info("session ready", "resume_url_host", hostOf(ready.ResumeGatewayURL))
	return nil
}

// status returns a snapshot. It also advances the events-per-second sample.
func (s *shard) status(now time.Time) ShardStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	events := s.events.Load()
	if s.rateAt.IsZero() {
		s.rateAt, s.rateEvents = now, events
	} else if el := now.Sub(s.rateAt); el >= time.Second {
		s.rate = float64(events-s.rateEvents) / el.Seconds()
		s.rateAt, s.rateEvents = now, events
	}
	return ShardStatus{
		ID:              s.id,
		State:           s.state,
		Latency:         s.latency,
		Seq:             s.seq.Load(),
		SessionID:       s.session.ID,
		Reconnects:      s.reconnects,
		Resumes:         s.resumes,
		Identifies:      s.identifies,
		EventsPerSecond: s.rate,
		LastError:       s.lastErr,
	}
}

// send writes a command on the shard's ready connection.
func (s *shard) send(ctx context.Context, payload []byte) error {
	s.mu.Lock()
	c, st := s.conn, s.state
	s.mu.Unlock()
	if c == nil {
		return fmt.Errorf("%w: shard %d is %s; retry once it is ready", ErrShardDown, s.id, st)
	}
	return c.write(ctx, payload, false)
}

// ErrShardDown is wrapped by Send errors when the shard has no ready connection.
var ErrShardDown = errors.New("shard not connected")
