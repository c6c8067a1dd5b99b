package discordsim

import (
	"encoding/json"
	"slices"
	"strings"
	"time"
)

// Gateway intents (protocol.md §16).
const (
	IntentGuilds                 = 1 << 0
	IntentGuildMembers           = 1 << 1
	IntentGuildModeration        = 1 << 2
	IntentGuildExpressions       = 1 << 3
	IntentGuildIntegrations      = 1 << 4
	IntentGuildWebhooks          = 1 << 5
	IntentGuildInvites           = 1 << 6
	IntentGuildVoiceStates       = 1 << 7
	IntentGuildPresences         = 1 << 8
	IntentGuildMessages          = 1 << 9
	IntentGuildMessageReactions  = 1 << 10
	IntentGuildMessageTyping     = 1 << 11
	IntentDirectMessages         = 1 << 12
	IntentDirectMessageReactions = 1 << 13
	IntentDirectMessageTyping    = 1 << 14
	IntentMessageContent         = 1 << 15
	IntentGuildScheduledEvents   = 1 << 16
	IntentAutoModConfiguration   = 1 << 20
	IntentAutoModExecution       = 1 << 21
	IntentGuildMessagePolls      = 1 << 24
	IntentDirectMessagePolls     = 1 << 25

	// AllIntents is every documented intent bit.
	AllIntents = 53608447
	// privilegedIntents need to be enabled for the bot (4014 otherwise).
	privilegedIntents = IntentGuildMembers | IntentGuildPresences | IntentMessageContent
)

// guildEventIntent maps a guild dispatch to the intent that must be set to
// receive it; events not listed are sent regardless of intents.
var guildEventIntent = map[string]int64{
	"GUILD_CREATE": IntentGuilds, "GUILD_UPDATE": IntentGuilds, "GUILD_DELETE": IntentGuilds,
	"GUILD_ROLE_CREATE": IntentGuilds, "GUILD_ROLE_UPDATE": IntentGuilds, "GUILD_ROLE_DELETE": IntentGuilds,
	"CHANNEL_CREATE": IntentGuilds, "CHANNEL_UPDATE": IntentGuilds, "CHANNEL_DELETE": IntentGuilds,
	"CHANNEL_PINS_UPDATE": IntentGuilds, "THREAD_CREATE": IntentGuilds, "THREAD_UPDATE": IntentGuilds,
	"THREAD_DELETE": IntentGuilds, "THREAD_LIST_SYNC": IntentGuilds, "THREAD_MEMBER_UPDATE": IntentGuilds,
	"STAGE_INSTANCE_CREATE": IntentGuilds, "STAGE_INSTANCE_UPDATE": IntentGuilds, "STAGE_INSTANCE_DELETE": IntentGuilds,
	"GUILD_MEMBER_ADD": IntentGuildMembers, "GUILD_MEMBER_UPDATE": IntentGuildMembers, "GUILD_MEMBER_REMOVE": IntentGuildMembers,
	"GUILD_BAN_ADD": IntentGuildModeration, "GUILD_BAN_REMOVE": IntentGuildModeration, "GUILD_AUDIT_LOG_ENTRY_CREATE": IntentGuildModeration,
	"GUILD_EMOJIS_UPDATE": IntentGuildExpressions, "GUILD_STICKERS_UPDATE": IntentGuildExpressions,
	"GUILD_INTEGRATIONS_UPDATE": IntentGuildIntegrations, "INTEGRATION_CREATE": IntentGuildIntegrations,
	"INTEGRATION_UPDATE": IntentGuildIntegrations, "INTEGRATION_DELETE": IntentGuildIntegrations,
	"WEBHOOKS_UPDATE": IntentGuildWebhooks, "INVITE_CREATE": IntentGuildInvites, "INVITE_DELETE": IntentGuildInvites,
	"VOICE_STATE_UPDATE": IntentGuildVoiceStates, "VOICE_CHANNEL_EFFECT_SEND": IntentGuildVoiceStates,
	"PRESENCE_UPDATE": IntentGuildPresences,
	"MESSAGE_CREATE":  IntentGuildMessages, "MESSAGE_UPDATE": IntentGuildMessages, "MESSAGE_DELETE": IntentGuildMessages,
	"MESSAGE_DELETE_BULK": IntentGuildMessages, "MESSAGE_REACTION_ADD": IntentGuildMessageReactions,
	"MESSAGE_REACTION_REMOVE": IntentGuildMessageReactions, "MESSAGE_REACTION_REMOVE_ALL": IntentGuildMessageReactions,
	"MESSAGE_REACTION_REMOVE_EMOJI": IntentGuildMessageReactions, "TYPING_START": IntentGuildMessageTyping,
	"GUILD_SCHEDULED_EVENT_CREATE": IntentGuildScheduledEvents, "GUILD_SCHEDULED_EVENT_UPDATE": IntentGuildScheduledEvents,
	"GUILD_SCHEDULED_EVENT_DELETE": IntentGuildScheduledEvents, "GUILD_SCHEDULED_EVENT_USER_ADD": IntentGuildScheduledEvents,
	"GUILD_SCHEDULED_EVENT_USER_REMOVE": IntentGuildScheduledEvents,
	"AUTO_MODERATION_RULE_CREATE":       IntentAutoModConfiguration, "AUTO_MODERATION_RULE_UPDATE": IntentAutoModConfiguration,
	"AUTO_MODERATION_RULE_DELETE": IntentAutoModConfiguration, "AUTO_MODERATION_ACTION_EXECUTION": IntentAutoModExecution,
	"MESSAGE_POLL_VOTE_ADD": IntentGuildMessagePolls, "MESSAGE_POLL_VOTE_REMOVE": IntentGuildMessagePolls,
}

