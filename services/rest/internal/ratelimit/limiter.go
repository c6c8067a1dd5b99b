package ratelimit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Config tunes a Limiter. Zero values take Discord's real values (or safe
// defaults for Kubecord's own knobs).
type Config struct {
	// GlobalLimit requests per GlobalWindow per bot (Discord: 50 per second).
	GlobalLimit  int
	GlobalWindow time.Duration
	// InvalidLimit invalid responses (401, 403, non-shared 429) per
	// InvalidWindow make the limiter refuse new requests (Discord bans the
	// IP at 10,000 per 10 minutes; the default 5,000 stays far below).
	// Negative disables the guard.
	InvalidLimit  int64
	InvalidWindow time.Duration
	// Margin is added to every reset and retry_after: Discord rounds them
	// to the millisecond, and sending a hair early is a 429.
	Margin time.Duration
	// ProbeTTL bounds how long the first request of an unknown bucket
	// holds the others back if it never answers.
	ProbeTTL time.Duration
	// MaxQueue is the most requests waiting on one bucket in this
	// process; more are refused with ErrQueueFull.
	MaxQueue int
	// BadTTL is how long a rejected webhook token or bot token is refused
	// locally before Kubecord tries it again.
	BadTTL time.Duration
	// MaxPoll caps a wait whose end another replica may bring forward
	// (an unknown bucket being probed elsewhere).
	MaxPoll time.Duration
}

func (c Config) withDefaults() Config {
	if c.GlobalLimit <= 0 {
		c.GlobalLimit = 50
	}
	if c.GlobalWindow <= 0 {
		c.GlobalWindow = time.Second
	}
	if c.InvalidLimit == 0 {
		c.InvalidLimit = 5000
	}
	if c.InvalidWindow <= 0 {
		c.InvalidWindow = 10 * time.Minute
	}
	if c.Margin <= 0 {
		c.Margin = 10 * time.Millisecond
	}
	if c.ProbeTTL <= 0 {
		c.ProbeTTL = 10 * time.Second
	}
	if c.MaxQueue <= 0 {
		c.MaxQueue = 1000
	}
	if c.BadTTL <= 0 {
		c.BadTTL = time.Hour
	}
	if c.MaxPoll <= 0 {
		c.MaxPoll = 25 * time.Millisecond
	}
	return c
}

// ErrQueueFull is returned when too many requests already wait on a bucket.
var ErrQueueFull = errors.New("too many requests queued for this ratelimit bucket")

// RefusedError says a request was not sent because Kubecord knows it
// would fail and count against the bot.
type RefusedError struct {
	Reason Reason
	// RetryAfter is how long the refusal lasts, when known.
	RetryAfter time.Duration
}

func (e *RefusedError) Error() string {
	switch e.Reason {
	case ReasonInvalid:
		return fmt.Sprintf("refused: too many invalid (401/403/429) responses in the window; Kubecord stops before Discord bans the IP; retry in %s", e.RetryAfter.Round(time.Millisecond))
	case ReasonBadWebhook:
		return fmt.Sprintf("refused: Discord rejected this webhook or interaction token (401 or unknown webhook); fix the token, it is refused locally for %s", e.RetryAfter.Round(time.Second))
	case ReasonBadToken:
		return fmt.Sprintf("refused: Discord rejected this bot token (401); fix the token, it is refused locally for %s", e.RetryAfter.Round(time.Second))
	}
	return "refused: " + string(e.Reason)
}

// DeadlineError says the request's deadline ends before its turn comes.
type DeadlineError struct {
	Reason Reason
	Wait   time.Duration
	Left   time.Duration
}

func (e *DeadlineError) Error() string {
	return fmt.Sprintf("deadline too short: the %s limit frees a slot in %s but only %s are left", e.Reason, e.Wait.Round(time.Millisecond), e.Left.Round(time.Millisecond))
}

// Limiter decides when each request may go out. It is safe for concurrent
// use; several Limiters (replicas) may share one Store.
type Limiter struct {
	store Store
	cfg   Config

	mu     sync.Mutex
	queues map[string]*queue
	// gwake holds, per bot, a channel closed by the next answer: heads
	// waiting for a global slot held by requests in flight wake on it
	// instead of polling the store.
	gwake map[string]chan struct{}
}

func (l *Limiter) globalWake(bot string) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	ch := l.gwake[bot]
	if ch == nil {
		ch = make(chan struct{})
		l.gwake[bot] = ch
	}
	return ch
}

// queue serialises the requests of one bucket in this process, so that
// only its head asks the store and the others wait in order.
type queue struct {
	head    chan struct{} // holds a token while someone is the head
	notify  chan struct{} // an answer arrived for this route
	waiting int           // guarded by Limiter.mu
}

