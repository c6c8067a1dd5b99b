package discordsim

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// GET /users/@me
func handleGetMe(c *reqCtx) {
	u := c.rs.botUser(c.bot)
	type me struct {
		User
		Verified   bool `json:"verified"`
		MFAEnabled bool `json:"mfa_enabled"`
		Flags      int  `json:"flags"`
	}
	u.Bot = true
	c.json(http.StatusOK, me{User: u, Verified: true})
}

// GET /users/{user.id}
func handleGetUser(c *reqCtx) {
	w := c.rs.s.world
	w.mu.RLock()
	u, ok := w.userLocked(c.id("user.id"))
	w.mu.RUnlock()
	if !ok {
		c.unknownUser()
		return
	}
	c.json(http.StatusOK, u)
}

// GET /gateway
func handleGateway(c *reqCtx) { c.json(http.StatusOK, c.rs.s.gatewayInfo()) }

// GET /gateway/bot
func handleGatewayBot(c *reqCtx) { c.json(http.StatusOK, c.rs.s.gatewayBotInfo(c.bot)) }

// copyChannel returns a deep enough copy of ch to encode after the lock is
// released.
func copyChannel(ch *Channel) Channel {
	cp := *ch
	cp.PermissionOverwrites = slices.Clone(ch.PermissionOverwrites)
	cp.Recipients = slices.Clone(ch.Recipients)
	if ch.ThreadMetadata != nil {
		tm := *ch.ThreadMetadata
		cp.ThreadMetadata = &tm
	}
	return cp
}

// GET /channels/{channel.id}
func handleGetChannel(c *reqCtx) {
	w := c.rs.s.world
	w.mu.RLock()
	ch, ok := w.channels[c.id("channel.id")]
	var cp Channel
	if ok {
		cp = copyChannel(ch)
	}
	w.mu.RUnlock()
	if !ok {
		c.unknownChannel()
		return
	}
	c.json(http.StatusOK, cp)
}

// channelPatch is the body of PATCH /channels/{id} and POST
// /guilds/{id}/channels (the fields the simulator keeps).
type channelPatch struct {
	Name                 *string      `json:"name"`
	Type                 *int         `json:"type"`
	Topic                *string      `json:"topic"`
	Position             *int         `json:"position"`
	NSFW                 *bool        `json:"nsfw"`
	RateLimitPerUser     *int         `json:"rate_limit_per_user"`
	ParentID             *Snowflake   `json:"parent_id"`
	PermissionOverwrites *[]Overwrite `json:"permission_overwrites"`
}

// validate checks the documented lengths.
func (p *channelPatch) validate(create bool) formErrors {
	errs := formErrors{}
	if create && (p.Name == nil || *p.Name == "") {
		errs.add("BASE_TYPE_REQUIRED", "This field is required", "name")
	}
	if p.Name != nil {
		if n := utf8.RuneCountInString(*p.Name); n < 1 || n > 100 {
			errs.add("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.", "name")
		}
	}
	if p.Topic != nil && utf8.RuneCountInString(*p.Topic) > 1024 {
		errs.add("BASE_TYPE_MAX_LENGTH", "Must be 1024 or fewer in length.", "topic")
	}
	if p.RateLimitPerUser != nil && (*p.RateLimitPerUser < 0 || *p.RateLimitPerUser > 21600) {
		errs.add("NUMBER_TYPE_MAX", "int value should be between 0 and 21600.", "rate_limit_per_user")
	}
	if p.Type != nil && !slices.Contains([]int{0, 2, 4, 5, 13, 15, 16}, *p.Type) {
		errs.add("BASE_TYPE_CHOICES", "Value must be one of {0, 2, 4, 5, 13, 15, 16}.", "type")
	}
	return errs
}

// apply writes the patch into ch.
func (p *channelPatch) apply(ch *Channel) {
	if p.Name != nil {
		ch.Name = *p.Name
	}
	if p.Topic != nil {
		t := *p.Topic
		ch.Topic = &t
	}
	if p.Position != nil {
		ch.Position = *p.Position
	}
	if p.NSFW != nil {
		ch.NSFW = *p.NSFW
	}
	if p.RateLimitPerUser != nil {
		ch.RateLimitPerUser = *p.RateLimitPerUser
	}
	if p.ParentID != nil {
		id := *p.ParentID
		ch.ParentID = &id
	}
	if p.PermissionOverwrites != nil {
		ch.PermissionOverwrites = slices.Clone(*p.PermissionOverwrites)
	}
}

