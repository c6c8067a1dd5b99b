package discordsim

import (
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The REST part of the simulator, in brief:
//
//   - rest_routes.go is the route table (every route is one documented in
//     routes.tsv); rest_router.go matches paths to it; anything else is
//     Discord's 404 {"message": "404: Not Found", "code": 0}.
//   - Every request goes: Cloudflare ban check, injected faults
//     (rest_faults.go), API version, route, Authorization (bot routes) or the
//     token in the path (webhook and interaction routes), the per-bot global
//     limit, the route's bucket (ratelimit.go, keyed by bot, bucket and major
//     parameter), then the handler (rest_messages.go, rest_guilds.go,
//     rest_webhooks.go, rest_commands.go, rest_threads.go), which may apply
//     sublimits and dispatches the gateway event of what it changed.
//   - Every answer is accounted (rest_stats.go); 401, 403 and non-shared 429
//     answers count towards the invalid request limit of the client's IP.

// RESTConfig holds the REST API's limits. Zero values take Discord's real values.
type RESTConfig struct {
	// GlobalLimit is the number of requests per second one bot may make across
	// all routes (Discord: 50). Interaction callbacks and webhook-token routes
	// are exempt, as on Discord.
	GlobalLimit int
	// GlobalWindow is the window of GlobalLimit (Discord: one second).
	GlobalWindow time.Duration
	// InvalidLimit is the number of 401, 403 and 429 responses (429s of scope
	// "shared" excluded) one IP may get within InvalidWindow; one more and the
	// IP is banned until the window ends (Discord: 10,000 per 10 minutes).
	InvalidLimit int
	// InvalidWindow is the window of InvalidLimit (Discord: 10 minutes).
	InvalidWindow time.Duration
	// Buckets overrides the limit and window of named buckets of bucketTable
	// (see ratelimit.go), for example {"message-create": {Limit: 2, Window:
	// 100 * time.Millisecond}} to make a test fast.
	Buckets map[string]BucketLimit
	// MaxMessagesPerChannel bounds the history kept per channel; older
	// messages are forgotten (default 10,000) so long load runs stay bounded.
	MaxMessagesPerChannel int
	// MaxBodyBytes bounds a request body (Discord: 25 MiB with files).
	MaxBodyBytes int64
	// InteractionResponseWindow is how long after creation an interaction can
	// get its initial callback (Discord: 3 s).
	InteractionResponseWindow time.Duration
	// InteractionTokenLifetime is how long an interaction token works for
	// followups and @original edits (Discord: 15 minutes).
	InteractionTokenLifetime time.Duration
	// Now replaces the clock of ratelimits and ids; nil means time.Now.
	Now func() time.Time
}

// BucketLimit overrides one ratelimit bucket.
type BucketLimit struct {
	Limit  int
	Window time.Duration
}

// withDefaults fills zero fields with Discord's values.
func (c RESTConfig) withDefaults() RESTConfig {
	if c.GlobalLimit <= 0 {
		c.GlobalLimit = 50
	}
	if c.GlobalWindow <= 0 {
		c.GlobalWindow = time.Second
	}
	if c.InvalidLimit <= 0 {
		c.InvalidLimit = 10000
	}
	if c.InvalidWindow <= 0 {
		c.InvalidWindow = 10 * time.Minute
	}
	if c.MaxMessagesPerChannel <= 0 {
		c.MaxMessagesPerChannel = 10000
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 25 << 20
	}
	if c.InteractionResponseWindow <= 0 {
		c.InteractionResponseWindow = 3 * time.Second
	}
	if c.InteractionTokenLifetime <= 0 {
		c.InteractionTokenLifetime = 15 * time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// restState is the REST API's mutable state: ratelimit counters, the invalid
// request tracker, faults, accounting and the stores of messages, webhooks and
// interactions.
type restState struct {
	s        *Server
	cfg      RESTConfig
	log      *slog.Logger
	now      func() time.Time
	lim      *limiter
	globalID bucketID
	// slowmodeID and sharedWriteID are the channel-level limits of message
	// creation (see channelWriteLimits).
	slowmodeID    bucketID
	sharedWriteID bucketID
	invalid       *invalidTracker
	routes        *router
	faults        *faultList
	stats         *restStats
	msgs          *messageStore
	hooks         *webhookStore
	inters        *interactionStore
	bans          banStore
	commands      commandStore
	dmMu          sync.Mutex
	dms           map[[2]Snowflake]Snowflake // (bot, user) -> DM channel
}

// newRESTState builds the REST state for s.
func newRESTState(s *Server) *restState {
	cfg := s.cfg.REST.withDefaults()
	log := s.log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rs := &restState{
		s:       s,
		cfg:     cfg,
		log:     log.With("component", "rest"),
		now:     cfg.Now,
		invalid: newInvalidTracker(cfg.Now, cfg.InvalidLimit, cfg.InvalidWindow),
		faults:  &faultList{},
		msgs:    newMessageStore(cfg.MaxMessagesPerChannel),
		hooks:   newWebhookStore(),
		inters:  newInteractionStore(),
		dms:     make(map[[2]Snowflake]Snowflake),
	}
	rs.lim = newLimiter(cfg.Now, bucketTable, cfg.Buckets)
	rs.globalID = rs.lim.add(bucketSpec{Name: "global", Limit: cfg.GlobalLimit, Window: cfg.GlobalWindow})
	rs.slowmodeID = rs.lim.add(bucketSpec{Name: "slowmode", Limit: 1, Window: time.Second})
	rs.sharedWriteID = rs.lim.bucket("channel-write-shared")
	rs.routes = newRouter(rs.lim, restRoutes())
	rs.stats = newRESTStats(rs.routes)
	if s.mux != nil {
		// The REST admin endpoints (faults, stats) live beside the gateway's
		// /_sim endpoints. Mounted here because Start builds the REST state
		// exactly once, before it serves.
		s.mux.HandleFunc("/_sim/rest/", rs.serveAdmin)
	}
	return rs
}

// restHandler serves /api/... (every API version Discord accepts) and, when
// mounted there, the REST admin endpoints under /_sim/rest/.
func (s *Server) restHandler() http.Handler {
	rs := s.rest
	if rs == nil {
		// Start normally builds the state first; a handler built without
		// Start (a unit test of the REST part) gets its own.
		rs = newRESTState(s)
		s.rest = rs
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/_sim/rest/") {
			rs.serveAdmin(w, r)
			return
		}
		rs.serve(w, r)
	})
}

// apiError is Discord's JSON error body.
type apiError struct {
	Code    int        `json:"code"`
	Message string     `json:"message"`
	Errors  formErrors `json:"errors,omitempty"`
}

// formErrors is the nested "errors" object of a 50035 Invalid Form Body: keys
// and array indices lead down to {"_errors": [...]}.
type formErrors map[string]any

// fieldError is one leaf error.
type fieldError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// add records an error at path (keys, or decimal indices for arrays). A nil
// formErrors is allocated on the first error, so validating a good body
// allocates nothing.
func (f *formErrors) add(code, message string, path ...string) {
	if *f == nil {
		*f = formErrors{}
	}
	cur := map[string]any(*f)
	for _, p := range path {
		next, ok := cur[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			cur[p] = next
		}
		cur = next
	}
	list, _ := cur["_errors"].([]fieldError)
	cur["_errors"] = append(list, fieldError{Code: code, Message: message})
}

// reqCtx is one request on its way through the REST API.
type reqCtx struct {
	rs     *restState
	w      http.ResponseWriter
	r      *http.Request
	route  *route
	bot    *Bot
	ip     string
	params [maxParams]string
	ids    [maxParams]Snowflake
	owner  uint64
	major  uint64
	token  string
	status int
	scope  string // set on 429s
	// retryAfter is the retry_after of a 429 answered, in seconds.
	retryAfter float64
	// faulted is set when an injected fault answered the request.
	faulted bool
}

// param returns the id bound to the path parameter named name (as written in
// the route table, e.g. "channel.id").
func (c *reqCtx) id(name string) Snowflake {
	for i, n := range c.route.params {
		if n == name {
			return c.ids[i]
		}
	}
	return 0
}

// str returns the raw path parameter named name.
func (c *reqCtx) str(name string) string {
	for i, n := range c.route.params {
		if n == name {
			return c.params[i]
		}
	}
	return ""
}

// Pre-split header keys, already canonical, so setting them costs no
// canonicalisation on the hot path.
const (
	hdrLimit      = "X-Ratelimit-Limit"
	hdrRemaining  = "X-Ratelimit-Remaining"
	hdrReset      = "X-Ratelimit-Reset"
	hdrResetAfter = "X-Ratelimit-Reset-After"
	hdrBucket     = "X-Ratelimit-Bucket"
	hdrScope      = "X-Ratelimit-Scope"
	hdrGlobal     = "X-Ratelimit-Global"
	hdrRetryAfter = "Retry-After"
	hdrCT         = "Content-Type"
)

var jsonCT = []string{"application/json"}

// json writes v as a JSON response with status.
func (c *reqCtx) json(status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		c.rs.log.Error("encoding response", "route", c.routeName(), "err", err)
		c.status = http.StatusInternalServerError
		c.w.Header()[hdrCT] = jsonCT
		c.w.WriteHeader(c.status)
		_, _ = c.w.Write([]byte(`{"message": "500: Internal Server Error", "code": 0}`))
		return
	}
	c.raw(status, b)
}

