package discordjson

import (
	"bytes"
	"fmt"

	discordv1 "github.com/kubecord/kubecord/gen/kubecord/discord/v1"
)

// RouteKind says what a routing key's ID identifies.
type RouteKind uint8

// Route kinds, from the most to the least preferred.
const (
	// RouteNone means the payload names no guild, channel or user.
	RouteNone RouteKind = iota
	// RouteGuild is a guild id.
	RouteGuild
	// RouteChannel is a channel id, used for events outside guilds (DMs).
	RouteChannel
	// RouteUser is a user id, for events tied to neither a guild nor a channel.
	RouteUser
)

// String returns the kind's lower-case name.
func (k RouteKind) String() string {
	switch k {
	case RouteGuild:
		return "guild"
	case RouteChannel:
		return "channel"
	case RouteUser:
		return "user"
	}
	return "none"
}

// Route is the routing key of an event: the guild it belongs to, else its channel, else its
// user. Events of one key are delivered in order to one worker.
type Route struct {
	Kind RouteKind
	ID   uint64
}

// Proto returns the route as the Event envelope's routing key. RouteKind values equal the
// RoutingKey.Kind numbers.
func (r Route) Proto() *discordv1.RoutingKey {
	return &discordv1.RoutingKey{Kind: discordv1.RoutingKey_Kind(r.Kind), Id: r.ID}
}

// routeSelf says how the top-level "id" of an event's payload is read.
var routeSelf = map[string]RouteKind{
	"GUILD_CREATE":   RouteGuild,
	"GUILD_UPDATE":   RouteGuild,
	"GUILD_DELETE":   RouteGuild,
	"CHANNEL_CREATE": RouteChannel,
	"CHANNEL_UPDATE": RouteChannel,
	"CHANNEL_DELETE": RouteChannel,
	"THREAD_CREATE":  RouteChannel,
	"THREAD_UPDATE":  RouteChannel,
	"THREAD_DELETE":  RouteChannel,
	"USER_UPDATE":    RouteUser,
}

// RoutingKey reads the routing key of the dispatch named name from its raw payload d, looking
// only at top-level keys (and "id" inside a top-level "user"), and skipping everything else
// without decoding it. It stops as soon as it has the best possible key. It returns a Route of
// kind RouteNone when d names nothing to route by (and always for READY), and an error only when
// d is not well-formed JSON. Ids that are not snowflakes are passed over: the decoder reports
// those.
func RoutingKey(name string, d []byte) (Route, error) {
	r, err := routingKey(name, d)
	if err != nil {
		return Route{}, fmt.Errorf("%s: reading routing key: %w", name, err)
	}
	return r, nil
}

func routingKey(name string, d []byte) (Route, error) {
	if name == "READY" {
		// READY starts a shard's session and concerns no one guild, channel or user (its "user"
		// is the bot itself); the contract routes it by shard.
		return Route{}, nil
	}
	s := scanner{data: d}
	c, err := s.next()
	if err != nil {
		return Route{}, err
	}
	if c == 'n' {
		return Route{}, s.literal("null")
	}
	if c != '{' {
		return Route{}, s.errorf("event payload is not a JSON object")
	}
	selfKind := routeSelf[name]
	// found[k] holds the id for each kind seen so far; user ids come from "user_id" or
	// "user"."id".
	var found [4]uint64
	var have [4]bool
	empty, err := s.openObject()
	if err != nil {
		return Route{}, err
	}
	for !empty {
		key, err := s.readKey()
		if err != nil {
			return Route{}, err
		}
		kind := RouteNone
		nested := false
		switch string(key) {
		case "guild_id":
			kind = RouteGuild
		case "channel_id":
			kind = RouteChannel
		case "user_id":
			kind = RouteUser
		case "id":
			kind = selfKind
		case "user":
			kind, nested = RouteUser, true
		}
		if kind == RouteNone {
			if err := s.skipValue(1); err != nil {
				return Route{}, err
			}
		} else {
			id, ok, err := readRouteID(&s, nested)
			if err != nil {
				return Route{}, err
			}
			if ok && !have[kind] {
				found[kind], have[kind] = id, true
			}
			// A guild id is the best key there is, and so is the payload's own id when it
			// names the guild or, for channels outside guilds, is all there will be besides a
			// guild id.
			if have[RouteGuild] {
				return Route{Kind: RouteGuild, ID: found[RouteGuild]}, nil
			}
		}
		closed, err := s.endOfContainer('}')
		if err != nil {
			return Route{}, err
		}
		empty = closed
	}
	for k := RouteGuild; k <= RouteUser; k++ {
		if have[k] {
			return Route{Kind: k, ID: found[k]}, nil
		}
	}
	return Route{}, nil
}

