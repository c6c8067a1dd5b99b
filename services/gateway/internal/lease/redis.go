package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of Config.
const (
	DefaultPrefix = "kubecord"
	DefaultTTL    = 10 * time.Second
	DefaultRenew  = 3 * time.Second
)

// Config configures a Redis manager.
type Config struct {
	// Prefix starts every key; empty means DefaultPrefix. Pods of one bot share it.
	Prefix string
	// PodID names this pod, unique among the live pods (the pod name). Required.
	PodID string
	// Shards is the bot's shard count. Required.
	Shards int
	// TTL is how long a lease and a heartbeat last without renewal: how long the
	// shards of a dead pod stay unowned. 0 means DefaultTTL.
	TTL time.Duration
	// Renew is the interval between renewals, well under TTL so a slow Redis round
	// trip does not lose leases. 0 means DefaultRenew.
	Renew time.Duration
	// Logger receives the manager's logs; nil discards them.
	Logger *slog.Logger
	// HandOff makes the release of shards over this pod's fair share two-step: they leave
	// Owned and Changes at once, but their leases are kept (and renewed) until the
	// consumer calls Release, so no other pod can take a shard before this one has stopped
	// it and saved its session. Without HandOff the excess leases are deleted at once.
	HandOff bool
}

// Redis is a Manager sharing the shards among pods through leases in Redis.
type Redis struct {
	client   redis.UniversalClient
	pod      string
	shards   int
	ttl      time.Duration
	renew    time.Duration
	log      *slog.Logger
	podsKey  string
	epochKey string
	shardKey string // followed by the shard id
	changes  changes

	handOff bool

	mu         sync.Mutex
	value      string // lease value, pod:epoch, the fencing token of this run; empty until the first tick
	owned      []int  // what Owned reports: held minus releasing
	held       []int  // every lease this run holds and renews
	releasing  map[int]bool
	underFair  bool      // the last tick left this pod under its share: tick again sooner
	holdClaims time.Time // no claim before: set when this pod re-registers
	started    bool
	stopped    bool
	stop       chan struct{}
	done       chan struct{}
}

var _ Manager = (*Redis)(nil)

