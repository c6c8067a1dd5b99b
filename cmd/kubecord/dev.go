package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/kubecord/kubecord/discordsim"
	"github.com/kubecord/kubecord/examples/ping/pingbot"
	gatewayv1 "github.com/kubecord/kubecord/gen/kubecord/gateway/v1"
	"github.com/kubecord/kubecord/internal/runtime"
	"github.com/kubecord/kubecord/sdk"
)

func init() {
	register(command{
		name:    "dev",
		summary: "run everything locally: the simulator (without DISCORD_TOKEN), gateway, state, rest and a worker",
		run:     runDev,
	})
}

// intentMessageContent is the privileged MESSAGE_CONTENT intent (1 << 15).
const intentMessageContent = 1 << 15

type devFlags struct {
	guilds    int
	members   int
	shards    int
	rate      float64
	pingEvery time.Duration
	worker    string
	status    time.Duration
	simAddr   string
}

func runDev(ctx context.Context, args []string) error {
	s := newStack()
	// One process on a laptop: no load balancer to drain away from.
	s.common.DrainDelay = 0
	s.common.ShutdownTimeout = 10 * time.Second
	var d devFlags
	fs := newFlagSet(ctx, "dev")
	s.registerFlags(fs)
	fs.IntVar(&d.guilds, "guilds", 100, "simulator: guilds the bot is in")
	fs.IntVar(&d.members, "members", 20_000, "simulator: guild memberships in all")
	fs.IntVar(&d.shards, "sim-shards", 2, "simulator: shard count it recommends")
	fs.Float64Var(&d.rate, "rate", 200, "simulator: generated events per second (messages, reactions, typing, presences...)")
	fs.DurationVar(&d.pingEvery, "ping-every", 5*time.Second, "simulator: a user says !ping this often (0: never)")
	fs.StringVar(&d.simAddr, "sim-listen", "127.0.0.1:0", "simulator: listen address of its REST API and gateway")
	fs.StringVar(&d.worker, "worker", "", "your worker's main package (a directory); built, run, and restarted when its source changes; default: the example ping bot in this process")
	fs.DurationVar(&d.status, "status-every", 5*time.Second, "how often to print what is happening")
	if err := runtime.ParseFlags(fs, args, os.LookupEnv); err != nil {
		return err
	}
	stdout, stderr := outputs(ctx)
	logger, err := runtime.NewLogger(s.common.LogLevel, s.common.LogFormat, stderr)
	if err != nil {
		return err
	}
	if s.token == "" {
		s.token = os.Getenv("DISCORD_TOKEN")
	}

	var sim *discordsim.Server
	if s.token == "" {
		sim, err = discordsim.New(discordsim.Config{
			Guilds: d.guilds, Members: d.members, Shards: d.shards, Addr: d.simAddr,
			Logger: logger.With("service", "sim"),
		})
		if err != nil {
			return fmt.Errorf("simulator: %w", err)
		}
		// The simulator outlives the services' drain: it is closed last.
		if err := sim.Start(context.WithoutCancel(ctx)); err != nil {
			return fmt.Errorf("starting the simulator: %w", err)
		}
		defer sim.Close()
		s.token = sim.Bots()[0].Token
		s.rest.DiscordURL = sim.URL() + "/api"
		// The example bot reads message content, a privileged intent the
		// simulated bot is allowed.
		s.gateway.Intents |= intentMessageContent
		fmt.Fprintf(stdout, "No DISCORD_TOKEN: running against the Discord simulator at %s (%d guilds, %d shards).\n", sim.URL(), d.guilds, d.shards)
	} else {
		fmt.Fprintln(stdout, "DISCORD_TOKEN is set: connecting to Discord.")
	}
	if d.worker == "" {
		s.gateway.Groups = append(s.gateway.Groups, "ping")
	}
	if err := s.finish(); err != nil {
		return err
	}
	servers, err := s.servers(logger)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- runtime.Run(ctx, servers...) }()
	for _, srv := range servers {
		select {
		case <-srv.Ready():
		case err := <-done:
			return err
		}
	}
	fmt.Fprintf(stdout, "gateway  %s   (grpcurl -plaintext %s list)\nstate    %s\nrest     %s   HTTP passthrough http://%s/api/v10\n",
		s.gwCfg.Listen, s.gwCfg.Listen, s.stCfg.Listen, s.rsCfg.Listen, s.rest.HTTPListen)

	stats := &pingbot.Stats{}
	workerDone := make(chan error, 1)
	if d.worker != "" {
		w := &devWorker{dir: d.worker, env: s.workerEnv(), stdout: stdout, stderr: stderr, log: logger.With("service", "worker")}
		go func() { workerDone <- w.run(ctx) }()
	} else {
		bot, err := sdk.New(sdk.WithGateways(s.gwCfg.Listen), sdk.WithREST(s.rsCfg.Listen), sdk.WithState(s.stCfg.Listen),
			sdk.WithGroup("ping"), sdk.WithMemberID("dev"), sdk.WithAuthSecret(s.common.AuthSecret),
			sdk.WithLogger(logger.With("service", "worker")), sdk.WithMetrics(nil))
		if err != nil {
			return err
		}
		defer bot.Close()
		pingbot.Register(bot, stats)
		go func() { workerDone <- bot.Run(ctx) }()
		fmt.Fprintln(stdout, "worker   the example ping bot (group \"ping\"): it answers !ping")
	}

	if sim != nil {
		if d.rate > 0 {
			if err := sim.StartLoad(discordsim.LoadConfig{Rate: d.rate}); err != nil {
				return fmt.Errorf("simulated load: %w", err)
			}
			defer sim.StopLoad()
		}
		if d.pingEvery > 0 {
			go chatter(ctx, sim, d.pingEvery, logger)
		}
	}

	go reportStatus(ctx, stdout, s.gwCfg, d.status, stats)
	select {
	case err := <-done:
		return err
	case err := <-workerDone:
		if err != nil && ctx.Err() == nil {
			cancel()
			return errors.Join(fmt.Errorf("worker: %w", err), <-done)
		}
		return <-done
	}
}