// readRouteID reads a snowflake value, or with nested the "id" of an object, skipping the rest.
// ok is false when there is no usable id: null, or a value that is not a snowflake. Such values
// are not errors here because routing must not fail on payloads the decoder would accept (the
// key may not even be part of that event's schema); the decoder reports them where they matter.
func readRouteID(s *scanner, nested bool) (id uint64, ok bool, err error) {
	c, err := s.next()
	if err != nil {
		return 0, false, err
	}
	if !nested {
		return readLenientSnowflake(s, c, 1)
	}
	if c != '{' {
		return 0, false, s.skipValue(1)
	}
	empty, err := s.openObject()
	if err != nil {
		return 0, false, err
	}
	for !empty {
		key, err := s.readKey()
		if err != nil {
			return 0, false, err
		}
		if string(key) == "id" && !ok {
			c, err := s.next()
			if err != nil {
				return 0, false, err
			}
			if id, ok, err = readLenientSnowflake(s, c, 2); err != nil {
				return 0, false, err
			}
		} else if err := s.skipValue(2); err != nil {
			return 0, false, err
		}
		closed, err := s.endOfContainer('}')
		if err != nil {
			return 0, false, err
		}
		empty = closed
	}
	return id, ok, nil
}

// readLenientSnowflake reads a value that should be a snowflake, with ok false (and no error)
// when it is well-formed JSON of another kind. depth is that of the object holding the value.
func readLenientSnowflake(s *scanner, c byte, depth int) (uint64, bool, error) {
	var text []byte
	switch {
	case c == '"':
		// skipString rather than readString: a string the decoder would skip must not fail here
		// for its UTF-8.
		start := s.pos
		if err := s.skipString(); err != nil {
			return 0, false, err
		}
		text = s.data[start+1 : s.pos-1]
		if bytes.IndexByte(text, '\\') >= 0 {
			sub := scanner{data: s.data[start:s.pos]}
			b, err := sub.readString()
			if err != nil {
				return 0, false, nil
			}
			text = b
		}
	case c == '-' || ('0' <= c && c <= '9'):
		b, _, err := s.readNumber()
		if err != nil {
			return 0, false, err
		}
		text = b
	default:
		return 0, false, s.skipValue(depth)
	}
	v, ok := parseUint(text)
	return v, ok, nil
}

// readSnowflake reads a snowflake sent as a string (Discord's form) or as a number (the form of
// a few echoed ids). c is the value's first byte.
func readSnowflake(s *scanner, c byte) (uint64, error) {
	var text []byte
	switch {
	case c == '"':
		b, err := s.readString()
		if err != nil {
			return 0, err
		}
		text = b
	case c == '-' || ('0' <= c && c <= '9'):
		b, _, err := s.readNumber()
		if err != nil {
			return 0, err
		}
		text = b
	default:
		return 0, fmt.Errorf("expected a snowflake string, found %s", typeName(c))
	}
	v, ok := parseUint(text)
	if !ok {
		return 0, fmt.Errorf("invalid snowflake %q", text)
	}
	return v, nil
}
