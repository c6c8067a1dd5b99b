// Package state is Kubecord's state service: it joins the gateway as consumer group "state",
// applies every event to a Discord cache (in memory, or in Redis shared by several replicas)
// and serves the cache over gRPC (kubecord.state.v1.StateService): lookups, lists, batch gets,
// mutual guilds, permissions and statistics, with read-your-event consistency.
package state

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	statev1 "github.com/kubecord/kubecord/gen/kubecord/state/v1"
	"github.com/kubecord/kubecord/internal/runtime"
	"github.com/kubecord/kubecord/services/state/internal/cache"
)

// Config configures the state service. DefaultConfig gives Discord-independent defaults.
type Config struct {
	// RedisURL selects the Redis store (redis://[user:password@]host:port/db); empty keeps the
	// cache in memory. It may hold a password: it is never logged.
	RedisURL string
	// RedisPrefix is put before every Redis key, so several bots can share one Redis.
	RedisPrefix string
	// Resources says which resource types are cached.
	Resources cache.Resources
	// Gateways are the gateway addresses to consume from (each a host:port or a gRPC target
	// such as dns:///gateway-headless:7001); empty serves whatever is in the store (a read
	// replica of a Redis store another replica fills).
	Gateways []string
	// Client says how to call the gateways (shared secret, TLS).
	Client runtime.ClientConfig
	// MemberID names this replica in the "state" group (default: host name); a restarted
	// replica with the same id takes over its guilds.
	MemberID string
	// MaxInFlight is the credit granted to each gateway: events delivered but not yet applied.
	MaxInFlight uint32
	// EventNames restricts the events consumed (empty: all, which the progress tracking of
	// read-your-event consistency needs).
	EventNames []string
	// DefaultWait bounds a Consistency wait without max_wait; MaxWait caps max_wait.
	DefaultWait, MaxWait time.Duration
	// PollInterval is how often a Consistency wait re-reads the store's progress, for events
	// applied by other replicas.
	PollInterval time.Duration
	// ReconnectMin and ReconnectMax bound the backoff between Consume reconnects.
	ReconnectMin, ReconnectMax time.Duration
	// ResolveInterval is how often a dns:///name:port gateway address is resolved again, to
	// follow gateway pods as they come and go (default 30 s).
	ResolveInterval time.Duration
	// LookupHost resolves gateway names (default: net.DefaultResolver.LookupHost).
	LookupHost func(ctx context.Context, host string) ([]string, error)
	// Now is the clock (timeouts in permissions); nil is time.Now.
	Now func() time.Time
}

// DefaultConfig returns the defaults: memory store, every resource type, no gateway.
func DefaultConfig() Config {
	return Config{
		RedisPrefix:  "kubecord:state:",
		Resources:    cache.AllResources(),
		MaxInFlight:  1024,
		DefaultWait:  time.Second,
		MaxWait:      30 * time.Second,
		PollInterval: 20 * time.Millisecond,
		ReconnectMin: 100 * time.Millisecond,
		ReconnectMax: 10 * time.Second,

		ResolveInterval: 30 * time.Second,
	}
}

// gatewayList is a comma-separated list flag.
type gatewayList []string

func (l *gatewayList) String() string { return strings.Join(*l, ",") }

func (l *gatewayList) Set(s string) error {
	*l = nil
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// RegisterFlags binds c's fields to flags on fs (each also read from KUBECORD_<FLAG>).
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	runtime.SecretVar(fs, &c.RedisURL, "redis-url", "Redis URL of a shared store (redis://[user:password@]host:port/db); empty keeps the cache in memory")
	fs.StringVar(&c.RedisPrefix, "redis-prefix", c.RedisPrefix, "prefix of every Redis key")
	fs.Var((*gatewayList)(&c.Gateways), "gateways", "comma-separated gateway addresses to consume from as group \"state\" (host:port or dns:///name:port)")
	fs.StringVar(&c.MemberID, "member-id", c.MemberID, "this replica's member id in the state group (default: host name)")
	fs.Func("max-in-flight", fmt.Sprintf("events each gateway may deliver before they are applied and acked (default %d)", c.MaxInFlight), func(s string) error {
		v, err := strconv.ParseUint(s, 10, 32)
		if err != nil || v == 0 {
			return fmt.Errorf("%q is not a positive integer", s)
		}
		c.MaxInFlight = uint32(v)
		return nil
	})
	fs.DurationVar(&c.DefaultWait, "consistency-wait", c.DefaultWait, "how long a read with a Consistency but no max_wait waits for its event")
	fs.DurationVar(&c.MaxWait, "consistency-max-wait", c.MaxWait, "the longest max_wait a read may ask for")
	r := &c.Resources
	for _, f := range []struct {
		p    *bool
		name string
	}{
		{&r.Channels, "channels"}, {&r.Threads, "threads"}, {&r.Roles, "roles"}, {&r.Members, "members"},
		{&r.Users, "users"}, {&r.Emojis, "emojis"}, {&r.Stickers, "stickers"}, {&r.VoiceStates, "voice-states"},
		{&r.Presences, "presences"}, {&r.MessageAuthors, "message-authors"},
	} {
		fs.BoolVar(f.p, "cache-"+f.name, *f.p, "cache "+strings.ReplaceAll(f.name, "-", " "))
	}
}

