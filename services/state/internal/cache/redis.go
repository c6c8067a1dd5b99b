package cache

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is the Store shared by several state replicas. Each event's batch runs as one Lua
// script, so it is atomic: a replica reading never sees half an event. Keys (under a prefix):
//
//	g:<guild>     guild blob            guilds        set of guild ids
//	gn            hash guild -> "roles:emojis:stickers:unavailable" (for the counters)
//	gm:<guild>    hash user -> member   ug:<user>     set of the user's guild ids
//	u:<user>      user blob             c:<channel>   channel or thread blob
//	gc:<guild>    set of channel ids    gt:<guild>    set of thread ids
//	gv:<guild>    hash user -> voice    gp:<guild>    hash user -> presence
//	seq, sess, at hashes shard -> last sequence, session id, applied time (unix ns)
//	stats         hash of counters
//
// The script touches keys it derives itself, which standalone Redis (and Sentinel) allow;
// Redis Cluster would need every key of an event in one hash slot, which this layout does not
// give.
type Redis struct {
	client *redis.Client
	prefix string
}

var _ Store = (*Redis)(nil)

// NewRedis returns a store on the Redis at url (redis://[user:password@]host:port/db), with
// keys under prefix. It checks the connection.
func NewRedis(ctx context.Context, url, prefix string) (*Redis, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("parsing the Redis URL: %w", err)
	}
	client := redis.NewClient(opts)
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("connecting to Redis at %s: %w", opts.Addr, err)
	}
	return &Redis{client: client, prefix: prefix}, nil
}

// Kind implements Store.
func (r *Redis) Kind() string { return "redis" }

// Close implements Store.
func (r *Redis) Close() error { return r.client.Close() }

