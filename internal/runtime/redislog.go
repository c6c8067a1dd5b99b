package runtime

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/kubecord/kubecord/internal/redact"
)

// RedisLogger passes go-redis's own messages (failed dials, pool trouble)
// to a slog.Logger at Warn with component=redis. go-redis otherwise prints
// them with the standard log package straight to stderr: unstructured, and
// past the redacting handler NewLogger builds. It implements go-redis's
// logging interface (Printf with a context); install it with
// redis.SetLogger, or once per process with RouteRedisLogs.
type RedisLogger struct {
	// l is the destination; nil means the process logger (see
	// RouteRedisLogs).
	l *slog.Logger
}

// NewRedisLogger returns a RedisLogger writing to l. Build l with NewLogger
// so that secrets in the messages are redacted.
func NewRedisLogger(l *slog.Logger) *RedisLogger { return &RedisLogger{l: l} }

// Printf logs one go-redis message. go-redis prefixes some of its messages
// with "redis: " and ends some with a newline; both are dropped, the
// component attribute says where the line comes from.
func (r *RedisLogger) Printf(ctx context.Context, format string, args ...any) {
	l := r.l
	if l == nil {
		l = redisDest.Load()
	}
	if l == nil {
		return
	}
	if ctx == nil {
		ctx = context.Background() // slog hands ctx to handlers, which may use it
	}
	if !l.Enabled(ctx, slog.LevelWarn) {
		return
	}
	msg := strings.TrimRight(fmt.Sprintf(format, args...), "\n")
	msg = strings.TrimPrefix(msg, "redis: ")
	l.LogAttrs(ctx, slog.LevelWarn, msg, slog.String("component", "redis"))
}

var (
	// redisRouted is set by RouteRedisLogs; until then NewLogger leaves
	// redisDest alone, so tests building loggers in parallel change nothing
	// global.
	redisRouted atomic.Bool
	// redisDest is the process logger go-redis writes to once routed.
	redisDest  atomic.Pointer[slog.Logger]
	routeRedis sync.Once
)

// RouteRedisLogs sends go-redis's messages, for the rest of the process, to
// the latest logger NewLogger built, so they follow the command's
// --log-level and --log-format. Until NewLogger runs they go to a redacting
// text logger on fallback: a command that builds no logger, such as
// `kubecord reshard`, still gets structured, redacted lines. go-redis's
// logger is one global, so call this once, from main, before any Redis
// client exists; later calls do nothing.
func RouteRedisLogs(fallback io.Writer) {
	routeRedis.Do(func() {
		h := slog.NewTextHandler(redact.NewWriter(fallback), &slog.HandlerOptions{Level: slog.LevelInfo})
		redisDest.Store(slog.New(redact.NewHandler(h)))
		redisRouted.Store(true)
		redis.SetLogger(&RedisLogger{})
	})
}

// noteProcessLogger makes l the destination of go-redis's messages if
// RouteRedisLogs ran. NewLogger calls it: every command builds its logger
// once, after parsing its flags.
func noteProcessLogger(l *slog.Logger) {
	if redisRouted.Load() {
		redisDest.Store(l)
	}
}
