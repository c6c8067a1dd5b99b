package discordsim

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"
)

type presencePayload struct {
	Since      *int64          `json:"since"`
	Activities json.RawMessage `json:"activities"`
	Status     string          `json:"status"`
	AFK        bool            `json:"afk"`
}

// presenceUpdate (op 3) sets the bot's status in every guild of the shard
// and dispatches PRESENCE_UPDATE there, as Discord echoes it to sessions
// with GUILD_PRESENCES.
func (c *gwConn) presenceUpdate(sess *session, d json.RawMessage) {
	var p presencePayload
	if err := json.Unmarshal(d, &p); err != nil {
		c.closeWith(CloseDecodeError, "Error while decoding Presence Update payload.")
		return
	}
	switch p.Status {
	case "online", "idle", "dnd", "invisible", "offline":
	default:
		c.closeWith(CloseUnknownOpcode, "Invalid presence status "+strconv.Quote(p.Status)+".")
		return
	}
	var activities []any
	if len(p.Activities) > 0 && string(p.Activities) != "null" {
		if err := json.Unmarshal(p.Activities, &activities); err != nil {
			c.closeWith(CloseDecodeError, "Error while decoding presence activities.")
			return
		}
	}
	if activities == nil {
		activities = []any{}
	}
	shown := p.Status
	if shown == "invisible" {
		shown = "offline"
	}
	s := c.g.s
	guilds := s.shardGuilds(sess.shardID, sess.numShards)
	s.world.mu.Lock()
	for _, gid := range guilds {
		if gd := s.world.guilds[gid]; gd != nil {
			gd.Online[sess.bot.ID] = shown
		}
	}
	s.world.mu.Unlock()
	for _, gid := range guilds {
		s.dispatch(gid, "PRESENCE_UPDATE", presenceUpdate{User: partialUser{sess.bot.ID}, GuildID: gid, Status: shown,
			Activities: activities, ClientStatus: map[string]string{"web": shown}})
	}
}

type voicePayload struct {
	GuildID   Snowflake  `json:"guild_id"`
	ChannelID *Snowflake `json:"channel_id"`
	SelfMute  bool       `json:"self_mute"`
	SelfDeaf  bool       `json:"self_deaf"`
}

// voiceStateUpdate (op 4) moves the bot into or out of a voice channel and
// dispatches VOICE_STATE_UPDATE, plus VOICE_SERVER_UPDATE on a join.
func (c *gwConn) voiceStateUpdate(sess *session, d json.RawMessage) {
	var p voicePayload
	if err := json.Unmarshal(d, &p); err != nil {
		c.closeWith(CloseDecodeError, "Error while decoding Voice State Update payload.")
		return
	}
	s := c.g.s
	if ShardFor(p.GuildID, sess.numShards) != sess.shardID {
		c.closeWith(CloseUnknownOpcode, "Voice State Update for a guild on another shard.")
		return
	}
	s.world.mu.Lock()
	gd := s.world.guilds[p.GuildID]
	if gd == nil {
		s.world.mu.Unlock()
		c.closeWith(CloseUnknownOpcode, "Voice State Update for an unknown guild.")
		return
	}
	if p.ChannelID != nil {
		if ch := gd.Channels[*p.ChannelID]; ch == nil || (ch.Type != 2 && ch.Type != 13) {
			s.world.mu.Unlock()
			c.closeWith(CloseUnknownOpcode, "Voice State Update for a channel that is not a voice channel of that guild.")
			return
		}
	}
	vs := VoiceState{GuildID: p.GuildID, ChannelID: p.ChannelID, UserID: sess.bot.ID, SessionID: sess.id,
		SelfMute: p.SelfMute, SelfDeaf: p.SelfDeaf}
	if p.ChannelID == nil {
		delete(gd.VoiceStates, sess.bot.ID)
	} else {
		cp := vs
		gd.VoiceStates[sess.bot.ID] = &cp
	}
	member, _ := s.world.memberLocked(gd, sess.bot.ID)
	s.world.mu.Unlock()
	s.dispatch(p.GuildID, "VOICE_STATE_UPDATE", struct {
		VoiceState
		Member Member `json:"member"`
	}{vs, member})
	if p.ChannelID != nil {
		tok := strconv.FormatUint(uint64(s.newID()), 16)
		sess.mu.Lock()
		if !sess.dead {
			sess.pushLocked(&s.cfg, "VOICE_SERVER_UPDATE", mustJSON(map[string]any{
				"token": tok, "guild_id": p.GuildID, "endpoint": "voice.discordsim.invalid:443"}))
		}
		sess.mu.Unlock()
	}
}

type memberRequest struct {
	GuildID   Snowflake       `json:"guild_id"`
	Query     *string         `json:"query"`
	Limit     *int            `json:"limit"`
	Presences bool            `json:"presences"`
	UserIDs   json.RawMessage `json:"user_ids"`
	Nonce     string          `json:"nonce"`
}

// memberChunkSize is Discord's GUILD_MEMBERS_CHUNK size.
const memberChunkSize = 1000

