package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	discordv1 "github.com/kubecord/kubecord/gen/kubecord/discord/v1"
	"github.com/kubecord/kubecord/internal/discordjson"
)

// storeFactory makes a fresh, empty store for one test.
type storeFactory struct {
	name string
	open func(t *testing.T) Store
}

// factories lists every Store implementation; each test of the shared suite runs against all
// of them. redisFactory skips (with the reason) when no redis-server binary is installed.
func factories() []storeFactory {
	return []storeFactory{
		{"memory", func(*testing.T) Store { return NewMemory() }},
		redisFactory(),
	}
}

// forEachStore runs fn once per store kind, in parallel subtests.
func forEachStore(t *testing.T, res Resources, fn func(t *testing.T, c *Cache)) {
	t.Helper()
	for _, f := range factories() {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			st := f.open(t)
			t.Cleanup(func() { _ = st.Close() })
			fn(t, New(st, res, slog.New(slog.NewTextHandler(io.Discard, nil))))
		})
	}
}

// feeder builds events from Discord JSON the way the gateway does (discordjson), numbering
// them per shard.
type feeder struct {
	t     *testing.T
	c     *Cache
	shard uint32
	count uint32
	seq   uint64
}

func newFeeder(t *testing.T, c *Cache) *feeder { return &feeder{t: t, c: c, count: 1} }

func (f *feeder) event(name, d string) *discordv1.Event {
	f.t.Helper()
	f.seq++
	ev := &discordv1.Event{ShardId: f.shard, ShardCount: f.count, Sequence: f.seq, Name: name,
		Raw: []byte(d), SessionId: "session-1"}
	if err := discordjson.DecodeEvent(ev); err != nil {
		f.t.Fatalf("decoding %s %s: %v", name, d, err)
	}
	return ev
}

func (f *feeder) send(name, d string) {
	f.t.Helper()
	if err := f.c.Apply(f.t.Context(), f.event(name, d)); err != nil {
		f.t.Fatalf("Apply(%s): %v", name, err)
	}
}

// Ids used by the fixtures. Guild ids are chosen so that, with 2 shards, guild 1 and 2 are
// on shard 0 and guild 3 on shard 1 ((id >> 22) % 2).
const (
	g1 = 1 << 22 * 2
	g2 = 1 << 22 * 4
	g3 = 1 << 22 * 5
)

func userJSON(id uint64, name string) string {
	return fmt.Sprintf(`{"id":"%d","username":%q,"discriminator":"0","global_name":null,"avatar":null}`, id, name)
}

func memberJSON(id uint64, name string, roles ...uint64) string {
	rs := make([]string, len(roles))
	for i, r := range roles {
		rs[i] = fmt.Sprintf("%q", fmt.Sprint(r))
	}
	return fmt.Sprintf(`{"user":%s,"nick":null,"roles":[%s],"joined_at":"2025-01-02T03:04:05.000000+00:00","deaf":false,"mute":true,"flags":0}`,
		userJSON(id, name), strings.Join(rs, ","))
}

type guildFixture struct {
	id       uint64
	name     string
	members  []string
	channels []string
	threads  []string
	roles    []string
	voice    []string
	presence []string
}

func (g guildFixture) json() string {
	roles := g.roles
	if roles == nil {
		roles = []string{fmt.Sprintf(`{"id":"%d","name":"@everyone","permissions":"1024","position":0,"color":0,"hoist":false,"managed":false,"mentionable":false,"flags":0}`, g.id)}
	}
	return fmt.Sprintf(`{"id":"%d","name":%q,"owner_id":"900","icon":null,"joined_at":"2024-01-01T00:00:00.000000+00:00","large":false,"member_count":%d,
"roles":[%s],"emojis":[{"id":"77","name":"wave","roles":[],"require_colons":true,"managed":false,"animated":false,"available":true}],"stickers":[],"features":[],
"members":[%s],"channels":[%s],"threads":[%s],"voice_states":[%s],"presences":[%s]}`,
		g.id, g.name, len(g.members), strings.Join(roles, ","), strings.Join(g.members, ","), strings.Join(g.channels, ","),
		strings.Join(g.threads, ","), strings.Join(g.voice, ","), strings.Join(g.presence, ","))
}

