package rest

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kubecord/kubecord/internal/redact"
	"github.com/kubecord/kubecord/internal/runtime"
	"github.com/kubecord/kubecord/services/rest/internal/ratelimit"
)

// DefaultDiscordURL is Discord's REST API base, without the version.
const DefaultDiscordURL = "https://discord.com/api"

// DefaultMaxBodyBytes is Discord's maximum request size when sending a
// message (25 MiB). Guilds with boosts accept bigger uploads: raise
// --max-body-bytes for them.
const DefaultMaxBodyBytes = 25 << 20

// DefaultUserAgent is sent when the caller sends none; Discord requires the
// "DiscordBot (url, version)" form.
const DefaultUserAgent = "DiscordBot (https://github.com/kubecord/kubecord, 0.1) kubecord-rest"

// Bot is a configured bot: a name callers use and its token.
type Bot struct {
	Name  string
	Token string
	// GlobalLimit overrides Config.GlobalLimit for this bot when positive
	// (large bots get a higher global limit from Discord).
	GlobalLimit int
}

// LogValue never shows the token.
func (b Bot) String() string { return b.Name + "=" + redact.Placeholder }

// Config configures the REST service. Zero values take the defaults listed
// with each field; DefaultConfig fills them in for flags.
type Config struct {
	// DiscordURL is the API base without the version (default
	// DefaultDiscordURL); tests point it at discordsim's /api.
	DiscordURL string
	// APIVersion is used for Do calls whose path carries no version (10).
	APIVersion int
	// Bots are the configured bots; DefaultBot (a name) answers calls that
	// name none, defaulting to the only bot when there is one.
	Bots       []Bot
	DefaultBot string
	// BotGlobalLimits sets Bot.GlobalLimit by bot name (--bot-global-limit
	// name=N), for bots Discord gave a higher global limit.
	BotGlobalLimits map[string]int
	// HTTPListen is the HTTP passthrough's address; empty disables it.
	HTTPListen string
	// AuthSecret, when set, must be presented by passthrough callers that
	// borrow a configured bot's token (header X-Kubecord-Auth); callers that
	// send their own Discord token need nothing else. Set from the runtime's
	// --auth-secret by the command.
	AuthSecret string
	// RedisURL, when set, keeps ratelimit state in Redis, shared by every
	// replica pointing at it (redis://host:port/db). Empty = memory.
	RedisURL    string
	RedisPrefix string
	// Limits tunes the ratelimiter (global limit, invalid-request guard,
	// margins, queue bound).
	Limits ratelimit.Config
	// RequestTimeout bounds a call that carries no deadline (30s).
	RequestTimeout time.Duration
	// MaxRetries bounds retries of idempotent requests after 502/503/504
	// or network errors (3; negative for none), spaced by RetryBackoff
	// doubling (100ms).
	MaxRetries   int
	RetryBackoff time.Duration
	// Max429Retries bounds resending after a 429 (3; negative for none).
	Max429Retries int
	// MaxBodyBytes refuses larger request bodies before sending
	// (DefaultMaxBodyBytes).
	MaxBodyBytes int64
	// MaxResponseBytes bounds a response body read from Discord (64 MiB).
	MaxResponseBytes int64
	// UserAgent is sent when the caller sent none (DefaultUserAgent).
	UserAgent string
	// MaxIdleConns is the keep-alive pool size to Discord (256).
	MaxIdleConns int
}

