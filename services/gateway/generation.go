package gateway

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kubecord/kubecord/internal/discordjson"
	"github.com/kubecord/kubecord/internal/runtime"
	"github.com/kubecord/kubecord/services/gateway/internal/lease"
	"github.com/kubecord/kubecord/services/gateway/internal/shard"
)

// generation is one shard set (one shard count): its shard manager, leases and ownership.
// A gateway has one live generation, and a second one in shadow while it reshards.
type generation struct {
	count  int
	m      *shard.Manager
	own    *ownership
	shadow *shadow // nil for a generation that started live
	cancel context.CancelFunc
	done   chan struct{}         // closed when the manager's Run returned
	runErr atomic.Pointer[error] // Run's error, for a shard set in shadow
}

// failure describes why the set cannot go live: a shard stopped for good (a fatal close
// code), or the manager ended; "" when none did.
func (g *generation) failure() string {
	if err := g.runErr.Load(); err != nil {
		return (*err).Error()
	}
	for _, st := range g.m.Status() {
		if st.State == shard.StateFailed {
			return fmt.Sprintf("shard %d of %d: %s", st.ID, g.count, st.LastError)
		}
	}
	return ""
}

// live reports whether the generation's events reach the hub.
func (g *generation) live() bool { return g.shadow == nil || g.shadow.isLive() }

// startGeneration starts a shard set of count shards: in shadow when shadowed.
func (s *Server) startGeneration(count int, shadowed bool) (*generation, error) {
	cfg := s.cfg
	var (
		leases lease.Manager
		err    error
	)
	prefix := ""
	if s.client != nil {
		prefix = generationPrefix(s.base, count)
	}
	switch {
	case len(cfg.ShardIDs) > 0:
		leases, err = lease.NewFixed(cfg.ShardIDs)
	case s.client != nil:
		leases, err = lease.New(s.client, lease.Config{Prefix: prefix, PodID: cfg.GatewayID, Shards: count,
			TTL: cfg.LeaseTTL, Renew: cfg.LeaseRenew, HandOff: true, Logger: s.log.With("component", "leases", "shard_count", count)})
	default:
		leases, err = lease.NewMemory(count)
	}
	if err != nil {
		return nil, fmt.Errorf("gateway: shard leases: %w", err)
	}
	store, shared := s.sessions, true
	if s.client != nil && cfg.Sessions == nil {
		shared = false
		var fence func(int) (string, string)
		if r, ok := leases.(*lease.Redis); ok {
			fence = r.Fence
		}
		if store, err = NewRedisSessionStore(s.client, "{"+prefix+"}:session:", 0, fence); err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
	}
	g := &generation{count: count, done: make(chan struct{})}
	if shadowed {
		g.shadow = newShadow(cfg.ShadowEvents)
		if shared {
			// One store for both sets (keyed by shard id only): the new set must not
			// overwrite the live set's sessions before it replaces it.
			store = liveOnlyStore{SessionStore: store, live: g.live}
		}
	}
	watermark := func(id int) (uint64, bool) {
		if !g.live() {
			return 0, false
		}
		return s.hub.Watermark(id)
	}
	adapter := sessionAdapter{store: store, count: count, pod: cfg.GatewayID, watermark: watermark}
	if g.shadow != nil {
		adapter.shadowPoint = g.shadow.resumePoint
	}
	m, err := shard.NewManager(shard.Config{
		Token:          cfg.Token,
		GatewayURL:     s.gatewayURL,
		Intents:        cfg.Intents,
		ShardCount:     count,
		Compression:    cfg.Compression,
		LargeThreshold: cfg.LargeThreshold,
		Identify:       s.limiter,
		Sessions:       adapter,
		Watermark: func(id int) uint64 {
			if wm, ok := watermark(id); ok {
				return wm
			}
			return math.MaxUint64 // nothing published: no constraint beyond what was received
		},
		Handler: s.handlerFor(g),
		Logger:  s.log.With("component", "shards", "shard_count", count),
		Timing:  cfg.ShardTiming,
		Dynamic: true,
	})
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	ctx, cancel := context.WithCancel(s.runCtx)
	g.m, g.cancel = m, cancel
	s.wg.Go(func() {
		defer close(g.done)
		err := m.Run(ctx)
		if err != nil && ctx.Err() == nil {
			if !g.live() {
				// A shard set in shadow that failed cancels its reshard (reshardStep); the
				// live set keeps the pod serving.
				g.runErr.Store(&err)
				return
			}
			runtime.Fail(s.lifeCtx, fmt.Errorf("gateway shards: %w", err))
		}
		if err != nil {
			s.runErrs.add(err)
		}
	})
	g.own = newOwnership(s, m, leases, adapter, g.shadow)
	g.own.start(ctx, s.lifeCtx)
	return g, nil
}

