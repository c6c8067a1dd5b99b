// Package shard runs Discord gateway shards: websocket connections that identify or
// resume a session, heartbeat, decompress zlib-stream or zstd-stream transport, and hand
// every dispatch to a Handler without decoding its payload.
//
// A Manager owns the shards of one process. It follows the gateway protocol: Hello,
// heartbeats with jitter and zombie detection, Identify through an identify.Limiter, Resume
// to resume_gateway_url from the delivery watermark, every close code handled as Discord
// documents it (resume, identify again, or stop with an error a person can act on), op 7
// and op 9, and the 120 sends per 60 seconds limit with headroom kept for heartbeats.
package shard

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/kubecord/kubecord/services/gateway/internal/identify"
)

// Dispatch is one op 0 payload received by a shard.
type Dispatch struct {
	// ShardID and ShardCount identify the shard that received the event.
	ShardID, ShardCount int
	// Seq is the event's sequence number in its session.
	Seq uint64
	// Name is the event name ("t"), such as MESSAGE_CREATE.
	Name string
	// Data is the raw JSON of "d". The receiver may keep it: the shard never reuses it.
	Data []byte
	// ReceivedAt is when the websocket message carrying the event was read.
	ReceivedAt time.Time
}

// Handler receives the dispatches of every shard of a Manager.
type Handler interface {
	// HandleDispatch is called from the shard's read loop, in sequence order for that shard,
	// and must not block: a slow handler stalls the shard's heartbeats.
	HandleDispatch(Dispatch)
}

// HandlerFunc adapts a function to a Handler.
type HandlerFunc func(Dispatch)

// HandleDispatch calls f.
func (f HandlerFunc) HandleDispatch(d Dispatch) { f(d) }

// Session is what a shard needs to resume a gateway session.
type Session struct {
	// ID is the session_id from READY.
	ID string
	// ResumeURL is the resume_gateway_url from READY.
	ResumeURL string
	// Seq is the last sequence number received in the session.
	Seq uint64
}

// SessionStore keeps sessions across shard restarts.
type SessionStore interface {
	// Load returns the stored session of a shard; ok is false when there is none.
	Load(ctx context.Context, shardID int) (s Session, ok bool, err error)
	// Save stores a shard's session. A Session with an empty ID removes it.
	Save(ctx context.Context, shardID int, s Session) error
}

// MemorySessionStore is a SessionStore for one process.
type MemorySessionStore struct {
	mu       sync.Mutex
	sessions map[int]Session
}

// NewMemorySessionStore returns an empty MemorySessionStore.
func NewMemorySessionStore() *MemorySessionStore {
	return &MemorySessionStore{sessions: map[int]Session{}}
}

// Load implements SessionStore.
func (m *MemorySessionStore) Load(_ context.Context, shardID int) (Session, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[shardID]
	return s, ok, nil
}

// Save implements SessionStore.
func (m *MemorySessionStore) Save(_ context.Context, shardID int, s Session) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.ID == "" {
		delete(m.sessions, shardID)
		return nil
	}
	m.sessions[shardID] = s
	return nil
}

// Config configures a Manager.
type Config struct {
	// Token is the bot token. It is sent in Identify and Resume and never logged.
	Token string
	// GatewayURL is the url from GET /gateway/bot, such as wss://gateway.discord.gg.
	GatewayURL string
	// Intents is the gateway intents bitfield.
	Intents uint64
	// ShardIDs are the shards this manager runs; empty means 0..ShardCount-1.
	ShardIDs []int
	// ShardCount is the total number of shards of the bot.
	ShardCount int
	// Compression is CompressionZlib, CompressionZstd or CompressionNone.
	Compression string
	// LargeThreshold is sent in Identify (50..250); 0 leaves Discord's default.
	LargeThreshold int
	// Presence is the initial presence sent in Identify; nil sends none.
	Presence json.RawMessage
	// Identify paces identifies; nil uses an in-memory limiter with max_concurrency 1.
	Identify identify.Limiter
	// Sessions keeps sessions so a restarted manager resumes; nil keeps them in memory.
	Sessions SessionStore
	// Watermark returns the highest sequence of a shard that was delivered everywhere;
	// a resume asks Discord to replay from min(last received, Watermark). Nil means
	// the last received sequence.
	Watermark func(shardID int) uint64
	// Handler receives every dispatch. Required.
	Handler Handler
	// Logger receives the shards' logs; nil discards them.
	Logger *slog.Logger
	// Timing overrides protocol timers; zero fields take Discord's values.
	Timing Timing
	// Dynamic starts no shard in Run: StartShards and StopShard add and remove them
	// while Run runs (the shards a pod holds leases on). ShardIDs must be empty.
	Dynamic bool
}

