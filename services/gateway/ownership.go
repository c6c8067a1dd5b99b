package gateway

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/kubecord/kubecord/internal/runtime"
	"github.com/kubecord/kubecord/services/gateway/internal/lease"
	"github.com/kubecord/kubecord/services/gateway/internal/shard"
)

// ownership runs the shards this pod owns. It follows the lease manager's owned set:
// a shard that joins the set is started, resuming its stored session (saved by this pod
// earlier or by the pod that ran it before); a shard that leaves it is handed on: stopped,
// given up to HandoffTimeout for consumers to ack its outstanding events, saved as a clean
// hand-off, and only then released, so the next owner resumes from where delivery stopped.
// While shards run, their sessions are saved every SessionSave, which is what the next
// owner resumes from when this pod dies without a hand-off.
type ownership struct {
	s       *Server
	m       *shard.Manager
	leases  lease.Manager
	adapter sessionAdapter
	shadow  *shadow // the shard set's shadow while it is not live, else nil
	// beforeSave, when set, runs before sessions are saved and leases released (a
	// retiring shard set flushes the hashes of what it published), so that a stored
	// session's resume point never passes events whose hashes are not in Redis.
	beforeSave func(ctx context.Context) error

	stop     chan struct{} // closed by drain: the loops end
	loops    sync.WaitGroup
	handoffs sync.WaitGroup
	once     sync.Once

	mu       sync.Mutex // orders session saves of the periodic loop and the hand-offs
	handing  map[int]bool
	lastSave map[int]StoredSession
	saveErr  bool // the last periodic save failed (logged once per outage)
}

func newOwnership(s *Server, m *shard.Manager, leases lease.Manager, adapter sessionAdapter, sh *shadow) *ownership {
	return &ownership{s: s, m: m, leases: leases, adapter: adapter, shadow: sh, stop: make(chan struct{}),
		handing: map[int]bool{}, lastSave: map[int]StoredSession{}}
}

// start runs the lease manager, the ownership loop and the periodic saves. runCtx ends
// them abruptly (as if the pod died); drain ends them in order. lifeCtx is the service's
// context, for runtime.Fail.
func (o *ownership) start(runCtx, lifeCtx context.Context) {
	o.s.wg.Go(func() {
		if err := o.leases.Run(runCtx); err != nil && runCtx.Err() == nil {
			runtime.Fail(lifeCtx, err)
		}
	})
	o.loops.Go(func() { o.follow(runCtx, lifeCtx) })
	o.loops.Go(func() { o.saveLoop(runCtx) })
}

// follow applies each owned set the lease manager publishes.
func (o *ownership) follow(ctx, lifeCtx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-o.stop:
			return
		case set, ok := <-o.leases.Changes():
			if !ok {
				return
			}
			if err := o.apply(ctx, set); err != nil && ctx.Err() == nil {
				runtime.Fail(lifeCtx, err)
				return
			}
		}
	}
}

// apply starts the shards of set this pod does not run and hands on the ones it runs
// that are not in set.
func (o *ownership) apply(ctx context.Context, set []int) error {
	running := o.m.ShardIDs()
	o.mu.Lock()
	var added []int
	for _, id := range set {
		if !slices.Contains(running, id) && !o.handing[id] {
			added = append(added, id)
		}
	}
	for _, id := range running {
		if !slices.Contains(set, id) && !o.handing[id] {
			o.handing[id] = true
			o.handoffs.Go(func() { o.handOff(ctx, id) })
		}
	}
	o.mu.Unlock()
	if len(added) == 0 {
		return nil
	}
	for _, id := range added {
		o.restore(ctx, id)
	}
	if err := o.m.StartShards(ctx, added); err != nil {
		return err
	}
	o.s.log.Info("started owned shards", "shards", added, "owned", set)
	return nil
}

