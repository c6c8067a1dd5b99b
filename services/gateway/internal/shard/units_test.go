package shard

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestClassifyClose(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code    int
		want    action
		wantErr string
	}{
		{4000, actResume, ""},
		{4001, actResume, ""},
		{4002, actResume, ""},
		{4003, actIdentify, ""},
		{4004, actFatalAll, "bot token"},
		{4005, actResume, ""},
		{4007, actIdentify, ""},
		{4008, actResume, ""},
		{4009, actIdentify, ""},
		{4010, actFatalShard, "shard [3, 8]"},
		{4011, actFatalShard, "raise the shard count"},
		{4012, actFatalShard, "v=10"},
		{4013, actFatalShard, "unknown bits"},
		{4014, actFatalShard, "privileged intent"},
		{1000, actResume, ""},
		{1001, actResume, ""},
		{1006, actResume, ""},
		{4999, actResume, ""},
	}
	for _, tc := range tests {
		got, err := classifyClose(tc.code, 3, 8)
		if got != tc.want {
			t.Errorf("classifyClose(%d) = %v, want %v", tc.code, got, tc.want)
		}
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("classifyClose(%d) error = %v, want nil", tc.code, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrFatal) {
			t.Errorf("classifyClose(%d) error = %v, want ErrFatal mentioning %q", tc.code, err, tc.wantErr)
		}
	}
}

func TestSendLimiter(t *testing.T) {
	t.Parallel()
	base := time.Unix(1_700_000_000, 0)
	// 120 per 60 s with a 41.25 s heartbeat: 2 beats + jitter beat + identify + 2 requested.
	l := newSendLimiter(120, time.Minute, 41250*time.Millisecond)
	if got := l.commandLimit(); got != 114 {
		t.Fatalf("command limit = %d, want 114", got)
	}
	for i := range 114 {
		if d := l.reserve(base.Add(time.Duration(i)*time.Millisecond), false); d != 0 {
			t.Fatalf("command %d waited %s, want 0", i, d)
		}
	}
	d := l.reserve(base.Add(200*time.Millisecond), false)
	if want := time.Minute - 200*time.Millisecond; d < want || d > want+10*time.Millisecond {
		t.Fatalf("command 115 wait = %s, want about %s", d, want)
	}
	// Heartbeats still go out, into the headroom.
	for i := range 6 {
		if d := l.reserve(base.Add(time.Second), true); d != 0 {
			t.Fatalf("heartbeat %d waited %s", i, d)
		}
	}
	// After the window, the oldest commands have left and commands flow again.
	if d := l.reserve(base.Add(time.Minute+2*time.Second), false); d != 0 {
		t.Fatalf("command after the window moved = wait %s, want 0", d)
	}
}

func TestHeartbeatHeadroomBounds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		limit     int
		window    time.Duration
		heartbeat time.Duration
		want      int
	}{
		{120, time.Minute, 41250 * time.Millisecond, 6},
		{120, time.Minute, 45 * time.Second, 6},
		{10, time.Second, 10 * time.Millisecond, 9}, // one left for commands
		{1, time.Second, 10 * time.Millisecond, 0},
		{120, time.Minute, 0, 4},
	}
	for _, tc := range tests {
		if got := heartbeatHeadroom(tc.limit, tc.window, tc.heartbeat); got != tc.want {
			t.Errorf("heartbeatHeadroom(%d, %s, %s) = %d, want %d", tc.limit, tc.window, tc.heartbeat, got, tc.want)
		}
	}
}

