package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestRedisLoggerPrintf(t *testing.T) {
	t.Parallel()
	var noCtx context.Context // go-redis never passes nil, but a nil ctx must not crash the handler chain
	tests := []struct {
		name    string
		level   string
		ctx     context.Context
		format  string
		args    []any
		wantMsg string // "" means nothing is logged
	}{
		{
			name: "dial failure", level: "info", ctx: t.Context(),
			format:  "redis: connection pool: failed to dial after %d attempts: %v",
			args:    []any{5, errors.New("dial tcp 127.0.0.1:1: connect: connection refused")},
			wantMsg: "connection pool: failed to dial after 5 attempts: dial tcp 127.0.0.1:1: connect: connection refused",
		},
		{
			name: "URL password redacted", level: "info", ctx: t.Context(),
			format:  "sentinel: new master=%q addr=%q",
			args:    []any{"mymaster", "redis://:hunter2hunter2@10.0.0.7:6379"},
			wantMsg: `sentinel: new master="mymaster" addr="redis://:[redacted]@10.0.0.7:6379"`,
		},
		{
			name: "trailing newline dropped", level: "info", ctx: noCtx,
			format: "Conn has unread data (not push notification), removing it\n",
			// The nil ctx took the same path as any other.
			wantMsg: "Conn has unread data (not push notification), removing it",
		},
		{
			name: "below the logger's level", level: "error", ctx: t.Context(),
			format: "redis: connection pool: failed to dial after %d attempts", args: []any{1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			l, err := NewLogger(tt.level, "json", &buf)
			if err != nil {
				t.Fatal(err)
			}
			NewRedisLogger(l).Printf(tt.ctx, tt.format, tt.args...)
			if tt.wantMsg == "" {
				if buf.Len() != 0 {
					t.Fatalf("logged %q, want nothing at level %s", buf.String(), tt.level)
				}
				return
			}
			var rec map[string]any
			if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
				t.Fatalf("want one JSON record, got %q: %v", buf.String(), err)
			}
			if rec["level"] != "WARN" || rec["component"] != "redis" || rec["msg"] != tt.wantMsg {
				t.Errorf("record %v, want level WARN, component redis, msg %q", rec, tt.wantMsg)
			}
			if strings.Contains(buf.String(), "hunter2") {
				t.Errorf("password in the log line: %s", buf.String())
			}
		})
	}
}

func TestRedisLoggerWithoutRouteIsSilent(t *testing.T) {
	t.Parallel()
	// No test in this binary calls RouteRedisLogs in process (it is global),
	// so a RedisLogger without a logger has nowhere to write and must not
	// panic.
	(&RedisLogger{}).Printf(t.Context(), "redis: %s", "dropped")
}

// redisChildEnv selects what the test binary does when re-run as a child of
// TestRedisLogsRouted.
const redisChildEnv = "KUBECORD_TEST_REDISLOG_CHILD"

// TestRedisLogsRouted runs go-redis for real against a closed port in a child
// process, so that RouteRedisLogs (process-wide) changes no other test and the
// child's stdout and stderr can be told apart: go-redis's own logger writes
// to stderr.
func TestRedisLogsRouted(t *testing.T) {
	if mode := os.Getenv(redisChildEnv); mode != "" {
		redisLogChild(mode, os.Getenv(redisChildEnv+"_ADDR"))
		return
	}
	t.Parallel()
	tests := []struct {
		mode string
		// check inspects the child's stdout and stderr.
		check func(t *testing.T, stdout, stderr string)
	}{
		{
			// The control: without RouteRedisLogs the line bypasses slog.
			mode: "unrouted",
			check: func(t *testing.T, stdout, stderr string) {
				if !strings.HasPrefix(stderr, "redis: ") || !strings.Contains(stderr, "failed to dial") || stdout != "" {
					t.Errorf("without RouteRedisLogs: stdout %q, stderr %q; want go-redis's own line on stderr", stdout, stderr)
				}
			},
		},
		{
			mode: "json",
			check: func(t *testing.T, stdout, stderr string) {
				if stderr != "" {
					t.Errorf("stderr %q, want nothing: go-redis's own logger wrote", stderr)
				}
				var rec map[string]any
				if err := json.Unmarshal([]byte(stdout), &rec); err != nil {
					t.Fatalf("stdout %q, want one JSON record: %v", stdout, err)
				}
				msg, _ := rec["msg"].(string)
				if rec["level"] != "WARN" || rec["component"] != "redis" || !strings.HasPrefix(msg, "connection pool: failed to dial after 1 attempts: ") {
					t.Errorf("record %v, want level WARN, component redis, the dial failure as msg", rec)
				}
			},
		},
		{
			// A command that builds no logger (kubecord reshard) still gets
			// structured lines.
			mode: "fallback",
			check: func(t *testing.T, stdout, stderr string) {
				if stdout != "" || strings.Contains(stderr, "\nredis: ") || strings.HasPrefix(stderr, "redis: ") {
					t.Errorf("stdout %q, stderr %q: want only the fallback logger's line on stderr", stdout, stderr)
				}
				for _, want := range []string{"level=WARN", `msg="connection pool: failed to dial after 1 attempts: `, "component=redis"} {
					if !strings.Contains(stderr, want) {
						t.Errorf("stderr %q lacks %q", stderr, want)
					}
				}
			},
		},
		{
			// --log-level error: the Warn line is dropped, not sent to stderr.
			mode: "quiet",
			check: func(t *testing.T, stdout, stderr string) {
				if stdout != "" || stderr != "" {
					t.Errorf("stdout %q, stderr %q, want nothing at level error", stdout, stderr)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			t.Parallel()
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestRedisLogsRouted$")
			cmd.Env = append(os.Environ(), redisChildEnv+"="+tt.mode, redisChildEnv+"_ADDR="+closedAddr(t))
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("child: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
			}
			tt.check(t, stdout.String(), stderr.String())
		})
	}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// redisLogChild sets up logging as mode says, makes go-redis fail one dial
// to addr, and exits: nothing else may write to stdout or stderr.
func redisLogChild(mode, addr string) {
	switch mode {
	case "unrouted":
	case "fallback":
		RouteRedisLogs(os.Stderr)
	case "json", "quiet":
		RouteRedisLogs(os.Stderr)
		level := map[string]string{"json": "info", "quiet": "error"}[mode]
		if _, err := NewLogger(level, "json", os.Stdout); err != nil {
			os.Exit(3)
		}
	default:
		os.Exit(4)
	}
	// One dial attempt and no command retry: one log line, at once.
	client := redis.NewClient(&redis.Options{Addr: addr, DialerRetries: 1, MaxRetries: -1})
	if err := client.Ping(context.Background()).Err(); err == nil {
		os.Exit(5) // something listens on the "closed" port
	}
	_ = client.Close()
	os.Exit(0) // skip TestMain: its PASS line would land on stdout
}
