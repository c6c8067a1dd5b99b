// Package gateway is Kubecord's gateway service: it runs the Discord shards of this pod,
// decodes each dispatch once, and delivers it through the delivery hub to the consumer
// groups streaming from GatewayService.Consume, resuming Discord sessions from the delivery
// watermark so nothing received is lost across reconnects and restarts.
//
// The data path of one event: a shard reads a frame and hands its dispatch to the service
// (HandleDispatch, on the shard's read loop, never blocking); the service reads the routing
// key, decodes the payload into a discordv1.Event, marshals it once and publishes it to the
// hub; every group buffers it; each Consume stream takes deliveries within its credit and
// sends them as frames assembled around the pre-encoded event bytes, so fan-out to any
// number of groups costs no further encoding.
package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"

	gatewayv1 "github.com/kubecord/kubecord/gen/kubecord/gateway/v1"
	"github.com/kubecord/kubecord/internal/runtime"
	"github.com/kubecord/kubecord/services/gateway/internal/delivery"
	"github.com/kubecord/kubecord/services/gateway/internal/identify"
	"github.com/kubecord/kubecord/services/gateway/internal/shard"
)

// Config configures the gateway service. Zero fields take the documented defaults.
type Config struct {
	// Token is the bot token. Required. It is never logged.
	Token string
	// RESTBase is the Discord REST base URL used for GET /gateway/bot when GatewayURL or
	// ShardCount is not set (default https://discord.com/api/v10).
	RESTBase string
	// GatewayURL overrides the gateway URL from /gateway/bot.
	GatewayURL string
	// ShardCount is the bot's total shard count; 0 takes Discord's recommendation.
	ShardCount int
	// ShardIDs are the shards this pod runs; empty means all of them.
	ShardIDs []int
	// Intents is the gateway intents bitfield.
	Intents uint64
	// Compression is "zlib-stream" (default), "zstd-stream" or "none".
	Compression string
	// LargeThreshold is sent in Identify (50..250; 0 leaves Discord's default).
	LargeThreshold int
	// GatewayID names this pod in Subscribed and status (default: host name).
	GatewayID string
	// Delivery tunes the hub (buffers, TTLs, ack timeout).
	Delivery delivery.Config
	// Groups are declared at start: they buffer every event from the first one on, before
	// any member joins, and never expire (e.g. "state", or a bot's main group). Other groups
	// exist while they have members, plus the group TTL.
	Groups []string
	// DefaultMaxInFlight is the credit of a Subscribe that asks for 0 (default 256).
	DefaultMaxInFlight int
	// StreamHeartbeat is the interval of Heartbeat messages on idle Consume streams
	// (default 15 s).
	StreamHeartbeat time.Duration
	// MemberChunkTimeout bounds RequestGuildMembers when the call has no deadline (default 30 s).
	MemberChunkTimeout time.Duration
	// Sessions keeps shard sessions and watermarks; pass the same store to a restarted
	// service in this process to resume. Nil means Redis when Redis is configured, else
	// memory for this instance only.
	Sessions SessionStore
	// Identify paces identifies; nil uses a limiter fed by /gateway/bot: shared through
	// Redis when Redis is configured, in memory otherwise.
	Identify identify.Limiter
	// IdentifyWindow is the identify window of the default limiter (0 = Discord's 5 s
	// plus a margin). Only a simulator with a shorter window wants another value.
	IdentifyWindow time.Duration
	// ShardTiming overrides protocol timers (tests).
	ShardTiming shard.Timing

	// RedisURL (redis://[:password@]host:port/db) or Redis turns on running many gateway
	// pods for one bot: shards are shared among the pods by leases, sessions are kept in
	// Redis so a shard moving between pods resumes, and identify windows and the daily
	// session budget are shared. Without either, this pod runs every shard (or ShardIDs).
	RedisURL string
	// Redis is an already-connected client; it wins over RedisURL. It is not closed by Stop.
	Redis redis.UniversalClient
	// RedisPrefix starts every Redis key (default "kubecord"); each bot's keys are further
	// separated by a hash of its token's user id part.
	RedisPrefix string
	// LeaseTTL is how long a pod that stops renewing keeps its shards: how long the shards
	// of a killed pod wait before another pod resumes them (default 10 s).
	LeaseTTL time.Duration
	// LeaseRenew is the interval of lease renewals (default 3 s, under LeaseTTL).
	LeaseRenew time.Duration
	// SessionSave is the interval of session saves while shards run (default 1 s): after
	// a pod is killed, the pod taking its shards resumes from the last save.
	SessionSave time.Duration
	// ReshardCheck is how often GET /gateway/bot's recommended shard count is compared with
	// the running one; when it grew, the gateway reshards to it without downtime. 0 never
	// checks (DefaultConfig checks hourly).
	ReshardCheck time.Duration
	// ShadowEvents bounds the events a new shard set holds per pod while a reshard warms it
	// up (default DefaultShadowEvents).
	ShadowEvents int
	// HandoffTimeout bounds, per shard, the wait for consumers to ack a stopping shard's
	// outstanding events before its session is handed on (default 5 s). What is still
	// unacked is replayed by the next owner, flagged as redelivered.
	HandoffTimeout time.Duration
}