// PATCH /channels/{channel.id}
func handleModifyChannel(c *reqCtx) {
	var p channelPatch
	if !c.decodeJSONBody(&p) {
		return
	}
	if errs := p.validate(false); len(errs) > 0 {
		c.invalidForm(errs)
		return
	}
	id := c.id("channel.id")
	w := c.rs.s.world
	w.mu.RLock()
	ch, ok := w.channels[id]
	rename := ok && ((p.Name != nil && *p.Name != ch.Name) || (p.Topic != nil && (ch.Topic == nil || *p.Topic != *ch.Topic)))
	w.mu.RUnlock()
	if !ok {
		c.unknownChannel()
		return
	}
	// Renaming a channel or changing its topic: 2 per 10 minutes.
	if rename && !c.sublimit("channel-name-topic") {
		return
	}
	w.mu.Lock()
	ch, ok = w.channels[id]
	var cp Channel
	if ok {
		p.apply(ch)
		cp = copyChannel(ch)
	}
	w.mu.Unlock()
	if !ok {
		c.unknownChannel()
		return
	}
	c.rs.emit(cp.GuildID, "CHANNEL_UPDATE", cp)
	c.json(http.StatusOK, cp)
}

// DELETE /channels/{channel.id}
func handleDeleteChannel(c *reqCtx) {
	id := c.id("channel.id")
	w := c.rs.s.world
	w.mu.Lock()
	ch, ok := w.channels[id]
	var cp Channel
	if ok {
		cp = copyChannel(ch)
		delete(w.channels, id)
		if g := w.guilds[ch.GuildID]; g != nil {
			delete(g.Channels, id)
			g.textChannels = slices.DeleteFunc(g.textChannels, func(x Snowflake) bool { return x == id })
			g.voiceChannels = slices.DeleteFunc(g.voiceChannels, func(x Snowflake) bool { return x == id })
		}
	}
	w.mu.Unlock()
	if !ok {
		c.unknownChannel()
		return
	}
	c.rs.msgs.dropChannel(id)
	c.rs.emit(cp.GuildID, "CHANNEL_DELETE", cp)
	c.json(http.StatusOK, cp)
}

// guildObject is the guild as GET /guilds/{id} returns it.
type guildObject struct {
	ID                       Snowflake `json:"id"`
	Name                     string    `json:"name"`
	Icon                     *string   `json:"icon"`
	OwnerID                  Snowflake `json:"owner_id"`
	Features                 []string  `json:"features"`
	Roles                    []Role    `json:"roles"`
	Emojis                   []Emoji   `json:"emojis"`
	Stickers                 []any     `json:"stickers"`
	VerificationLevel        int       `json:"verification_level"`
	DefaultMessageNotify     int       `json:"default_message_notifications"`
	ExplicitContentFilter    int       `json:"explicit_content_filter"`
	MFALevel                 int       `json:"mfa_level"`
	PremiumTier              int       `json:"premium_tier"`
	PreferredLocale          string    `json:"preferred_locale"`
	NSFWLevel                int       `json:"nsfw_level"`
	ApproximateMemberCount   *int      `json:"approximate_member_count,omitempty"`
	ApproximatePresenceCount *int      `json:"approximate_presence_count,omitempty"`
}

// sortedRoles returns g's roles by position then id, copied.
func sortedRoles(g *Guild) []Role {
	out := make([]Role, 0, len(g.Roles))
	for _, r := range g.Roles {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b Role) int {
		if a.Position != b.Position {
			return a.Position - b.Position
		}
		return cmpSnowflake(a.ID, b.ID)
	})
	return out
}