// raw writes an already encoded JSON body.
func (c *reqCtx) raw(status int, b []byte) {
	c.status = status
	c.w.Header()[hdrCT] = jsonCT
	c.w.WriteHeader(status)
	_, _ = c.w.Write(b)
}

// noContent answers 204.
func (c *reqCtx) noContent() {
	c.status = http.StatusNoContent
	c.w.WriteHeader(http.StatusNoContent)
}

// fail writes a Discord error body.
func (c *reqCtx) fail(status, code int, message string) {
	c.json(status, apiError{Code: code, Message: message})
}

// invalidForm writes a 50035 Invalid Form Body with its nested errors.
func (c *reqCtx) invalidForm(errs formErrors) {
	c.json(http.StatusBadRequest, apiError{Code: 50035, Message: "Invalid Form Body", Errors: errs})
}

// unauthorized answers 401 as Discord does for a missing or wrong token.
func (c *reqCtx) unauthorized() {
	c.raw(http.StatusUnauthorized, []byte(`{"message": "401: Unauthorized", "code": 0}`))
}

// notFound answers Discord's 404 for an unknown route.
func (c *reqCtx) notFound() {
	c.raw(http.StatusNotFound, []byte(`{"message": "404: Not Found", "code": 0}`))
}

// Resource errors.
func (c *reqCtx) unknownChannel() { c.fail(http.StatusNotFound, 10003, "Unknown Channel") }
func (c *reqCtx) unknownGuild()   { c.fail(http.StatusNotFound, 10004, "Unknown Guild") }
func (c *reqCtx) unknownMember()  { c.fail(http.StatusNotFound, 10007, "Unknown Member") }
func (c *reqCtx) unknownMessage() { c.fail(http.StatusNotFound, 10008, "Unknown Message") }
func (c *reqCtx) unknownRole()    { c.fail(http.StatusNotFound, 10011, "Unknown Role") }
func (c *reqCtx) unknownUser()    { c.fail(http.StatusNotFound, 10013, "Unknown User") }
func (c *reqCtx) unknownEmoji()   { c.fail(http.StatusBadRequest, 10014, "Unknown Emoji") }
func (c *reqCtx) unknownWebhook() { c.fail(http.StatusNotFound, 10015, "Unknown Webhook") }
func (c *reqCtx) unknownBan()     { c.fail(http.StatusNotFound, 10026, "Unknown Ban") }