// dmEventIntent is the same for events outside guilds (guild id 0).
var dmEventIntent = map[string]int64{
	"MESSAGE_CREATE": IntentDirectMessages, "MESSAGE_UPDATE": IntentDirectMessages, "MESSAGE_DELETE": IntentDirectMessages,
	"CHANNEL_PINS_UPDATE": IntentDirectMessages, "MESSAGE_REACTION_ADD": IntentDirectMessageReactions,
	"MESSAGE_REACTION_REMOVE": IntentDirectMessageReactions, "MESSAGE_REACTION_REMOVE_ALL": IntentDirectMessageReactions,
	"MESSAGE_REACTION_REMOVE_EMOJI": IntentDirectMessageReactions, "TYPING_START": IntentDirectMessageTyping,
	"MESSAGE_POLL_VOTE_ADD": IntentDirectMessagePolls, "MESSAGE_POLL_VOTE_REMOVE": IntentDirectMessagePolls,
}

func eventIntent(guildID Snowflake, event string) int64 {
	if guildID == 0 {
		return dmEventIntent[event]
	}
	return guildEventIntent[event]
}

type identifyPayload struct {
	Token          string          `json:"token"`
	Intents        *int64          `json:"intents"`
	Shard          []int           `json:"shard"`
	LargeThreshold *int            `json:"large_threshold"`
	Compress       bool            `json:"compress"`
	Presence       json.RawMessage `json:"presence"`
	Properties     json.RawMessage `json:"properties"`
}

