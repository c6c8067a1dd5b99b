package discordsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// bulkDeleteMaxAge is how old a message may be for bulk delete (two weeks).
const bulkDeleteMaxAge = 14 * 24 * time.Hour

// Channel types that cannot hold messages.
const (
	channelGuildCategory  = 4
	channelGuildDirectory = 14
	channelGuildForum     = 15
	channelGuildMedia     = 16
)

// chanInfo is what message routes need to know about a channel.
type chanInfo struct {
	id       Snowflake
	guildID  Snowflake
	typ      int
	slowmode int // rate_limit_per_user, seconds
}

// channelInfo looks up a channel in the world.
func (rs *restState) channelInfo(id Snowflake) (chanInfo, bool) {
	w := rs.s.world
	w.mu.RLock()
	defer w.mu.RUnlock()
	ch, ok := w.channels[id]
	if !ok {
		return chanInfo{}, false
	}
	return chanInfo{id: ch.ID, guildID: ch.GuildID, typ: ch.Type, slowmode: ch.RateLimitPerUser}, true
}

// textChannel resolves the request's channel, answering 10003 (or 50008 for
// a channel that cannot hold messages) when it cannot.
func (c *reqCtx) textChannel() (chanInfo, bool) {
	ci, ok := c.rs.channelInfo(c.id("channel.id"))
	if !ok {
		c.unknownChannel()
		return ci, false
	}
	switch ci.typ {
	case channelGuildCategory, channelGuildDirectory, channelGuildForum, channelGuildMedia:
		c.fail(http.StatusBadRequest, 50008, "Cannot send messages in a non-text channel")
		return ci, false
	}
	return ci, true
}

// botUser is the user object of bot b.
func (rs *restState) botUser(b *Bot) User {
	w := rs.s.world
	w.mu.RLock()
	u, ok := w.users[b.ID]
	var out User
	if ok {
		out = *u
	}
	w.mu.RUnlock()
	if ok {
		return out
	}
	return User{ID: b.ID, Username: b.Name, Discriminator: "0", Bot: true}
}

// botMember is bot b's member object in guild g (without its user), for the
// member field of dispatches; nil outside guilds.
func (rs *restState) botMember(g, botID Snowflake) *Member {
	if g == 0 {
		return nil
	}
	w := rs.s.world
	w.mu.RLock()
	defer w.mu.RUnlock()
	guild, ok := w.guilds[g]
	if !ok {
		return nil
	}
	m, ok := guild.Members[botID]
	if !ok {
		return nil
	}
	cp := *m
	cp.User = nil
	cp.Roles = slices.Clone(m.Roles)
	if cp.Roles == nil {
		cp.Roles = []Snowflake{}
	}
	return &cp
}

// messageEvent is a MESSAGE_CREATE/UPDATE payload: the message plus the guild
// and the author's member.
type messageEvent struct {
	Message
	GuildID *Snowflake `json:"guild_id,omitempty"`
	Member  *Member    `json:"member,omitempty"`
}

func optID(id Snowflake) *Snowflake {
	if id == 0 {
		return nil
	}
	return &id
}

// newMessage builds a message from a validated request.
func (rs *restState) newMessage(ch chanInfo, author User, req *messageRequest) Message {
	now := rs.now().UTC()
	m := Message{
		ID: rs.s.newID(), ChannelID: ch.id, Author: author, Timestamp: now, TTS: req.TTS,
		Mentions: []User{}, MentionRoles: []Snowflake{}, Attachments: []Attachment{}, Embeds: []json.RawMessage{},
		Components: []json.RawMessage{}, Nonce: req.Nonce, MessageReference: req.MessageReference,
	}
	if string(m.Nonce) == "null" {
		m.Nonce = nil
	}
	if string(m.MessageReference) == "null" {
		m.MessageReference = nil
	}
	if req.MessageReference != nil {
		m.Type = 19 // REPLY
	}
	if req.Content != nil {
		m.Content = *req.Content
	}
	// Compacted once here, so encodeMessage can copy them as they are.
	m.Nonce, m.MessageReference = compactRaw(m.Nonce), compactRaw(m.MessageReference)
	if req.Embeds != nil {
		m.Embeds = req.Embeds
		compactRaws(m.Embeds)
	}
	if req.Components != nil {
		m.Components = req.Components
		compactRaws(m.Components)
	}
	if req.Flags != nil {
		m.Flags = *req.Flags
	}
	m.Attachments = rs.attachments(ch.id, req)
	m.MentionEveryone = strings.Contains(m.Content, "@everyone") || strings.Contains(m.Content, "@here")
	m.Mentions = rs.mentions(m.Content)
	return m
}

