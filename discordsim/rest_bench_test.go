package discordsim

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
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
	start := time.Now()
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
