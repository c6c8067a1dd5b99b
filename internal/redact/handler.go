package redact

import (
	"context"
	"fmt"
	"io"
	"log/slog"
)

// Handler is a slog.Handler that redacts the message, every attribute key and
// value (strings, errors, fmt-printed values, nested groups, LogValuers) before
// passing the record on.
type Handler struct {
	next slog.Handler
	r    *Redactor
}

// NewHandler wraps next so that every record passes through the process-wide
// Redactor first.
func NewHandler(next slog.Handler) *Handler { return Default().Handler(next) }

// Handler wraps next so that every record passes through r first.
func (r *Redactor) Handler(next slog.Handler) *Handler { return &Handler{next: next, r: r} }

// Enabled reports whether the wrapped handler handles level.
func (h *Handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

// Handle redacts r and passes it to the wrapped handler.
func (h *Handler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, h.r.String(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	if err := h.next.Handle(ctx, out); err != nil {
		return fmt.Errorf("redacting log handler: %w", err)
	}
	return nil
}

// WithAttrs returns a Handler whose attributes are redacted once, up front.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		red[i] = h.attr(a)
	}
	return &Handler{next: h.next.WithAttrs(red), r: h.r}
}

// WithGroup returns a Handler that opens group name in the wrapped handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{next: h.next.WithGroup(h.r.String(name)), r: h.r}
}

func (h *Handler) attr(a slog.Attr) slog.Attr {
	a.Key = h.r.String(a.Key)
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		a.Value = slog.StringValue(h.r.String(v.String()))
	case slog.KindGroup:
		group := v.Group()
		red := make([]slog.Attr, len(group))
		for i, g := range group {
			red[i] = h.attr(g)
		}
		a.Value = slog.GroupValue(red...)
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			a.Value = slog.StringValue(h.r.String(x.Error()))
		default:
			// Keep the value itself (so a JSON handler still renders its
			// structure) unless its printed form carries a secret.
			s := fmt.Sprintf("%+v", x)
			if red := h.r.String(s); red != s {
				a.Value = slog.StringValue(red)
			} else {
				a.Value = v
			}
		}
	default:
		a.Value = v
	}
	return a
}

// Writer redacts everything written through it. slog's text and JSON
// handlers write each record with a single Write call, so a secret is never
// split between two writes.
type Writer struct {
	w io.Writer
	r *Redactor
}

// NewWriter wraps w with the process-wide Redactor.
func NewWriter(w io.Writer) *Writer { return Default().Writer(w) }

// Writer wraps w so that everything written passes through r first.
func (r *Redactor) Writer(w io.Writer) *Writer { return &Writer{w: w, r: r} }

// Write redacts p and writes the result. It reports len(p) on success, as
// io.Writer requires, even though the bytes written may differ in length.
func (w *Writer) Write(p []byte) (int, error) {
	if _, err := io.WriteString(w.w, w.r.String(string(p))); err != nil {
		return 0, fmt.Errorf("writing redacted output: %w", err)
	}
	return len(p), nil
}
