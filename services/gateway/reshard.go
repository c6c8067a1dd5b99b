package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kubecord/kubecord/internal/discordjson"
	"github.com/kubecord/kubecord/services/gateway/internal/identify"
	"github.com/kubecord/kubecord/services/gateway/internal/lease"
	"github.com/kubecord/kubecord/services/gateway/internal/shard"
)

// Resharding moves a bot from one shard count to another without a gap in the event stream:
//
//  1. warming: a plan (from N to M shards) is proposed: by GET /gateway/bot recommending more
//     shards (Config.ReshardCheck), or by an operator (`kubecord reshard`). Every pod starts
//     a second shard set of M shards, shared by leases of their own, in shadow: the shards
//     identify and receive events, but hold them in a bounded buffer instead of publishing
//     them. Meanwhile every event the live N-shard set publishes is recorded by a hash of
//     its name and payload (Discord sends the same bytes to every session).
//  2. switching: once every one of the M shards has loaded its guilds, the pods retire the
//     N-shard set: each of its shards is stopped and handed off as on shutdown, after the
//     recorded hashes are flushed.
//  3. done: once no lease of the N-shard set is left, the active shard count becomes M. Each
//     pod publishes its shadow buffers, minus the events the N-shard set already published
//     (their hashes), and its M shards go live: workers see one continuous stream, with the
//     events of the overlap once.
//
// The coordination lives in Redis when the gateway has Redis, and in memory otherwise.

// Reshard phases.
const (
	phaseWarming   = "warming"
	phaseSwitching = "switching"
	phaseDone      = "done"
	// phaseCancelled: a shard of the new set failed for good (e.g. Discord closed it with
	// 4011, too many guilds per shard); every pod stops the new set and the old one stays.
	phaseCancelled = "cancelled"
)

// planFinished reports whether a plan in phase is over (done or cancelled).
func planFinished(phase string) bool { return phase == phaseDone || phase == phaseCancelled }

// maxShardCount bounds a requested reshard: a typo of a few digits must not have every pod
// claim millions of leases. Discord's largest bots run tens of thousands of shards.
const maxShardCount = 1 << 17

// reshardPlan is a resharding in progress or just finished.
type reshardPlan struct {
	From  int    `json:"from"`
	To    int    `json:"to"`
	Phase string `json:"phase"`
	// Reason says why a cancelled plan was cancelled.
	Reason string `json:"reason,omitempty"`
}

// eventHash identifies an event across sessions: the same event sent to two shard sets has
// the same name and payload.
type eventHash [16]byte

func hashDispatch(d shard.Dispatch) eventHash {
	h := sha256.New()
	h.Write([]byte(d.Name))
	h.Write([]byte{0})
	h.Write(d.Data)
	var out eventHash
	copy(out[:], h.Sum(nil))
	return out
}

// coordinator keeps the active shard count and the resharding plan shared by the pods.
type coordinator interface {
	// InitActive returns the active shard count, setting it to proposed if none is set.
	InitActive(ctx context.Context, proposed int) (int, error)
	// Active returns the active shard count.
	Active(ctx context.Context) (int, error)
	// Plan returns the current plan; ok is false when none was ever made or it expired.
	Plan(ctx context.Context) (p reshardPlan, ok bool, err error)
	// Propose starts a plan from the active count from to to. It returns false when the
	// active count is not from or a plan is in progress.
	Propose(ctx context.Context, from, to int) (bool, error)
	// AckRecording records that pod records the hashes of what its from-shard set
	// publishes; AllRecording reports whether every live pod of that set does, which must
	// hold before any shard of the new set connects, or an event the new set holds could
	// have been published by a pod that did not record it.
	AckRecording(ctx context.Context, pod string) error
	AllRecording(ctx context.Context, from int) (bool, error)
	// MarkReady records that a shard of the new set has loaded its guilds.
	MarkReady(ctx context.Context, shardID int) error
	// ReadyCount counts the shards of the new set marked ready.
	ReadyCount(ctx context.Context) (int, error)
	// Advance moves p from phase p.Phase to next (CAS); done also makes p.To active.
	Advance(ctx context.Context, p reshardPlan, next string) (bool, error)
	// Cancel moves p to phaseCancelled with reason (CAS); the active count stays.
	Cancel(ctx context.Context, p reshardPlan, reason string) (bool, error)
	// OldReleased reports whether no lease of the from-shard set is held any more.
	OldReleased(ctx context.Context, from int) (bool, error)
	// AddSeen records hashes of events the retiring set published.
	AddSeen(ctx context.Context, hashes []eventHash) error
	// Seen reports which hashes were recorded.
	Seen(ctx context.Context, hashes []eventHash) ([]bool, error)
}

