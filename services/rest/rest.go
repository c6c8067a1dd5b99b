// Package rest is Kubecord's REST service: every Discord REST call of a bot
// goes through it, so the bot's ratelimits are held in one place whatever
// the number of workers (and, with Redis, of REST replicas).
//
// Callers use the gRPC RestService (Do for any route, CreateMessage and
// CreateInteractionResponse as typed helpers), or point any Discord
// library at the HTTP passthrough: http://<http-listen>/api/v10 as the API
// base. The passthrough forwards /api/v{N}/... unchanged (any version,
// query, headers and multipart bodies) and returns Discord's status,
// headers and body as they came. Answers Kubecord makes itself instead of
// sending (queue full, a token Discord rejected, the invalid-request guard,
// a body over the limit, a deadline too short) carry X-Kubecord-Refused.
//
// Tokens: configured bots (--bot name=token, KUBECORD_BOTS) or the
// caller's own (DoRequest.token, the passthrough's Authorization header).
// Limits are kept per token, so a caller sending a configured bot's token
// shares that bot's limits. Tokens are registered with package redact,
// never logged, and metrics name bots by their configured name only.
//
// What happens to a request: ratelimit.ParseRoute gives its route key and
// major parameter; the Limiter waits for the bucket, the bot's global limit
// and the invalid-request guard (or refuses); the request is sent over a
// keep-alive pool; the answer's X-RateLimit-* headers update the store; a
// 429 is waited out and resent, 502/503/504 and network errors are retried
// for idempotent methods only, all within the caller's deadline.
package rest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"

	restv1 "github.com/kubecord/kubecord/gen/kubecord/rest/v1"
	"github.com/kubecord/kubecord/internal/redact"
	"github.com/kubecord/kubecord/services/rest/internal/ratelimit"
)

// Service is the REST service. Build it with New; it implements the
// runtime's Service (Name, Register, Start, Stop) and RestServiceServer.
type Service struct {
	restv1.UnimplementedRestServiceServer

	cfg     Config
	log     *slog.Logger
	lim     *ratelimit.Limiter
	client  *http.Client
	rdb     *redis.Client
	metrics *metrics

	bots       map[string]*botInfo // by configured name
	byToken    map[string]*botInfo // by Authorization value
	defaultBot *botInfo

	// adhoc remembers per-request tokens already registered with redact
	// (registering rebuilds the redactor, so do it once per token).
	adhocMu sync.Mutex
	adhoc   map[string]*botInfo

	httpSrv  *http.Server
	httpAddr atomic.Pointer[net.Addr]
	httpDone chan struct{}
}

var _ restv1.RestServiceServer = (*Service)(nil)

// botInfo is one token's identity for limits and metrics.
type botInfo struct {
	// key names the token's limits in the store: a hash of the token, so a
	// configured bot and a caller sending the same token share limits.
	key string
	// label is the metrics label.
	label string
	// auth is the Authorization header value ("Bot <token>"); empty for
	// calls without a token.
	auth        string
	globalLimit int
}

// maxAdhocTokens bounds the per-request token cache.
const maxAdhocTokens = 10000

// New builds the service from cfg (missing values take defaults) without
// starting anything.
func New(cfg Config, logger *slog.Logger) (*Service, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("rest configuration: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{
		cfg:     cfg,
		log:     logger,
		metrics: newMetrics(),
		bots:    map[string]*botInfo{},
		byToken: map[string]*botInfo{},
		adhoc:   map[string]*botInfo{},
	}
	for _, b := range cfg.Bots {
		redact.Add(b.Token)
		auth := authValue(b.Token)
		bi := &botInfo{key: ratelimit.HashSecret(auth), label: b.Name, auth: auth, globalLimit: b.GlobalLimit}
		s.bots[b.Name] = bi
		s.byToken[auth] = bi
	}
	if cfg.DefaultBot != "" {
		s.defaultBot = s.bots[cfg.DefaultBot]
	}
	var store ratelimit.Store
	if cfg.RedisURL != "" {
		opts, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("--redis-url: %w", err)
		}
		s.rdb = redis.NewClient(opts)
		store = ratelimit.NewRedisStore(s.rdb, cfg.RedisPrefix)
	} else {
		store = ratelimit.NewMemoryStore()
	}
	s.lim = ratelimit.New(store, cfg.Limits)
	s.client = &http.Client{Transport: newTransport(cfg.MaxIdleConns)}
	return s, nil
}

