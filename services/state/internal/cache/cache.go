// Package cache builds the state service's Discord cache from gateway events and keeps it in a
// Store (memory or Redis). Apply turns one event into one atomic Batch of writes; the readers in
// read.go turn stored blobs back into discordv1 messages.
//
// Data model: a guild blob (with roles, emojis and stickers), members per guild (without their
// user), users once (linked to the guilds that reference them and dropped when none does),
// channels and threads by id, voice states and presences per guild. Every blob is a marshalled
// discordv1 message, which is both compact and what the gRPC API returns.
package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	discordv1 "github.com/kubecord/kubecord/gen/kubecord/discord/v1"
)

// Resources says which resource types the cache keeps. Guilds are always kept: everything
// else hangs off them.
type Resources struct {
	Channels, Threads, Roles, Members, Users, Emojis, Stickers, VoiceStates, Presences bool
	// MessageAuthors refreshes members and users from MESSAGE_CREATE authors.
	MessageAuthors bool
}

// AllResources turns every resource type on.
func AllResources() Resources {
	return Resources{Channels: true, Threads: true, Roles: true, Members: true, Users: true,
		Emojis: true, Stickers: true, VoiceStates: true, Presences: true, MessageAuthors: true}
}

// Cache applies events to a Store. Apply calls are serialized (each reads what it replaces
// before writing); reads go to the Store directly and may run concurrently.
type Cache struct {
	store  Store
	res    Resources
	logger *slog.Logger
	now    func() time.Time

	mu    sync.Mutex // serializes Apply
	batch Batch

	applied atomic.Uint64

	nmu    sync.Mutex
	notify chan struct{} // closed and replaced after every applied event
}

// New returns a Cache writing to store.
func New(store Store, res Resources, logger *slog.Logger) *Cache {
	return &Cache{store: store, res: res, logger: logger, now: time.Now, notify: make(chan struct{})}
}

// Store returns the cache's store.
func (c *Cache) Store() Store { return c.store }

// Resources returns the resource types the cache keeps.
func (c *Cache) Resources() Resources { return c.res }

// Applied is the number of events applied since New.
func (c *Cache) Applied() uint64 { return c.applied.Load() }

// Changed returns a channel that is closed after the next event is applied.
func (c *Cache) Changed() <-chan struct{} {
	c.nmu.Lock()
	defer c.nmu.Unlock()
	return c.notify
}

func (c *Cache) signal() {
	c.nmu.Lock()
	close(c.notify)
	c.notify = make(chan struct{})
	c.nmu.Unlock()
}

// Apply applies one gateway event. Events without a typed payload that the cache cares about
// only advance the shard's progress. Apply fills in guild ids Discord leaves out of nested
// objects (channels, voice states and presences of a GUILD_CREATE), so ev may be modified.
func (c *Cache) Apply(ctx context.Context, ev *discordv1.Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := &c.batch
	b.reset()
	if err := c.build(ctx, b, ev); err != nil {
		return fmt.Errorf("applying %s (shard %d, sequence %d): %w", ev.GetName(), ev.GetShardId(), ev.GetSequence(), err)
	}
	if ev.GetSequence() > 0 {
		b.progress(ev.GetShardId(), ev.GetSequence(), ev.GetSessionId(), c.now())
	}
	if b.Len() > 0 {
		if err := c.store.Commit(ctx, b); err != nil {
			return fmt.Errorf("storing %s (shard %d, sequence %d): %w", ev.GetName(), ev.GetShardId(), ev.GetSequence(), err)
		}
	}
	// The batch's blobs now belong to the store; drop our references so the next event's
	// batch does not pin them.
	clear(b.ops)
	c.applied.Add(1)
	c.signal()
	return nil
}

