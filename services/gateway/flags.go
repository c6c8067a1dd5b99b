package gateway

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/kubecord/kubecord/internal/runtime"
)

// DefaultConfig returns the gateway's defaults (Discord's real timings, zlib-stream).
func DefaultConfig() Config {
	return Config{RESTBase: DefaultRESTBase, Compression: "zlib-stream", Intents: defaultIntents, ReshardCheck: time.Hour}
}

// defaultIntents are every non-privileged intent: bits 0, 2-7, 9-14, 16, 20, 21, 24 and 25,
// leaving out GUILD_MEMBERS (1), GUILD_PRESENCES (8) and MESSAGE_CONTENT (15).
const defaultIntents = 1<<0 | 1<<2 | 1<<3 | 1<<4 | 1<<5 | 1<<6 | 1<<7 | 1<<9 | 1<<10 | 1<<11 |
	1<<12 | 1<<13 | 1<<14 | 1<<16 | 1<<20 | 1<<21 | 1<<24 | 1<<25

// RegisterFlags binds c's fields to flags on fs (each also read from KUBECORD_<FLAG>).
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	runtime.SecretVar(fs, &c.Token, "token", "Discord bot token (required; never logged)")
	fs.StringVar(&c.RESTBase, "rest-base", c.RESTBase, "Discord REST base URL, for GET /gateway/bot (point it at the REST service's passthrough or at discordsim)")
	fs.StringVar(&c.GatewayURL, "gateway-url", c.GatewayURL, "gateway websocket URL; empty takes it from GET /gateway/bot")
	fs.IntVar(&c.ShardCount, "shard-count", c.ShardCount, "total shard count of the bot; 0 takes Discord's recommendation")
	fs.Var((*intList)(&c.ShardIDs), "shard-ids", "comma-separated shards this pod runs; empty runs all")
	fs.Uint64Var(&c.Intents, "intents", c.Intents, "gateway intents bitfield")
	fs.StringVar(&c.Compression, "compression", c.Compression, "gateway transport compression: zlib-stream, zstd-stream or none")
	fs.IntVar(&c.LargeThreshold, "large-threshold", c.LargeThreshold, "Identify large_threshold (50..250; 0 = Discord's default)")
	fs.StringVar(&c.GatewayID, "gateway-id", c.GatewayID, "name of this pod in status and Subscribed (default: host name)")
	fs.Var((*stringList)(&c.Groups), "groups", "comma-separated consumer groups declared at start: they buffer events before their first member joins and never expire (e.g. state,bot)")
	fs.IntVar(&c.Delivery.MaxBufferedEvents, "group-buffer-events", delivery0(c.Delivery.MaxBufferedEvents, 100_000), "per-group buffer bound in events; overflow drops the oldest and announces a gap")
	fs.Int64Var(&c.Delivery.MaxBufferedBytes, "group-buffer-bytes", delivery0(c.Delivery.MaxBufferedBytes, 256<<20), "per-group buffer bound in payload bytes")
	fs.DurationVar(&c.Delivery.GroupTTL, "group-ttl", c.Delivery.GroupTTL, "how long a group without members keeps buffering (0 = 5m)")
	fs.DurationVar(&c.Delivery.AckTimeout, "ack-timeout", c.Delivery.AckTimeout, "evict a member holding a delivery unacked this long (0 = 60s)")
	fs.IntVar(&c.Delivery.MaxAttempts, "max-attempts", delivery0(c.Delivery.MaxAttempts, 10), "deliveries of one event to a group without an ack (nacked for requeue, or held by members that left) before it is dropped and announced as a gap")
	fs.IntVar(&c.Delivery.MaxInFlight, "max-in-flight-cap", c.Delivery.MaxInFlight, "largest credit a member may grant (0 = 10000)")
	fs.IntVar(&c.DefaultMaxInFlight, "default-max-in-flight", c.DefaultMaxInFlight, "credit of a Subscribe that asks for 0 (0 = 256)")
	fs.DurationVar(&c.StreamHeartbeat, "stream-heartbeat", c.StreamHeartbeat, "heartbeat interval on idle Consume streams (0 = 15s)")
	runtime.SecretVar(fs, &c.RedisURL, "redis-url", "Redis for running many gateway pods of one bot (redis://[:password@]host:port[/db]): shard leases, sessions handed between pods, shared identify windows and budget; empty runs every shard in this pod")
	fs.StringVar(&c.RedisPrefix, "redis-prefix", c.RedisPrefix, "prefix of every Redis key (default kubecord)")
	fs.DurationVar(&c.LeaseTTL, "lease-ttl", c.LeaseTTL, "how long the shards of a pod that stopped renewing (killed) stay unowned (0 = 10s)")
	fs.DurationVar(&c.LeaseRenew, "lease-renew", c.LeaseRenew, "shard lease renewal interval, under --lease-ttl (0 = 3s)")
	fs.DurationVar(&c.SessionSave, "session-save", c.SessionSave, "interval of session saves while shards run: what a pod taking over a killed pod's shards resumes from (0 = 1s)")
	fs.DurationVar(&c.HandoffTimeout, "handoff-timeout", c.HandoffTimeout, "per shard, how long a stopping pod waits for workers to ack the shard's outstanding events before handing it on (0 = 5s)")
	fs.DurationVar(&c.ReshardCheck, "reshard-check", c.ReshardCheck, "how often to compare the shard count with GET /gateway/bot's recommendation and reshard, without downtime, when it grew (0 never)")
	fs.IntVar(&c.ShadowEvents, "reshard-shadow-events", c.ShadowEvents, "events a new shard set holds per pod while a reshard warms it up (0 = 200000)")
	fs.DurationVar(&c.IdentifyWindow, "identify-window", c.IdentifyWindow, "identify window per max_concurrency bucket (0 = Discord's 5s plus a margin; only simulators want less)")
}

func delivery0[T int | int64](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// intList is a comma-separated list of non-negative integers as a flag.
type intList []int

func (l *intList) String() string {
	if l == nil {
		return ""
	}
	parts := make([]string, len(*l))
	for i, v := range *l {
		parts[i] = strconv.Itoa(v)
	}
	return strings.Join(parts, ",")
}

func (l *intList) Set(s string) error {
	*l = nil
	if strings.TrimSpace(s) == "" {
		return nil
	}
	for _, p := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || v < 0 {
			return fmt.Errorf("%q is not a shard id (a non-negative integer)", p)
		}
		*l = append(*l, v)
	}
	return nil
}

// stringList is a comma-separated list of names as a flag.
type stringList []string

func (l *stringList) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, ",")
}

func (l *stringList) Set(s string) error {
	*l = nil
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}