func channelJSON(id uint64, typ int, parent uint64, name string) string {
	p := "null"
	if parent != 0 {
		p = fmt.Sprintf("%q", fmt.Sprint(parent))
	}
	return fmt.Sprintf(`{"id":"%d","type":%d,"name":%q,"position":1,"parent_id":%s,"permission_overwrites":[],"topic":"about %s"}`, id, typ, name, p, name)
}

func counts(t *testing.T, c *Cache) Counts {
	t.Helper()
	n, err := c.Store().Counts(t.Context())
	if err != nil {
		t.Fatalf("Counts: %v", err)
	}
	n.MemoryBytes = 0
	return n
}

func guild(t *testing.T, c *Cache, id uint64) *discordv1.Guild {
	t.Helper()
	blob, err := c.Store().Guild(t.Context(), id)
	if err != nil {
		t.Fatalf("Guild(%d): %v", id, err)
	}
	g := &discordv1.Guild{}
	if err := proto.Unmarshal(blob, g); err != nil {
		t.Fatal(err)
	}
	return g
}

func member(t *testing.T, c *Cache, gid, uid uint64) *discordv1.Member {
	t.Helper()
	mb, err := c.Store().Member(t.Context(), gid, uid)
	if err != nil {
		t.Fatalf("Member(%d, %d): %v", gid, uid, err)
	}
	m, err := decodeMember(mb)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func wantNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("%s: got error %v, want ErrNotFound", what, err)
	}
}

func fullGuild1() guildFixture {
	return guildFixture{id: g1, name: "one",
		members: []string{memberJSON(10, "alice", 501), memberJSON(11, "bob"), memberJSON(12, "carol")},
		roles: []string{
			fmt.Sprintf(`{"id":"%d","name":"@everyone","permissions":"1024","position":0}`, uint64(g1)),
			`{"id":"501","name":"mods","permissions":"8","position":1}`,
		},
		channels: []string{channelJSON(100, 0, 0, "general"), channelJSON(101, 2, 0, "voice")},
		threads:  []string{channelJSON(200, 11, 100, "thread-a")},
		voice:    []string{`{"channel_id":"101","user_id":"10","session_id":"s","deaf":false,"mute":false,"self_deaf":false,"self_mute":true,"self_video":false,"suppress":false,"request_to_speak_timestamp":null}`},
		presence: []string{`{"user":{"id":"11"},"status":"online","activities":[],"client_status":{"desktop":"online"}}`},
	}
}

