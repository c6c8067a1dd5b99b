// Package discordsim is a simulator of Discord's gateway and REST API, faithful
// enough that a bot that works against it works against Discord.
//
// Start one in a test, point a bot (or Kubecord) at its URLs, and read its
// accounting to prove what was sent, what arrived and that no limit was broken:
//
//	sim, err := discordsim.New(discordsim.Config{Guilds: 20, Members: 2000})
//	if err != nil { ... }
//	if err := sim.Start(ctx); err != nil { ... }
//	defer sim.Close()
//	// REST base: sim.URL() + "/api/v10", gateway: sim.GatewayURL(), token: sim.Bots()[0].Token
//
// The world (guilds, channels, roles, members) is generated from Config.Seed,
// so two simulators with the same Config serve the same world. Members are
// procedural: a guild of 100,000 members costs a few words of memory until a
// member is changed through the API.
//
// The gateway follows Discord's documented behaviour: v=9/10, encoding=json,
// zlib-stream and zstd-stream transport compression, Hello and heartbeats
// (a silent connection is closed with 4009), Identify validation with the
// 4001-4014 close codes, identify buckets of shard_id % max_concurrency per
// window, the daily session start budget, READY then one GUILD_CREATE per
// guild of the shard (large_threshold and the 75k rule), intents filtering,
// Resume with a bounded replay buffer, the 120 sends per 60 s limit, and op 8
// answered with GUILD_MEMBERS_CHUNK. Every timer is in Config, with
// Discord's values as defaults, so tests can run them fast.
//
// Faults (Disconnect, SendReconnect, InvalidateSession, Zombie, DropNextAck,
// RequestHeartbeat) can be injected from Go or over HTTP
// (POST /_sim/faults/{kind}); GatewayStats, SentSeqs and GET /_sim/stats
// report what was sent, per session and sequence number. StartLoad generates
// realistic, skewed traffic at a chosen rate.
package discordsim

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Bot is one bot account the simulator accepts. Each bot has its own token,
// its own gateway sessions and its own REST ratelimits.
type Bot struct {
	ID    Snowflake
	Name  string
	Token string
	// PrivilegedIntents are the privileged intents (GUILD_MEMBERS,
	// GUILD_PRESENCES, MESSAGE_CONTENT) enabled for this bot in the developer
	// portal; identifying with any other privileged bit closes with 4014. The
	// bot generated when Config.Bots is empty has all three.
	PrivilegedIntents int64
}

// Config describes the simulated world and its limits. Zero values take
// Discord's real defaults, so tests only set what they need.
type Config struct {
	// Bots are the accepted bot accounts; one is generated when empty.
	Bots []Bot
	// REST holds the REST API's limits and quirks.
	REST RESTConfig
	// Logger receives the simulator's logs; nil discards them.
	Logger *slog.Logger

	// Seed makes the world and the generated load deterministic (default 1).
	Seed uint64
	// Guilds is the number of guilds every bot is in (default 10, max 100,000).
	Guilds int
	// Members is the total number of guild memberships, spread over the
	// guilds with a skewed (Zipf-like) distribution: a few guilds are huge,
	// most are small. Default 50 per guild. Every guild has at least 2.
	Members int
	// HotGuilds is how many of the largest guilds are "hot" and carry most of
	// the generated traffic (default 1% of guilds, at least 1).
	HotGuilds int

	// Shards is the shard count recommended by GET /gateway/bot (default one
	// per 1,000 guilds, at least 1).
	Shards int
	// MaxConcurrency is the number of identify buckets per IdentifyWindow
	// (default 1).
	MaxConcurrency int
	// SessionStartTotal is the daily identify budget (default 1000).
	SessionStartTotal int
	// SessionStartUsed is how much of the budget is already spent at start.
	SessionStartUsed int
	// SessionStartReset is how long until the budget refills (default 24h).
	SessionStartReset time.Duration
	// IdentifyWindow is the length of one identify bucket window (default 5s).
	IdentifyWindow time.Duration
	// HeartbeatInterval is sent in Hello (default 41.25s, as Discord sends today).
	HeartbeatInterval time.Duration
	// HeartbeatTimeout is how long the server waits for a heartbeat before
	// closing the connection with 4009 (default 1.5 × HeartbeatInterval).
	HeartbeatTimeout time.Duration
	// SendLimit client payloads are allowed per SendWindow on one connection
	// (default 120 per 60s); one more closes with 4008.
	SendLimit  int
	SendWindow time.Duration
	// MaxGuildsPerShard is the most guilds one shard may hold; more closes
	// with 4011 (default 2500).
	MaxGuildsPerShard int
	// ResumeBuffer is how many dispatches a session keeps for replay
	// (default 20,000). Discord does not document its buffer size.
	ResumeBuffer int
	// ResumeMemory bounds the bytes of all sessions' replay buffers
	// together (default 1 GiB): each session keeps at most its share, so a
	// thousand shards under load stay within memory.
	ResumeMemory int
	// ResumeTimeout is how long a disconnected session stays resumable
	// (default 3 minutes; Discord says "a few minutes").
	ResumeTimeout time.Duration
	// SendQueue is how many messages may wait for a slow client before its
	// connection is closed with 4000 (default 50,000). The session stays
	// resumable.
	SendQueue int
	// MemberRequestInterval is the per guild per bot limit on op 8 requests
	// for the whole member list (default 30s).
	MemberRequestInterval time.Duration

	// CompressionLevel is the zlib level of zlib-stream and payload
	// compression (default 1, best speed). Clients cannot observe the
	// level; the fastest keeps the simulator's CPU for the bot under test.
	CompressionLevel int

	// Addr is the listen address of REST, the gateway and /_sim (default
	// 127.0.0.1:0). ResumeAddr serves resume_gateway_url (default
	// 127.0.0.1:0), a different port so a client that ignores
	// resume_gateway_url shows up in the accounting.
	Addr       string
	ResumeAddr string

	// Load configures the traffic generator started with Start; zero Rate
	// means no generated traffic (StartLoad can start it later).
	Load LoadConfig
}

