package identify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultPrefix starts every Redis key of the gateway.
const DefaultPrefix = "kubecord"

// BotKey returns a stable, non-secret name for the bot a token belongs to: a
// hash of the token's first dot-separated part (the base64 user id), so the
// name survives token resets and the token itself never reaches Redis. A token
// without that form (a test's made-up token) is hashed whole.
func BotKey(token string) (string, error) {
	token = strings.TrimPrefix(strings.TrimSpace(token), "Bot ")
	if token == "" {
		return "", errors.New("bot token is empty")
	}
	id, _, ok := strings.Cut(token, ".")
	if !ok || id == "" {
		id = token
	}
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:8]), nil
}

// RedisConfig configures a Redis limiter.
type RedisConfig struct {
	// Token is the bot token; only a hash of its user-id part is used (see BotKey). Required.
	Token string
	// Prefix starts every key; empty means DefaultPrefix.
	Prefix string
	// Limit is this pod's view of the limit, normally from GET /gateway/bot. It is
	// written to Redis by NewRedis (see Update) and reseeds Redis if the shared
	// state is lost. The zero value writes nothing: the limiter uses the shared
	// limit, or MemoryConfig.Limit's defaults when Redis has none.
	Limit SessionStartLimit
	// Window is the identify window; 0 means DefaultWindow. Tests shorten it.
	Window time.Duration
	// Reserve is the number of session starts kept back for emergencies.
	Reserve int
	// Poll bounds how long a waiter sleeps before asking Redis again, so a window
	// freed early (or a Redis restart) is noticed; 0 means 250 ms.
	Poll time.Duration
	// Logger receives warnings; nil discards them.
	Logger *slog.Logger
}

// Redis is a Limiter shared by every pod of a bot through Redis: a bucket's
// identify window is a key set with NX and a TTL of one window, and the daily
// budget is a hash decremented by the same script that grants the window, so
// two pods never identify in one bucket within a window and never spend the
// same session start. Times come from Redis's clock, so pods' clocks may differ.
type Redis struct {
	client  redis.UniversalClient
	window  time.Duration
	reserve int
	poll    time.Duration
	log     *slog.Logger

	budgetKey    string
	bucketPrefix string

	mu   sync.Mutex
	last SessionStartLimit // last known limit, to reseed Redis after it lost the state

	// onGrant, when set (by tests), sees each grant with Redis's clock at the
	// moment of the grant: one clock for every pod, unlike times taken after Wait.
	onGrant func(shardID int, at time.Time)
}

var _ Limiter = (*Redis)(nil)