func TestLifecycle(t *testing.T) {
	t.Parallel()
	forEachStore(t, AllResources(), func(t *testing.T, c *Cache) {
		ctx := t.Context()
		f := newFeeder(t, c)
		f.send("READY", fmt.Sprintf(`{"v":10,"user":%s,"guilds":[{"id":"%d","unavailable":true},{"id":"%d","unavailable":true}],"session_id":"session-1","shard":[0,1]}`,
			userJSON(1, "bot"), uint64(g1), uint64(g2)))
		if got, want := counts(t, c), (Counts{Guilds: 2, UnavailableGuilds: 2}); got != want {
			t.Fatalf("after READY: counts %+v, want %+v", got, want)
		}

		f.send("GUILD_CREATE", fullGuild1().json())
		want := Counts{Guilds: 2, UnavailableGuilds: 1, Channels: 2, Threads: 1, Roles: 2, Members: 3, Users: 3, Emojis: 1, VoiceStates: 1, Presences: 1}
		if got := counts(t, c); got != want {
			t.Fatalf("after GUILD_CREATE: counts %+v, want %+v", got, want)
		}
		g := guild(t, c, g1)
		if g.GetName() != "one" || g.GetUnavailable() || len(g.GetRoles()) != 2 || g.GetMemberCount() != 3 || len(g.GetMembers()) != 0 {
			t.Fatalf("guild blob = %v", g)
		}
		if m := member(t, c, g1, 10); m.GetUser().GetUsername() != "alice" || !slices.Equal(m.GetRoles(), []uint64{501}) || !m.GetMute() {
			t.Fatalf("member alice = %v", m)
		}
		ch, err := c.Store().Channel(ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		var chm discordv1.Channel
		if err := proto.Unmarshal(ch, &chm); err != nil || chm.GetGuildId() != g1 {
			t.Fatalf("channel 100 = %v (%v): want guild_id filled in", &chm, err)
		}

		// Partial updates keep what they do not carry.
		f.send("GUILD_MEMBER_UPDATE", fmt.Sprintf(`{"guild_id":"%d","user":%s,"nick":"Ali","roles":[],"joined_at":"2025-01-02T03:04:05.000000+00:00"}`, uint64(g1), userJSON(10, "alice2")))
		m := member(t, c, g1, 10)
		if m.GetNick() != "Ali" || len(m.GetRoles()) != 0 || !m.GetMute() || m.GetUser().GetUsername() != "alice2" {
			t.Fatalf("after GUILD_MEMBER_UPDATE: member = %v (want nick Ali, no roles, mute kept, username alice2)", m)
		}
		f.send("GUILD_UPDATE", fmt.Sprintf(`{"id":"%d","name":"one renamed","owner_id":"900"}`, uint64(g1)))
		g = guild(t, c, g1)
		if g.GetName() != "one renamed" || len(g.GetRoles()) != 2 || len(g.GetEmojis()) != 1 || g.GetMemberCount() != 3 || g.GetJoinedAt() == nil {
			t.Fatalf("after GUILD_UPDATE: guild = %v (want name changed, roles, emojis, member_count and joined_at kept)", g)
		}
		f.send("CHANNEL_UPDATE", fmt.Sprintf(`{"id":"100","guild_id":"%d","type":0,"name":"renamed"}`, uint64(g1)))
		if err := Decode(mustBlob(t)(c.Store().Channel(ctx, 100)), &chm, "channel"); err != nil || chm.GetName() != "renamed" || chm.GetTopic() != "about general" {
			t.Fatalf("after CHANNEL_UPDATE: channel = %v (want name renamed, topic kept)", &chm)
		}

		// An outage keeps the data; the GUILD_CREATE after it replaces everything.
		f.send("GUILD_DELETE", fmt.Sprintf(`{"id":"%d","unavailable":true}`, uint64(g1)))
		if g := guild(t, c, g1); !g.GetUnavailable() || g.GetName() != "one renamed" {
			t.Fatalf("after GUILD_DELETE unavailable: guild = %v, want kept and unavailable", g)
		}
		if got := counts(t, c).Members; got != 3 {
			t.Fatalf("members after outage = %d, want 3 kept", got)
		}
		back := guildFixture{id: g1, name: "one again", members: []string{memberJSON(10, "alice")}, channels: []string{channelJSON(100, 0, 0, "general")}}
		f.send("GUILD_CREATE", back.json())
		want = Counts{Guilds: 2, UnavailableGuilds: 1, Channels: 1, Roles: 1, Members: 1, Users: 1, Emojis: 1}
		if got := counts(t, c); got != want {
			t.Fatalf("after second GUILD_CREATE: counts %+v, want %+v (nothing stale)", got, want)
		}
		_, err = c.Store().Member(ctx, g1, 11)
		wantNotFound(t, "stale member 11", err)
		_, err = c.Store().User(ctx, 11)
		wantNotFound(t, "user 11 of no guild", err)
		_, err = c.Store().Channel(ctx, 200)
		wantNotFound(t, "stale thread 200", err)
		_, err = c.Store().Presence(ctx, g1, 11)
		wantNotFound(t, "stale presence", err)

		// Users are shared between guilds and dropped with their last guild.
		f.send("GUILD_CREATE", guildFixture{id: g2, name: "two", members: []string{memberJSON(10, "alice"), memberJSON(13, "dave")}}.json())
		if got, _ := c.Store().UserGuilds(ctx, 10); !slices.Equal(got, []uint64{g1, g2}) {
			t.Fatalf("UserGuilds(10) = %v, want [%d %d]", got, uint64(g1), uint64(g2))
		}
		if got := counts(t, c).Users; got != 2 {
			t.Fatalf("users = %d, want 2 (alice stored once)", got)
		}
		f.send("GUILD_MEMBER_REMOVE", fmt.Sprintf(`{"guild_id":"%d","user":%s}`, uint64(g1), userJSON(10, "alice")))
		if _, err := c.Store().User(ctx, 10); err != nil {
			t.Fatalf("user 10 still in guild two: %v", err)
		}
		if g := guild(t, c, g1); g.GetMemberCount() != 0 {
			t.Fatalf("member_count after remove = %d, want 0", g.GetMemberCount())
		}
		// Redelivered add and remove do not count twice.
		add := fmt.Sprintf(`{"guild_id":"%d",%s`, uint64(g1), memberJSON(14, "erin")[1:])
		f.send("GUILD_MEMBER_ADD", add)
		f.send("GUILD_MEMBER_ADD", add)
		if g := guild(t, c, g1); g.GetMemberCount() != 1 {
			t.Fatalf("member_count after a redelivered add = %d, want 1", g.GetMemberCount())
		}
		remove := fmt.Sprintf(`{"guild_id":"%d","user":%s}`, uint64(g1), userJSON(14, "erin"))
		f.send("GUILD_MEMBER_REMOVE", remove)
		f.send("GUILD_MEMBER_REMOVE", remove)
		if g := guild(t, c, g1); g.GetMemberCount() != 0 {
			t.Fatalf("member_count after a redelivered remove = %d, want 0", g.GetMemberCount())
		}
		f.send("GUILD_DELETE", fmt.Sprintf(`{"id":"%d"}`, uint64(g2)))
		_, err = c.Store().Guild(ctx, g2)
		wantNotFound(t, "left guild", err)
		_, err = c.Store().User(ctx, 10)
		wantNotFound(t, "user 10 after leaving guild two", err)
		if got := counts(t, c); got.Guilds != 1 || got.Members != 0 || got.Users != 0 {
			t.Fatalf("after leave: counts %+v", got)
		}
		if c.Applied() != f.seq {
			t.Fatalf("Applied() = %d, want %d", c.Applied(), f.seq)
		}
		prog, err := c.Store().Progress(ctx)
		if err != nil || len(prog) != 1 || prog[0].Sequence != f.seq || prog[0].SessionID != "session-1" {
			t.Fatalf("Progress = %+v, %v; want shard 0 at %d", prog, err, f.seq)
		}
	})
}

func mustBlob(t *testing.T) func([]byte, error) []byte {
	return func(b []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
}

func TestReadyPurgesGuildsLeftWhileAway(t *testing.T) {
	t.Parallel()
	forEachStore(t, AllResources(), func(t *testing.T, c *Cache) {
		f := newFeeder(t, c)
		f.count = 2
		for _, id := range []uint64{g1, g2, g3} {
			f.shard = shardOf(id, 2)
			f.send("GUILD_CREATE", guildFixture{id: id, name: "g", members: []string{memberJSON(id+1, "m")}}.json())
		}
		// Shard 0 comes back with a new session that no longer lists g2.
		f.shard = 0
		f.send("READY", fmt.Sprintf(`{"v":10,"user":%s,"guilds":[{"id":"%d","unavailable":true}],"session_id":"s2","shard":[0,2]}`, userJSON(1, "bot"), uint64(g1)))
		_, err := c.Store().Guild(t.Context(), g2)
		wantNotFound(t, "guild left while away", err)
		if g := guild(t, c, g1); !g.GetUnavailable() {
			t.Errorf("guild 1 should be unavailable until its GUILD_CREATE")
		}
		if g := guild(t, c, g3); g.GetUnavailable() {
			t.Errorf("guild 3 is on shard 1 and must not be touched")
		}
		if got := counts(t, c); got.Guilds != 2 || got.Members != 2 {
			t.Errorf("counts %+v, want 2 guilds and 2 members", got)
		}
	})
}

func TestRolesEmojisStickers(t *testing.T) {
	t.Parallel()
	forEachStore(t, AllResources(), func(t *testing.T, c *Cache) {
		f := newFeeder(t, c)
		f.send("GUILD_CREATE", guildFixture{id: g1, name: "g"}.json())
		f.send("GUILD_ROLE_CREATE", fmt.Sprintf(`{"guild_id":"%d","role":{"id":"600","name":"new","permissions":"2048","position":2}}`, uint64(g1)))
		f.send("GUILD_ROLE_UPDATE", fmt.Sprintf(`{"guild_id":"%d","role":{"id":"600","name":"newer","permissions":"2048","position":2}}`, uint64(g1)))
		g := guild(t, c, g1)
		if len(g.GetRoles()) != 2 || g.GetRoles()[1].GetName() != "newer" {
			t.Fatalf("roles = %v, want @everyone and newer", g.GetRoles())
		}
		f.send("GUILD_ROLE_DELETE", fmt.Sprintf(`{"guild_id":"%d","role_id":"600"}`, uint64(g1)))
		f.send("GUILD_EMOJIS_UPDATE", fmt.Sprintf(`{"guild_id":"%d","emojis":[]}`, uint64(g1)))
		f.send("GUILD_STICKERS_UPDATE", fmt.Sprintf(`{"guild_id":"%d","stickers":[{"id":"5","name":"s","tags":"x","type":2,"format_type":1}]}`, uint64(g1)))
		if got, want := counts(t, c), (Counts{Guilds: 1, Roles: 1, Stickers: 1}); got != want {
			t.Fatalf("counts %+v, want %+v", got, want)
		}
	})
}

func TestThreadsVoicePresenceChunks(t *testing.T) {
	t.Parallel()
	forEachStore(t, AllResources(), func(t *testing.T, c *Cache) {
		ctx := t.Context()
		f := newFeeder(t, c)
		gf := fullGuild1()
		gf.channels = append(gf.channels, channelJSON(102, 0, 0, "other"))
		gf.threads = append(gf.threads, channelJSON(201, 11, 102, "thread-b"), channelJSON(202, 11, 100, "thread-c"))
		f.send("GUILD_CREATE", gf.json())
		// Sync of parent 100: thread 200 stays, 202 is gone, 203 is new; 201 (parent 102) stays.
		f.send("THREAD_LIST_SYNC", fmt.Sprintf(`{"guild_id":"%d","channel_ids":["100"],"threads":[%s,%s],"members":[{"id":"203","user_id":"1","join_timestamp":"2025-01-01T00:00:00.000000+00:00","flags":0}]}`,
			uint64(g1), channelJSON(200, 11, 100, "thread-a"), channelJSON(203, 11, 100, "thread-d")))
		ids, err := c.Store().GuildThreadIDs(ctx, g1)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(ids)
		if !slices.Equal(ids, []uint64{200, 201, 203}) {
			t.Fatalf("threads after sync = %v, want [200 201 203]", ids)
		}
		var th discordv1.Channel
		if err := Decode(mustBlob(t)(c.Store().Channel(ctx, 203)), &th, "thread"); err != nil || th.GetMember().GetUserId() != 1 {
			t.Fatalf("thread 203 member = %v, want the bot's thread member", th.GetMember())
		}
		f.send("THREAD_MEMBERS_UPDATE", fmt.Sprintf(`{"id":"203","guild_id":"%d","member_count":7,"added_members":[],"removed_member_ids":[]}`, uint64(g1)))
		f.send("THREAD_MEMBER_UPDATE", fmt.Sprintf(`{"id":"203","user_id":"1","join_timestamp":"2025-02-01T00:00:00.000000+00:00","flags":1,"guild_id":"%d"}`, uint64(g1)))
		f.send("CHANNEL_PINS_UPDATE", fmt.Sprintf(`{"guild_id":"%d","channel_id":"203","last_pin_timestamp":"2025-03-01T00:00:00.000000+00:00"}`, uint64(g1)))
		if err := Decode(mustBlob(t)(c.Store().Channel(ctx, 203)), &th, "thread"); err != nil || th.GetMemberCount() != 7 ||
			th.GetMember().GetFlags() != 1 || th.GetLastPinTimestamp().AsTime().Month() != 3 || th.GetName() != "thread-d" {
			t.Fatalf("thread 203 after member and pin updates = %v", &th)
		}
		f.send("THREAD_DELETE", fmt.Sprintf(`{"id":"201","guild_id":"%d","parent_id":"102","type":11}`, uint64(g1)))
		f.send("CHANNEL_DELETE", fmt.Sprintf(`{"id":"100","guild_id":"%d","type":0}`, uint64(g1)))
		if got := counts(t, c); got.Threads != 0 || got.Channels != 2 {
			t.Fatalf("after deletes: %d threads, %d channels; want 0 and 2 (threads go with their parent)", got.Threads, got.Channels)
		}

		f.send("VOICE_STATE_UPDATE", fmt.Sprintf(`{"guild_id":"%d","channel_id":null,"user_id":"10","session_id":"s","deaf":false,"mute":false,"self_deaf":false,"self_mute":false,"self_video":false,"suppress":false,"member":%s}`,
			uint64(g1), memberJSON(10, "alice-voice")))
		_, err = c.Store().VoiceState(ctx, g1, 10)
		wantNotFound(t, "voice state after leaving", err)
		if m := member(t, c, g1, 10); m.GetUser().GetUsername() != "alice-voice" {
			t.Errorf("voice member not refreshed: %v", m)
		}
		f.send("PRESENCE_UPDATE", fmt.Sprintf(`{"guild_id":"%d","user":{"id":"12","username":"carol2"},"status":"idle","activities":[],"client_status":{}}`, uint64(g1)))
		if _, err := c.Store().Presence(ctx, g1, 12); err != nil {
			t.Errorf("presence of 12: %v", err)
		}
		var u discordv1.User
		if err := Decode(mustBlob(t)(c.Store().User(ctx, 12)), &u, "user"); err != nil || u.GetUsername() != "carol2" || u.GetDiscriminator() != "0" {
			t.Errorf("user 12 = %v, want username updated and discriminator kept", &u)
		}
		f.send("PRESENCE_UPDATE", fmt.Sprintf(`{"guild_id":"%d","user":{"id":"11"},"status":"offline","activities":[],"client_status":{}}`, uint64(g1)))
		_, err = c.Store().Presence(ctx, g1, 11)
		wantNotFound(t, "offline presence", err)

		f.send("GUILD_MEMBERS_CHUNK", fmt.Sprintf(`{"guild_id":"%d","members":[%s,%s],"chunk_index":0,"chunk_count":1,"presences":[{"user":{"id":"20"},"status":"dnd","activities":[],"client_status":{}}]}`,
			uint64(g1), memberJSON(20, "erin"), memberJSON(21, "frank")))
		if got := counts(t, c); got.Members != 5 || got.Users != 5 || got.Presences != 2 {
			t.Fatalf("after chunk: counts %+v, want 5 members, 5 users, 2 presences", got)
		}
		f.send("MESSAGE_CREATE", fmt.Sprintf(`{"id":"9000","channel_id":"102","guild_id":"%d","author":%s,"member":{"roles":["501"],"nick":"E","joined_at":"2025-01-02T03:04:05.000000+00:00","flags":0},"content":"hi","timestamp":"2025-01-02T03:04:05.000000+00:00","type":0}`,
			uint64(g1), userJSON(20, "erin-new")))
		if m := member(t, c, g1, 20); m.GetNick() != "E" || m.GetUser().GetUsername() != "erin-new" || !m.GetMute() {
			t.Fatalf("member after MESSAGE_CREATE = %v (want nick E, username erin-new, mute kept)", m)
		}
	})
}

func TestResourcesTurnedOff(t *testing.T) {
	t.Parallel()
	res := Resources{Channels: true} // members, users, roles, threads... all off
	forEachStore(t, res, func(t *testing.T, c *Cache) {
		f := newFeeder(t, c)
		f.send("GUILD_CREATE", fullGuild1().json())
		f.send("GUILD_MEMBER_ADD", fmt.Sprintf(`{"guild_id":"%d",%s`, uint64(g1), memberJSON(30, "x")[1:]))
		f.send("GUILD_ROLE_CREATE", fmt.Sprintf(`{"guild_id":"%d","role":{"id":"600","name":"new","permissions":"0","position":2}}`, uint64(g1)))
		if got, want := counts(t, c), (Counts{Guilds: 1, Channels: 2}); got != want {
			t.Fatalf("counts %+v, want %+v", got, want)
		}
	})
}

// TestTestdataEvents applies every realistic payload of internal/discordjson/testdata in
// order: none may fail, and the cache must hold the fixture guild afterwards.
func TestTestdataEvents(t *testing.T) {
	t.Parallel()
	forEachStore(t, AllResources(), func(t *testing.T, c *Cache) {
		f := newFeeder(t, c)
		for _, name := range testdataNames(t) {
			ev := f.event(name, string(readTestdata(t, name)))
			if err := c.Apply(t.Context(), ev); err != nil {
				t.Fatalf("Apply(%s): %v", name, err)
			}
		}
		if n := counts(t, c); n.Guilds == 0 {
			t.Fatalf("no guild cached from testdata: %+v", n)
		}
	})
}

func TestApplyStoreFailure(t *testing.T) {
	t.Parallel()
	c := New(failingStore{NewMemory()}, AllResources(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	f := newFeeder(t, c)
	ev := f.event("GUILD_CREATE", fullGuild1().json())
	err := c.Apply(t.Context(), ev)
	if err == nil || !strings.Contains(err.Error(), "GUILD_CREATE") {
		t.Fatalf("Apply with a failing store: %v, want an error naming the event", err)
	}
	if c.Applied() != 0 {
		t.Fatalf("a failed event must not count as applied")
	}
}

type failingStore struct{ *Memory }

func (failingStore) Commit(context.Context, *Batch) error { return errors.New("disk on fire") }