func (c *Cache) build(ctx context.Context, b *Batch, ev *discordv1.Event) error {
	raw := ev.GetRaw()
	switch p := ev.GetPayload().(type) {
	case *discordv1.Event_Ready:
		return c.ready(ctx, b, ev, p.Ready)
	case *discordv1.Event_GuildCreate:
		return c.guildCreate(ctx, b, p.GuildCreate.GetGuild())
	case *discordv1.Event_GuildUpdate:
		return c.guildUpdate(ctx, b, p.GuildUpdate.GetGuild(), raw)
	case *discordv1.Event_GuildDelete:
		g := p.GuildDelete.GetGuild()
		if g.GetUnavailable() {
			return c.markUnavailable(ctx, b, g.GetId())
		}
		b.delGuild(g.GetId())
	case *discordv1.Event_GuildRoleCreate:
		return c.upsertRole(ctx, b, p.GuildRoleCreate.GetGuildId(), p.GuildRoleCreate.GetRole())
	case *discordv1.Event_GuildRoleUpdate:
		return c.upsertRole(ctx, b, p.GuildRoleUpdate.GetGuildId(), p.GuildRoleUpdate.GetRole())
	case *discordv1.Event_GuildRoleDelete:
		return c.deleteRole(ctx, b, p.GuildRoleDelete.GetGuildId(), p.GuildRoleDelete.GetRoleId())
	case *discordv1.Event_GuildEmojisUpdate:
		if !c.res.Emojis {
			return nil
		}
		return c.editGuild(ctx, b, p.GuildEmojisUpdate.GetGuildId(), func(g *discordv1.Guild) {
			g.Emojis = p.GuildEmojisUpdate.GetEmojis()
		})
	case *discordv1.Event_GuildStickersUpdate:
		if !c.res.Stickers {
			return nil
		}
		return c.editGuild(ctx, b, p.GuildStickersUpdate.GetGuildId(), func(g *discordv1.Guild) {
			g.Stickers = p.GuildStickersUpdate.GetStickers()
		})
	case *discordv1.Event_GuildMemberAdd:
		return c.memberAdd(ctx, b, p.GuildMemberAdd.GetGuildId(), p.GuildMemberAdd.GetMember())
	case *discordv1.Event_GuildMemberUpdate:
		return c.memberUpdate(ctx, b, p.GuildMemberUpdate.GetGuildId(), p.GuildMemberUpdate.GetMember(), raw)
	case *discordv1.Event_GuildMemberRemove:
		return c.memberRemove(ctx, b, p.GuildMemberRemove.GetGuildId(), p.GuildMemberRemove.GetUser().GetId())
	case *discordv1.Event_GuildMembersChunk:
		ch := p.GuildMembersChunk
		for _, m := range ch.GetMembers() {
			c.putMember(b, ch.GetGuildId(), m)
		}
		for _, pr := range ch.GetPresences() {
			c.putPresence(b, ch.GetGuildId(), pr)
		}
	case *discordv1.Event_ChannelCreate:
		return c.putChannel(ctx, b, p.ChannelCreate.GetChannel(), nil)
	case *discordv1.Event_ChannelUpdate:
		return c.putChannel(ctx, b, p.ChannelUpdate.GetChannel(), raw)
	case *discordv1.Event_ChannelDelete:
		return c.deleteChannel(ctx, b, p.ChannelDelete.GetChannel())
	case *discordv1.Event_ThreadCreate:
		return c.putChannel(ctx, b, p.ThreadCreate.GetThread(), nil)
	case *discordv1.Event_ThreadUpdate:
		return c.putChannel(ctx, b, p.ThreadUpdate.GetThread(), raw)
	case *discordv1.Event_ThreadDelete:
		t := p.ThreadDelete.GetThread()
		b.delChannel(t.GetGuildId(), t.GetId(), true)
	case *discordv1.Event_ThreadListSync:
		return c.threadListSync(ctx, b, p.ThreadListSync)
	case *discordv1.Event_ThreadMemberUpdate:
		m := p.ThreadMemberUpdate.GetMember()
		return c.editChannel(ctx, b, m.GetId(), func(t *discordv1.Channel) {
			t.Member = proto.CloneOf(m)
			t.Member.Member = nil // members are kept per guild
		})
	case *discordv1.Event_ThreadMembersUpdate:
		u := p.ThreadMembersUpdate
		return c.editChannel(ctx, b, u.GetId(), func(t *discordv1.Channel) { t.MemberCount = u.GetMemberCount() })
	case *discordv1.Event_ChannelPinsUpdate:
		u := p.ChannelPinsUpdate
		return c.editChannel(ctx, b, u.GetChannelId(), func(ch *discordv1.Channel) { ch.LastPinTimestamp = u.GetLastPinTimestamp() })
	case *discordv1.Event_UserUpdate:
		return c.userUpdate(ctx, b, p.UserUpdate.GetUser(), raw)
	case *discordv1.Event_VoiceStateUpdate:
		return c.voiceStateUpdate(ctx, b, p.VoiceStateUpdate.GetVoiceState())
	case *discordv1.Event_PresenceUpdate:
		return c.presenceUpdate(ctx, b, p.PresenceUpdate.GetPresence())
	case *discordv1.Event_MessageCreate:
		return c.messageCreate(ctx, b, p.MessageCreate)
	}
	return nil
}