// handlerFor is the dispatch handler of a generation's shards.
func (s *Server) handlerFor(g *generation) shard.Handler {
	return shard.HandlerFunc(func(d shard.Dispatch) {
		if g.shadow != nil && g.shadow.hold(d) {
			return
		}
		if rec := s.seen.Load(); rec != nil {
			rec.add(d)
		}
		s.HandleDispatch(d)
		if d.Name == "RESUMED" {
			s.hub.EndReplay(d.ShardID)
		}
	})
}

// retire hands every shard of g on and ends its leases (once: later calls return at once).
func (g *generation) retire(ctx context.Context) { g.own.drain(ctx) }

// stop retires g and waits for its manager to return.
func (g *generation) stop(ctx context.Context) error {
	g.retire(ctx)
	g.cancel()
	select {
	case <-g.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("the shards of the %d-shard set did not stop: %w", g.count, ctx.Err())
	}
}

// errList collects errors from goroutines.
type errList struct {
	mu   sync.Mutex
	errs []error
}

func (l *errList) add(err error) {
	l.mu.Lock()
	l.errs = append(l.errs, err)
	l.mu.Unlock()
}

func (l *errList) join() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return errors.Join(l.errs...)
}

// reshardLoop follows the resharding plan (see reshard.go) every poll interval, and, with
// ReshardCheck set, proposes a reshard when GET /gateway/bot recommends more shards.
func (s *Server) reshardLoop(ctx context.Context, stop <-chan struct{}) {
	poll := s.cfg.LeaseRenew
	if poll <= 0 {
		poll = lease.DefaultRenew
	}
	poll = min(poll, time.Second)
	t := time.NewTicker(poll)
	defer t.Stop()
	lastCheck := time.Now()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return
		case <-stop:
			return
		case <-t.C:
		}
		err := s.reshardStep(ctx)
		if s.cfg.ReshardCheck > 0 && time.Since(lastCheck) >= s.cfg.ReshardCheck {
			lastCheck = time.Now()
			err = errors.Join(err, s.checkRecommendation(ctx))
		}
		if err != nil && ctx.Err() == nil && err.Error() != lastErr {
			s.log.Warn("resharding", "err", err)
		}
		lastErr = ""
		if err != nil {
			lastErr = err.Error()
		}
	}
}

// checkRecommendation proposes a reshard when Discord recommends more shards than run now.
func (s *Server) checkRecommendation(ctx context.Context) error {
	bot, err := shard.FetchGatewayBot(ctx, s.cfg.RESTBase, s.cfg.Token)
	if err != nil {
		return fmt.Errorf("checking the recommended shard count: %w", err)
	}
	cur := s.live.Load().count
	if bot.Shards <= cur {
		return nil
	}
	ok, err := s.coord.Propose(ctx, cur, bot.Shards)
	if err != nil {
		return err
	}
	if ok {
		s.log.Info("Discord recommends more shards: resharding", "from", cur, "to", bot.Shards)
	}
	return nil
}

