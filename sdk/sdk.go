// Package sdk is how a bot author writes a Kubecord worker in Go.
//
// A worker joins a consumer group on every gateway pod, receives the group's
// share of Discord events as typed protobuf messages, and acks each one after
// its handler returns:
//
//	bot, err := sdk.New(sdk.WithGateways("127.0.0.1:7001"), sdk.WithGroup("bot"),
//		sdk.WithREST("127.0.0.1:7002"))
//	if err != nil { ... }
//	sdk.On(bot, func(ctx context.Context, m *discordv1.MessageCreate) error {
//		if m.GetMessage().GetContent() == "!ping" {
//			_, err := bot.Reply(ctx, m.GetMessage(), "pong")
//			return err
//		}
//		return nil
//	})
//	err = bot.Run(ctx) // until ctx ends; then drains
//
// Handlers of one routing key (a guild, or a DM channel) run one at a time in
// delivery order; handlers of different keys run concurrently (see
// [WithConcurrency]). A handler that panics is recovered, logged, counted and
// treated like one that returned an error: by [WithFailurePolicy] the event is
// acked (the default) or requeued. When Run's context ends the worker drains:
// it stops taking events, finishes the ones it has, acks them and leaves the
// group; what it had not started is redelivered to the group's other members.
package sdk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	restv1 "github.com/kubecord/kubecord/gen/kubecord/rest/v1"
	statev1 "github.com/kubecord/kubecord/gen/kubecord/state/v1"
	"github.com/kubecord/kubecord/internal/runtime"
)

// FailurePolicy says what happens to an event whose handler failed (returned
// an error or panicked).
type FailurePolicy int

const (
	// AckOnFailure acks the event: it is logged and counted, not retried. A
	// poison event can never wedge a guild.
	AckOnFailure FailurePolicy = iota
	// RequeueOnFailure nacks the event with requeue until MaxAttempts is
	// reached, then acks it.
	RequeueOnFailure
)

// Bot is a Kubecord worker: handlers, the gateway streams that feed them, and
// clients of the state and REST services.
type Bot struct {
	cfg      config
	log      *slog.Logger
	handlers *registry
	metrics  *metrics

	mu       sync.Mutex
	running  bool
	state    *grpc.ClientConn // nil without WithState
	rest     *grpc.ClientConn // nil without WithREST
	stateCli statev1.StateServiceClient
	restCli  restv1.RestServiceClient
}

type config struct {
	gateways        []string
	group           string
	memberID        string
	maxInFlight     uint32
	concurrency     int
	failure         FailurePolicy
	maxAttempts     uint32
	slowHandler     time.Duration
	drainTimeout    time.Duration
	handlerTimeout  time.Duration
	logger          *slog.Logger
	registerer      prometheus.Registerer
	client          runtime.ClientConfig
	stateAddr       string
	restAddr        string
	restBot         string
	resolveInterval time.Duration
	shardIDs        []uint32
	httpListen      string
}

// Option configures a Bot.
type Option func(*config) error

var groupName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// WithGateways lists the gateway pods to consume from. Each entry is a
// host:port, or dns:///name:port to connect to every address the name
// resolves to (a Kubernetes headless service), re-resolved periodically.
func WithGateways(addrs ...string) Option {
	return func(c *config) error {
		for _, a := range addrs {
			for _, part := range strings.Split(a, ",") {
				if p := strings.TrimSpace(part); p != "" {
					c.gateways = append(c.gateways, p)
				}
			}
		}
		return nil
	}
}

// WithGroup names the consumer group (default "bot"). Every member of a
// group gets a share of the events; each group gets all of them.
func WithGroup(name string) Option {
	return func(c *config) error {
		if !groupName.MatchString(name) {
			return fmt.Errorf("group %q: use 1-64 characters of A-Z a-z 0-9 . _ -", name)
		}
		c.group = name
		return nil
	}
}

// WithMemberID sets a stable member id (default: host name and pid), so a
// restarted worker keeps its guilds. A subscription with the id of a live
// member takes over its stream: give every process its own id.
func WithMemberID(id string) Option {
	return func(c *config) error { c.memberID = id; return nil }
}