func (c *reqCtx) routeName() string {
	if c.route == nil {
		return "unmatched"
	}
	return c.route.name
}

// clientIP is the host part of the remote address: the invalid request limit
// is per IP, as Cloudflare's is.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// serve is the REST entry point.
func (rs *restState) serve(w http.ResponseWriter, r *http.Request) {
	c := &reqCtx{rs: rs, w: w, r: r, ip: clientIP(r)}
	defer rs.finish(c)

	if banned, until := rs.invalid.isBanned(c.ip); banned {
		rs.writeBan(c, until)
		return
	}
	if rs.faults.apply(rs, c) {
		return
	}

	path, ok := rs.stripVersion(c)
	if !ok {
		return
	}
	rt, allowed := rs.routes.match(r.Method, path, c)
	if rt == nil {
		if allowed {
			c.raw(http.StatusMethodNotAllowed, []byte(`{"message": "405: Method Not Allowed", "code": 0}`))
			return
		}
		c.notFound()
		return
	}
	c.route = rt
	if !rs.parseIDs(c) {
		return
	}
	if !rs.authenticate(c) {
		return
	}
	if !rs.limit(c) {
		return
	}
	rt.handle(c)
}

// stripVersion removes "/api" and the optional "/v{N}" prefix. Versions 3-5
// are discontinued and answer 400; a missing version means v6.
func (rs *restState) stripVersion(c *reqCtx) (string, bool) {
	p := c.r.URL.EscapedPath()
	rest, ok := strings.CutPrefix(p, "/api")
	if !ok || (rest != "" && rest[0] != '/') {
		c.notFound()
		return "", false
	}
	if strings.HasPrefix(rest, "/v") {
		end := strings.IndexByte(rest[2:], '/')
		var num string
		if end < 0 {
			num, rest = rest[2:], ""
		} else {
			num, rest = rest[2:2+end], rest[2+end:]
		}
		v, err := strconv.Atoi(num)
		if err != nil {
			c.notFound()
			return "", false
		}
		if v < 6 || v > 10 {
			c.fail(http.StatusBadRequest, 50041, "Invalid API version provided.")
			return "", false
		}
	}
	return rest, true
}