// New returns a Limiter over store.
func New(store Store, cfg Config) *Limiter {
	return &Limiter{store: store, cfg: cfg.withDefaults(), queues: map[string]*queue{}, gwake: map[string]chan struct{}{}}
}

// Config returns the effective configuration.
func (l *Limiter) Config() Config { return l.cfg }

// Store returns the limiter's store.
func (l *Limiter) Store() Store { return l.store }

func queueKey(bot string, r Route) string { return bot + "\x00" + r.Key + "\x00" + r.Major }

func (l *Limiter) enter(key string) (*queue, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	q := l.queues[key]
	if q == nil {
		q = &queue{head: make(chan struct{}, 1), notify: make(chan struct{}, 1)}
		l.queues[key] = q
	}
	if q.waiting >= l.cfg.MaxQueue {
		return nil, ErrQueueFull
	}
	q.waiting++
	return q, nil
}

func (l *Limiter) leave(key string, q *queue) {
	l.mu.Lock()
	defer l.mu.Unlock()
	q.waiting--
	if q.waiting == 0 {
		delete(l.queues, key)
	}
}

// QueueDepth returns the number of requests waiting in this process.
func (l *Limiter) QueueDepth() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, q := range l.queues {
		n += q.waiting
	}
	return n
}

// Wait blocks until a request of bot on route may be sent, and counts it.
// globalLimit overrides the configured global limit when positive. It
// returns ctx's error, ErrQueueFull, a *RefusedError, a *DeadlineError, or
// a store error.
func (l *Limiter) Wait(ctx context.Context, bot string, r Route, globalLimit int) error {
	_, err := l.WaitGrant(ctx, bot, r, globalLimit)
	return err
}

