package cache

import (
	"context"
	"slices"
	"sync"
)

// Memory is the in-process Store: maps keyed by snowflake holding marshalled protobuf blobs,
// guarded by one RWMutex (an event's batch is applied under the write lock, so readers see
// whole events). Members and users, the bulk of a cache, live in arenas (see arena) and are
// referenced by 4-byte refs.
type Memory struct {
	mu        sync.RWMutex
	guilds    map[uint64]*memGuild
	channels  map[uint64]memChannel
	users     map[uint64]memUser
	progress  map[uint32]Progress
	counts    Counts
	blobBytes int64 // blobs outside the arenas
	memberA   arena
	userA     arena
	channelA  arena
	touched   []uint64 // users whose links changed in the current commit; reused
}

type memGuild struct {
	blob        []byte
	n           [3]uint32 // roles, emojis, stickers
	unavailable bool
	members     map[uint64]uint64 // user id -> ref in memberA
	channels    map[uint64]bool   // id -> is thread
	voice       map[uint64][]byte
	presences   map[uint64][]byte
}

type memChannel struct {
	guildID uint64
	ref     uint64 // in channelA
}

// memUser is a user in 8 bytes: its blob's ref in userA (high 40 bits, 0 until a blob
// arrives) and how many cached guilds have it as member (low 24 bits); at 0 it is dropped.
type memUser uint64

const memUserCountBits = 24

func (u memUser) ref() uint64  { return uint64(u) >> memUserCountBits }
func (u memUser) refs() uint64 { return uint64(u) & (1<<memUserCountBits - 1) }
func mkUser(ref, refs uint64) memUser {
	return memUser(ref<<memUserCountBits | min(refs, 1<<memUserCountBits-1))
}

// Per-entry overheads used to approximate memory: Go map slots (key, value, control byte, load
// factor) and, for maps of slices, the allocation rounding of the blob. Measured against
// runtime.MemStats in BenchmarkFootprint (estimate-%: within about 10%); they only feed
// GetStats.memory_bytes.
const (
	memRefEntryOverhead  = 36
	memBlobEntryOverhead = 64
	memGuildOverhead     = 400
)

var _ Store = (*Memory)(nil)

// NewMemory returns an empty memory store.
func NewMemory() *Memory {
	return &Memory{
		guilds:   make(map[uint64]*memGuild),
		channels: make(map[uint64]memChannel),
		users:    make(map[uint64]memUser),
		progress: make(map[uint32]Progress),
	}
}

// Kind implements Store.
func (m *Memory) Kind() string { return "memory" }

// Close implements Store.
func (m *Memory) Close() error { return nil }

// Commit implements Store.
func (m *Memory) Commit(_ context.Context, b *Batch) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.touched = m.touched[:0]
	for i := range b.ops {
		m.apply(&b.ops[i])
	}
	// Users whose last guild went away in this event are dropped now, not op by op, so a
	// GUILD_CREATE that clears and re-adds a member keeps the user.
	for _, id := range m.touched {
		if u, ok := m.users[id]; ok && u.refs() == 0 {
			delete(m.users, id)
			if u.ref() != 0 {
				m.userA.free(u.ref())
				m.counts.Users--
			}
		}
	}
	m.compact()
	return nil
}

// compact copies live members and users into fresh arenas when most of an arena is garbage.
func (m *Memory) compact() {
	if m.memberA.wasteful() {
		var fresh arena
		for _, g := range m.guilds {
			for uid, ref := range g.members {
				g.members[uid] = fresh.put(m.memberA.get(ref))
			}
		}
		m.memberA = fresh
	}
	if m.userA.wasteful() {
		var fresh arena
		for uid, u := range m.users {
			if u.ref() != 0 {
				m.users[uid] = mkUser(fresh.put(m.userA.get(u.ref())), u.refs())
			}
		}
		m.userA = fresh
	}
	if m.channelA.wasteful() {
		var fresh arena
		for id, c := range m.channels {
			c.ref = fresh.put(m.channelA.get(c.ref))
			m.channels[id] = c
		}
		m.channelA = fresh
	}
}

func (m *Memory) guild(id uint64) *memGuild {
	g := m.guilds[id]
	if g == nil {
		g = &memGuild{}
		m.guilds[id] = g
	}
	return g
}

