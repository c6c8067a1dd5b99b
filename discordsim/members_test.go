package discordsim

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

type chunkD struct {
	GuildID    Snowflake         `json:"guild_id"`
	Members    []Member          `json:"members"`
	ChunkIndex int               `json:"chunk_index"`
	ChunkCount int               `json:"chunk_count"`
	NotFound   []json.RawMessage `json:"not_found"`
	Presences  []presenceUpdate  `json:"presences"`
	Nonce      string            `json:"nonce"`
}

func readChunks(t *testing.T, c *testClient) []chunkD {
	t.Helper()
	var out []chunkD
	for {
		p := c.untilEvent("GUILD_MEMBERS_CHUNK")
		var ch chunkD
		if err := json.Unmarshal(p.D, &ch); err != nil {
			t.Fatal(err)
		}
		out = append(out, ch)
		if ch.ChunkIndex == ch.ChunkCount-1 {
			return out
		}
	}
}

func TestRequestGuildMembers(t *testing.T) {
	t.Parallel()
	s := newSim(t, Config{Guilds: 3, Members: 6000, MemberRequestInterval: time.Hour})
	gid := s.world.guildOrder[0] // the biggest guild
	s.world.mu.RLock()
	total := s.world.memberCountLocked(s.world.guilds[gid])
	s.world.mu.RUnlock()
	if total < 2000 {
		t.Fatalf("biggest guild has %d members, want > 2000 to need several chunks", total)
	}
	c := dial(t, s.GatewayURL(), "v=10&compress=zlib-stream")
	c.hello()
	c.identify(botToken(s), nil, AllIntents)

	// The whole list, in chunks of at most 1000, with presences and the nonce.
	c.send(opRequestMembers, map[string]any{"guild_id": gid, "query": "", "limit": 0, "presences": true, "nonce": "all"})
	chunks := readChunks(t, c)
	seen := map[Snowflake]bool{}
	presences := 0
	for i, ch := range chunks {
		if ch.ChunkIndex != i || ch.ChunkCount != len(chunks) || ch.Nonce != "all" || ch.GuildID != gid || len(ch.Members) > 1000 {
			t.Fatalf("chunk %d: index %d count %d nonce %q members %d", i, ch.ChunkIndex, ch.ChunkCount, ch.Nonce, len(ch.Members))
		}
		for _, m := range ch.Members {
			if seen[m.User.ID] {
				t.Fatalf("member %v sent twice", m.User.ID)
			}
			seen[m.User.ID] = true
		}
		presences += len(ch.Presences)
	}
	if len(seen) != total || len(chunks) != (total+999)/1000 {
		t.Fatalf("got %d members in %d chunks, want %d in %d", len(seen), len(chunks), total, (total+999)/1000)
	}
	if presences == 0 || presences >= total {
		t.Fatalf("%d presences for %d members: want only the non-offline ones", presences, total)
	}

	// A second full request within 30 s gets RATE_LIMITED, not a disconnect.
	c.send(opRequestMembers, map[string]any{"guild_id": gid, "query": "", "limit": 0, "nonce": "again"})
	p := c.untilEvent("RATE_LIMITED")
	var rl struct {
		Opcode     int     `json:"opcode"`
		RetryAfter float64 `json:"retry_after"`
		Meta       struct {
			GuildID Snowflake `json:"guild_id"`
			Nonce   string    `json:"nonce"`
		} `json:"meta"`
	}
	if err := json.Unmarshal(p.D, &rl); err != nil || rl.Opcode != 8 || rl.RetryAfter <= 0 || rl.Meta.GuildID != gid || rl.Meta.Nonce != "again" {
		t.Fatalf("RATE_LIMITED %s: %v", p.D, err)
	}

	// By user ids: found ones, plus not_found (a short id comes back as a number).
	var some Snowflake
	for id := range seen {
		some = id
		break
	}
	c.send(opRequestMembers, map[string]any{"guild_id": gid, "user_ids": []any{some.String(), "123", "999999999999999999"}, "nonce": "ids"})
	ch := readChunks(t, c)[0]
	if len(ch.Members) != 1 || ch.Members[0].User.ID != some {
		t.Fatalf("user_ids request returned %d members", len(ch.Members))
	}
	nf := make([]string, len(ch.NotFound))
	for i, raw := range ch.NotFound {
		nf[i] = string(raw)
	}
	if !slices.Equal(nf, []string{`123`, `"999999999999999999"`}) {
		t.Fatalf("not_found %v, want [123 \"999999999999999999\"]", nf)
	}

	// By username prefix: at most 100, all matching.
	s.world.mu.RLock()
	m, _ := s.world.memberLocked(s.world.guilds[gid], some)
	s.world.mu.RUnlock()
	prefix := m.User.Username[:3]
	c.send(opRequestMembers, map[string]any{"guild_id": gid, "query": prefix, "limit": 500})
	ch = readChunks(t, c)[0]
	if len(ch.Members) == 0 || len(ch.Members) > 100 {
		t.Fatalf("query %q returned %d members, want 1..100", prefix, len(ch.Members))
	}
	for _, m := range ch.Members {
		if !strings.HasPrefix(m.User.Username, prefix) && (m.Nick == nil || !strings.HasPrefix(*m.Nick, prefix)) {
			t.Fatalf("member %q does not match prefix %q", m.User.Username, prefix)
		}
	}
}