// memoryCoordinator is the coordinator of a gateway without Redis: one pod.
type memoryCoordinator struct {
	mu     sync.Mutex
	active int
	plan   *reshardPlan
	ready  map[int]bool
	seen   map[eventHash]struct{}
}

var _ coordinator = (*memoryCoordinator)(nil)

func newMemoryCoordinator() *memoryCoordinator {
	return &memoryCoordinator{ready: map[int]bool{}, seen: map[eventHash]struct{}{}}
}

func (m *memoryCoordinator) InitActive(_ context.Context, proposed int) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.active == 0 {
		m.active = proposed
	}
	return m.active, nil
}

func (m *memoryCoordinator) Active(context.Context) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.active, nil
}

func (m *memoryCoordinator) Plan(context.Context) (reshardPlan, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.plan == nil {
		return reshardPlan{}, false, nil
	}
	return *m.plan, true, nil
}

func (m *memoryCoordinator) Propose(_ context.Context, from, to int) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.active != from || (m.plan != nil && !planFinished(m.plan.Phase)) {
		return false, nil
	}
	m.plan = &reshardPlan{From: from, To: to, Phase: phaseWarming}
	clear(m.ready)
	clear(m.seen)
	return true, nil
}

func (m *memoryCoordinator) AckRecording(context.Context, string) error { return nil }

func (m *memoryCoordinator) AllRecording(context.Context, int) (bool, error) {
	return true, nil // one pod, and it asks after it began recording
}

func (m *memoryCoordinator) MarkReady(_ context.Context, shardID int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ready[shardID] = true
	return nil
}

func (m *memoryCoordinator) ReadyCount(context.Context) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.ready), nil
}

func (m *memoryCoordinator) Advance(_ context.Context, p reshardPlan, next string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.plan == nil || *m.plan != p {
		return false, nil
	}
	m.plan.Phase = next
	if next == phaseDone {
		m.active = p.To
	}
	return true, nil
}

func (m *memoryCoordinator) Cancel(_ context.Context, p reshardPlan, reason string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.plan == nil || *m.plan != p {
		return false, nil
	}
	m.plan.Phase, m.plan.Reason = phaseCancelled, reason
	return true, nil
}

func (m *memoryCoordinator) OldReleased(context.Context, int) (bool, error) {
	return true, nil // one pod: the caller retired the old set before asking
}

func (m *memoryCoordinator) AddSeen(_ context.Context, hashes []eventHash) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, h := range hashes {
		m.seen[h] = struct{}{}
	}
	return nil
}

func (m *memoryCoordinator) Seen(_ context.Context, hashes []eventHash) ([]bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]bool, len(hashes))
	for i, h := range hashes {
		_, out[i] = m.seen[h]
	}
	return out, nil
}

// redisCoordinator shares the active shard count and the plan among the pods of a bot.
type redisCoordinator struct {
	client                                              redis.UniversalClient
	base                                                string // lease prefix of a shard set is base:count
	activeKey, planKey, readyKey, seenKey, recordingKey string
	planTTL                                             time.Duration
	leasePrefix                                         func(count int) string
}

var _ coordinator = (*redisCoordinator)(nil)

// planTTL bounds how long a finished plan and its recorded hashes stay in Redis.
const planTTL = time.Hour

func newRedisCoordinator(client redis.UniversalClient, base string) *redisCoordinator {
	tag := "{" + base + "}:"
	return &redisCoordinator{client: client, base: base, activeKey: tag + "shards", planKey: tag + "reshard",
		readyKey: tag + "reshard:ready", seenKey: tag + "reshard:seen", recordingKey: tag + "reshard:recording", planTTL: planTTL,
		leasePrefix: func(count int) string { return generationPrefix(base, count) }}
}