// attachments turns uploaded files into attachment objects.
func (rs *restState) attachments(ch Snowflake, req *messageRequest) []Attachment {
	out := []Attachment{}
	for _, f := range req.files {
		id := rs.s.newID()
		name := f.filename
		if name == "" {
			name = "file" + strconv.Itoa(f.index)
		}
		desc := ""
		for _, a := range req.Attachments {
			if string(a.ID) == strconv.Itoa(f.index) || string(a.ID) == strconv.Quote(strconv.Itoa(f.index)) {
				if a.Filename != "" {
					name = a.Filename
				}
				desc = a.Description
			}
		}
		url := "https://cdn.discordapp.com/attachments/" + ch.String() + "/" + id.String() + "/" + name
		out = append(out, Attachment{ID: id, Filename: name, Description: desc, ContentType: f.contentType,
			Size: f.size, URL: url, ProxyURL: strings.Replace(url, "cdn.discordapp.com", "media.discordapp.net", 1)})
	}
	return out
}

// mentions resolves <@id> and <@!id> user mentions in content.
func (rs *restState) mentions(content string) []User {
	out := []User{}
	if !strings.Contains(content, "<@") {
		return out
	}
	w := rs.s.world
	w.mu.RLock()
	defer w.mu.RUnlock()
	for rest := content; ; {
		i := strings.Index(rest, "<@")
		if i < 0 {
			break
		}
		rest = rest[i+2:]
		rest = strings.TrimPrefix(rest, "!")
		j := strings.IndexByte(rest, '>')
		if j < 0 {
			break
		}
		id, err := strconv.ParseUint(rest[:j], 10, 64)
		if err != nil {
			continue
		}
		if u, ok := w.users[Snowflake(id)]; ok && !slices.ContainsFunc(out, func(x User) bool { return x.ID == u.ID }) {
			out = append(out, *u)
		}
	}
	return out
}

// postMessage stores m, dispatches MESSAGE_CREATE and returns m's JSON. The
// message is encoded once: the event is the same object plus guild_id and
// member, spliced in, which halves the encoding cost of the hottest route.
func (rs *restState) postMessage(ch chanInfo, m Message, member *Member) ([]byte, error) {
	rs.msgs.add(m, ch.guildID)
	rs.setLastMessage(ch.id, m.ID)
	b, err := encodeMessage(&m)
	if err != nil {
		return nil, fmt.Errorf("encoding message: %w", err)
	}
	ev, err := spliceEvent(b, ch.guildID, member)
	if err != nil {
		return nil, err
	}
	rs.emit(ch.guildID, "MESSAGE_CREATE", json.RawMessage(ev))
	return b, nil
}

// spliceEvent appends guild_id and member to an encoded message object.
func spliceEvent(msg []byte, guildID Snowflake, member *Member) ([]byte, error) {
	ev := make([]byte, 0, len(msg)+256)
	ev = append(ev, msg[:len(msg)-1]...)
	if guildID != 0 {
		ev = append(ev, `,"guild_id":"`...)
		ev = strconv.AppendUint(ev, uint64(guildID), 10)
		ev = append(ev, '"')
	}
	if member != nil {
		mb, err := json.Marshal(member)
		if err != nil {
			return nil, fmt.Errorf("encoding member: %w", err)
		}
		ev = append(ev, `,"member":`...)
		ev = append(ev, mb...)
	}
	return append(ev, '}'), nil
}

