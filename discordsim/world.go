package discordsim

import (
	"strconv"
	"sync"
	"time"
)

// Snowflake is a Discord id. It marshals as a JSON string, as Discord sends it.
type Snowflake uint64

// DiscordEpoch is the first millisecond of 2015, the zero of snowflake timestamps.
const DiscordEpoch = 1420070400000

// MarshalJSON writes the id as a quoted decimal string.
func (s Snowflake) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 22)
	b = append(b, '"')
	b = strconv.AppendUint(b, uint64(s), 10)
	return append(b, '"'), nil
}

// UnmarshalJSON accepts a quoted decimal string or a bare number.
func (s *Snowflake) UnmarshalJSON(b []byte) error {
	str := string(b)
	if str == "null" {
		return nil
	}
	if len(str) >= 2 && str[0] == '"' && str[len(str)-1] == '"' {
		str = str[1 : len(str)-1]
	}
	v, err := strconv.ParseUint(str, 10, 64)
	if err != nil {
		return &snowflakeError{raw: string(b)}
	}
	*s = Snowflake(v)
	return nil
}

type snowflakeError struct{ raw string }

func (e *snowflakeError) Error() string { return "invalid snowflake " + e.raw }

// String returns the decimal form.
func (s Snowflake) String() string { return strconv.FormatUint(uint64(s), 10) }

// Time returns the creation time encoded in the id.
func (s Snowflake) Time() time.Time {
	return time.UnixMilli(int64(uint64(s)>>22) + DiscordEpoch).UTC()
}

// ShardFor returns the shard that receives events of this guild.
func ShardFor(guildID Snowflake, shards int) int {
	if shards <= 0 {
		return 0
	}
	return int((uint64(guildID) >> 22) % uint64(shards))
}

// User is a Discord user object.
type User struct {
	ID            Snowflake `json:"id"`
	Username      string    `json:"username"`
	Discriminator string    `json:"discriminator"`
	GlobalName    *string   `json:"global_name"`
	Avatar        *string   `json:"avatar"`
	Bot           bool      `json:"bot,omitempty"`
	PublicFlags   int       `json:"public_flags"`
}

// Role is a guild role.
type Role struct {
	ID          Snowflake `json:"id"`
	Name        string    `json:"name"`
	Color       int       `json:"color"`
	Hoist       bool      `json:"hoist"`
	Icon        *string   `json:"icon"`
	Position    int       `json:"position"`
	Permissions string    `json:"permissions"`
	Managed     bool      `json:"managed"`
	Mentionable bool      `json:"mentionable"`
	Flags       int       `json:"flags"`
}

// Overwrite is a channel permission overwrite.
type Overwrite struct {
	ID    Snowflake `json:"id"`
	Type  int       `json:"type"` // 0 role, 1 member
	Allow string    `json:"allow"`
	Deny  string    `json:"deny"`
}

// ThreadMetadata holds the thread-only fields of a channel.
type ThreadMetadata struct {
	Archived            bool      `json:"archived"`
	AutoArchiveDuration int       `json:"auto_archive_duration"`
	ArchiveTimestamp    time.Time `json:"archive_timestamp"`
	Locked              bool      `json:"locked"`
}

// Channel is a guild channel, thread or DM channel.
type Channel struct {
	ID                   Snowflake       `json:"id"`
	Type                 int             `json:"type"`
	GuildID              Snowflake       `json:"guild_id,omitempty"`
	Position             int             `json:"position,omitempty"`
	PermissionOverwrites []Overwrite     `json:"permission_overwrites,omitempty"`
	Name                 string          `json:"name,omitempty"`
	Topic                *string         `json:"topic,omitempty"`
	NSFW                 bool            `json:"nsfw,omitempty"`
	LastMessageID        *Snowflake      `json:"last_message_id,omitempty"`
	RateLimitPerUser     int             `json:"rate_limit_per_user,omitempty"`
	ParentID             *Snowflake      `json:"parent_id,omitempty"`
	OwnerID              Snowflake       `json:"owner_id,omitempty"`
	Recipients           []User          `json:"recipients,omitempty"`
	ThreadMetadata       *ThreadMetadata `json:"thread_metadata,omitempty"`
	MessageCount         int             `json:"message_count,omitempty"`
	MemberCount          int             `json:"member_count,omitempty"`
	Flags                int             `json:"flags"`
}

