package discordsim

import (
	"net/http"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// Thread channel types.
const (
	channelGuildText          = 0
	channelGuildAnnouncement  = 5
	channelAnnouncementThread = 10
	channelPublicThread       = 11
	channelPrivateThread      = 12
)

// threadBody is the body of the thread creation routes.
type threadBody struct {
	Name                string `json:"name"`
	AutoArchiveDuration int    `json:"auto_archive_duration"`
	Type                *int   `json:"type"`
	RateLimitPerUser    int    `json:"rate_limit_per_user"`
}

func (p *threadBody) validate() formErrors {
	errs := formErrors{}
	if n := utf8.RuneCountInString(p.Name); n < 1 || n > 100 {
		errs.add("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.", "name")
	}
	if p.AutoArchiveDuration == 0 {
		p.AutoArchiveDuration = 4320
	}
	if !slices.Contains([]int{60, 1440, 4320, 10080}, p.AutoArchiveDuration) {
		errs.add("BASE_TYPE_CHOICES", "Value must be one of {60, 1440, 4320, 10080}.", "auto_archive_duration")
	}
	if p.Type != nil && *p.Type != channelPublicThread && *p.Type != channelPrivateThread && *p.Type != channelAnnouncementThread {
		errs.add("BASE_TYPE_CHOICES", "Value must be one of {10, 11, 12}.", "type")
	}
	return errs
}

// threadCreateEvent is THREAD_CREATE's payload for a new thread.
type threadCreateEvent struct {
	Channel
	NewlyCreated bool `json:"newly_created"`
}

// createThread adds a thread under parent, with id (a message id for threads
// started from a message), and dispatches THREAD_CREATE.
func (c *reqCtx) createThread(parent Snowflake, id Snowflake, typ int, p threadBody) {
	w := c.rs.s.world
	now := c.rs.now().UTC()
	var cp Channel
	status, code, msg := 0, 0, ""
	w.mu.Lock()
	pc, ok := w.channels[parent]
	switch {
	case !ok:
		status, code, msg = http.StatusNotFound, 10003, "Unknown Channel"
	case pc.Type != channelGuildText && pc.Type != channelGuildAnnouncement:
		status, code, msg = http.StatusBadRequest, 50024, "Cannot execute action on this channel type"
	default:
		if _, dup := w.channels[id]; dup {
			status, code, msg = http.StatusBadRequest, 160004, "A thread has already been created for this message"
			break
		}
		g := w.guilds[pc.GuildID]
		if g == nil {
			status, code, msg = http.StatusNotFound, 10004, "Unknown Guild"
			break
		}
		pid := pc.ID
		ch := &Channel{ID: id, Type: typ, GuildID: pc.GuildID, Name: p.Name, ParentID: &pid, OwnerID: c.bot.ID,
			RateLimitPerUser: p.RateLimitPerUser, MemberCount: 1,
			ThreadMetadata: &ThreadMetadata{AutoArchiveDuration: p.AutoArchiveDuration, ArchiveTimestamp: now}}
		g.Channels[id] = ch
		w.channels[id] = ch
		cp = copyChannel(ch)
	}
	w.mu.Unlock()
	if status != 0 {
		c.fail(status, code, msg)
		return
	}
	c.rs.emit(cp.GuildID, "THREAD_CREATE", threadCreateEvent{Channel: cp, NewlyCreated: true})
	c.json(http.StatusCreated, cp)
}

// POST /channels/{channel.id}/threads
func handleStartThread(c *reqCtx) {
	var p threadBody
	if !c.decodeJSONBody(&p) {
		return
	}
	if errs := p.validate(); len(errs) > 0 {
		c.invalidForm(errs)
		return
	}
	typ := channelPrivateThread
	if p.Type != nil {
		typ = *p.Type
	}
	c.createThread(c.id("channel.id"), c.rs.s.newID(), typ, p)
}

// POST /channels/{channel.id}/messages/{message.id}/threads
func handleStartThreadFromMessage(c *reqCtx) {
	var p threadBody
	if !c.decodeJSONBody(&p) {
		return
	}
	p.Type = nil
	if errs := p.validate(); len(errs) > 0 {
		c.invalidForm(errs)
		return
	}
	ch, mid := c.id("channel.id"), c.id("message.id")
	if _, ok := c.rs.msgs.get(ch, mid, 0); !ok {
		if _, known := c.rs.channelInfo(ch); !known {
			c.unknownChannel()
			return
		}
		c.unknownMessage()
		return
	}
	typ := channelPublicThread
	if ci, _ := c.rs.channelInfo(ch); ci.typ == channelGuildAnnouncement {
		typ = channelAnnouncementThread
	}
	// A thread started from a message has the message's id.
	c.createThread(ch, mid, typ, p)
}

// threadChannel resolves the request's channel as a thread, answering
// 10003 or 50024 when it is not one.
func (c *reqCtx) threadChannel() (Channel, bool) {
	w := c.rs.s.world
	w.mu.RLock()
	ch, ok := w.channels[c.id("channel.id")]
	var cp Channel
	if ok {
		cp = copyChannel(ch)
	}
	w.mu.RUnlock()
	switch {
	case !ok:
		c.unknownChannel()
		return cp, false
	case cp.ThreadMetadata == nil:
		c.fail(http.StatusBadRequest, 50024, "Cannot execute action on this channel type")
		return cp, false
	}
	return cp, true
}

// PUT|DELETE /channels/{channel.id}/thread-members/@me
func handleThreadMembership(join bool) func(*reqCtx) {
	return func(c *reqCtx) {
		th, ok := c.threadChannel()
		if !ok {
			return
		}
		type threadMember struct {
			ID            Snowflake `json:"id"`
			UserID        Snowflake `json:"user_id"`
			JoinTimestamp time.Time `json:"join_timestamp"`
			Flags         int       `json:"flags"`
		}
		type membersUpdate struct {
			ID               Snowflake      `json:"id"`
			GuildID          Snowflake      `json:"guild_id"`
			MemberCount      int            `json:"member_count"`
			AddedMembers     []threadMember `json:"added_members,omitempty"`
			RemovedMemberIDs []Snowflake    `json:"removed_member_ids,omitempty"`
		}
		ev := membersUpdate{ID: th.ID, GuildID: th.GuildID, MemberCount: th.MemberCount}
		if join {
			ev.AddedMembers = []threadMember{{ID: th.ID, UserID: c.bot.ID, JoinTimestamp: c.rs.now().UTC()}}
		} else {
			ev.RemovedMemberIDs = []Snowflake{c.bot.ID}
		}
		c.rs.emit(th.GuildID, "THREAD_MEMBERS_UPDATE", ev)
		c.noContent()
	}
}

// PUT /channels/{channel.id}/permissions/{overwrite.id}
func handleEditOverwrite(c *reqCtx) {
	var p struct {
		Allow *string `json:"allow"`
		Deny  *string `json:"deny"`
		Type  *int    `json:"type"`
	}
	if !c.decodeJSONBody(&p) {
		return
	}
	errs := formErrors{}
	if p.Type == nil || (*p.Type != 0 && *p.Type != 1) {
		errs.add("BASE_TYPE_CHOICES", "Value must be one of {0, 1}.", "type")
	}
	for _, f := range []struct {
		name string
		v    *string
	}{{"allow", p.Allow}, {"deny", p.Deny}} {
		if f.v != nil {
			if _, err := strconv.ParseUint(*f.v, 10, 64); err != nil {
				errs.add("NUMBER_TYPE_COERCE", "Value \""+truncate(*f.v, 32)+"\" is not int.", f.name)
			}
		}
	}
	if len(errs) > 0 {
		c.invalidForm(errs)
		return
	}
	ow := Overwrite{ID: c.id("overwrite.id"), Type: *p.Type, Allow: "0", Deny: "0"}
	if p.Allow != nil {
		ow.Allow = *p.Allow
	}
	if p.Deny != nil {
		ow.Deny = *p.Deny
	}
	c.changeOverwrites(func(list []Overwrite) []Overwrite {
		if i := slices.IndexFunc(list, func(o Overwrite) bool { return o.ID == ow.ID }); i >= 0 {
			list[i] = ow
			return list
		}
		return append(list, ow)
	})
}

// DELETE /channels/{channel.id}/permissions/{overwrite.id}
func handleDeleteOverwrite(c *reqCtx) {
	id := c.id("overwrite.id")
	c.changeOverwrites(func(list []Overwrite) []Overwrite {
		return slices.DeleteFunc(list, func(o Overwrite) bool { return o.ID == id })
	})
}

// changeOverwrites applies fn to the channel's overwrites, dispatches
// CHANNEL_UPDATE and answers 204.
func (c *reqCtx) changeOverwrites(fn func([]Overwrite) []Overwrite) {
	w := c.rs.s.world
	w.mu.Lock()
	ch, ok := w.channels[c.id("channel.id")]
	var cp Channel
	if ok {
		ch.PermissionOverwrites = fn(slices.Clone(ch.PermissionOverwrites))
		cp = copyChannel(ch)
	}
	w.mu.Unlock()
	if !ok {
		c.unknownChannel()
		return
	}
	c.rs.emit(cp.GuildID, "CHANNEL_UPDATE", cp)
	c.noContent()
}
