package discordsim

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// benchSim starts a simulator whose limits do not get in the way of a
// throughput measurement.
func benchSim(b *testing.B) (*Server, []Snowflake) {
	b.Helper()
	s, _ := restSim(b, RESTConfig{
		GlobalLimit:           1 << 30,
		MaxMessagesPerChannel: 1000,
		Buckets:               map[string]BucketLimit{"message-create": {Limit: 1 << 30}, "messages-read": {Limit: 1 << 30}},
		Now:                   time.Now,
	})
	chans, _ := textChannels(s)
	return s, chans
}

// BenchmarkRESTCreateMessage measures POST /channels/{id}/messages through
// real HTTP on loopback with keep-alive: routing, auth, global and route
// ratelimits, decoding, validation, storing, dispatching and accounting.
func BenchmarkRESTCreateMessage(b *testing.B) {
	s, chans := benchSim(b)
	tr := &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}
	b.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr}
	token := "Bot " + botToken(s)
	body := []byte(`{"content":"benchmark message with a little text in it","nonce":"12345"}`)
	var n atomic.Int64
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.SetParallelism(8)
	start, cpu0 := time.Now(), processCPU(b)
	b.RunParallel(func(pb *testing.PB) {
		i := int(n.Add(1))
		url := s.URL() + "/api/v10/channels/" + chans[i%len(chans)].String() + "/messages"
		for pb.Next() {
			req, err := http.NewRequest("POST", url, bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			req.Header.Set("Authorization", token)
			req.Header.Set("Content-Type", "application/json")
			resp, err := hc.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
	// CPU per request (client and server together) does not depend on what
	// else the machine runs, unlike req/s on a shared 2-core box.
	b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/req")
}

// processCPU is the process's user+system CPU time so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRESTHandlerCreateMessage is the same request without the network:
// the handler's own cost.
func BenchmarkRESTHandlerCreateMessage(b *testing.B) {
	s, chans := benchSim(b)
	h := s.restHandler()
	token := "Bot " + botToken(s)
	body := []byte(`{"content":"benchmark message with a little text in it","nonce":"12345"}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	i := 0
	for b.Loop() {
		i++
		req, _ := http.NewRequest("POST", "/api/v10/channels/"+chans[i%len(chans)].String()+"/messages", bytes.NewReader(body))
		req.RemoteAddr = "127.0.0.1:1" + strconv.Itoa(i%10)
		req.Header.Set("Authorization", token)
		req.Header.Set("Content-Type", "application/json")
		w := &discardWriter{h: http.Header{}}
		h.ServeHTTP(w, req)
		if w.status != 200 {
			b.Fatalf("status %d", w.status)
		}
	}
}

type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = 200
	}
	return len(p), nil
}
func (w *discardWriter) WriteHeader(code int) { w.status = code }
