package discordsim

import (
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Permission bits used by the generated roles.
const (
	permCreateInvite   = 1 << 0
	permKick           = 1 << 1
	permBan            = 1 << 2
	permAdministrator  = 1 << 3
	permManageChannels = 1 << 4
	permAddReactions   = 1 << 6
	permViewChannel    = 1 << 10
	permSendMessages   = 1 << 11
	permManageMessages = 1 << 13
	permEmbedLinks     = 1 << 14
	permAttachFiles    = 1 << 15
	permReadHistory    = 1 << 16
	permExternalEmojis = 1 << 18
	permConnect        = 1 << 20
	permSpeak          = 1 << 21
	permChangeNickname = 1 << 26
	permManageRoles    = 1 << 28
	permModerate       = 1 << 40
)

const everyonePerms = permCreateInvite | permAddReactions | permViewChannel | permSendMessages | permEmbedLinks |
	permAttachFiles | permReadHistory | permExternalEmojis | permConnect | permSpeak | permChangeNickname

// worldTime is the generated world's "now": join dates and creation dates
// lie before it, independent of the wall clock so the world is deterministic.
var worldTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// userEpoch is the creation time of procedural user 0; user k was created k ms later.
var userEpoch = time.Date(2016, 3, 1, 0, 0, 0, 0, time.UTC)

// procUserLow marks procedural user ids (worker id 1 in the snowflake), so
// userIndex can tell them from ids made by idGen.
const procUserLow = 1 << 17

var (
	adjectives = []string{"sleepy", "cosmic", "silent", "brave", "fuzzy", "golden", "lucky", "midnight", "rapid", "salty",
		"tiny", "wild", "crimson", "frozen", "happy", "lazy", "neon", "pixel", "quiet", "rusty", "shy", "sunny", "swift", "witty"}
	nouns = []string{"otter", "falcon", "panda", "wizard", "pirate", "ninja", "cactus", "comet", "dragon", "fox", "koala",
		"llama", "moose", "noodle", "penguin", "raccoon", "robot", "shark", "sloth", "taco", "turtle", "walrus", "yeti", "badger"}
	guildWords = []string{"Gamers", "Coders", "Study Hall", "Lounge", "Guild", "Hangout", "Crew", "Collective", "Club",
		"Den", "Squad", "Society", "Cafe", "Workshop", "Community", "Arcade"}
	guildTopics = []string{"Minecraft", "Rust", "Anime", "Lo-fi", "Speedrun", "Chess", "Art", "Go", "Music", "Valorant",
		"Pokemon", "Crypto", "Fitness", "Cooking", "Book", "Photography", "Linux", "Indie Dev", "Esports", "Math"}
	textNames  = []string{"general", "off-topic", "memes", "announcements", "help", "showcase", "media", "bot-commands", "introductions", "art", "music", "gaming", "dev", "questions", "feedback", "events", "rules", "links", "screenshots", "support"}
	voiceNames = []string{"General", "Gaming", "Music", "Chill", "AFK", "Study", "Stage"}
	roleNames  = []string{"Admin", "Moderator", "Member", "VIP", "Muted", "Helper", "Booster", "Artist", "Developer", "Event Host"}
	emojiNames = []string{"pog", "kekw", "catjam", "pepehands", "blobwave", "thonk", "party", "hype"}
)

// mix64 is splitmix64's finaliser: a cheap, well-spread hash for deriving
// procedural attributes from (seed, guild, user).
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// generateWorld builds guilds, channels, roles and the procedural member
// layout from cfg and rng. It only allocates per guild and per channel, never
// per member, so a million members take no longer than a thousand.
func generateWorld(cfg Config, rng *rand.Rand) *World {
	w := &World{
		guilds:   make(map[Snowflake]*Guild, cfg.Guilds),
		channels: make(map[Snowflake]*Channel, cfg.Guilds*8),
		users:    map[Snowflake]*User{},
		ids:      &idGen{},
		seed:     cfg.Seed,
	}
	// Zipf-like sizes: rank r gets a share proportional to 1/(r+1).
	n := cfg.Guilds
	spare := cfg.Members - 2*n
	var hsum float64
	for r := range n {
		hsum += 1 / float64(r+1)
	}
	sizes := make([]int, n)
	given := 0
	for r := range n {
		sizes[r] = 2 + int(float64(spare)/(float64(r+1)*hsum))
		given += sizes[r]
	}
	sizes[0] += cfg.Members - given
	w.userPool = max(cfg.Members/2, sizes[0], 1)

	base := time.Date(2016, 1, 1, 0, 0, 0, 0, time.UTC)
	span := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Sub(base).Milliseconds()
	w.guildOrder = make([]Snowflake, 0, n)
	for r := range n {
		created := base.Add(time.Duration(rng.Int64N(span)) * time.Millisecond)
		var gid Snowflake
		for {
			gid = Snowflake(uint64(created.UnixMilli()-DiscordEpoch)<<22 | uint64(rng.IntN(1<<22)))
			if _, dup := w.guilds[gid]; !dup {
				break
			}
		}
		g := &Guild{
			ID:          gid,
			Name:        guildTopics[rng.IntN(len(guildTopics))] + " " + guildWords[rng.IntN(len(guildWords))],
			Roles:       map[Snowflake]*Role{},
			Emojis:      map[Snowflake]*Emoji{},
			Channels:    map[Snowflake]*Channel{},
			Members:     map[Snowflake]*Member{},
			VoiceStates: map[Snowflake]*VoiceState{},
			Online:      map[Snowflake]string{},
			Hot:         r < cfg.HotGuilds,
			JoinedAt:    created.Add(time.Duration(rng.Int64N(int64(worldTime.Sub(created))))),
			genCount:    sizes[r],
			genOffset:   rng.IntN(w.userPool),
			removed:     map[Snowflake]struct{}{},
			createdAt:   created,
			index:       r,
		}
		if rng.IntN(3) > 0 {
			icon := strconv.FormatUint(rng.Uint64(), 16)
			g.Icon = &icon
		}
		if sizes[r] > 1000 {
			g.Features = []string{"COMMUNITY", "NEWS"}
		} else {
			g.Features = []string{}
		}
		g.OwnerID = userIDFor(g.genOffset)
		nextID := func() Snowflake {
			at := created.Add(time.Duration(rng.Int64N(int64(worldTime.Sub(created)) / 2)))
			return Snowflake(uint64(at.UnixMilli()-DiscordEpoch)<<22 | uint64(rng.IntN(1<<17)))
		}
		g.Roles[gid] = &Role{ID: gid, Name: "@everyone", Permissions: strconv.FormatInt(everyonePerms, 10)}
		nroles := 2 + rng.IntN(5)
		for i := range nroles {
			rid := nextID()
			perms := int64(everyonePerms)
			switch roleNames[i] {
			case "Admin":
				perms |= permAdministrator
			case "Moderator":
				perms |= permKick | permBan | permManageMessages | permModerate | permManageRoles | permManageChannels
			case "Muted":
				perms = 0
			}
			g.Roles[rid] = &Role{ID: rid, Name: roleNames[i], Color: rng.IntN(0xffffff), Hoist: i < 2,
				Position: nroles - i, Permissions: strconv.FormatInt(perms, 10), Mentionable: i > 1}
			g.roleOrder = append(g.roleOrder, rid)
		}
		for i := range rng.IntN(len(emojiNames)) {
			eid := nextID()
			g.Emojis[eid] = &Emoji{ID: eid, Name: emojiNames[i], Roles: []Snowflake{}, RequireColons: true, Available: true, Animated: rng.IntN(4) == 0}
		}
		size := float64(sizes[r])
		ntext := 2 + min(int(math.Log2(size)), len(textNames)-2)
		nvoice := 1 + min(int(math.Log2(size)/3), len(voiceNames)-1)
		catID := nextID()
		w.addChannel(g, &Channel{ID: catID, Type: 4, GuildID: gid, Name: "Text Channels", PermissionOverwrites: []Overwrite{}})
		vcatID := nextID()
		w.addChannel(g, &Channel{ID: vcatID, Type: 4, GuildID: gid, Name: "Voice Channels", Position: 1, PermissionOverwrites: []Overwrite{}})
		for i := range ntext {
			id := nextID()
			parent := catID
			ch := &Channel{ID: id, Type: 0, GuildID: gid, Name: textNames[i], Position: i, ParentID: &parent, PermissionOverwrites: []Overwrite{}}
			if textNames[i] == "announcements" || textNames[i] == "rules" {
				ch.PermissionOverwrites = []Overwrite{{ID: gid, Type: 0, Allow: "0", Deny: strconv.Itoa(permSendMessages)}}
			}
			if i%3 == 0 {
				topic := "Talk about " + strings.ToLower(g.Name) + " things"
				ch.Topic = &topic
			}
			w.addChannel(g, ch)
			g.textChannels = append(g.textChannels, id)
		}
		for i := range nvoice {
			id := nextID()
			parent := vcatID
			w.addChannel(g, &Channel{ID: id, Type: 2, GuildID: gid, Name: voiceNames[i], Position: i, ParentID: &parent, PermissionOverwrites: []Overwrite{}})
			g.voiceChannels = append(g.voiceChannels, id)
		}
		// A few members sit in voice, as in a live guild.
		for i := range min(sizes[r]/40, 25) {
			k := (g.genOffset + 1 + i*7) % w.userPool
			if !g.procMember(k, w.userPool) {
				continue
			}
			uid := userIDFor(k)
			ch := g.voiceChannels[rng.IntN(len(g.voiceChannels))]
			g.VoiceStates[uid] = &VoiceState{GuildID: gid, ChannelID: &ch, UserID: uid,
				SessionID: strconv.FormatUint(rng.Uint64(), 16), SelfMute: rng.IntN(2) == 0}
		}
		w.guilds[gid] = g
		w.guildOrder = append(w.guildOrder, gid)
	}
	return w
}

func (w *World) addChannel(g *Guild, ch *Channel) {
	g.Channels[ch.ID] = ch
	w.channels[ch.ID] = ch
}

// addBotLocked adds a bot's user and makes it a member of every guild, with
// an online presence. The caller holds w.mu (or owns w exclusively).
func (w *World) addBotLocked(b *Bot) {
	u := &User{ID: b.ID, Username: b.Name, Discriminator: "0", Bot: true}
	w.users[b.ID] = u
	w.botUsers = append(w.botUsers, b.ID)
	for _, g := range w.guilds {
		g.Members[b.ID] = &Member{User: u, Roles: []Snowflake{}, JoinedAt: g.JoinedAt}
		g.Online[b.ID] = "online"
	}
}

// userIDFor is procedural user k's id: created k ms after userEpoch.
func userIDFor(k int) Snowflake {
	return Snowflake(uint64(userEpoch.UnixMilli()-DiscordEpoch+int64(k))<<22 | procUserLow)
}

// userIndex inverts userIDFor; ok is false for ids that are not procedural users.
func (w *World) userIndex(id Snowflake) (int, bool) {
	if uint64(id)&(1<<22-1) != procUserLow {
		return 0, false
	}
	k := int64(uint64(id)>>22) - (userEpoch.UnixMilli() - DiscordEpoch)
	if k < 0 || k >= int64(w.userPool) {
		return 0, false
	}
	return int(k), true
}

// procUser builds procedural user k.
func (w *World) procUser(k int) User {
	h := mix64(w.seed ^ uint64(k)*0x9e3779b97f4a7c15)
	adj, noun := adjectives[h%uint64(len(adjectives))], nouns[(h>>8)%uint64(len(nouns))]
	name := adj + noun
	if h>>16%3 != 0 {
		name += strconv.Itoa(k % 10000)
	}
	u := User{ID: userIDFor(k), Username: name, Discriminator: "0"}
	if h>>20%2 == 0 {
		gn := strings.ToUpper(adj[:1]) + adj[1:] + " " + strings.ToUpper(noun[:1]) + noun[1:]
		u.GlobalName = &gn
	}
	if h>>24%4 != 0 {
		av := strconv.FormatUint(h>>1, 16)
		u.Avatar = &av
	}
	return u
}

// userLocked returns the user with id, materialised or procedural.
func (w *World) userLocked(id Snowflake) (User, bool) {
	if u, ok := w.users[id]; ok {
		return *u, true
	}
	if k, ok := w.userIndex(id); ok {
		return w.procUser(k), true
	}
	return User{}, false
}

// procMember reports whether procedural user k is in g's procedural range.
func (g *Guild) procMember(k, pool int) bool {
	return ((k-g.genOffset)%pool+pool)%pool < g.genCount
}

// isMemberLocked reports whether uid is a member of g.
func (w *World) isMemberLocked(g *Guild, uid Snowflake) bool {
	if _, ok := g.Members[uid]; ok {
		return true
	}
	if _, gone := g.removed[uid]; gone {
		return false
	}
	k, ok := w.userIndex(uid)
	return ok && g.procMember(k, w.userPool)
}

// procMemberFor builds the member record of procedural user k in g.
func (w *World) procMemberFor(g *Guild, k int) Member {
	h := mix64(w.seed ^ uint64(g.ID) ^ uint64(k)*0xff51afd7ed558ccd)
	u := w.procUser(k)
	m := Member{User: &u, Roles: []Snowflake{}}
	if h%5 == 0 && len(g.roleOrder) > 0 {
		m.Roles = append(m.Roles, g.roleOrder[(h>>8)%uint64(len(g.roleOrder))])
	}
	if h>>12%10 == 1 {
		nick := "the " + u.Username
		m.Nick = &nick
	}
	life := worldTime.Sub(g.createdAt)
	m.JoinedAt = g.createdAt.Add(time.Duration((h >> 20) % uint64(life)))
	if h>>40%50 == 0 {
		ps := m.JoinedAt.Add(24 * time.Hour)
		m.PremiumSince = &ps
	}
	return m
}

// memberLocked returns a copy of g's member uid. The caller holds w.mu.
func (w *World) memberLocked(g *Guild, uid Snowflake) (Member, bool) {
	if m, ok := g.Members[uid]; ok {
		return copyMember(m), true
	}
	if _, gone := g.removed[uid]; gone {
		return Member{}, false
	}
	k, ok := w.userIndex(uid)
	if !ok || !g.procMember(k, w.userPool) {
		return Member{}, false
	}
	return w.procMemberFor(g, k), true
}

// materializeMemberLocked returns g's stored member uid, creating the stored
// copy of a procedural member, so it can be changed in place. The caller
// holds w.mu for writing.
func (w *World) materializeMemberLocked(g *Guild, uid Snowflake) (*Member, bool) {
	if m, ok := g.Members[uid]; ok {
		return m, true
	}
	m, ok := w.memberLocked(g, uid)
	if !ok {
		return nil, false
	}
	g.Members[uid] = &m
	return &m, true
}

// removeMemberLocked removes uid from g. The caller holds w.mu for writing.
func (w *World) removeMemberLocked(g *Guild, uid Snowflake) bool {
	if !w.isMemberLocked(g, uid) {
		return false
	}
	delete(g.Members, uid)
	if k, ok := w.userIndex(uid); ok && g.procMember(k, w.userPool) {
		g.removed[uid] = struct{}{}
	}
	delete(g.VoiceStates, uid)
	delete(g.Online, uid)
	return true
}

func copyMember(m *Member) Member {
	c := *m
	if m.User != nil {
		u := *m.User
		c.User = &u
	}
	c.Roles = slices.Clone(m.Roles)
	if c.Roles == nil {
		c.Roles = []Snowflake{}
	}
	return c
}

// memberCountLocked is g's number of members.
func (w *World) memberCountLocked(g *Guild) int {
	n := g.genCount - len(g.removed)
	for uid := range g.Members {
		if k, ok := w.userIndex(uid); !ok || !g.procMember(k, w.userPool) {
			n++
		}
	}
	return n
}

// statusLocked is uid's presence status in g: "online", "idle", "dnd" or
// "offline". About a third of procedural members are not offline.
func (w *World) statusLocked(g *Guild, uid Snowflake) string {
	if st, ok := g.Online[uid]; ok {
		return st
	}
	k, ok := w.userIndex(uid)
	if !ok {
		return "offline"
	}
	switch h := mix64(w.seed^uint64(k)*0xc4ceb9fe1a85ec53) % 100; {
	case h < 22:
		return "online"
	case h < 28:
		return "idle"
	case h < 33:
		return "dnd"
	}
	return "offline"
}

// forEachMemberLocked calls fn for g's members with user id > after, in
// increasing user id order, until fn returns false. The member passed to fn
// is a copy the callee may keep. The caller holds w.mu.
func (w *World) forEachMemberLocked(g *Guild, after Snowflake, fn func(Member) bool) {
	// Stored members that are not procedural, merged in id order.
	var extra []Snowflake
	for uid := range g.Members {
		if k, ok := w.userIndex(uid); (!ok || !g.procMember(k, w.userPool)) && uid > after {
			extra = append(extra, uid)
		}
	}
	slices.Sort(extra)
	// The procedural range [off, off+n) mod pool as sorted index intervals.
	type span struct{ lo, hi int }
	var spans []span
	if end := g.genOffset + g.genCount; end <= w.userPool {
		spans = []span{{g.genOffset, end}}
	} else {
		spans = []span{{0, end - w.userPool}, {g.genOffset, w.userPool}}
	}
	emit := func(uid Snowflake) bool {
		m, ok := w.memberLocked(g, uid)
		if !ok {
			return true
		}
		return fn(m)
	}
	ei := 0
	for _, sp := range spans {
		start := max(sp.lo, firstIndexAfter(after))
		for k := start; k < sp.hi; k++ {
			uid := userIDFor(k)
			for ei < len(extra) && extra[ei] < uid {
				if !emit(extra[ei]) {
					return
				}
				ei++
			}
			if !emit(uid) {
				return
			}
		}
	}
	for ; ei < len(extra); ei++ {
		if !emit(extra[ei]) {
			return
		}
	}
}

// firstIndexAfter is the smallest procedural user index whose id is > after.
func firstIndexAfter(after Snowflake) int {
	ms := int64(uint64(after)>>22) - (userEpoch.UnixMilli() - DiscordEpoch)
	if uint64(after)&(1<<22-1) >= procUserLow {
		ms++
	}
	if ms < 0 {
		return 0
	}
	if ms > math.MaxInt32 {
		return math.MaxInt32
	}
	return int(ms)
}

// Guild ids in size order (largest first), for tests and the load generator.
func (w *World) guildIDsLocked() []Snowflake { return slices.Clone(w.guildOrder) }