// shardOf is Discord's sharding formula.
func shardOf(guildID uint64, count uint32) uint32 {
	return uint32((guildID >> 22) % uint64(count))
}

func (c *Cache) ready(ctx context.Context, b *Batch, ev *discordv1.Event, r *discordv1.Ready) error {
	shard, count := ev.GetShardId(), ev.GetShardCount()
	if s := r.GetShard(); len(s) == 2 {
		shard, count = s[0], s[1]
	}
	listed := make(map[uint64]bool, len(r.GetGuilds()))
	for _, g := range r.GetGuilds() {
		listed[g.GetId()] = true
		if err := c.markUnavailable(ctx, b, g.GetId()); err != nil {
			return err
		}
	}
	if count == 0 {
		return nil
	}
	// A new session lists every guild of the shard. Cached guilds of this shard that are not
	// listed were left while the bot was away: no GUILD_DELETE will ever come for them.
	ids, err := c.store.GuildIDs(ctx, 0, math.MaxInt)
	if err != nil {
		return fmt.Errorf("listing guilds: %w", err)
	}
	for _, id := range ids {
		if !listed[id] && shardOf(id, count) == shard {
			b.delGuild(id)
		}
	}
	return nil
}

// loadGuild returns the cached guild, or nil when it is not cached.
func (c *Cache) loadGuild(ctx context.Context, id uint64) (*discordv1.Guild, error) {
	blob, err := c.store.Guild(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading guild %d: %w", id, err)
	}
	g := &discordv1.Guild{}
	if err := proto.Unmarshal(blob, g); err != nil {
		return nil, fmt.Errorf("decoding cached guild %d: %w", id, err)
	}
	return g, nil
}

func (c *Cache) putGuild(b *Batch, g *discordv1.Guild) error {
	blob, err := proto.Marshal(g)
	if err != nil {
		return fmt.Errorf("encoding guild %d: %w", g.GetId(), err)
	}
	b.putGuild(g.GetId(), blob, len(g.GetRoles()), len(g.GetEmojis()), len(g.GetStickers()), g.GetUnavailable())
	return nil
}

// markUnavailable keeps a cached guild's data but flags it unavailable (an outage, or READY
// before its GUILD_CREATE); an uncached guild becomes a bare unavailable entry.
func (c *Cache) markUnavailable(ctx context.Context, b *Batch, id uint64) error {
	g, err := c.loadGuild(ctx, id)
	if err != nil {
		return err
	}
	if g == nil {
		g = &discordv1.Guild{Id: id}
	}
	g.Unavailable = proto.Bool(true)
	return c.putGuild(b, g)
}

// editGuild applies edit to a cached guild; events for uncached guilds are ignored (the guild's
// GUILD_CREATE brings the full state).
func (c *Cache) editGuild(ctx context.Context, b *Batch, id uint64, edit func(*discordv1.Guild)) error {
	g, err := c.loadGuild(ctx, id)
	if err != nil || g == nil {
		return err
	}
	edit(g)
	return c.putGuild(b, g)
}