// NewRedis returns a Redis limiter and writes cfg.Limit to Redis.
func NewRedis(ctx context.Context, client redis.UniversalClient, cfg RedisConfig) (*Redis, error) {
	if client == nil {
		return nil, errors.New("identify: redis client is nil")
	}
	if cfg.Window < 0 {
		return nil, fmt.Errorf("identify window %s is negative", cfg.Window)
	}
	if cfg.Reserve < 0 {
		return nil, fmt.Errorf("identify reserve %d is negative", cfg.Reserve)
	}
	if cfg.Poll < 0 {
		return nil, fmt.Errorf("identify poll interval %s is negative", cfg.Poll)
	}
	bot, err := BotKey(cfg.Token)
	if err != nil {
		return nil, fmt.Errorf("identify: %w", err)
	}
	prefix := cfg.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	// The braces make every key of one bot hash to one Redis Cluster slot, which the
	// scripts need.
	base := fmt.Sprintf("%s:identify:{%s}", prefix, bot)
	r := &Redis{
		client:       client,
		window:       cfg.Window,
		reserve:      cfg.Reserve,
		poll:         cfg.Poll,
		log:          cfg.Logger,
		budgetKey:    base + ":budget",
		bucketPrefix: base + ":bucket:",
	}
	if r.window == 0 {
		r.window = DefaultWindow
	}
	if r.poll == 0 {
		r.poll = 250 * time.Millisecond
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Limit == (SessionStartLimit{}) {
		// No fresh limit: use the shared one, and the defaults only if Redis has
		// none, rather than resetting every pod's budget to the default.
		if r.last, err = normalize(cfg.Limit); err != nil {
			return nil, err
		}
		if _, err := r.Limit(ctx); err != nil {
			return nil, err
		}
		return r, nil
	}
	if err := r.Update(ctx, cfg.Limit); err != nil {
		return nil, err
	}
	return r, nil
}

// normalize applies MemoryConfig.Limit's defaults and checks the fields.
func normalize(limit SessionStartLimit) (SessionStartLimit, error) {
	if limit.Total < 0 || limit.Remaining < 0 || limit.ResetAfter < 0 {
		return limit, fmt.Errorf("session start limit %+v has negative fields", limit)
	}
	if limit.Total == 0 {
		limit.Total = 1000
		if limit.Remaining == 0 {
			limit.Remaining = limit.Total
		}
	}
	if limit.Remaining > limit.Total {
		return limit, fmt.Errorf("session start limit has remaining %d above total %d", limit.Remaining, limit.Total)
	}
	if limit.ResetAfter == 0 {
		limit.ResetAfter = 24 * time.Hour
	}
	if limit.MaxConcurrency < 1 {
		limit.MaxConcurrency = 1
	}
	return limit, nil
}

// Budget hash fields: remaining, total, reset_at (Redis time, ms), period (ms),
// maxconc.

// redisNowMS is shared by the scripts: Redis's clock in milliseconds.
const redisNowMS = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// seedAndRefill makes sure the budget exists (reseeding it from the caller's last
// known limit in ARGV[1..4] when Redis lost it) and restores it after its reset
// time. It leaves rem, total, resetAt, maxconc set.
const seedAndRefill = `
local b = KEYS[1]
if redis.call('EXISTS', b) == 0 then
  redis.call('HSET', b, 'remaining', ARGV[1], 'total', ARGV[2], 'period', ARGV[3], 'maxconc', ARGV[4], 'reset_at', now + tonumber(ARGV[3]))
end
local v = redis.call('HMGET', b, 'remaining', 'total', 'reset_at', 'period', 'maxconc')
local rem, total, resetAt, period, maxconc = tonumber(v[1]), tonumber(v[2]), tonumber(v[3]), tonumber(v[4]), tonumber(v[5])
if now >= resetAt then
  rem = total
  resetAt = now + period
  redis.call('HSET', b, 'remaining', rem, 'reset_at', resetAt)
end
`

// updateScript replaces the limit. ARGV: remaining, total, period ms, maxconc.
var updateScript = redis.NewScript(redisNowMS + `
redis.call('HSET', KEYS[1], 'remaining', ARGV[1], 'total', ARGV[2], 'period', ARGV[3], 'maxconc', ARGV[4], 'reset_at', now + tonumber(ARGV[3]))
return 1
`)

// grantScript grants one identify when the budget allows and the shard's bucket
// is free. ARGV: remaining, total, period ms, maxconc (reseed values), shard id,
// window ms, reserve. Returns {0, remaining, total, resetAfter, maxconc, now}
// when granted, {1, ms until the bucket frees, ...} when the bucket is taken, {2,
// remaining, total, resetAfter, maxconc} when the budget is exhausted.
var grantScript = redis.NewScript(redisNowMS + seedAndRefill + `
local shard, window, reserve = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
if rem <= reserve then
  return {2, rem, total, resetAt - now, maxconc, now}
end
local key = KEYS[2] .. (shard % maxconc)
if redis.call('SET', key, now, 'NX', 'PX', window) then
  rem = rem - 1
  redis.call('HSET', b, 'remaining', rem)
  return {0, rem, total, resetAt - now, maxconc, now}
end
local left = redis.call('PTTL', key)
if left < 0 then left = 0 end
return {1, left, total, resetAt - now, maxconc, now}
`)

// rearmScript restarts a bucket's window from now. ARGV as grantScript's first four,
// then shard, window ms.
var rearmScript = redis.NewScript(redisNowMS + seedAndRefill + `
local key = KEYS[2] .. (tonumber(ARGV[5]) % maxconc)
redis.call('SET', key, now, 'PX', tonumber(ARGV[6]))
return 1
`)

// readScript returns {remaining, total, resetAfter ms, maxconc}. ARGV as grantScript's first four.
var readScript = redis.NewScript(redisNowMS + seedAndRefill + `
return {rem, total, resetAt - now, maxconc}
`)

func (r *Redis) seedArgs() []any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return []any{r.last.Remaining, r.last.Total, r.last.ResetAfter.Milliseconds(), r.last.MaxConcurrency}
}

// remember keeps the latest limit seen in Redis for reseeding.
func (r *Redis) remember(rem, total, resetAfterMS, maxconc int64) SessionStartLimit {
	l := SessionStartLimit{Remaining: int(rem), Total: int(total), ResetAfter: time.Duration(resetAfterMS) * time.Millisecond, MaxConcurrency: int(maxconc)}
	r.mu.Lock()
	r.last.Remaining = l.Remaining
	r.last.Total = l.Total
	r.last.MaxConcurrency = l.MaxConcurrency
	r.mu.Unlock()
	return l
}