// guildObjectLocked builds the guild object; the caller holds the world lock.
func (rs *restState) guildObjectLocked(g *Guild, counts bool) guildObject {
	o := guildObject{ID: g.ID, Name: g.Name, Icon: g.Icon, OwnerID: g.OwnerID, Features: slices.Clone(g.Features),
		Roles: sortedRoles(g), Emojis: []Emoji{}, Stickers: []any{}, PreferredLocale: "en-US"}
	if o.Features == nil {
		o.Features = []string{}
	}
	for _, e := range g.Emojis {
		o.Emojis = append(o.Emojis, *e)
	}
	slices.SortFunc(o.Emojis, func(a, b Emoji) int { return cmpSnowflake(a.ID, b.ID) })
	if counts {
		n := rs.s.world.memberCountLocked(g)
		// Presences are only counted approximately, as Discord says.
		p := len(g.Online) + n/3
		o.ApproximateMemberCount, o.ApproximatePresenceCount = &n, &p
	}
	return o
}

// guild runs fn with the request's guild under the world's read lock,
// answering 10004 when it does not exist.
func (c *reqCtx) guild(write bool, fn func(w *World, g *Guild)) bool {
	w := c.rs.s.world
	if write {
		w.mu.Lock()
		defer w.mu.Unlock()
	} else {
		w.mu.RLock()
		defer w.mu.RUnlock()
	}
	g, ok := w.guilds[c.id("guild.id")]
	if !ok {
		c.unknownGuild()
		return false
	}
	fn(w, g)
	return true
}

// GET /guilds/{guild.id}
func handleGetGuild(c *reqCtx) {
	counts := parseBool(c.r.URL.Query().Get("with_counts"))
	var o guildObject
	if c.guild(false, func(_ *World, g *Guild) { o = c.rs.guildObjectLocked(g, counts) }) {
		c.json(http.StatusOK, o)
	}
}

// parseBool reads a boolean query value the way Discord does.
func parseBool(v string) bool {
	switch v {
	case "true", "True", "1":
		return true
	}
	return false
}

// PATCH /guilds/{guild.id}
func handleModifyGuild(c *reqCtx) {
	var p struct {
		Name *string `json:"name"`
		Icon *string `json:"icon"`
	}
	if !c.decodeJSONBody(&p) {
		return
	}
	if p.Name != nil {
		if n := utf8.RuneCountInString(*p.Name); n < 2 || n > 100 {
			errs := formErrors{}
			errs.add("BASE_TYPE_BAD_LENGTH", "Must be between 2 and 100 in length.", "name")
			c.invalidForm(errs)
			return
		}
	}
	var o guildObject
	if !c.guild(true, func(_ *World, g *Guild) {
		if p.Name != nil {
			g.Name = *p.Name
		}
		if p.Icon != nil {
			icon := *p.Icon
			g.Icon = &icon
		}
		o = c.rs.guildObjectLocked(g, false)
	}) {
		return
	}
	c.rs.emit(o.ID, "GUILD_UPDATE", o)
	c.json(http.StatusOK, o)
}

// GET /guilds/{guild.id}/channels
func handleGuildChannels(c *reqCtx) {
	var out []Channel
	if !c.guild(false, func(_ *World, g *Guild) {
		out = make([]Channel, 0, len(g.Channels))
		for _, ch := range g.Channels {
			if ch.ThreadMetadata != nil {
				continue // threads are not listed here, as on Discord
			}
			out = append(out, copyChannel(ch))
		}
	}) {
		return
	}
	slices.SortFunc(out, func(a, b Channel) int {
		if a.Position != b.Position {
			return a.Position - b.Position
		}
		return cmpSnowflake(a.ID, b.ID)
	})
	c.json(http.StatusOK, out)
}

// POST /guilds/{guild.id}/channels
func handleCreateChannel(c *reqCtx) {
	var p channelPatch
	if !c.decodeJSONBody(&p) {
		return
	}
	if errs := p.validate(true); len(errs) > 0 {
		c.invalidForm(errs)
		return
	}
	id := c.rs.s.newID()
	var cp Channel
	if !c.guild(true, func(w *World, g *Guild) {
		if len(g.Channels) >= 500 {
			return
		}
		ch := &Channel{ID: id, GuildID: g.ID, PermissionOverwrites: []Overwrite{}}
		if p.Type != nil {
			ch.Type = *p.Type
		}
		p.apply(ch)
		g.Channels[id] = ch
		w.channels[id] = ch
		switch ch.Type {
		case 0, 5:
			g.textChannels = append(g.textChannels, id)
		case 2, 13:
			g.voiceChannels = append(g.voiceChannels, id)
		}
		cp = copyChannel(ch)
	}) {
		return
	}
	if cp.ID == 0 {
		c.fail(http.StatusBadRequest, 30013, "Maximum number of guild channels reached (500)")
		return
	}
	c.rs.emit(cp.GuildID, "CHANNEL_CREATE", cp)
	c.json(http.StatusCreated, cp)
}

