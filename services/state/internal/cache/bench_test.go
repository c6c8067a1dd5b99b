package cache

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/bwmarrin/discordgo"

	discordv1 "github.com/kubecord/kubecord/gen/kubecord/discord/v1"
	"github.com/kubecord/kubecord/internal/discordjson"
	"github.com/kubecord/kubecord/internal/redistest"
)

// The benchmark world: KUBECORD_BENCH_GUILDS guilds (default 1,000) holding
// KUBECORD_BENCH_MEMBERS memberships (default 100,000), sizes skewed (a few big guilds, many
// small ones). Each guild has 12 roles, 25 channels and 8 emojis; members have a realistic
// user (username, global name, avatar hash), 0-3 roles and sometimes a nickname.
func benchWorld(b *testing.B) (guilds, members int) {
	guilds, members = 1000, 100_000
	if v, err := strconv.Atoi(os.Getenv("KUBECORD_BENCH_GUILDS")); err == nil && v > 0 {
		guilds = v
	}
	if v, err := strconv.Atoi(os.Getenv("KUBECORD_BENCH_MEMBERS")); err == nil && v > 0 {
		members = v
	}
	if members < guilds {
		b.Fatalf("need at least one member per guild")
	}
	return guilds, members
}

// guildSizes spreads members over guilds with a Zipf-like skew (exponent 0.9), at least 1.
func guildSizes(guilds, members int) []int {
	w := make([]float64, guilds)
	var sum float64
	for i := range w {
		w[i] = 1 / math.Pow(float64(i+1), 0.9)
		sum += w[i]
	}
	sizes := make([]int, guilds)
	left := members
	for i := range sizes {
		sizes[i] = max(1, int(float64(members)*w[i]/sum))
		left -= sizes[i]
	}
	for i := 0; left > 0; i = (i + 1) % guilds {
		sizes[i]++
		left--
	}
	for i := 0; left < 0; i = (i + 1) % guilds {
		if sizes[i] > 1 {
			sizes[i]--
			left++
		}
	}
	return sizes
}

const benchBotID = 1_000_000_000_000_000_001

func benchGuildID(i int) uint64 { return 900_000_000_000_000_000 + uint64(i)<<22 }