func TestRequestGuildMembersNeedsIntent(t *testing.T) {
	t.Parallel()
	s := newSim(t, Config{Guilds: 1})
	c := dial(t, s.GatewayURL(), "v=10")
	c.hello()
	c.identify(botToken(s), nil, IntentGuilds)
	c.send(opRequestMembers, map[string]any{"guild_id": s.world.guildOrder[0], "query": "", "limit": 0})
	if got := c.closeCode(); got != CloseDisallowedIntents {
		t.Fatalf("close %d, want 4014", got)
	}
}

func TestGuildCreateLargeThreshold(t *testing.T) {
	t.Parallel()
	type gcD struct {
		ID          Snowflake        `json:"id"`
		Large       bool             `json:"large"`
		MemberCount int              `json:"member_count"`
		Members     []Member         `json:"members"`
		Presences   []presenceUpdate `json:"presences"`
		VoiceStates []VoiceState     `json:"voice_states"`
	}
	collect := func(s *Server, intents int64, threshold int) []gcD {
		c := dial(t, s.GatewayURL(), "v=10&compress=zstd-stream")
		c.hello()
		d := identifyBody(botToken(s), nil, intents)
		d["large_threshold"] = threshold
		c.send(opIdentify, d)
		c.untilEvent("READY")
		var out []gcD
		for range s.cfg.Guilds {
			var g gcD
			if err := json.Unmarshal(c.untilEvent("GUILD_CREATE").D, &g); err != nil {
				t.Fatal(err)
			}
			out = append(out, g)
		}
		return out
	}
	// Over 75k members: only the bot and voice members, even with presences.
	huge, err := New(Config{Guilds: 1, Members: 80_000})
	if err != nil {
		t.Fatal(err)
	}
	hg := huge.world.guilds[huge.world.guildOrder[0]]
	gc := huge.world.guildCreateLocked(hg, &session{bot: huge.bots[0], intents: AllIntents, largeThreshold: 250})
	if gc.MemberCount <= largeMemberCutoff || len(gc.Members) != 1+len(gc.VoiceStates) || len(gc.VoiceStates) == 0 {
		t.Fatalf("guild of %d: %d members with %d in voice, want bot + voice only", gc.MemberCount, len(gc.Members), len(gc.VoiceStates))
	}
	// Large guilds (1,600 and 550 members): online, roled, nicked or in voice.
	big := newSim(t, Config{Guilds: 3, Members: 3000, IdentifyWindow: time.Nanosecond})
	small := newSim(t, Config{Guilds: 2, Members: 200})
	botID := big.Bots()[0].ID
	for _, g := range collect(big, AllIntents, 250) {
		if !g.Large || len(g.Members) >= g.MemberCount || len(g.Members) < 2 || len(g.Presences) == 0 {
			t.Fatalf("large guild of %d: large=%v %d members %d presences", g.MemberCount, g.Large, len(g.Members), len(g.Presences))
		}
		for _, p := range g.Presences {
			if p.Status == "offline" {
				t.Fatal("offline presence in GUILD_CREATE")
			}
		}
	}
	// Without GUILD_PRESENCES: the bot and voice members, no presences.
	for _, g := range collect(big, allNonPrivileged|IntentGuildMembers, 50) {
		if len(g.Presences) != 0 || len(g.Members) != 1+len(g.VoiceStates) || !slices.ContainsFunc(g.Members, func(m Member) bool { return m.User.ID == botID }) {
			t.Fatalf("no-presence GUILD_CREATE: %d members %d presences %d voice", len(g.Members), len(g.Presences), len(g.VoiceStates))
		}
	}
	// Under large_threshold: every member.
	for _, g := range collect(small, AllIntents, 250) {
		if g.Large || len(g.Members) != g.MemberCount {
			t.Fatalf("small guild of %d: large=%v %d members, want all", g.MemberCount, g.Large, len(g.Members))
		}
	}
}