// Timing holds the timers of the protocol. Tests shorten them; zero values are replaced
// by the defaults documented on each field.
type Timing struct {
	// HelloTimeout bounds the wait for Hello after connecting (default 20 s).
	HelloTimeout time.Duration
	// HandshakeTimeout bounds the websocket handshake (default 20 s).
	HandshakeTimeout time.Duration
	// WriteTimeout bounds one websocket write (default 10 s).
	WriteTimeout time.Duration
	// InvalidSessionMin and InvalidSessionMax bound the random wait before identifying
	// again after op 9 d=false (default 1 s and 5 s).
	InvalidSessionMin, InvalidSessionMax time.Duration
	// BackoffMin and BackoffMax bound the reconnect backoff, which doubles for each
	// connection that fails before its session is ready (default 1 s and 2 min). The
	// first reconnect after a healthy connection waits a random part of BackoffMin.
	BackoffMin, BackoffMax time.Duration
	// SendLimit and SendWindow are the gateway's send limit per connection (default 120
	// per 60 s).
	SendLimit  int
	SendWindow time.Duration
	// MaxMessageSize bounds a decompressed message (default DefaultMaxMessageSize).
	MaxMessageSize int
}

func (t Timing) withDefaults() Timing {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&t.HelloTimeout, 20*time.Second)
	def(&t.HandshakeTimeout, 20*time.Second)
	def(&t.WriteTimeout, 10*time.Second)
	def(&t.InvalidSessionMin, time.Second)
	def(&t.InvalidSessionMax, 5*time.Second)
	def(&t.BackoffMin, time.Second)
	def(&t.BackoffMax, 2*time.Minute)
	def(&t.SendWindow, 60*time.Second)
	if t.InvalidSessionMax < t.InvalidSessionMin {
		t.InvalidSessionMax = t.InvalidSessionMin
	}
	if t.BackoffMax < t.BackoffMin {
		t.BackoffMax = t.BackoffMin
	}
	if t.SendLimit <= 0 {
		t.SendLimit = 120
	}
	if t.MaxMessageSize <= 0 {
		t.MaxMessageSize = DefaultMaxMessageSize
	}
	return t
}

// State is where a shard is in its life.
type State string

// Shard states.
const (
	StateIdle        State = "idle"
	StateConnecting  State = "connecting"
	StateIdentifying State = "identifying"
	StateResuming    State = "resuming"
	StateReady       State = "ready"
	StateWaiting     State = "waiting" // backing off before reconnecting
	StateStopped     State = "stopped"
	StateFailed      State = "failed" // stopped by a fatal close code or error
)

// ShardStatus is a snapshot of one shard.
type ShardStatus struct {
	ID    int
	State State
	// Latency is the time between the last heartbeat and its ACK.
	Latency time.Duration
	// Seq is the last sequence number received.
	Seq       uint64
	SessionID string
	// Reconnects counts connections after the first; Resumes and Identifies count the
	// sessions resumed (RESUMED received) and started (READY received).
	Reconnects, Resumes, Identifies int64
	// EventsPerSecond is the dispatch rate over the last second or so.
	EventsPerSecond float64
	// LastError is the reason of the last disconnect, empty if none.
	LastError string
}