// applyScript applies one batch: ARGV[1] is the key prefix, then one record per op: its kind
// name followed by a fixed number of arguments.
var applyScript = redis.NewScript(`
local p = ARGV[1]
local touched = {}
local function incr(field, n) if n ~= 0 then redis.call('HINCRBY', p..'stats', field, n) end end
local function unlink(u, g)
  redis.call('SREM', p..'ug:'..u, g)
  touched[u] = true
end
local function counts(g)
  local v = redis.call('HGET', p..'gn', g)
  if not v then return 0, 0, 0, 0 end
  local r, e, s, u = string.match(v, '(%d+):(%d+):(%d+):(%d+)')
  return tonumber(r), tonumber(e), tonumber(s), tonumber(u)
end
local function delchannels(set, field)
  local ids = redis.call('SMEMBERS', set)
  for _, c in ipairs(ids) do redis.call('DEL', p..'c:'..c) end
  incr(field, -#ids)
  redis.call('DEL', set)
end
local function clear(g)
  local mk = p..'gm:'..g
  local uids = redis.call('HKEYS', mk)
  for _, u in ipairs(uids) do unlink(u, g) end
  incr('members', -#uids)
  redis.call('DEL', mk)
  delchannels(p..'gc:'..g, 'channels')
  delchannels(p..'gt:'..g, 'threads')
  incr('voice_states', -redis.call('HLEN', p..'gv:'..g))
  redis.call('DEL', p..'gv:'..g)
  incr('presences', -redis.call('HLEN', p..'gp:'..g))
  redis.call('DEL', p..'gp:'..g)
end
local function putuser(u, blob)
  if redis.call('SCARD', p..'ug:'..u) == 0 then return end
  if redis.call('EXISTS', p..'u:'..u) == 0 then incr('users', 1) end
  redis.call('SET', p..'u:'..u, blob)
end
local function guildexists(g) return redis.call('EXISTS', p..'g:'..g) == 1 end
local i = 2
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'pg' then
    local g, blob, r, e, s, u = ARGV[i+1], ARGV[i+2], tonumber(ARGV[i+3]), tonumber(ARGV[i+4]), tonumber(ARGV[i+5]), tonumber(ARGV[i+6])
    local r0, e0, s0, u0 = counts(g)
    if redis.call('SADD', p..'guilds', g) == 1 then incr('guilds', 1) end
    redis.call('SET', p..'g:'..g, blob)
    redis.call('HSET', p..'gn', g, r..':'..e..':'..s..':'..u)
    incr('roles', r - r0); incr('emojis', e - e0); incr('stickers', s - s0); incr('unavailable_guilds', u - u0)
    i = i + 7
  elseif op == 'dg' then
    local g = ARGV[i+1]
    if guildexists(g) then
      clear(g)
      local r0, e0, s0, u0 = counts(g)
      incr('roles', -r0); incr('emojis', -e0); incr('stickers', -s0); incr('unavailable_guilds', -u0)
      redis.call('DEL', p..'g:'..g)
      redis.call('HDEL', p..'gn', g)
      redis.call('SREM', p..'guilds', g)
      incr('guilds', -1)
    end
    i = i + 2
  elseif op == 'cg' then
    clear(ARGV[i+1])
    i = i + 2
  elseif op == 'pm' then
    local g, u, blob, ublob = ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4]
    if guildexists(g) then
      if redis.call('HSET', p..'gm:'..g, u, blob) == 1 then incr('members', 1) end
      redis.call('SADD', p..'ug:'..u, g)
      if ublob ~= '' then putuser(u, ublob) end
    end
    i = i + 5
  elseif op == 'dm' then
    local g, u = ARGV[i+1], ARGV[i+2]
    if redis.call('HDEL', p..'gm:'..g, u) == 1 then
      incr('members', -1)
      unlink(u, g)
    end
    i = i + 3
  elseif op == 'pu' then
    putuser(ARGV[i+1], ARGV[i+2])
    touched[ARGV[i+1]] = true
    i = i + 3
  elseif op == 'pc' then
    local g, c, blob, thread = ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4] == '1'
    if g == '0' or guildexists(g) then
      local exists = redis.call('EXISTS', p..'c:'..c) == 1
      redis.call('SET', p..'c:'..c, blob)
      if not exists then
        if thread then incr('threads', 1) else incr('channels', 1) end
      end
      if g ~= '0' then
        if thread then redis.call('SADD', p..'gt:'..g, c) else redis.call('SADD', p..'gc:'..g, c) end
      end
    end
    i = i + 5
  elseif op == 'dc' then
    local g, c = ARGV[i+1], ARGV[i+2]
    if redis.call('DEL', p..'c:'..c) == 1 then
      if redis.call('SREM', p..'gt:'..g, c) == 1 then
        incr('threads', -1)
      else
        redis.call('SREM', p..'gc:'..g, c)
        incr('channels', -1)
      end
    end
    i = i + 3
  elseif op == 'pv' or op == 'pp' then
    local g, u, blob = ARGV[i+1], ARGV[i+2], ARGV[i+3]
    if guildexists(g) then
      local key, field = p..'gv:'..g, 'voice_states'
      if op == 'pp' then key, field = p..'gp:'..g, 'presences' end
      if redis.call('HSET', key, u, blob) == 1 then incr(field, 1) end
    end
    i = i + 4
  elseif op == 'dv' or op == 'dp' then
    local g, u = ARGV[i+1], ARGV[i+2]
    local key, field = p..'gv:'..g, 'voice_states'
    if op == 'dp' then key, field = p..'gp:'..g, 'presences' end
    if redis.call('HDEL', key, u) == 1 then incr(field, -1) end
    i = i + 3
  elseif op == 'pr' then
    local shard, seq, sess, at = ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4]
    local oldseq = tonumber(redis.call('HGET', p..'seq', shard) or '0')
    local oldsess = redis.call('HGET', p..'sess', shard)
    if oldsess ~= sess or tonumber(seq) > oldseq then
      redis.call('HSET', p..'seq', shard, seq)
      redis.call('HSET', p..'sess', shard, sess)
      redis.call('HSET', p..'at', shard, at)
    end
    i = i + 5
  else
    return redis.error_reply('unknown op ' .. tostring(op))
  end
end
for u, _ in pairs(touched) do
  if redis.call('SCARD', p..'ug:'..u) == 0 then
    if redis.call('DEL', p..'u:'..u) == 1 then incr('users', -1) end
  end
end
return 1
`)

func id(v uint64) string { return strconv.FormatUint(v, 10) }

