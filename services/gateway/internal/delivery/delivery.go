// Package delivery is the gateway's delivery hub: it takes every dispatch a shard receives and
// hands it to the workers subscribed to it, without ever blocking the shard.
//
// # Model
//
// Workers join a group as members. Every group gets every event it subscribed to (fan-out);
// inside a group each event goes to one member (load balancing). An event's routing key
// (the guild, else the channel or user for DMs, else its shard) picks the member by
// rendezvous (highest random weight) hashing over the group's live members, so one guild
// stays on one member and a member joining or leaving moves only its share of keys.
//
// # Flow control and acks
//
// A member grants credit: the most events it holds unacknowledged (max in flight). It acks
// each event it handled by the delivery tag it was handed. When a member leaves, is replaced
// or is evicted for not acking within Config.AckTimeout, its unacked events go back into
// their keys' queues in publish order, ahead of the keys' later events, and are delivered
// again, to whichever member now owns the key, flagged as redelivered with their attempt
// number. Nacked (requeued) events go back the same way.
//
// # Ordering guarantee
//
// For one routing key inside one group: first deliveries happen in publish order, and an
// event of a key is never handed to a member while an earlier event of the same key is
// unacknowledged on a different member. When ownership of a key moves (a member joined or
// left), the key waits until its previous owner has acked (or departed, in which case the
// unacked events are redelivered first, ahead of any later event of the key). A member may
// hold several events of one key at once (pipelining); they are handed to it in order, and
// the member itself must handle them in order (the SDK does). Redeliveries can repeat an
// event that a departed member already handled: consumers deduplicate by (shard, sequence).
//
// # Filters
//
// A group subscribes to a set of event names and a set of shards (empty means all). The
// first member to join a group with no live members sets the filter; a member joining while
// others are live must ask for the same sets, or is refused with ErrFilterConflict. One
// filter per group keeps "each event to exactly one member" meaningful and per-key order
// intact across event types. Events buffered under a previous filter are still delivered.
//
// # Bounded buffers and gaps
//
// Each group buffers events not yet handed to a member, bounded by count and by payload
// bytes. Events in flight are bounded by the members' credit instead. On overflow the
// OLDEST buffered event is dropped: a lagging consumer then catches up on fresh data and its
// latency stays bounded, instead of losing everything new until it recovers. Every drop is
// counted and announced to each live member of the group as a Gap (or to the next member to
// join when none is live). Groups outlive their last member for Config.GroupTTL, buffering,
// so a redeploying worker loses nothing; declared groups (Hub.Declare) exist from the start,
// before any member, and never expire. A member may also give a delivery back (Nack): to be
// delivered again ahead of its key's later events, or rejected (settled, not retried).
//
// Events published while no group exists reach nobody; they count as handled for the
// watermark. Declare the groups that must see everything from the first event on.
//
// # Watermark
//
// For each shard the hub tracks the delivery watermark of the current session: the highest
// sequence at or below which every event was acked, dropped as a gap, or filtered out by
// every group. The gateway resumes Discord sessions from it, so events received but not yet
// handled are replayed by Discord rather than lost.
package delivery

import (
	"errors"
	"log/slog"
	"time"
)

// EventID identifies a dispatch by its shard and its sequence number in that shard's session.
type EventID struct {
	Shard int
	Seq   uint64
}

// Event is one dispatch as the hub carries it. The hub never modifies an Event or its
// Payload; the same Event is shared by every group and every delivery of it.
type Event struct {
	ID   EventID
	Name string
	// Key is the routing key: guild id, else channel or user id. Zero means the event has no
	// natural key; it is then routed by its shard, which keeps a shard's keyless events
	// (READY, RESUMED, USER_UPDATE, ...) in order.
	Key uint64
	// Payload is the event encoded once by the publisher, shared read-only by all deliveries.
	Payload []byte
	// ReceivedAt is when the shard read the frame; it dates the buffer's oldest event.
	ReceivedAt time.Time
	// Ext is the publisher's own data about the event (the hub ignores it), e.g. other
	// encodings of it prepared lazily for some consumers.
	Ext any
	// MaybeDelivered says a consumer may have received the event already through another
	// gateway (a shard set taking over from one that died): its deliveries are flagged as
	// redelivered, like a replay after a restart.
	MaybeDelivered bool
}

// routingKey is the key the hub hashes. Keyless events get a per-shard key whose high bits
// are all set, a range real snowflakes (42-bit timestamps) do not reach.
func (ev *Event) routingKey() uint64 {
	if ev.Key != 0 {
		return ev.Key
	}
	return ^uint64(uint32(ev.ID.Shard))
}

// Delivery is an event handed to one member.
type Delivery struct {
	Event *Event
	// Tag identifies this delivery for Member.Ack and Member.Nack: unique in the hub's
	// lifetime. A redelivery gets a new tag.
	Tag uint64
	// Attempt counts deliveries of this event to the group, starting at 1.
	Attempt uint32
	// Redelivered says the event may have been handed to a consumer before: it was unacked
	// on a member that departed, or it was replayed by Discord after a gateway restart.
	Redelivered bool
}

