package identify

import (
	"testing"
	"time"

	"github.com/kubecord/kubecord/internal/redistest"
)

// BenchmarkRedisWait measures an uncontended grant: one script round trip that
// takes a bucket's window and spends a session start.
func BenchmarkRedisWait(b *testing.B) {
	srv := redistest.Start(b)
	r, err := NewRedis(b.Context(), newClient(b, srv.Addr), RedisConfig{
		Token:  testToken,
		Limit:  SessionStartLimit{Total: 1 << 30, Remaining: 1 << 30, MaxConcurrency: 1 << 30},
		Window: time.Millisecond,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	id := 0
	for b.Loop() {
		if err := r.Wait(b.Context(), id); err != nil {
			b.Fatal(err)
		}
		id++
	}
}