// WaitGrant is Wait that also returns a time just before the store
// granted the request.
func (l *Limiter) WaitGrant(ctx context.Context, bot string, r Route, globalLimit int) (time.Time, error) {
	key := queueKey(bot, r)
	q, err := l.enter(key)
	if err != nil {
		return time.Time{}, err
	}
	defer l.leave(key, q)
	select {
	case q.head <- struct{}{}:
	case <-ctx.Done():
		return time.Time{}, ctx.Err()
	}
	defer func() { <-q.head }()
	if globalLimit <= 0 {
		globalLimit = l.cfg.GlobalLimit
	}
	a := Acquire{
		Bot: bot, Route: r, Global: !r.Exempt,
		GlobalLimit: globalLimit, GlobalWindow: l.cfg.GlobalWindow + l.cfg.Margin,
		InvalidLimit: max(l.cfg.InvalidLimit, 0), InvalidWindow: l.cfg.InvalidWindow,
		ProbeTTL: l.cfg.ProbeTTL,
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		asked := time.Now()
		g, err := l.store.Acquire(ctx, a)
		if err != nil {
			return time.Time{}, fmt.Errorf("asking the ratelimit store: %w", err)
		}
		if g.Refused {
			return time.Time{}, &RefusedError{Reason: g.Reason, RetryAfter: g.Wait}
		}
		if g.Wait <= 0 {
			return asked, nil
		}
		wait := g.Wait
		if dl, ok := ctx.Deadline(); ok && g.Reason != ReasonProbe {
			if left := time.Until(dl); left < wait {
				return time.Time{}, &DeadlineError{Reason: g.Reason, Wait: wait, Left: left}
			}
		}
		if g.Reason == ReasonProbe && wait > l.cfg.MaxPoll {
			wait = l.cfg.MaxPoll
		}
		var wake <-chan struct{}
		if g.Reason == ReasonGlobal {
			wake = l.globalWake(bot)
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case <-timer.C:
		case <-q.notify:
			timer.Stop()
		case <-wake:
			timer.Stop()
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}

// Verdict is what the limiter concluded from a response.
type Verdict struct {
	// RateLimited is true for a 429; Scope and RetryAfter describe it.
	RateLimited bool
	Scope       string
	RetryAfter  time.Duration
	// Invalid is true when Discord counts the response toward the
	// invalid-request limit.
	Invalid bool
}

// Observe records a response to a request Wait let through. status 0 means
// no response (network error). body is needed only for 401, 404 and 429.
func (l *Limiter) Observe(ctx context.Context, bot string, r Route, status int, h http.Header, body []byte) (Verdict, error) {
	o := Observation{Bot: bot, Route: r, Status: status, InvalidWindow: l.cfg.InvalidWindow, BadTTL: l.cfg.BadTTL,
		Global: !r.Exempt, GlobalWindow: l.cfg.GlobalWindow + l.cfg.Margin}
	var v Verdict
	if status != 0 {
		parseHeaders(&o, h, l.cfg.Margin)
	}
	if status == http.StatusTooManyRequests {
		v.RateLimited = true
		var b struct {
			RetryAfter *float64 `json:"retry_after"`
			Global     bool     `json:"global"`
		}
		_ = json.Unmarshal(body, &b) // a 429 without a JSON body still has headers
		var ra float64
		if b.RetryAfter != nil && *b.RetryAfter >= 0 && !math.IsInf(*b.RetryAfter, 0) {
			ra = *b.RetryAfter
		} else if f, err := strconv.ParseFloat(hget(h, "Retry-After"), 64); err == nil && f >= 0 {
			ra = f
		} else {
			ra = o.ResetAfter.Seconds()
		}
		o.RetryAfter = secondsToDuration(ra) + l.cfg.Margin
		o.Scope = hget(h, "X-Ratelimit-Scope")
		o.Global429 = b.Global || hget(h, "X-Ratelimit-Global") == "true" || o.Scope == "global"
		if o.Global429 && o.Scope == "" {
			o.Scope = "global"
		}
		if o.Scope == "" {
			o.Scope = "user"
		}
		v.Scope, v.RetryAfter = o.Scope, o.RetryAfter
	}
	o.Invalid = status == http.StatusUnauthorized || status == http.StatusForbidden ||
		(status == http.StatusTooManyRequests && o.Scope != "shared")
	v.Invalid = o.Invalid
	switch {
	case r.WebhookToken && status == http.StatusUnauthorized:
		o.BadWebhook = true
	case r.WebhookToken && status == http.StatusNotFound:
		// Only "unknown webhook" and "unknown interaction" condemn the
		// token; a 404 for an unknown message under it does not.
		if c := errorCode(body); c == 10015 || c == 10062 {
			o.BadWebhook = true
		}
	case !r.WebhookToken && status == http.StatusUnauthorized && bot != "":
		o.BadToken = true
	}
	err := l.store.Observe(ctx, o)
	l.mu.Lock()
	if q := l.queues[queueKey(bot, r)]; q != nil {
		select {
		case q.notify <- struct{}{}:
		default:
		}
	}
	if ch := l.gwake[bot]; ch != nil && o.Global {
		close(ch)
		delete(l.gwake, bot)
	}
	l.mu.Unlock()
	if err != nil {
		return v, fmt.Errorf("recording a response in the ratelimit store: %w", err)
	}
	return v, nil
}

// hget reads a header by its canonical name without canonicalizing it
// again: this runs on every response.
func hget(h http.Header, canonical string) string {
	if v := h[canonical]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func errorCode(body []byte) int {
	var e struct {
		Code int `json:"code"`
	}
	if json.Unmarshal(body, &e) != nil {
		return 0
	}
	return e.Code
}

// maxWait bounds parsed durations so hostile headers cannot overflow.
const maxWait = 24 * time.Hour

func secondsToDuration(s float64) time.Duration {
	if s <= 0 || math.IsNaN(s) {
		return 0
	}
	if s > maxWait.Seconds() {
		return maxWait
	}
	return time.Duration(s * float64(time.Second))
}

// parseHeaders fills o from Discord's X-RateLimit-* headers. Missing or
// malformed headers leave HasLimit false: the route is then treated as
// having no bucket limit of its own.
func parseHeaders(o *Observation, h http.Header, margin time.Duration) {
	o.Hash = hget(h, "X-Ratelimit-Bucket")
	if len(o.Hash) > 128 {
		o.Hash = o.Hash[:128]
	}
	limit, err1 := strconv.Atoi(hget(h, "X-Ratelimit-Limit"))
	remaining, err2 := strconv.Atoi(hget(h, "X-Ratelimit-Remaining"))
	resetAfter, err3 := strconv.ParseFloat(hget(h, "X-Ratelimit-Reset-After"), 64)
	if err1 != nil || err2 != nil || err3 != nil || limit <= 0 || remaining < 0 || math.IsNaN(resetAfter) {
		return
	}
	o.HasLimit = true
	o.Limit = limit
	o.Remaining = min(remaining, limit)
	o.ResetAfter = secondsToDuration(resetAfter) + margin
	if reset, err := strconv.ParseFloat(hget(h, "X-Ratelimit-Reset"), 64); err == nil && reset > 0 && reset < 1e12 {
		o.ResetID = int64(math.Round(reset * 1000))
	} else {
		// Without an absolute reset, name the window by its end as seen
		// here, to the 100 ms, so answers of one window agree.
		o.ResetID = time.Now().Add(secondsToDuration(resetAfter)).UnixMilli() / 100 * 100
	}
}
