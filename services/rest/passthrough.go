package rest

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kubecord/kubecord/services/rest/internal/ratelimit"
)

// Passthrough headers Kubecord reads and never forwards.
const (
	// HeaderBot names a configured bot for callers that send no token.
	HeaderBot = "X-Kubecord-Bot"
	// HeaderAuth carries the service's shared secret (--auth-secret) for
	// callers that borrow a configured bot's token.
	HeaderAuth = "X-Kubecord-Auth"
	// HeaderRefused is set on answers Kubecord made itself instead of
	// sending the request (the reason, e.g. "queue_full").
	HeaderRefused = "X-Kubecord-Refused"
)

// hopHeaders are connection-level headers a proxy must not forward.
var hopHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true, "Proxy-Authorization": true,
	"Proxy-Connection": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"Host": true, "Content-Length": true, "Accept-Encoding": true,
}

// Handler returns the HTTP passthrough: Discord's API under /api (any
// version), with Kubecord's ratelimiting in front. Point a Discord
// library's API base at http://<addr>/api/v10.
func (s *Service) Handler() http.Handler {
	return http.HandlerFunc(s.servePassthrough)
}

func (s *Service) servePassthrough(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	path, version, ok := ratelimit.StripVersion(r.URL.EscapedPath())
	if !ok {
		writeJSONError(w, http.StatusNotFound, "not_found", 0, "Kubecord's passthrough serves Discord's API under /api/v{N}/...; use http://<this host>/api/v10 as the API base", 0)
		return
	}
	bot, status, msg := s.passthroughBot(r, path)
	if bot == nil {
		writeJSONError(w, status, "unauthorized", 0, msg, 0)
		return
	}
	// Read the whole body first: its size is checked before sending, and
	// retries need it again.
	body, err := readBody(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes), r.ContentLength, s.cfg.MaxBodyBytes)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) || errors.Is(err, errBodyTooLarge) {
			s.metrics.refused.WithLabelValues(bot.label, "body_too_large").Inc()
			writeJSONError(w, http.StatusRequestEntityTooLarge, "body_too_large", 40005,
				"Request entity too large: over "+strconv.FormatInt(s.cfg.MaxBodyBytes, 10)+" bytes (Discord's limit; raise --max-body-bytes for boosted guilds)", 0)
			return
		}
		writeJSONError(w, http.StatusBadRequest, "bad_body", 0, "reading the request body: "+err.Error(), 0)
		return
	}
	h := make(http.Header, len(r.Header))
	for k, v := range r.Header {
		if hopHeaders[k] || k == "Authorization" || strings.HasPrefix(k, "X-Kubecord-") {
			continue
		}
		h[k] = v
	}
	ctx := r.Context()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.RequestTimeout)
		defer cancel()
	}
	o := &outbound{method: r.Method, path: path, version: version, rawQuery: r.URL.RawQuery, header: h, body: body, bot: bot, api: "http"}
	res, err := s.do(ctx, o)
	code := 0
	if err != nil {
		code = s.writeRefusal(w, err)
	} else {
		code = res.status
		dst := w.Header()
		for k, v := range res.header {
			if !hopHeaders[k] {
				dst[k] = v
			}
		}
		dst.Set("Content-Length", strconv.Itoa(len(res.body)))
		w.WriteHeader(res.status)
		if r.Method != http.MethodHead {
			_, _ = w.Write(res.body) // the caller went away; nothing to do
		}
		s.metrics.waited.WithLabelValues(bot.label).Observe(res.waited.Seconds())
	}
	s.metrics.requests.WithLabelValues(bot.label, "http", strconv.Itoa(code)).Inc()
	s.metrics.latency.WithLabelValues(bot.label, "http").Observe(time.Since(start).Seconds())
}