// withUser returns m with its user set (the stored member may lack it).
func (w *World) memberWithUserLocked(m Member, uid Snowflake) Member {
	if m.User == nil {
		if u, ok := w.userLocked(uid); ok {
			m.User = &u
		}
	}
	return m
}

// GET /guilds/{guild.id}/members/{user.id}
func handleGetMember(c *reqCtx) {
	uid := c.id("user.id")
	var m Member
	found := false
	if !c.guild(false, func(w *World, g *Guild) {
		m, found = w.memberLocked(g, uid)
		if found {
			m = w.memberWithUserLocked(m, uid)
		}
	}) {
		return
	}
	if !found {
		c.unknownMember()
		return
	}
	c.json(http.StatusOK, m)
}

// GET /guilds/{guild.id}/members?limit=1..1000&after=
func handleListMembers(c *reqCtx) {
	q := c.r.URL.Query()
	limit := 1
	errs := formErrors{}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			errs.add("NUMBER_TYPE_MAX", "int value should be between 1 and 1000.", "limit")
		}
		limit = n
	}
	var after Snowflake
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			errs.add("NUMBER_TYPE_COERCE", "Value \""+truncate(v, 32)+"\" is not snowflake.", "after")
		}
		after = Snowflake(n)
	}
	if len(errs) > 0 {
		c.invalidForm(errs)
		return
	}
	out := make([]Member, 0, min(limit, 100))
	if !c.guild(false, func(w *World, g *Guild) {
		w.forEachMemberLocked(g, after, func(m Member) bool {
			out = append(out, m)
			return len(out) < limit
		})
	}) {
		return
	}
	c.json(http.StatusOK, out)
}

// memberEvent is GUILD_MEMBER_UPDATE's payload.
type memberEvent struct {
	Member
	GuildID Snowflake `json:"guild_id"`
}

// PATCH /guilds/{guild.id}/members/{user.id}
func handleModifyMember(c *reqCtx) {
	var p struct {
		Nick                       *string      `json:"nick"`
		Roles                      *[]Snowflake `json:"roles"`
		Mute                       *bool        `json:"mute"`
		Deaf                       *bool        `json:"deaf"`
		CommunicationDisabledUntil *time.Time   `json:"communication_disabled_until"`
	}
	if !c.decodeJSONBody(&p) {
		return
	}
	if p.Nick != nil && utf8.RuneCountInString(*p.Nick) > 32 {
		errs := formErrors{}
		errs.add("BASE_TYPE_MAX_LENGTH", "Must be 32 or fewer in length.", "nick")
		c.invalidForm(errs)
		return
	}
	uid := c.id("user.id")
	if c.str("user.id") == "@me" {
		uid = c.bot.ID
	}
	var out Member
	var badRole Snowflake
	found := false
	if !c.guild(true, func(w *World, g *Guild) {
		if p.Roles != nil {
			for _, r := range *p.Roles {
				if _, ok := g.Roles[r]; !ok {
					badRole = r
					return
				}
			}
		}
		m, ok := w.materializeMemberLocked(g, uid)
		if !ok {
			return
		}
		found = true
		if p.Nick != nil {
			n := *p.Nick
			m.Nick = &n
			if n == "" {
				m.Nick = nil
			}
		}
		if p.Roles != nil {
			m.Roles = slices.Clone(*p.Roles)
		}
		if p.Mute != nil {
			m.Mute = *p.Mute
		}
		if p.Deaf != nil {
			m.Deaf = *p.Deaf
		}
		if p.CommunicationDisabledUntil != nil {
			t := *p.CommunicationDisabledUntil
			m.CommunicationDisabledUntil = &t
		}
		out = w.memberWithUserLocked(copyMember(m), uid)
	}) {
		return
	}
	if badRole != 0 {
		errs := formErrors{}
		errs.add("BASE_TYPE_CHOICES", "Role "+badRole.String()+" is not a role of this guild.", "roles")
		c.invalidForm(errs)
		return
	}
	if !found {
		c.unknownMember()
		return
	}
	c.rs.emit(c.id("guild.id"), "GUILD_MEMBER_UPDATE", memberEvent{Member: out, GuildID: c.id("guild.id")})
	c.json(http.StatusOK, out)
}