// Defaults of Config.
const (
	DefaultSessionSave        = time.Second
	DefaultHandoffTimeout     = 5 * time.Second
	DefaultRESTBase           = "https://discord.com/api/v10"
	DefaultMaxInFlight        = 256
	DefaultStreamHeartbeat    = 15 * time.Second
	DefaultMemberChunkTimeout = 30 * time.Second
)

func (c Config) withDefaults() Config {
	if c.RESTBase == "" {
		c.RESTBase = DefaultRESTBase
	}
	if c.Compression == "" {
		c.Compression = shard.CompressionZlib
	}
	if c.Compression == "none" {
		c.Compression = shard.CompressionNone
	}
	if c.DefaultMaxInFlight <= 0 {
		c.DefaultMaxInFlight = DefaultMaxInFlight
	}
	if c.StreamHeartbeat <= 0 {
		c.StreamHeartbeat = DefaultStreamHeartbeat
	}
	if c.MemberChunkTimeout <= 0 {
		c.MemberChunkTimeout = DefaultMemberChunkTimeout
	}
	if c.GatewayID == "" {
		// The host name alone is not unique when several gateways share a host; pods
		// of one bot must have distinct names for their leases.
		h, err := os.Hostname()
		if err != nil {
			h = "gateway"
		}
		c.GatewayID = fmt.Sprintf("%s-%d", h, os.Getpid())
	}
	if c.SessionSave <= 0 {
		c.SessionSave = DefaultSessionSave
	}
	if c.HandoffTimeout <= 0 {
		c.HandoffTimeout = DefaultHandoffTimeout
	}
	if c.RedisPrefix == "" {
		c.RedisPrefix = identify.DefaultPrefix
	}
	return c
}

// Validate reports configuration mistakes with what to change.
func (c Config) Validate() error {
	if c.Token == "" {
		return errors.New("a bot token is required (--token or KUBECORD_TOKEN)")
	}
	if c.ShardCount < 0 {
		return fmt.Errorf("shard count %d is negative", c.ShardCount)
	}
	for _, id := range c.ShardIDs {
		if id < 0 || (c.ShardCount > 0 && id >= c.ShardCount) {
			return fmt.Errorf("shard id %d is outside 0..%d", id, c.ShardCount-1)
		}
	}
	if c.LeaseTTL < 0 || c.LeaseRenew < 0 || (c.LeaseTTL > 0 && c.LeaseRenew >= c.LeaseTTL) {
		return fmt.Errorf("lease renew interval %s must be positive and shorter than the lease TTL %s", c.LeaseRenew, c.LeaseTTL)
	}
	if c.IdentifyWindow < 0 {
		return fmt.Errorf("identify window %s is negative", c.IdentifyWindow)
	}
	if c.RedisURL != "" && c.Redis == nil {
		if _, err := redis.ParseURL(c.RedisURL); err != nil {
			return fmt.Errorf("--redis-url: %w (want redis://[:password@]host:port[/db])", err)
		}
	}
	if c.DefaultMaxInFlight > 0 && c.Delivery.MaxInFlight > 0 && c.DefaultMaxInFlight > c.Delivery.MaxInFlight {
		return fmt.Errorf("default max in flight %d exceeds the member cap %d", c.DefaultMaxInFlight, c.Delivery.MaxInFlight)
	}
	return nil
}

