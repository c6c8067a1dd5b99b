package lease

import (
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kubecord/kubecord/internal/redistest"
)

// BenchmarkTick measures one steady renewal round trip of a pod holding its
// share of a bot's shards among a number of pods (the others are heartbeats
// only). Redis runs the tick script atomically, so this is also how long each
// tick blocks Redis.
func BenchmarkTick(b *testing.B) {
	srv := redistest.Start(b)
	for _, tc := range []struct{ shards, pods int }{{16, 1}, {1024, 1}, {1024, 16}, {4096, 16}} {
		b.Run(fmt.Sprintf("shards=%d/pods=%d", tc.shards, tc.pods), func(b *testing.B) {
			c := newClient(b, srv.Addr)
			prefix := fmt.Sprintf("bench%d-%d", tc.shards, tc.pods)
			for i := 1; i < tc.pods; i++ {
				// Heartbeats of other pods, far in the future, so they count as live.
				if err := c.ZAdd(b.Context(), "{"+prefix+"}:lease:pods", redis.Z{Score: 1e15, Member: fmt.Sprintf("other-%02d", i)}).Err(); err != nil {
					b.Fatal(err)
				}
			}
			m, err := New(c, Config{Prefix: prefix, PodID: "a", Shards: tc.shards, TTL: time.Minute, Renew: time.Second})
			if err != nil {
				b.Fatal(err)
			}
			if err := m.tick(b.Context(), true); err != nil {
				b.Fatal(err)
			}
			if got, want := len(m.Owned()), tc.shards/tc.pods; got != want {
				b.Fatalf("owned %d shards, want %d", got, want)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := m.tick(b.Context(), true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