// postMessage posts m and answers the request with it.
func (c *reqCtx) postMessage(ch chanInfo, m Message, member *Member) {
	b, err := c.rs.postMessage(ch, m, member)
	if err != nil {
		c.rs.log.Error("posting message", "route", c.routeName(), "err", err)
		c.fail(http.StatusInternalServerError, 0, "500: Internal Server Error")
		return
	}
	c.raw(http.StatusOK, b)
}

// setLastMessage records the channel's last message id in the world.
func (rs *restState) setLastMessage(ch, id Snowflake) {
	w := rs.s.world
	w.mu.Lock()
	if c, ok := w.channels[ch]; ok && (c.LastMessageID == nil || *c.LastMessageID < id) {
		v := id
		c.LastMessageID = &v
	}
	w.mu.Unlock()
}

// POST /channels/{channel.id}/messages
func handleCreateMessage(c *reqCtx) {
	ch, ok := c.textChannel()
	if !ok {
		return
	}
	req, ok := c.readMessageRequest(true)
	if !ok {
		return
	}
	if !c.channelWriteLimits(ch) {
		return
	}
	m := c.rs.newMessage(ch, c.rs.botUser(c.bot), req)
	c.postMessage(ch, m, c.rs.botMember(ch.guildID, c.bot.ID))
}

// channelWriteLimits applies the limits of the channel itself, beyond the
// bot's own bucket: slowmode (rate_limit_per_user; bots without Manage
// Messages are subject to it, and simulated bots have no such permission),
// answered 429 code 20016 with scope user; and the channel's write limit
// shared by everyone writing to it ("channel-write-shared", off unless
// configured through RESTConfig.Buckets, since Discord does not publish it),
// answered 429 code 20028 with scope shared, which does not count towards
// the invalid request limit.
func (c *reqCtx) channelWriteLimits(ch chanInfo) bool {
	rs := c.rs
	if ch.slowmode > 0 {
		d := rs.lim.takeN(limKey{owner: c.owner, bucket: rs.slowmodeID, major: uint64(ch.id)}, 1, time.Duration(ch.slowmode)*time.Second)
		if !d.ok {
			rs.writeCoded429(c, d, "user", 20016, "This action cannot be performed due to slowmode rate limit.")
			return false
		}
	}
	if sp := rs.lim.specs[rs.sharedWriteID]; sp.Limit > 0 {
		d := rs.lim.take(limKey{bucket: rs.sharedWriteID, major: uint64(ch.id)})
		if !d.ok {
			rs.writeCoded429(c, d, "shared", 20028, "The write action you are performing on the channel has hit the write rate limit on the channel.")
			return false
		}
	}
	return true
}

// GET /channels/{channel.id}/messages
func handleListMessages(c *reqCtx) {
	ch, ok := c.textChannel()
	if !ok {
		return
	}
	q := c.r.URL.Query()
	hq := historyQuery{limit: 50}
	errs := formErrors{}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		switch {
		case err != nil:
			errs.add("NUMBER_TYPE_COERCE", "Value \""+truncate(v, 32)+"\" is not int.", "limit")
		case n < 1:
			errs.add("NUMBER_TYPE_MIN", "int value should be greater than or equal to 1.", "limit")
		case n > 100:
			errs.add("NUMBER_TYPE_MAX", "int value should be less than or equal to 100.", "limit")
		default:
			hq.limit = n
		}
	}
	for _, p := range []struct {
		name string
		dst  *Snowflake
	}{{"before", &hq.before}, {"after", &hq.after}, {"around", &hq.around}} {
		v := q.Get(p.name)
		if v == "" {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			errs.add("NUMBER_TYPE_COERCE", "Value \""+truncate(v, 32)+"\" is not snowflake.", p.name)
			continue
		}
		*p.dst = Snowflake(n)
	}
	if len(errs) > 0 {
		c.invalidForm(errs)
		return
	}
	c.json(http.StatusOK, c.rs.msgs.list(ch.id, c.bot.ID, hq))
}