// withDefaults fills zero values with Discord's values and validates the rest.
func (c Config) withDefaults() (Config, error) {
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Guilds == 0 {
		c.Guilds = 10
	}
	if c.Guilds < 0 || c.Guilds > 100_000 {
		return c, fmt.Errorf("guilds must be between 1 and 100000, got %d", c.Guilds)
	}
	if c.Members == 0 {
		c.Members = 50 * c.Guilds
	}
	if c.Members < 2*c.Guilds || c.Members > 10_000_000 {
		return c, fmt.Errorf("members must be between 2 per guild (%d) and 10000000, got %d", 2*c.Guilds, c.Members)
	}
	if c.HotGuilds == 0 {
		c.HotGuilds = max(1, c.Guilds/100)
	}
	if c.HotGuilds < 0 || c.HotGuilds > c.Guilds {
		return c, fmt.Errorf("hot guilds must be between 0 and guilds (%d), got %d", c.Guilds, c.HotGuilds)
	}
	if c.Shards == 0 {
		c.Shards = max(1, (c.Guilds+999)/1000)
	}
	if c.MaxConcurrency == 0 {
		c.MaxConcurrency = 1
	}
	if c.Shards < 0 || c.MaxConcurrency < 0 {
		return c, errors.New("shards and max concurrency must be positive")
	}
	if c.SessionStartTotal == 0 {
		c.SessionStartTotal = 1000
	}
	if c.SessionStartUsed < 0 || c.SessionStartUsed > c.SessionStartTotal {
		return c, fmt.Errorf("session start used must be between 0 and total (%d), got %d", c.SessionStartTotal, c.SessionStartUsed)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.SessionStartReset, 24*time.Hour)
	def(&c.IdentifyWindow, 5*time.Second)
	def(&c.HeartbeatInterval, 41250*time.Millisecond)
	def(&c.HeartbeatTimeout, c.HeartbeatInterval*3/2)
	def(&c.SendWindow, 60*time.Second)
	def(&c.ResumeTimeout, 3*time.Minute)
	def(&c.MemberRequestInterval, 30*time.Second)
	if c.SendLimit == 0 {
		c.SendLimit = 120
	}
	if c.MaxGuildsPerShard == 0 {
		c.MaxGuildsPerShard = 2500
	}
	if c.ResumeBuffer == 0 {
		c.ResumeBuffer = 20_000
	}
	if c.ResumeMemory == 0 {
		c.ResumeMemory = 1 << 30
	}
	if c.SendQueue == 0 {
		c.SendQueue = 50_000
	}
	if c.CompressionLevel == 0 {
		c.CompressionLevel = 1
	}
	if c.CompressionLevel < -2 || c.CompressionLevel > 9 {
		return c, fmt.Errorf("compression level must be between -2 and 9, got %d", c.CompressionLevel)
	}
	if c.Addr == "" {
		c.Addr = "127.0.0.1:0"
	}
	if c.ResumeAddr == "" {
		c.ResumeAddr = "127.0.0.1:0"
	}
	for _, d := range []time.Duration{c.SessionStartReset, c.IdentifyWindow, c.HeartbeatInterval, c.HeartbeatTimeout, c.SendWindow, c.ResumeTimeout, c.MemberRequestInterval} {
		if d < 0 {
			return c, errors.New("durations must not be negative")
		}
	}
	if c.SendLimit < 0 || c.MaxGuildsPerShard < 0 || c.ResumeBuffer < 0 || c.ResumeMemory < 0 || c.SendQueue < 0 {
		return c, errors.New("limits must not be negative")
	}
	if err := c.Load.validate(); err != nil {
		return c, err
	}
	return c, nil
}