// generationPrefix is the Redis key prefix of one shard set's leases and sessions.
func generationPrefix(base string, count int) string { return base + ":" + strconv.Itoa(count) }

func (r *redisCoordinator) InitActive(ctx context.Context, proposed int) (int, error) {
	if err := r.client.SetNX(ctx, r.activeKey, proposed, 0).Err(); err != nil {
		return 0, fmt.Errorf("setting the active shard count in redis: %w", err)
	}
	return r.Active(ctx)
}

func (r *redisCoordinator) Active(ctx context.Context) (int, error) {
	n, err := r.client.Get(ctx, r.activeKey).Int()
	if err != nil {
		return 0, fmt.Errorf("reading the active shard count from redis (key %s): %w", r.activeKey, err)
	}
	return n, nil
}

func (r *redisCoordinator) Plan(ctx context.Context) (reshardPlan, bool, error) {
	raw, err := r.client.Get(ctx, r.planKey).Bytes()
	if errors.Is(err, redis.Nil) {
		return reshardPlan{}, false, nil
	}
	if err != nil {
		return reshardPlan{}, false, fmt.Errorf("reading the reshard plan from redis: %w", err)
	}
	var p reshardPlan
	if err := json.Unmarshal(raw, &p); err != nil {
		return reshardPlan{}, false, fmt.Errorf("the reshard plan in redis (key %s) is not valid JSON: %w", r.planKey, err)
	}
	return p, true, nil
}

// proposeScript: KEYS active, plan, ready, seen. ARGV from, new plan JSON.
var proposeScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local cur = redis.call('GET', KEYS[2])
if cur then
  local phase = cjson.decode(cur).phase
  if phase ~= 'done' and phase ~= 'cancelled' then return 0 end
end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[3], KEYS[4], KEYS[5])
return 1
`)

func (r *redisCoordinator) Propose(ctx context.Context, from, to int) (bool, error) {
	plan, err := json.Marshal(reshardPlan{From: from, To: to, Phase: phaseWarming})
	if err != nil {
		return false, err
	}
	n, err := proposeScript.Run(ctx, r.client, []string{r.activeKey, r.planKey, r.readyKey, r.seenKey, r.recordingKey}, from, plan).Int()
	if err != nil {
		return false, fmt.Errorf("proposing a reshard in redis: %w", err)
	}
	return n == 1, nil
}

func (r *redisCoordinator) AckRecording(ctx context.Context, pod string) error {
	pipe := r.client.Pipeline()
	pipe.SAdd(ctx, r.recordingKey, pod)
	pipe.PExpire(ctx, r.recordingKey, r.planTTL)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("acknowledging the reshard plan in redis: %w", err)
	}
	return nil
}

func (r *redisCoordinator) AllRecording(ctx context.Context, from int) (bool, error) {
	now, err := r.client.Time(ctx).Result()
	if err != nil {
		return false, fmt.Errorf("reading redis's clock: %w", err)
	}
	pods, err := r.client.ZRangeByScore(ctx, lease.PodsKey(r.leasePrefix(from)),
		&redis.ZRangeBy{Min: strconv.FormatInt(now.UnixMilli(), 10), Max: "+inf"}).Result()
	if err != nil {
		return false, fmt.Errorf("listing the live pods in redis: %w", err)
	}
	if len(pods) == 0 {
		return true, nil
	}
	members := make([]any, len(pods))
	for i, p := range pods {
		members[i] = p
	}
	acked, err := r.client.SMIsMember(ctx, r.recordingKey, members...).Result()
	if err != nil {
		return false, fmt.Errorf("checking which pods record in redis: %w", err)
	}
	for _, ok := range acked {
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

func (r *redisCoordinator) MarkReady(ctx context.Context, shardID int) error {
	if err := r.client.SAdd(ctx, r.readyKey, shardID).Err(); err != nil {
		return fmt.Errorf("marking new shard %d ready in redis: %w", shardID, err)
	}
	return nil
}

func (r *redisCoordinator) ReadyCount(ctx context.Context) (int, error) {
	n, err := r.client.SCard(ctx, r.readyKey).Result()
	if err != nil {
		return 0, fmt.Errorf("counting ready new shards in redis: %w", err)
	}
	return int(n), nil
}

// advanceScript: KEYS plan, active, ready, seen. ARGV current plan JSON, next plan JSON,
// new active count ("" to keep), TTL ms of a finished plan, "1" when the next plan is
// finished (its keys then expire).
var advanceScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local p, want = cjson.decode(cur), cjson.decode(ARGV[1])
if p.from ~= want.from or p.to ~= want.to or p.phase ~= want.phase then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
if ARGV[3] ~= '' then
  redis.call('SET', KEYS[2], ARGV[3])
end
if ARGV[5] == '1' then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
  redis.call('PEXPIRE', KEYS[4], ARGV[4])
end
return 1
`)