// identify validates an Identify in the order Discord's close codes imply and
// starts a session: READY, then one GUILD_CREATE per guild of the shard.
func (c *gwConn) identify(d json.RawMessage) {
	g := c.g
	cfg := &g.s.cfg
	var id identifyPayload
	if err := json.Unmarshal(d, &id); err != nil {
		c.closeWith(CloseDecodeError, "Error while decoding Identify payload.")
		return
	}
	bot, ok := g.s.botByToken(gatewayToken(id.Token))
	if !ok {
		c.closeWith(CloseAuthenticationFailed, "Authentication failed.")
		return
	}
	shardID, numShards := 0, 1
	if id.Shard != nil {
		if len(id.Shard) != 2 || id.Shard[1] < 1 || id.Shard[0] < 0 || id.Shard[0] >= id.Shard[1] {
			c.closeWith(CloseInvalidShard, "Invalid shard: shard must be [shard_id, num_shards] with 0 <= shard_id < num_shards.")
			return
		}
		shardID, numShards = id.Shard[0], id.Shard[1]
	}
	if id.Intents == nil || *id.Intents < 0 || *id.Intents&^AllIntents != 0 {
		c.closeWith(CloseInvalidIntents, "Invalid intent(s).")
		return
	}
	if *id.Intents&privilegedIntents&^bot.PrivilegedIntents != 0 {
		c.closeWith(CloseDisallowedIntents, "Disallowed intent(s): a privileged intent is not enabled for this bot.")
		return
	}
	large := 50
	if id.LargeThreshold != nil {
		large = *id.LargeThreshold
		if large < 50 || large > 250 {
			// Discord documents 50..250 but not the reaction to other
			// values; discordsim treats it as a bad payload (inference).
			c.closeWith(CloseUnknownOpcode, "Invalid large_threshold: must be between 50 and 250.")
			return
		}
	}
	guilds := c.g.s.shardGuilds(shardID, numShards)
	if len(guilds) > cfg.MaxGuildsPerShard {
		c.closeWith(CloseShardingRequired, "Sharding required: too many guilds on one shard.")
		return
	}

	now := time.Now()
	g.idMu.Lock()
	key := shardID % cfg.MaxConcurrency
	if last, ok := g.buckets[key]; ok && now.Sub(last) < cfg.IdentifyWindow {
		g.idMu.Unlock()
		g.stats.identifyRateLimited.Add(1)
		g.stats.invalidSessions.Add(1)
		c.sendControl([]byte(`{"op":9,"d":false,"s":null,"t":null}`))
		return
	}
	b := g.budgetLocked(bot.ID, now)
	if b.used >= cfg.SessionStartTotal {
		g.idMu.Unlock()
		g.s.revokeToken(bot)
		c.closeWith(CloseAuthenticationFailed, "Authentication failed: the session start limit was exceeded and the token was reset.")
		return
	}
	b.used++
	g.buckets[key] = now
	if len(g.idLog) >= maxIdentifyLog {
		g.idLog = append(g.idLog[:0], g.idLog[len(g.idLog)/2:]...)
	}
	g.idLog = append(g.idLog, IdentifyRecord{Shard: shardID, Shards: numShards, At: now})
	g.idMu.Unlock()
	g.stats.identifies.Add(1)
	c.payloadCompress.Store(id.Compress && c.comp == compressNone)

	sess := &session{id: newSessionID(), bot: bot, shardID: shardID, numShards: numShards,
		intents: *id.Intents, largeThreshold: large, createdAt: now, live: &g.liveSessions}
	g.s.startSession(c, sess, guilds)
}

// gatewayToken strips the "Bot " prefix some libraries (discordgo) send in
// Identify and Resume; Discord accepts the token with or without it.
func gatewayToken(tok string) string { return strings.TrimPrefix(tok, "Bot ") }

// shardGuilds lists the guilds a shard holds, in size order.
func (s *Server) shardGuilds(shardID, numShards int) []Snowflake {
	s.world.mu.RLock()
	defer s.world.mu.RUnlock()
	var out []Snowflake
	for _, gid := range s.world.guildOrder {
		if ShardFor(gid, numShards) == shardID {
			if _, ok := s.world.guilds[gid]; ok {
				out = append(out, gid)
			}
		}
	}
	return out
}

