package cache

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned by Store reads when the object is not cached.
var ErrNotFound = errors.New("not cached")

// Store keeps the cache's data as marshalled protobuf blobs, keyed by snowflake. Writes arrive
// as one Batch per event and are applied atomically: a reader sees all of an event or none of
// it. Blobs are never modified after they are handed over (callers neither keep nor mutate
// them), so a store may keep the slice it is given.
type Store interface {
	// Kind is "memory" or "redis".
	Kind() string
	// Commit applies b atomically.
	Commit(ctx context.Context, b *Batch) error

	// Guild returns the guild blob (a discordv1.Guild without members, channels, threads,
	// voice states and presences).
	Guild(ctx context.Context, guildID uint64) ([]byte, error)
	// GuildIDs returns up to limit cached guild ids greater than after, ascending.
	GuildIDs(ctx context.Context, after uint64, limit int) ([]uint64, error)
	// Member returns a member blob (a discordv1.Member without user) and the user blob, which
	// is nil when the user is not cached.
	Member(ctx context.Context, guildID, userID uint64) (MemberBlob, error)
	// Members returns up to limit members of a guild with user id greater than after,
	// ascending by user id. ErrNotFound when the guild is not cached.
	Members(ctx context.Context, guildID, after uint64, limit int) ([]MemberBlob, error)
	// MembersByID returns the cached members among userIDs, in the order given; missing ones
	// are skipped.
	MembersByID(ctx context.Context, guildID uint64, userIDs []uint64) ([]MemberBlob, error)
	// User returns a user blob.
	User(ctx context.Context, userID uint64) ([]byte, error)
	// UserGuilds returns the ids of the guilds the user is a cached member of, ascending.
	UserGuilds(ctx context.Context, userID uint64) ([]uint64, error)
	// Channel returns a channel or thread blob.
	Channel(ctx context.Context, channelID uint64) ([]byte, error)
	// GuildChannels returns the blobs of a guild's channels, and of its threads when threads
	// is set. ErrNotFound when the guild is not cached.
	GuildChannels(ctx context.Context, guildID uint64, threads bool) ([][]byte, error)
	// GuildThreadIDs returns the ids of a guild's cached threads.
	GuildThreadIDs(ctx context.Context, guildID uint64) ([]uint64, error)
	// VoiceState returns a voice state blob (without member).
	VoiceState(ctx context.Context, guildID, userID uint64) ([]byte, error)
	// VoiceStates returns the voice state blobs of a guild.
	VoiceStates(ctx context.Context, guildID uint64) ([][]byte, error)
	// Presence returns a presence blob (user holds only the id).
	Presence(ctx context.Context, guildID, userID uint64) ([]byte, error)
	// Progress returns what is known of every shard's applied events.
	Progress(ctx context.Context) ([]Progress, error)
	// Counts returns the number of cached objects of each kind and the memory used.
	Counts(ctx context.Context) (Counts, error)
	// Close releases the store's resources.
	Close() error
}

// MemberBlob is one cached member: the member blob (without user) and the user blob (nil when
// the user is not cached, for example because users are turned off).
type MemberBlob struct {
	UserID uint64
	Member []byte
	User   []byte
}

// Progress is how far the cache applied one shard's events.
type Progress struct {
	ShardID   uint32
	Sequence  uint64
	SessionID string
	AppliedAt time.Time
}

// Counts is what a store holds.
type Counts struct {
	Guilds, UnavailableGuilds, Channels, Threads, Roles, Members, Users uint64
	Emojis, Stickers, VoiceStates, Presences                            uint64
	// MemoryBytes approximates the memory the store uses.
	MemoryBytes uint64
}

type opKind uint8

const (
	// opPutGuild stores a guild blob with its role/emoji/sticker counts and availability.
	opPutGuild opKind = iota + 1
	// opDelGuild removes a guild and everything under it.
	opDelGuild
	// opClearGuild removes everything under a guild (members, channels, threads, voice
	// states, presences) but keeps the guild blob: the first half of a GUILD_CREATE replace.
	opClearGuild
	// opPutMember stores a member and links its user to the guild; with a user blob, it also
	// stores the user.
	opPutMember
	// opDelMember removes a member and unlinks its user from the guild.
	opDelMember
	// opPutUser stores a user blob, but only when the user is referenced by some guild: users
	// are kept for members only.
	opPutUser
	// opPutChannel stores a channel or thread.
	opPutChannel
	// opDelChannel removes a channel or thread.
	opDelChannel
	opPutVoice
	opDelVoice
	opPutPresence
	opDelPresence
	// opProgress records the applied event of a shard.
	opProgress
)

// op is one write of a Batch. The meaning of a, b, data, extra and n depends on kind.
type op struct {
	kind  opKind
	a, b  uint64 // guild id / user id / channel id
	data  []byte // main blob
	extra []byte // second blob (user of a member)
	str   string // session id
	flag  bool   // unavailable / thread
	n     [3]uint32
	at    time.Time
}

// Batch is the writes one event causes, committed atomically by Store.Commit.
type Batch struct {
	ops []op
}

// Len is the number of writes in b.
func (b *Batch) Len() int { return len(b.ops) }

func (b *Batch) reset() { b.ops = b.ops[:0] }

func (b *Batch) putGuild(guildID uint64, blob []byte, roles, emojis, stickers int, unavailable bool) {
	b.ops = append(b.ops, op{kind: opPutGuild, a: guildID, data: blob, flag: unavailable,
		n: [3]uint32{uint32(roles), uint32(emojis), uint32(stickers)}})
}

func (b *Batch) delGuild(guildID uint64) { b.ops = append(b.ops, op{kind: opDelGuild, a: guildID}) }

func (b *Batch) clearGuild(guildID uint64) {
	b.ops = append(b.ops, op{kind: opClearGuild, a: guildID})
}

func (b *Batch) putMember(guildID, userID uint64, member, user []byte) {
	b.ops = append(b.ops, op{kind: opPutMember, a: guildID, b: userID, data: member, extra: user})
}

func (b *Batch) delMember(guildID, userID uint64) {
	b.ops = append(b.ops, op{kind: opDelMember, a: guildID, b: userID})
}

func (b *Batch) putUser(userID uint64, user []byte) {
	b.ops = append(b.ops, op{kind: opPutUser, b: userID, data: user})
}

func (b *Batch) putChannel(guildID, channelID uint64, blob []byte, thread bool) {
	b.ops = append(b.ops, op{kind: opPutChannel, a: guildID, b: channelID, data: blob, flag: thread})
}

func (b *Batch) delChannel(guildID, channelID uint64, thread bool) {
	b.ops = append(b.ops, op{kind: opDelChannel, a: guildID, b: channelID, flag: thread})
}

func (b *Batch) putVoice(guildID, userID uint64, blob []byte) {
	b.ops = append(b.ops, op{kind: opPutVoice, a: guildID, b: userID, data: blob})
}

func (b *Batch) delVoice(guildID, userID uint64) {
	b.ops = append(b.ops, op{kind: opDelVoice, a: guildID, b: userID})
}

func (b *Batch) putPresence(guildID, userID uint64, blob []byte) {
	b.ops = append(b.ops, op{kind: opPutPresence, a: guildID, b: userID, data: blob})
}

func (b *Batch) delPresence(guildID, userID uint64) {
	b.ops = append(b.ops, op{kind: opDelPresence, a: guildID, b: userID})
}

func (b *Batch) progress(shard uint32, seq uint64, session string, at time.Time) {
	b.ops = append(b.ops, op{kind: opProgress, a: uint64(shard), b: seq, str: session, at: at})
}