// Server is the gateway service. Create it with New and serve it with internal/runtime.
type Server struct {
	gatewayv1.UnimplementedGatewayServiceServer

	cfg Config
	log *slog.Logger
	hub *delivery.Hub

	// manager is set by Start once the shard count is known.
	manager    atomic.Pointer[shard.Manager]
	shardCount atomic.Int64

	// Set by Start.
	client     redis.UniversalClient // nil without Redis
	base       string                // prefix of this bot's Redis keys
	gatewayURL string
	limiter    identify.Limiter
	sessions   SessionStore // the store of memory mode (or Config.Sessions)
	coord      coordinator
	runCtx     context.Context // background work; cancelled by Stop
	lifeCtx    context.Context // the service's context, for runtime.Fail
	live       atomic.Pointer[generation]
	seen       atomic.Pointer[seenRecorder] // while the live set is being retired by a reshard
	genMu      sync.Mutex
	next       *generation // the shadow set of a reshard in progress
	reshardEnd chan struct{}
	drainOnce  sync.Once
	runErrs    errList

	chunks chunkWaiters
	stats  dispatchStats
	// sessionIDs holds each shard's current Discord session id (string), stamped on its
	// events. It is written only from the shard's own read loop (READY) and at Start.
	sessionIDs sync.Map

	// onDispatch, when set (tests only), sees every dispatch before it is handled.
	onDispatch func(shard.Dispatch)

	draining   atomic.Bool
	closeRedis *redis.Client // the client Start opened from RedisURL
	cancel     context.CancelFunc
	wg         sync.WaitGroup
}

var (
	_ gatewayv1.GatewayServiceServer = (*Server)(nil)
	_ runtime.Service                = (*Server)(nil)
	_ shard.Handler                  = (*Server)(nil)
)

// New returns the gateway service. Nothing runs until Start.
func New(cfg Config, logger *slog.Logger) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("gateway configuration: %w", err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	dc := cfg.Delivery
	dc.Logger = logger.With("component", "delivery")
	s := &Server{
		cfg:        cfg,
		log:        logger,
		hub:        delivery.NewHub(dc),
		reshardEnd: make(chan struct{}),
	}
	s.chunks.m = map[string]*chunkWaiter{}
	for _, g := range cfg.Groups {
		if err := s.hub.Declare(g); err != nil {
			return nil, fmt.Errorf("gateway configuration: declaring group: %w", err)
		}
	}
	return s, nil
}

// Name implements runtime.Service.
func (s *Server) Name() string { return "gateway" }

// Register implements runtime.Service: the GatewayService handlers and the gateway metrics.
func (s *Server) Register(g *grpc.Server, metrics prometheus.Registerer) error {
	gatewayv1.RegisterGatewayServiceServer(g, s)
	if err := metrics.Register(newCollector(s)); err != nil {
		return fmt.Errorf("registering gateway metrics: %w", err)
	}
	return nil
}

// Hub exposes the delivery hub (tests and in-process embedding).
func (s *Server) Hub() *delivery.Hub { return s.hub }