func (r *redisCoordinator) Advance(ctx context.Context, p reshardPlan, next string) (bool, error) {
	np := p
	np.Phase = next
	active := ""
	if next == phaseDone {
		active = strconv.Itoa(p.To)
	}
	return r.moveTo(ctx, p, np, active)
}

func (r *redisCoordinator) Cancel(ctx context.Context, p reshardPlan, reason string) (bool, error) {
	np := p
	np.Phase, np.Reason = phaseCancelled, reason
	return r.moveTo(ctx, p, np, "")
}

// moveTo replaces plan p with np if p is still the plan (same counts and phase).
func (r *redisCoordinator) moveTo(ctx context.Context, p, np reshardPlan, active string) (bool, error) {
	cur, err := json.Marshal(p)
	if err != nil {
		return false, err
	}
	nextJSON, err := json.Marshal(np)
	if err != nil {
		return false, err
	}
	finished := ""
	if planFinished(np.Phase) {
		finished = "1"
	}
	n, err := advanceScript.Run(ctx, r.client, []string{r.planKey, r.activeKey, r.readyKey, r.seenKey},
		cur, nextJSON, active, r.planTTL.Milliseconds(), finished).Int()
	if err != nil {
		return false, fmt.Errorf("moving the reshard plan to %s in redis: %w", np.Phase, err)
	}
	return n == 1, nil
}

func (r *redisCoordinator) OldReleased(ctx context.Context, from int) (bool, error) {
	keys := make([]string, from)
	for i := range keys {
		keys[i] = lease.ShardKey(r.leasePrefix(from), i)
	}
	vals, err := r.client.MGet(ctx, keys...).Result()
	if err != nil {
		return false, fmt.Errorf("reading the retiring shard set's leases from redis: %w", err)
	}
	for _, v := range vals {
		if v != nil {
			return false, nil
		}
	}
	return true, nil
}

func (r *redisCoordinator) AddSeen(ctx context.Context, hashes []eventHash) error {
	if len(hashes) == 0 {
		return nil
	}
	members := make([]any, len(hashes))
	for i, h := range hashes {
		members[i] = h[:]
	}
	pipe := r.client.Pipeline()
	pipe.SAdd(ctx, r.seenKey, members...)
	pipe.PExpire(ctx, r.seenKey, r.planTTL)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("recording %d published event hashes in redis: %w", len(hashes), err)
	}
	return nil
}

func (r *redisCoordinator) Seen(ctx context.Context, hashes []eventHash) ([]bool, error) {
	out := make([]bool, 0, len(hashes))
	for start := 0; start < len(hashes); start += 10_000 {
		batch := hashes[start:min(start+10_000, len(hashes))]
		members := make([]any, len(batch))
		for i, h := range batch {
			members[i] = h[:]
		}
		res, err := r.client.SMIsMember(ctx, r.seenKey, members...).Result()
		if err != nil {
			return nil, fmt.Errorf("checking %d shadow events against the published ones in redis: %w", len(batch), err)
		}
		out = append(out, res...)
	}
	return out, nil
}

// seenRecorder collects the hashes of the events the retiring shard set publishes, for the
// coordinator.
type seenRecorder struct {
	from  int
	coord coordinator

	mu      sync.Mutex
	pending []eventHash
}