// passthroughBot picks the token of a passthrough request: the caller's
// own Authorization, else a configured bot (X-Kubecord-Bot or the
// default), which needs the shared secret when one is set. Webhook and
// interaction token routes may go without any token.
func (s *Service) passthroughBot(r *http.Request, path string) (*botInfo, int, string) {
	if auth := r.Header.Get("Authorization"); auth != "" {
		bi, err := s.resolveBot(auth, "")
		if err != nil {
			return nil, http.StatusUnauthorized, err.Error()
		}
		return bi, 0, ""
	}
	name := r.Header.Get(HeaderBot)
	if name == "" && ratelimit.ParseRoute(r.Method, path, time.Now()).WebhookToken {
		// Webhook and interaction tokens in the path are the credential.
		return noAuth, 0, ""
	}
	bi, err := s.resolveBot("", name)
	if err != nil {
		return nil, http.StatusUnauthorized, err.Error()
	}
	if bi == nil {
		// No token at all: Discord decides (a few public routes need
		// none; the rest answer 401).
		return noAuth, 0, ""
	}
	if s.cfg.AuthSecret != "" {
		got := r.Header.Get(HeaderAuth)
		if subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.AuthSecret)) != 1 {
			return nil, http.StatusUnauthorized, "using a configured bot through the passthrough needs the shared secret in " + HeaderAuth + " (or send your own Authorization: Bot <token>)"
		}
	}
	return bi, 0, ""
}

// writeRefusal answers a request that was not sent (or got no answer) and
// returns the status written.
func (s *Service) writeRefusal(w http.ResponseWriter, err error) int {
	var re *ratelimit.RefusedError
	var de *ratelimit.DeadlineError
	var be *bodyTooLargeError
	var ue *upstreamError
	switch {
	case errors.Is(err, ratelimit.ErrQueueFull):
		writeJSONError(w, http.StatusTooManyRequests, "queue_full", 0, "kubecord: "+err.Error()+"; slow down or raise --max-queue", time.Second)
		return http.StatusTooManyRequests
	case errors.As(err, &re):
		switch re.Reason {
		case ratelimit.ReasonBadWebhook:
			writeJSONError(w, http.StatusUnauthorized, string(re.Reason), 50027, "Invalid Webhook Token (kubecord: "+re.Error()+")", 0)
			return http.StatusUnauthorized
		case ratelimit.ReasonBadToken:
			writeJSONError(w, http.StatusUnauthorized, string(re.Reason), 0, "401: Unauthorized (kubecord: "+re.Error()+")", 0)
			return http.StatusUnauthorized
		}
		writeJSONError(w, http.StatusTooManyRequests, string(re.Reason), 0, "kubecord: "+re.Error(), re.RetryAfter)
		return http.StatusTooManyRequests
	case errors.As(err, &de), errors.Is(err, context.DeadlineExceeded):
		writeJSONError(w, http.StatusGatewayTimeout, "deadline", 0, "kubecord: "+err.Error(), 0)
		return http.StatusGatewayTimeout
	case errors.As(err, &be):
		writeJSONError(w, http.StatusRequestEntityTooLarge, "body_too_large", 40005, "Request entity too large: "+be.Error(), 0)
		return http.StatusRequestEntityTooLarge
	case errors.As(err, &ue):
		writeJSONError(w, http.StatusBadGateway, "upstream", 0, "kubecord: "+ue.Error(), 0)
		return http.StatusBadGateway
	case errors.Is(err, context.Canceled):
		return 499 // the caller is gone; nobody reads this
	}
	s.log.Error("passthrough request failed", "err", err)
	writeJSONError(w, http.StatusServiceUnavailable, "internal", 0, "kubecord: "+err.Error(), time.Second)
	return http.StatusServiceUnavailable
}

// writeJSONError writes an error in Discord's shape, so libraries report
// it sensibly; HeaderRefused tells it apart from Discord's own.
func writeJSONError(w http.ResponseWriter, status int, reason string, code int, msg string, retryAfter time.Duration) {
	body := map[string]any{"message": msg, "code": code}
	if status == http.StatusTooManyRequests {
		body["retry_after"] = retryAfter.Seconds()
		body["global"] = false
		w.Header().Set("Retry-After", strconv.Itoa(int(retryAfter.Seconds()+0.999)))
	}
	b, _ := json.Marshal(body) // a map of strings and numbers always marshals
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(HeaderRefused, reason)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