// GET /channels/{channel.id}/messages/{message.id}
func handleGetMessage(c *reqCtx) {
	ch, ok := c.textChannel()
	if !ok {
		return
	}
	m, ok := c.rs.msgs.get(ch.id, c.id("message.id"), c.bot.ID)
	if !ok {
		c.unknownMessage()
		return
	}
	c.json(http.StatusOK, m)
}

// applyEdit changes a stored message according to an edit body.
func applyEdit(m *Message, req *messageRequest, now time.Time) {
	if req.has["content"] {
		m.Content = ""
		if req.Content != nil {
			m.Content = *req.Content
		}
	}
	if req.has["embeds"] {
		m.Embeds = req.Embeds
		if m.Embeds == nil {
			m.Embeds = []json.RawMessage{}
		}
		compactRaws(m.Embeds)
	}
	if req.has["components"] {
		m.Components = req.Components
		if m.Components == nil {
			m.Components = []json.RawMessage{}
		}
		compactRaws(m.Components)
	}
	if req.has["flags"] && req.Flags != nil {
		m.Flags = *req.Flags
	}
	t := now.UTC()
	m.EditedTimestamp = &t
}

// PATCH /channels/{channel.id}/messages/{message.id}
func handleEditMessage(c *reqCtx) {
	ch, ok := c.textChannel()
	if !ok {
		return
	}
	req, ok := c.readMessageRequest(false)
	if !ok {
		return
	}
	mid := c.id("message.id")
	notAuthor := false
	m, ok := c.rs.msgs.update(ch.id, mid, c.bot.ID, func(sm *storedMessage) bool {
		if sm.msg.Author.ID != c.bot.ID {
			notAuthor = true
			return false
		}
		applyEdit(&sm.msg, req, c.rs.now())
		return true
	})
	if notAuthor {
		c.fail(http.StatusForbidden, 50005, "Cannot edit a message authored by another user")
		return
	}
	if !ok {
		c.unknownMessage()
		return
	}
	c.rs.emit(ch.guildID, "MESSAGE_UPDATE", messageEvent{Message: m, GuildID: optID(ch.guildID)})
	c.json(http.StatusOK, m)
}

// messageDeleteEvent is MESSAGE_DELETE's payload.
type messageDeleteEvent struct {
	ID        Snowflake  `json:"id"`
	ChannelID Snowflake  `json:"channel_id"`
	GuildID   *Snowflake `json:"guild_id,omitempty"`
}

// DELETE /channels/{channel.id}/messages/{message.id}
func handleDeleteMessage(c *reqCtx) {
	ch, ok := c.textChannel()
	if !ok {
		return
	}
	mid := c.id("message.id")
	if _, ok := c.rs.msgs.get(ch.id, mid, 0); !ok {
		c.unknownMessage()
		return
	}
	// Deleting a message older than two weeks has its own, slower limit.
	if c.rs.now().Sub(mid.Time()) > bulkDeleteMaxAge && !c.sublimit("delete-old-message") {
		return
	}
	if len(c.rs.msgs.remove(ch.id, mid)) == 0 {
		c.unknownMessage()
		return
	}
	c.rs.emit(ch.guildID, "MESSAGE_DELETE", messageDeleteEvent{ID: mid, ChannelID: ch.id, GuildID: optID(ch.guildID)})
	c.noContent()
}

// bulkDeleteEvent is MESSAGE_DELETE_BULK's payload.
type bulkDeleteEvent struct {
	IDs       []Snowflake `json:"ids"`
	ChannelID Snowflake   `json:"channel_id"`
	GuildID   *Snowflake  `json:"guild_id,omitempty"`
}