func (r *seenRecorder) add(d shard.Dispatch) {
	if d.ShardCount != r.from || d.Seq == 0 {
		return
	}
	h := hashDispatch(d)
	r.mu.Lock()
	r.pending = append(r.pending, h)
	r.mu.Unlock()
}

// flush hands the pending hashes to the coordinator; on error they are kept for the next try.
func (r *seenRecorder) flush(ctx context.Context) error {
	r.mu.Lock()
	batch := r.pending
	r.pending = nil
	r.mu.Unlock()
	if err := r.coord.AddSeen(ctx, batch); err != nil {
		r.mu.Lock()
		r.pending = append(batch, r.pending...)
		r.mu.Unlock()
		return err
	}
	return nil
}

// DefaultShadowEvents bounds the events a shadow shard set holds per pod. Only the last
// moments before the switch matter (earlier events also reached the live set), so the
// oldest are dropped beyond it.
const DefaultShadowEvents = 200_000

// shadowLoadGrace is how long after its READY a new shard counts as loaded even when some
// of its guilds are still unavailable.
const shadowLoadGrace = time.Minute

// shadow holds the events of a shard set that is not live yet.
type shadow struct {
	max       int
	loadGrace time.Duration

	mu       sync.Mutex
	live     bool
	events   []shard.Dispatch
	dropped  uint64
	sessions map[int]string          // shard -> session id from READY
	loading  map[int]map[uint64]bool // shard -> guilds from READY not created yet
	ready    map[int]bool            // shard -> every guild loaded
	readyAt  map[int]time.Time       // shard -> when its READY arrived
	reported map[int]bool            // ready shards told to the coordinator
	// resume is, per shard, the last sequence held until the shard was reported ready
	// (frozen[shard] from then on). A shadow shard's session is stored only once frozen,
	// with that sequence: the switch cannot happen before every new shard is ready, so the
	// live set publishes everything up to it, but after it the held events may be the only
	// copy of what the retiring set no longer receives, and a pod taking the shard over
	// after a crash must have Discord replay them. A shard that moves before it loaded its
	// guilds has no stored session: its next owner identifies it and loads them itself.
	resume map[int]uint64
	frozen map[int]bool
	// replaying holds the adopted shards whose replay has not ended (no RESUMED yet).
	replaying map[int]bool
}

func newShadow(maxEvents int) *shadow {
	if maxEvents <= 0 {
		maxEvents = DefaultShadowEvents
	}
	return &shadow{max: maxEvents, sessions: map[int]string{}, loading: map[int]map[uint64]bool{},
		ready: map[int]bool{}, readyAt: map[int]time.Time{}, reported: map[int]bool{}, loadGrace: shadowLoadGrace,
		resume: map[int]uint64{}, frozen: map[int]bool{}, replaying: map[int]bool{}}
}

// held returns the number of events held.
func (sh *shadow) held() int {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return len(sh.events)
}

func (sh *shadow) isLive() bool {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.live
}

// hold keeps a dispatch of the shadow set and reports true, or reports false once the set
// is live. READY, RESUMED and the GUILD_CREATEs of a new session's guilds are the session's
// own start, not events of the stream: they are dropped.
func (sh *shadow) hold(d shard.Dispatch) bool {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.live {
		return false
	}
	if d.Name == "READY" {
		// A new session: its sequences restart, and it loads its guilds again.
		sh.frozen[d.ShardID], sh.reported[d.ShardID] = false, false
	}
	if d.Name == "READY" || d.Name == "RESUMED" {
		delete(sh.replaying, d.ShardID)
	}
	if !sh.frozen[d.ShardID] {
		sh.resume[d.ShardID] = d.Seq
	}
	switch d.Name {
	case "READY":
		var ready struct {
			SessionID string `json:"session_id"`
			Guilds    []struct {
				ID string `json:"id"`
			} `json:"guilds"`
		}
		if err := json.Unmarshal(d.Data, &ready); err == nil {
			sh.sessions[d.ShardID] = ready.SessionID
			pending := map[uint64]bool{}
			for _, g := range ready.Guilds {
				if id, err := strconv.ParseUint(g.ID, 10, 64); err == nil {
					pending[id] = true
				}
			}
			sh.loading[d.ShardID] = pending
			sh.ready[d.ShardID] = len(pending) == 0
			sh.readyAt[d.ShardID] = d.ReceivedAt
		}
		return true
	case "RESUMED":
		return true
	case "GUILD_CREATE":
		if pending := sh.loading[d.ShardID]; pending != nil {
			if route, err := discordjson.RoutingKey(d.Name, d.Data); err == nil && pending[route.ID] {
				delete(pending, route.ID)
				if len(pending) == 0 {
					sh.ready[d.ShardID] = true
				}
				return true
			}
		}
	}
	if len(sh.events) >= sh.max {
		drop := len(sh.events) / 2
		sh.dropped += uint64(drop)
		sh.events = append(sh.events[:0], sh.events[drop:]...)
	}
	sh.events = append(sh.events, d)
	return true
}

