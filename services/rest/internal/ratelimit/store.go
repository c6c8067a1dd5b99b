package ratelimit

import (
	"context"
	"time"
)

// Reason says why a request may not be sent yet (or at all).
type Reason string

// Reasons returned in Grant.Reason.
const (
	// ReasonNone: the request may be sent now.
	ReasonNone Reason = ""
	// ReasonBucket: the route's bucket is empty until its reset.
	ReasonBucket Reason = "bucket"
	// ReasonProbe: the bucket's limits are unknown and one request is out
	// finding them; the others wait for its answer.
	ReasonProbe Reason = "probe"
	// ReasonGlobal: the bot's global limit is used up.
	ReasonGlobal Reason = "global"
	// ReasonInvalid (refusal): the invalid-request guard is tripped.
	ReasonInvalid Reason = "invalid_requests"
	// ReasonBadWebhook (refusal): this webhook or interaction token was
	// rejected by Discord; sending again would only add invalid requests.
	ReasonBadWebhook Reason = "bad_webhook_token"
	// ReasonBadToken (refusal): Discord rejected this bot token.
	ReasonBadToken Reason = "bad_bot_token"
)

// Acquire asks for permission to send one request.
type Acquire struct {
	// Bot identifies the token's limits (a hash or a configured name, never
	// the token itself).
	Bot string
	// Route is the request's ratelimit identity.
	Route Route
	// Global is true when the request counts toward the bot's global limit.
	Global bool
	// GlobalLimit requests per GlobalWindow are allowed for the bot.
	GlobalLimit  int
	GlobalWindow time.Duration
	// InvalidLimit invalid responses per InvalidWindow (across every bot:
	// Discord counts them per IP) trip the guard; 0 disables it.
	InvalidLimit  int64
	InvalidWindow time.Duration
	// ProbeTTL bounds how long a request discovering an unknown bucket
	// holds it before another may try, and how long a request without an
	// answer holds its global slot.
	ProbeTTL time.Duration
}

// Grant is a store's answer to Acquire.
type Grant struct {
	// Wait is how long to wait before asking again; 0 with no Refused
	// reason means the request was counted and may be sent now.
	Wait time.Duration
	// Reason says what the wait or refusal is about.
	Reason Reason
	// Refused is true when the request must not be sent at all (Reason
	// says why). Wait is then how long the refusal will last, if known.
	Refused bool
}

// Observation is what one response taught about the limits.
type Observation struct {
	Bot   string
	Route Route
	// Status is the HTTP status; 0 when no response arrived (network
	// error), which only releases a probe.
	Status int
	// Hash is X-RateLimit-Bucket, when present.
	Hash string
	// HasLimit is true when the X-RateLimit-Limit/Remaining/Reset headers
	// were present and parsed.
	HasLimit  bool
	Limit     int
	Remaining int
	// ResetID is X-RateLimit-Reset in milliseconds: it names the server's
	// window so that late answers from an older window are not mistaken
	// for the current one.
	ResetID int64
	// ResetAfter is X-RateLimit-Reset-After plus the safety margin.
	ResetAfter time.Duration
	// RetryAfter is the 429's retry_after plus the safety margin.
	RetryAfter time.Duration
	// Scope is X-RateLimit-Scope of a 429 ("user", "shared", "global").
	Scope string
	// Global429 is true for a 429 from the global limit.
	Global429 bool
	// Invalid is true when Discord counts the response toward the
	// invalid-request limit (401, 403, and 429 unless shared).
	Invalid       bool
	InvalidWindow time.Duration
	// Global is true when the request took a global slot; its slot is
	// then held until GlobalWindow after this answer. Discord may have
	// counted the request at any time up to its answer, so the slot cannot
	// be released earlier without risking two requests in one of its
	// windows past the limit.
	Global       bool
	GlobalWindow time.Duration
	// BadWebhook marks the route's webhook or interaction token as
	// rejected for BadTTL; BadToken does the same for the bot.
	BadWebhook bool
	BadToken   bool
	BadTTL     time.Duration
}

// Store holds ratelimit state: in one process (NewMemoryStore) or shared by
// several replicas (NewRedisStore). Both make Acquire atomic: the bucket
// slot and the global slot are taken together or not at all.
type Store interface {
	// Acquire takes one slot in the route's bucket and, when a.Global, one
	// in the bot's global limit, or says how long to wait.
	Acquire(ctx context.Context, a Acquire) (Grant, error)
	// Observe records a response (and always releases a probe).
	Observe(ctx context.Context, o Observation) error
	// Stats reports the store's size.
	Stats(ctx context.Context) (StoreStats, error)
}

// StoreStats is the size of a store.
type StoreStats struct {
	// Buckets is the number of live buckets.
	Buckets int
	// Invalid is the number of invalid responses counted in the current
	// window.
	Invalid int64
}
