package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kubecord/kubecord/services/gateway/internal/shard"
)

// StoredSession is what a gateway keeps of a shard's Discord session so that it, or another
// pod, resumes the session instead of identifying again.
type StoredSession struct {
	// ID and ResumeURL are the session_id and resume_gateway_url from READY.
	ID        string `json:"id"`
	ResumeURL string `json:"resume_url"`
	// ShardCount is the shard count of the session's Identify: a session of another shard
	// set (before a reshard) is not resumed.
	ShardCount int `json:"shard_count"`
	// Seq is the last sequence number received, as far as the saver knew.
	Seq uint64 `json:"seq"`
	// Watermark is where to resume: every event at or below it was acknowledged by every
	// group. Discord replays what follows it.
	Watermark uint64 `json:"watermark"`
	// Clean is true when the saver stopped the shard before saving: Seq is then the last
	// sequence it ever received, so a replayed event after Seq cannot have been delivered
	// before. A session saved while the shard ran (the periodic save a killed pod leaves
	// behind) is not clean: every replayed event is flagged as possibly delivered.
	Clean bool `json:"clean"`
	// Pod is the gateway that saved it, and SavedAt when.
	Pod     string    `json:"pod"`
	SavedAt time.Time `json:"saved_at"`
}

// SessionStore keeps the shards' sessions. The memory store serves one process; the Redis
// store lets another pod take a shard over.
type SessionStore interface {
	// LoadSession returns a shard's session; ok is false when there is none.
	LoadSession(ctx context.Context, shardID int) (s StoredSession, ok bool, err error)
	// SaveSession stores a shard's session; an empty ID removes it.
	SaveSession(ctx context.Context, shardID int, s StoredSession) error
}

// MemorySessionStore keeps the shards' Discord sessions in memory. A gateway restarted in
// the same process with the same store resumes every session from its watermark: Discord
// replays what the previous instance received but no group had acknowledged, and the
// replayed events it may already have handed out are flagged as redelivered.
type MemorySessionStore struct {
	mu       sync.Mutex
	sessions map[int]StoredSession
}

var _ SessionStore = (*MemorySessionStore)(nil)

// NewMemorySessionStore returns an empty store.
func NewMemorySessionStore() *MemorySessionStore {
	return &MemorySessionStore{sessions: map[int]StoredSession{}}
}

// LoadSession implements SessionStore.
func (m *MemorySessionStore) LoadSession(_ context.Context, shardID int) (StoredSession, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, ok := m.sessions[shardID]
	return st, ok && st.ID != "", nil
}

// SaveSession implements SessionStore.
func (m *MemorySessionStore) SaveSession(_ context.Context, shardID int, s StoredSession) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.ID == "" {
		delete(m.sessions, shardID)
		return nil
	}
	m.sessions[shardID] = s
	return nil
}

// DefaultSessionTTL is how long a session saved in Redis lives without being saved again:
// far longer than any hand-off. Discord does not document how long a session stays
// resumable; resuming one that expired costs one op 9 and an identify.
const DefaultSessionTTL = 15 * time.Minute

// RedisSessionStore keeps the shards' sessions in Redis, shared by every gateway pod of a
// bot. Saves are fenced by the shard's lease: a pod that lost a shard (its lease expired
// while it was cut off from Redis) cannot overwrite the session of the pod that took it.
type RedisSessionStore struct {
	client redis.UniversalClient
	prefix string // keys are prefix + shard id
	ttl    time.Duration
	fence  func(shardID int) (key, value string)
}

var _ SessionStore = (*RedisSessionStore)(nil)

// NewRedisSessionStore returns a store keeping keys under prefix (which should carry the
// Redis Cluster hash tag of the lease keys, so the fenced save runs in one slot). fence,
// when not nil, names each shard's lease key and the value this pod's lease holds; a save
// whose lease holds anything else is refused with ErrNotLeaseHolder.
func NewRedisSessionStore(client redis.UniversalClient, prefix string, ttl time.Duration, fence func(int) (string, string)) (*RedisSessionStore, error) {
	if client == nil {
		return nil, errors.New("session store: redis client is nil")
	}
	if ttl < 0 {
		return nil, fmt.Errorf("session store: TTL %s is negative", ttl)
	}
	if ttl == 0 {
		ttl = DefaultSessionTTL
	}
	return &RedisSessionStore{client: client, prefix: prefix, ttl: ttl, fence: fence}, nil
}

// ErrNotLeaseHolder is returned by a fenced save for a shard this pod's lease no longer holds.
var ErrNotLeaseHolder = errors.New("this pod no longer holds the shard's lease")

// saveScript writes a session if the shard's lease holds the caller's value (or no fence is
// given). KEYS: session key, lease key (or the session key again). ARGV: payload (empty to
// delete), TTL ms, lease value ("" for no fence).
var saveScript = redis.NewScript(`
if ARGV[3] ~= '' then
  local v = redis.call('GET', KEYS[2])
  if v ~= ARGV[3] then
    return redis.error_reply('FENCED ' .. tostring(v))
  end
end
if ARGV[1] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
`)