// parseIDs turns the id parameters of the path into snowflakes; a value that
// is not one gets Discord's 50035 with the parameter's name.
func (rs *restState) parseIDs(c *reqCtx) bool {
	for i, name := range c.route.params {
		if !strings.HasSuffix(name, ".id") || name == "emoji.id" {
			continue
		}
		v := c.params[i]
		if v == "@me" || v == "@original" {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			errs := formErrors{}
			errs.add("NUMBER_TYPE_COERCE", "Value \""+truncate(v, 64)+"\" is not snowflake.", strings.ReplaceAll(name, ".", "_"))
			c.invalidForm(errs)
			return false
		}
		c.ids[i] = Snowflake(n)
	}
	return true
}

// truncate bounds s for echoing it in an error message.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// authenticate checks the Authorization header of bot routes. Webhook and
// interaction routes carry their token in the path and are checked by their
// handlers; they have no bot owner for ratelimits.
func (rs *restState) authenticate(c *reqCtx) bool {
	h := c.r.Header.Get("Authorization")
	switch c.route.auth {
	case authToken:
		return true
	case authOptional:
		if h == "" {
			return true
		}
	case authBot:
	}
	tok, ok := strings.CutPrefix(h, "Bot ")
	if !ok || tok == "" {
		c.unauthorized()
		return false
	}
	b, ok := rs.s.botByToken(tok)
	if !ok {
		c.unauthorized()
		return false
	}
	c.bot = b
	c.owner = uint64(b.ID)
	return true
}

// limit applies the global limit and the route's bucket, writing the
// ratelimit headers (and the 429 when a limit is hit).
func (rs *restState) limit(c *reqCtx) bool {
	rt := c.route
	if !rt.noGlobal && c.bot != nil {
		d := rs.lim.takeN(limKey{owner: c.owner, bucket: rs.globalID}, rs.cfg.GlobalLimit, rs.cfg.GlobalWindow)
		if !d.ok {
			rs.writeGlobal429(c, d)
			return false
		}
	}
	if rt.major >= 0 {
		c.major = uint64(c.ids[rt.major])
		if c.route.auth == authToken {
			c.token = c.params[rt.major+1]
		}
	}
	d := rs.lim.take(limKey{owner: c.owner, bucket: rt.bucket, major: c.major, token: c.token})
	setBucketHeaders(c.w.Header(), d, rs.lim.hashes[rt.bucket])
	if !d.ok {
		rs.write429(c, d, "user", false)
		return false
	}
	return true
}

// sublimit takes one request from an extra bucket (a documented quirk such as
// the channel rename limit) for the request's owner and major parameter.
// It writes the 429 and returns false when the sublimit is exhausted.
func (c *reqCtx) sublimit(name string) bool {
	rs := c.rs
	id := rs.lim.bucket(name)
	d := rs.lim.take(limKey{owner: c.owner, bucket: id, major: c.major, token: c.token})
	if d.ok {
		return true
	}
	setBucketHeaders(c.w.Header(), d, rs.lim.hashes[id])
	rs.write429(c, d, "user", false)
	return false
}

// setBucketHeaders writes the X-RateLimit-* headers of a bucket decision.
func setBucketHeaders(h http.Header, d decision, hash string) {
	// One backing array for the five values: fewer allocations on the
	// path every request takes. Reset and Reset-After are rounded up to the
	// millisecond, so a client that waits exactly as long as told is never
	// early.
	v := [5]string{
		strconv.Itoa(d.limit),
		strconv.Itoa(d.remaining),
		formatMillis(ceilMillis(d.resetAt.UnixNano())),
		formatMillis(ceilMillis(int64(d.retryAfter))),
		hash,
	}
	h[hdrLimit] = v[0:1:1]
	h[hdrRemaining] = v[1:2:2]
	h[hdrReset] = v[2:3:3]
	h[hdrResetAfter] = v[3:4:4]
	h[hdrBucket] = v[4:5:5]
}