// Start implements runtime.Service: it resolves the shard plan, connects to Redis when
// configured, and starts the hub's sweeper, the shard manager and the ownership loop that
// starts the shards this pod owns (resuming stored sessions from their watermarks).
func (s *Server) Start(ctx context.Context) (err error) {
	cfg := s.cfg
	var cleanup []func()
	defer func() {
		if err != nil {
			for _, f := range slices.Backward(cleanup) {
				f()
			}
		}
	}()
	client := cfg.Redis
	if client == nil && cfg.RedisURL != "" {
		opts, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return fmt.Errorf("gateway: --redis-url: %w", err)
		}
		c := redis.NewClient(opts)
		cleanup = append(cleanup, func() { _ = c.Close() })
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = c.Ping(pctx).Err()
		cancel()
		if err != nil {
			return fmt.Errorf("gateway: connecting to redis at %s: %w", opts.Addr, err)
		}
		client = c
		s.closeRedis = c
	}

	limiter := cfg.Identify
	gatewayURL, count := cfg.GatewayURL, cfg.ShardCount
	var limit identify.SessionStartLimit
	if gatewayURL == "" || count == 0 || limiter == nil {
		bot, err := shard.FetchGatewayBot(ctx, cfg.RESTBase, cfg.Token)
		if err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
		if gatewayURL == "" {
			gatewayURL = bot.URL
		}
		if count == 0 {
			count = bot.Shards
		}
		limit = bot.SessionStartLimit
		if limiter != nil {
			if err := limiter.Update(ctx, limit); err != nil {
				return fmt.Errorf("gateway: identify limiter: %w", err)
			}
		}
	}
	for _, id := range cfg.ShardIDs {
		if id >= count {
			return fmt.Errorf("gateway: shard id %d is outside 0..%d (shard count %d)", id, count-1, count)
		}
	}
	var base string // every Redis key of this bot starts with it
	if client != nil {
		botKey, err := identify.BotKey(cfg.Token)
		if err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
		base = cfg.RedisPrefix + ":" + botKey
	}
	if limiter == nil {
		if client != nil {
			limiter, err = identify.NewRedis(ctx, client, identify.RedisConfig{Token: cfg.Token, Prefix: cfg.RedisPrefix,
				Limit: limit, Window: cfg.IdentifyWindow, Logger: s.log.With("component", "identify")})
		} else {
			limiter, err = identify.NewMemory(identify.MemoryConfig{Limit: limit, Window: cfg.IdentifyWindow})
		}
		if err != nil {
			return fmt.Errorf("gateway: identify limiter: %w", err)
		}
	}

	s.client, s.gatewayURL, s.limiter = client, gatewayURL, limiter
	s.base = base
	s.sessions = cfg.Sessions
	if s.sessions == nil {
		s.sessions = NewMemorySessionStore()
	}
	active := count
	if client != nil && len(cfg.ShardIDs) == 0 {
		s.coord = newRedisCoordinator(client, base)
		if active, err = s.coord.InitActive(ctx, count); err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
		if cfg.ShardCount > 0 && cfg.ShardCount != active {
			// The operator asked for another count: reshard to it rather than run two sets.
			if ok, err := s.coord.Propose(ctx, active, cfg.ShardCount); err != nil {
				return fmt.Errorf("gateway: %w", err)
			} else if ok {
				s.log.Info("--shard-count differs from the bot's active shard count: resharding", "from", active, "to", cfg.ShardCount)
			}
		}
	} else {
		s.coord = newMemoryCoordinator()
		if _, err := s.coord.InitActive(ctx, count); err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
	}

	runCtx, cancel := context.WithCancel(ctx)
	s.cancel, s.runCtx, s.lifeCtx = cancel, runCtx, ctx
	cleanup = append(cleanup, cancel)
	s.wg.Go(func() {
		if err := s.hub.Run(runCtx); err != nil {
			s.log.Error("delivery hub sweeper stopped", "err", err)
		}
	})
	g, err := s.startGeneration(active, false)
	if err != nil {
		return err
	}
	if plan, ok, err := s.coord.Plan(ctx); err == nil && ok && !planFinished(plan.Phase) && plan.From == active {
		// A reshard is under way: record what this pod publishes from its first event.
		s.record(plan, g)
	}
	s.live.Store(g)
	s.shardCount.Store(int64(active))
	s.manager.Store(g.m)
	if len(cfg.ShardIDs) == 0 {
		s.wg.Go(func() { s.reshardLoop(runCtx, s.reshardEnd) })
	}
	s.log.Info("gateway started", "gateway_id", cfg.GatewayID, "shard_count", active,
		"redis", client != nil, "fixed_shards", cfg.ShardIDs, "compression", cfg.Compression)
	return nil
}

// Drain implements runtime.Drainer: while workers can still ack, it hands every shard on
// (stops it, waits for its outstanding events to be acked, saves its session as a clean
// hand-off) and releases the shard leases, so another pod resumes each shard at once.
func (s *Server) Drain(ctx context.Context) {
	if s.cancel == nil {
		return
	}
	s.drainOnce.Do(func() {
		close(s.reshardEnd)
		s.genMu.Lock()
		next := s.next
		s.genMu.Unlock()
		var wg sync.WaitGroup
		if next != nil {
			wg.Go(func() { next.retire(ctx) })
		}
		s.live.Load().retire(ctx)
		wg.Wait()
	})
}

// Stop implements runtime.Service: it hands the shards on (see Drain) if that has not
// happened yet, then stops the shard managers and the hub.
func (s *Server) Stop(ctx context.Context) error {
	s.draining.Store(true)
	if s.cancel == nil {
		s.hub.Close()
		return nil
	}
	s.Drain(ctx)
	s.cancel()
	var err error
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		err = s.runErrs.join()
	case <-ctx.Done():
		err = fmt.Errorf("gateway: background work did not stop before the shutdown deadline: %w", ctx.Err())
	}
	s.hub.Close()
	s.chunks.closeAll()
	if s.closeRedis != nil {
		err = errors.Join(err, s.closeRedis.Close())
	}
	if err != nil {
		return fmt.Errorf("stopping gateway: %w", err)
	}
	return nil
}

// newNonce returns a random nonce for Request Guild Members (Discord allows 32 bytes).
func newNonce() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}