// POST /channels/{channel.id}/messages/bulk-delete
func handleBulkDelete(c *reqCtx) {
	ch, ok := c.textChannel()
	if !ok {
		return
	}
	var body struct {
		Messages []Snowflake `json:"messages"`
	}
	if !c.decodeJSONBody(&body) {
		return
	}
	errs := formErrors{}
	switch {
	case body.Messages == nil:
		errs.add("BASE_TYPE_REQUIRED", "This field is required", "messages")
	case len(body.Messages) < 2:
		errs.add("BASE_TYPE_MIN_LENGTH", "Must be 2 or more in length.", "messages")
	case len(body.Messages) > 100:
		errs.add("BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.", "messages")
	}
	if len(errs) > 0 {
		c.invalidForm(errs)
		return
	}
	now := c.rs.now()
	for _, id := range body.Messages {
		if now.Sub(id.Time()) > bulkDeleteMaxAge {
			c.fail(http.StatusBadRequest, 50034, "You can only bulk delete messages that are under 14 days old.")
			return
		}
	}
	// Unknown ids count towards the 2..100 but are otherwise ignored.
	gone := c.rs.msgs.remove(ch.id, body.Messages...)
	if len(gone) > 0 {
		c.rs.emit(ch.guildID, "MESSAGE_DELETE_BULK", bulkDeleteEvent{IDs: gone, ChannelID: ch.id, GuildID: optID(ch.guildID)})
	}
	c.noContent()
}

// parseEmoji decodes the emoji path segment: a unicode emoji, or name:id for
// a custom one (name may be empty, as Discord allows ":id").
func parseEmoji(s string) (emojiKey, bool) {
	if s == "" || strings.HasPrefix(s, "\x00") || !utf8.ValidString(s) || len(s) > 100 {
		return emojiKey{}, false
	}
	if name, id, ok := strings.Cut(s, ":"); ok {
		n, err := strconv.ParseUint(id, 10, 64)
		if err != nil || n == 0 {
			return emojiKey{}, false
		}
		return emojiKey{id: Snowflake(n), name: name}, true
	}
	// A unicode emoji has at least one symbol outside ASCII; plain words are
	// not emojis.
	for _, r := range s {
		if r > unicode.MaxASCII {
			return emojiKey{name: s}, true
		}
	}
	return emojiKey{}, false
}

// reactionEmoji resolves the request's emoji, answering 10014 when it is not
// a usable emoji (a custom emoji must exist in the channel's guild).
func (c *reqCtx) reactionEmoji(ch chanInfo) (emojiKey, bool) {
	k, ok := parseEmoji(c.str("emoji.id"))
	if ok && k.id != 0 {
		w := c.rs.s.world
		w.mu.RLock()
		g := w.guilds[ch.guildID]
		if g == nil {
			ok = false
		} else if e, found := g.Emojis[k.id]; found {
			k.name = e.Name
		} else {
			ok = false
		}
		w.mu.RUnlock()
	}
	if !ok {
		c.unknownEmoji()
	}
	return k, ok
}

// reactionEvent is the payload of MESSAGE_REACTION_ADD/REMOVE.
type reactionEvent struct {
	UserID          Snowflake     `json:"user_id"`
	ChannelID       Snowflake     `json:"channel_id"`
	MessageID       Snowflake     `json:"message_id"`
	GuildID         *Snowflake    `json:"guild_id,omitempty"`
	Member          *Member       `json:"member,omitempty"`
	Emoji           ReactionEmoji `json:"emoji"`
	MessageAuthorID *Snowflake    `json:"message_author_id,omitempty"`
	Burst           bool          `json:"burst"`
	Type            int           `json:"type"`
}

// PUT /channels/{channel.id}/messages/{message.id}/reactions/{emoji.id}/@me
func handleAddReaction(c *reqCtx) {
	ch, ok := c.textChannel()
	if !ok {
		return
	}
	k, ok := c.reactionEmoji(ch)
	if !ok {
		return
	}
	mid := c.id("message.id")
	added := false
	var author Snowflake
	tooMany := false
	_, ok = c.rs.msgs.update(ch.id, mid, c.bot.ID, func(sm *storedMessage) bool {
		author = sm.msg.Author.ID
		for _, r := range sm.reactions {
			if r.emoji.same(k) {
				if !slices.Contains(r.users, c.bot.ID) {
					r.users = append(r.users, c.bot.ID)
					added = true
				}
				return true
			}
		}
		if len(sm.reactions) >= 20 {
			tooMany = true
			return false
		}
		sm.reactions = append(sm.reactions, &storedReaction{emoji: k, users: []Snowflake{c.bot.ID}})
		added = true
		return true
	})
	if tooMany {
		c.fail(http.StatusBadRequest, 30010, "Maximum number of reactions reached (20)")
		return
	}
	if !ok {
		c.unknownMessage()
		return
	}
	if added {
		c.rs.emit(ch.guildID, "MESSAGE_REACTION_ADD", reactionEvent{UserID: c.bot.ID, ChannelID: ch.id, MessageID: mid,
			GuildID: optID(ch.guildID), Member: c.rs.botMember(ch.guildID, c.bot.ID), Emoji: k.view(), MessageAuthorID: optID(author)})
	}
	c.noContent()
}