// guildSnapshot is the guild blob's content: the guild without the GUILD_CREATE-only
// collections (kept elsewhere or not at all) and without turned-off resources.
func (c *Cache) guildSnapshot(g *discordv1.Guild) *discordv1.Guild {
	s := &discordv1.Guild{}
	dst := s.ProtoReflect()
	// A shallow copy: the snapshot is marshalled right away and never modified.
	g.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if !snapshotDropped[string(fd.Name())] {
			dst.Set(fd, v)
		}
		return true
	})
	if !c.res.Roles {
		s.Roles = nil
	}
	if !c.res.Emojis {
		s.Emojis = nil
	}
	if !c.res.Stickers {
		s.Stickers = nil
	}
	return s
}

func (c *Cache) guildCreate(ctx context.Context, b *Batch, g *discordv1.Guild) error {
	id := g.GetId()
	if g.GetUnavailable() {
		return c.markUnavailable(ctx, b, id)
	}
	// A GUILD_CREATE is the whole guild: drop what was cached so nothing stale survives.
	b.clearGuild(id)
	snap := c.guildSnapshot(g)
	snap.Unavailable = nil
	if err := c.putGuild(b, snap); err != nil {
		return err
	}
	for _, m := range g.GetMembers() {
		c.putMember(b, id, m)
	}
	for _, ch := range g.GetChannels() {
		ch.GuildId = id
		if err := c.storeChannel(b, ch); err != nil {
			return err
		}
	}
	for _, t := range g.GetThreads() {
		t.GuildId = id
		if err := c.storeChannel(b, t); err != nil {
			return err
		}
	}
	for _, v := range g.GetVoiceStates() {
		v.GuildId = id
		c.putVoice(b, v)
	}
	for _, p := range g.GetPresences() {
		c.putPresence(b, id, p)
	}
	return nil
}

// snapshotDropped are the Guild fields the guild blob leaves out: kept under the guild
// (members, channels, threads, voice states, presences) or not cached at all.
var snapshotDropped = map[string]bool{
	"voice_states": true, "members": true, "channels": true, "threads": true, "presences": true,
	"stage_instances": true, "guild_scheduled_events": true, "soundboard_sounds": true,
}

// guildCreateOnly are the Guild fields only GUILD_CREATE carries; a GUILD_UPDATE never
// clears them.
var guildCreateOnly = map[string]bool{
	"joined_at": true, "large": true, "unavailable": true, "member_count": true,
	"voice_states": true, "members": true, "channels": true, "threads": true, "presences": true,
	"stage_instances": true, "guild_scheduled_events": true, "soundboard_sounds": true,
}

func (c *Cache) guildUpdate(ctx context.Context, b *Batch, upd *discordv1.Guild, raw []byte) error {
	old, err := c.loadGuild(ctx, upd.GetId())
	if err != nil || old == nil {
		return err
	}
	keys := presentKeysOr(raw, upd)
	for k := range guildCreateOnly {
		delete(keys, k)
	}
	mergeKeys(old, upd, keys)
	return c.putGuild(b, c.guildSnapshot(old))
}

func (c *Cache) upsertRole(ctx context.Context, b *Batch, guildID uint64, r *discordv1.Role) error {
	if !c.res.Roles || r == nil {
		return nil
	}
	return c.editGuild(ctx, b, guildID, func(g *discordv1.Guild) {
		for i, old := range g.Roles {
			if old.GetId() == r.GetId() {
				g.Roles[i] = r
				return
			}
		}
		g.Roles = append(g.Roles, r)
	})
}

func (c *Cache) deleteRole(ctx context.Context, b *Batch, guildID, roleID uint64) error {
	if !c.res.Roles {
		return nil
	}
	return c.editGuild(ctx, b, guildID, func(g *discordv1.Guild) {
		for i, old := range g.Roles {
			if old.GetId() == roleID {
				g.Roles = append(g.Roles[:i], g.Roles[i+1:]...)
				return
			}
		}
	})
}

// encodeMember returns the member blob (without user) and the user blob (nil when users are
// off or the member carries no user).
func (c *Cache) encodeMember(m *discordv1.Member) (member, user []byte, err error) {
	u := m.User
	m.User = nil
	member, err = proto.Marshal(m)
	m.User = u
	if err != nil {
		return nil, nil, err
	}
	if member == nil {
		member = []byte{} // a member with nothing but its user still exists
	}
	if c.res.Users && u.GetUsername() != "" {
		if user, err = proto.Marshal(u); err != nil {
			return nil, nil, err
		}
	}
	return member, user, nil
}

