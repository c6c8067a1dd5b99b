package discordsim

import (
	"crypto/sha256"
	"encoding/hex"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// bucketSpec is one ratelimit bucket as Discord configures it: a number of
// requests per fixed window. Routes that name the same bucket share its hash
// and, for the same major parameter, its counter.
type bucketSpec struct {
	// Name identifies the bucket in this table; the opaque hash clients see is
	// derived from it, so it is stable across runs like Discord's.
	Name   string
	Limit  int
	Window time.Duration
}

// bucketTable lists the simulated buckets. Discord does not publish its
// limits (clients must learn them from headers); the values below are the ones
// bots commonly observe, and the sublimits are those the docs describe:
//   - message create 5 per 5 s per channel, edit 5 per 5 s, delete 5 per 1 s
//     (protocol.md §18 leaves values to the headers; inference from observed
//     headers);
//   - deleting a message older than two weeks has its own, slower bucket
//     ("delete-old-message", 30 per 120 s; inference);
//   - reactions 1 per 0.25 s per channel, shared by all reaction routes;
//   - renaming a channel or changing its topic 2 per 10 minutes per channel,
//     a sublimit on top of the channel-modify bucket;
//   - webhook and interaction-followup execution 5 per 2 s per webhook
//     id+token.
//
// Everything else gets a generous per-route default.
var bucketTable = []bucketSpec{
	{Name: "default", Limit: 50, Window: time.Second},
	{Name: "users-me", Limit: 5, Window: time.Second},
	{Name: "gateway", Limit: 5, Window: time.Second},
	{Name: "channel", Limit: 5, Window: 5 * time.Second},
	{Name: "channel-name-topic", Limit: 2, Window: 10 * time.Minute},
	{Name: "channel-delete", Limit: 5, Window: 5 * time.Second},
	{Name: "messages-read", Limit: 50, Window: time.Second},
	{Name: "message-create", Limit: 5, Window: 5 * time.Second},
	// The write limit of a channel shared by every bot writing to it; Limit
	// 0 turns it off (the default: Discord does not publish its value).
	{Name: "channel-write-shared", Limit: 0, Window: 10 * time.Second},
	{Name: "message-edit", Limit: 5, Window: 5 * time.Second},
	{Name: "message-delete", Limit: 5, Window: time.Second},
	{Name: "delete-old-message", Limit: 30, Window: 120 * time.Second},
	{Name: "bulk-delete", Limit: 1, Window: time.Second},
	{Name: "reactions", Limit: 1, Window: 250 * time.Millisecond},
	{Name: "pins", Limit: 5, Window: 5 * time.Second},
	{Name: "typing", Limit: 5, Window: 5 * time.Second},
	{Name: "guild", Limit: 5, Window: 5 * time.Second},
	{Name: "guild-channels", Limit: 5, Window: 5 * time.Second},
	{Name: "members-read", Limit: 10, Window: 10 * time.Second},
	{Name: "member-modify", Limit: 10, Window: 10 * time.Second},
	{Name: "member-roles", Limit: 10, Window: 10 * time.Second},
	{Name: "member-kick", Limit: 5, Window: 5 * time.Second},
	{Name: "roles", Limit: 250, Window: 48 * time.Hour},
	{Name: "roles-read", Limit: 10, Window: 10 * time.Second},
	{Name: "bans", Limit: 5, Window: 5 * time.Second},
	{Name: "dm-create", Limit: 10, Window: 10 * time.Second},
	{Name: "webhook-create", Limit: 5, Window: 5 * time.Second},
	{Name: "webhook", Limit: 5, Window: 2 * time.Second},
	{Name: "interaction-callback", Limit: 5, Window: 5 * time.Second},
	{Name: "commands", Limit: 10, Window: 10 * time.Second},
	{Name: "users-guilds", Limit: 1, Window: time.Second},
	{Name: "members-search", Limit: 10, Window: 10 * time.Second},
	{Name: "channel-permissions", Limit: 10, Window: 10 * time.Second},
	{Name: "threads", Limit: 10, Window: 10 * time.Second},
	{Name: "thread-members", Limit: 10, Window: 10 * time.Second},
	// Emoji routes are limited per guild (protocol.md §18).
	{Name: "emojis", Limit: 50, Window: 10 * time.Second},
}

// bucketID is the index of a bucket in the limiter's table.
type bucketID uint16

// limKey names one counter: a bucket for one owner (bot) and one major
// parameter value.
type limKey struct {
	owner  uint64 // bot id; 0 for token-authenticated webhook routes
	bucket bucketID
	major  uint64 // channel, guild, webhook or interaction id
	token  string // webhook token, part of the major parameter for webhooks
}

// limWindow is one fixed window of a bucket.
type limWindow struct {
	resetAt   int64 // unix nanoseconds
	remaining int
}

// limShard is a slice of the limiter's counters under one lock; sharding keeps
// concurrent requests on different buckets from contending.
type limShard struct {
	mu      sync.Mutex
	m       map[limKey]*limWindow
	sweepAt int64
	_       [40]byte // keep shards on separate cache lines
}

const limShards = 64

// limiter holds the fixed-window counters of every bucket. It is on the path of
// every request, so it avoids allocation once a key exists.
type limiter struct {
	now    func() time.Time
	specs  []bucketSpec
	hashes []string // opaque X-RateLimit-Bucket values, by bucketID
	byName map[string]bucketID
	seed   maphash.Seed
	shards [limShards]limShard
}

// decision is the outcome of taking one request from a bucket.
type decision struct {
	ok         bool
	limit      int
	remaining  int
	resetAt    time.Time
	retryAfter time.Duration // until resetAt, for 429s and headers
}

// newLimiter builds a limiter over specs; override replaces the limit and
// window of named buckets (so tests can use short windows).
func newLimiter(now func() time.Time, specs []bucketSpec, override map[string]BucketLimit) *limiter {
	l := &limiter{now: now, byName: make(map[string]bucketID, len(specs)), seed: maphash.MakeSeed()}
	for _, sp := range specs {
		if o, ok := override[sp.Name]; ok {
			if o.Limit > 0 {
				sp.Limit = o.Limit
			}
			if o.Window > 0 {
				sp.Window = o.Window
			}
		}
		l.add(sp)
	}
	for i := range l.shards {
		l.shards[i].m = make(map[limKey]*limWindow)
	}
	return l
}

// add appends a bucket and returns its id.
func (l *limiter) add(sp bucketSpec) bucketID {
	id := bucketID(len(l.specs))
	l.specs = append(l.specs, sp)
	sum := sha256.Sum256([]byte("discordsim-bucket:" + sp.Name))
	l.hashes = append(l.hashes, hex.EncodeToString(sum[:16]))
	l.byName[sp.Name] = id
	return id
}

// bucket returns the id of a named bucket; it panics on a name missing from
// the table, which is a programming error caught by every test.
func (l *limiter) bucket(name string) bucketID {
	id, ok := l.byName[name]
	if !ok {
		panic("discordsim: unknown ratelimit bucket " + name)
	}
	return id
}

// take counts one request against key and reports whether it may proceed.
func (l *limiter) take(key limKey) decision {
	sp := &l.specs[key.bucket]
	return l.takeN(key, sp.Limit, sp.Window)
}

// takeN is take with an explicit limit and window (used for the global limit,
// whose value comes from the config rather than the table).
func (l *limiter) takeN(key limKey, limit int, window time.Duration) decision {
	now := l.now()
	nowNano := now.UnixNano()
	sh := &l.shards[l.shardOf(key)]
	sh.mu.Lock()
	if nowNano >= sh.sweepAt {
		sh.sweep(nowNano)
	}
	w := sh.m[key]
	if w == nil {
		w = &limWindow{}
		sh.m[key] = w
	}
	if nowNano >= w.resetAt {
		w.resetAt = nowNano + int64(window)
		w.remaining = limit
	}
	d := decision{limit: limit, resetAt: time.Unix(0, w.resetAt), retryAfter: time.Duration(w.resetAt - nowNano)}
	if w.remaining > 0 {
		w.remaining--
		d.ok = true
	}
	d.remaining = w.remaining
	sh.mu.Unlock()
	return d
}

// shardOf spreads keys over the shards.
func (l *limiter) shardOf(k limKey) int {
	h := k.owner*0x9E3779B97F4A7C15 ^ k.major*0xC2B2AE3D27D4EB4F ^ uint64(k.bucket)*0x165667B19E3779F9
	if k.token != "" {
		h ^= maphash.String(l.seed, k.token)
	}
	h ^= h >> 29
	return int(h % limShards)
}

// sweep drops windows that have expired, so counters of channels that are no
// longer used do not accumulate. It runs at most once a minute per shard.
func (sh *limShard) sweep(nowNano int64) {
	for k, w := range sh.m {
		if nowNano >= w.resetAt {
			delete(sh.m, k)
		}
	}
	sh.sweepAt = nowNano + int64(time.Minute)
}

// invalidTracker counts invalid responses (401, 403 and non-shared 429) per
// client IP in fixed windows and bans an IP that exceeds the limit until its
// window ends, as Cloudflare does in front of Discord.
type invalidTracker struct {
	now    func() time.Time
	limit  int
	window time.Duration

	mu     sync.Mutex
	byIP   map[string]*invalidWindow
	banned int // number of IPs currently marked banned, under mu
	// anyBanned mirrors banned > 0 so that isBanned, which every request
	// calls, takes no lock while nobody is banned.
	anyBanned atomic.Bool
}

type invalidWindow struct {
	start  int64
	count  int
	banned bool
}

func newInvalidTracker(now func() time.Time, limit int, window time.Duration) *invalidTracker {
	return &invalidTracker{now: now, limit: limit, window: window, byIP: make(map[string]*invalidWindow)}
}

// isBanned reports whether ip is banned now, and until when.
func (t *invalidTracker) isBanned(ip string) (bool, time.Time) {
	if !t.anyBanned.Load() {
		return false, time.Time{}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	defer t.syncBanned()
	w := t.byIP[ip]
	if w == nil || !w.banned {
		return false, time.Time{}
	}
	now := t.now().UnixNano()
	end := w.start + int64(t.window)
	if now >= end {
		// The window has passed: the ban is lifted and counting starts over.
		delete(t.byIP, ip)
		t.banned--
		return false, time.Time{}
	}
	return true, time.Unix(0, end)
}

// record counts one invalid response for ip and reports whether this one
// started a ban.
func (t *invalidTracker) record(ip string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	defer t.syncBanned()
	now := t.now().UnixNano()
	if len(t.byIP) >= maxTrackedIPs {
		t.sweepLocked(now)
	}
	w := t.byIP[ip]
	if w == nil || now >= w.start+int64(t.window) {
		if w != nil && w.banned {
			t.banned--
		}
		w = &invalidWindow{start: now}
		t.byIP[ip] = w
	}
	w.count++
	if w.count > t.limit && !w.banned {
		w.banned = true
		t.banned++
		return true
	}
	return false
}

// syncBanned publishes whether any IP is banned. The caller holds t.mu.
func (t *invalidTracker) syncBanned() { t.anyBanned.Store(t.banned > 0) }

// maxTrackedIPs is how many IPs the tracker holds before it drops the ones
// whose window has ended.
const maxTrackedIPs = 4096

// sweepLocked forgets IPs whose window has ended. The caller holds t.mu.
func (t *invalidTracker) sweepLocked(now int64) {
	for ip, w := range t.byIP {
		if now >= w.start+int64(t.window) {
			if w.banned {
				t.banned--
			}
			delete(t.byIP, ip)
		}
	}
}

// count returns the invalid responses recorded for ip in its current window.
func (t *invalidTracker) count(ip string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if w := t.byIP[ip]; w != nil && t.now().UnixNano() < w.start+int64(t.window) {
		return w.count
	}
	return 0
}
