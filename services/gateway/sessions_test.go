package gateway

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kubecord/kubecord/internal/redistest"
	"github.com/kubecord/kubecord/services/gateway/internal/shard"
)

func TestRedisSessionStore(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = c.Close() })
	ctx := t.Context()
	const lease = "{t}:lease:shard:"
	fence := func(id int) (string, string) { return lease + string(rune('0'+id)), "pod-a:1" }
	st, err := NewRedisSessionStore(c, "{t}:session:", time.Minute, fence)
	if err != nil {
		t.Fatal(err)
	}
	want := StoredSession{ID: "s1", ResumeURL: "wss://resume", ShardCount: 4, Seq: 42, Watermark: 40, Clean: true, Pod: "pod-a", SavedAt: time.Now().UTC().Round(time.Millisecond)}

	// No lease: refused.
	if err := st.SaveSession(ctx, 1, want); !errors.Is(err, ErrNotLeaseHolder) {
		t.Fatalf("save without the lease = %v, want ErrNotLeaseHolder", err)
	}
	if err := c.Set(ctx, lease+"1", "pod-a:1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveSession(ctx, 1, want); err != nil {
		t.Fatalf("save with the lease: %v", err)
	}
	got, ok, err := st.LoadSession(ctx, 1)
	if err != nil || !ok || got != want {
		t.Fatalf("load = %+v, %v, %v; want %+v", got, ok, err, want)
	}
	if ttl := c.PTTL(ctx, "{t}:session:1").Val(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("session TTL %s, want up to a minute", ttl)
	}
	// Another pod took the lease: this pod can no longer overwrite the session.
	if err := c.Set(ctx, lease+"1", "pod-b:7", 0).Err(); err != nil {
		t.Fatal(err)
	}
	stale := want
	stale.Seq = 1
	if err := st.SaveSession(ctx, 1, stale); !errors.Is(err, ErrNotLeaseHolder) || !strings.Contains(err.Error(), "pod-b:7") {
		t.Fatalf("save after losing the lease = %v, want ErrNotLeaseHolder naming pod-b:7", err)
	}
	if got, _, _ := st.LoadSession(ctx, 1); got.Seq != 42 {
		t.Fatalf("a fenced save changed the session: seq %d", got.Seq)
	}
	// Forgetting (empty id) deletes; a missing session is not an error.
	if err := c.Set(ctx, lease+"1", "pod-a:1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveSession(ctx, 1, StoredSession{}); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := st.LoadSession(ctx, 1); ok || err != nil {
		t.Fatalf("load after forgetting = %v, %v; want none", ok, err)
	}
	// Garbage in the key: a clear error naming the key.
	if err := c.Set(ctx, "{t}:session:2", "{not json", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.LoadSession(ctx, 2); err == nil || !strings.Contains(err.Error(), "{t}:session:2") {
		t.Fatalf("load of garbage = %v, want an error naming the key", err)
	}
	if _, err := NewRedisSessionStore(nil, "x", 0, nil); err == nil {
		t.Error("a store without a client = nil error")
	}
}

// TestSessionAdapterShardCount keeps sessions of another shard set (before a reshard) from
// being resumed.
func TestSessionAdapterShardCount(t *testing.T) {
	t.Parallel()
	store := NewMemorySessionStore()
	ctx := context.Background()
	old := sessionAdapter{store: store, count: 2, pod: "p", watermark: func(int) (uint64, bool) { return 5, true }}
	if err := old.Save(ctx, 1, shard.Session{ID: "a", Seq: 9}); err != nil {
		t.Fatal(err)
	}
	st, ok, _ := store.LoadSession(ctx, 1)
	if !ok || st.Watermark != 5 || st.Seq != 9 || st.ShardCount != 2 || st.Clean {
		t.Fatalf("saved %+v, want watermark 5, seq 9, shard count 2, not clean", st)
	}
	if s, ok, _ := old.Load(ctx, 1); !ok || s.ID != "a" {
		t.Fatalf("same shard set: load = %+v, %v", s, ok)
	}
	next := old
	next.count = 4
	if s, ok, _ := next.Load(ctx, 1); ok {
		t.Fatalf("another shard set resumed %+v", s)
	}
}
