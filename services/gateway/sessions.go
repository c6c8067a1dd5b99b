package gateway

import (
	"context"
	"maps"
	"sync"

	"github.com/kubecord/kubecord/services/gateway/internal/delivery"
	"github.com/kubecord/kubecord/services/gateway/internal/shard"
)

// MemorySessionStore keeps the shards' Discord sessions in memory, each with the delivery
// watermark at the time it was saved. A gateway restarted in the same process with the same
// store resumes every session from its watermark: Discord replays what the previous
// instance received but no group had acknowledged, and the replayed events it may already
// have handed out are flagged as redelivered. (Across pods the store is Redis: another issue.)
type MemorySessionStore struct {
	mu       sync.Mutex
	sessions map[int]storedSession
}

type storedSession struct {
	session   shard.Session // Seq is the last sequence received
	watermark uint64        // where to resume: everything at or below was handled
}

// NewMemorySessionStore returns an empty store.
func NewMemorySessionStore() *MemorySessionStore {
	return &MemorySessionStore{sessions: map[int]storedSession{}}
}

func (m *MemorySessionStore) snapshot() map[int]storedSession {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.sessions)
}

// sessionAdapter is the shard manager's view of the store: it records the hub's watermark
// with every save, since the manager itself only knows the last received sequence.
type sessionAdapter struct {
	store *MemorySessionStore
	hub   *delivery.Hub
}

var _ shard.SessionStore = sessionAdapter{}

// Load implements shard.SessionStore.
func (a sessionAdapter) Load(_ context.Context, shardID int) (shard.Session, bool, error) {
	a.store.mu.Lock()
	defer a.store.mu.Unlock()
	st, ok := a.store.sessions[shardID]
	return st.session, ok && st.session.ID != "", nil
}

// Save implements shard.SessionStore. An empty session id forgets the shard's session.
func (a sessionAdapter) Save(_ context.Context, shardID int, s shard.Session) error {
	wm := s.Seq
	if hw, ok := a.hub.Watermark(shardID); ok {
		wm = min(wm, hw)
	}
	a.store.mu.Lock()
	defer a.store.mu.Unlock()
	if s.ID == "" {
		delete(a.store.sessions, shardID)
		return nil
	}
	a.store.sessions[shardID] = storedSession{session: s, watermark: wm}
	return nil
}
