package runtime

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/kubecord/kubecord/internal/redact"
)

// NewLogger returns a logger writing to w at level (debug, info, warn,
// error) in format (text or json). Everything it writes passes through
// redact twice: attribute by attribute, then the formatted line, so a
// registered secret or anything shaped like a bot token never reaches w.
// Once RouteRedisLogs has run, go-redis's messages go to the latest logger
// NewLogger returned.
func NewLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	lvl, err := parseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	out := redact.NewWriter(w)
	var h slog.Handler
	switch format {
	case "text":
		h = slog.NewTextHandler(out, opts)
	case "json":
		h = slog.NewJSONHandler(out, opts)
	default:
		return nil, fmt.Errorf("log format %q: use text or json", format)
	}
	l := slog.New(redact.NewHandler(h))
	noteProcessLogger(l)
	return l, nil
}

func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q is not a level: use debug, info, warn or error", s)
}
