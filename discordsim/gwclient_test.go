package discordsim

import (
	"bytes"
	"compress/zlib"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/klauspost/compress/zstd"
)

// A real gateway client for tests: it dials over loopback, inflates
// zlib-stream / zstd-stream with one context per connection, and hands
// decoded payloads to the test.

type payload struct {
	Op int             `json:"op"`
	S  *int64          `json:"s"`
	T  *string         `json:"t"`
	D  json.RawMessage `json:"d"`
}

func (p payload) event() string {
	if p.T == nil {
		return ""
	}
	return *p.T
}

type testClient struct {
	t      testing.TB
	ws     *websocket.Conn
	in     chan payload
	done   chan struct{}
	mu     sync.Mutex
	err    error // why reading stopped
	frames int
	wg     sync.WaitGroup
}

func newSim(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// dial connects with the given query (e.g. "v=10&encoding=json").
func dial(t testing.TB, base, query string) *testClient {
	t.Helper()
	u, err := url.Parse(base + "/?" + query)
	if err != nil {
		t.Fatal(err)
	}
	ws, resp, err := websocket.DefaultDialer.DialContext(t.Context(), u.String(), nil)
	if err != nil {
		t.Fatalf("dial %s: %v", u, err)
	}
	_ = resp.Body.Close()
	c := &testClient{t: t, ws: ws, in: make(chan payload, 100_000), done: make(chan struct{})}
	var mode string
	if q, err := url.ParseQuery(query); err == nil {
		mode = q.Get("compress")
	}
	c.wg.Go(func() { c.readLoop(mode) })
	t.Cleanup(c.close)
	return c
}

func (c *testClient) close() {
	_ = c.ws.Close()
	c.wg.Wait()
}

func (c *testClient) readLoop(mode string) {
	defer close(c.done)
	defer close(c.in)
	var pw *io.PipeWriter
	var decodeDone chan struct{}
	if mode != "" {
		pr, w := io.Pipe()
		pw = w
		decodeDone = make(chan struct{})
		go func() {
			defer close(decodeDone)
			var r io.Reader
			switch mode {
			case "zlib-stream":
				zr, err := zlib.NewReader(pr)
				if err != nil {
					_ = pr.CloseWithError(err)
					return
				}
				r = zr
			case "zstd-stream":
				zr, err := zstd.NewReader(pr, zstd.WithDecoderConcurrency(1))
				if err != nil {
					_ = pr.CloseWithError(err)
					return
				}
				defer zr.Close()
				r = zr
			}
			dec := json.NewDecoder(r)
			for {
				var p payload
				if err := dec.Decode(&p); err != nil {
					_ = pr.CloseWithError(err)
					return
				}
				c.in <- p
			}
		}()
	}
	defer func() {
		if pw != nil {
			_ = pw.Close()
			<-decodeDone
		}
	}()
	for {
		mt, data, err := c.ws.ReadMessage()
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		c.mu.Lock()
		c.frames++
		c.mu.Unlock()
		if pw != nil {
			if mode == "zlib-stream" && !bytes.HasSuffix(data, []byte{0, 0, 0xff, 0xff}) {
				c.mu.Lock()
				c.err = errors.New("zlib-stream frame does not end with 00 00 ff ff")
				c.mu.Unlock()
				return
			}
			if _, err := pw.Write(data); err != nil {
				return
			}
			continue
		}
		if mt == websocket.BinaryMessage {
			zr, err := zlib.NewReader(bytes.NewReader(data))
			if err != nil {
				c.mu.Lock()
				c.err = fmt.Errorf("payload zlib: %w", err)
				c.mu.Unlock()
				return
			}
			data, err = io.ReadAll(zr)
			if err != nil {
				return
			}
		}
		var p payload
		if err := json.Unmarshal(data, &p); err != nil {
			c.mu.Lock()
			c.err = fmt.Errorf("decoding %q: %w", data, err)
			c.mu.Unlock()
			return
		}
		c.in <- p
	}
}

// next returns the next payload, failing the test after 20 s (generous:
// the race detector on a shared 2-core machine is slow).
func (c *testClient) next() payload {
	c.t.Helper()
	select {
	case p, ok := <-c.in:
		if !ok {
			c.t.Fatalf("connection ended while waiting for a payload: %v", c.readErr())
		}
		return p
	case <-time.After(20 * time.Second):
		c.t.Fatal("timed out waiting for a payload")
	}
	return payload{}
}

// until skips payloads until one matches.
func (c *testClient) until(match func(payload) bool) payload {
	c.t.Helper()
	for {
		if p := c.next(); match(p) {
			return p
		}
	}
}

func (c *testClient) untilEvent(name string) payload {
	c.t.Helper()
	return c.until(func(p payload) bool { return p.event() == name })
}

func (c *testClient) readErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// closeCode waits (up to 20 s, as next) for the connection to end and
// returns the server's close code.
func (c *testClient) closeCode() int {
	c.t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case _, ok := <-c.in:
			if ok {
				continue
			}
			var ce *websocket.CloseError
			if errors.As(c.readErr(), &ce) {
				return ce.Code
			}
			c.t.Fatalf("connection ended without a close frame: %v", c.readErr())
		case <-deadline:
			c.t.Fatal("timed out waiting for the connection to close")
		}
	}
}

func (c *testClient) send(op int, d any) {
	c.t.Helper()
	if err := c.ws.WriteJSON(map[string]any{"op": op, "d": d}); err != nil {
		c.t.Fatalf("send op %d: %v", op, err)
	}
}

func (c *testClient) sendRaw(data string) {
	c.t.Helper()
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(data)); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// hello reads Hello and returns the heartbeat interval in ms.
func (c *testClient) hello() int64 {
	c.t.Helper()
	p := c.next()
	if p.Op != opHello {
		c.t.Fatalf("first payload op = %d, want 10 (Hello)", p.Op)
	}
	var d struct {
		HeartbeatInterval int64 `json:"heartbeat_interval"`
	}
	if err := json.Unmarshal(p.D, &d); err != nil || d.HeartbeatInterval <= 0 {
		c.t.Fatalf("bad Hello %s: %v", p.D, err)
	}
	return d.HeartbeatInterval
}

func identifyBody(token string, shard []int, intents int64) map[string]any {
	d := map[string]any{"token": token, "intents": intents, "properties": map[string]string{"os": "linux", "browser": "test", "device": "test"}}
	if shard != nil {
		d["shard"] = shard
	}
	return d
}

type readyD struct {
	V                int    `json:"v"`
	SessionID        string `json:"session_id"`
	ResumeGatewayURL string `json:"resume_gateway_url"`
	Shard            []int  `json:"shard"`
	User             User   `json:"user"`
	Guilds           []struct {
		ID          Snowflake `json:"id"`
		Unavailable bool      `json:"unavailable"`
	} `json:"guilds"`
}

// identify sends Identify and reads READY.
func (c *testClient) identify(token string, shard []int, intents int64) readyD {
	c.t.Helper()
	c.send(opIdentify, identifyBody(token, shard, intents))
	p := c.untilEvent("READY")
	var r readyD
	if err := json.Unmarshal(p.D, &r); err != nil {
		c.t.Fatalf("READY: %v", err)
	}
	return r
}
