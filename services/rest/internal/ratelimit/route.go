package ratelimit

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

// discordEpochMS is the first millisecond of 2015, the zero of snowflake timestamps.
const discordEpochMS = 1420070400000

// oldMessageAge is the age past which deleting a message uses its own bucket.
const oldMessageAge = 14 * 24 * time.Hour

// Route is the ratelimit identity of one request, derived from its method and path only.
type Route struct {
	// Key names the route with every id replaced by a placeholder, e.g.
	// "POST /channels/{major}/messages". Requests with the same Key share a
	// bucket hash once Discord has told us one.
	Key string
	// Major is the top-level resource ("channels:123", "guilds:456",
	// "webhooks:789:<token hash>"), which splits a bucket hash into separate
	// limits. Empty for routes without one.
	Major string
	// Exempt is true for routes outside the per-bot global limit: interaction
	// callbacks and webhook-token routes.
	Exempt bool
	// WebhookToken is true when the route is authenticated by a webhook or
	// interaction token in the path rather than the bot token.
	WebhookToken bool
}

// maxLiteralSegment is the longest path segment kept literally in a route
// key. Longer ones are parameters Kubecord does not know about (codes,
// tokens), replaced so that route keys stay few and secrets never land in one.
const maxLiteralSegment = 32

// HashSecret returns a short, stable, one-way identifier for a secret such as a
// webhook token, safe to store and to use in keys.
func HashSecret(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:8])
}

// StripVersion splits "/api/v10/channels/1" into "/channels/1" and 10. A path
// without a version (Discord then uses v6) returns version 0. ok is false when
// the path is not under /api.
func StripVersion(path string) (rest string, version int, ok bool) {
	const prefix = "/api"
	if path != prefix && !strings.HasPrefix(path, prefix+"/") {
		return "", 0, false
	}
	rest = path[len(prefix):]
	if len(rest) > 2 && rest[1] == 'v' && rest[2] >= '0' && rest[2] <= '9' {
		end := strings.IndexByte(rest[1:], '/')
		seg := rest[2:]
		if end >= 0 {
			seg = rest[2 : end+1]
		}
		v, err := strconv.Atoi(seg)
		if err == nil {
			version = v
			if end >= 0 {
				rest = rest[end+1:]
			} else {
				rest = "/"
			}
		}
	}
	if rest == "" {
		rest = "/"
	}
	return rest, version, true
}

// ParseRoute derives the ratelimit identity of a request for path (without
// the /api/vN prefix and without the query). now decides the old-message
// quirk. Any path is accepted: unknown routes get a key from their shape.
func ParseRoute(method, path string, now time.Time) Route {
	method = strings.ToUpper(method)
	segs := strings.Split(strings.Trim(path, "/"), "/")
	var r Route
	var b strings.Builder
	b.Grow(len(path) + len(method) + 8)
	b.WriteString(method)
	b.WriteByte(' ')
	i := 0
	if len(segs) >= 2 {
		switch segs[0] {
		case "channels", "guilds":
			r.Major = segs[0] + ":" + segs[1]
			b.WriteString("/" + segs[0] + "/{major}")
			i = 2
		case "webhooks":
			r.Major = "webhooks:" + segs[1]
			b.WriteString("/webhooks/{major}")
			i = 2
			if len(segs) >= 3 {
				r.Major += ":" + HashSecret(segs[2])
				r.Exempt, r.WebhookToken = true, true
				b.WriteString("/{token}")
				i = 3
			}
		case "interactions":
			if len(segs) >= 3 {
				r.Major = "interactions:" + segs[1] + ":" + HashSecret(segs[2])
				r.Exempt, r.WebhookToken = true, true
				b.WriteString("/interactions/{major}/{token}")
				i = 3
			}
		}
	}
	for ; i < len(segs); i++ {
		s := segs[i]
		prev := ""
		if i > 0 {
			prev = segs[i-1]
		}
		switch {
		case s == "reactions" && i == 4 && segs[0] == "channels" && segs[2] == "messages":
			// Every reaction route of a channel shares one tight limit
			// whatever the method, emoji or user: one key for all, so the
			// first use of a second reaction route cannot overrun it.
			r.Key = "* /channels/{major}/messages/{id}/reactions/*"
			return r
		case prev == "invites" || prev == "templates":
			b.WriteString("/{code}")
		case isDigits(s) && s != "":
			b.WriteString("/{id}")
		case len(s) > maxLiteralSegment:
			b.WriteString("/{param}")
		default:
			b.WriteByte('/')
			b.WriteString(s)
		}
	}
	// Deleting a message older than 14 days has its own, slower bucket.
	if method == "DELETE" && len(segs) == 4 && segs[0] == "channels" && segs[2] == "messages" {
		if id, err := strconv.ParseUint(segs[3], 10, 64); err == nil {
			created := time.UnixMilli(int64(id>>22) + discordEpochMS)
			if now.Sub(created) > oldMessageAge {
				b.WriteString(" (old)")
			}
		}
	}
	r.Key = b.String()
	return r
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