func boolArg(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// Commit implements Store.
func (r *Redis) Commit(ctx context.Context, b *Batch) error {
	args := make([]any, 0, 1+len(b.ops)*5)
	args = append(args, r.prefix)
	for i := range b.ops {
		o := &b.ops[i]
		switch o.kind {
		case opPutGuild:
			args = append(args, "pg", id(o.a), o.data, o.n[0], o.n[1], o.n[2], boolArg(o.flag))
		case opDelGuild:
			args = append(args, "dg", id(o.a))
		case opClearGuild:
			args = append(args, "cg", id(o.a))
		case opPutMember:
			args = append(args, "pm", id(o.a), id(o.b), o.data, o.extra)
		case opDelMember:
			args = append(args, "dm", id(o.a), id(o.b))
		case opPutUser:
			args = append(args, "pu", id(o.b), o.data)
		case opPutChannel:
			args = append(args, "pc", id(o.a), id(o.b), o.data, boolArg(o.flag))
		case opDelChannel:
			args = append(args, "dc", id(o.a), id(o.b))
		case opPutVoice:
			args = append(args, "pv", id(o.a), id(o.b), o.data)
		case opDelVoice:
			args = append(args, "dv", id(o.a), id(o.b))
		case opPutPresence:
			args = append(args, "pp", id(o.a), id(o.b), o.data)
		case opDelPresence:
			args = append(args, "dp", id(o.a), id(o.b))
		case opProgress:
			args = append(args, "pr", id(o.a), id(o.b), o.str, o.at.UnixNano())
		}
	}
	if err := applyScript.Run(ctx, r.client, nil, args...).Err(); err != nil {
		return fmt.Errorf("running the apply script: %w", err)
	}
	return nil
}

func (r *Redis) get(ctx context.Context, key string) ([]byte, error) {
	b, err := r.client.Get(ctx, r.prefix+key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", key, err)
	}
	return b, nil
}

func (r *Redis) hget(ctx context.Context, key string, field uint64) ([]byte, error) {
	b, err := r.client.HGet(ctx, r.prefix+key, id(field)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", key, err)
	}
	return b, nil
}

// Guild implements Store.
func (r *Redis) Guild(ctx context.Context, guildID uint64) ([]byte, error) {
	return r.get(ctx, "g:"+id(guildID))
}

func parseIDs(ss []string) []uint64 {
	out := make([]uint64, 0, len(ss))
	for _, s := range ss {
		if v, err := strconv.ParseUint(s, 10, 64); err == nil {
			out = append(out, v)
		}
	}
	return out
}

func (r *Redis) members(ctx context.Context, key string) ([]uint64, error) {
	ss, err := r.client.SMembers(ctx, r.prefix+key).Result()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", key, err)
	}
	return parseIDs(ss), nil
}

// GuildIDs implements Store.
func (r *Redis) GuildIDs(ctx context.Context, after uint64, limit int) ([]uint64, error) {
	ids, err := r.members(ctx, "guilds")
	if err != nil {
		return nil, err
	}
	ids = slices.DeleteFunc(ids, func(v uint64) bool { return v <= after })
	return firstSorted(ids, limit), nil
}

// Member implements Store.
func (r *Redis) Member(ctx context.Context, guildID, userID uint64) (MemberBlob, error) {
	mbs, err := r.MembersByID(ctx, guildID, []uint64{userID})
	if err != nil {
		return MemberBlob{}, err
	}
	if len(mbs) == 0 {
		return MemberBlob{}, ErrNotFound
	}
	return mbs[0], nil
}

// Members implements Store.
func (r *Redis) Members(ctx context.Context, guildID, after uint64, limit int) ([]MemberBlob, error) {
	if n, err := r.client.Exists(ctx, r.prefix+"g:"+id(guildID)).Result(); err != nil {
		return nil, fmt.Errorf("reading guild %d: %w", guildID, err)
	} else if n == 0 {
		return nil, ErrNotFound
	}
	// Hash fields are unordered: sort the ids here. Fine for pages of guilds up to a few
	// hundred thousand members; a sorted index would trade memory for it.
	keys, err := r.client.HKeys(ctx, r.prefix+"gm:"+id(guildID)).Result()
	if err != nil {
		return nil, fmt.Errorf("listing members of guild %d: %w", guildID, err)
	}
	ids := parseIDs(keys)
	ids = slices.DeleteFunc(ids, func(v uint64) bool { return v <= after })
	return r.MembersByID(ctx, guildID, firstSorted(ids, limit))
}

// MembersByID implements Store.
func (r *Redis) MembersByID(ctx context.Context, guildID uint64, userIDs []uint64) ([]MemberBlob, error) {
	if len(userIDs) == 0 {
		return nil, nil
	}
	fields := make([]string, len(userIDs))
	ukeys := make([]string, len(userIDs))
	for i, u := range userIDs {
		fields[i] = id(u)
		ukeys[i] = r.prefix + "u:" + fields[i]
	}
	pipe := r.client.Pipeline()
	mcmd := pipe.HMGet(ctx, r.prefix+"gm:"+id(guildID), fields...)
	ucmd := pipe.MGet(ctx, ukeys...)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("reading members of guild %d: %w", guildID, err)
	}
	ms, us := mcmd.Val(), ucmd.Val()
	out := make([]MemberBlob, 0, len(userIDs))
	for i, u := range userIDs {
		m, ok := ms[i].(string)
		if !ok {
			continue
		}
		mb := MemberBlob{UserID: u, Member: []byte(m)}
		if s, ok := us[i].(string); ok {
			mb.User = []byte(s)
		}
		out = append(out, mb)
	}
	return out, nil
}

// User implements Store.
func (r *Redis) User(ctx context.Context, userID uint64) ([]byte, error) {
	return r.get(ctx, "u:"+id(userID))
}