func (m *Memory) apply(o *op) {
	switch o.kind {
	case opPutGuild:
		g, existed := m.guilds[o.a]
		if !existed {
			g = m.guild(o.a)
			m.counts.Guilds++
		} else {
			m.subGuildCounts(g)
		}
		m.blobBytes += int64(len(o.data) - len(g.blob))
		g.blob, g.n, g.unavailable = o.data, o.n, o.flag
		m.addGuildCounts(g)
	case opDelGuild:
		g, ok := m.guilds[o.a]
		if !ok {
			return
		}
		m.clearGuild(g)
		m.subGuildCounts(g)
		m.blobBytes -= int64(len(g.blob))
		m.counts.Guilds--
		delete(m.guilds, o.a)
	case opClearGuild:
		if g, ok := m.guilds[o.a]; ok {
			m.clearGuild(g)
		}
	case opPutMember:
		g := m.guilds[o.a]
		if g == nil {
			return // members only exist under a cached guild
		}
		if g.members == nil {
			g.members = make(map[uint64]uint64)
		}
		old, ok := g.members[o.b]
		if ok {
			m.memberA.free(old)
		} else {
			m.counts.Members++
			m.link(o.b)
		}
		g.members[o.b] = m.memberA.put(o.data)
		if o.extra != nil {
			m.putUser(o.b, o.extra)
		}
	case opDelMember:
		g := m.guilds[o.a]
		if g == nil {
			return
		}
		if old, ok := g.members[o.b]; ok {
			m.memberA.free(old)
			delete(g.members, o.b)
			m.counts.Members--
			m.unlink(o.b)
		}
	case opPutUser:
		m.putUser(o.b, o.data)
		m.touched = append(m.touched, o.b)
	case opPutChannel:
		var g *memGuild
		if o.a != 0 {
			if g = m.guilds[o.a]; g == nil {
				return // channels only exist under a cached guild (or as DMs, guild 0)
			}
		}
		if old, ok := m.channels[o.b]; ok {
			m.channelA.free(old.ref)
		} else {
			if o.flag {
				m.counts.Threads++
			} else {
				m.counts.Channels++
			}
		}
		m.channels[o.b] = memChannel{guildID: o.a, ref: m.channelA.put(o.data)}
		if g != nil {
			if g.channels == nil {
				g.channels = make(map[uint64]bool)
			}
			g.channels[o.b] = o.flag
		}
	case opDelChannel:
		m.delChannel(o.b)
	case opPutVoice:
		if g := m.guilds[o.a]; g != nil {
			if g.voice == nil {
				g.voice = make(map[uint64][]byte)
			}
			m.putIn(g.voice, o.b, o.data, &m.counts.VoiceStates)
		}
	case opDelVoice:
		if g := m.guilds[o.a]; g != nil {
			m.delIn(g.voice, o.b, &m.counts.VoiceStates)
		}
	case opPutPresence:
		if g := m.guilds[o.a]; g != nil {
			if g.presences == nil {
				g.presences = make(map[uint64][]byte)
			}
			m.putIn(g.presences, o.b, o.data, &m.counts.Presences)
		}
	case opDelPresence:
		if g := m.guilds[o.a]; g != nil {
			m.delIn(g.presences, o.b, &m.counts.Presences)
		}
	case opProgress:
		shard := uint32(o.a)
		p := m.progress[shard]
		if p.SessionID != o.str || o.b > p.Sequence {
			m.progress[shard] = Progress{ShardID: shard, Sequence: o.b, SessionID: o.str, AppliedAt: o.at}
		}
	}
}

func (m *Memory) putIn(mp map[uint64][]byte, id uint64, blob []byte, count *uint64) {
	old, ok := mp[id]
	if !ok {
		*count++
	}
	m.blobBytes += int64(len(blob) - len(old))
	mp[id] = blob
}

func (m *Memory) delIn(mp map[uint64][]byte, id uint64, count *uint64) {
	if old, ok := mp[id]; ok {
		m.blobBytes -= int64(len(old))
		delete(mp, id)
		*count--
	}
}

