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
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
	// service in this process to resume. Nil keeps them for this instance only.
	Sessions *MemorySessionStore
	// Identify paces identifies; nil uses a memory limiter fed by /gateway/bot.
	Identify identify.Limiter
	// ShardTiming overrides protocol timers (tests).
	ShardTiming shard.Timing
}

// Defaults of Config.
const (
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
		if h, err := os.Hostname(); err == nil {
			c.GatewayID = h
		} else {
			c.GatewayID = "gateway"
		}
	}
	if c.Sessions == nil {
		c.Sessions = NewMemorySessionStore()
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

	chunks chunkWaiters
	stats  dispatchStats
	// sessionIDs holds each shard's current Discord session id (string), stamped on its
	// events. It is written only from the shard's own read loop (READY) and at Start.
	sessionIDs sync.Map

	// onDispatch, when set (tests only), sees every dispatch before it is handled.
	onDispatch func(shard.Dispatch)

	draining atomic.Bool
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	runErr   chan error
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
		cfg:    cfg,
		log:    logger,
		hub:    delivery.NewHub(dc),
		runErr: make(chan error, 1),
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

// Start implements runtime.Service: it resolves the shard plan, restores stored sessions'
// watermarks into the hub, and starts the shards and the hub's sweeper.
func (s *Server) Start(ctx context.Context) error {
	cfg := s.cfg
	limiter := cfg.Identify
	gatewayURL, count := cfg.GatewayURL, cfg.ShardCount
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
		if limiter == nil {
			mem, err := identify.NewMemory(identify.MemoryConfig{Limit: bot.SessionStartLimit})
			if err != nil {
				return fmt.Errorf("gateway: identify limiter: %w", err)
			}
			limiter = mem
		} else if err := limiter.Update(ctx, bot.SessionStartLimit); err != nil {
			return fmt.Errorf("gateway: identify limiter: %w", err)
		}
	}
	for _, id := range cfg.ShardIDs {
		if id >= count {
			return fmt.Errorf("gateway: shard id %d is outside 0..%d (shard count %d)", id, count-1, count)
		}
	}
	for shardID, st := range cfg.Sessions.snapshot() {
		if st.session.ID != "" {
			s.hub.RestoreSession(shardID, st.watermark, st.session.Seq)
			s.sessionIDs.Store(shardID, st.session.ID)
		}
	}
	m, err := shard.NewManager(shard.Config{
		Token:          cfg.Token,
		GatewayURL:     gatewayURL,
		Intents:        cfg.Intents,
		ShardIDs:       cfg.ShardIDs,
		ShardCount:     count,
		Compression:    cfg.Compression,
		LargeThreshold: cfg.LargeThreshold,
		Identify:       limiter,
		Sessions:       sessionAdapter{store: cfg.Sessions, hub: s.hub},
		Watermark:      s.watermark,
		Handler:        s,
		Logger:         s.log.With("component", "shards"),
		Timing:         cfg.ShardTiming,
	})
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	s.shardCount.Store(int64(count))
	s.manager.Store(m)

	runCtx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	s.wg.Go(func() {
		if err := s.hub.Run(runCtx); err != nil {
			s.log.Error("delivery hub sweeper stopped", "err", err)
		}
	})
	s.wg.Go(func() {
		err := m.Run(runCtx)
		s.runErr <- err
		if err != nil && runCtx.Err() == nil {
			runtime.Fail(ctx, fmt.Errorf("gateway shards: %w", err))
		}
	})
	s.log.Info("gateway started", "gateway_id", cfg.GatewayID, "shard_count", count,
		"shards", m.ShardIDs(), "compression", cfg.Compression)
	return nil
}

// watermark is the shard manager's resume point: min(last received, this).
func (s *Server) watermark(shardID int) uint64 {
	if wm, ok := s.hub.Watermark(shardID); ok {
		return wm
	}
	return ^uint64(0) // nothing published yet: no constraint beyond what the shard received
}

// Stop implements runtime.Service: it stops the shards (saving their sessions with the
// watermark, so a restart resumes and Discord replays what was not acked), then the hub.
func (s *Server) Stop(ctx context.Context) error {
	s.draining.Store(true)
	if s.cancel == nil {
		s.hub.Close()
		return nil
	}
	s.cancel()
	var err error
	select {
	case err = <-s.runErr:
	case <-ctx.Done():
		err = fmt.Errorf("gateway: shards did not stop before the shutdown deadline: %w", ctx.Err())
	}
	s.hub.Close()
	s.chunks.closeAll()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		err = errors.Join(err, fmt.Errorf("gateway: background work did not stop: %w", ctx.Err()))
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