// DELETE /channels/{channel.id}/messages/{message.id}/reactions/{emoji.id}/@me
// DELETE /channels/{channel.id}/messages/{message.id}/reactions/{emoji.id}/{user.id}
func handleRemoveReaction(c *reqCtx) {
	ch, ok := c.textChannel()
	if !ok {
		return
	}
	k, ok := c.reactionEmoji(ch)
	if !ok {
		return
	}
	uid := c.bot.ID
	if c.str("user.id") != "" && c.str("user.id") != "@me" {
		uid = c.id("user.id")
	}
	mid := c.id("message.id")
	removed := false
	_, ok = c.rs.msgs.update(ch.id, mid, c.bot.ID, func(sm *storedMessage) bool {
		for i, r := range sm.reactions {
			if !r.emoji.same(k) {
				continue
			}
			if j := slices.Index(r.users, uid); j >= 0 {
				r.users = slices.Delete(r.users, j, j+1)
				removed = true
			}
			if len(r.users) == 0 {
				sm.reactions = slices.Delete(sm.reactions, i, i+1)
			}
			break
		}
		return true
	})
	if !ok {
		c.unknownMessage()
		return
	}
	if removed {
		c.rs.emit(ch.guildID, "MESSAGE_REACTION_REMOVE", reactionEvent{UserID: uid, ChannelID: ch.id, MessageID: mid,
			GuildID: optID(ch.guildID), Emoji: k.view()})
	}
	c.noContent()
}

// GET /channels/{channel.id}/messages/{message.id}/reactions/{emoji.id}
func handleListReactions(c *reqCtx) {
	ch, ok := c.textChannel()
	if !ok {
		return
	}
	k, ok := c.reactionEmoji(ch)
	if !ok {
		return
	}
	limit := 25
	if v := c.r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			errs := formErrors{}
			errs.add("NUMBER_TYPE_MAX", "int value should be between 1 and 100.", "limit")
			c.invalidForm(errs)
			return
		}
		limit = n
	}
	var after uint64
	if v := c.r.URL.Query().Get("after"); v != "" {
		after, _ = strconv.ParseUint(v, 10, 64)
	}
	var ids []Snowflake
	_, ok = c.rs.msgs.update(ch.id, c.id("message.id"), c.bot.ID, func(sm *storedMessage) bool {
		for _, r := range sm.reactions {
			if r.emoji.same(k) {
				ids = slices.Clone(r.users)
			}
		}
		return true
	})
	if !ok {
		c.unknownMessage()
		return
	}
	slices.Sort(ids)
	users := []User{}
	w := c.rs.s.world
	w.mu.RLock()
	for _, id := range ids {
		if uint64(id) <= after || len(users) == limit {
			continue
		}
		if u, ok := w.users[id]; ok {
			users = append(users, *u)
		} else {
			users = append(users, User{ID: id, Discriminator: "0"})
		}
	}
	w.mu.RUnlock()
	c.json(http.StatusOK, users)
}