func (m *Memory) subGuildCounts(g *memGuild) {
	m.counts.Roles -= uint64(g.n[0])
	m.counts.Emojis -= uint64(g.n[1])
	m.counts.Stickers -= uint64(g.n[2])
	if g.unavailable {
		m.counts.UnavailableGuilds--
	}
}

func (m *Memory) addGuildCounts(g *memGuild) {
	m.counts.Roles += uint64(g.n[0])
	m.counts.Emojis += uint64(g.n[1])
	m.counts.Stickers += uint64(g.n[2])
	if g.unavailable {
		m.counts.UnavailableGuilds++
	}
}

func (m *Memory) clearGuild(g *memGuild) {
	for uid, ref := range g.members {
		m.memberA.free(ref)
		m.unlink(uid)
	}
	m.counts.Members -= uint64(len(g.members))
	g.members = nil
	for cid := range g.channels {
		m.delChannel(cid)
	}
	g.channels = nil
	for _, blob := range g.voice {
		m.blobBytes -= int64(len(blob))
	}
	m.counts.VoiceStates -= uint64(len(g.voice))
	g.voice = nil
	for _, blob := range g.presences {
		m.blobBytes -= int64(len(blob))
	}
	m.counts.Presences -= uint64(len(g.presences))
	g.presences = nil
}

func (m *Memory) delChannel(id uint64) {
	c, ok := m.channels[id]
	if !ok {
		return
	}
	m.channelA.free(c.ref)
	delete(m.channels, id)
	thread := false
	if g := m.guilds[c.guildID]; g != nil {
		thread = g.channels[id]
		delete(g.channels, id)
	}
	if thread {
		m.counts.Threads--
	} else {
		m.counts.Channels--
	}
}

func (m *Memory) link(userID uint64) {
	u := m.users[userID]
	m.users[userID] = mkUser(u.ref(), u.refs()+1)
}

func (m *Memory) unlink(userID uint64) {
	if u, ok := m.users[userID]; ok && u.refs() > 0 {
		m.users[userID] = mkUser(u.ref(), u.refs()-1)
	}
	m.touched = append(m.touched, userID)
}

// putUser stores a user blob if some guild references the user.
func (m *Memory) putUser(id uint64, blob []byte) {
	u, ok := m.users[id]
	if !ok || u.refs() == 0 {
		return
	}
	if u.ref() == 0 {
		m.counts.Users++
	} else {
		m.userA.free(u.ref())
	}
	m.users[id] = mkUser(m.userA.put(blob), u.refs())
}

// Guild implements Store.
func (m *Memory) Guild(_ context.Context, id uint64) ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	g := m.guilds[id]
	if g == nil || g.blob == nil {
		return nil, ErrNotFound
	}
	return g.blob, nil
}

// GuildIDs implements Store.
func (m *Memory) GuildIDs(_ context.Context, after uint64, limit int) ([]uint64, error) {
	m.mu.RLock()
	ids := make([]uint64, 0, min(len(m.guilds), 1024))
	for id, g := range m.guilds {
		if id > after && g.blob != nil {
			ids = append(ids, id)
		}
	}
	m.mu.RUnlock()
	return firstSorted(ids, limit), nil
}

func firstSorted(ids []uint64, limit int) []uint64 {
	slices.Sort(ids)
	if len(ids) > limit {
		ids = ids[:limit]
	}
	return ids
}

// Member implements Store.
func (m *Memory) Member(_ context.Context, guildID, userID uint64) (MemberBlob, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	g := m.guilds[guildID]
	if g == nil {
		return MemberBlob{}, ErrNotFound
	}
	ref, ok := g.members[userID]
	if !ok {
		return MemberBlob{}, ErrNotFound
	}
	return MemberBlob{UserID: userID, Member: m.memberA.get(ref), User: m.userBlob(userID)}, nil
}

func (m *Memory) userBlob(id uint64) []byte {
	return m.userA.get(m.users[id].ref())
}

// Members implements Store.
func (m *Memory) Members(_ context.Context, guildID, after uint64, limit int) ([]MemberBlob, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	g := m.guilds[guildID]
	if g == nil {
		return nil, ErrNotFound
	}
	ids := make([]uint64, 0, len(g.members))
	for id := range g.members {
		if id > after {
			ids = append(ids, id)
		}
	}
	ids = firstSorted(ids, limit)
	out := make([]MemberBlob, len(ids))
	for i, id := range ids {
		out[i] = MemberBlob{UserID: id, Member: m.memberA.get(g.members[id]), User: m.userBlob(id)}
	}
	return out, nil
}

