package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisStore keeps ratelimit state in Redis so that several REST replicas
// share one set of buckets and one global limit per bot. Each Acquire and
// Observe is one Lua script: atomic, and timed by Redis's own clock so
// replicas on different hosts agree on "now".
//
// Keys of one bot share a hash tag, but a script also touches the
// invalid-request counters, so this needs a standalone Redis (or one
// master), not Redis Cluster.
type RedisStore struct {
	rdb    redis.UniversalClient
	prefix string
}

var _ Store = (*RedisStore)(nil)

// NewRedisStore returns a store that keeps its keys under prefix (for
// example "kubecord:rl:") in rdb.
func NewRedisStore(rdb redis.UniversalClient, prefix string) *RedisStore {
	return &RedisStore{rdb: rdb, prefix: prefix}
}

func (s *RedisStore) botPrefix(bot string) string { return s.prefix + "{" + bot + "}:" }

func (s *RedisStore) invalidPrefix() string { return s.prefix + "invalid:" }

func us(d time.Duration) int64 { return d.Microseconds() }

const luaCommon = `
local function s(x) return string.format('%.0f', x) end
local function nowus()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function bkey(p, hash, route, major)
  if hash then return p .. 'b:h:' .. hash .. '|' .. major end
  return p .. 'b:r:' .. route .. '|' .. major
end
`

// Results of acquireScript: {code, wait in microseconds}.
const (
	codeOK = iota
	codeBucket
	codeProbe
	codeGlobal
	codeInvalid
	codeBadWebhook
	codeBadToken
)

var acquireScript = redis.NewScript(luaCommon + `
local now = nowus()
local p, route, major = ARGV[1], ARGV[2], ARGV[3]
local wh, useg = ARGV[4] == '1', ARGV[5] == '1'
local glimit, gwin = tonumber(ARGV[6]), tonumber(ARGV[7])
local ilimit, iwin = tonumber(ARGV[8]), tonumber(ARGV[9])
local probettl, ip, idle = tonumber(ARGV[10]), ARGV[11], tonumber(ARGV[12])
if wh then
  local bw = tonumber(redis.call('GET', p .. 'badwh:' .. major) or '0')
  if now < bw then return {5, bw - now} end
else
  local bad = tonumber(redis.call('GET', p .. 'bad') or '0')
  if now < bad then return {6, bad - now} end
end
if ilimit > 0 and iwin > 0 then
  local slotlen = math.floor(iwin / 10)
  local slot = math.floor(now / slotlen)
  local n = 0
  for i = slot - 9, slot do n = n + tonumber(redis.call('GET', ip .. s(i)) or '0') end
  if n >= ilimit then return {4, slotlen} end
end
local hash = redis.call('HGET', p .. 'routes', route)
local bk = bkey(p, hash, route, major)
local f = redis.call('HMGET', bk, 'limit', 'remaining', 'reset_at', 'window', 'fresh', 'probe_until', 'unlimited')
local limit, remaining = tonumber(f[1] or '0'), tonumber(f[2] or '0')
local reset_at, window = tonumber(f[3] or '0'), tonumber(f[4] or '0')
local fresh, probe_until, unlimited = f[5] == '1', tonumber(f[6] or '0'), f[7] == '1'
local probe = false
local function save()
  redis.call('HSET', bk, 'remaining', s(remaining), 'reset_at', s(reset_at), 'fresh', fresh and '1' or '0')
  local ttl = math.floor(math.max(reset_at - now, 0) / 1000) + idle
  redis.call('PEXPIRE', bk, ttl)
end
if unlimited then
elseif limit == 0 then
  if now < probe_until then return {2, probe_until - now} end
  probe = true
else
  if now >= reset_at then
    if fresh and remaining <= 0 and now < reset_at + probettl then return {1, math.floor(probettl / 16)} end
    if (not fresh) or remaining <= 0 then
      remaining, reset_at, fresh = limit, now + window, true
      save()
    end
  end
  if remaining <= 0 then return {1, reset_at - now} end
end
if useg then
  local gb = tonumber(redis.call('GET', p .. 'gblock') or '0')
  if now < gb then return {3, gb - now} end
  local gd, gi = p .. 'gdone', p .. 'ginfl'
  redis.call('ZREMRANGEBYSCORE', gd, '-inf', s(now))
  redis.call('ZREMRANGEBYSCORE', gi, '-inf', s(now))
  if redis.call('ZCARD', gd) + redis.call('ZCARD', gi) >= glimit then
    local w = 3600000000
    if redis.call('ZCARD', gi) > 0 then w = 20000 end
    local first = redis.call('ZRANGE', gd, 0, 0, 'WITHSCORES')
    if first[2] then w = math.min(w, tonumber(first[2]) - now) end
    return {3, math.max(w, 1)}
  end
  local id = redis.call('INCR', p .. 'gseq')
  redis.call('ZADD', gi, s(now + probettl), id)
  local ttl = math.floor((probettl + gwin) / 1000) + 1000
  redis.call('PEXPIRE', gi, ttl)
  redis.call('PEXPIRE', p .. 'gseq', ttl)
end
if probe then
  redis.call('HSET', bk, 'probe_until', s(now + probettl))
  redis.call('PEXPIRE', bk, math.floor(probettl / 1000) + idle)
elseif not unlimited then
  remaining = remaining - 1
  save()
else
  redis.call('PEXPIRE', bk, idle)
end
return {0, 0}
`)