// PUT|DELETE /guilds/{guild.id}/members/{user.id}/roles/{role.id}
func handleMemberRole(add bool) func(*reqCtx) {
	return func(c *reqCtx) {
		uid, rid := c.id("user.id"), c.id("role.id")
		var out Member
		unknownRole, found, changed := false, false, false
		if !c.guild(true, func(w *World, g *Guild) {
			if _, ok := g.Roles[rid]; !ok || rid == g.ID {
				unknownRole = true
				return
			}
			m, ok := w.materializeMemberLocked(g, uid)
			if !ok {
				return
			}
			found = true
			has := slices.Contains(m.Roles, rid)
			switch {
			case add && !has:
				m.Roles = append(m.Roles, rid)
				changed = true
			case !add && has:
				m.Roles = slices.DeleteFunc(m.Roles, func(x Snowflake) bool { return x == rid })
				changed = true
			}
			out = w.memberWithUserLocked(copyMember(m), uid)
		}) {
			return
		}
		switch {
		case unknownRole:
			c.unknownRole()
			return
		case !found:
			c.unknownMember()
			return
		}
		if changed {
			c.rs.emit(c.id("guild.id"), "GUILD_MEMBER_UPDATE", memberEvent{Member: out, GuildID: c.id("guild.id")})
		}
		c.noContent()
	}
}

// memberRemoveEvent is GUILD_MEMBER_REMOVE's payload.
type memberRemoveEvent struct {
	GuildID Snowflake `json:"guild_id"`
	User    User      `json:"user"`
}

// removeMember removes uid from the request's guild and dispatches
// GUILD_MEMBER_REMOVE; it reports whether uid was a member.
func (c *reqCtx) removeMember(uid Snowflake) (bool, bool) {
	var u User
	removed := false
	if !c.guild(true, func(w *World, g *Guild) {
		m, ok := w.memberLocked(g, uid)
		if !ok {
			return
		}
		m = w.memberWithUserLocked(m, uid)
		if m.User != nil {
			u = *m.User
		}
		removed = w.removeMemberLocked(g, uid)
	}) {
		return false, false
	}
	if removed {
		c.rs.emit(c.id("guild.id"), "GUILD_MEMBER_REMOVE", memberRemoveEvent{GuildID: c.id("guild.id"), User: u})
	}
	return true, removed
}

// DELETE /guilds/{guild.id}/members/{user.id}
func handleKickMember(c *reqCtx) {
	guildOK, removed := c.removeMember(c.id("user.id"))
	if !guildOK {
		return
	}
	if !removed {
		c.unknownMember()
		return
	}
	c.noContent()
}

// GET /guilds/{guild.id}/roles
func handleListRoles(c *reqCtx) {
	var out []Role
	if c.guild(false, func(_ *World, g *Guild) { out = sortedRoles(g) }) {
		c.json(http.StatusOK, out)
	}
}

// rolePatch is the body of role create and modify.
type rolePatch struct {
	Name        *string `json:"name"`
	Permissions *string `json:"permissions"`
	Color       *int    `json:"color"`
	Hoist       *bool   `json:"hoist"`
	Mentionable *bool   `json:"mentionable"`
}

func (p *rolePatch) validate() formErrors {
	errs := formErrors{}
	if p.Name != nil && utf8.RuneCountInString(*p.Name) > 100 {
		errs.add("BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.", "name")
	}
	if p.Permissions != nil {
		if _, err := strconv.ParseUint(*p.Permissions, 10, 64); err != nil {
			errs.add("NUMBER_TYPE_COERCE", "Value \""+truncate(*p.Permissions, 32)+"\" is not int.", "permissions")
		}
	}
	if p.Color != nil && (*p.Color < 0 || *p.Color > 0xffffff) {
		errs.add("NUMBER_TYPE_MAX", "int value should be between 0 and 16777215.", "color")
	}
	return errs
}