// newlyReady returns the shards that finished loading since the last call.
func (sh *shadow) newlyReady() []int {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	var out []int
	for id, ok := range sh.ready {
		if !ok && time.Since(sh.readyAt[id]) >= sh.loadGrace {
			// Guilds unavailable in an outage can stay so for long; the old set has no
			// more of them, so they must not hold the switch back forever.
			ok = true
		}
		if ok && !sh.reported[id] {
			sh.reported[id] = true
			sh.frozen[id] = true // before the coordinator can hear of it: see resume
			out = append(out, id)
		}
	}
	return out
}

// unreport takes back a shard newlyReady returned, so a later call returns it again.
func (sh *shadow) unreport(id int) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.ready[id]; ok {
		sh.reported[id], sh.frozen[id] = false, false
	}
}

// forget drops what the shadow knows and holds of a shard that left this pod. Its next
// owner resumes the session from the shard's resume point, so Discord replays to it what
// this pod held: publishing it here too would deliver it twice.
func (sh *shadow) forget(id int) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	delete(sh.sessions, id)
	delete(sh.loading, id)
	delete(sh.ready, id)
	delete(sh.readyAt, id)
	delete(sh.reported, id)
	delete(sh.resume, id)
	delete(sh.frozen, id)
	delete(sh.replaying, id)
	sh.events = slices.DeleteFunc(sh.events, func(d shard.Dispatch) bool { return d.ShardID == id })
}

// adopt takes over a shard whose stored session another pod saved: the shard had loaded
// its guilds (nothing else is stored), it resumes from seq, which stays its resume point.
func (sh *shadow) adopt(id int, sessionID string, seq uint64) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.sessions[id] = sessionID
	sh.resume[id], sh.frozen[id], sh.replaying[id] = seq, true, true
	sh.ready[id], sh.readyAt[id], sh.reported[id] = true, time.Now(), false
	delete(sh.loading, id)
}

// resumePoint says what to store of shard id's session: live true when the shadow is live
// (store as any shard); else store false while the shard has not loaded its guilds (store
// no session), and the frozen resume point once it has.
func (sh *shadow) resumePoint(id int) (seq uint64, store, live bool) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.live {
		return 0, true, true
	}
	if !sh.frozen[id] {
		return 0, false, false
	}
	return sh.resume[id], true, false
}

// goLive publishes the held events the retiring set did not publish, in the order they
// arrived, and lets later events through. start is called for every shard with a session
// before its first event is published; replaying says the shard was adopted and its
// replay has not ended, so the events that follow until RESUMED may repeat what the old
// set published and must be flagged. maybeDelivered says whether a held event the
// retiring set is not known to have published may have been published anyway (by a pod
// that died before recording it); publish is told so.
func (sh *shadow) goLive(ctx context.Context, seen func(context.Context, []eventHash) ([]bool, error),
	start func(shardID int, sessionID string, replaying bool), maybeDelivered func(shard.Dispatch) bool,
	publish func(d shard.Dispatch, maybeDelivered bool)) (published, deduplicated int, err error) {
	sh.mu.Lock()
	defer sh.mu.Unlock() // new dispatches of this set wait for the switch (one Redis round trip)
	if sh.live {
		return 0, 0, nil
	}
	hashes := make([]eventHash, len(sh.events))
	for i, d := range sh.events {
		hashes[i] = hashDispatch(d)
	}
	dup, err := seen(ctx, hashes)
	if err != nil {
		return 0, 0, err
	}
	for id, sess := range sh.sessions {
		start(id, sess, sh.replaying[id])
	}
	for i, d := range sh.events {
		if dup[i] {
			deduplicated++
			continue
		}
		publish(d, maybeDelivered(d))
		published++
	}
	sh.events = nil
	sh.live = true
	return published, deduplicated, nil
}