var observeScript = redis.NewScript(luaCommon + `
local now = nowus()
local p, route, major = ARGV[1], ARGV[2], ARGV[3]
local status, hash = tonumber(ARGV[4]), ARGV[5]
local haslimit, L, R = ARGV[6] == '1', tonumber(ARGV[7]), tonumber(ARGV[8])
local rid, ra, retry = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local g429, invalid, iwin = ARGV[12] == '1', ARGV[13] == '1', tonumber(ARGV[14])
local badwh, badtok, badttl = ARGV[15] == '1', ARGV[16] == '1', tonumber(ARGV[17])
local ip, idle = ARGV[18], tonumber(ARGV[19])
local useg, gwin = ARGV[20] == '1', tonumber(ARGV[21])
if useg then
  local gd, gi = p .. 'gdone', p .. 'ginfl'
  local done = redis.call('ZPOPMIN', gi)
  local id = done[1] or ('x' .. redis.call('INCR', p .. 'gseq'))
  redis.call('ZADD', gd, s(now + gwin), id)
  redis.call('PEXPIRE', gd, math.floor(gwin / 1000) + 1000)
end
if invalid and iwin > 0 then
  local slotlen = math.floor(iwin / 10)
  local k = ip .. s(math.floor(now / slotlen))
  redis.call('INCR', k)
  redis.call('PEXPIRE', k, math.floor(iwin / 1000) * 2)
end
local badms = math.max(math.floor(badttl / 1000), 1)
if badtok then redis.call('SET', p .. 'bad', s(now + badttl), 'PX', badms) end
if badwh then redis.call('SET', p .. 'badwh:' .. major, s(now + badttl), 'PX', badms) end
if g429 and retry > 0 then
  local gb = tonumber(redis.call('GET', p .. 'gblock') or '0')
  if now + retry > gb then redis.call('SET', p .. 'gblock', s(now + retry), 'PX', math.floor(retry / 1000) + 1) end
end
local rk = p .. 'routes'
local oldhash = redis.call('HGET', rk, route)
local bk = bkey(p, oldhash, route, major)
if hash ~= '' and hash ~= oldhash then
  redis.call('HSET', rk, route, hash)
  redis.call('PEXPIRE', rk, 86400000)
  local nk = bkey(p, hash, route, major)
  if redis.call('EXISTS', nk) == 1 then
    redis.call('HDEL', nk, 'probe_until')
    redis.call('DEL', bk)
  elseif redis.call('EXISTS', bk) == 1 then
    redis.call('RENAME', bk, nk)
  end
  bk = nk
end
local f = redis.call('HMGET', bk, 'limit', 'remaining', 'reset_at', 'window', 'reset_id', 'fresh', 'unlimited')
local limit, remaining = tonumber(f[1] or '0'), tonumber(f[2] or '0')
local reset_at, window, reset_id = tonumber(f[3] or '0'), tonumber(f[4] or '0'), tonumber(f[5] or '0')
local fresh, unlimited = f[6] == '1', f[7] == '1'
local probe_until = 0
if status ~= 0 then
  if haslimit then
    unlimited = false
    limit = L
    if ra > window then window = ra end
    if rid > reset_id then
      if fresh then
        remaining = math.min(remaining, R)
      elseif now >= reset_at or reset_id == 0 then
        remaining = R
      else
        remaining = math.min(remaining, R)
      end
      reset_id, reset_at, fresh = rid, now + ra, false
    elseif rid == reset_id and not fresh then
      remaining = math.min(remaining, R)
    end
  elseif status ~= 429 and status < 500 and limit == 0 then
    unlimited = true
  end
  if status == 429 and (not g429) and retry > 0 then
    remaining, fresh = 0, false
    if now + retry > reset_at then reset_at = now + retry end
    if limit == 0 then
      unlimited = false
      probe_until = now + retry
    end
  end
end
redis.call('HSET', bk, 'limit', s(limit), 'remaining', s(remaining), 'reset_at', s(reset_at),
  'window', s(window), 'reset_id', s(reset_id), 'fresh', fresh and '1' or '0',
  'unlimited', unlimited and '1' or '0', 'probe_until', s(probe_until))
redis.call('PEXPIRE', bk, math.floor(math.max(reset_at - now, 0) / 1000) + idle)
return 0
`)

