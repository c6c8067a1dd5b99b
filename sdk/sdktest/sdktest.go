// Package sdktest runs Kubecord for a worker's tests: the Discord simulator
// and the real gateway, state and REST services in the test's process, each
// on its own loopback port, stopped when the test ends.
//
//	func TestPing(t *testing.T) {
//		env := sdktest.Start(t, sdktest.Options{})
//		bot, _ := sdk.New(env.BotOptions()...)
//		mybot.Register(bot)
//		env.Run(t, bot)
//		msg := env.Say(t, "!ping")
//		reply := env.WaitReply(t, msg, 10*time.Second)
//		if !strings.HasPrefix(reply.Content, "pong") { ... }
//	}
package sdktest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/kubecord/kubecord/discordsim"
	gatewayv1 "github.com/kubecord/kubecord/gen/kubecord/gateway/v1"
	"github.com/kubecord/kubecord/internal/runtime"
	"github.com/kubecord/kubecord/sdk"
	"github.com/kubecord/kubecord/services/gateway"
	"github.com/kubecord/kubecord/services/rest"
	"github.com/kubecord/kubecord/services/state"
)

// Options shape the simulated world. Zero values are small and fast.
type Options struct {
	// Guilds the bot is in (default 3) and memberships in all (default 60).
	Guilds, Members int
	// Shards (default 1).
	Shards int
	// Intents of the gateway (default: guilds, guild messages, DMs and
	// MESSAGE_CONTENT, so message handlers see content).
	Intents uint64
	// Logger receives the services' logs (default: discarded).
	Logger *slog.Logger
}

// Env is a running Kubecord with a simulated Discord behind it.
type Env struct {
	// Sim is the simulator: post as users, inject faults, read accounting.
	Sim *discordsim.Server
	// GatewayAddr, StateAddr and RESTAddr are the services' gRPC addresses.
	GatewayAddr, StateAddr, RESTAddr string

	group string
	n     uint64
	mu    sync.Mutex
}

const (
	intentGuilds         = 1 << 0
	intentGuildMessages  = 1 << 9
	intentDirectMessages = 1 << 12
	intentMessageContent = 1 << 15
)

// Start starts the simulator and the services, waits until every shard is
// ready, and stops everything when the test ends.
func Start(t testing.TB, o Options) *Env {
	t.Helper()
	if o.Guilds == 0 {
		o.Guilds = 3
	}
	if o.Members == 0 {
		o.Members = 20 * o.Guilds
	}
	if o.Shards == 0 {
		o.Shards = 1
	}
	if o.Intents == 0 {
		o.Intents = intentGuilds | intentGuildMessages | intentDirectMessages | intentMessageContent
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	sim, err := discordsim.New(discordsim.Config{
		Guilds: o.Guilds, Members: o.Members, Shards: o.Shards, MaxConcurrency: o.Shards,
		Addr: "127.0.0.1:0", Logger: o.Logger.With("service", "sim"),
	})
	if err != nil {
		t.Fatalf("sdktest: simulator: %v", err)
	}
	if err := sim.Start(context.Background()); err != nil {
		t.Fatalf("sdktest: starting the simulator: %v", err)
	}
	t.Cleanup(sim.Close)
	token := sim.Bots()[0].Token

	base := runtime.DefaultConfig(0, 0)
	base.MetricsListen = ""
	base.DrainDelay = 0
	base.ShutdownTimeout = 5 * time.Second

	rcfg := rest.DefaultConfig()
	rcfg.DiscordURL = sim.URL() + "/api"
	rcfg.HTTPListen = ""
	rcfg.Bots = []rest.Bot{{Name: "default", Token: token}}
	rs, err := rest.New(rcfg, o.Logger.With("service", "rest"))
	if err != nil {
		t.Fatalf("sdktest: rest: %v", err)
	}
	gcfg := gateway.DefaultConfig()
	gcfg.Token = token
	gcfg.RESTBase = sim.URL() + "/api/v10"
	gcfg.Intents = o.Intents
	// Both groups buffer from the first event, before their consumers join.
	gcfg.Groups = []string{"state", "bot"}
	gw, err := gateway.New(gcfg, o.Logger.With("service", "gateway"))
	if err != nil {
		t.Fatalf("sdktest: gateway: %v", err)
	}
	servers := make([]*runtime.Server, 0, 3)
	for _, svc := range []runtime.Service{rs, gw} {
		srv, err := runtime.NewServer(base, svc, o.Logger)
		if err != nil {
			t.Fatalf("sdktest: %v", err)
		}
		servers = append(servers, srv)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	run := func(srvs ...*runtime.Server) {
		go func() { done <- runtime.Run(ctx, srvs...) }()
	}
	// State needs the gateway's address, known once it listens: start the
	// first two, then state as a second group.
	run(servers...)
	for _, srv := range servers {
		select {
		case <-srv.Ready():
		case err := <-done:
			cancel()
			t.Fatalf("sdktest: services stopped: %v", err)
		}
	}
	scfg := state.DefaultConfig()
	scfg.Gateways = []string{servers[1].Addr().String()}
	scfg.MemberID = "sdktest"
	st, err := state.New(scfg, o.Logger.With("service", "state"))
	if err != nil {
		cancel()
		t.Fatalf("sdktest: state: %v", err)
	}
	stSrv, err := runtime.NewServer(base, st, o.Logger)
	if err != nil {
		cancel()
		t.Fatalf("sdktest: %v", err)
	}
	done2 := make(chan error, 1)
	go func() { done2 <- runtime.Run(ctx, stSrv) }()
	select {
	case <-stSrv.Ready():
	case err := <-done2:
		cancel()
		t.Fatalf("sdktest: state stopped: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		for _, ch := range []chan error{done2, done} {
			if err := <-ch; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("sdktest: services stopped with: %v", err)
			}
		}
	})

	env := &Env{
		Sim:         sim,
		GatewayAddr: servers[1].Addr().String(),
		RESTAddr:    servers[0].Addr().String(),
		StateAddr:   stSrv.Addr().String(),
		group:       "bot",
	}
	env.waitShards(t, o.Shards)
	return env
}

