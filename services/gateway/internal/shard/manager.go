package shard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/kubecord/kubecord/services/gateway/internal/identify"
)

// Manager runs the shards of one process: a fixed set (Config.ShardIDs), or, with
// Config.Dynamic, whichever shards StartShard and StopShard add and remove while Run runs
// (the shards this pod holds leases on).
type Manager struct {
	cfg      Config
	timing   Timing
	log      *slog.Logger
	limiter  identify.Limiter
	sessions SessionStore
	handler  Handler
	initial  []int

	runMu   sync.Mutex
	running bool

	mu      sync.Mutex
	runCtx  context.Context // set while Run runs
	byID    map[int]*shard
	live    map[int]*liveShard
	errs    []error
	fatal   bool          // a fatal-all error ended every shard
	exited  chan struct{} // signalled (non-blocking) whenever a shard goroutine ends
	wg      sync.WaitGroup
	stopped bool          // Run has returned: no more StartShard
	runOn   chan struct{} // closed once Run has set runCtx (or refused to start)
}

// liveShard is a running shard goroutine.
type liveShard struct {
	s      *shard
	cancel context.CancelFunc
	done   chan struct{}
}

// NewManager checks cfg and returns a Manager ready to Run.
func NewManager(cfg Config) (*Manager, error) {
	if cfg.Token == "" {
		return nil, errors.New("shard manager: a bot token is required")
	}
	if cfg.Handler == nil {
		return nil, errors.New("shard manager: a dispatch handler is required")
	}
	if cfg.ShardCount < 1 {
		return nil, fmt.Errorf("shard manager: shard count %d must be at least 1", cfg.ShardCount)
	}
	if _, err := gatewayURL(cfg.GatewayURL, cfg.Compression); err != nil {
		return nil, fmt.Errorf("shard manager: %w", err)
	}
	switch cfg.Compression {
	case CompressionNone, CompressionZlib, CompressionZstd:
	default:
		return nil, fmt.Errorf("shard manager: unknown compression %q (want %q, %q or empty)", cfg.Compression, CompressionZlib, CompressionZstd)
	}
	if cfg.LargeThreshold != 0 && (cfg.LargeThreshold < 50 || cfg.LargeThreshold > 250) {
		return nil, fmt.Errorf("shard manager: large threshold %d is outside Discord's 50..250", cfg.LargeThreshold)
	}
	if len(cfg.Presence) > 0 && !json.Valid(cfg.Presence) {
		return nil, errors.New("shard manager: the initial presence is not valid JSON")
	}
	if cfg.Dynamic && len(cfg.ShardIDs) > 0 {
		return nil, errors.New("shard manager: a dynamic manager starts with no shards; list none")
	}
	ids := slices.Clone(cfg.ShardIDs)
	if len(ids) == 0 && !cfg.Dynamic {
		for i := range cfg.ShardCount {
			ids = append(ids, i)
		}
	}
	slices.Sort(ids)
	m := &Manager{
		cfg:      cfg,
		timing:   cfg.Timing.withDefaults(),
		log:      cfg.Logger,
		limiter:  cfg.Identify,
		sessions: cfg.Sessions,
		handler:  cfg.Handler,
		byID:     map[int]*shard{},
		live:     map[int]*liveShard{},
		exited:   make(chan struct{}, 1),
		runOn:    make(chan struct{}),
	}
	if m.log == nil {
		m.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if m.limiter == nil {
		l, err := identify.NewMemory(identify.MemoryConfig{})
		if err != nil {
			return nil, fmt.Errorf("shard manager: %w", err)
		}
		m.limiter = l
	}
	if m.sessions == nil {
		m.sessions = NewMemorySessionStore()
	}
	for i, id := range ids {
		if err := m.checkID(id); err != nil {
			return nil, err
		}
		if i > 0 && ids[i-1] == id {
			return nil, fmt.Errorf("shard manager: shard id %d is listed twice", id)
		}
		m.byID[id] = newShard(m, id)
	}
	m.initial = ids
	return m, nil
}

func newShard(m *Manager, id int) *shard {
	return &shard{id: id, m: m, state: StateIdle, started: make(chan struct{})}
}

func (m *Manager) checkID(id int) error {
	if id < 0 || id >= m.cfg.ShardCount {
		return fmt.Errorf("shard manager: shard id %d is outside 0..%d", id, m.cfg.ShardCount-1)
	}
	return nil
}

// Run connects the shards and keeps them connected until ctx is done, then closes them
// with a resumable code and saves their sessions, so a new Manager with the same
// SessionStore resumes instead of identifying. The fixed shards start in id order, each
// after the previous one has begun its identify or resume, so identify buckets fill in
// order; a dynamic Manager starts none and runs what StartShard adds.
//
// A shard that has not begun its identify or resume within the handshake and hello
// timeouts no longer holds back the next one.
//
// Run returns nil when ctx ends. A fatal close stops its shard (4004 stops all of them);
// Run then returns the fatal errors once no shard runs. Before connecting it refuses,
// with an error wrapping identify.ErrBudgetExhausted, a start whose identifies would
// exhaust the session start budget. A Manager runs once.
func (m *Manager) Run(ctx context.Context) error {
	m.runMu.Lock()
	if m.running {
		m.runMu.Unlock()
		return errors.New("shard manager: Run was already called")
	}
	m.running = true
	m.runMu.Unlock()

	if err := m.checkPlan(ctx, m.initial); err != nil {
		m.mu.Lock()
		m.stopped = true
		m.mu.Unlock()
		close(m.runOn)
		return fmt.Errorf("shard manager: refusing to start %d shards: %w", len(m.initial), err)
	}
	runCtx, cancelAll := context.WithCancel(ctx)
	defer cancelAll()
	m.mu.Lock()
	m.runCtx = runCtx
	m.mu.Unlock()
	close(m.runOn)

	for _, id := range m.initial {
		m.mu.Lock()
		ls := m.launchLocked(runCtx, m.byID[id], cancelAll)
		m.mu.Unlock()
		// A shard that cannot even connect must not hold the others back for long.
		wait := time.NewTimer(m.timing.HandshakeTimeout + m.timing.HelloTimeout)
		select {
		case <-ls.s.started:
		case <-wait.C:
			m.log.Warn("shard is slow to start; starting the next one", "shard", id)
		case <-runCtx.Done():
		}
		wait.Stop()
	}
	for {
		m.mu.Lock()
		done := m.fatal || (len(m.live) == 0 && len(m.errs) > 0)
		m.mu.Unlock()
		if done {
			break
		}
		select {
		case <-runCtx.Done():
		case <-m.exited:
			continue
		}
		break
	}
	cancelAll()
	m.mu.Lock()
	m.stopped = true
	m.mu.Unlock()
	m.wg.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	return errors.Join(m.errs...)
}

// checkPlan refuses starts that would exhaust the session start budget: shards with no
// stored session identify.
func (m *Manager) checkPlan(ctx context.Context, ids []int) error {
	starts := 0
	for _, id := range ids {
		sess, ok, err := m.sessions.Load(ctx, id)
		if err != nil || !ok || sess.ID == "" {
			starts++
		}
	}
	if starts == 0 {
		return nil
	}
	return m.limiter.CheckPlan(ctx, starts)
}

// launchLocked starts a shard's goroutine. m.mu is held.
func (m *Manager) launchLocked(runCtx context.Context, s *shard, cancelAll context.CancelFunc) *liveShard {
	ctx, cancel := context.WithCancel(runCtx)
	ls := &liveShard{s: s, cancel: cancel, done: make(chan struct{})}
	m.live[s.id] = ls
	m.wg.Go(func() {
		defer close(ls.done)
		err := s.run(ctx)
		cancel()
		m.mu.Lock()
		if m.live[s.id] == ls {
			delete(m.live, s.id)
		}
		if err != nil {
			m.errs = append(m.errs, err)
			var ce *fatalAllError
			if errors.As(err, &ce) {
				m.fatal = true
				cancelAll()
			}
		}
		m.mu.Unlock()
		select {
		case m.exited <- struct{}{}:
		default:
		}
	})
	return ls
}

// StartShards starts shards on a dynamic Manager while Run runs, resuming their stored
// sessions. It refuses, naming the numbers, a start whose identifies would exhaust the
// session start budget, and ids outside the shard count or already running.
func (m *Manager) StartShards(ctx context.Context, ids []int) error {
	if !m.cfg.Dynamic {
		return errors.New("shard manager: shards are fixed; StartShards needs Config.Dynamic")
	}
	ids = slices.Sorted(slices.Values(ids))
	select { // Run may be starting in another goroutine
	case <-m.runOn:
	case <-ctx.Done():
		return fmt.Errorf("shard manager: waiting for Run: %w", ctx.Err())
	}
	m.mu.Lock()
	runCtx, stopped := m.runCtx, m.stopped
	for _, id := range ids {
		if err := m.checkID(id); err != nil {
			m.mu.Unlock()
			return err
		}
		if _, ok := m.live[id]; ok {
			m.mu.Unlock()
			return fmt.Errorf("shard manager: shard %d is already running", id)
		}
	}
	m.mu.Unlock()
	if runCtx == nil || stopped {
		return errors.New("shard manager: not running (call StartShards while Run runs)")
	}
	if err := m.checkPlan(ctx, ids); err != nil {
		return fmt.Errorf("shard manager: refusing to start shards %v: %w", ids, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return errors.New("shard manager: stopped while starting shards")
	}
	for _, id := range ids {
		if _, ok := m.live[id]; ok {
			continue // started by a concurrent call
		}
		s := newShard(m, id)
		m.byID[id] = s
		m.launchLocked(runCtx, s, func() {})
	}
	return nil
}

// StopShard stops one shard of a dynamic Manager: it closes the connection with a
// resumable code, saves the session and forgets the shard. It returns the session as it
// stood (ok false when the shard had none), for a hand-off to another pod.
func (m *Manager) StopShard(ctx context.Context, id int) (Session, bool, error) {
	m.mu.Lock()
	ls, ok := m.live[id]
	s := m.byID[id]
	m.mu.Unlock()
	if ok {
		ls.cancel()
		select {
		case <-ls.done:
		case <-ctx.Done():
			return Session{}, false, fmt.Errorf("shard manager: shard %d did not stop: %w", id, ctx.Err())
		}
	}
	m.mu.Lock()
	if m.byID[id] == s {
		delete(m.byID, id)
	}
	m.mu.Unlock()
	if s == nil {
		return Session{}, false, nil
	}
	sess, ok := s.currentSession()
	return sess, ok, nil
}

// IdentifyPending reports whether a shard has sent Identify and not yet received READY:
// stopping it now would waste the session start it spent.
func (m *Manager) IdentifyPending(id int) bool {
	m.mu.Lock()
	s := m.byID[id]
	m.mu.Unlock()
	return s != nil && s.identifying.Load()
}

// Session returns a shard's current session with the last received sequence; ok is
// false when the shard is not run here or has no session.
func (m *Manager) Session(id int) (Session, bool) {
	m.mu.Lock()
	s := m.byID[id]
	m.mu.Unlock()
	if s == nil {
		return Session{}, false
	}
	return s.currentSession()
}

// fatalAllError marks a fatal error that stops every shard (a rejected token).
type fatalAllError struct{ err error }

func (e *fatalAllError) Error() string { return e.err.Error() }
func (e *fatalAllError) Unwrap() error { return e.err }

// commandOps are the opcodes Send accepts: the ones a bot sends on its own. Heartbeat,
// Identify and Resume belong to the shard.
var commandOps = map[int]string{
	opPresenceUpdate:    "presence update",
	opVoiceStateUpdate:  "voice state update",
	opRequestMembers:    "request guild members",
	opRequestSoundboard: "request soundboard sounds",
	opRequestChannel:    "request channel info",
}

// Send sends a gateway command (op 3, 4, 8, 31 or 43) on a shard. It waits, up to ctx,
// for room in the connection's send limit, and fails with an error wrapping ErrShardDown
// when the shard has no ready session.
func (m *Manager) Send(ctx context.Context, shardID, op int, d any) error {
	if _, ok := commandOps[op]; !ok {
		return fmt.Errorf("gateway op %d cannot be sent as a command (allowed: 3, 4, 8, 31, 43)", op)
	}
	m.mu.Lock()
	s, ok := m.byID[shardID]
	m.mu.Unlock()
	if !ok {
		return fmt.Errorf("shard %d is not run by this manager", shardID)
	}
	payload, err := json.Marshal(gatewayPayload{Op: op, D: d})
	if err != nil {
		return fmt.Errorf("encoding %s payload: %w", commandOps[op], err)
	}
	if len(payload) > maxPayloadSize {
		return fmt.Errorf("%s payload is %d bytes, over the gateway's %d byte limit", commandOps[op], len(payload), maxPayloadSize)
	}
	if err := s.send(ctx, payload); err != nil {
		return fmt.Errorf("sending %s on shard %d: %w", commandOps[op], shardID, err)
	}
	return nil
}

// Status returns a snapshot of every shard, in shard id order.
func (m *Manager) Status() []ShardStatus {
	now := time.Now()
	m.mu.Lock()
	shards := make([]*shard, 0, len(m.byID))
	for _, s := range m.byID {
		shards = append(shards, s)
	}
	m.mu.Unlock()
	slices.SortFunc(shards, func(a, b *shard) int { return a.id - b.id })
	out := make([]ShardStatus, len(shards))
	for i, s := range shards {
		out[i] = s.status(now)
	}
	return out
}

// ShardIDs returns the shards this manager runs, in order.
func (m *Manager) ShardIDs() []int {
	m.mu.Lock()
	ids := slices.Collect(maps.Keys(m.byID))
	m.mu.Unlock()
	slices.Sort(ids)
	return ids
}