func (c *Cache) putMember(b *Batch, guildID uint64, m *discordv1.Member) {
	id := m.GetUser().GetId()
	if !c.res.Members || id == 0 {
		return
	}
	member, user, err := c.encodeMember(m)
	if err != nil {
		c.logger.Warn("member not encodable, skipped", slog.Uint64("guild_id", guildID), slog.Uint64("user_id", id), slog.Any("error", err))
		return
	}
	b.putMember(guildID, id, member, user)
}

func (c *Cache) adjustMemberCount(ctx context.Context, b *Batch, guildID uint64, delta int32) error {
	return c.editGuild(ctx, b, guildID, func(g *discordv1.Guild) {
		g.MemberCount = max(0, g.MemberCount+delta)
	})
}

// memberAdd stores a new member and counts it in member_count. A member already cached (a
// redelivered GUILD_MEMBER_ADD) is not counted twice.
func (c *Cache) memberAdd(ctx context.Context, b *Batch, guildID uint64, m *discordv1.Member) error {
	old, err := c.loadMember(ctx, guildID, m.GetUser().GetId())
	if err != nil {
		return err
	}
	if old == nil {
		if err := c.adjustMemberCount(ctx, b, guildID, 1); err != nil {
			return err
		}
	}
	c.putMember(b, guildID, m)
	return nil
}

// memberRemove drops a member and uncounts it. Without a cached member the count drops only
// in large guilds, whose member lists are partial; elsewhere it is a redelivered remove.
func (c *Cache) memberRemove(ctx context.Context, b *Batch, guildID, userID uint64) error {
	old, err := c.loadMember(ctx, guildID, userID)
	if err != nil {
		return err
	}
	if old != nil || !c.res.Members {
		if err := c.adjustMemberCount(ctx, b, guildID, -1); err != nil {
			return err
		}
	} else if err := c.editGuild(ctx, b, guildID, func(g *discordv1.Guild) {
		if g.GetLarge() {
			g.MemberCount = max(0, g.MemberCount-1)
		}
	}); err != nil {
		return err
	}
	b.delMember(guildID, userID)
	b.delPresence(guildID, userID)
	return nil
}

// loadMember returns the cached member (with user when cached), or nil.
func (c *Cache) loadMember(ctx context.Context, guildID, userID uint64) (*discordv1.Member, error) {
	mb, err := c.store.Member(ctx, guildID, userID)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading member %d of guild %d: %w", userID, guildID, err)
	}
	return decodeMember(mb)
}

func (c *Cache) memberUpdate(ctx context.Context, b *Batch, guildID uint64, upd *discordv1.Member, raw []byte) error {
	if !c.res.Members {
		return nil
	}
	old, err := c.loadMember(ctx, guildID, upd.GetUser().GetId())
	if err != nil {
		return err
	}
	if old == nil {
		c.putMember(b, guildID, upd)
		return nil
	}
	mergeKeys(old, upd, presentKeysOr(raw, upd))
	old.User = upd.GetUser()
	c.putMember(b, guildID, old)
	return nil
}

func (c *Cache) userUpdate(ctx context.Context, b *Batch, upd *discordv1.User, raw []byte) error {
	if !c.res.Users || upd.GetId() == 0 {
		return nil
	}
	blob, err := c.store.User(ctx, upd.GetId())
	if errors.Is(err, ErrNotFound) {
		return c.storeUser(b, upd)
	}
	if err != nil {
		return fmt.Errorf("reading user %d: %w", upd.GetId(), err)
	}
	old := &discordv1.User{}
	if err := proto.Unmarshal(blob, old); err != nil {
		return fmt.Errorf("decoding cached user %d: %w", upd.GetId(), err)
	}
	mergeKeys(old, upd, presentKeysOr(raw, upd))
	return c.storeUser(b, old)
}

func (c *Cache) storeUser(b *Batch, u *discordv1.User) error {
	blob, err := proto.Marshal(u)
	if err != nil {
		return fmt.Errorf("encoding user %d: %w", u.GetId(), err)
	}
	b.putUser(u.GetId(), blob)
	return nil
}