// DefaultConfig returns the defaults, for binding to flags.
func DefaultConfig() Config {
	return Config{
		DiscordURL:       DefaultDiscordURL,
		APIVersion:       10,
		HTTPListen:       "127.0.0.1:7080",
		RedisPrefix:      "kubecord:rl:",
		RequestTimeout:   30 * time.Second,
		MaxRetries:       3,
		RetryBackoff:     100 * time.Millisecond,
		Max429Retries:    3,
		MaxBodyBytes:     DefaultMaxBodyBytes,
		MaxResponseBytes: 64 << 20,
		UserAgent:        DefaultUserAgent,
		MaxIdleConns:     256,
		Limits: ratelimit.Config{
			GlobalLimit:   50,
			GlobalWindow:  time.Second,
			InvalidLimit:  5000,
			InvalidWindow: 10 * time.Minute,
			Margin:        10 * time.Millisecond,
			ProbeTTL:      10 * time.Second,
			MaxQueue:      1000,
			BadTTL:        time.Hour,
		},
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.DiscordURL == "" {
		c.DiscordURL = d.DiscordURL
	}
	c.DiscordURL = strings.TrimRight(c.DiscordURL, "/")
	if c.APIVersion <= 0 {
		c.APIVersion = d.APIVersion
	}
	if c.RedisPrefix == "" {
		c.RedisPrefix = d.RedisPrefix
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = d.RequestTimeout
	}
	switch {
	case c.MaxRetries == 0:
		c.MaxRetries = d.MaxRetries
	case c.MaxRetries < 0:
		c.MaxRetries = 0
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = d.RetryBackoff
	}
	switch {
	case c.Max429Retries == 0:
		c.Max429Retries = d.Max429Retries
	case c.Max429Retries < 0:
		c.Max429Retries = 0
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = d.MaxBodyBytes
	}
	if c.MaxResponseBytes <= 0 {
		c.MaxResponseBytes = d.MaxResponseBytes
	}
	if c.UserAgent == "" {
		c.UserAgent = d.UserAgent
	}
	if c.MaxIdleConns <= 0 {
		c.MaxIdleConns = d.MaxIdleConns
	}
	if len(c.Bots) == 1 && c.DefaultBot == "" {
		c.DefaultBot = c.Bots[0].Name
	}
	if len(c.BotGlobalLimits) > 0 {
		bots := make([]Bot, len(c.Bots))
		for i, b := range c.Bots {
			if n, ok := c.BotGlobalLimits[b.Name]; ok {
				b.GlobalLimit = n
			}
			bots[i] = b
		}
		c.Bots = bots
	}
	return c
}

// Validate checks c and returns every problem at once, each naming the
// flag to fix. Tokens never appear in the errors.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if u, err := url.Parse(c.DiscordURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		add("--discord-url %q: want an http(s) URL such as %s", c.DiscordURL, DefaultDiscordURL)
	}
	names := map[string]bool{}
	for i, b := range c.Bots {
		switch {
		case b.Name == "":
			add("--bot #%d: empty name; use name=token", i+1)
		case names[b.Name]:
			add("--bot %q given twice", b.Name)
		case strings.TrimSpace(b.Token) == "":
			add("--bot %q: empty token", b.Name)
		}
		names[b.Name] = true
	}
	for _, name := range sortedKeys(boolKeys(c.BotGlobalLimits)) {
		switch n := c.BotGlobalLimits[name]; {
		case !names[name]:
			add("--bot-global-limit %s=%d: %q is not a configured bot (known: %s)", name, n, name, strings.Join(sortedKeys(names), ", "))
		case n <= 0:
			add("--bot-global-limit %s=%d: want a positive requests-per-second figure", name, n)
		}
	}
	if c.DefaultBot != "" && !names[c.DefaultBot] {
		add("--default-bot %q is not a configured bot (known: %s)", c.DefaultBot, strings.Join(sortedKeys(names), ", "))
	}
	if c.RedisURL != "" {
		if _, err := url.Parse(c.RedisURL); err != nil {
			add("--redis-url: not a URL (redis://host:port/db)")
		}
	}
	if c.Limits.GlobalLimit < 0 {
		add("--global-limit %d: must be positive", c.Limits.GlobalLimit)
	}
	if c.Limits.InvalidLimit > 10000 {
		add("--invalid-limit %d: Discord bans the IP at 10,000 invalid requests per 10 minutes; stay well below", c.Limits.InvalidLimit)
	}
	return errors.Join(errs...)
}