// newTransport is tuned for many requests to one host: a large keep-alive
// pool, so no request pays for a TCP and TLS handshake.
func newTransport(maxIdle int) *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          maxIdle,
		MaxIdleConnsPerHost:   maxIdle,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// authValue turns a token as configured or sent ("Bot x", "Bearer x" or a
// bare bot token) into an Authorization header value.
func authValue(token string) string {
	if len(token) > 7 && (token[:4] == "Bot " || token[:7] == "Bearer ") {
		return token
	}
	return "Bot " + token
}

// Name implements the runtime's Service.
func (s *Service) Name() string { return "rest" }

// Register implements the runtime's Service.
func (s *Service) Register(g *grpc.Server, reg prometheus.Registerer) error {
	restv1.RegisterRestServiceServer(g, s)
	return s.metrics.register(reg, s.lim, s.log)
}

// Start implements the runtime's Service: it checks Redis and starts the
// HTTP passthrough.
func (s *Service) Start(ctx context.Context) error {
	if s.rdb != nil {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := s.rdb.Ping(pctx).Err()
		cancel()
		if err != nil {
			_ = s.rdb.Close()
			return fmt.Errorf("connecting to Redis (--redis-url): %w", err)
		}
	}
	if s.cfg.HTTPListen == "" {
		return nil
	}
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", s.cfg.HTTPListen)
	if err != nil {
		if s.rdb != nil {
			_ = s.rdb.Close()
		}
		return fmt.Errorf("HTTP passthrough listener (--http-listen): %w", err)
	}
	a := lis.Addr()
	s.httpAddr.Store(&a)
	s.httpSrv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.httpDone = make(chan struct{})
	go func() {
		defer close(s.httpDone)
		if err := s.httpSrv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("HTTP passthrough stopped", "err", err)
		}
	}()
	s.log.Info("HTTP passthrough listening", "addr", a.String(), "discord_url", s.cfg.DiscordURL,
		"bots", len(s.bots), "redis", s.rdb != nil)
	return nil
}

// Stop implements the runtime's Service.
func (s *Service) Stop(ctx context.Context) error {
	var errs []error
	if s.httpSrv != nil {
		if err := s.httpSrv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stopping the HTTP passthrough: %w", err))
			_ = s.httpSrv.Close()
		}
		<-s.httpDone
	}
	s.client.CloseIdleConnections()
	if s.rdb != nil {
		if err := s.rdb.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing Redis: %w", err))
		}
	}
	return errors.Join(errs...)
}

// HTTPAddr returns the passthrough's address once Start returned, else nil.
func (s *Service) HTTPAddr() net.Addr {
	if p := s.httpAddr.Load(); p != nil {
		return *p
	}
	return nil
}

// resolveBot finds the identity for a call: its own token if it brings
// one, else the named bot, else the default bot. A nil result with no
// error means "no token" (allowed for webhook-token routes).
func (s *Service) resolveBot(token, name string) (*botInfo, error) {
	if token != "" {
		auth := authValue(token)
		if bi := s.byToken[auth]; bi != nil {
			return bi, nil
		}
		s.adhocMu.Lock()
		defer s.adhocMu.Unlock()
		if bi := s.adhoc[auth]; bi != nil {
			return bi, nil
		}
		redact.Add(token)
		if auth != token {
			redact.Add(auth)
		}
		bi := &botInfo{key: ratelimit.HashSecret(auth), label: "request-token", auth: auth}
		if len(s.adhoc) >= maxAdhocTokens {
			clear(s.adhoc)
		}
		s.adhoc[auth] = bi
		return bi, nil
	}
	if name != "" {
		bi := s.bots[name]
		if bi == nil {
			return nil, fmt.Errorf("unknown bot %q: configure it with --bot %s=<token> or send a token", name, name)
		}
		return bi, nil
	}
	return s.defaultBot, nil
}

// noAuth is the identity of calls without any token (Discord limits them
// per IP).
var noAuth = &botInfo{key: "noauth", label: "none"}