func isThread(ch *discordv1.Channel) bool {
	switch ch.GetType() {
	case 10, 11, 12: // ANNOUNCEMENT_THREAD, PUBLIC_THREAD, PRIVATE_THREAD
		return true
	}
	return false
}

func (c *Cache) channelEnabled(ch *discordv1.Channel) bool {
	if isThread(ch) {
		return c.res.Threads
	}
	return c.res.Channels
}

func (c *Cache) storeChannel(b *Batch, ch *discordv1.Channel) error {
	if !c.channelEnabled(ch) || ch.GetId() == 0 {
		return nil
	}
	blob, err := proto.Marshal(ch)
	if err != nil {
		return fmt.Errorf("encoding channel %d: %w", ch.GetId(), err)
	}
	b.putChannel(ch.GetGuildId(), ch.GetId(), blob, isThread(ch))
	return nil
}

// putChannel stores a created channel (raw nil) or merges an update into the cached one.
func (c *Cache) putChannel(ctx context.Context, b *Batch, ch *discordv1.Channel, raw []byte) error {
	if !c.channelEnabled(ch) {
		return nil
	}
	if raw != nil {
		blob, err := c.store.Channel(ctx, ch.GetId())
		switch {
		case err == nil:
			old := &discordv1.Channel{}
			if err := proto.Unmarshal(blob, old); err != nil {
				return fmt.Errorf("decoding cached channel %d: %w", ch.GetId(), err)
			}
			mergeKeys(old, ch, presentKeysOr(raw, ch))
			ch = old
		case !errors.Is(err, ErrNotFound):
			return fmt.Errorf("reading channel %d: %w", ch.GetId(), err)
		}
	}
	return c.storeChannel(b, ch)
}

// editChannel applies edit to a cached channel or thread; uncached ones are left alone.
func (c *Cache) editChannel(ctx context.Context, b *Batch, id uint64, edit func(*discordv1.Channel)) error {
	blob, err := c.store.Channel(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading channel %d: %w", id, err)
	}
	ch := &discordv1.Channel{}
	if err := proto.Unmarshal(blob, ch); err != nil {
		return fmt.Errorf("decoding cached channel %d: %w", id, err)
	}
	edit(ch)
	return c.storeChannel(b, ch)
}

func (c *Cache) deleteChannel(ctx context.Context, b *Batch, ch *discordv1.Channel) error {
	b.delChannel(ch.GetGuildId(), ch.GetId(), isThread(ch))
	if ch.GetGuildId() == 0 {
		return nil
	}
	// Threads go with their parent; Discord sends no THREAD_DELETE for them.
	return c.dropThreads(ctx, b, ch.GetGuildId(), func(t *discordv1.Channel) bool {
		return t.GetParentId() == ch.GetId()
	})
}

func (c *Cache) dropThreads(ctx context.Context, b *Batch, guildID uint64, match func(*discordv1.Channel) bool) error {
	ids, err := c.store.GuildThreadIDs(ctx, guildID)
	if err != nil {
		return fmt.Errorf("listing threads of guild %d: %w", guildID, err)
	}
	for _, id := range ids {
		blob, err := c.store.Channel(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("reading thread %d: %w", id, err)
		}
		t := &discordv1.Channel{}
		if err := proto.Unmarshal(blob, t); err != nil {
			return fmt.Errorf("decoding cached thread %d: %w", id, err)
		}
		if match(t) {
			b.delChannel(guildID, id, true)
		}
	}
	return nil
}