// WithMaxInFlight sets how many events per gateway pod may be unacked at
// once (default 256): the worker's credit.
func WithMaxInFlight(n int) Option {
	return func(c *config) error {
		if n < 1 || n > 1<<16 {
			return fmt.Errorf("max in flight %d: want 1..65536", n)
		}
		c.maxInFlight = uint32(n)
		return nil
	}
}

// WithConcurrency sets how many handlers run at once (default 64). Events of
// one routing key (guild) always run one at a time, in order.
func WithConcurrency(n int) Option {
	return func(c *config) error {
		if n < 1 || n > 1<<14 {
			return fmt.Errorf("concurrency %d: want 1..16384", n)
		}
		c.concurrency = n
		return nil
	}
}

// WithFailurePolicy sets what happens to events whose handler failed, and
// how many attempts RequeueOnFailure makes (default 3).
func WithFailurePolicy(p FailurePolicy, maxAttempts int) Option {
	return func(c *config) error {
		if maxAttempts < 1 {
			return fmt.Errorf("max attempts %d: want at least 1", maxAttempts)
		}
		c.failure = p
		c.maxAttempts = uint32(maxAttempts)
		return nil
	}
}

// WithSlowHandler logs handlers slower than d with the event id (default 1s).
func WithSlowHandler(d time.Duration) Option {
	return func(c *config) error { c.slowHandler = d; return nil }
}

// WithHandlerTimeout bounds each handler's context (default 30s; 0 = none).
func WithHandlerTimeout(d time.Duration) Option {
	return func(c *config) error { c.handlerTimeout = d; return nil }
}

// WithDrainTimeout bounds the graceful drain when Run's context ends
// (default 25s, under Kubernetes' default 30s grace period).
func WithDrainTimeout(d time.Duration) Option {
	return func(c *config) error { c.drainTimeout = d; return nil }
}

// WithLogger sets the logger (default: slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error { c.logger = l; return nil }
}

// WithMetrics registers the worker's metrics (handler durations, errors,
// panics, deliveries) with r (default prometheus.DefaultRegisterer).
func WithMetrics(r prometheus.Registerer) Option {
	return func(c *config) error { c.registerer = r; return nil }
}

// WithAuthSecret sets the shared secret the Kubecord services require.
func WithAuthSecret(secret string) Option {
	return func(c *config) error { c.client.AuthSecret = secret; return nil }
}

// WithTLS turns on TLS to the services: ca verifies them (empty: system
// roots); cert and key, when set, are this worker's client certificate (mTLS).
func WithTLS(ca, cert, key string) Option {
	return func(c *config) error {
		if (cert == "") != (key == "") {
			return errors.New("TLS client certificate: give both cert and key, or neither")
		}
		c.client.TLSCA, c.client.TLSCert, c.client.TLSKey = ca, cert, key
		return nil
	}
}

// WithState sets the state service's address (host:port).
func WithState(addr string) Option {
	return func(c *config) error { c.stateAddr = addr; return nil }
}

// WithREST sets the REST service's address (host:port) and, optionally, which
// of its configured bots this worker speaks as ("" = the service's default).
func WithREST(addr string, bot ...string) Option {
	return func(c *config) error {
		c.restAddr = addr
		if len(bot) > 0 {
			c.restBot = bot[0]
		}
		return nil
	}
}

// WithHTTP serves /metrics, /healthz and /readyz on addr while Run runs, for
// Prometheus and Kubernetes probes. /readyz answers 200 once the worker has
// joined its group on at least one gateway and 503 while it drains. Metrics
// come from the WithMetrics registerer when it is a Gatherer (the default
// registerer is).
func WithHTTP(addr string) Option {
	return func(c *config) error { c.httpListen = addr; return nil }
}

// WithShards limits consumption to these shards (default: all of them).
func WithShards(ids ...uint32) Option {
	return func(c *config) error { c.shardIDs = append(c.shardIDs, ids...); return nil }
}