// BotOptions are the sdk options that point a worker at this environment.
func (e *Env) BotOptions() []sdk.Option {
	return []sdk.Option{
		sdk.WithGateways(e.GatewayAddr), sdk.WithState(e.StateAddr), sdk.WithREST(e.RESTAddr),
		sdk.WithGroup(e.group), sdk.WithMemberID("sdktest-worker"), sdk.WithMetrics(nil),
	}
}

// Run runs bot until the test ends, and waits until it has joined its group.
func (e *Env) Run(t testing.TB, bot *sdk.Bot) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- bot.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("sdktest: worker stopped with: %v", err)
		}
		bot.Close()
	})
	e.waitGroup(t, bot.Group())
}

// Say has a simulated person post content in a guild text channel (a
// different channel or guild each call) and returns the message.
func (e *Env) Say(t testing.TB, content string) discordsim.Message {
	t.Helper()
	e.mu.Lock()
	n := e.n
	e.n++
	e.mu.Unlock()
	ch, user, err := e.Sim.ChatSpot(n)
	if err != nil {
		t.Fatalf("sdktest: %v", err)
	}
	m, err := e.Sim.UserMessage(ch, user, content)
	if err != nil {
		t.Fatalf("sdktest: posting %q: %v", content, err)
	}
	return m
}

// WaitReply waits for a message that replies to msg (its message_reference
// points at msg) and returns it.
func (e *Env) WaitReply(t testing.TB, msg discordsim.Message, limit time.Duration) discordsim.Message {
	t.Helper()
	var reply discordsim.Message
	waitFor(t, limit, fmt.Sprintf("a reply to message %d", msg.ID), func() bool {
		for _, m := range e.Sim.ChannelMessages(msg.ChannelID, 100) {
			var ref struct {
				MessageID discordsim.Snowflake `json:"message_id"`
			}
			if len(m.MessageReference) > 0 && json.Unmarshal(m.MessageReference, &ref) == nil && ref.MessageID == msg.ID {
				reply = m
				return true
			}
		}
		return false
	})
	return reply
}

func (e *Env) client(t testing.TB) gatewayv1.GatewayServiceClient {
	t.Helper()
	conn, err := runtime.Dial(e.GatewayAddr, runtime.ClientConfig{})
	if err != nil {
		t.Fatalf("sdktest: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return gatewayv1.NewGatewayServiceClient(conn)
}

func (e *Env) waitShards(t testing.TB, n int) {
	t.Helper()
	c := e.client(t)
	waitFor(t, 30*time.Second, "every shard to be ready", func() bool {
		resp, err := c.ListShards(context.Background(), &gatewayv1.ListShardsRequest{})
		if err != nil {
			return false
		}
		ready := 0
		for _, s := range resp.GetShards() {
			if s.GetState() == gatewayv1.Shard_STATE_READY {
				ready++
			}
		}
		return ready == n
	})
}

func (e *Env) waitGroup(t testing.TB, group string) {
	t.Helper()
	c := e.client(t)
	waitFor(t, 30*time.Second, "the worker to join group "+group, func() bool {
		resp, err := c.ListGroups(context.Background(), &gatewayv1.ListGroupsRequest{})
		if err != nil {
			return false
		}
		for _, g := range resp.GetGroups() {
			if g.GetName() == group && len(g.GetMembers()) > 0 {
				return true
			}
		}
		return false
	})
}

func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("sdktest: waited %s for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