// benchGuildJSON is a GUILD_CREATE with roles, channels and emojis and only the bot as member.
func benchGuildJSON(i int, size int) []byte {
	gid := benchGuildID(i)
	var sb strings.Builder
	fmt.Fprintf(&sb, `{"id":"%d","name":"Guild number %d","icon":"a1b2c3d4e5f60718293a4b5c6d7e8f90","description":null,"splash":null,"discovery_splash":null,"banner":null,"owner_id":"%d","afk_channel_id":null,"afk_timeout":300,"widget_enabled":false,"verification_level":1,"default_message_notifications":1,"explicit_content_filter":2,"mfa_level":0,"system_channel_id":"%d","system_channel_flags":0,"rules_channel_id":null,"max_members":500000,"vanity_url_code":null,"premium_tier":1,"premium_subscription_count":3,"preferred_locale":"en-US","public_updates_channel_id":null,"max_video_channel_users":25,"nsfw_level":0,"nsfw":false,"premium_progress_bar_enabled":false,"features":["COMMUNITY","NEWS"],"joined_at":"2024-03-04T05:06:07.000000+00:00","large":%t,"member_count":%d,"roles":[`,
		gid, i, benchBotID+1+uint64(i), gid+1, size > 250, size)
	for r := range 12 {
		if r > 0 {
			sb.WriteByte(',')
		}
		id := gid
		if r > 0 {
			id = gid + 100 + uint64(r)
		}
		fmt.Fprintf(&sb, `{"id":"%d","name":"role %d","color":%d,"colors":{"primary_color":%d,"secondary_color":null,"tertiary_color":null},"hoist":%t,"icon":null,"unicode_emoji":null,"position":%d,"permissions":"%d","managed":false,"mentionable":true,"flags":0}`,
			id, r, r*1000, r*1000, r%3 == 0, r, uint64(1)<<(r+10)|1024)
	}
	sb.WriteString(`],"emojis":[`)
	for e := range 8 {
		if e > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"id":"%d","name":"emoji_%d","roles":[],"require_colons":true,"managed":false,"animated":%t,"available":true}`, gid+200+uint64(e), e, e%4 == 0)
	}
	sb.WriteString(`],"stickers":[],"channels":[`)
	for c := range 25 {
		if c > 0 {
			sb.WriteByte(',')
		}
		typ, parent := 0, fmt.Sprintf(`"%d"`, gid+1)
		switch {
		case c == 0:
			typ, parent = 4, "null"
		case c%6 == 5:
			typ = 2
		}
		fmt.Fprintf(&sb, `{"id":"%d","type":%d,"name":"channel-%d","position":%d,"parent_id":%s,"topic":"What channel %d is about","nsfw":false,"last_message_id":"%d","rate_limit_per_user":0,"permission_overwrites":[{"id":"%d","type":0,"allow":"0","deny":"2048"},{"id":"%d","type":0,"allow":"2048","deny":"0"}],"bitrate":64000,"user_limit":0}`,
			gid+1+uint64(c), typ, c, c, parent, c, gid+10_000+uint64(c), gid, gid+101)
	}
	fmt.Fprintf(&sb, `],"threads":[],"voice_states":[],"presences":[],"members":[%s]}`, benchMemberJSON(benchBotID, gid, 0))
	return []byte(sb.String())
}

func benchMemberJSON(uid, gid uint64, k int) string {
	nick := "null"
	if k%5 == 0 {
		nick = fmt.Sprintf(`"Nick %d"`, k)
	}
	roles := make([]string, k%4)
	for r := range roles {
		roles[r] = fmt.Sprintf(`"%d"`, gid+101+uint64((k+r)%11))
	}
	return fmt.Sprintf(`{"user":{"id":"%d","username":"member_%d","global_name":"Member %d","avatar":"%032x","discriminator":"0","public_flags":%d,"avatar_decoration_data":null,"bot":false},"nick":%s,"avatar":null,"banner":null,"roles":[%s],"joined_at":"2024-05-%02dT10:11:12.%06d+00:00","premium_since":null,"deaf":false,"mute":false,"flags":0,"pending":false,"communication_disabled_until":null}`,
		uid, uid%1_000_000_000, uid%1_000_000_000, uid*2654435761, k%3*64, nick, strings.Join(roles, ","), k%28+1, k%1_000_000)
}

// benchChunks yields GUILD_MEMBERS_CHUNK payloads of up to 1000 members for guild i.
func benchChunks(i, size int, yield func([]byte)) {
	gid := benchGuildID(i)
	count := (size + 999) / 1000
	for c := range count {
		var sb strings.Builder
		fmt.Fprintf(&sb, `{"guild_id":"%d","chunk_index":%d,"chunk_count":%d,"members":[`, gid, c, count)
		for k := c * 1000; k < min(size, (c+1)*1000); k++ {
			if k > c*1000 {
				sb.WriteByte(',')
			}
			// Users mostly belong to one guild; every 10th is shared with guild 0's users.
			uid := uint64(2_000_000_000_000_000_000) + uint64(i)<<20 + uint64(k)
			if k%10 == 9 {
				uid = 2_000_000_000_000_000_000 + uint64(k)
			}
			sb.WriteString(benchMemberJSON(uid, gid, k))
		}
		sb.WriteString(`]}`)
		yield([]byte(sb.String()))
	}
}

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// feeder2 is what the footprint benchmark drives: the cache or discordgo's State.
type footprintTarget interface {
	guild(d []byte) error
	chunk(d []byte) error
	measure() uint64 // bytes used now
}

type cacheTarget struct {
	c     *Cache
	seq   uint64
	redis *Redis
}

func (t *cacheTarget) apply(name string, d []byte) error {
	t.seq++
	ev := &discordv1.Event{ShardId: 0, ShardCount: 1, Sequence: t.seq, Name: name, Raw: d, SessionId: "bench"}
	if err := discordjson.DecodeEvent(ev); err != nil {
		return err
	}
	return t.c.Apply(context.Background(), ev)
}

func (t *cacheTarget) guild(d []byte) error { return t.apply("GUILD_CREATE", d) }
func (t *cacheTarget) chunk(d []byte) error { return t.apply("GUILD_MEMBERS_CHUNK", d) }
func (t *cacheTarget) measure() uint64 {
	if t.redis != nil {
		n, err := t.redis.Counts(context.Background())
		if err != nil {
			panic(err)
		}
		return n.MemoryBytes
	}
	return heapAlloc()
}

type discordgoTarget struct{ s *discordgo.State }

func (t *discordgoTarget) guild(d []byte) error {
	var gc discordgo.GuildCreate
	if err := json.Unmarshal(d, &gc); err != nil {
		return err
	}
	return t.s.GuildAdd(gc.Guild)
}

// chunk does what discordgo's State does for GUILD_MEMBERS_CHUNK (OnInterface): MemberAdd
// for every member, with the guild id set.
func (t *discordgoTarget) chunk(d []byte) error {
	var ch discordgo.GuildMembersChunk
	if err := json.Unmarshal(d, &ch); err != nil {
		return err
	}
	for _, m := range ch.Members {
		m.GuildID = ch.GuildID
		if err := t.s.MemberAdd(m); err != nil {
			return err
		}
	}
	return nil
}

func (t *discordgoTarget) measure() uint64 { return heapAlloc() }

// BenchmarkFootprint feeds the benchmark world (GUILD_CREATE per guild, then its members in
// GUILD_MEMBERS_CHUNKs) into each store and into discordgo's State, and reports the memory
// held per guild (measured after the guilds alone) and per member (the rest, divided by the
// memberships).
//
//	go test -run '^$' -bench Footprint -benchtime 1x ./services/state/internal/cache/
func BenchmarkFootprint(b *testing.B) {
	guilds, members := benchWorld(b)
	sizes := guildSizes(guilds, members)
	targets := []struct {
		name string
		make func(b *testing.B) footprintTarget
	}{
		{"memory", func(*testing.B) footprintTarget {
			return &cacheTarget{c: New(NewMemory(), AllResources(), slog.New(slog.NewTextHandler(io.Discard, nil)))}
		}},
		{"redis", func(b *testing.B) footprintTarget {
			addr := redistest.Start(b).Addr
			st, err := NewRedis(b.Context(), "redis://"+addr, "k:")
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = st.Close() })
			return &cacheTarget{c: New(st, AllResources(), slog.New(slog.NewTextHandler(io.Discard, nil))), redis: st}
		}},
		{"discordgo", func(*testing.B) footprintTarget { return &discordgoTarget{s: discordgo.NewState()} }},
	}
	for _, tg := range targets {
		b.Run(tg.name, func(b *testing.B) {
			for b.Loop() {
				t := tg.make(b)
				base := t.measure()
				for i := range guilds {
					if err := t.guild(benchGuildJSON(i, sizes[i])); err != nil {
						b.Fatal(err)
					}
				}
				withGuilds := t.measure()
				for i := range guilds {
					var err error
					benchChunks(i, sizes[i], func(d []byte) {
						if err == nil {
							err = t.chunk(d)
						}
					})
					if err != nil {
						b.Fatal(err)
					}
				}
				all := t.measure()
				runtime.KeepAlive(t)
				b.ReportMetric(float64(withGuilds-base)/float64(guilds), "B/guild")
				b.ReportMetric(float64(all-withGuilds)/float64(members), "B/member")
				b.ReportMetric(float64(all-base)/(1<<20), "MiB-total")
				if ct, ok := t.(*cacheTarget); ok && ct.redis == nil {
					// How close GetStats.memory_bytes (an estimate) is to the measured heap.
					n, err := ct.c.Store().Counts(context.Background())
					if err != nil {
						b.Fatal(err)
					}
					b.ReportMetric(100*float64(n.MemoryBytes)/float64(all-base), "estimate-%")
				}
			}
		})
	}
}

// BenchmarkApply measures events applied per second on a world of 200 guilds x 100 members
// with the live traffic the cache sees most: messages (member and author refresh), presence,
// member and voice updates, and typing (progress only).
//
//	go test -run '^$' -bench Apply ./services/state/internal/cache/
func BenchmarkApply(b *testing.B) {
	const guilds, per = 200, 100
	for _, kind := range []string{"memory", "redis"} {
		b.Run(kind, func(b *testing.B) {
			var st Store = NewMemory()
			if kind == "redis" {
				addr := redistest.Start(b).Addr
				r, err := NewRedis(b.Context(), "redis://"+addr, "k:")
				if err != nil {
					b.Fatal(err)
				}
				st = r
			}
			b.Cleanup(func() { _ = st.Close() })
			t := &cacheTarget{c: New(st, AllResources(), slog.New(slog.NewTextHandler(io.Discard, nil)))}
			for i := range guilds {
				if err := t.guild(benchGuildJSON(i, per)); err != nil {
					b.Fatal(err)
				}
				benchChunks(i, per, func(d []byte) {
					if err := t.chunk(d); err != nil {
						b.Fatal(err)
					}
				})
			}
			events := benchLiveEvents(b, guilds, per)
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for b.Loop() {
				ev := events[i%len(events)]
				i++
				ev.Sequence = t.seq + uint64(i)
				if err := t.c.Apply(b.Context(), ev); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

func benchLiveEvents(b *testing.B, guilds, per int) []*discordv1.Event {
	var out []*discordv1.Event
	add := func(name, d string) {
		ev := &discordv1.Event{ShardCount: 1, Name: name, Raw: []byte(d), SessionId: "bench"}
		if err := discordjson.DecodeEvent(ev); err != nil {
			b.Fatal(err)
		}
		out = append(out, ev)
	}
	for k := range 500 {
		i := k * 7 % guilds
		gid := benchGuildID(i)
		uid := uint64(2_000_000_000_000_000_000) + uint64(i)<<20 + uint64(k%per)
		if k%per%10 == 9 {
			uid = 2_000_000_000_000_000_000 + uint64(k%per)
		}
		member := benchMemberJSON(uid, gid, k)
		switch k % 10 {
		case 0, 1, 2, 3:
			user := member[strings.Index(member, `{"id"`):strings.Index(member, `,"nick"`)]
			add("MESSAGE_CREATE", fmt.Sprintf(`{"id":"%d","channel_id":"%d","guild_id":"%d","author":%s,"member":{"roles":[],"nick":null,"joined_at":"2024-05-01T10:11:12.000000+00:00","flags":0,"deaf":false,"mute":false},"content":"hello there","timestamp":"2026-11-22T10:00:00.000000+00:00","type":0,"mentions":[],"attachments":[],"embeds":[]}`,
				uint64(5_000_000)+uint64(k), gid+2, gid, user))
		case 4, 5:
			add("PRESENCE_UPDATE", fmt.Sprintf(`{"guild_id":"%d","user":{"id":"%d"},"status":"online","activities":[{"name":"Game","type":0,"created_at":1700000000000}],"client_status":{"desktop":"online"}}`, gid, uid))
		case 6:
			add("GUILD_MEMBER_UPDATE", fmt.Sprintf(`{"guild_id":"%d",%s`, gid, member[1:]))
		case 7:
			add("VOICE_STATE_UPDATE", fmt.Sprintf(`{"guild_id":"%d","channel_id":"%d","user_id":"%d","session_id":"v","deaf":false,"mute":false,"self_deaf":false,"self_mute":false,"self_video":false,"suppress":false,"member":%s}`, gid, gid+6, uid, member))
		default:
			add("TYPING_START", fmt.Sprintf(`{"channel_id":"%d","guild_id":"%d","user_id":"%d","timestamp":1700000000}`, gid+2, gid, uid))
		}
	}
	return out
}