// startSession sends READY and the GUILD_CREATEs and registers the session
// for live dispatches, all while holding the world's read lock, so no
// change to the world falls between the snapshot and the live stream.
func (s *Server) startSession(c *gwConn, sess *session, guilds []Snowflake) {
	g := s.gw
	w := s.world
	w.mu.RLock()
	defer w.mu.RUnlock()
	bu, _ := w.userLocked(sess.bot.ID)
	unavailable := make([]map[string]any, 0, len(guilds))
	for _, gid := range guilds {
		unavailable = append(unavailable, map[string]any{"id": gid, "unavailable": true})
	}
	ready := mustJSON(map[string]any{
		"v":                  c.v,
		"user":               bu,
		"guilds":             unavailable,
		"session_id":         sess.id,
		"session_type":       "normal",
		"resume_gateway_url": s.ResumeGatewayURL(),
		"shard":              []int{sess.shardID, sess.numShards},
		"application":        map[string]any{"id": sess.bot.ID, "flags": 0},
		"private_channels":   []any{},
		"relationships":      []any{},
		"presences":          []any{},
		"user_settings":      map[string]any{},
		"_trace":             []string{`["discordsim",{"micros":0}]`},
	})
	creates := make([][]byte, 0, len(guilds))
	if sess.intents&IntentGuilds != 0 {
		for _, gid := range guilds {
			// A guild in an outage stays unavailable until it comes back.
			if gd := w.guilds[gid]; gd != nil && !gd.Unavailable {
				creates = append(creates, mustJSON(w.guildCreateLocked(gd, sess)))
			}
		}
	}
	g.mu.Lock()
	g.sessions[sess.id] = sess
	g.indexLocked(sess)
	g.stats.track(sess)
	sess.mu.Lock()
	sess.conn = c
	c.sess.Store(sess)
	sess.pushLocked(&s.cfg, "READY", ready)
	for _, gc := range creates {
		sess.pushLocked(&s.cfg, "GUILD_CREATE", gc)
	}
	sess.mu.Unlock()
	g.mu.Unlock()
	s.log.Debug("gateway session started", "session", sess.id, "shard", sess.shardID, "shards", sess.numShards, "guilds", len(guilds))
}

// revokeToken resets a bot's token, as Discord does when the session start
// budget is overrun: every session of the bot ends with 4004 and the old
// token fails REST and Identify from then on.
func (s *Server) revokeToken(b *Bot) {
	s.botsMu.Lock()
	s.revoked[b.Token] = true
	s.botsMu.Unlock()
	s.gw.stats.tokenResets.Add(1)
	s.log.Warn("discordsim: session start limit exceeded; bot token reset", "bot", b.ID)
	g := s.gw
	g.mu.RLock()
	var conns []*gwConn
	for c := range g.conns {
		if sess := c.sess.Load(); sess != nil && sess.bot == b {
			conns = append(conns, c)
		}
	}
	var sessions []*session
	for _, sess := range g.sessions {
		if sess.bot == b {
			sessions = append(sessions, sess)
		}
	}
	g.mu.RUnlock()
	for _, sess := range sessions {
		g.killSession(sess)
	}
	for _, c := range conns {
		c.closeWith(CloseAuthenticationFailed, "Authentication failed: token reset.")
	}
}

type resumePayload struct {
	Token     string `json:"token"`
	SessionID string `json:"session_id"`
	Seq       *int64 `json:"seq"`
}

// resume replays the dispatches after seq from the session's buffer, then
// sends RESUMED.
func (c *gwConn) resume(d json.RawMessage) {
	g := c.g
	var rp resumePayload
	if err := json.Unmarshal(d, &rp); err != nil {
		c.closeWith(CloseDecodeError, "Error while decoding Resume payload.")
		return
	}
	bot, ok := g.s.botByToken(gatewayToken(rp.Token))
	if !ok {
		c.closeWith(CloseAuthenticationFailed, "Authentication failed.")
		return
	}
	g.mu.RLock()
	sess := g.sessions[rp.SessionID]
	g.mu.RUnlock()
	invalid := func() {
		g.stats.resumeFailed.Add(1)
		g.stats.invalidSessions.Add(1)
		c.sendControl([]byte(`{"op":9,"d":false,"s":null,"t":null}`))
	}
	if sess == nil || sess.bot != bot {
		invalid()
		return
	}
	seq := int64(0)
	if rp.Seq != nil {
		seq = *rp.Seq
	}
	sess.mu.Lock()
	if sess.dead || (sess.conn == nil && !sess.detachedAt.IsZero() && time.Since(sess.detachedAt) > g.s.cfg.ResumeTimeout) {
		sess.mu.Unlock()
		invalid()
		return
	}
	if seq > sess.seq || seq < 0 {
		sess.mu.Unlock()
		c.closeWith(CloseInvalidSeq, "Invalid seq: the session never sent that sequence number.")
		return
	}
	if seq < sess.firstSeqLocked()-1 {
		sess.mu.Unlock()
		g.killSession(sess)
		invalid()
		return
	}
	old := sess.conn
	sess.conn = c
	c.sess.Store(sess)
	for i := sess.ringHead; i < len(sess.ring); i++ {
		if sess.ring[i].seq > seq {
			c.enqueue(sess.ring[i])
		}
	}
	c.sendControl([]byte(`{"t":"RESUMED","s":null,"op":0,"d":{"_trace":["[\"discordsim\",{\"micros\":0}]"]}}`))
	sess.mu.Unlock()
	if old != nil {
		old.sess.CompareAndSwap(sess, nil)
		old.closeWith(CloseUnknownError, "Session resumed on another connection.")
	}
	g.stats.resumes.Add(1)
}