func (p *rolePatch) apply(r *Role) {
	if p.Name != nil {
		r.Name = *p.Name
	}
	if p.Permissions != nil {
		r.Permissions = *p.Permissions
	}
	if p.Color != nil {
		r.Color = *p.Color
	}
	if p.Hoist != nil {
		r.Hoist = *p.Hoist
	}
	if p.Mentionable != nil {
		r.Mentionable = *p.Mentionable
	}
}

// roleEvent is GUILD_ROLE_CREATE/UPDATE's payload.
type roleEvent struct {
	GuildID Snowflake `json:"guild_id"`
	Role    Role      `json:"role"`
}

// POST /guilds/{guild.id}/roles
func handleCreateRole(c *reqCtx) {
	var p rolePatch
	if !c.decodeJSONBody(&p) {
		return
	}
	if errs := p.validate(); len(errs) > 0 {
		c.invalidForm(errs)
		return
	}
	id := c.rs.s.newID()
	var out Role
	full := false
	if !c.guild(true, func(_ *World, g *Guild) {
		if len(g.Roles) >= 250 {
			full = true
			return
		}
		r := &Role{ID: id, Name: "new role", Permissions: "0", Position: 1, Flags: 0}
		p.apply(r)
		g.Roles[id] = r
		out = *r
	}) {
		return
	}
	if full {
		c.fail(http.StatusBadRequest, 30005, "Maximum number of guild roles reached (250)")
		return
	}
	c.rs.emit(c.id("guild.id"), "GUILD_ROLE_CREATE", roleEvent{GuildID: c.id("guild.id"), Role: out})
	c.json(http.StatusOK, out)
}

// PATCH /guilds/{guild.id}/roles/{role.id}
func handleModifyRole(c *reqCtx) {
	var p rolePatch
	if !c.decodeJSONBody(&p) {
		return
	}
	if errs := p.validate(); len(errs) > 0 {
		c.invalidForm(errs)
		return
	}
	rid := c.id("role.id")
	var out Role
	found := false
	if !c.guild(true, func(_ *World, g *Guild) {
		r, ok := g.Roles[rid]
		if !ok {
			return
		}
		found = true
		p.apply(r)
		out = *r
	}) {
		return
	}
	if !found {
		c.unknownRole()
		return
	}
	c.rs.emit(c.id("guild.id"), "GUILD_ROLE_UPDATE", roleEvent{GuildID: c.id("guild.id"), Role: out})
	c.json(http.StatusOK, out)
}

// DELETE /guilds/{guild.id}/roles/{role.id}
func handleDeleteRole(c *reqCtx) {
	rid := c.id("role.id")
	found := false
	if !c.guild(true, func(_ *World, g *Guild) {
		if _, ok := g.Roles[rid]; !ok || rid == g.ID {
			return
		}
		found = true
		delete(g.Roles, rid)
		for _, m := range g.Members {
			m.Roles = slices.DeleteFunc(m.Roles, func(x Snowflake) bool { return x == rid })
		}
		g.roleOrder = slices.DeleteFunc(g.roleOrder, func(x Snowflake) bool { return x == rid })
	}) {
		return
	}
	if !found {
		c.unknownRole()
		return
	}
	type roleDelete struct {
		GuildID Snowflake `json:"guild_id"`
		RoleID  Snowflake `json:"role_id"`
	}
	c.rs.emit(c.id("guild.id"), "GUILD_ROLE_DELETE", roleDelete{GuildID: c.id("guild.id"), RoleID: rid})
	c.noContent()
}

// banObject is a guild ban.
type banObject struct {
	Reason *string `json:"reason"`
	User   User    `json:"user"`
}

// GET /guilds/{guild.id}/bans
func handleListBans(c *reqCtx) {
	if !c.guild(false, func(*World, *Guild) {}) {
		return
	}
	c.json(http.StatusOK, c.rs.bans.list(c.id("guild.id")))
}

// GET /guilds/{guild.id}/bans/{user.id}
func handleGetBan(c *reqCtx) {
	if !c.guild(false, func(*World, *Guild) {}) {
		return
	}
	b, ok := c.rs.bans.get(c.id("guild.id"), c.id("user.id"))
	if !ok {
		c.unknownBan()
		return
	}
	c.json(http.StatusOK, b)
}