// reshardStep moves this pod one step along the plan.
func (s *Server) reshardStep(ctx context.Context) error {
	active, err := s.coord.Active(ctx)
	if err != nil {
		return err
	}
	plan, havePlan, err := s.coord.Plan(ctx)
	if err != nil {
		return err
	}
	live := s.live.Load()
	s.genMu.Lock()
	next := s.next
	s.genMu.Unlock()

	// The new set became the active one: publish its shadow and make it live.
	if next != nil && active == next.count {
		return s.promote(ctx, live, next)
	}
	// A plan from the count this pod runs is under way.
	if havePlan && !planFinished(plan.Phase) && plan.From == live.count {
		s.record(plan, live)
		if err := s.seen.Load().flush(ctx); err != nil {
			return err
		}
		if err := s.coord.AckRecording(ctx, s.cfg.GatewayID); err != nil {
			return err
		}
		if next == nil {
			// No shard of the new set may connect before every pod records what it
			// publishes.
			if all, err := s.coord.AllRecording(ctx, plan.From); err != nil || !all {
				return err
			}
			s.log.Info("resharding: starting the new shard set in shadow", "from", plan.From, "to", plan.To)
			g, err := s.startGeneration(plan.To, true)
			if err != nil {
				return err
			}
			s.genMu.Lock()
			s.next = g
			s.genMu.Unlock()
			next = g
		}
		var errs []error
		for _, id := range next.shadow.newlyReady() {
			// Stored before it counts as ready: once every new shard does, the old set
			// retires, and a pod taking this one over must resume from its frozen point.
			if err := next.own.saveNow(ctx, id); err != nil {
				next.shadow.unreport(id)
				errs = append(errs, fmt.Errorf("storing the session of new shard %d: %w", id, err))
				continue
			}
			if err := s.coord.MarkReady(ctx, id); err != nil {
				next.shadow.unreport(id)
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			return err
		}
		switch plan.Phase {
		case phaseWarming:
			if reason := next.failure(); reason != "" {
				if ok, err := s.coord.Cancel(ctx, plan, reason); err != nil {
					return err
				} else if ok {
					s.log.Error("resharding: a shard of the new set failed for good; cancelling the reshard",
						"from", plan.From, "to", plan.To, "reason", reason)
				}
				return nil
			}
			n, err := s.coord.ReadyCount(ctx)
			if err != nil {
				return err
			}
			if n >= plan.To {
				if ok, err := s.coord.Advance(ctx, plan, phaseSwitching); err != nil {
					return err
				} else if ok {
					s.log.Info("resharding: every new shard is ready; retiring the old set", "from", plan.From, "to", plan.To)
				}
			}
		case phaseSwitching:
			live.retire(ctx)
			released, err := s.coord.OldReleased(ctx, plan.From)
			if err != nil || !released {
				return err
			}
			if ok, err := s.coord.Advance(ctx, plan, phaseDone); err != nil {
				return err
			} else if ok {
				s.log.Info("resharding: the old set is gone; the new set is active", "shard_count", plan.To)
			}
		}
		return nil
	}
	// A new set without a plan that makes it active (cancelled, or Redis lost the plan):
	// give it up.
	if next != nil && (!havePlan || plan.To != next.count || plan.Phase == phaseCancelled) {
		if plan.Phase == phaseCancelled {
			s.log.Error("resharding cancelled; stopping the new shard set and keeping the old one",
				"from", plan.From, "to", plan.To, "reason", plan.Reason)
		} else {
			s.log.Warn("resharding: the plan is gone; stopping the new shard set", "shard_count", next.count)
		}
		s.genMu.Lock()
		s.next = nil
		s.genMu.Unlock()
		s.seen.Store(nil)
		live.own.setBeforeSave(nil)
		return next.stop(ctx)
	}
	return nil
}

// record starts recording the hashes of what the live set publishes, for a plan retiring it.
func (s *Server) record(plan reshardPlan, live *generation) {
	if s.seen.Load() != nil {
		return
	}
	rec := &seenRecorder{from: plan.From, coord: s.coord}
	s.seen.Store(rec)
	live.own.setBeforeSave(rec.flush)
}

// promote makes next the live generation.
func (s *Server) promote(ctx context.Context, old, next *generation) error {
	old.retire(ctx)
	// The old set's sessions are over: a shard of the new set with the same id starts its
	// own (from goLive, or from its READY if it had none yet), and is no reset of theirs.
	for id := range old.count {
		s.sessionIDs.Delete(id)
	}
	unclean := s.uncleanShards(ctx, old)
	if len(unclean) > 0 {
		s.log.Warn("resharding: shards of the old set were not handed off cleanly (a pod died); held events of their guilds that no pod recorded as published are flagged as possibly redelivered",
			"shards", slices.Sorted(maps.Keys(unclean)))
	}
	published, dedup, err := next.shadow.goLive(ctx, s.coord.Seen,
		func(id int, sess string, replaying bool) {
			if replaying {
				// Adopted from a dead pod and still replaying: until RESUMED (EndReplay),
				// its events may repeat what the old set published; flag them.
				s.hub.RestoreSession(id, 0, math.MaxUint64)
			} else {
				s.hub.StartSession(id)
			}
			s.sessionIDs.Store(id, sess)
		},
		func(d shard.Dispatch) bool { return unclean[oldShardOf(d, old.count)] },
		s.dispatch)
	if err != nil {
		return fmt.Errorf("publishing the new shard set's held events: %w", err)
	}
	s.live.Store(next)
	s.manager.Store(next.m)
	s.shardCount.Store(int64(next.count))
	s.genMu.Lock()
	s.next = nil
	s.genMu.Unlock()
	s.seen.Store(nil)
	s.log.Info("resharding done: the new shard set is live", "shard_count", next.count,
		"held_events_published", published, "held_events_already_published", dedup)
	return old.stop(ctx)
}

// uncleanShards returns the shards of old whose stored session is not a clean hand-off (or
// cannot be read): a pod died running them, and may have published events it had not yet
// recorded for the deduplication.
func (s *Server) uncleanShards(ctx context.Context, old *generation) map[int]bool {
	unclean := map[int]bool{}
	for id := range old.count {
		st, ok, err := old.own.adapter.load(ctx, id)
		if err != nil || !ok || !st.Clean {
			unclean[id] = true
		}
	}
	return unclean
}

// oldShardOf is the shard of a count-shard set that received d's counterpart: by guild,
// and shard 0 for events without one (Discord sends direct messages to shard 0).
func oldShardOf(d shard.Dispatch, count int) int {
	route, err := discordjson.RoutingKey(d.Name, d.Data)
	if err != nil || route.Kind != discordjson.RouteGuild || count <= 0 {
		return 0
	}
	return int((route.ID >> 22) % uint64(count))
}
