package discordsim

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// RESTStats is the REST API's accounting: what it answered, every 429 and
// every invalid request, so a test can assert "no 429 was provoked".
type RESTStats struct {
	// Requests counts every request answered (including 404s and bans).
	Requests int64 `json:"requests"`
	// ByRoute counts requests by route ("POST /channels/{channel.id}/messages";
	// "unmatched" for unknown paths). Requests answered by a fault are
	// counted in Faults instead.
	ByRoute map[string]int64 `json:"by_route"`
	// ByBucket counts requests by X-RateLimit-Bucket hash.
	ByBucket map[string]int64 `json:"by_bucket"`
	// ByStatus counts responses by HTTP status ("0" for dropped connections).
	ByStatus map[string]int64 `json:"by_status"`
	// RateLimited counts 429s of every scope.
	RateLimited int64 `json:"rate_limited"`
	// RateLimitedByScope counts 429s by X-RateLimit-Scope: user, global, shared.
	RateLimitedByScope map[string]int64 `json:"rate_limited_by_scope"`
	// RateLimitedByBot counts 429s by bot id ("0" for token routes).
	RateLimitedByBot map[string]int64 `json:"rate_limited_by_bot"`
	// RateLimitedByBucket counts 429s by bucket hash ("global" for the
	// global limit).
	RateLimitedByBucket map[string]int64 `json:"rate_limited_by_bucket"`
	// Global429 counts 429s of the global limit.
	Global429 int64 `json:"global_429"`
	// RateLimitEvents lists the most recent 429s (up to 1,000).
	RateLimitEvents []RateLimitEvent `json:"rate_limit_events"`
	// InvalidRequests counts the 401, 403 and non-shared 429 responses that
	// count towards the invalid request limit.
	InvalidRequests int64 `json:"invalid_requests"`
	// Bans counts the times an IP was banned for too many invalid requests.
	Bans int64 `json:"bans"`
	// BannedRequests counts requests refused because their IP was banned.
	BannedRequests int64 `json:"banned_requests"`
	// Faults counts requests a REST fault was applied to.
	Faults int64 `json:"faults"`
}

// RateLimitEvent is one 429 answered.
type RateLimitEvent struct {
	Time       time.Time `json:"time"`
	Bot        Snowflake `json:"bot"`
	Route      string    `json:"route"`
	Bucket     string    `json:"bucket"`
	Scope      string    `json:"scope"`
	Global     bool      `json:"global"`
	RetryAfter float64   `json:"retry_after"`
}

const maxRateLimitEvents = 1000

// routeCounters are one route's counters, updated without locks.
type routeCounters struct {
	requests atomic.Int64
}

// restStats accumulates the accounting. Per-route counts are atomic; the
// rarer events (429s, errors) take a lock.
type restStats struct {
	routes   map[*route]*routeCounters
	requests atomic.Int64
	faults   atomic.Int64
	ok       [3]atomic.Int64 // the 2xx fast path: 200, 201, 204

	mu       sync.Mutex
	unmatch  int64
	byStatus map[int]int64
	rl       RESTStats // the 429 and invalid parts
	events   []RateLimitEvent
}

func newRESTStats(rt *router) *restStats {
	st := &restStats{routes: make(map[*route]*routeCounters, len(rt.all)), byStatus: map[int]int64{}}
	for _, r := range rt.all {
		st.routes[r] = &routeCounters{}
	}
	st.rl.RateLimitedByScope = map[string]int64{}
	st.rl.RateLimitedByBot = map[string]int64{}
	st.rl.RateLimitedByBucket = map[string]int64{}
	return st
}

func (st *restStats) fault() { st.faults.Add(1) }

// record accounts for one answered request.
func (st *restStats) record(c *reqCtx, invalid, banStarted bool) {
	st.requests.Add(1)
	if c.route != nil {
		st.routes[c.route].requests.Add(1)
	}
	switch c.status {
	case 200:
		st.ok[0].Add(1)
		if c.route != nil {
			return
		}
	case 201:
		st.ok[1].Add(1)
		if c.route != nil {
			return
		}
	case 204:
		st.ok[2].Add(1)
		if c.route != nil {
			return
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if c.route == nil && !c.faulted {
		st.unmatch++
	}
	if c.status != 200 && c.status != 201 && c.status != 204 {
		st.byStatus[max(c.status, 0)]++
	}
	if invalid {
		st.rl.InvalidRequests++
	}
	if banStarted {
		st.rl.Bans++
	}
	if c.scope == "ban" {
		st.rl.BannedRequests++
	}
	if c.status != 429 {
		return
	}
	st.rl.RateLimited++
	st.rl.RateLimitedByScope[c.scope]++
	st.rl.RateLimitedByBot[strconv.FormatUint(c.owner, 10)]++
	bucket := "global"
	if c.scope != "global" {
		bucket = c.w.Header().Get(hdrBucket)
	}
	st.rl.RateLimitedByBucket[bucket]++
	if c.scope == "global" {
		st.rl.Global429++
	}
	retry, _ := strconv.ParseFloat(c.w.Header().Get(hdrRetryAfter), 64)
	ev := RateLimitEvent{Time: c.rs.now().UTC(), Bot: Snowflake(c.owner), Route: c.routeName(), Bucket: bucket,
		Scope: c.scope, Global: c.scope == "global", RetryAfter: retry}
	if c.retryAfter > 0 {
		ev.RetryAfter = c.retryAfter
	}
	if len(st.events) == maxRateLimitEvents {
		st.events = append(st.events[:0], st.events[1:]...)
	}
	st.events = append(st.events, ev)
}

// RESTStats returns a snapshot of the REST accounting.
func (s *Server) RESTStats() RESTStats {
	rs := s.rest
	if rs == nil {
		return RESTStats{}
	}
	st := rs.stats
	out := RESTStats{
		Requests: st.requests.Load(),
		Faults:   st.faults.Load(),
		ByRoute:  map[string]int64{},
		ByBucket: map[string]int64{},
		ByStatus: map[string]int64{},
	}
	for r, rc := range st.routes {
		n := rc.requests.Load()
		if n == 0 {
			continue
		}
		out.ByRoute[r.name] += n
		out.ByBucket[rs.lim.hashes[r.bucket]] += n
	}
	for i, code := range []int{200, 201, 204} {
		if n := st.ok[i].Load(); n > 0 {
			out.ByStatus[strconv.Itoa(code)] = n
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.unmatch > 0 {
		out.ByRoute["unmatched"] = st.unmatch
	}
	for code, n := range st.byStatus {
		out.ByStatus[strconv.Itoa(code)] += n
	}
	out.RateLimited = st.rl.RateLimited
	out.Global429 = st.rl.Global429
	out.InvalidRequests = st.rl.InvalidRequests
	out.Bans = st.rl.Bans
	out.BannedRequests = st.rl.BannedRequests
	out.RateLimitedByScope = copyCounts(st.rl.RateLimitedByScope)
	out.RateLimitedByBot = copyCounts(st.rl.RateLimitedByBot)
	out.RateLimitedByBucket = copyCounts(st.rl.RateLimitedByBucket)
	out.RateLimitEvents = append([]RateLimitEvent{}, st.events...)
	return out
}

func copyCounts(m map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