func (c *Cache) threadListSync(ctx context.Context, b *Batch, s *discordv1.ThreadListSync) error {
	if !c.res.Threads {
		return nil
	}
	// The sync lists every active thread of the given parents (all parents when none are
	// given): cached threads of those parents that it leaves out are no longer active.
	parents := make(map[uint64]bool, len(s.GetChannelIds()))
	for _, id := range s.GetChannelIds() {
		parents[id] = true
	}
	if err := c.dropThreads(ctx, b, s.GetGuildId(), func(t *discordv1.Channel) bool {
		return len(parents) == 0 || parents[t.GetParentId()]
	}); err != nil {
		return err
	}
	members := make(map[uint64]*discordv1.ThreadMember, len(s.GetMembers()))
	for _, m := range s.GetMembers() {
		members[m.GetId()] = m
	}
	for _, t := range s.GetThreads() {
		t.GuildId = s.GetGuildId()
		if m := members[t.GetId()]; m != nil {
			t.Member = m
		}
		if err := c.storeChannel(b, t); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cache) putVoice(b *Batch, v *discordv1.VoiceState) {
	if !c.res.VoiceStates || v.GetUserId() == 0 {
		return
	}
	m := v.Member
	v.Member = nil
	blob, err := proto.Marshal(v)
	v.Member = m
	if err != nil {
		return
	}
	b.putVoice(v.GetGuildId(), v.GetUserId(), blob)
}

func (c *Cache) voiceStateUpdate(ctx context.Context, b *Batch, v *discordv1.VoiceState) error {
	if v.GetGuildId() == 0 {
		return nil // DM calls are not cached
	}
	if m := v.GetMember(); m != nil {
		if err := c.refreshMember(ctx, b, v.GetGuildId(), m); err != nil {
			return err
		}
	}
	if v.GetChannelId() == 0 {
		b.delVoice(v.GetGuildId(), v.GetUserId())
		return nil
	}
	c.putVoice(b, v)
	return nil
}

// refreshMember stores a member seen in a voice state or message, keeping the cached deaf
// and mute when the partial member leaves them out.
func (c *Cache) refreshMember(ctx context.Context, b *Batch, guildID uint64, m *discordv1.Member) error {
	if !c.res.Members || m.GetUser().GetId() == 0 {
		return nil
	}
	if m.Deaf == nil || m.Mute == nil || m.JoinedAt == nil {
		old, err := c.loadMember(ctx, guildID, m.GetUser().GetId())
		if err != nil {
			return err
		}
		if old != nil {
			if m.Deaf == nil {
				m.Deaf = old.Deaf
			}
			if m.Mute == nil {
				m.Mute = old.Mute
			}
			if m.JoinedAt == nil {
				m.JoinedAt = old.JoinedAt
			}
		}
	}
	c.putMember(b, guildID, m)
	return nil
}

func (c *Cache) putPresence(b *Batch, guildID uint64, p *discordv1.Presence) {
	if !c.res.Presences {
		return
	}
	u := p.GetUser()
	if u.GetId() == 0 {
		return
	}
	if p.GetStatus() == "offline" {
		b.delPresence(guildID, u.GetId())
		return
	}
	if c.res.Users && u.GetUsername() != "" {
		if blob, err := proto.Marshal(u); err == nil {
			b.putUser(u.GetId(), blob)
		}
	}
	// The user lives in the users table; the presence keeps only its id.
	p.User = &discordv1.User{Id: u.GetId()}
	p.GuildId = guildID
	blob, err := proto.Marshal(p)
	p.User = u
	if err != nil {
		return
	}
	b.putPresence(guildID, u.GetId(), blob)
}

func (c *Cache) presenceUpdate(ctx context.Context, b *Batch, p *discordv1.Presence) error {
	if p.GetGuildId() == 0 {
		return nil
	}
	u := p.GetUser()
	if c.res.Users && u.GetUsername() != "" {
		// The presence's user is partial: merge what it carries into the cached user.
		if err := c.userUpdate(ctx, b, u, nil); err != nil {
			return err
		}
		p.User = &discordv1.User{Id: u.GetId()}
		defer func() { p.User = u }()
	}
	c.putPresence(b, p.GetGuildId(), p)
	return nil
}

func (c *Cache) messageCreate(ctx context.Context, b *Batch, mc *discordv1.MessageCreate) error {
	if !c.res.MessageAuthors {
		return nil
	}
	msg := mc.GetMessage()
	author := msg.GetAuthor()
	if mc.GetGuildId() == 0 || msg.GetWebhookId() != 0 || author.GetId() == 0 || mc.GetMember() == nil {
		return nil // webhook authors are not members
	}
	m := proto.CloneOf(mc.GetMember())
	m.User = author
	return c.refreshMember(ctx, b, mc.GetGuildId(), m)
}