// workerEnv is the environment a worker process needs to reach the stack.
func (s *stack) workerEnv() []string {
	env := []string{
		"KUBECORD_GATEWAYS=" + s.gwCfg.Listen,
		"KUBECORD_STATE_ADDR=" + s.stCfg.Listen,
		"KUBECORD_REST_ADDR=" + s.rsCfg.Listen,
	}
	if s.common.AuthSecret != "" {
		env = append(env, "KUBECORD_AUTH_SECRET="+s.common.AuthSecret)
	}
	return env
}

// reportStatus prints one line every interval: shards, event rate, groups,
// and what the example bot did.
func reportStatus(ctx context.Context, w io.Writer, gw runtime.Config, every time.Duration, stats *pingbot.Stats) {
	if every <= 0 {
		return
	}
	conn, err := runtime.Dial(gw.Listen, gw.Client())
	if err != nil {
		return
	}
	defer func() { _ = conn.Close() }()
	client := gatewayv1.NewGatewayServiceClient(conn)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		cctx, cancel := context.WithTimeout(ctx, every)
		shards, err := client.ListShards(cctx, &gatewayv1.ListShardsRequest{})
		groups, gerr := client.ListGroups(cctx, &gatewayv1.ListGroupsRequest{})
		cancel()
		if err != nil || gerr != nil {
			if ctx.Err() == nil {
				fmt.Fprintf(w, "status: %v\n", errors.Join(err, gerr))
			}
			continue
		}
		ready, rate := 0, 0.0
		for _, sh := range shards.GetShards() {
			if sh.GetState() == gatewayv1.Shard_STATE_READY {
				ready++
			}
			rate += sh.GetEventsPerSecond()
		}
		var gs []string
		for _, g := range groups.GetGroups() {
			gs = append(gs, fmt.Sprintf("%s: %d member(s), %d buffered, lag %s, %d lost",
				g.GetName(), len(g.GetMembers()), g.GetBuffered(), g.GetOldestAge().AsDuration().Round(time.Millisecond), g.GetLost()))
		}
		fmt.Fprintf(w, "shards %d/%d ready | %.0f events/s | %s | ping bot: %d messages seen, %d answered, %d failed\n",
			ready, shards.GetShardCount(), rate, strings.Join(gs, "; "),
			stats.Messages.Load(), stats.Replies.Load(), stats.Failures.Load())
	}
}

// chatter has a simulated person say "!ping" somewhere every interval, so
// the example bot has something to answer.
func chatter(ctx context.Context, sim *discordsim.Server, every time.Duration, logger *slog.Logger) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for n := uint64(0); ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		ch, user, err := sim.ChatSpot(n)
		if err == nil {
			_, err = sim.UserMessage(ch, user, "!ping")
		}
		if err != nil {
			logger.Warn("simulated user could not post", "err", err)
		}
	}
}