// Validate reports configuration mistakes with what to change.
func (c *Config) Validate() error {
	var errs []error
	if c.DefaultWait <= 0 || c.MaxWait < c.DefaultWait {
		errs = append(errs, fmt.Errorf("--consistency-wait (%s) must be positive and at most --consistency-max-wait (%s)", c.DefaultWait, c.MaxWait))
	}
	if c.PollInterval <= 0 {
		errs = append(errs, errors.New("the consistency poll interval must be positive"))
	}
	if c.ReconnectMin <= 0 || c.ReconnectMax < c.ReconnectMin {
		errs = append(errs, errors.New("reconnect backoff: minimum must be positive and at most the maximum"))
	}
	if c.MaxInFlight == 0 {
		errs = append(errs, errors.New("--max-in-flight must be positive"))
	}
	if c.RedisURL != "" && !strings.HasPrefix(c.RedisURL, "redis://") && !strings.HasPrefix(c.RedisURL, "rediss://") && !strings.HasPrefix(c.RedisURL, "unix://") {
		errs = append(errs, errors.New("--redis-url must start with redis://, rediss:// or unix://"))
	}
	return errors.Join(errs...)
}

// Server is the state service: the cache, its consumer and the StateService handlers.
type Server struct {
	statev1.UnimplementedStateServiceServer

	cfg     Config
	log     *slog.Logger
	cache   atomic.Pointer[cache.Cache]
	metrics *metrics
	store   cache.Store // set by Start, or given by NewWithStore

	cancel context.CancelFunc
	wg     sync.WaitGroup
	// consumers counts the Consume streams kept open (one per gateway pod).
	consumers atomic.Int64
}

var (
	_ statev1.StateServiceServer = (*Server)(nil)
	_ runtime.Service            = (*Server)(nil)
)

// New returns the state service. Nothing runs until Start, which opens the store.
func New(cfg Config, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("state configuration: %w", err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MemberID == "" {
		if h, err := os.Hostname(); err == nil {
			cfg.MemberID = "state-" + h
		} else {
			cfg.MemberID = "state"
		}
	}
	return &Server{cfg: cfg, log: logger, metrics: newMetrics()}, nil
}

// NewWithStore returns a state service on an already open store (tests, embedding); Start
// does not open another one, and Stop closes it.
func NewWithStore(cfg Config, store cache.Store, logger *slog.Logger) (*Server, error) {
	s, err := New(cfg, logger)
	if err != nil {
		return nil, err
	}
	s.store = store
	return s, nil
}

// Name implements runtime.Service.
func (s *Server) Name() string { return "state" }

// Register implements runtime.Service.
func (s *Server) Register(g *grpc.Server, reg prometheus.Registerer) error {
	statev1.RegisterStateServiceServer(g, s)
	if err := s.metrics.register(reg, s); err != nil {
		return fmt.Errorf("registering state metrics: %w", err)
	}
	return nil
}

// Start implements runtime.Service: it opens the store and starts consuming every gateway.
func (s *Server) Start(ctx context.Context) error {
	if s.store == nil {
		if s.cfg.RedisURL == "" {
			s.store = cache.NewMemory()
		} else {
			st, err := cache.NewRedis(ctx, s.cfg.RedisURL, s.cfg.RedisPrefix)
			if err != nil {
				return fmt.Errorf("opening the Redis store: %w", err)
			}
			s.store = st
		}
	}
	c := cache.New(s.store, s.cfg.Resources, s.log.With("component", "cache"))
	s.cache.Store(c)
	s.log.Info("state cache ready", slog.String("store", s.store.Kind()), slog.Int("gateways", len(s.cfg.Gateways)))
	cctx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	for _, addr := range s.cfg.Gateways {
		if name, ok := strings.CutPrefix(addr, "dns:///"); ok {
			// Every pod behind the name owns other shards: consume from each.
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.follow(cctx, c, name)
			}()
			continue
		}
		cons, err := newConsumer(s, c, addr)
		if err != nil {
			cancel()
			s.wg.Wait()
			return err
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			cons.run(cctx)
		}()
	}
	return nil
}

// Stop implements runtime.Service: it stops the consumers (unacked events go back to the
// gateway for redelivery) and closes the store.
func (s *Server) Stop(context.Context) error {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	if s.store != nil {
		if err := s.store.Close(); err != nil {
			return fmt.Errorf("closing the %s store: %w", s.store.Kind(), err)
		}
	}
	return nil
}

// Cache returns the running cache, nil before Start (tests and in-process embedding).
func (s *Server) Cache() *cache.Cache { return s.cache.Load() }