// restore primes the hub with a shard's stored session before the shard resumes it: the
// resume point is the stored watermark, and replayed events the previous owner may have
// delivered are flagged as redelivered (all of the replay, up to RESUMED, when that owner
// did not hand the shard off cleanly).
func (o *ownership) restore(ctx context.Context, id int) {
	st, ok, err := o.adapter.load(ctx, id)
	if err != nil {
		o.s.log.Warn("loading the stored session failed; the shard identifies", "shard", id, "err", err)
		return
	}
	if !ok {
		return
	}
	if o.shadow != nil && !o.shadow.isLive() {
		// Nothing of a shadow set reaches the hub before it goes live; the shadow holds
		// what Discord replays from the stored resume point.
		o.shadow.adopt(id, st.ID, st.Seq)
		o.s.log.Info("resuming a stored session of the new shard set", "shard", id, "from_pod", st.Pod, "seq", st.Seq)
		return
	}
	upTo := st.Seq
	if !st.Clean {
		upTo = math.MaxUint64
	}
	o.s.hub.RestoreSession(id, st.Watermark, upTo)
	o.s.sessionIDs.Store(id, st.ID)
	if st.Clean {
		// From now on this pod publishes the session's events: should it die before its
		// next save, the session must not read as a clean hand-off (a reshard takes a clean
		// one to mean every event it published was recorded).
		taken := st
		taken.Clean, taken.Pod, taken.SavedAt = false, o.adapter.pod, time.Now()
		if err := o.adapter.store.SaveSession(ctx, id, taken); err != nil {
			o.s.log.Warn("marking the resumed session as taken over failed", "shard", id, "err", err)
		}
	}
	o.s.log.Info("resuming stored session", "shard", id, "from_pod", st.Pod, "watermark", st.Watermark,
		"received_up_to", st.Seq, "clean_handoff", st.Clean, "age", time.Since(st.SavedAt).Round(time.Millisecond))
}

// handOff stops a shard, waits for its outstanding events to be acked, saves its session
// as a clean hand-off and releases its lease.
func (o *ownership) handOff(ctx context.Context, id int) {
	defer func() {
		o.mu.Lock()
		delete(o.handing, id)
		delete(o.lastSave, id)
		o.mu.Unlock()
	}()
	log := o.s.log.With("shard", id)
	began := time.Now()
	// A shard whose Identify is out has spent a session start: let its READY arrive, so
	// the next owner resumes the session instead of identifying again.
	for wait := time.Now().Add(identifyGrace); o.m.IdentifyPending(id) && time.Now().Before(wait) && ctx.Err() == nil; {
		time.Sleep(10 * time.Millisecond) // polling with a deadline; READY normally follows within a round trip
	}
	sess, ok, err := o.m.StopShard(ctx, id)
	if err != nil {
		log.Error("stopping the shard for a hand-off failed; its lease expires instead", "err", err)
		return
	}
	var wm uint64
	shadowed := o.shadow != nil && !o.shadow.isLive()
	if shadowed {
		wm = sess.Seq // a shadow shard has nothing in the hub to wait for
	} else if ok {
		wait := time.NewTimer(o.s.cfg.HandoffTimeout)
		tick := time.NewTicker(5 * time.Millisecond)
		for done := false; !done; {
			if wm, _ = o.s.hub.Watermark(id); wm >= sess.Seq {
				break
			}
			select {
			case <-wait.C:
				done = true
			case <-ctx.Done():
				done = true
			case <-tick.C:
			}
		}
		wait.Stop()
		tick.Stop()
	}
	// The hand-off's writes get their own deadline: a cancelled shutdown context must not
	// lose the session the next owner resumes.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	// Flushed before the clean save: a session saved clean never hides unflushed hashes.
	flushed := o.runBeforeSave(rctx)
	if ok {
		st := o.adapter.stored(id, sess, flushed)
		if err := o.adapter.store.SaveSession(rctx, id, st); err != nil {
			log.Error("saving the session for the hand-off failed; the next owner resumes from the last periodic save", "err", err)
		}
	}
	if shadowed {
		// After the save, which asks the shadow for the shard's resume point: the next
		// owner has Discord replay what the shadow held of it.
		o.shadow.forget(id)
	}
	err = o.leases.Release(rctx, id)
	if err != nil {
		log.Warn("releasing the shard's lease failed", "err", err)
	}
	log.Info("shard handed off", "seq", sess.Seq, "watermark", wm, "unacked", sess.Seq-min(wm, sess.Seq),
		"took", time.Since(began).Round(time.Millisecond))
}

// sessionRefreshEvery: an unchanged session is saved again every this many SessionSave
// intervals (10 s by default, far under DefaultSessionTTL).
const sessionRefreshEvery = 10

