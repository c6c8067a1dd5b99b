package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"

	"google.golang.org/grpc"

	"github.com/kubecord/kubecord/internal/runtime"
	"github.com/kubecord/kubecord/services/gateway"
	"github.com/kubecord/kubecord/services/rest"
	"github.com/kubecord/kubecord/services/state"
)

func init() {
	register(command{
		name:    "all",
		summary: "run gateway, state and rest in one process with memory stores (no Redis needed)",
		run:     runAll,
	})
}

// stack is the three services of one process: each keeps its own gRPC and
// metrics listener and they talk over gRPC, exactly as when they run apart.
type stack struct {
	common              runtime.Config // auth, TLS, logging, drain: shared
	gwCfg, stCfg, rsCfg runtime.Config // listeners
	gateway             gateway.Config
	state               state.Config
	rest                rest.Config
	token               string
}

func newStack() *stack {
	return &stack{
		common:  runtime.DefaultConfig(0, 0),
		gwCfg:   runtime.DefaultConfig(7001, 9001),
		rsCfg:   runtime.DefaultConfig(7002, 9002),
		stCfg:   runtime.DefaultConfig(7003, 9003),
		gateway: gateway.DefaultConfig(),
		state:   state.DefaultConfig(),
		rest:    rest.DefaultConfig(),
	}
}

// registerFlags adds the flags of a whole stack: the common ones, one pair of
// listeners per service, and the few settings worth changing in one process.
// Each service's full set of flags is on its own command.
func (s *stack) registerFlags(fs *flag.FlagSet) {
	s.common.RegisterFlags(fs)
	// The common --listen/--metrics-listen make no sense for three services.
	s.gwCfg.RegisterListenFlags(fs, "gateway-")
	s.rsCfg.RegisterListenFlags(fs, "rest-")
	s.stCfg.RegisterListenFlags(fs, "state-")
	runtime.SecretVar(fs, &s.token, "token", "Discord bot token (also read from DISCORD_TOKEN; never logged)")
	fs.StringVar(&s.rest.DiscordURL, "discord-url", s.rest.DiscordURL, "Discord REST API base without the version (point it at discordsim)")
	fs.StringVar(&s.rest.HTTPListen, "rest-http-listen", s.rest.HTTPListen, "HTTP passthrough address of the REST service (/api/v{N}/...)")
	fs.IntVar(&s.gateway.ShardCount, "shard-count", s.gateway.ShardCount, "total shard count; 0 takes Discord's recommendation")
	fs.Uint64Var(&s.gateway.Intents, "intents", s.gateway.Intents, "gateway intents bitfield")
	fs.StringVar(&s.gateway.Compression, "compression", s.gateway.Compression, "gateway transport compression: zlib-stream, zstd-stream or none")
	fs.IntVar(&s.rest.Limits.GlobalLimit, "global-limit", s.rest.Limits.GlobalLimit, "REST requests per second per bot across all routes (Discord: 50)")
	fs.Func("groups", "comma-separated consumer groups declared at start, buffering from the first event (\"state\" is always declared)", func(v string) error {
		for _, g := range strings.Split(v, ",") {
			if g = strings.TrimSpace(g); g != "" {
				s.gateway.Groups = append(s.gateway.Groups, g)
			}
		}
		return nil
	})
}

// finish validates the configuration and wires the services to each other.
func (s *stack) finish() error {
	if s.token == "" {
		s.token = os.Getenv("DISCORD_TOKEN")
	}
	if s.token == "" {
		return errors.New("missing the Discord bot token (pass --token, or set DISCORD_TOKEN or KUBECORD_TOKEN); 'kubecord dev' runs against the simulator without one")
	}
	for _, c := range []*runtime.Config{&s.gwCfg, &s.rsCfg, &s.stCfg} {
		listen, metrics := c.Listen, c.MetricsListen
		*c = s.common
		c.Listen, c.MetricsListen = listen, metrics
		if err := c.Validate(); err != nil {
			return err
		}
	}
	s.rest.Bots = append(s.rest.Bots, rest.Bot{Name: "default", Token: s.token})
	s.rest.AuthSecret = s.common.AuthSecret
	s.gateway.Token = s.token
	// /gateway/bot goes through the REST service, so its ratelimits are
	// counted with everything else.
	if s.rest.HTTPListen != "" {
		s.gateway.RESTBase = "http://" + s.rest.HTTPListen + "/api/v10"
	} else {
		s.gateway.RESTBase = strings.TrimSuffix(s.rest.DiscordURL, "/") + "/v10"
	}
	// The state service must see every event from the first GUILD_CREATE on,
	// even though it subscribes after the shards connect.
	if !slices.Contains(s.gateway.Groups, "state") {
		s.gateway.Groups = append(s.gateway.Groups, "state")
	}
	s.state.Gateways = []string{s.gwCfg.Listen}
	s.state.Client = s.gwCfg.Client()
	return nil
}

// servers builds the services in start order: rest (the gateway asks it for
// /gateway/bot), gateway, then state (it consumes the gateway).
func (s *stack) servers(logger *slog.Logger) ([]*runtime.Server, error) {
	rs, err := rest.New(s.rest, logger.With("service", "rest"))
	if err != nil {
		return nil, fmt.Errorf("rest: %w", err)
	}
	maxMsg := int(min(s.rest.MaxBodyBytes+grpcOverhead, 1<<31-1))
	restSrv, err := runtime.NewServer(s.rsCfg, rs, logger, grpc.MaxRecvMsgSize(maxMsg), grpc.MaxSendMsgSize(64<<20+grpcOverhead))
	if err != nil {
		return nil, fmt.Errorf("rest server: %w", err)
	}
	gw, err := gateway.New(s.gateway, logger.With("service", "gateway"))
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	gwSrv, err := runtime.NewServer(s.gwCfg, gw, logger)
	if err != nil {
		return nil, fmt.Errorf("gateway server: %w", err)
	}
	st, err := state.New(s.state, logger.With("service", "state"))
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	stSrv, err := runtime.NewServer(s.stCfg, st, logger)
	if err != nil {
		return nil, fmt.Errorf("state server: %w", err)
	}
	return []*runtime.Server{restSrv, gwSrv, stSrv}, nil
}

func runAll(ctx context.Context, args []string) error {
	s := newStack()
	fs := newFlagSet(ctx, "all")
	s.registerFlags(fs)
	if err := runtime.ParseFlags(fs, args, os.LookupEnv); err != nil {
		return err
	}
	if err := s.finish(); err != nil {
		return err
	}
	_, stderr := outputs(ctx)
	logger, err := runtime.NewLogger(s.common.LogLevel, s.common.LogFormat, stderr)
	if err != nil {
		return err
	}
	logger.LogAttrs(ctx, slog.LevelInfo, "configuration", runtime.Describe(fs)...)
	servers, err := s.servers(logger)
	if err != nil {
		return err
	}
	return runtime.Run(ctx, servers...)
}