// LoadSession implements SessionStore.
func (r *RedisSessionStore) LoadSession(ctx context.Context, shardID int) (StoredSession, bool, error) {
	raw, err := r.client.Get(ctx, r.prefix+strconv.Itoa(shardID)).Bytes()
	if errors.Is(err, redis.Nil) {
		return StoredSession{}, false, nil
	}
	if err != nil {
		return StoredSession{}, false, fmt.Errorf("loading the session of shard %d from redis: %w", shardID, err)
	}
	var s StoredSession
	if err := json.Unmarshal(raw, &s); err != nil {
		return StoredSession{}, false, fmt.Errorf("the stored session of shard %d is not valid JSON (delete key %s): %w", shardID, r.prefix+strconv.Itoa(shardID), err)
	}
	return s, s.ID != "", nil
}

// SaveSession implements SessionStore.
func (r *RedisSessionStore) SaveSession(ctx context.Context, shardID int, s StoredSession) error {
	key := r.prefix + strconv.Itoa(shardID)
	leaseKey, value := key, ""
	if r.fence != nil {
		leaseKey, value = r.fence(shardID)
		if value == "" {
			return fmt.Errorf("saving the session of shard %d: %w (no lease yet)", shardID, ErrNotLeaseHolder)
		}
	}
	var payload []byte
	if s.ID != "" {
		var err error
		if payload, err = json.Marshal(s); err != nil {
			return fmt.Errorf("encoding the session of shard %d: %w", shardID, err)
		}
	}
	err := saveScript.Run(ctx, r.client, []string{key, leaseKey}, payload, r.ttl.Milliseconds(), value).Err()
	if err != nil {
		if holder, fenced := strings.CutPrefix(err.Error(), "FENCED "); fenced {
			return fmt.Errorf("saving the session of shard %d: %w (lease holds %s)", shardID, ErrNotLeaseHolder, holder)
		}
		return fmt.Errorf("saving the session of shard %d in redis: %w", shardID, err)
	}
	return nil
}

// sessionAdapter is the shard manager's view of the store: it records the hub's watermark
// with every save, since the manager itself only knows the last received sequence.
type sessionAdapter struct {
	store SessionStore
	count int
	pod   string
	// watermark is the shard's delivery watermark, ok false when unknown.
	watermark func(shardID int) (uint64, bool)
	// shadowPoint, set for a shard set started in shadow, is shadow.resumePoint.
	shadowPoint func(shardID int) (seq uint64, store, live bool)
}

var _ shard.SessionStore = sessionAdapter{}

// Load implements shard.SessionStore.
func (a sessionAdapter) Load(ctx context.Context, shardID int) (shard.Session, bool, error) {
	st, ok, err := a.load(ctx, shardID)
	if err != nil || !ok {
		return shard.Session{}, false, err
	}
	return shard.Session{ID: st.ID, ResumeURL: st.ResumeURL, Seq: st.Seq}, true, nil
}

// load returns the stored session of a shard of this shard set.
func (a sessionAdapter) load(ctx context.Context, shardID int) (StoredSession, bool, error) {
	st, ok, err := a.store.LoadSession(ctx, shardID)
	if err != nil || !ok || (st.ShardCount != 0 && st.ShardCount != a.count) {
		return StoredSession{}, false, err
	}
	return st, true, nil
}

// Save implements shard.SessionStore. An empty session id forgets the shard's session.
func (a sessionAdapter) Save(ctx context.Context, shardID int, s shard.Session) error {
	return a.store.SaveSession(ctx, shardID, a.stored(shardID, s, false))
}

// stored is s with the hub's watermark.
func (a sessionAdapter) stored(shardID int, s shard.Session, clean bool) StoredSession {
	if s.ID == "" {
		return StoredSession{}
	}
	if a.shadowPoint != nil {
		seq, store, live := a.shadowPoint(shardID)
		if !store {
			return StoredSession{} // nothing to resume yet: forget any older session
		}
		if !live {
			s.Seq = min(s.Seq, seq)
		}
	}
	wm := s.Seq
	if hw, ok := a.watermark(shardID); ok {
		wm = min(wm, hw)
	}
	return StoredSession{ID: s.ID, ResumeURL: s.ResumeURL, ShardCount: a.count, Seq: s.Seq, Watermark: wm, Clean: clean, Pod: a.pod, SavedAt: time.Now()}
}

// liveOnlyStore is a store shared with the live shard set, as seen by a shard set in
// shadow: nothing is stored or loaded until the set is live.
type liveOnlyStore struct {
	SessionStore
	live func() bool
}

func (l liveOnlyStore) LoadSession(ctx context.Context, shardID int) (StoredSession, bool, error) {
	if !l.live() {
		return StoredSession{}, false, nil
	}
	return l.SessionStore.LoadSession(ctx, shardID)
}

func (l liveOnlyStore) SaveSession(ctx context.Context, shardID int, s StoredSession) error {
	if !l.live() {
		return nil
	}
	return l.SessionStore.SaveSession(ctx, shardID, s)
}