// DELETE /channels/{channel.id}/messages/{message.id}/reactions[/{emoji.id}]
func handleClearReactions(c *reqCtx) {
	ch, ok := c.textChannel()
	if !ok {
		return
	}
	var k emojiKey
	one := c.str("emoji.id") != ""
	if one {
		if k, ok = c.reactionEmoji(ch); !ok {
			return
		}
	}
	mid := c.id("message.id")
	_, ok = c.rs.msgs.update(ch.id, mid, c.bot.ID, func(sm *storedMessage) bool {
		if one {
			sm.reactions = slices.DeleteFunc(sm.reactions, func(r *storedReaction) bool { return r.emoji.same(k) })
		} else {
			sm.reactions = nil
		}
		return true
	})
	if !ok {
		c.unknownMessage()
		return
	}
	type clearEvent struct {
		ChannelID Snowflake      `json:"channel_id"`
		MessageID Snowflake      `json:"message_id"`
		GuildID   *Snowflake     `json:"guild_id,omitempty"`
		Emoji     *ReactionEmoji `json:"emoji,omitempty"`
	}
	if one {
		e := k.view()
		c.rs.emit(ch.guildID, "MESSAGE_REACTION_REMOVE_EMOJI", clearEvent{ChannelID: ch.id, MessageID: mid, GuildID: optID(ch.guildID), Emoji: &e})
	} else {
		c.rs.emit(ch.guildID, "MESSAGE_REACTION_REMOVE_ALL", clearEvent{ChannelID: ch.id, MessageID: mid, GuildID: optID(ch.guildID)})
	}
	c.noContent()
}

// pinsUpdateEvent is CHANNEL_PINS_UPDATE's payload.
type pinsUpdateEvent struct {
	GuildID          *Snowflake `json:"guild_id,omitempty"`
	ChannelID        Snowflake  `json:"channel_id"`
	LastPinTimestamp *time.Time `json:"last_pin_timestamp"`
}

// PUT|DELETE /channels/{channel.id}/pins/{message.id} (and the newer
// /messages/pins/{message.id} form)
func handleSetPin(pin bool) func(*reqCtx) {
	return func(c *reqCtx) {
		ch, ok := c.textChannel()
		if !ok {
			return
		}
		_, ok = c.rs.msgs.update(ch.id, c.id("message.id"), c.bot.ID, func(sm *storedMessage) bool {
			sm.msg.Pinned = pin
			return true
		})
		if !ok {
			c.unknownMessage()
			return
		}
		now := c.rs.now().UTC()
		c.rs.emit(ch.guildID, "CHANNEL_PINS_UPDATE", pinsUpdateEvent{GuildID: optID(ch.guildID), ChannelID: ch.id, LastPinTimestamp: &now})
		c.noContent()
	}
}

// GET /channels/{channel.id}/pins
func handleListPins(c *reqCtx) {
	ch, ok := c.textChannel()
	if !ok {
		return
	}
	c.json(http.StatusOK, c.rs.msgs.pinned(ch.id, c.bot.ID))
}

// GET /channels/{channel.id}/messages/pins (the paginated form)
func handleListPinsPaged(c *reqCtx) {
	ch, ok := c.textChannel()
	if !ok {
		return
	}
	type item struct {
		PinnedAt time.Time `json:"pinned_at"`
		Message  Message   `json:"message"`
	}
	msgs := c.rs.msgs.pinned(ch.id, c.bot.ID)
	out := struct {
		Items   []item `json:"items"`
		HasMore bool   `json:"has_more"`
	}{Items: []item{}}
	for _, m := range msgs {
		out.Items = append(out.Items, item{PinnedAt: m.Timestamp, Message: m})
	}
	c.json(http.StatusOK, out)
}

// POST /channels/{channel.id}/typing
func handleTyping(c *reqCtx) {
	ch, ok := c.textChannel()
	if !ok {
		return
	}
	type typingEvent struct {
		ChannelID Snowflake  `json:"channel_id"`
		GuildID   *Snowflake `json:"guild_id,omitempty"`
		UserID    Snowflake  `json:"user_id"`
		Timestamp int64      `json:"timestamp"`
		Member    *Member    `json:"member,omitempty"`
	}
	c.rs.emit(ch.guildID, "TYPING_START", typingEvent{ChannelID: ch.id, GuildID: optID(ch.guildID), UserID: c.bot.ID,
		Timestamp: c.rs.now().Unix(), Member: c.rs.botMember(ch.guildID, c.bot.ID)})
	c.noContent()
}