func TestWorldDeterministicFromSeed(t *testing.T) {
	t.Parallel()
	digest := func(seed uint64) string {
		s, err := New(Config{Guilds: 50, Members: 5000, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		w := s.world
		var b strings.Builder
		for _, gid := range w.guildOrder {
			g := w.guilds[gid]
			fmt.Fprintf(&b, "%v %s %d %d %d|", gid, g.Name, len(g.Channels), len(g.Roles), w.memberCountLocked(g))
			w.forEachMemberLocked(g, 0, func(m Member) bool {
				fmt.Fprintf(&b, "%v:%s:%d:%s,", m.User.ID, m.User.Username, len(m.Roles), w.statusLocked(g, m.User.ID))
				return true
			})
		}
		fmt.Fprint(&b, s.Bots()[0].Token)
		return b.String()
	}
	a, b, c := digest(7), digest(7), digest(8)
	if a != b {
		t.Fatal("two worlds from seed 7 differ")
	}
	if a == c {
		t.Fatal("worlds from seeds 7 and 8 are identical")
	}
}

func TestWorldMembersAndPaging(t *testing.T) {
	t.Parallel()
	s, err := New(Config{Guilds: 20, Members: 10_000, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	w := s.world
	rng := rand.New(rand.NewPCG(1, 2))
	for _, gid := range w.guildOrder {
		g := w.guilds[gid]
		var all []Snowflake
		w.forEachMemberLocked(g, 0, func(m Member) bool {
			all = append(all, m.User.ID)
			return true
		})
		if len(all) != w.memberCountLocked(g) || !slices.IsSorted(all) {
			t.Fatalf("guild %v: %d members listed (sorted=%v), count says %d", gid, len(all), slices.IsSorted(all), w.memberCountLocked(g))
		}
		for _, uid := range all {
			if !w.isMemberLocked(g, uid) {
				t.Fatalf("listed member %v is not a member", uid)
			}
		}
		// Paging from any id continues exactly after it.
		after := all[rng.IntN(len(all))]
		var rest []Snowflake
		w.forEachMemberLocked(g, after, func(m Member) bool {
			rest = append(rest, m.User.ID)
			return true
		})
		i := slices.Index(all, after)
		if !slices.Equal(rest, all[i+1:]) {
			t.Fatalf("paging after %v returned %d members, want %d", after, len(rest), len(all)-i-1)
		}
	}
	// Removing and changing members.
	g := w.guilds[w.guildOrder[0]]
	var victim Snowflake
	w.forEachMemberLocked(g, 0, func(m Member) bool {
		if m.User.ID != s.Bots()[0].ID {
			victim = m.User.ID
			return false
		}
		return true
	})
	before := w.memberCountLocked(g)
	m, ok := w.materializeMemberLocked(g, victim)
	if !ok {
		t.Fatal("cannot materialize a member")
	}
	nick := "changed"
	m.Nick = &nick
	if got, _ := w.memberLocked(g, victim); got.Nick == nil || *got.Nick != "changed" || w.memberCountLocked(g) != before {
		t.Fatal("materialized change not visible or member count changed")
	}
	if !w.removeMemberLocked(g, victim) || w.isMemberLocked(g, victim) || w.memberCountLocked(g) != before-1 {
		t.Fatal("removing a member failed")
	}
}

func TestWorldAtScaleIsFast(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds a 1M-member world")
	}
	start := time.Now()
	s, err := New(Config{Guilds: 10_000, Members: 1_000_000, Shards: 1000})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	total := 0
	for _, g := range s.world.guilds {
		total += s.world.memberCountLocked(g)
	}
	// Each bot is an extra member of every guild.
	if total != 1_000_000+10_000 {
		t.Fatalf("world has %d memberships, want 1,010,000", total)
	}
	if took > 10*time.Second {
		t.Fatalf("generating 10k guilds / 1M members took %v, want a few seconds at most", took)
	}
	t.Logf("10k guilds / 1M members generated in %v", took)
}