func TestHeartbeater(t *testing.T) {
	t.Parallel()
	var h heartbeater
	t0 := time.Unix(100, 0)
	if h.beat(t0) {
		t.Fatal("first beat reported a zombie")
	}
	h.ack(t0.Add(30 * time.Millisecond))
	if got := h.lastLatency(); got != 30*time.Millisecond {
		t.Fatalf("latency = %s, want 30ms", got)
	}
	if h.beat(t0.Add(time.Second)) {
		t.Fatal("beat after an ACK reported a zombie")
	}
	// No ACK before the next beat: zombie.
	if !h.beat(t0.Add(2 * time.Second)) {
		t.Fatal("beat without an ACK since the previous one did not report a zombie")
	}
	// A requested heartbeat does not judge: its ACK may still be on the way when the
	// scheduled beat is due.
	var h2 heartbeater
	h2.requested(t0)
	if h2.beat(t0.Add(time.Millisecond)) {
		t.Fatal("scheduled beat right after a requested one reported a zombie")
	}
	h2.ack(t0.Add(5 * time.Millisecond)) // credited to the scheduled beat
	if got := h2.lastLatency(); got != 4*time.Millisecond {
		t.Fatalf("latency = %s, want 4ms (from the scheduled beat)", got)
	}
	h2.ack(t0.Add(6 * time.Millisecond)) // then to the requested one
	if got := h2.lastLatency(); got != 6*time.Millisecond {
		t.Fatalf("latency = %s, want 6ms (from the requested beat)", got)
	}
	if h2.beat(t0.Add(time.Second)) {
		t.Fatal("beat after both ACKs reported a zombie")
	}
	// A stray ACK changes nothing.
	var h3 heartbeater
	h3.ack(t0)
	if h3.lastLatency() != 0 {
		t.Fatal("stray ACK set a latency")
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	for failures := 1; failures < 40; failures++ {
		d := backoff(time.Second, time.Minute, failures)
		ceil := min(time.Second<<min(failures-1, 20), time.Minute)
		if d < ceil/2 || d > ceil {
			t.Fatalf("backoff(failures=%d) = %s, want in [%s, %s]", failures, d, ceil/2, ceil)
		}
	}
}

func TestGatewayURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		base, compression, want, wantErr string
	}{
		{"wss://gateway.discord.gg", CompressionZlib, "wss://gateway.discord.gg/?compress=zlib-stream&encoding=json&v=10", ""},
		{"wss://gateway.discord.gg/?v=6&compress=zstd-stream", CompressionNone, "wss://gateway.discord.gg/?encoding=json&v=10", ""},
		{"http://127.0.0.1:99/gw", CompressionZstd, "ws://127.0.0.1:99/gw?compress=zstd-stream&encoding=json&v=10", ""},
		{"https://x", CompressionNone, "wss://x/?encoding=json&v=10", ""},
		{"ftp://x", CompressionNone, "", "scheme"},
		{"://bad", CompressionNone, "", "parsing"},
	}
	for _, tc := range tests {
		got, err := gatewayURL(tc.base, tc.compression)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("gatewayURL(%q) error = %v, want %q", tc.base, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("gatewayURL(%q, %q) = %q, %v; want %q", tc.base, tc.compression, got, err, tc.want)
		}
	}
}

func TestFetchGatewayBot(t *testing.T) {
	t.Parallel()
	const token = "MTIz.secret-token.value"
	tests := []struct {
		name    string
		status  int
		body    string
		wantErr string
		want    GatewayBot
	}{
		{"ok", 200, `{"url":"wss://gateway.discord.gg","shards":9,"session_start_limit":{"total":1000,"remaining":999,"reset_after":14400000,"max_concurrency":16}}`, "", GatewayBot{URL: "wss://gateway.discord.gg", Shards: 9}},
		{"unauthorized", 401, `{"message":"401: Unauthorized","code":0}`, "token was rejected", GatewayBot{}},
		{"server error", 502, `bad gateway`, "HTTP 502", GatewayBot{}},
		{"bad json", 200, `{"url":`, "decoding", GatewayBot{}},
		{"no url", 200, `{"shards":1,"session_start_limit":{"total":1,"remaining":1,"max_concurrency":1}}`, "no url", GatewayBot{}},
		{"zero concurrency", 200, `{"url":"wss://x","shards":1,"session_start_limit":{"total":1,"remaining":1,"max_concurrency":0}}`, "inconsistent", GatewayBot{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/api/v10/gateway/bot" || r.Header.Get("Authorization") != "Bot "+token || !strings.HasPrefix(r.Header.Get("User-Agent"), "DiscordBot (") {
					http.Error(w, "bad request shape", http.StatusBadRequest)
					return
				}
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			t.Cleanup(srv.Close)
			got, err := FetchGatewayBot(t.Context(), srv.URL+"/api/v10/", token)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), token) {
					t.Fatalf("error %q contains the token", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.URL != tc.want.URL || got.Shards != tc.want.Shards || got.SessionStartLimit.MaxConcurrency != 16 ||
				got.SessionStartLimit.Remaining != 999 || got.SessionStartLimit.ResetAfter != 4*time.Hour {
				t.Fatalf("got %+v", got)
			}
		})
	}
	if _, err := FetchGatewayBot(t.Context(), "http://127.0.0.1:1", ""); err == nil {
		t.Error("FetchGatewayBot without a token = nil error")
	}
}
