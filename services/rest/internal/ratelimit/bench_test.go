package ratelimit

import (
	"context"
	"net/http"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kubecord/kubecord/internal/redistest"
)

func BenchmarkParseRoute(b *testing.B) {
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		_ = ParseRoute("POST", "/channels/123456789012345678/messages/123456789012345679/reactions/%F0%9F%91%8D/@me", now)
	}
}

// okHeaders are the headers of an answer that leaves plenty of room.
func okHeaders() http.Header {
	h := http.Header{}
	h.Set("X-RateLimit-Bucket", "abcdef")
	h.Set("X-RateLimit-Limit", "1000000")
	h.Set("X-RateLimit-Remaining", "999999")
	h.Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10))
	h.Set("X-RateLimit-Reset-After", "3600")
	return h
}

// BenchmarkWaitObserve is the limiter's cost per request when no limit is
// in the way: one Wait and one Observe.
func BenchmarkWaitObserve(b *testing.B) {
	for _, tc := range []struct {
		name  string
		store func(b *testing.B) Store
	}{
		{"memory", func(*testing.B) Store { return NewMemoryStore() }},
		{"redis", func(b *testing.B) Store {
			rdb := redis.NewClient(&redis.Options{Addr: redistest.Start(b).Addr})
			b.Cleanup(func() { _ = rdb.Close() })
			return NewRedisStore(rdb, "bench:")
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			l := New(tc.store(b), Config{GlobalLimit: 1 << 30})
			ctx := context.Background()
			h := okHeaders()
			r := ParseRoute("GET", "/channels/1/messages", time.Now())
			if err := l.Wait(ctx, "bot", r, 0); err != nil {
				b.Fatal(err)
			}
			if _, err := l.Observe(ctx, "bot", r, 200, h, nil); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := l.Wait(ctx, "bot", r, 0); err != nil {
					b.Fatal(err)
				}
				if _, err := l.Observe(ctx, "bot", r, 200, h, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBucketMemory reports the memory one live bucket takes in each
// store (one channel's message bucket, limits known).
func BenchmarkBucketMemory(b *testing.B) {
	const n = 20000
	h := okHeaders()
	fill := func(b *testing.B, s Store) {
		l := New(s, Config{GlobalLimit: 1 << 30})
		ctx := context.Background()
		now := time.Now()
		for i := range n {
			r := ParseRoute("POST", "/channels/"+strconv.Itoa(1_000_000_000_000_000+i)+"/messages", now)
			if err := l.Wait(ctx, "bot", r, 0); err != nil {
				b.Fatal(err)
			}
			if _, err := l.Observe(ctx, "bot", r, 200, h, nil); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("memory", func(b *testing.B) {
		for b.Loop() {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			s := NewMemoryStore()
			fill(b, s)
			runtime.GC()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/bucket")
			runtime.KeepAlive(s)
		}
	})
	b.Run("redis", func(b *testing.B) {
		rdb := redis.NewClient(&redis.Options{Addr: redistest.Start(b).Addr})
		b.Cleanup(func() { _ = rdb.Close() })
		ctx := context.Background()
		used := func() float64 {
			info, err := rdb.InfoMap(ctx, "memory").Result()
			if err != nil {
				b.Fatal(err)
			}
			f, _ := strconv.ParseFloat(info["Memory"]["used_memory"], 64)
			return f
		}
		i := 0
		for b.Loop() {
			i++
			before := used()
			fill(b, NewRedisStore(rdb, "mem"+strconv.Itoa(i)+":"))
			b.ReportMetric((used()-before)/n, "B/bucket")
		}
	})
}