// Gap announces events a group lost: its buffer overflowed or it expired, an event ran out
// of attempts, or a shard's session was reset.
type Gap struct {
	Shard int
	// FirstSeq and LastSeq bound the lost sequences; not every sequence between them was
	// necessarily lost (some may have been delivered or filtered out).
	FirstSeq, LastSeq uint64
	// Count is how many events were lost.
	Count uint64
	// Reason says why: one of the GapReason constants.
	Reason string
}

// Item is what Member.Next returns: a delivery, or a gap announcement when Gap is non-nil.
type Item struct {
	Delivery Delivery
	Gap      *Gap
}

// Gap reasons.
const (
	// GapReasonOverflow is the Gap.Reason for events dropped because the group's buffer was
	// full (or the group expired without members).
	GapReasonOverflow = "buffer_overflow"
	// GapReasonRetriesExhausted is the Gap.Reason for an event dropped after
	// Config.MaxAttempts deliveries without an ack.
	GapReasonRetriesExhausted = "retries_exhausted"
	// GapReasonSessionReset is the Gap.Reason announced when a shard's session was replaced
	// by a new one (Discord invalidated it, or it could not be resumed): the events Discord
	// sent the old session after FirstSeq - 1 and never replayed are gone, and nobody knows
	// how many (Count is 0, LastSeq is 0).
	GapReasonSessionReset = "session_reset"
)

// Nack dispositions, see Member.Nack.
const (
	// Requeue delivers the events again, to the member owning their keys, attempt + 1.
	Requeue = true
	// Reject drops the events: counted as rejected, settled for the watermark.
	Reject = false
)

// Errors returned by the hub. Callers map them to gRPC codes.
var (
	// ErrInvalid wraps every refused argument (empty group name, bad credit...).
	ErrInvalid = errors.New("invalid subscription")
	// ErrFilterConflict means a member asked for a different event filter than the live
	// members of its group.
	ErrFilterConflict = errors.New("event filter differs from the group's")
	// ErrHubClosed is returned once the hub is closed (the gateway is stopping).
	ErrHubClosed = errors.New("delivery hub closed")
	// ErrMemberClosed is returned by a member's methods after it left.
	ErrMemberClosed = errors.New("member left the group")
	// ErrMemberExists refuses a join whose member id is live in the group (without Replace).
	ErrMemberExists = errors.New("member id already connected to the group")
	// ErrReplaced ends a member whose id was taken over by a new subscription.
	ErrReplaced = errors.New("member replaced by a new subscription with the same id")
	// ErrAckTimeout ends a member that held an event unacked longer than Config.AckTimeout.
	ErrAckTimeout = errors.New("member evicted: an event stayed unacked past the ack timeout")
)

// Config tunes the hub. The zero value is usable: every zero field takes its default.
type Config struct {
	// MaxBufferedEvents bounds each group's buffer of undelivered events (default 100,000).
	MaxBufferedEvents int
	// MaxBufferedBytes bounds the payload bytes of each group's buffer (default 256 MiB).
	MaxBufferedBytes int64
	// MaxInFlight caps the credit one member may grant (default 10,000).
	MaxInFlight int
	// GroupTTL is how long a group without members keeps buffering (default 5 minutes).
	GroupTTL time.Duration
	// AckTimeout evicts a member holding an event unacked for longer (default 60 s).
	AckTimeout time.Duration
	// SweepInterval is how often Run checks TTLs and ack timeouts (default 1 s).
	SweepInterval time.Duration
	// MaxAttempts bounds the deliveries of one event to a group (default 10). An event that
	// comes back unacked that many times (nacked for requeue, or in flight on members that
	// left or were evicted) is dropped, counted as exhausted and announced as a Gap
	// (GapReasonRetriesExhausted): a poison event that crashes every worker must not circle
	// forever and hold back its key and the shard's watermark.
	MaxAttempts int
	// Logger receives the hub's logs (default slog.Default()).
	Logger *slog.Logger
}

// Defaults applied by NewHub to zero fields.
const (
	DefaultMaxBufferedEvents = 100_000
	DefaultMaxBufferedBytes  = 256 << 20
	DefaultMaxInFlight       = 10_000
	DefaultGroupTTL          = 5 * time.Minute
	DefaultAckTimeout        = 60 * time.Second
	DefaultSweepInterval     = time.Second
	DefaultMaxAttempts       = 10
)

func (c Config) withDefaults() Config {
	if c.MaxBufferedEvents <= 0 {
		c.MaxBufferedEvents = DefaultMaxBufferedEvents
	}
	if c.MaxBufferedBytes <= 0 {
		c.MaxBufferedBytes = DefaultMaxBufferedBytes
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.GroupTTL <= 0 {
		c.GroupTTL = DefaultGroupTTL
	}
	if c.AckTimeout <= 0 {
		c.AckTimeout = DefaultAckTimeout
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = DefaultSweepInterval
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}
