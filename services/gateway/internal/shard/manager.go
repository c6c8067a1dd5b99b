package shard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/kubecord/kubecord/services/gateway/internal/identify"
)

// Manager runs the shards of one process.
type Manager struct {
	cfg      Config
	timing   Timing
	log      *slog.Logger
	limiter  identify.Limiter
	sessions SessionStore
	handler  Handler
	shards   []*shard
	byID     map[int]*shard

	runMu   sync.Mutex
	running bool
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
	ids := slices.Clone(cfg.ShardIDs)
	if len(ids) == 0 {
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
		if id < 0 || id >= cfg.ShardCount {
			return nil, fmt.Errorf("shard manager: shard id %d is outside 0..%d", id, cfg.ShardCount-1)
		}
		if i > 0 && ids[i-1] == id {
			return nil, fmt.Errorf("shard manager: shard id %d is listed twice", id)
		}
		s := &shard{id: id, m: m, state: StateIdle, started: make(chan struct{})}
		m.shards = append(m.shards, s)
		m.byID[id] = s
	}
	return m, nil
}

// Run connects every shard and keeps them connected until ctx is done, then closes them
// with a resumable code and saves their sessions, so a new Manager with the same
// SessionStore resumes instead of identifying. Shards start in id order, each after the
// previous one has begun its identify or resume, so identify buckets fill in order.
//
// A shard that has not begun its identify or resume within the handshake and hello
// timeouts no longer holds back the next one.
//
// Run returns nil when ctx ends. A fatal close stops its shard (4004 stops all of them);
// Run then returns the fatal errors once every shard has stopped. Before connecting it
// refuses, with an error wrapping identify.ErrBudgetExhausted, a start whose identifies
// would exhaust the session start budget. A Manager runs once.
func (m *Manager) Run(ctx context.Context) error {
	m.runMu.Lock()
	if m.running {
		m.runMu.Unlock()
		return errors.New("shard manager: Run was already called")
	}
	m.running = true
	m.runMu.Unlock()

	starts := 0
	for _, s := range m.shards {
		sess, ok, err := m.sessions.Load(ctx, s.id)
		if err != nil || !ok || sess.ID == "" {
			starts++
		}
	}
	if err := m.limiter.CheckPlan(ctx, starts); err != nil {
		return fmt.Errorf("shard manager: refusing to start %d shards: %w", len(m.shards), err)
	}

	runCtx, cancelAll := context.WithCancel(ctx)
	defer cancelAll()
	var (
		wg    sync.WaitGroup
		errMu sync.Mutex
		errs  []error
	)
	for _, s := range m.shards {
		wg.Go(func() {
			err := s.run(runCtx)
			if err == nil {
				return
			}
			errMu.Lock()
			errs = append(errs, err)
			errMu.Unlock()
			var ce *fatalAllError
			if errors.As(err, &ce) {
				cancelAll()
			}
		})
		// A shard that cannot even connect must not hold the others back for long.
		wait := time.NewTimer(m.timing.HandshakeTimeout + m.timing.HelloTimeout)
		select {
		case <-s.started:
		case <-wait.C:
			m.log.Warn("shard is slow to start; starting the next one", "shard", s.id)
		case <-runCtx.Done():
		}
		wait.Stop()
	}
	wg.Wait()
	return errors.Join(errs...)
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
	s, ok := m.byID[shardID]
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
	out := make([]ShardStatus, len(m.shards))
	for i, s := range m.shards {
		out[i] = s.status(now)
	}
	return out
}

// ShardIDs returns the shards this manager runs, in order.
func (m *Manager) ShardIDs() []int {
	ids := make([]int, len(m.shards))
	for i, s := range m.shards {
		ids[i] = s.id
	}
	return ids
}