// Member is a guild member. GuildID is not part of Discord's member object
// in GUILD_CREATE; it is kept here for the world's bookkeeping.
type Member struct {
	User                       *User       `json:"user,omitempty"`
	Nick                       *string     `json:"nick"`
	Avatar                     *string     `json:"avatar"`
	Roles                      []Snowflake `json:"roles"`
	JoinedAt                   time.Time   `json:"joined_at"`
	PremiumSince               *time.Time  `json:"premium_since"`
	Deaf                       bool        `json:"deaf"`
	Mute                       bool        `json:"mute"`
	Flags                      int         `json:"flags"`
	Pending                    bool        `json:"pending"`
	CommunicationDisabledUntil *time.Time  `json:"communication_disabled_until"`
}

// Emoji is a custom guild emoji.
type Emoji struct {
	ID            Snowflake   `json:"id"`
	Name          string      `json:"name"`
	Roles         []Snowflake `json:"roles"`
	RequireColons bool        `json:"require_colons"`
	Managed       bool        `json:"managed"`
	Animated      bool        `json:"animated"`
	Available     bool        `json:"available"`
}

// VoiceState is a member's voice connection state.
type VoiceState struct {
	GuildID                 Snowflake  `json:"guild_id,omitempty"`
	ChannelID               *Snowflake `json:"channel_id"`
	UserID                  Snowflake  `json:"user_id"`
	SessionID               string     `json:"session_id"`
	Deaf                    bool       `json:"deaf"`
	Mute                    bool       `json:"mute"`
	SelfDeaf                bool       `json:"self_deaf"`
	SelfMute                bool       `json:"self_mute"`
	SelfVideo               bool       `json:"self_video"`
	Suppress                bool       `json:"suppress"`
	RequestToSpeakTimestamp *time.Time `json:"request_to_speak_timestamp"`
}

// Guild is a guild with everything the simulator tracks about it.
type Guild struct {
	ID          Snowflake
	Name        string
	OwnerID     Snowflake
	Icon        *string
	Features    []string
	Roles       map[Snowflake]*Role
	Emojis      map[Snowflake]*Emoji
	Channels    map[Snowflake]*Channel // text, voice, category and thread channels
	Members     map[Snowflake]*Member  // by user id
	VoiceStates map[Snowflake]*VoiceState
	// Online holds the users with a non-offline presence, with their status.
	Online map[Snowflake]string
	// Hot marks the few guilds that carry most of the generated traffic.
	Hot bool
	// Unavailable guilds are in an outage: GUILD_CREATE carries unavailable:true.
	Unavailable bool
	JoinedAt    time.Time

	// Procedural members: the users with indexes genOffset..genOffset+genCount-1
	// (mod the world's user pool) are members, derived from the seed on
	// demand, so a huge guild costs no memory. Members overrides them (the
	// bots, and anyone changed through the API); removed hides them.
	genOffset int
	genCount  int
	removed   map[Snowflake]struct{}
	// roleOrder lists the assignable (non-@everyone) roles, for procedural members.
	roleOrder []Snowflake
	// textChannels and voiceChannels are the ids the load generator picks from.
	textChannels  []Snowflake
	voiceChannels []Snowflake
	createdAt     time.Time
	// index is the guild's position in generation order (its size rank).
	index int
}

// World is the simulated Discord: the guilds, channels and users that both the
// gateway and the REST API serve. All access goes through mu.
type World struct {
	mu       sync.RWMutex
	guilds   map[Snowflake]*Guild
	channels map[Snowflake]*Channel // every channel, including threads and DMs
	users    map[Snowflake]*User
	ids      *idGen

	seed uint64
	// userPool is the number of procedural users; user k has userIDFor(k).
	userPool int
	// guildOrder lists guild ids by size rank (largest first).
	guildOrder []Snowflake
	// botUsers are the bots' user ids; every bot is in every guild.
	botUsers []Snowflake
}

// idGen makes snowflakes that increase with time, as Discord's do.
type idGen struct {
	mu   sync.Mutex
	last uint64
}

// next returns a fresh snowflake for the current time.
func (g *idGen) next(now time.Time) Snowflake {
	g.mu.Lock()
	defer g.mu.Unlock()
	id := uint64(now.UnixMilli()-DiscordEpoch) << 22
	if id <= g.last {
		id = g.last + 1
	}
	g.last = id
	return Snowflake(id)
}
