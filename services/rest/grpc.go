package rest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	restv1 "github.com/kubecord/kubecord/gen/kubecord/rest/v1"
	"github.com/kubecord/kubecord/services/rest/internal/ratelimit"
)

var doMethods = map[string]bool{
	http.MethodGet: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodHead: true,
}

// Do implements RestServiceServer: any Discord REST request, ratelimited.
func (s *Service) Do(ctx context.Context, req *restv1.DoRequest) (*restv1.DoResponse, error) {
	start := time.Now()
	o, err := s.outboundFromDo(req)
	label := "none"
	if o != nil {
		label = o.bot.label
	}
	if err != nil {
		s.metrics.requests.WithLabelValues(label, "grpc", "0").Inc()
		return nil, err
	}
	if d := req.GetTimeout(); d != nil {
		if err := d.CheckValid(); err != nil || d.AsDuration() <= 0 {
			return nil, status.Error(codes.InvalidArgument, "timeout must be a positive duration")
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.AsDuration())
		defer cancel()
	} else if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.RequestTimeout)
		defer cancel()
	}
	res, err := s.do(ctx, o)
	code := "0"
	if res != nil {
		code = strconv.Itoa(res.status)
	}
	s.metrics.requests.WithLabelValues(label, "grpc", code).Inc()
	s.metrics.latency.WithLabelValues(label, "grpc").Observe(time.Since(start).Seconds())
	if err != nil {
		return nil, grpcError(err)
	}
	s.metrics.waited.WithLabelValues(label).Observe(res.waited.Seconds())
	return doResponse(res), nil
}

// outboundFromDo validates a DoRequest and turns it into a request.
func (s *Service) outboundFromDo(req *restv1.DoRequest) (*outbound, error) {
	method := strings.ToUpper(req.GetMethod())
	if !doMethods[method] {
		return nil, status.Errorf(codes.InvalidArgument, "method %q: use GET, POST, PUT, PATCH, DELETE or HEAD", req.GetMethod())
	}
	p := req.GetPath()
	rawQuery := ""
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p, rawQuery = p[:i], p[i+1:]
	}
	if !strings.HasPrefix(p, "/") {
		return nil, status.Errorf(codes.InvalidArgument, "path %q must start with / (e.g. /channels/123/messages)", p)
	}
	if strings.Contains(p, "/../") || strings.HasSuffix(p, "/..") || strings.ContainsAny(p, " #\r\n") {
		return nil, status.Error(codes.InvalidArgument, "path must be a plain API path without spaces, fragments or dot segments")
	}
	version := s.cfg.APIVersion
	if rest, v, ok := ratelimit.StripVersion(p); ok {
		p = rest
		if v > 0 {
			version = v
		}
	}
	for _, q := range req.GetQuery() {
		if rawQuery != "" {
			rawQuery += "&"
		}
		rawQuery += url.QueryEscape(q.GetName()) + "=" + url.QueryEscape(q.GetValue())
	}
	h := http.Header{}
	for _, kv := range req.GetHeaders() {
		name := textproto.CanonicalMIMEHeaderKey(kv.GetName())
		switch {
		case name == "Authorization" || name == "User-Agent":
			return nil, status.Errorf(codes.InvalidArgument, "header %s is set by the service: use token or bot for the credential", name)
		case hopHeaders[name]:
			return nil, status.Errorf(codes.InvalidArgument, "header %s is connection-level and cannot be set", name)
		case name == "" || strings.ContainsAny(kv.GetName(), " :\r\n") || strings.ContainsAny(kv.GetValue(), "\r\n"):
			return nil, status.Errorf(codes.InvalidArgument, "header %q is not a valid HTTP header", kv.GetName())
		}
		h.Add(name, kv.GetValue())
	}
	if r := req.GetAuditLogReason(); r != "" {
		if n := utf8.RuneCountInString(r); n > 512 || !utf8.ValidString(r) {
			return nil, status.Errorf(codes.InvalidArgument, "audit_log_reason is %d characters: Discord accepts 1 to 512 UTF-8 characters", n)
		}
		h.Set("X-Audit-Log-Reason", url.PathEscape(r))
	}
	bot, err := s.resolveBot(req.GetToken(), req.GetBot())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if bot == nil {
		if !ratelimit.ParseRoute(method, p, time.Now()).WebhookToken {
			return nil, status.Error(codes.Unauthenticated, "no bot token: set token or bot in the request, or configure a default bot (--bot name=token)")
		}
		bot = noAuth
	}
	o := &outbound{method: method, path: p, version: version, rawQuery: rawQuery, header: h, bot: bot, api: "grpc"}
	size := int64(len(req.GetBody()))
	for _, f := range req.GetFiles() {
		size += int64(len(f.GetData()))
	}
	if size > s.cfg.MaxBodyBytes {
		s.metrics.refused.WithLabelValues(bot.label, "body_too_large").Inc()
		return o, status.Error(codes.InvalidArgument, (&bodyTooLargeError{size: size, limit: s.cfg.MaxBodyBytes}).Error())
	}
	if len(req.GetFiles()) > 0 {
		body, ctype, err := multipartBody(req.GetBody(), req.GetFiles())
		if err != nil {
			return o, status.Error(codes.InvalidArgument, err.Error())
		}
		o.body = body
		h.Set("Content-Type", ctype)
	} else if len(req.GetBody()) > 0 {
		o.body = req.GetBody()
		if h.Get("Content-Type") == "" {
			h.Set("Content-Type", "application/json")
		}
	}
	return o, nil
}