func b01(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// Acquire implements Store.
func (s *RedisStore) Acquire(ctx context.Context, a Acquire) (Grant, error) {
	res, err := acquireScript.Run(ctx, s.rdb, nil,
		s.botPrefix(a.Bot), a.Route.Key, a.Route.Major, b01(a.Route.WebhookToken), b01(a.Global),
		a.GlobalLimit, us(a.GlobalWindow), a.InvalidLimit, us(a.InvalidWindow), us(a.ProbeTTL),
		s.invalidPrefix(), bucketIdle.Milliseconds()).Int64Slice()
	if err != nil {
		return Grant{}, fmt.Errorf("running the acquire script: %w", err)
	}
	if len(res) != 2 {
		return Grant{}, errors.New("acquire script returned " + strconv.Itoa(len(res)) + " values, want 2")
	}
	wait := time.Duration(res[1]) * time.Microsecond
	switch res[0] {
	case codeOK:
		return Grant{}, nil
	case codeBucket:
		return Grant{Wait: max(wait, time.Microsecond), Reason: ReasonBucket}, nil
	case codeProbe:
		return Grant{Wait: max(wait, time.Microsecond), Reason: ReasonProbe}, nil
	case codeGlobal:
		return Grant{Wait: max(wait, time.Microsecond), Reason: ReasonGlobal}, nil
	case codeInvalid:
		return Grant{Refused: true, Wait: wait, Reason: ReasonInvalid}, nil
	case codeBadWebhook:
		return Grant{Refused: true, Wait: wait, Reason: ReasonBadWebhook}, nil
	case codeBadToken:
		return Grant{Refused: true, Wait: wait, Reason: ReasonBadToken}, nil
	}
	return Grant{}, fmt.Errorf("acquire script returned unknown code %d", res[0])
}

// Observe implements Store.
func (s *RedisStore) Observe(ctx context.Context, o Observation) error {
	err := observeScript.Run(ctx, s.rdb, nil,
		s.botPrefix(o.Bot), o.Route.Key, o.Route.Major, o.Status, o.Hash,
		b01(o.HasLimit), o.Limit, o.Remaining, o.ResetID, us(o.ResetAfter), us(o.RetryAfter),
		b01(o.Global429), b01(o.Invalid), us(o.InvalidWindow),
		b01(o.BadWebhook), b01(o.BadToken), us(o.BadTTL),
		s.invalidPrefix(), bucketIdle.Milliseconds(), b01(o.Global), us(o.GlobalWindow)).Err()
	if err != nil {
		return fmt.Errorf("running the observe script: %w", err)
	}
	return nil
}

// Stats implements Store. It scans the keyspace, so call it rarely (a
// metrics scrape, not a request).
func (s *RedisStore) Stats(ctx context.Context) (StoreStats, error) {
	var st StoreStats
	iter := s.rdb.Scan(ctx, 0, s.prefix+"{*}:b:*", 1000).Iterator()
	for iter.Next(ctx) {
		st.Buckets++
	}
	if err := iter.Err(); err != nil {
		return st, fmt.Errorf("counting buckets: %w", err)
	}
	iter = s.rdb.Scan(ctx, 0, s.invalidPrefix()+"*", 100).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return st, fmt.Errorf("counting invalid responses: %w", err)
	}
	if len(keys) > 0 {
		vals, err := s.rdb.MGet(ctx, keys...).Result()
		if err != nil {
			return st, fmt.Errorf("reading invalid counters: %w", err)
		}
		for _, v := range vals {
			if str, ok := v.(string); ok {
				n, _ := strconv.ParseInt(str, 10, 64)
				st.Invalid += n
			}
		}
	}
	return st, nil
}
