package rest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/kubecord/kubecord/services/rest/internal/ratelimit"
)

// outbound is one request to send to Discord, whichever API it came from.
type outbound struct {
	method string
	// path is the route path without /api/vN and without the query.
	path string
	// version is the API version for the URL; 0 sends /api/... without
	// one, as the caller did.
	version  int
	rawQuery string
	header   http.Header // without Authorization
	body     []byte
	bot      *botInfo
	api      string // "grpc" or "http", for metrics
}

// inbound is Discord's answer plus what the service did to get it.
type inbound struct {
	status  int
	header  http.Header
	body    []byte
	waited  time.Duration
	retries int
	verdict ratelimit.Verdict
}

// upstreamError is a failure to get any answer from Discord.
type upstreamError struct{ err error }

func (e *upstreamError) Error() string { return "Discord did not answer: " + e.err.Error() }

// newUpstreamError drops the URL from net/http's errors: webhook and
// interaction tokens travel in the path and must not reach an error
// message or a log line.
func newUpstreamError(err error) *upstreamError {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return &upstreamError{err: err}
}
func (e *upstreamError) Unwrap() error { return e.err }

// bodyTooLargeError refuses a body before anything is sent.
type bodyTooLargeError struct{ size, limit int64 }

func (e *bodyTooLargeError) Error() string {
	return fmt.Sprintf("request body of %d bytes is over the %d-byte limit (Discord's request size limit; raise --max-body-bytes for boosted guilds)", e.size, e.limit)
}

// errBodyTooLarge is returned by readBody for a body over its limit.
var errBodyTooLarge = errors.New("body over the size limit")

// readBody reads a whole body of at most limit bytes, in one allocation
// when its length is announced; a longer body is errBodyTooLarge, never
// silently cut.
func readBody(r io.Reader, length, limit int64) ([]byte, error) {
	switch {
	case length == 0:
		return nil, nil
	case length > limit:
		return nil, errBodyTooLarge
	case length > 0:
		b := make([]byte, length)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, err
		}
		return b, nil
	}
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, errBodyTooLarge
	}
	return b, nil
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions:
		return true
	}
	return false
}

func (s *Service) url(o *outbound) string {
	u := s.cfg.DiscordURL
	if o.version > 0 {
		u += "/v" + strconv.Itoa(o.version)
	}
	u += o.path
	if o.rawQuery != "" {
		u += "?" + o.rawQuery
	}
	return u
}

// do sends o, waiting for ratelimits first, retrying after 429s and (for
// idempotent methods) 502/503/504 and network errors, within ctx. When a
// retry cannot happen in time, the last answer is returned as is.
func (s *Service) do(ctx context.Context, o *outbound) (*inbound, error) {
	if int64(len(o.body)) > s.cfg.MaxBodyBytes {
		s.metrics.refused.WithLabelValues(o.bot.label, "body_too_large").Inc()
		return nil, &bodyTooLargeError{size: int64(len(o.body)), limit: s.cfg.MaxBodyBytes}
	}
	route := ratelimit.ParseRoute(o.method, o.path, time.Now())
	target := s.url(o)
	var last *inbound
	var waited time.Duration
	retries, r429, r5xx := 0, 0, 0
	for {
		t0 := time.Now()
		err := s.lim.Wait(ctx, o.bot.key, route, o.bot.globalLimit)
		waited += time.Since(t0)
		if err != nil {
			if last != nil {
				// A retry would not fit in the deadline: the caller gets
				// Discord's last answer rather than nothing.
				last.waited, last.retries = waited, retries-1
				return last, nil
			}
			s.countRefusal(o.bot.label, err)
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, o.method, target, bytes.NewReader(o.body))
		if err != nil {
			_, _ = s.lim.Observe(context.WithoutCancel(ctx), o.bot.key, route, 0, nil, nil)
			return nil, fmt.Errorf("building the request: %w", err)
		}
		for k, v := range o.header {
			req.Header[k] = v
		}
		if o.bot.auth != "" {
			req.Header.Set("Authorization", o.bot.auth)
		}
		if req.Header.Get("User-Agent") == "" {
			req.Header.Set("User-Agent", s.cfg.UserAgent)
		}
		if len(o.body) == 0 {
			req.Body, req.GetBody, req.ContentLength = http.NoBody, nil, 0
		}
		resp, err := s.client.Do(req)
		if err != nil {
			s.observe(ctx, o, route, 0, nil, nil)
			if ctx.Err() != nil {
				return nil, context.Cause(ctx)
			}
			if idempotent(o.method) && r5xx < s.cfg.MaxRetries {
				r5xx++
				retries++
				s.metrics.retries.WithLabelValues(o.bot.label, "network").Inc()
				if s.backoff(ctx, r5xx) != nil {
					return nil, newUpstreamError(err)
				}
				continue
			}
			return nil, newUpstreamError(err)
		}
		body, err := readBody(resp.Body, resp.ContentLength, s.cfg.MaxResponseBytes)
		_ = resp.Body.Close() // the body is read; closing cannot lose data
		if err != nil {
			s.observe(ctx, o, route, 0, nil, nil)
			if ctx.Err() != nil {
				return nil, context.Cause(ctx)
			}
			return nil, &upstreamError{err: fmt.Errorf("reading the response body: %w", err)}
		}
		v := s.observe(ctx, o, route, resp.StatusCode, resp.Header, body)
		last = &inbound{status: resp.StatusCode, header: resp.Header, body: body, waited: waited, retries: retries, verdict: v}
		switch {
		case resp.StatusCode == http.StatusTooManyRequests:
			s.metrics.limited.WithLabelValues(o.bot.label, v.Scope).Inc()
			s.log.Warn("Discord answered 429", "bot", o.bot.label, "route", route.Key, "scope", v.Scope, "retry_after", v.RetryAfter)
			if r429 < s.cfg.Max429Retries {
				r429++
				retries++
				s.metrics.retries.WithLabelValues(o.bot.label, "429").Inc()
				continue // the limiter now knows how long to wait
			}
		case (resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusServiceUnavailable ||
			resp.StatusCode == http.StatusGatewayTimeout) && idempotent(o.method) && r5xx < s.cfg.MaxRetries:
			r5xx++
			retries++
			s.metrics.retries.WithLabelValues(o.bot.label, "5xx").Inc()
			if s.backoff(ctx, r5xx) != nil {
				return last, nil
			}
			continue
		}
		return last, nil
	}
}

// observe records a response with the limiter. The call's context may be
// ending; the bookkeeping must happen anyway.
func (s *Service) observe(ctx context.Context, o *outbound, route ratelimit.Route, status int, h http.Header, body []byte) ratelimit.Verdict {
	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	v, err := s.lim.Observe(octx, o.bot.key, route, status, h, body)
	if err != nil {
		s.log.Error("recording a response in the ratelimit store", "bot", o.bot.label, "route", route.Key, "err", err)
	}
	return v
}

func (s *Service) backoff(ctx context.Context, attempt int) error {
	d := s.cfg.RetryBackoff << (attempt - 1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Service) countRefusal(label string, err error) {
	reason := "other"
	var re *ratelimit.RefusedError
	var de *ratelimit.DeadlineError
	switch {
	case errors.Is(err, ratelimit.ErrQueueFull):
		reason = "queue_full"
	case errors.As(err, &re):
		reason = string(re.Reason)
	case errors.As(err, &de), errors.Is(err, context.DeadlineExceeded):
		reason = "deadline"
	case errors.Is(err, context.Canceled):
		reason = "canceled"
	}
	s.metrics.refused.WithLabelValues(label, reason).Inc()
}
