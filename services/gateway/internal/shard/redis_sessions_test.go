package shard

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kubecord/kubecord/internal/redistest"
)

const sessionTestToken = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.c2VjcmV0LXBhcnQtb2YtdGhlLXRva2VuLTEyMzQ1"

func newSessionClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestRedisSessionStoreRoundTrip(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := newSessionClient(t, srv.Addr)
	// Two stores, as on two pods: what one saves the other loads.
	a, err := NewRedisSessionStore(c, RedisSessionStoreConfig{Token: sessionTestToken, Prefix: "rt"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewRedisSessionStore(newSessionClient(t, srv.Addr), RedisSessionStoreConfig{Token: sessionTestToken, Prefix: "rt"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		shard int
		s     Session
	}{
		{"plain", 0, Session{ID: "abc", ResumeURL: "wss://gateway-us-east1-b.discord.gg", Seq: 42}},
		{"max seq", 7, Session{ID: "def", ResumeURL: "", Seq: ^uint64(0)}},
		{"zero seq", 1023, Session{ID: "ghi", ResumeURL: "wss://x", Seq: 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, ok, err := b.Load(t.Context(), tc.shard); err != nil || ok {
				t.Fatalf("Load before Save = ok %v, err %v; want nothing", ok, err)
			}
			if err := a.Save(t.Context(), tc.shard, tc.s); err != nil {
				t.Fatal(err)
			}
			got, ok, err := b.Load(t.Context(), tc.shard)
			if err != nil || !ok || got != tc.s {
				t.Fatalf("Load = %+v, %v, %v; want %+v", got, ok, err, tc.s)
			}
			if err := a.Save(t.Context(), tc.shard, Session{}); err != nil {
				t.Fatal(err)
			}
			if _, ok, err := b.Load(t.Context(), tc.shard); err != nil || ok {
				t.Fatalf("Load after removal = ok %v, err %v; want nothing", ok, err)
			}
		})
	}
	keys, err := c.Keys(t.Context(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Errorf("keys left after removals: %q", keys)
	}
}

func TestRedisSessionStoreTTL(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := newSessionClient(t, srv.Addr)
	const ttl = 300 * time.Millisecond
	st, err := NewRedisSessionStore(c, RedisSessionStoreConfig{Token: sessionTestToken, TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	s := Session{ID: "abc", ResumeURL: "wss://x", Seq: 1}
	if err := st.Save(t.Context(), 3, s); err != nil {
		t.Fatal(err)
	}
	keys, err := c.Keys(t.Context(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || !strings.HasPrefix(keys[0], "kubecord:session:{") || strings.Contains(keys[0], "c2VjcmV0") {
		t.Fatalf("keys = %q, want one default-prefixed key without the token", keys)
	}
	if left, err := c.PTTL(t.Context(), keys[0]).Result(); err != nil || left <= 0 || left > ttl {
		t.Fatalf("PTTL = %s, %v; want in (0, %s]", left, err, ttl)
	}
	saved := time.Now()
	deadline := saved.Add(10 * time.Second)
	for {
		_, ok, err := st.Load(t.Context(), 3)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("session still stored 10s after a 300ms TTL")
		}
		time.Sleep(20 * time.Millisecond) // polling for expiry with a deadline
	}
	if el := time.Since(saved); el < ttl-50*time.Millisecond {
		t.Errorf("session expired after %s, want about %s", el, ttl)
	}
}

func TestRedisSessionStoreBadInput(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := newSessionClient(t, srv.Addr)
	if _, err := NewRedisSessionStore(nil, RedisSessionStoreConfig{Token: sessionTestToken}); err == nil {
		t.Error("nil client accepted")
	}
	if _, err := NewRedisSessionStore(c, RedisSessionStoreConfig{Token: "nodots"}); err == nil {
		t.Error("malformed token accepted")
	}
	if _, err := NewRedisSessionStore(c, RedisSessionStoreConfig{Token: sessionTestToken, TTL: -1}); err == nil {
		t.Error("negative TTL accepted")
	}
	st, err := NewRedisSessionStore(c, RedisSessionStoreConfig{Token: sessionTestToken})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Save(t.Context(), -1, Session{ID: "x"}); err == nil {
		t.Error("Save(-1) accepted")
	}
	if _, _, err := st.Load(t.Context(), -1); err == nil {
		t.Error("Load(-1) accepted")
	}
	// A corrupt entry (written by something else) is an error, not a zero seq.
	if err := c.HSet(t.Context(), st.key(5), "id", "abc", "seq", "nope").Err(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Load(t.Context(), 5); err == nil || !strings.Contains(err.Error(), "bad seq") {
		t.Errorf("Load of a corrupt entry = %v, want a bad seq error", err)
	}
	srv.Stop()
	if err := st.Save(t.Context(), 1, Session{ID: "x"}); err == nil {
		t.Error("Save with redis down = nil, want an error")
	}
}
