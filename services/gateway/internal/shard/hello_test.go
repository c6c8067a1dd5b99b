package shard

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestBeforeHello covers what the simulator cannot stage: a gateway that never says
// Hello, and one that sends op 7 before Hello. Either way the shard gives up on the
// connection and dials again, keeping its (absent) session.
func TestBeforeHello(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		first   string // sent right after the upgrade; empty sends nothing
		wantErr string
	}{
		{"no hello", "", "waiting for hello"},
		{"op 7 before hello", `{"op":7,"d":null,"s":null,"t":null}`, "reconnect (op 7) before hello"},
		{"garbage before hello", `not json`, "waiting for hello"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var conns atomic.Int64
			upgrader := websocket.Upgrader{}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ws, err := upgrader.Upgrade(w, r, nil)
				if err != nil {
					return
				}
				defer func() { _ = ws.Close() }()
				conns.Add(1)
				if tc.first != "" {
					if err := ws.WriteMessage(websocket.TextMessage, []byte(tc.first)); err != nil {
						return
					}
				}
				for { // until the client leaves
					if _, _, err := ws.ReadMessage(); err != nil {
						return
					}
				}
			}))
			t.Cleanup(srv.Close)
			m, err := NewManager(Config{
				Token:      "hello-test-token-value",
				GatewayURL: "ws" + strings.TrimPrefix(srv.URL, "http"),
				ShardCount: 1,
				Handler:    HandlerFunc(func(Dispatch) {}),
				Logger:     testLogger(t),
				Timing:     Timing{HelloTimeout: 100 * time.Millisecond, BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond},
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- m.Run(ctx) }()
			waitFor(t, eventually, "a second connection", func() bool { return conns.Load() >= 2 })
			st := m.Status()[0]
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Run = %v, want nil after cancel", err)
			}
			if !strings.Contains(st.LastError, tc.wantErr) || st.Reconnects < 1 {
				t.Fatalf("status %+v, want a reconnect after %q", st, tc.wantErr)
			}
		})
	}
}
