package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/kubecord/kubecord/discordsim"
	"github.com/kubecord/kubecord/internal/runtime"
)

func init() {
	register(command{
		name:    "sim",
		summary: "run discordsim, a local Discord (gateway + REST) with generated guilds and traffic",
		run:     runSim,
	})
}

// legacySimEnvPrefix started the environment variables of kubecord sim
// before it read KUBECORD_<FLAG> like every other command. A flag that
// neither the command line nor KUBECORD_<FLAG> sets is still read from
// KUBECORD_SIM_<FLAG> (KUBECORD_SIM_GUILDS for --guilds), so existing compose
// and env files keep working.
const legacySimEnvPrefix = "KUBECORD_SIM_"

// simFlags is what kubecord sim runs with.
type simFlags struct {
	guilds, members, hot, shards, maxConc, budget int
	heartbeat, identWindow                        time.Duration
	rate, skew                                    float64
	mix                                           string
	seed                                          uint64
	addr, resumeAddr, tokens                      string
	verbose                                       bool
}

// parseSimFlags reads args, then KUBECORD_<FLAG>, then KUBECORD_SIM_<FLAG>
// (the first one set wins). A value that does not parse is an error naming
// the variable it came from.
func parseSimFlags(fs *flag.FlagSet, args []string, lookupEnv func(string) (string, bool)) (simFlags, error) {
	var f simFlags
	fs.IntVar(&f.guilds, "guilds", 100, "number of guilds")
	fs.IntVar(&f.members, "members", 0, "total memberships, Zipf-distributed over guilds (default 50 per guild)")
	fs.IntVar(&f.hot, "hot-guilds", 0, "guilds that carry most traffic (default 1% of guilds)")
	fs.IntVar(&f.shards, "shards", 0, "shard count recommended by /gateway/bot (default 1 per 1000 guilds)")
	fs.IntVar(&f.maxConc, "max-concurrency", 1, "identify buckets per identify window")
	fs.IntVar(&f.budget, "session-start-limit", 1000, "daily identify budget")
	fs.DurationVar(&f.heartbeat, "heartbeat-interval", 41250*time.Millisecond, "heartbeat_interval sent in Hello")
	fs.DurationVar(&f.identWindow, "identify-window", 5*time.Second, "identify rate-limit window per bucket")
	fs.Float64Var(&f.rate, "rate", 0, "generated events per second (0: no generated traffic)")
	fs.StringVar(&f.mix, "mix", "", "event mix, e.g. messages=45,typing=20,reactions=12,presences=10,edits=4,deletes=2,members=3,voice=4")
	fs.Float64Var(&f.skew, "skew", 1.3, "Zipf exponent of traffic over guilds (> 1)")
	fs.Uint64Var(&f.seed, "seed", 1, "seed of the world and the traffic")
	fs.StringVar(&f.addr, "addr", "127.0.0.1:7010", "listen address of REST, the gateway and /_sim")
	fs.StringVar(&f.resumeAddr, "resume-addr", "127.0.0.1:7011", "listen address of resume_gateway_url")
	runtime.SecretVar(fs, &f.tokens, "token", "comma-separated bot tokens to accept (default: one generated from the seed, printed at start)")
	fs.BoolVar(&f.verbose, "v", false, "log every session and fault")
	fs.Usage = func() {
		_, _ = fmt.Fprintf(fs.Output(), "Usage of %s (every flag also from KUBECORD_<FLAG>, or the older KUBECORD_SIM_<FLAG>):\n", fs.Name())
		fs.PrintDefaults()
	}
	// A command-line mistake (or --help) stops here, before any variable is
	// read; ParseFlags parses the same args again, which sets the same values.
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	errs := []error{runtime.ParseFlags(fs, args, lookupEnv)}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true }) // from args or KUBECORD_<FLAG>
	fs.VisitAll(func(fl *flag.Flag) {
		if _, newName := lookupEnv(runtime.EnvName(fl.Name)); set[fl.Name] || newName {
			return
		}
		name := legacySimEnvPrefix + strings.TrimPrefix(runtime.EnvName(fl.Name), runtime.EnvPrefix)
		v, ok := lookupEnv(name)
		if !ok {
			return
		}
		if err := fs.Set(fl.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("environment %s=%q: invalid value for --%s: %w", name, v, fl.Name, err))
		}
	})
	return f, errors.Join(errs...)
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
	return runSimEnv(ctx, args, os.LookupEnv)
}

// runSimEnv is runSim reading the environment through lookupEnv, so tests
// set variables without touching the process environment.
func runSimEnv(ctx context.Context, args []string, lookupEnv func(string) (string, bool)) error {
	f, err := parseSimFlags(newFlagSet(ctx, "sim"), args, lookupEnv)
	if err != nil {
		return err
	}
	m, err := parseMix(f.mix)
	if err != nil {
		return err
	}
	level := "info"
	if f.verbose {
		level = "debug"
	}
	stdout, stderr := outputs(ctx)
	log, err := runtime.NewLogger(level, "text", stderr)
	if err != nil {
		return err
	}
	cfg := discordsim.Config{
		Logger: log, Seed: f.seed, Guilds: f.guilds, Members: f.members, HotGuilds: f.hot, Shards: f.shards,
		MaxConcurrency: f.maxConc, SessionStartTotal: f.budget, HeartbeatInterval: f.heartbeat,
		IdentifyWindow: f.identWindow, Addr: f.addr, ResumeAddr: f.resumeAddr,
		Load: discordsim.LoadConfig{Rate: f.rate, Mix: m, Skew: f.skew},
	}
	if f.tokens != "" {
		for i, tok := range strings.Split(f.tokens, ",") {
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
	var b strings.Builder
	fmt.Fprintf(&b, "discordsim ready in %v: %d guilds, %d members, %d recommended shards, max_concurrency %d\n",
		time.Since(start).Round(time.Millisecond), c.Guilds, c.Members, c.Shards, c.MaxConcurrency)
	fmt.Fprintf(&b, "  REST base:   %s/api/v10\n", sim.URL())
	fmt.Fprintf(&b, "  gateway:     %s/?v=10&encoding=json&compress=zlib-stream\n", sim.GatewayURL())
	fmt.Fprintf(&b, "  resume URL:  %s\n", sim.ResumeGatewayURL())
	fmt.Fprintf(&b, "  stats:       %s/_sim/stats\n", sim.URL())
	fmt.Fprintf(&b, "  faults:      POST %s/_sim/faults/{disconnect,reconnect,invalidate,zombie,drop-ack,heartbeat}\n", sim.URL())
	fmt.Fprintf(&b, "  load:        POST %s/_sim/load {\"rate\":1000}\n", sim.URL())
	if f.tokens == "" {
		// Printing the generated token is the point: it is how a local bot logs in.
		fmt.Fprintf(&b, "  bot token:   %s\n", sim.Bots()[0].Token)
	}
	if f.rate > 0 {
		fmt.Fprintf(&b, "  traffic:     %g events/s\n", f.rate)
	}
	_, _ = io.WriteString(stdout, b.String()) // a closed stdout leaves nobody to tell
	<-ctx.Done()
	return nil
}