// Server is a running simulator.
type Server struct {
	cfg   Config
	log   *slog.Logger
	world *World
	rest  *restState
	mux   *http.ServeMux

	gw *gatewayState
	// recommended overrides cfg.Shards in GET /gateway/bot when above 0.
	recommended atomic.Int64

	bots   []*Bot
	botsMu sync.RWMutex
	// revoked holds tokens reset after the session start budget ran out.
	revoked map[string]bool

	lis, resumeLis net.Listener
	srv, resumeSrv *http.Server
	startOnce      sync.Once
	closeOnce      sync.Once
	done           chan struct{}
	wg             sync.WaitGroup

	loadMu sync.Mutex
	load   *loadGen
}

// New builds a simulator and its world. It listens only after Start.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("discordsim config: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{cfg: cfg, log: log, mux: http.NewServeMux(), revoked: map[string]bool{}, done: make(chan struct{})}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x5eed))
	s.world = generateWorld(cfg, rng)
	if len(cfg.Bots) == 0 {
		cfg.Bots = []Bot{generateBot(rng, "Kubecord Sim", privilegedIntents)}
		s.cfg.Bots = cfg.Bots
	}
	for i := range cfg.Bots {
		b := cfg.Bots[i]
		if b.Token == "" {
			return nil, fmt.Errorf("discordsim config: bot %d has no token", i)
		}
		if b.ID == 0 {
			b.ID = s.world.ids.next(time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC))
		}
		if b.Name == "" {
			b.Name = "bot-" + strconv.Itoa(i)
		}
		s.bots = append(s.bots, &b)
		s.world.addBotLocked(&b)
	}
	s.gw = newGatewayState(s)
	return s, nil
}

// generateBot makes a bot with a Discord-shaped token: the base64 of the
// bot's id, a timestamp part and a random part, joined by dots.
func generateBot(rng *rand.Rand, name string, privileged int64) Bot {
	id := Snowflake(uint64(time.Date(2021, 6, 1, 0, 0, 0, 0, time.UTC).UnixMilli()-DiscordEpoch+rng.Int64N(1<<20))<<22 | 1<<17)
	secret := make([]byte, 27)
	for i := range secret {
		secret[i] = byte(rng.Uint32())
	}
	ts := make([]byte, 4)
	for i := range ts {
		ts[i] = byte(rng.Uint32())
	}
	tok := base64.RawStdEncoding.EncodeToString([]byte(id.String())) + "." +
		base64.RawURLEncoding.EncodeToString(ts) + "." + base64.RawURLEncoding.EncodeToString(secret)
	return Bot{ID: id, Name: name, Token: tok, PrivilegedIntents: privileged}
}

// Bots returns the accepted bots (copies).
func (s *Server) Bots() []Bot {
	s.botsMu.RLock()
	defer s.botsMu.RUnlock()
	out := make([]Bot, len(s.bots))
	for i, b := range s.bots {
		out[i] = *b
	}
	return out
}

// Config returns the configuration with defaults applied.
func (s *Server) Config() Config { return s.cfg }

// botByToken authenticates a token for REST and Identify. A token revoked
// because its bot overran the session start budget no longer works.
func (s *Server) botByToken(token string) (*Bot, bool) {
	s.botsMu.RLock()
	defer s.botsMu.RUnlock()
	if s.revoked[token] {
		return nil, false
	}
	for _, b := range s.bots {
		if b.Token == token {
			return b, true
		}
	}
	return nil, false
}

// newID returns a fresh time-ordered snowflake.
func (s *Server) newID() Snowflake { return s.world.ids.next(time.Now()) }

// Start listens on Config.Addr and Config.ResumeAddr and serves REST, the
// gateway and the /_sim admin endpoints until Close or ctx ends.
func (s *Server) Start(ctx context.Context) error {
	err := errors.New("discordsim: Start called twice")
	s.startOnce.Do(func() { err = s.start(ctx) })
	return err
}