// ReshardStatus is the shard count of a bot's gateway pods and the reshard under way.
type ReshardStatus struct {
	// Active is the shard count the pods run (0 when no pod has started yet).
	Active int
	// From, To and Phase describe the latest plan ("warming", "switching" or "done"), if
	// any; a finished plan is kept for an hour.
	From, To int
	Phase    string
	// Reason says why a cancelled reshard was cancelled.
	Reason string
}

func botCoordinator(client redis.UniversalClient, prefix, token string) (*redisCoordinator, error) {
	if prefix == "" {
		prefix = identify.DefaultPrefix
	}
	bot, err := identify.BotKey(token)
	if err != nil {
		return nil, err
	}
	return newRedisCoordinator(client, prefix+":"+bot), nil
}

// GetReshardStatus reads the shard count and the reshard plan the gateway pods of the bot
// that token belongs to share through Redis (keys under prefix, "" for the default).
func GetReshardStatus(ctx context.Context, client redis.UniversalClient, prefix, token string) (ReshardStatus, error) {
	c, err := botCoordinator(client, prefix, token)
	if err != nil {
		return ReshardStatus{}, err
	}
	return coordStatus(ctx, c)
}

// coordStatus reads the active count and the latest plan of c (an unset count reads as 0).
func coordStatus(ctx context.Context, c coordinator) (ReshardStatus, error) {
	var st ReshardStatus
	var err error
	if st.Active, err = c.Active(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return ReshardStatus{}, err
	}
	p, ok, err := c.Plan(ctx)
	if err != nil {
		return ReshardStatus{}, err
	}
	if ok {
		st.From, st.To, st.Phase, st.Reason = p.From, p.To, p.Phase, p.Reason
	}
	return st, nil
}

// reshardRefusal is a reshard request refused for the state of the bot, not for a failure
// to reach Redis.
type reshardRefusal struct{ msg string }

func (r *reshardRefusal) Error() string { return r.msg }

func refuseReshard(format string, args ...any) error {
	return &reshardRefusal{msg: fmt.Sprintf(format, args...)}
}

// RequestReshard asks the running gateway pods of the bot that token belongs to, sharing
// Redis under prefix, to reshard to shards without downtime, and returns the count they
// reshard from. It fails, saying why, when no pod runs, a reshard is under way, or the
// count is already shards.
func RequestReshard(ctx context.Context, client redis.UniversalClient, prefix, token string, shards int) (int, error) {
	if shards < 1 || shards > maxShardCount {
		return 0, fmt.Errorf("shard count %d must be between 1 and %d", shards, maxShardCount)
	}
	c, err := botCoordinator(client, prefix, token)
	if err != nil {
		return 0, err
	}
	return proposeReshard(ctx, c, shards)
}

// proposeReshard proposes a reshard from the active count to shards through c. Refusals
// are *reshardRefusal.
func proposeReshard(ctx context.Context, c coordinator, shards int) (int, error) {
	st, err := coordStatus(ctx, c)
	if err != nil {
		return 0, err
	}
	switch {
	case st.Active == 0:
		return 0, refuseReshard("no gateway pod of this bot has started with this Redis and prefix: nothing to reshard")
	case st.Phase != "" && !planFinished(st.Phase):
		return 0, refuseReshard("a reshard from %d to %d shards is under way (%s); wait for it to finish", st.From, st.To, st.Phase)
	case st.Active == shards:
		return 0, refuseReshard("the bot already runs %d shards", shards)
	}
	ok, err := c.Propose(ctx, st.Active, shards)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, refuseReshard("the shard count or the plan changed meanwhile; check the status and try again")
	}
	return st.Active, nil
}