// MembersByID implements Store.
func (m *Memory) MembersByID(_ context.Context, guildID uint64, userIDs []uint64) ([]MemberBlob, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	g := m.guilds[guildID]
	if g == nil {
		return nil, nil
	}
	out := make([]MemberBlob, 0, len(userIDs))
	for _, id := range userIDs {
		if ref, ok := g.members[id]; ok {
			out = append(out, MemberBlob{UserID: id, Member: m.memberA.get(ref), User: m.userBlob(id)})
		}
	}
	return out, nil
}

// User implements Store.
func (m *Memory) User(_ context.Context, id uint64) ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if b := m.userBlob(id); b != nil {
		return b, nil
	}
	return nil, ErrNotFound
}

// UserGuilds implements Store.
func (m *Memory) UserGuilds(_ context.Context, id uint64) ([]uint64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	// Users keep a count, not a list, of their guilds (most users are in one): scan the
	// guilds instead, a map lookup each.
	if m.users[id].refs() == 0 {
		return nil, nil
	}
	var out []uint64
	for gid, g := range m.guilds {
		if _, ok := g.members[id]; ok {
			out = append(out, gid)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Channel implements Store.
func (m *Memory) Channel(_ context.Context, id uint64) ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if c, ok := m.channels[id]; ok {
		return m.channelA.get(c.ref), nil
	}
	return nil, ErrNotFound
}

// GuildChannels implements Store.
func (m *Memory) GuildChannels(_ context.Context, guildID uint64, threads bool) ([][]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	g := m.guilds[guildID]
	if g == nil || g.blob == nil {
		return nil, ErrNotFound
	}
	out := make([][]byte, 0, len(g.channels))
	for id, thread := range g.channels {
		if !thread || threads {
			out = append(out, m.channelA.get(m.channels[id].ref))
		}
	}
	return out, nil
}

// GuildThreadIDs implements Store.
func (m *Memory) GuildThreadIDs(_ context.Context, guildID uint64) ([]uint64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	g := m.guilds[guildID]
	if g == nil {
		return nil, nil
	}
	var out []uint64
	for id, thread := range g.channels {
		if thread {
			out = append(out, id)
		}
	}
	return out, nil
}

// VoiceState implements Store.
func (m *Memory) VoiceState(_ context.Context, guildID, userID uint64) ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if g := m.guilds[guildID]; g != nil {
		if b, ok := g.voice[userID]; ok {
			return b, nil
		}
	}
	return nil, ErrNotFound
}

// VoiceStates implements Store.
func (m *Memory) VoiceStates(_ context.Context, guildID uint64) ([][]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	g := m.guilds[guildID]
	if g == nil || g.blob == nil {
		return nil, ErrNotFound
	}
	out := make([][]byte, 0, len(g.voice))
	for _, b := range g.voice {
		out = append(out, b)
	}
	return out, nil
}

// Presence implements Store.
func (m *Memory) Presence(_ context.Context, guildID, userID uint64) ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if g := m.guilds[guildID]; g != nil {
		if b, ok := g.presences[userID]; ok {
			return b, nil
		}
	}
	return nil, ErrNotFound
}

// Progress implements Store.
func (m *Memory) Progress(context.Context) ([]Progress, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]Progress, 0, len(m.progress))
	for _, p := range m.progress {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Progress) int { return int(a.ShardID) - int(b.ShardID) })
	return out, nil
}

// Counts implements Store.
func (m *Memory) Counts(context.Context) (Counts, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	c := m.counts
	blobEntries := c.VoiceStates + c.Presences
	c.MemoryBytes = uint64(m.blobBytes) + uint64(m.memberA.bytes()+m.userA.bytes()+m.channelA.bytes()) +
		(c.Members+uint64(len(m.users))+2*(c.Channels+c.Threads))*memRefEntryOverhead + blobEntries*memBlobEntryOverhead +
		c.Guilds*memGuildOverhead
	return c, nil
}
