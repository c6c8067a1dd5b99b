package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/kubecord/kubecord/discordsim"
)

func init() {
	register(command{
		name:    "sim",
		summary: "run discordsim, a local Discord (gateway + REST) with generated guilds and traffic",
		run:     runSim,
	})
}

// simEnv returns the KUBECORD_SIM_<name> environment variable or def.
func simEnv(name, def string) string {
	if v, ok := os.LookupEnv("KUBECORD_SIM_" + name); ok {
		return v
	}
	return def
}

func simEnvInt(name string, def int) int {
	if v, err := strconv.Atoi(simEnv(name, "")); err == nil {
		return v
	}
	return def
}

func simEnvFloat(name string, def float64) float64 {
	if v, err := strconv.ParseFloat(simEnv(name, ""), 64); err == nil {
		return v
	}
	return def
}

func simEnvDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(simEnv(name, "")); err == nil {
		return v
	}
	return def
}

// parseMix parses "messages=45,typing=20,...".
func parseMix(s string) (discordsim.EventMix, error) {
	var m discordsim.EventMix
	if s == "" {
		return m, nil
	}
	fields := map[string]*float64{
		"messages": &m.Messages, "edits": &m.Edits, "deletes": &m.Deletes, "reactions": &m.Reactions,
		"typing": &m.Typing, "presences": &m.Presences, "members": &m.Members, "voice": &m.Voice,
	}
	for part := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		dst, known := fields[k]
		if !ok || !known {
			return m, fmt.Errorf("bad -mix entry %q: want kind=weight with kind one of messages, edits, deletes, reactions, typing, presences, members, voice", part)
		}
		w, err := strconv.ParseFloat(v, 64)
		if err != nil || w < 0 {
			return m, fmt.Errorf("bad -mix weight %q for %s: want a number >= 0", v, k)
		}
		*dst = w
	}
	return m, nil
}

func runSim(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("kubecord sim", flag.ContinueOnError)
	var (
		guilds      = fs.Int("guilds", simEnvInt("GUILDS", 100), "number of guilds (env KUBECORD_SIM_GUILDS)")
		members     = fs.Int("members", simEnvInt("MEMBERS", 0), "total memberships, Zipf-distributed over guilds (default 50 per guild; env KUBECORD_SIM_MEMBERS)")
		hot         = fs.Int("hot-guilds", simEnvInt("HOT_GUILDS", 0), "guilds that carry most traffic (default 1% of guilds)")
		shards      = fs.Int("shards", simEnvInt("SHARDS", 0), "shard count recommended by /gateway/bot (default 1 per 1000 guilds)")
		maxConc     = fs.Int("max-concurrency", simEnvInt("MAX_CONCURRENCY", 1), "identify buckets per identify window")
		budget      = fs.Int("session-start-limit", simEnvInt("SESSION_START_LIMIT", 1000), "daily identify budget")
		heartbeat   = fs.Duration("heartbeat-interval", simEnvDuration("HEARTBEAT_INTERVAL", 41250*time.Millisecond), "heartbeat_interval sent in Hello")
		identWindow = fs.Duration("identify-window", simEnvDuration("IDENTIFY_WINDOW", 5*time.Second), "identify rate-limit window per bucket")
		rate        = fs.Float64("rate", simEnvFloat("RATE", 0), "generated events per second (0: no generated traffic; env KUBECORD_SIM_RATE)")
		mix         = fs.String("mix", simEnv("MIX", ""), "event mix, e.g. messages=45,typing=20,reactions=12,presences=10,edits=4,deletes=2,members=3,voice=4")
		skew        = fs.Float64("skew", 1.3, "Zipf exponent of traffic over guilds (> 1)")
		seed        = fs.Uint64("seed", uint64(simEnvInt("SEED", 1)), "seed of the world and the traffic")
		addr        = fs.String("addr", simEnv("ADDR", "127.0.0.1:7010"), "listen address of REST, the gateway and /_sim")
		resumeAddr  = fs.String("resume-addr", simEnv("RESUME_ADDR", "127.0.0.1:7011"), "listen address of resume_gateway_url")
		tokens      = fs.String("token", simEnv("TOKEN", ""), "comma-separated bot tokens to accept (default: one generated from the seed)")
		verbose     = fs.Bool("v", false, "log every session and fault")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	m, err := parseMix(*mix)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg := discordsim.Config{
		Logger: log, Seed: *seed, Guilds: *guilds, Members: *members, HotGuilds: *hot, Shards: *shards,
		MaxConcurrency: *maxConc, SessionStartTotal: *budget, HeartbeatInterval: *heartbeat,
		IdentifyWindow: *identWindow, Addr: *addr, ResumeAddr: *resumeAddr,
		Load: discordsim.LoadConfig{Rate: *rate, Mix: m, Skew: *skew},
	}
	if *tokens != "" {
		for i, tok := range strings.Split(*tokens, ",") {
			cfg.Bots = append(cfg.Bots, discordsim.Bot{Token: strings.TrimSpace(tok), Name: fmt.Sprintf("sim-bot-%d", i),
				PrivilegedIntents: discordsim.IntentGuildMembers | discordsim.IntentGuildPresences | discordsim.IntentMessageContent})
		}
	}
	start := time.Now()
	sim, err := discordsim.New(cfg)
	if err != nil {
		return err
	}
	if err := sim.Start(ctx); err != nil {
		return err
	}
	defer sim.Close()
	c := sim.Config()
	fmt.Printf("discordsim ready in %v: %d guilds, %d members, %d recommended shards, max_concurrency %d\n",
		time.Since(start).Round(time.Millisecond), c.Guilds, c.Members, c.Shards, c.MaxConcurrency)
	fmt.Printf("  REST base:   %s/api/v10\n", sim.URL())
	fmt.Printf("  gateway:     %s/?v=10&encoding=json&compress=zlib-stream\n", sim.GatewayURL())
	fmt.Printf("  resume URL:  %s\n", sim.ResumeGatewayURL())
	fmt.Printf("  stats:       %s/_sim/stats\n", sim.URL())
	fmt.Printf("  faults:      POST %s/_sim/faults/{disconnect,reconnect,invalidate,zombie,drop-ack,heartbeat}\n", sim.URL())
	fmt.Printf("  load:        POST %s/_sim/load {\"rate\":1000}\n", sim.URL())
	if *tokens == "" {
		// Printing the generated token is the point: it is how a local bot logs in.
		fmt.Printf("  bot token:   %s\n", sim.Bots()[0].Token)
	}
	if *rate > 0 {
		fmt.Printf("  traffic:     %g events/s\n", *rate)
	}
	<-ctx.Done()
	return nil
}