// requestMembers (op 8) answers with GUILD_MEMBERS_CHUNK dispatches
// (protocol.md §15), or RATE_LIMITED for a too frequent full-list request.
func (c *gwConn) requestMembers(sess *session, d json.RawMessage) {
	var p memberRequest
	if err := json.Unmarshal(d, &p); err != nil {
		c.closeWith(CloseDecodeError, "Error while decoding Request Guild Members payload.")
		return
	}
	s := c.g.s
	if ShardFor(p.GuildID, sess.numShards) != sess.shardID {
		c.closeWith(CloseUnknownOpcode, "Request Guild Members for a guild on another shard.")
		return
	}
	if len(p.Nonce) > 32 {
		p.Nonce = "" // Discord silently drops an invalid nonce
	}
	if p.Presences && sess.intents&IntentGuildPresences == 0 {
		c.closeWith(CloseDisallowedIntents, "Requesting presences needs the GUILD_PRESENCES intent.")
		return
	}
	var userIDs []json.RawMessage
	if len(p.UserIDs) > 0 && string(p.UserIDs) != "null" {
		if p.UserIDs[0] == '[' {
			if err := json.Unmarshal(p.UserIDs, &userIDs); err != nil {
				c.closeWith(CloseDecodeError, "Error while decoding user_ids.")
				return
			}
		} else {
			userIDs = []json.RawMessage{p.UserIDs}
		}
	}
	if userIDs == nil && p.Query == nil {
		c.closeWith(CloseUnknownOpcode, "Request Guild Members needs query or user_ids.")
		return
	}
	limit := 0
	if p.Limit != nil {
		limit = *p.Limit
	}
	full := userIDs == nil && *p.Query == "" && limit == 0
	if userIDs == nil && *p.Query == "" && sess.intents&IntentGuildMembers == 0 {
		c.closeWith(CloseDisallowedIntents, "Requesting the member list needs the GUILD_MEMBERS intent.")
		return
	}
	if full {
		now := time.Now()
		key := [2]Snowflake{sess.bot.ID, p.GuildID}
		c.g.idMu.Lock()
		last, seen := c.g.memberReq[key]
		if seen && now.Sub(last) < s.cfg.MemberRequestInterval {
			c.g.idMu.Unlock()
			retry := (s.cfg.MemberRequestInterval - now.Sub(last)).Seconds()
			meta := map[string]any{"guild_id": p.GuildID}
			if p.Nonce != "" {
				meta["nonce"] = p.Nonce
			}
			c.g.stats.memberRequestsLimited.Add(1)
			sess.mu.Lock()
			sess.pushLocked(&s.cfg, "RATE_LIMITED", mustJSON(map[string]any{"opcode": opRequestMembers, "retry_after": retry, "meta": meta}))
			sess.mu.Unlock()
			return
		}
		c.g.memberReq[key] = now
		c.g.idMu.Unlock()
	}

	w := s.world
	w.mu.RLock()
	gd := w.guilds[p.GuildID]
	if gd == nil {
		w.mu.RUnlock()
		c.closeWith(CloseUnknownOpcode, "Request Guild Members for an unknown guild.")
		return
	}
	var members []Member
	var notFound []json.RawMessage
	switch {
	case userIDs != nil:
		for i, raw := range userIDs {
			if i >= 100 {
				break
			}
			var id Snowflake
			if err := id.UnmarshalJSON(raw); err != nil {
				notFound = append(notFound, raw)
				continue
			}
			if m, ok := w.memberLocked(gd, id); ok {
				members = append(members, m)
			} else {
				notFound = append(notFound, notFoundID(id))
			}
		}
	case *p.Query == "":
		w.forEachMemberLocked(gd, 0, func(m Member) bool {
			members = append(members, m)
			return limit == 0 || len(members) < limit
		})
	default:
		if limit <= 0 || limit > 100 {
			limit = 100
		}
		q := strings.ToLower(*p.Query)
		w.forEachMemberLocked(gd, 0, func(m Member) bool {
			if strings.HasPrefix(strings.ToLower(m.User.Username), q) || (m.Nick != nil && strings.HasPrefix(strings.ToLower(*m.Nick), q)) {
				members = append(members, m)
			}
			return len(members) < limit
		})
	}
	var statuses []string
	if p.Presences {
		statuses = make([]string, len(members))
		for i, m := range members {
			statuses[i] = w.statusLocked(gd, m.User.ID)
		}
	}
	w.mu.RUnlock()

	chunks := max(1, (len(members)+memberChunkSize-1)/memberChunkSize)
	frames := make([][]byte, 0, chunks)
	for i := range chunks {
		part := members[min(i*memberChunkSize, len(members)):min((i+1)*memberChunkSize, len(members))]
		body := map[string]any{"guild_id": p.GuildID, "members": slices.Clip(part), "chunk_index": i, "chunk_count": chunks}
		if part == nil {
			body["members"] = []Member{}
		}
		if p.Nonce != "" {
			body["nonce"] = p.Nonce
		}
		if i == chunks-1 && notFound != nil {
			body["not_found"] = notFound
		}
		if p.Presences {
			ps := []presenceUpdate{}
			for j, m := range part {
				if st := statuses[i*memberChunkSize+j]; st != "offline" {
					ps = append(ps, presenceUpdate{User: partialUser{m.User.ID}, Status: st, Activities: []any{}, ClientStatus: map[string]string{"desktop": st}})
				}
			}
			body["presences"] = ps
		}
		frames = append(frames, mustJSON(body))
	}
	c.g.stats.memberRequests.Add(1)
	sess.mu.Lock()
	for _, f := range frames {
		sess.pushLocked(&s.cfg, "GUILD_MEMBERS_CHUNK", f)
	}
	sess.mu.Unlock()
}

// notFoundID echoes an unknown id as Discord does: a string for a
// snowflake-sized id, a JSON number for a short one (protocol.md §0).
func notFoundID(id Snowflake) json.RawMessage {
	if id < 1<<32 {
		return json.RawMessage(id.String())
	}
	return json.RawMessage(strconv.Quote(id.String()))
}
