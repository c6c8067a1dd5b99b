package rest

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubecord/kubecord/discordsim"
	restv1 "github.com/kubecord/kubecord/gen/kubecord/rest/v1"
)

// unlimitedSim is a simulator whose limits never get in the way, so a
// benchmark measures Kubecord, not waiting.
func unlimitedSim(b *testing.B) *discordsim.Server {
	return startSim(b, discordsim.RESTConfig{
		GlobalLimit: 1 << 30,
		Buckets:     map[string]discordsim.BucketLimit{"users-me": {Limit: 1 << 30, Window: time.Second}},
	})
}

func unlimitedService(b *testing.B, sim *discordsim.Server) *service {
	cfg := serviceConfig(sim)
	cfg.Limits.GlobalLimit = 1 << 30
	return startService(b, cfg)
}

func benchClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxIdleConns: 256}}
}

func httpGet(b *testing.B, c *http.Client, url, auth string) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		b.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
}

// reportLatency reports p50 and p99 of the per-call times.
func reportLatency(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	if len(lat) == 0 {
		return
	}
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkLatency compares one call at a time to the simulator directly,
// through the HTTP passthrough and through gRPC Do: the difference of the
// p50/p99 figures is what Kubecord adds.
func BenchmarkLatency(b *testing.B) {
	sim := unlimitedSim(b)
	s := unlimitedService(b, sim)
	c := benchClient()
	b.Cleanup(c.CloseIdleConnections)
	cases := []struct {
		name string
		call func()
	}{
		{"direct", func() { httpGet(b, c, sim.URL()+"/api/v10/users/@me", "Bot "+tokenA) }},
		{"passthrough", func() { httpGet(b, c, s.base+"/users/@me", "Bot "+tokenA) }},
		{"grpc-do", func() {
			res, err := s.client.Do(context.Background(), &restv1.DoRequest{Method: "GET", Path: "/users/@me"})
			if err != nil || res.GetStatus() != http.StatusOK {
				b.Fatalf("Do: %v %v", res, err)
			}
		}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			for range 100 { // warm connections and buckets
				tc.call()
			}
			lat := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				t0 := time.Now()
				tc.call()
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			reportLatency(b, lat)
		})
	}
}

// BenchmarkThroughput runs many concurrent callers; req/s is the figure.
func BenchmarkThroughput(b *testing.B) {
	sim := unlimitedSim(b)
	s := unlimitedService(b, sim)
	c := benchClient()
	b.Cleanup(c.CloseIdleConnections)
	run := func(b *testing.B, call func()) {
		for range 100 {
			call()
		}
		b.ReportAllocs()
		b.SetParallelism(16)
		b.ResetTimer()
		start := time.Now()
		cpu0 := processCPU(b)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				call()
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
		// CPU of the whole process (callers, simulator and, unless direct,
		// Kubecord) per request: on a shared machine this is steadier
		// than req/s, and passthrough minus direct is Kubecord's cost.
		b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
	}
	b.Run("direct", func(b *testing.B) { run(b, func() { httpGet(b, c, sim.URL()+"/api/v10/users/@me", "Bot "+tokenA) }) })
	b.Run("passthrough", func(b *testing.B) { run(b, func() { httpGet(b, c, s.base+"/users/@me", "Bot "+tokenA) }) })
	b.Run("grpc-do", func(b *testing.B) {
		run(b, func() {
			res, err := s.client.Do(context.Background(), &restv1.DoRequest{Method: "GET", Path: "/users/@me"})
			if err != nil || res.GetStatus() != http.StatusOK {
				b.Errorf("Do: %v %v", res, err)
			}
		})
	})
}

// BenchmarkPassthroughHandler measures the passthrough in process (no
// client socket), so its allocations are Kubecord's and the simulator's
// only.
func BenchmarkPassthroughHandler(b *testing.B) {
	sim := unlimitedSim(b)
	cfg := serviceConfig(sim)
	cfg.Limits.GlobalLimit = 1 << 30
	svc, err := New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	h := svc.Handler()
	b.ReportAllocs()
	for b.Loop() {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://kubecord/api/v10/users/@me", strings.NewReader(""))
		rec := &discardWriter{h: http.Header{}}
		h.ServeHTTP(rec, req)
		if rec.code != http.StatusOK {
			b.Fatalf("status %d", rec.code)
		}
	}
}

// processCPU is the user and system CPU time this process used so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type discardWriter struct {
	h    http.Header
	code int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(code int)        { d.code = code }