func boolKeys(m map[string]int) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// botsValue is the repeatable --bot flag: name=token, or several
// comma-separated (the form KUBECORD_BOTS takes). Tokens are registered
// with redact as they are parsed and never printed.
type botsValue struct{ bots *[]Bot }

func (v botsValue) String() string {
	if v.bots == nil {
		return ""
	}
	parts := make([]string, 0, len(*v.bots))
	for _, b := range *v.bots {
		parts = append(parts, b.String())
	}
	return strings.Join(parts, ",")
}

func (v botsValue) Set(s string) error {
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, token, ok := strings.Cut(item, "=")
		name, token = strings.TrimSpace(name), strings.TrimSpace(token)
		redact.Add(token)
		if !ok || name == "" || token == "" {
			return errors.New("want name=token (the token is not shown)")
		}
		*v.bots = append(*v.bots, Bot{Name: name, Token: token})
	}
	return nil
}

// RegisterFlags binds c to flags on fs (environment: KUBECORD_<FLAG>, so
// KUBECORD_BOTS=name=token,name2=token2).
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.DiscordURL, "discord-url", c.DiscordURL, "Discord REST API base without the version (point it at discordsim for tests)")
	fs.IntVar(&c.APIVersion, "api-version", c.APIVersion, "API version for Do calls whose path has none")
	bv := botsValue{bots: &c.Bots}
	fs.Var(bv, "bot", "a bot as name=token (repeatable; tokens are never logged)")
	fs.Var(bv, "bots", "bots as comma-separated name=token pairs")
	fs.StringVar(&c.DefaultBot, "default-bot", c.DefaultBot, "bot used when a call names none (default: the only bot)")
	fs.Func("bot-global-limit", "a bot's own global limit as name=requests-per-second (repeatable), for bots Discord gave more than --global-limit", func(v string) error {
		name, n, ok := strings.Cut(v, "=")
		limit, err := strconv.Atoi(strings.TrimSpace(n))
		if !ok || err != nil {
			return fmt.Errorf("want name=requests-per-second, got %q", v)
		}
		if c.BotGlobalLimits == nil {
			c.BotGlobalLimits = map[string]int{}
		}
		c.BotGlobalLimits[strings.TrimSpace(name)] = limit
		return nil
	})
	fs.StringVar(&c.HTTPListen, "http-listen", c.HTTPListen, "HTTP passthrough address (/api/v{N}/...); empty disables")
	runtime.SecretVar(fs, &c.RedisURL, "redis-url", "Redis holding ratelimit state shared by replicas (redis://[:password@]host:port/db); empty = memory, one replica")
	fs.StringVar(&c.RedisPrefix, "redis-prefix", c.RedisPrefix, "prefix of every Redis key")
	fs.IntVar(&c.Limits.GlobalLimit, "global-limit", c.Limits.GlobalLimit, "requests per second per bot across all routes (Discord: 50)")
	fs.Int64Var(&c.Limits.InvalidLimit, "invalid-limit", c.Limits.InvalidLimit, "refuse new requests after this many 401/403/429 responses in 10 minutes (Discord bans the IP at 10,000; negative disables)")
	fs.DurationVar(&c.Limits.Margin, "ratelimit-margin", c.Limits.Margin, "added to every reset and retry_after")
	fs.IntVar(&c.Limits.MaxQueue, "max-queue", c.Limits.MaxQueue, "most requests waiting on one bucket per replica; more get RESOURCE_EXHAUSTED")
	fs.DurationVar(&c.RequestTimeout, "request-timeout", c.RequestTimeout, "bound of a call that has no deadline of its own, waits included")
	fs.IntVar(&c.MaxRetries, "max-retries", c.MaxRetries, "retries of idempotent requests after 502/503/504 or network errors (negative: none)")
	fs.IntVar(&c.Max429Retries, "max-429-retries", c.Max429Retries, "resends after a 429 (negative: none)")
	fs.Int64Var(&c.MaxBodyBytes, "max-body-bytes", c.MaxBodyBytes, "largest request body sent to Discord (Discord: 25 MiB per message; more in boosted guilds)")
}