// identifyGrace bounds the wait for READY before a shard with an Identify out is handed off.
const identifyGrace = 15 * time.Second

// saveLoop saves the running shards' sessions every SessionSave, each when it changed or
// was last saved sessionRefreshEvery intervals ago.
func (o *ownership) saveLoop(ctx context.Context) {
	t := time.NewTicker(o.s.cfg.SessionSave)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-o.stop:
			return
		case <-t.C:
		}
		if !o.runBeforeSave(ctx) {
			continue // a save now could pass events whose hashes are not recorded
		}
		for _, id := range o.m.ShardIDs() {
			sess, ok := o.m.Session(id)
			if !ok {
				continue
			}
			st := o.adapter.stored(id, sess, false)
			o.mu.Lock()
			prev, saved := o.lastSave[id]
			// Unchanged sessions are saved again now and then: that keeps a quiet shard's
			// session from expiring in Redis, and restores it after Redis lost its data.
			fresh := saved && time.Since(prev.SavedAt) < sessionRefreshEvery*o.s.cfg.SessionSave
			if o.handing[id] || (fresh && prev.ID == st.ID && prev.Seq == st.Seq && prev.Watermark == st.Watermark) {
				o.mu.Unlock()
				continue
			}
			sctx, cancel := context.WithTimeout(ctx, o.s.cfg.SessionSave)
			err := o.adapter.store.SaveSession(sctx, id, st)
			cancel()
			switch {
			case err == nil:
				o.lastSave[id] = st
				if o.saveErr {
					o.s.log.Info("saving sessions works again")
				}
				o.saveErr = false
			case errors.Is(err, ErrNotLeaseHolder):
				o.s.log.Warn("another pod holds this shard's lease; not saving its session", "shard", id, "err", err)
			case !o.saveErr && ctx.Err() == nil:
				o.saveErr = true
				o.s.log.Warn("saving a session failed; a pod taking this shard over after a crash would resume from an older point", "shard", id, "err", err)
			}
			o.mu.Unlock()
		}
	}
}

// saveNow saves shard id's session at once. A shadow shard reported ready must have its
// frozen resume point stored before the switch can begin: a pod that takes the shard over
// after a crash resumes from it, and nothing else holds what the retiring set no longer
// receives.
func (o *ownership) saveNow(ctx context.Context, id int) error {
	sess, ok := o.m.Session(id)
	if !ok {
		return fmt.Errorf("shard %d has no session on this pod", id)
	}
	st := o.adapter.stored(id, sess, false)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.handing[id] {
		return fmt.Errorf("shard %d is being handed off", id)
	}
	if err := o.adapter.store.SaveSession(ctx, id, st); err != nil {
		return err
	}
	o.lastSave[id] = st
	return nil
}

// setBeforeSave sets the hook run before sessions are saved and leases released.
func (o *ownership) setBeforeSave(f func(ctx context.Context) error) {
	o.mu.Lock()
	o.beforeSave = f
	o.mu.Unlock()
}

// runBeforeSave runs the hook set by setBeforeSave and reports whether it succeeded (or
// there is none).
func (o *ownership) runBeforeSave(ctx context.Context) bool {
	o.mu.Lock()
	f := o.beforeSave
	o.mu.Unlock()
	if f == nil {
		return true
	}
	if err := f(ctx); err != nil {
		o.s.log.Warn("recording what the retiring shard set published failed", "err", err)
		return false
	}
	return true
}

// drain ends the loops, hands every running shard on and stops the lease manager, which
// releases what is left. It runs once; later calls return at once.
func (o *ownership) drain(ctx context.Context) {
	o.once.Do(func() {
		close(o.stop)
		o.loops.Wait()
		o.handoffs.Wait()
		o.mu.Lock()
		for _, id := range o.m.ShardIDs() {
			if !o.handing[id] {
				o.handing[id] = true
				o.handoffs.Go(func() { o.handOff(ctx, id) })
			}
		}
		o.mu.Unlock()
		o.handoffs.Wait()
		o.runBeforeSave(ctx)
		if err := o.leases.Stop(ctx); err != nil {
			o.s.log.Warn("stopping the shard leases", "err", err)
		}
	})
}
