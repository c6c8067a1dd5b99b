package discordsim

import (
	"fmt"
	"net/url"
	"strings"
)

// authKind says how a route authenticates.
type authKind uint8

const (
	// authBot routes need "Authorization: Bot <token>".
	authBot authKind = iota
	// authToken routes carry a webhook or interaction token in the path,
	// right after the id that is their major parameter.
	authToken
	// authOptional routes (GET /gateway) need no Authorization; a bot's
	// valid header still counts the request against that bot.
	authOptional
)

// routeDef is one row of the route table: the route as documented, its
// bucket and its handler.
type routeDef struct {
	method string
	path   string // documented form, e.g. /channels/{channel.id}/messages
	bucket string // bucketTable name
	auth   authKind
	// noGlobal exempts the route from the per-bot global limit (interaction
	// callbacks and webhook-token routes, as on Discord).
	noGlobal bool
	handle   func(*reqCtx)
}

// maxParams is the most path parameters a simulated route has.
const maxParams = 5

// maxSegments bounds the path segments the router looks at.
const maxSegments = 8

// route is a compiled routeDef.
type route struct {
	name     string
	method   string
	segs     []string // literal segment, or "" for a parameter
	params   []string // parameter names in path order
	literals int
	bucket   bucketID
	// major is the index in params of the major parameter (channel, guild,
	// webhook or interaction id), or -1.
	major    int
	auth     authKind
	noGlobal bool
	handle   func(*reqCtx)
}

// router matches paths to routes without allocating for the common case.
type router struct {
	byLen [maxSegments + 1][]*route
	all   []*route
}

// majorParams are the parameters Discord treats as major (the top-level
// resource of a route); the first one in a path is the route's major
// parameter. Interaction callbacks are limited per interaction, so its id
// acts as one.
var majorParams = map[string]bool{
	"channel.id": true, "guild.id": true, "webhook.id": true, "interaction.id": true,
}

// newRouter compiles defs; it panics on a malformed table, which every test
// would catch.
func newRouter(lim *limiter, defs []routeDef) *router {
	rt := &router{}
	for _, d := range defs {
		r := &route{
			name: d.method + " " + d.path, method: d.method, major: -1,
			auth: d.auth, noGlobal: d.noGlobal, handle: d.handle,
			bucket: lim.bucket(d.bucket),
		}
		for _, seg := range strings.Split(strings.TrimPrefix(d.path, "/"), "/") {
			if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
				name := seg[1 : len(seg)-1]
				if r.major < 0 && majorParams[name] {
					r.major = len(r.params)
				}
				r.params = append(r.params, name)
				r.segs = append(r.segs, "")
				continue
			}
			r.segs = append(r.segs, seg)
			r.literals++
		}
		if len(r.segs) > maxSegments || len(r.params) > maxParams {
			panic(fmt.Sprintf("discordsim: route %s is too long for the router", r.name))
		}
		if d.auth == authToken && (r.major < 0 || r.major+1 >= len(r.params)) {
			panic(fmt.Sprintf("discordsim: token route %s needs an id and a token parameter", r.name))
		}
		rt.byLen[len(r.segs)] = append(rt.byLen[len(r.segs)], r)
		rt.all = append(rt.all, r)
	}
	return rt
}

// match finds the route for method and path (the escaped part after the
// version, so an encoded "/" inside an emoji stays in its segment; parameters
// are unescaped one by one),
// binding its parameters into c. When no route has that method but one has
// the path, it returns nil and allowed=true (a 405).
func (rt *router) match(method, path string, c *reqCtx) (*route, bool) {
	path = strings.TrimSuffix(strings.TrimPrefix(path, "/"), "/")
	var segs [maxSegments]string
	n := 0
	for path != "" {
		if n == maxSegments {
			return nil, false
		}
		i := strings.IndexByte(path, '/')
		if i < 0 {
			segs[n] = path
			path = ""
		} else {
			segs[n] = path[:i]
			path = path[i+1:]
		}
		n++
	}
	var best *route
	allowed := false
	for _, r := range rt.byLen[n] {
		if !r.matches(segs[:n]) {
			continue
		}
		if r.method != method {
			allowed = true
			continue
		}
		if best == nil || r.literals > best.literals {
			best = r
		}
	}
	if best == nil {
		return nil, allowed
	}
	p := 0
	for i, s := range best.segs {
		if s != "" {
			continue
		}
		v := segs[i]
		if strings.IndexByte(v, '%') >= 0 {
			u, err := url.PathUnescape(v)
			if err != nil {
				// Left undecoded; handlers reject it (10014 for emojis).
				u = "\x00" + v
			}
			v = u
		}
		c.params[p] = v
		p++
	}
	return best, false
}

// matches reports whether segs fit the route's literals.
func (r *route) matches(segs []string) bool {
	for i, s := range r.segs {
		if s != "" && s != segs[i] {
			return false
		}
		if s == "" && segs[i] == "" {
			return false
		}
	}
	return true
}