// PUT /guilds/{guild.id}/bans/{user.id}
func handleBan(c *reqCtx) {
	var p struct {
		DeleteMessageSeconds *int `json:"delete_message_seconds"`
	}
	if !c.decodeJSONBody(&p) {
		return
	}
	if p.DeleteMessageSeconds != nil && (*p.DeleteMessageSeconds < 0 || *p.DeleteMessageSeconds > 604800) {
		errs := formErrors{}
		errs.add("NUMBER_TYPE_MAX", "int value should be between 0 and 604800.", "delete_message_seconds")
		c.invalidForm(errs)
		return
	}
	uid := c.id("user.id")
	w := c.rs.s.world
	w.mu.RLock()
	u, ok := w.userLocked(uid)
	w.mu.RUnlock()
	if !ok {
		c.unknownUser()
		return
	}
	var reason *string
	if r := c.r.Header.Get("X-Audit-Log-Reason"); r != "" {
		// The header is URL-encoded UTF-8.
		if dec, err := url.PathUnescape(r); err == nil {
			r = dec
		}
		reason = &r
	}
	guildOK, _ := c.removeMember(uid)
	if !guildOK {
		return
	}
	gid := c.id("guild.id")
	c.rs.bans.put(gid, banObject{Reason: reason, User: u})
	c.rs.emit(gid, "GUILD_BAN_ADD", memberRemoveEvent{GuildID: gid, User: u})
	c.noContent()
}

// DELETE /guilds/{guild.id}/bans/{user.id}
func handleUnban(c *reqCtx) {
	gid := c.id("guild.id")
	b, ok := c.rs.bans.remove(gid, c.id("user.id"))
	if !ok {
		c.unknownBan()
		return
	}
	c.rs.emit(gid, "GUILD_BAN_REMOVE", memberRemoveEvent{GuildID: gid, User: b.User})
	c.noContent()
}

// POST /users/@me/channels
func handleCreateDM(c *reqCtx) {
	var p struct {
		RecipientID Snowflake `json:"recipient_id"`
	}
	if !c.decodeJSONBody(&p) {
		return
	}
	if p.RecipientID == 0 {
		errs := formErrors{}
		errs.add("BASE_TYPE_REQUIRED", "This field is required", "recipient_id")
		c.invalidForm(errs)
		return
	}
	ch, ok := c.rs.openDM(c.bot, p.RecipientID)
	if !ok {
		c.unknownUser()
		return
	}
	c.json(http.StatusOK, ch)
}

// openDM returns the DM channel between b and user, creating it once.
func (rs *restState) openDM(b *Bot, user Snowflake) (Channel, bool) {
	w := rs.s.world
	key := [2]Snowflake{b.ID, user}
	rs.dmMu.Lock()
	defer rs.dmMu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	u, ok := w.userLocked(user)
	if !ok {
		return Channel{}, false
	}
	if id, ok := rs.dms[key]; ok {
		if ch, ok := w.channels[id]; ok {
			return copyChannel(ch), true
		}
	}
	ch := &Channel{ID: rs.s.newID(), Type: 1, Recipients: []User{u}}
	w.channels[ch.ID] = ch
	rs.dms[key] = ch.ID
	return copyChannel(ch), true
}

// banStore holds guild bans.
type banStore struct {
	mu   sync.Mutex
	bans map[Snowflake]map[Snowflake]banObject
}

func (bs *banStore) put(g Snowflake, b banObject) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.bans == nil {
		bs.bans = map[Snowflake]map[Snowflake]banObject{}
	}
	if bs.bans[g] == nil {
		bs.bans[g] = map[Snowflake]banObject{}
	}
	bs.bans[g][b.User.ID] = b
}

func (bs *banStore) get(g, u Snowflake) (banObject, bool) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	b, ok := bs.bans[g][u]
	return b, ok
}

func (bs *banStore) remove(g, u Snowflake) (banObject, bool) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	b, ok := bs.bans[g][u]
	delete(bs.bans[g], u)
	return b, ok
}

func (bs *banStore) list(g Snowflake) []banObject {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	out := []banObject{}
	for _, b := range bs.bans[g] {
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b banObject) int { return cmpSnowflake(a.User.ID, b.User.ID) })
	return out
}