// multipartBody builds Discord's upload form: payload_json then files[n].
func multipartBody(payload []byte, files []*restv1.File) ([]byte, string, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if len(payload) > 0 {
		ph := textproto.MIMEHeader{}
		ph.Set("Content-Disposition", `form-data; name="payload_json"`)
		ph.Set("Content-Type", "application/json")
		pw, err := mw.CreatePart(ph)
		if err != nil {
			return nil, "", fmt.Errorf("building the multipart body: %w", err)
		}
		_, _ = pw.Write(payload) // writes to a bytes.Buffer cannot fail
	}
	for i, f := range files {
		name := f.GetName()
		if name == "" || strings.ContainsAny(name, "\"\r\n/\\") {
			return nil, "", fmt.Errorf("files[%d]: name %q must be a plain file name", i, name)
		}
		ctype := f.GetContentType()
		if ctype == "" {
			ctype = http.DetectContentType(f.GetData())
		}
		fh := textproto.MIMEHeader{}
		fh.Set("Content-Disposition", fmt.Sprintf(`form-data; name="files[%d]"; filename="%s"`, i, name))
		fh.Set("Content-Type", ctype)
		fw, err := mw.CreatePart(fh)
		if err != nil {
			return nil, "", fmt.Errorf("building the multipart body: %w", err)
		}
		_, _ = fw.Write(f.GetData())
	}
	if err := mw.Close(); err != nil {
		return nil, "", fmt.Errorf("building the multipart body: %w", err)
	}
	return buf.Bytes(), mw.FormDataContentType(), nil
}

func doResponse(res *inbound) *restv1.DoResponse {
	names := make([]string, 0, len(res.header))
	for k := range res.header {
		names = append(names, k)
	}
	sort.Strings(names)
	hs := make([]*restv1.Header, 0, len(names))
	for _, k := range names {
		for _, v := range res.header[k] {
			hs = append(hs, &restv1.Header{Name: k, Value: v})
		}
	}
	rl := &restv1.RateLimit{
		Bucket: res.header.Get("X-RateLimit-Bucket"),
		Scope:  res.verdict.Scope,
		Global: res.verdict.Scope == "global",
		Waited: durationpb.New(res.waited),
		// retries fit easily: they are bounded by small configured counts.
		Retries: int32(min(res.retries, 1<<20)),
	}
	if n, err := strconv.ParseInt(res.header.Get("X-RateLimit-Limit"), 10, 32); err == nil {
		rl.Limit = int32(n)
	}
	if n, err := strconv.ParseInt(res.header.Get("X-RateLimit-Remaining"), 10, 32); err == nil {
		rl.Remaining = int32(n)
	}
	if f, err := strconv.ParseFloat(res.header.Get("X-RateLimit-Reset-After"), 64); err == nil && f >= 0 && f < 1e6 {
		rl.ResetAfter = durationpb.New(time.Duration(f * float64(time.Second)))
	}
	return &restv1.DoResponse{Status: int32(res.status), Headers: hs, Body: res.body, RateLimit: rl}
}

// grpcError maps a failure to send (or to get an answer) to a status that
// tells the caller what to do.
func grpcError(err error) error {
	var re *ratelimit.RefusedError
	var de *ratelimit.DeadlineError
	var be *bodyTooLargeError
	var ue *upstreamError
	switch {
	case errors.Is(err, ratelimit.ErrQueueFull):
		return status.Error(codes.ResourceExhausted, err.Error()+": slow down, spread the calls over time, or raise --max-queue")
	case errors.As(err, &re):
		switch re.Reason {
		case ratelimit.ReasonBadWebhook:
			return status.Error(codes.FailedPrecondition, re.Error())
		case ratelimit.ReasonBadToken:
			return status.Error(codes.Unauthenticated, re.Error())
		}
		return status.Error(codes.ResourceExhausted, re.Error())
	case errors.As(err, &de):
		return status.Error(codes.DeadlineExceeded, de.Error()+": give the call a longer deadline or timeout")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "the call's deadline passed before Discord answered")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "the call was cancelled")
	case errors.As(err, &be):
		return status.Error(codes.InvalidArgument, be.Error())
	case errors.As(err, &ue):
		return status.Error(codes.Unavailable, ue.Error()+" (network error or Discord down; retried if the method is idempotent)")
	}
	return status.Error(codes.Unavailable, "ratelimit state unavailable: "+err.Error())
}