// New returns a Redis manager; Run starts it.
func New(client redis.UniversalClient, cfg Config) (*Redis, error) {
	if client == nil {
		return nil, errors.New("lease: redis client is nil")
	}
	if cfg.PodID == "" {
		return nil, errors.New("lease: pod id is empty")
	}
	if cfg.Shards < 1 {
		return nil, fmt.Errorf("lease: %d shards, want at least 1", cfg.Shards)
	}
	if cfg.TTL < 0 || cfg.Renew < 0 {
		return nil, fmt.Errorf("lease: TTL %s or renew interval %s is negative", cfg.TTL, cfg.Renew)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Renew == 0 {
		cfg.Renew = DefaultRenew
	}
	if cfg.Renew >= cfg.TTL {
		return nil, fmt.Errorf("lease: renew interval %s must be shorter than the TTL %s", cfg.Renew, cfg.TTL)
	}
	if cfg.TTL < time.Millisecond {
		return nil, fmt.Errorf("lease: TTL %s is under Redis's 1ms precision", cfg.TTL)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	// One hash tag for every key, so the scripts work on Redis Cluster too.
	base := keyBase(cfg.Prefix)
	return &Redis{
		client:    client,
		pod:       cfg.PodID,
		shards:    cfg.Shards,
		ttl:       cfg.TTL,
		renew:     cfg.Renew,
		log:       cfg.Logger.With("pod", cfg.PodID),
		podsKey:   base + "pods",
		epochKey:  base + "epoch",
		shardKey:  base + "shard:",
		changes:   newChanges(),
		handOff:   cfg.HandOff,
		releasing: map[int]bool{},
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}, nil
}

func keyBase(prefix string) string { return "{" + prefix + "}:lease:" }

// ShardKey returns the Redis key of a shard's lease for managers created with prefix
// (Config.Prefix, defaulted as New does), for observers such as a resharding coordinator
// waiting for every lease of a retired shard set to be gone.
func ShardKey(prefix string, shard int) string {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return keyBase(prefix) + "shard:" + strconv.Itoa(shard)
}

// PodsKey returns the Redis key of the sorted set of live pods (scored by the time their
// heartbeat expires, in Redis's milliseconds) for managers created with prefix.
func PodsKey(prefix string) string {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return keyBase(prefix) + "pods"
}

// tickScript renews this pod's heartbeat and leases, then moves it toward its
// fair share: the live pods sorted by id get floor(shards/pods) each and the
// first shards%pods of them one more, so the shares add up to exactly the
// shard count and never exceed ceil(shards/pods). KEYS: pods zset, epoch
// counter, shard key prefix. ARGV: pod id, lease value ("" on the first tick:
// the script makes one from a new epoch), TTL ms, shard count, claim (1 when
// free shards may be taken), hand-off (1 to keep leases over the share for the
// caller to release), then the shards this pod holds: each is kept when its
// lease still holds this run's value (compare-and-renew), re-acquired when the
// lease vanished (as after a Redis restart) and dropped when another pod holds
// it. A pod whose heartbeat was missing (its first tick, or Redis lost its
// state) claims nothing this tick, so every pod has re-registered and taken its
// own leases back before anyone counts shares. Only a pod under its share scans
// the other shards, so a steady tick costs O(held shards). Returns the lease
// value, the fair share, 1 if the pod's heartbeat was missing (else 0), then the held
// shards.
var tickScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local pods, base = KEYS[1], KEYS[3]
local pod, value, ttl, n = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local claim, handoff = ARGV[5] == '1', ARGV[6] == '1'
if value == '' then
  value = pod .. ':' .. redis.call('INCR', KEYS[2])
end
redis.call('ZREMRANGEBYSCORE', pods, '-inf', now)
local rejoined = 0
if redis.call('ZADD', pods, now + ttl, pod) == 1 then
  claim = false
  rejoined = 1
end
local members = redis.call('ZRANGE', pods, 0, -1)
table.sort(members)
local live, rank = #members, 0
for idx, m in ipairs(members) do
  if m == pod then rank = idx - 1 end
end
local fair = math.floor(n / live)
if rank < n % live then fair = fair + 1 end

local owned, mine = {}, {}
for j = 7, #ARGV do
  local i = tonumber(ARGV[j])
  if i ~= nil and i >= 0 and i < n and not mine[i] then
    local v = redis.call('GET', base .. i)
    if v == value or (v == false and redis.call('SET', base .. i, value, 'NX', 'PX', ttl)) then
      owned[#owned + 1] = i
      mine[i] = true
    end
  end
end
table.sort(owned)
if not handoff then
  while #owned > fair do
    local i = table.remove(owned)
    redis.call('DEL', base .. i)
  end
end
for _, i in ipairs(owned) do
  redis.call('PEXPIRE', base .. i, ttl)
end
if claim and #owned < fair then
  for i = 0, n - 1 do
    if #owned >= fair then break end
    -- A lease already holding this run's value is adopted: the reply of an
    -- earlier tick that took it may have been lost.
    if not mine[i] then
      local k = base .. i
      local v = redis.call('GET', k)
      if (v == value and redis.call('PEXPIRE', k, ttl) == 1) or (v == false and redis.call('SET', k, value, 'NX', 'PX', ttl)) then
        owned[#owned + 1] = i
        mine[i] = true
      end
    end
  end
end
table.sort(owned)
local out = {value, tostring(fair), tostring(rejoined)}
for _, i in ipairs(owned) do out[#out + 1] = tostring(i) end
return out
`)

// releaseOneScript deletes one lease if it still holds this run's value.
// KEYS: the shard's lease. ARGV: lease value.
var releaseOneScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// releaseScript deletes the leases holding this run's value and the heartbeat.
// KEYS: pods zset, shard key prefix. ARGV: pod id, lease value, shard count.
var releaseScript = redis.NewScript(`
local released = 0
for i = 0, tonumber(ARGV[3]) - 1 do
  local k = KEYS[2] .. i
  if redis.call('GET', k) == ARGV[2] then
    redis.call('DEL', k)
    released = released + 1
  end
end
redis.call('ZREM', KEYS[1], ARGV[1])
return released
`)

// tick runs tickScript and records the result.
func (r *Redis) tick(ctx context.Context, claim bool) error {
	r.mu.Lock()
	if time.Now().Before(r.holdClaims) {
		claim = false
	}
	args := make([]any, 0, 6+len(r.held))
	args = append(args, r.pod, r.value, r.ttl.Milliseconds(), r.shards, 0, 0)
	if claim {
		args[4] = 1
	}
	if r.handOff {
		args[5] = 1
	}
	for _, s := range r.held {
		args = append(args, s)
	}
	r.mu.Unlock()
	res, err := tickScript.Run(ctx, r.client, []string{r.podsKey, r.epochKey, r.shardKey}, args...).StringSlice()
	if err != nil {
		return fmt.Errorf("renewing shard leases in redis: %w", err)
	}
	if len(res) < 3 {
		return errors.New("renewing shard leases in redis: short reply")
	}
	fair, err := strconv.Atoi(res[1])
	if err != nil {
		return fmt.Errorf("renewing shard leases in redis: bad fair share %q: %w", res[1], err)
	}
	held := make([]int, 0, len(res)-3)
	for _, s := range res[3:] {
		id, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("renewing shard leases in redis: bad shard id %q: %w", s, err)
		}
		held = append(held, id)
	}
	r.mu.Lock()
	if r.value == "" {
		r.value = res[0]
		r.log.Info("shard lease manager registered", "lease", r.value)
	} else if res[2] == "1" {
		// Our heartbeat was gone: Redis lost its data, or this pod was cut off for longer
		// than a lease. Free shards may belong to pods that have not re-registered yet, so
		// claim nothing for a TTL, by which time every live pod has taken its leases back.
		r.holdClaims = time.Now().Add(r.ttl)
		r.log.Warn("this pod's heartbeat was missing from redis; re-registered, claiming no free shard for a lease TTL", "ttl", r.ttl)
	}
	r.held = held
	// A releasing shard whose lease was lost needs no release any more.
	for s := range r.releasing {
		if !slices.Contains(held, s) {
			delete(r.releasing, s)
		}
	}
	owned := make([]int, 0, len(held))
	for _, s := range held {
		if !r.releasing[s] {
			owned = append(owned, s)
		}
	}
	// Over the share: hand off the highest shards (the claim order takes the lowest
	// free ones, so this converges).
	for len(owned) > fair {
		s := owned[len(owned)-1]
		owned = owned[:len(owned)-1]
		r.releasing[s] = true
	}
	r.underFair = len(held) < fair
	changed := !slices.Equal(owned, r.owned)
	if changed {
		r.log.Info("owned shards changed", "owned", owned, "was", r.owned)
		r.owned = owned
	}
	r.mu.Unlock()
	if changed {
		r.changes.publish(owned)
	}
	return nil
}

// Release gives up a shard that left the owned set in HandOff mode, once its consumer
// has stopped it: another pod may claim it from now on. Releasing a shard this pod no
// longer holds does nothing. On error the lease is no longer renewed and expires after
// the TTL.
func (r *Redis) Release(ctx context.Context, shard int) error {
	r.mu.Lock()
	value := r.value
	r.held = slices.DeleteFunc(r.held, func(s int) bool { return s == shard })
	delete(r.releasing, shard)
	r.mu.Unlock()
	if value == "" {
		return nil
	}
	if err := releaseOneScript.Run(ctx, r.client, []string{r.shardKey + strconv.Itoa(shard)}, value).Err(); err != nil {
		return fmt.Errorf("releasing the lease of shard %d (it expires in %s): %w", shard, r.ttl, err)
	}
	return nil
}

// Fence returns the Redis key of a shard's lease and the value it holds while this run
// owns the shard, so a writer can refuse to act for a shard another pod has taken. The
// value is empty before the first successful tick.
func (r *Redis) Fence(shard int) (key, value string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.shardKey + strconv.Itoa(shard), r.value
}

// Run implements Manager. Free shards are claimed only after a successful tick,
// so pods that start (or reconnect after a Redis restart) together see each
// other's heartbeats before taking shards, instead of one taking everything and
// handing most of it back. While Redis is unreachable the pod keeps its shards:
// every pod loses Redis in a Redis outage, and stopping every shard would be
// worse than the brief overlap a network partition of one pod can cause.
func (r *Redis) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.started || r.stopped {
		r.mu.Unlock()
		return errors.New("lease: Run called twice or after Stop")
	}
	r.started = true
	r.mu.Unlock()
	defer close(r.done)

	t := time.NewTimer(r.renew)
	defer t.Stop()
	lastOK := false
	for {
		tctx, cancel := context.WithTimeout(ctx, r.renew)
		err := r.tick(tctx, lastOK)
		cancel()
		if err != nil && ctx.Err() == nil {
			r.log.Warn("shard lease renewal failed; keeping the owned shards", "err", err, "owned", r.Owned())
		}
		lastOK = err == nil
		// Under its share, a pod looks for free shards sooner: shards released by a
		// pod handing off are taken within a fraction of the renew interval.
		next := r.renew
		r.mu.Lock()
		if lastOK && r.underFair {
			next = max(r.renew/4, time.Millisecond)
		}
		r.mu.Unlock()
		t.Reset(next)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.stop:
			return nil
		case <-t.C:
		}
	}
}

// Owned implements Manager.
func (r *Redis) Owned() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.owned)
}

// Changes implements Manager.
func (r *Redis) Changes() <-chan []int { return r.changes.ch }

// Stop implements Manager. The owned set becomes empty even when the release
// fails (the leases then expire after their TTL); the error says so.
func (r *Redis) Stop(ctx context.Context) error {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return nil
	}
	r.stopped = true
	started := r.started
	close(r.stop)
	r.mu.Unlock()
	if started {
		select {
		case <-r.done:
		case <-ctx.Done():
			return fmt.Errorf("lease: waiting for Run to end: %w", ctx.Err())
		}
	}
	r.mu.Lock()
	value := r.value
	r.owned = nil
	r.held = nil
	clear(r.releasing)
	r.mu.Unlock()
	r.changes.publish(nil)
	close(r.changes.ch)
	if value == "" {
		return nil
	}
	n, err := releaseScript.Run(ctx, r.client, []string{r.podsKey, r.shardKey}, r.pod, value, r.shards).Int()
	if err != nil {
		return fmt.Errorf("releasing shard leases in redis (they expire in %s): %w", r.ttl, err)
	}
	r.log.Info("shard leases released", "released", n)
	return nil
}