var _ Rearmer = (*Redis)(nil)

// Sent implements Rearmer: the bucket's key is set again with a full window from now,
// by Redis's clock.
func (r *Redis) Sent(ctx context.Context, shardID int) error {
	if shardID < 0 {
		return fmt.Errorf("shard id %d is negative", shardID)
	}
	args := append(r.seedArgs(), shardID, r.window.Milliseconds())
	if err := rearmScript.Run(ctx, r.client, []string{r.budgetKey, r.bucketPrefix}, args...).Err(); err != nil {
		return fmt.Errorf("restarting the identify window of shard %d in redis: %w", shardID, err)
	}
	return nil
}

// Update implements Limiter. The limit replaces the shared one: GET /gateway/bot
// is the authority, and it already counts every pod's identifies.
func (r *Redis) Update(ctx context.Context, limit SessionStartLimit) error {
	limit, err := normalize(limit)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.last = limit
	r.mu.Unlock()
	if err := updateScript.Run(ctx, r.client, []string{r.budgetKey},
		limit.Remaining, limit.Total, limit.ResetAfter.Milliseconds(), limit.MaxConcurrency).Err(); err != nil {
		return fmt.Errorf("storing the session start limit in redis: %w", err)
	}
	return nil
}

// Limit returns the shared view of the session start limit.
func (r *Redis) Limit(ctx context.Context) (SessionStartLimit, error) {
	v, err := readScript.Run(ctx, r.client, []string{r.budgetKey}, r.seedArgs()...).Int64Slice()
	if err != nil {
		return SessionStartLimit{}, fmt.Errorf("reading the session start limit from redis: %w", err)
	}
	if len(v) != 4 {
		return SessionStartLimit{}, fmt.Errorf("reading the session start limit from redis: got %d values, want 4", len(v))
	}
	return r.remember(v[0], v[1], v[2], v[3]), nil
}

// CheckPlan implements Limiter.
func (r *Redis) CheckPlan(ctx context.Context, starts int) error {
	l, err := r.Limit(ctx)
	if err != nil {
		return err
	}
	if starts > l.Remaining-r.reserve {
		return fmt.Errorf("%w: starting %d sessions needs %d identifies but %d of %d remain (%d kept in reserve) until %s; resume existing sessions or wait",
			ErrBudgetExhausted, starts, starts, l.Remaining, l.Total, r.reserve, l.ResetAfter.Round(time.Second))
	}
	return nil
}

// Wait implements Limiter. Within a bucket, waiters are served in the order Redis
// sees their attempts once the window frees, not strictly in call order: pods
// share no queue. A cancelled Wait spends nothing, since the budget is only
// decremented together with the grant.
func (r *Redis) Wait(ctx context.Context, shardID int) error {
	if shardID < 0 {
		return fmt.Errorf("shard id %d is negative", shardID)
	}
	keys := []string{r.budgetKey, r.bucketPrefix}
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("waiting for identify window of shard %d: %w", shardID, err)
		}
		args := append(r.seedArgs(), shardID, r.window.Milliseconds(), r.reserve)
		v, err := grantScript.Run(ctx, r.client, keys, args...).Int64Slice()
		if err == nil && len(v) != 6 {
			err = fmt.Errorf("got %d values, want 6", len(v))
		}
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("waiting for identify window of shard %d: %w", shardID, ctx.Err())
			}
			// Identifying without the shared window could get every pod's shards
			// invalidated, so a Redis outage delays identifies instead.
			r.log.Warn("asking redis for an identify window failed; retrying", "shard", shardID, "err", err)
			if err := sleepCtx(ctx, r.poll); err != nil {
				return fmt.Errorf("waiting for identify window of shard %d (redis: unavailable): %w", shardID, err)
			}
			continue
		}
		switch v[0] {
		case 0:
			r.remember(v[1], v[2], v[3], v[4])
			if r.onGrant != nil {
				r.onGrant(shardID, time.UnixMilli(v[5]))
			}
			return nil
		case 2:
			l := r.remember(v[1], v[2], v[3], v[4])
			return fmt.Errorf("%w: shard %d cannot identify: %d of %d session starts remain (%d kept in reserve) until %s",
				ErrBudgetExhausted, shardID, l.Remaining, l.Total, r.reserve, l.ResetAfter.Round(time.Second))
		default:
			wait := min(time.Duration(v[1])*time.Millisecond, r.poll)
			if wait <= 0 {
				wait = time.Millisecond
			}
			if err := sleepCtx(ctx, wait); err != nil {
				return fmt.Errorf("waiting for identify window of shard %d: %w", shardID, err)
			}
		}
	}
}
