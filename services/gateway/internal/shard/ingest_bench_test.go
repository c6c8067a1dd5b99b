package shard

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
)

// encodeStream compresses msgs as one connection's transport stream, one websocket
// message per payload.
func encodeStream(tb testing.TB, compression string, msgs [][]byte) [][]byte {
	tb.Helper()
	var buf bytes.Buffer
	var write func([]byte) error
	switch compression {
	case CompressionZlib:
		w := zlib.NewWriter(&buf)
		write = func(m []byte) error {
			if _, err := w.Write(m); err != nil {
				return err
			}
			return w.Flush()
		}
	case CompressionZstd:
		w, err := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1))
		if err != nil {
			tb.Fatal(err)
		}
		write = func(m []byte) error {
			if _, err := w.Write(m); err != nil {
				return err
			}
			return w.Flush()
		}
	default:
		write = func(m []byte) error { _, err := buf.Write(m); return err }
	}
	out := make([][]byte, len(msgs))
	for i, m := range msgs {
		if err := write(m); err != nil {
			tb.Fatal(err)
		}
		out[i] = bytes.Clone(buf.Bytes())
		buf.Reset()
	}
	return out
}

// benchIngest measures a shard reading a pre-encoded feed from a real loopback websocket:
// websocket framing, decompression, frame parsing, the copy of d and the handler call.
// The server side only writes frames that were compressed before the clock started.
func benchIngest(b *testing.B, compression string) {
	n := max(b.N, 1)
	b.ReportAllocs()
	msgs := [][]byte{
		[]byte(`{"op":10,"d":{"heartbeat_interval":45000},"s":null,"t":null}`),
		[]byte(`{"op":0,"s":1,"t":"READY","d":{"v":10,"session_id":"bench","resume_gateway_url":"ws://127.0.0.1:1","user":{"id":"1","username":"bench"},"guilds":[],"shard":[0,1],"application":{"id":"1","flags":0}}}`),
	}
	msgs = append(msgs, realisticFeedFrom(b, n, 2)...)
	frames := encodeStream(b, compression, msgs)
	msgType := websocket.BinaryMessage
	if compression == CompressionNone {
		msgType = websocket.TextMessage
	}

	var started atomic.Int64 // unix ns when the server began sending events
	upgrader := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer func() { _ = ws.Close() }()
		if err := ws.WriteMessage(msgType, frames[0]); err != nil {
			return
		}
		if _, p, err := ws.ReadMessage(); err != nil || !bytes.Contains(p, []byte(`"op":2`)) {
			return
		}
		started.Store(time.Now().UnixNano())
		for _, f := range frames[1:] {
			if err := ws.WriteMessage(msgType, f); err != nil {
				return
			}
		}
		for { // until the client leaves
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	}))
	defer srv.Close()

	done := make(chan time.Time, 1)
	var got atomic.Int64
	m, err := NewManager(Config{
		Token:       "bench-token-not-secret",
		GatewayURL:  "ws" + strings.TrimPrefix(srv.URL, "http"),
		ShardCount:  1,
		Compression: compression,
		Logger:      slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Handler: HandlerFunc(func(Dispatch) {
			if got.Add(1) == int64(n+1) {
				done <- time.Now()
			}
		}),
	})
	if err != nil {
		b.Fatal(err)
	}
	var before syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &before); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(b.Context())
	runDone := make(chan error, 1)
	b.ResetTimer()
	go func() { runDone <- m.Run(ctx) }()
	var end time.Time
	select {
	case end = <-done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("received %d of %d events", got.Load(), n+1)
	}
	b.StopTimer()
	var after syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &after); err != nil {
		b.Fatal(err)
	}
	cancel()
	if err := <-runDone; err != nil {
		b.Fatal(err)
	}
	elapsed := end.Sub(time.Unix(0, started.Load()))
	cpu := time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) * time.Nanosecond
	b.ReportMetric(float64(n)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(cpu.Milliseconds())/float64(n)*10_000, "cpu-ms/10k-events")
}

func BenchmarkIngestZlibStream(b *testing.B) { benchIngest(b, CompressionZlib) }
func BenchmarkIngestZstdStream(b *testing.B) { benchIngest(b, CompressionZstd) }
func BenchmarkIngestPlain(b *testing.B)      { benchIngest(b, CompressionNone) }