// guildCreate is the GUILD_CREATE payload.
type guildCreate struct {
	ID                          Snowflake        `json:"id"`
	Name                        string           `json:"name"`
	Icon                        *string          `json:"icon"`
	Splash                      *string          `json:"splash"`
	DiscoverySplash             *string          `json:"discovery_splash"`
	OwnerID                     Snowflake        `json:"owner_id"`
	AFKChannelID                *Snowflake       `json:"afk_channel_id"`
	AFKTimeout                  int              `json:"afk_timeout"`
	VerificationLevel           int              `json:"verification_level"`
	DefaultMessageNotifications int              `json:"default_message_notifications"`
	ExplicitContentFilter       int              `json:"explicit_content_filter"`
	Roles                       []Role           `json:"roles"`
	Emojis                      []Emoji          `json:"emojis"`
	Features                    []string         `json:"features"`
	MFALevel                    int              `json:"mfa_level"`
	ApplicationID               *Snowflake       `json:"application_id"`
	SystemChannelID             *Snowflake       `json:"system_channel_id"`
	SystemChannelFlags          int              `json:"system_channel_flags"`
	RulesChannelID              *Snowflake       `json:"rules_channel_id"`
	MaxMembers                  int              `json:"max_members"`
	VanityURLCode               *string          `json:"vanity_url_code"`
	Description                 *string          `json:"description"`
	Banner                      *string          `json:"banner"`
	PremiumTier                 int              `json:"premium_tier"`
	PremiumSubscriptionCount    int              `json:"premium_subscription_count"`
	PreferredLocale             string           `json:"preferred_locale"`
	NSFWLevel                   int              `json:"nsfw_level"`
	Stickers                    []any            `json:"stickers"`
	PremiumProgressBarEnabled   bool             `json:"premium_progress_bar_enabled"`
	JoinedAt                    time.Time        `json:"joined_at"`
	Large                       bool             `json:"large"`
	Unavailable                 bool             `json:"unavailable"`
	MemberCount                 int              `json:"member_count"`
	VoiceStates                 []VoiceState     `json:"voice_states"`
	Members                     []Member         `json:"members"`
	Channels                    []Channel        `json:"channels"`
	Threads                     []Channel        `json:"threads"`
	Presences                   []presenceUpdate `json:"presences"`
	StageInstances              []any            `json:"stage_instances"`
	GuildScheduledEvents        []any            `json:"guild_scheduled_events"`
	SoundboardSounds            []any            `json:"soundboard_sounds"`
}

// presenceUpdate is a presence as sent in GUILD_CREATE and PRESENCE_UPDATE.
type presenceUpdate struct {
	User         partialUser       `json:"user"`
	GuildID      Snowflake         `json:"guild_id,omitempty"`
	Status       string            `json:"status"`
	Activities   []any             `json:"activities"`
	ClientStatus map[string]string `json:"client_status"`
}

type partialUser struct {
	ID Snowflake `json:"id"`
}

// largeMemberCutoff is the member count above which GUILD_CREATE carries
// only the bot and voice members, whatever the intents (protocol.md §14).
const largeMemberCutoff = 75_000