func (s *Server) start(ctx context.Context) error {
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", s.cfg.Addr, err)
	}
	rlis, err := lc.Listen(ctx, "tcp", s.cfg.ResumeAddr)
	if err != nil {
		_ = lis.Close()
		return fmt.Errorf("listening on %s: %w", s.cfg.ResumeAddr, err)
	}
	s.lis, s.resumeLis = lis, rlis
	s.rest = newRESTState(s)
	s.mux.Handle("/api/", s.restHandler())
	s.mountAdmin()
	s.mux.HandleFunc("/", s.rootHandler)
	rmux := http.NewServeMux()
	rmux.HandleFunc("/", s.gw.serveWS)
	s.srv = &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second}
	s.resumeSrv = &http.Server{Handler: rmux, ReadHeaderTimeout: 10 * time.Second}
	for _, p := range []struct {
		srv *http.Server
		lis net.Listener
	}{{s.srv, lis}, {s.resumeSrv, rlis}} {
		s.wg.Go(func() {
			if err := p.srv.Serve(p.lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("discordsim: serving", "addr", p.lis.Addr().String(), "err", err)
			}
		})
	}
	s.wg.Go(s.gw.janitor)
	s.wg.Go(func() {
		select {
		case <-ctx.Done():
			s.shutdown()
		case <-s.done:
		}
	})
	if s.cfg.Load.Rate > 0 {
		if err := s.StartLoad(s.cfg.Load); err != nil {
			s.Close()
			return err
		}
	}
	s.log.Info("discordsim started", "rest", s.URL(), "gateway", s.GatewayURL(), "guilds", s.cfg.Guilds, "shards", s.cfg.Shards)
	return nil
}

// rootHandler serves the gateway websocket on "/" and 404s everything else
// the other handlers did not claim.
func (s *Server) rootHandler(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/" {
		s.gw.serveWS(w, r)
		return
	}
	writeJSON(w, http.StatusNotFound, map[string]any{"message": "404: Not Found", "code": 0})
}

// Close stops the load, closes every gateway connection and both listeners,
// and waits for every goroutine the simulator started.
func (s *Server) Close() {
	s.shutdown()
	s.wg.Wait()
	s.gw.wait()
}

// shutdown starts closing without waiting, so the context watcher can call it.
func (s *Server) shutdown() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.StopLoad()
		s.gw.closeAll()
		for _, srv := range []*http.Server{s.srv, s.resumeSrv} {
			if srv != nil {
				_ = srv.Close()
			}
		}
	})
}

// URL is the REST base without the version, e.g. http://127.0.0.1:1234;
// append /api/v10.
func (s *Server) URL() string {
	if s.lis == nil {
		return ""
	}
	return "http://" + s.lis.Addr().String()
}

// GatewayURL is the gateway websocket URL (without query parameters), as
// GET /gateway returns it.
func (s *Server) GatewayURL() string {
	if s.lis == nil {
		return ""
	}
	return "ws://" + s.lis.Addr().String()
}

// ResumeGatewayURL is the URL sent in READY as resume_gateway_url.
func (s *Server) ResumeGatewayURL() string {
	if s.resumeLis == nil {
		return ""
	}
	return "ws://" + s.resumeLis.Addr().String()
}

// gatewayInfo is the body of GET /gateway.
func (s *Server) gatewayInfo() any {
	return map[string]string{"url": s.GatewayURL()}
}

// GatewayBotInfo is the body of GET /gateway/bot.
type GatewayBotInfo struct {
	URL               string            `json:"url"`
	Shards            int               `json:"shards"`
	SessionStartLimit SessionStartLimit `json:"session_start_limit"`
}

// SessionStartLimit is the identify budget reported by GET /gateway/bot.
type SessionStartLimit struct {
	Total          int `json:"total"`
	Remaining      int `json:"remaining"`
	ResetAfter     int `json:"reset_after"` // milliseconds
	MaxConcurrency int `json:"max_concurrency"`
}

// gatewayBotInfo is the body of GET /gateway/bot for b.
func (s *Server) gatewayBotInfo(b *Bot) any {
	shards := s.cfg.Shards
	if n := s.recommended.Load(); n > 0 {
		shards = int(n)
	}
	return GatewayBotInfo{URL: s.GatewayURL(), Shards: shards, SessionStartLimit: s.gw.sessionStartLimit(b.ID, time.Now())}
}

// SetRecommendedShards changes the shard count GET /gateway/bot recommends from now on,
// as Discord does when a bot grows; it does not touch running sessions, which keep
// working with their own shard count.
func (s *Server) SetRecommendedShards(n int) error {
	if n < 1 {
		return fmt.Errorf("recommended shard count %d must be at least 1", n)
	}
	s.recommended.Store(int64(n))
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"message":"encoding response failed","code":0}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