// UserGuilds implements Store.
func (r *Redis) UserGuilds(ctx context.Context, userID uint64) ([]uint64, error) {
	ids, err := r.members(ctx, "ug:"+id(userID))
	slices.Sort(ids)
	return ids, err
}

// Channel implements Store.
func (r *Redis) Channel(ctx context.Context, channelID uint64) ([]byte, error) {
	return r.get(ctx, "c:"+id(channelID))
}

func (r *Redis) blobs(ctx context.Context, prefix string, ids []uint64) ([][]byte, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	keys := make([]string, len(ids))
	for i, v := range ids {
		keys[i] = r.prefix + prefix + id(v)
	}
	vals, err := r.client.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, fmt.Errorf("reading %s*: %w", prefix, err)
	}
	out := make([][]byte, 0, len(vals))
	for _, v := range vals {
		if s, ok := v.(string); ok {
			out = append(out, []byte(s))
		}
	}
	return out, nil
}

// GuildChannels implements Store.
func (r *Redis) GuildChannels(ctx context.Context, guildID uint64, threads bool) ([][]byte, error) {
	if _, err := r.Guild(ctx, guildID); err != nil {
		return nil, err
	}
	ids, err := r.members(ctx, "gc:"+id(guildID))
	if err != nil {
		return nil, err
	}
	if threads {
		tids, err := r.members(ctx, "gt:"+id(guildID))
		if err != nil {
			return nil, err
		}
		ids = append(ids, tids...)
	}
	return r.blobs(ctx, "c:", ids)
}

// GuildThreadIDs implements Store.
func (r *Redis) GuildThreadIDs(ctx context.Context, guildID uint64) ([]uint64, error) {
	return r.members(ctx, "gt:"+id(guildID))
}

// VoiceState implements Store.
func (r *Redis) VoiceState(ctx context.Context, guildID, userID uint64) ([]byte, error) {
	return r.hget(ctx, "gv:"+id(guildID), userID)
}

// VoiceStates implements Store.
func (r *Redis) VoiceStates(ctx context.Context, guildID uint64) ([][]byte, error) {
	if _, err := r.Guild(ctx, guildID); err != nil {
		return nil, err
	}
	vals, err := r.client.HVals(ctx, r.prefix+"gv:"+id(guildID)).Result()
	if err != nil {
		return nil, fmt.Errorf("reading voice states of guild %d: %w", guildID, err)
	}
	out := make([][]byte, len(vals))
	for i, v := range vals {
		out[i] = []byte(v)
	}
	return out, nil
}

// Presence implements Store.
func (r *Redis) Presence(ctx context.Context, guildID, userID uint64) ([]byte, error) {
	return r.hget(ctx, "gp:"+id(guildID), userID)
}

// Progress implements Store.
func (r *Redis) Progress(ctx context.Context) ([]Progress, error) {
	pipe := r.client.Pipeline()
	seq := pipe.HGetAll(ctx, r.prefix+"seq")
	sess := pipe.HGetAll(ctx, r.prefix+"sess")
	at := pipe.HGetAll(ctx, r.prefix+"at")
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("reading shard progress: %w", err)
	}
	out := make([]Progress, 0, len(seq.Val()))
	for shard, s := range seq.Val() {
		sh, err1 := strconv.ParseUint(shard, 10, 32)
		n, err2 := strconv.ParseUint(s, 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		ns, _ := strconv.ParseInt(at.Val()[shard], 10, 64)
		out = append(out, Progress{ShardID: uint32(sh), Sequence: n, SessionID: sess.Val()[shard], AppliedAt: time.Unix(0, ns)})
	}
	slices.SortFunc(out, func(a, b Progress) int { return int(a.ShardID) - int(b.ShardID) })
	return out, nil
}

// Counts implements Store.
func (r *Redis) Counts(ctx context.Context) (Counts, error) {
	pipe := r.client.Pipeline()
	stats := pipe.HGetAll(ctx, r.prefix+"stats")
	mem := pipe.InfoMap(ctx, "memory")
	if _, err := pipe.Exec(ctx); err != nil {
		return Counts{}, fmt.Errorf("reading counters: %w", err)
	}
	n := func(k string) uint64 {
		v, _ := strconv.ParseUint(stats.Val()[k], 10, 64)
		return v
	}
	c := Counts{Guilds: n("guilds"), UnavailableGuilds: n("unavailable_guilds"), Channels: n("channels"),
		Threads: n("threads"), Roles: n("roles"), Members: n("members"), Users: n("users"), Emojis: n("emojis"),
		Stickers: n("stickers"), VoiceStates: n("voice_states"), Presences: n("presences")}
	if m, ok := mem.Val()["Memory"]; ok {
		c.MemoryBytes, _ = strconv.ParseUint(strings.TrimSpace(m["used_memory"]), 10, 64)
	}
	return c, nil
}
