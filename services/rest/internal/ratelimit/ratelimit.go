// Package ratelimit decides when a Discord REST request may be sent so that
// Discord never has to answer 429: per-route buckets discovered from
// X-RateLimit-Bucket and split by major parameter, the per-bot global limit,
// the invalid-request guard, and the quirks (reactions, old-message deletes,
// webhook and interaction tokens).
//
// A Limiter queues requests per bucket in one process; a Store holds the
// counts, either in memory (one replica) or in Redis (several replicas
// sharing one state, atomically through Lua scripts).
//
// Usage, per request:
//
//	r := ratelimit.ParseRoute(method, path, time.Now())
//	if err := lim.Wait(ctx, bot, r, 0); err != nil { ... }
//	resp := send()
//	verdict, err := lim.Observe(ctx, bot, r, resp.StatusCode, resp.Header, body)
package ratelimit