// WithEnv reads the usual environment: KUBECORD_GATEWAYS (comma-separated),
// KUBECORD_GROUP, KUBECORD_MEMBER_ID, KUBECORD_STATE_ADDR, KUBECORD_REST_ADDR,
// KUBECORD_REST_BOT, KUBECORD_AUTH_SECRET and KUBECORD_HTTP_LISTEN. Options
// after it override it.
func WithEnv() Option {
	return func(c *config) error {
		if v := os.Getenv("KUBECORD_GATEWAYS"); v != "" {
			if err := WithGateways(v)(c); err != nil {
				return err
			}
		}
		if v := os.Getenv("KUBECORD_GROUP"); v != "" {
			if err := WithGroup(v)(c); err != nil {
				return fmt.Errorf("KUBECORD_GROUP: %w", err)
			}
		}
		if v := os.Getenv("KUBECORD_MEMBER_ID"); v != "" {
			c.memberID = v
		}
		if v := os.Getenv("KUBECORD_STATE_ADDR"); v != "" {
			c.stateAddr = v
		}
		if v := os.Getenv("KUBECORD_REST_ADDR"); v != "" {
			c.restAddr = v
		}
		if v := os.Getenv("KUBECORD_REST_BOT"); v != "" {
			c.restBot = v
		}
		if v := os.Getenv("KUBECORD_AUTH_SECRET"); v != "" {
			c.client.AuthSecret = v
		}
		if v := os.Getenv("KUBECORD_HTTP_LISTEN"); v != "" {
			c.httpListen = v
		}
		return nil
	}
}

// New builds a worker. It connects nothing until Run.
func New(opts ...Option) (*Bot, error) {
	cfg := config{
		group:           "bot",
		maxInFlight:     256,
		concurrency:     64,
		failure:         AckOnFailure,
		maxAttempts:     3,
		slowHandler:     time.Second,
		drainTimeout:    25 * time.Second,
		handlerTimeout:  30 * time.Second,
		resolveInterval: 30 * time.Second,
		registerer:      prometheus.DefaultRegisterer,
	}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, fmt.Errorf("kubecord sdk: %w", err)
		}
	}
	if cfg.memberID == "" {
		// A member id that is live is taken over by a new subscription, so
		// two processes must not share one. Host name plus pid is stable for a
		// restarted container (pid 1) and distinct between processes on a host.
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "worker"
		}
		cfg.memberID = fmt.Sprintf("%s-%d", h, os.Getpid())
	}
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	m, err := newMetrics(cfg.registerer)
	if err != nil {
		return nil, fmt.Errorf("kubecord sdk: registering metrics: %w", err)
	}
	b := &Bot{
		cfg:      cfg,
		log:      cfg.logger.With("group", cfg.group, "member", cfg.memberID),
		handlers: newRegistry(),
		metrics:  m,
	}
	// Connections are lazy: nothing is dialled until the first call.
	if cfg.stateAddr != "" {
		if b.state, err = runtime.Dial(cfg.stateAddr, cfg.client); err != nil {
			return nil, fmt.Errorf("kubecord sdk: state service %s: %w", cfg.stateAddr, err)
		}
		b.stateCli = statev1.NewStateServiceClient(b.state)
	}
	if cfg.restAddr != "" {
		if b.rest, err = runtime.Dial(cfg.restAddr, cfg.client); err != nil {
			b.Close()
			return nil, fmt.Errorf("kubecord sdk: REST service %s: %w", cfg.restAddr, err)
		}
		b.restCli = restv1.NewRestServiceClient(b.rest)
	}
	return b, nil
}

// Group returns the consumer group the worker joins.
func (b *Bot) Group() string { return b.cfg.group }

// Run consumes events from every gateway pod until ctx ends, then drains.
// It returns nil after a clean drain, or the error that stopped it.
func (b *Bot) Run(ctx context.Context) error {
	if len(b.cfg.gateways) == 0 {
		return errors.New("kubecord sdk: no gateway address: use WithGateways or KUBECORD_GATEWAYS")
	}
	names, err := b.handlers.eventNames()
	if err != nil {
		return err
	}
	b.mu.Lock()
	if b.running {
		b.mu.Unlock()
		return errors.New("kubecord sdk: Run called twice")
	}
	b.running = true
	b.mu.Unlock()

	d := newDispatcher(b)
	c := newConsumers(b, d, names)
	return c.run(ctx)
}

// Close closes the connections to the state and REST services. Call it after
// Run has returned (or instead of Run, for a bot that only makes calls).
func (b *Bot) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, cc := range []*grpc.ClientConn{b.state, b.rest} {
		if cc != nil {
			_ = cc.Close()
		}
	}
	b.state, b.rest, b.stateCli, b.restCli = nil, nil, nil, nil
}