// guildCreateLocked builds gd's GUILD_CREATE for sess, following
// protocol.md §14 for which members and presences are included.
func (w *World) guildCreateLocked(gd *Guild, sess *session) guildCreate {
	count := w.memberCountLocked(gd)
	gc := guildCreate{
		ID: gd.ID, Name: gd.Name, Icon: gd.Icon, OwnerID: gd.OwnerID, AFKTimeout: 300, VerificationLevel: 1,
		DefaultMessageNotifications: 1, Features: slices.Clone(gd.Features), MaxMembers: 500_000,
		PreferredLocale: "en-US", Stickers: []any{}, JoinedAt: gd.JoinedAt, Large: count > sess.largeThreshold,
		Unavailable: gd.Unavailable, MemberCount: count, VoiceStates: []VoiceState{}, Members: []Member{},
		Channels: []Channel{}, Threads: []Channel{}, Presences: []presenceUpdate{}, StageInstances: []any{},
		GuildScheduledEvents: []any{}, SoundboardSounds: []any{}, Roles: []Role{}, Emojis: []Emoji{},
	}
	if gc.Features == nil {
		gc.Features = []string{}
	}
	for _, r := range gd.Roles {
		gc.Roles = append(gc.Roles, *r)
	}
	slices.SortFunc(gc.Roles, func(a, b Role) int { return compareID(a.ID, b.ID) })
	for _, e := range gd.Emojis {
		gc.Emojis = append(gc.Emojis, *e)
	}
	slices.SortFunc(gc.Emojis, func(a, b Emoji) int { return compareID(a.ID, b.ID) })
	for _, ch := range gd.Channels {
		cc := *ch
		cc.GuildID = 0 // channels in GUILD_CREATE carry no guild_id
		if ch.ThreadMetadata != nil {
			gc.Threads = append(gc.Threads, cc)
		} else {
			gc.Channels = append(gc.Channels, cc)
		}
	}
	slices.SortFunc(gc.Channels, func(a, b Channel) int { return compareID(a.ID, b.ID) })
	if len(gd.textChannels) > 0 {
		sys := gd.textChannels[0]
		gc.SystemChannelID = &sys
	}
	inVoice := map[Snowflake]bool{}
	for uid, vs := range gd.VoiceStates {
		v := *vs
		v.GuildID = 0
		gc.VoiceStates = append(gc.VoiceStates, v)
		inVoice[uid] = true
	}
	slices.SortFunc(gc.VoiceStates, func(a, b VoiceState) int { return compareID(a.UserID, b.UserID) })

	presences := sess.intents&IntentGuildPresences != 0
	addPresence := func(uid Snowflake) {
		if !presences {
			return
		}
		if st := w.statusLocked(gd, uid); st != "offline" {
			gc.Presences = append(gc.Presences, presenceUpdate{User: partialUser{uid}, Status: st,
				Activities: []any{}, ClientStatus: map[string]string{"desktop": st}})
		}
	}
	switch {
	case !presences || count > largeMemberCutoff:
		// Only the bot itself and members in voice.
		uids := []Snowflake{sess.bot.ID}
		for uid := range inVoice {
			uids = append(uids, uid)
		}
		slices.Sort(uids)
		for _, uid := range uids {
			if m, ok := w.memberLocked(gd, uid); ok {
				gc.Members = append(gc.Members, m)
				addPresence(uid)
			}
		}
	case count > sess.largeThreshold:
		w.forEachMemberLocked(gd, 0, func(m Member) bool {
			uid := m.User.ID
			if uid == sess.bot.ID || inVoice[uid] || len(m.Roles) > 0 || m.Nick != nil || w.statusLocked(gd, uid) != "offline" {
				gc.Members = append(gc.Members, m)
				addPresence(uid)
			}
			return true
		})
	default:
		w.forEachMemberLocked(gd, 0, func(m Member) bool {
			gc.Members = append(gc.Members, m)
			addPresence(m.User.ID)
			return true
		})
	}
	return gc
}

func compareID(a, b Snowflake) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