// ceilMillis converts nanoseconds to milliseconds, rounding up.
func ceilMillis(ns int64) int64 {
	if ns <= 0 {
		return 0
	}
	return (ns + 999_999) / 1_000_000
}

// formatMillis renders milliseconds as seconds with three decimals, as
// Discord's headers are, without floating point error.
func formatMillis(ms int64) string {
	b := make([]byte, 0, 24)
	b = strconv.AppendInt(b, ms/1000, 10)
	frac := ms % 1000
	b = append(b, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
	return string(b)
}

// rateLimitBody is the 429 body.
type rateLimitBody struct {
	Message    string  `json:"message"`
	RetryAfter float64 `json:"retry_after"`
	Global     bool    `json:"global"`
	Code       int     `json:"code,omitempty"`
}

// write429 answers a route (scope user or shared) 429.
func (rs *restState) write429(c *reqCtx, d decision, scope string, global bool) {
	h := c.w.Header()
	retry := d.retryAfter.Seconds()
	h[hdrScope] = []string{scope}
	h[hdrRetryAfter] = []string{retryAfterHeader(retry)}
	if global {
		h[hdrGlobal] = []string{"true"}
	}
	c.scope = scope
	c.retryAfter = roundMillis(retry)
	c.json(http.StatusTooManyRequests, rateLimitBody{
		Message:    "You are being rate limited.",
		RetryAfter: c.retryAfter,
		Global:     global,
	})
}

// writeCoded429 answers a 429 that carries a Discord error code (slowmode,
// shared channel write limit), with retry_after and the scope.
func (rs *restState) writeCoded429(c *reqCtx, d decision, scope string, code int, message string) {
	h := c.w.Header()
	retry := d.retryAfter.Seconds()
	h[hdrScope] = []string{scope}
	h[hdrRetryAfter] = []string{retryAfterHeader(retry)}
	c.scope = scope
	c.retryAfter = roundMillis(retry)
	c.json(http.StatusTooManyRequests, rateLimitBody{Message: message, RetryAfter: c.retryAfter, Code: code})
}

// writeGlobal429 answers a global 429: only Retry-After, X-RateLimit-Global and
// X-RateLimit-Scope, no bucket headers, as in Discord's example.
func (rs *restState) writeGlobal429(c *reqCtx, d decision) {
	rs.write429(c, d, "global", true)
}

// retryAfterHeader renders Retry-After in whole seconds, rounded up, as
// Discord's examples show (65 for 64.57); never 0 for a pending limit.
func retryAfterHeader(s float64) string {
	n := int64(s)
	if float64(n) < s {
		n++
	}
	if n < 1 {
		n = 1
	}
	return strconv.FormatInt(n, 10)
}

// roundMillis rounds seconds to milliseconds, the precision of retry_after.
func roundMillis(s float64) float64 {
	ms := int64(s*1000 + 0.999)
	if ms < 1 {
		ms = 1
	}
	return float64(ms) / 1000
}

// writeBan answers a banned IP the way Cloudflare does: a 403 that is not
// Discord JSON, so a client that expects JSON notices it is banned.
func (rs *restState) writeBan(c *reqCtx, until time.Time) {
	c.status = http.StatusForbidden
	c.scope = "ban"
	h := c.w.Header()
	h[hdrCT] = []string{"text/plain; charset=UTF-8"}
	h[hdrRetryAfter] = []string{retryAfterHeader(until.Sub(rs.now()).Seconds())}
	c.w.WriteHeader(http.StatusForbidden)
	_, _ = c.w.Write([]byte("error code: 1015\nYou are being blocked: this IP made too many invalid requests (401, 403, 429) to the Discord API.\n"))
}

// finish accounts for a request once it has been answered.
func (rs *restState) finish(c *reqCtx) {
	invalid := false
	switch c.status {
	case http.StatusUnauthorized, http.StatusForbidden:
		invalid = c.scope != "ban"
	case http.StatusTooManyRequests:
		invalid = c.scope != "shared"
	}
	started := false
	if invalid {
		started = rs.invalid.record(c.ip)
		if started {
			rs.log.Warn("client IP banned for too many invalid requests", "ip", c.ip, "limit", rs.cfg.InvalidLimit, "window", rs.cfg.InvalidWindow)
		}
	}
	rs.stats.record(c, invalid, started)
}
