package discordjson

import (
	"encoding/json"
	"time"
)

// The structs below are the encoding/json baseline for the benchmarks: what a typical Go Discord
// library decodes into (string snowflakes, time.Time timestamps, pointers for nullable values,
// json.RawMessage for values of several types), covering the same fields as the protobuf model so
// the comparison is like for like.

type jsUser struct {
	ID                   string           `json:"id"`
	Username             string           `json:"username"`
	Discriminator        string           `json:"discriminator"`
	GlobalName           *string          `json:"global_name"`
	Avatar               *string          `json:"avatar"`
	Bot                  bool             `json:"bot"`
	System               bool             `json:"system"`
	MFAEnabled           bool             `json:"mfa_enabled"`
	Banner               *string          `json:"banner"`
	AccentColor          *int             `json:"accent_color"`
	Locale               string           `json:"locale"`
	Verified             bool             `json:"verified"`
	Email                *string          `json:"email"`
	Flags                int64            `json:"flags"`
	PremiumType          int              `json:"premium_type"`
	PublicFlags          int64            `json:"public_flags"`
	AvatarDecorationData *jsAvatarDecor   `json:"avatar_decoration_data"`
	Collectibles         *jsCollectibles  `json:"collectibles"`
	PrimaryGuild         *jsPrimaryGuild  `json:"primary_guild"`
	Member               *jsMember        `json:"member"` // in mentions
	Clan                 *jsPrimaryGuild  `json:"clan"`
	DisplayNameStyles    *json.RawMessage `json:"display_name_styles"`
}

type jsAvatarDecor struct {
	Asset     string     `json:"asset"`
	SKUID     string     `json:"sku_id"`
	ExpiresAt *time.Time `json:"expires_at"`
}

type jsCollectibles struct {
	Nameplate *struct {
		SKUID     string     `json:"sku_id"`
		Asset     string     `json:"asset"`
		Label     string     `json:"label"`
		Palette   string     `json:"palette"`
		ExpiresAt *time.Time `json:"expires_at"`
	} `json:"nameplate"`
}

type jsPrimaryGuild struct {
	IdentityGuildID *string `json:"identity_guild_id"`
	IdentityEnabled *bool   `json:"identity_enabled"`
	Tag             *string `json:"tag"`
	Badge           *string `json:"badge"`
}

type jsMember struct {
	User                       *jsUser        `json:"user"`
	Nick                       *string        `json:"nick"`
	Avatar                     *string        `json:"avatar"`
	Banner                     *string        `json:"banner"`
	Roles                      []string       `json:"roles"`
	JoinedAt                   time.Time      `json:"joined_at"`
	PremiumSince               *time.Time     `json:"premium_since"`
	Deaf                       *bool          `json:"deaf"`
	Mute                       *bool          `json:"mute"`
	Flags                      int64          `json:"flags"`
	Pending                    *bool          `json:"pending"`
	Permissions                *string        `json:"permissions"`
	CommunicationDisabledUntil *time.Time     `json:"communication_disabled_until"`
	AvatarDecorationData       *jsAvatarDecor `json:"avatar_decoration_data"`
}

type jsRole struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Color  int    `json:"color"`
	Colors *struct {
		PrimaryColor   int  `json:"primary_color"`
		SecondaryColor *int `json:"secondary_color"`
		TertiaryColor  *int `json:"tertiary_color"`
	} `json:"colors"`
	Hoist        bool    `json:"hoist"`
	Icon         *string `json:"icon"`
	UnicodeEmoji *string `json:"unicode_emoji"`
	Position     int     `json:"position"`
	Permissions  string  `json:"permissions"`
	Managed      bool    `json:"managed"`
	Mentionable  bool    `json:"mentionable"`
	Tags         *struct {
		BotID             *string          `json:"bot_id"`
		IntegrationID     *string          `json:"integration_id"`
		PremiumSubscriber *json.RawMessage `json:"premium_subscriber"`
	} `json:"tags"`
	Flags int64 `json:"flags"`
}

type jsEmoji struct {
	ID            *string  `json:"id"`
	Name          *string  `json:"name"`
	Roles         []string `json:"roles"`
	User          *jsUser  `json:"user"`
	RequireColons bool     `json:"require_colons"`
	Managed       bool     `json:"managed"`
	Animated      bool     `json:"animated"`
	Available     *bool    `json:"available"`
}

type jsOverwrite struct {
	ID    string `json:"id"`
	Type  int    `json:"type"`
	Allow string `json:"allow"`
	Deny  string `json:"deny"`
}

type jsChannel struct {
	ID                   string        `json:"id"`
	Type                 int           `json:"type"`
	GuildID              *string       `json:"guild_id"`
	Position             int           `json:"position"`
	PermissionOverwrites []jsOverwrite `json:"permission_overwrites"`
	Name                 *string       `json:"name"`
	Topic                *string       `json:"topic"`
	NSFW                 bool          `json:"nsfw"`
	LastMessageID        *string       `json:"last_message_id"`
	Bitrate              int           `json:"bitrate"`
	UserLimit            int           `json:"user_limit"`
	RateLimitPerUser     int           `json:"rate_limit_per_user"`
	ParentID             *string       `json:"parent_id"`
	LastPinTimestamp     *time.Time    `json:"last_pin_timestamp"`
	RTCRegion            *string       `json:"rtc_region"`
	VideoQualityMode     int           `json:"video_quality_mode"`
	OwnerID              *string       `json:"owner_id"`
	MessageCount         int           `json:"message_count"`
	MemberCount          int           `json:"member_count"`
	TotalMessageSent     int           `json:"total_message_sent"`
	ThreadMetadata       *struct {
		Archived            bool       `json:"archived"`
		AutoArchiveDuration int        `json:"auto_archive_duration"`
		ArchiveTimestamp    time.Time  `json:"archive_timestamp"`
		Locked              bool       `json:"locked"`
		Invitable           *bool      `json:"invitable"`
		CreateTimestamp     *time.Time `json:"create_timestamp"`
	} `json:"thread_metadata"`
	DefaultAutoArchiveDuration int      `json:"default_auto_archive_duration"`
	Permissions                *string  `json:"permissions"`
	Flags                      int64    `json:"flags"`
	AppliedTags                []string `json:"applied_tags"`
	Status                     *string  `json:"status"`
}

type jsActivity struct {
	Name       string  `json:"name"`
	Type       int     `json:"type"`
	URL        *string `json:"url"`
	CreatedAt  int64   `json:"created_at"`
	Timestamps *struct {
		Start int64 `json:"start"`
		End   int64 `json:"end"`
	} `json:"timestamps"`
	ApplicationID *string `json:"application_id"`
	Details       *string `json:"details"`
	State         *string `json:"state"`
	Emoji         *struct {
		Name     string  `json:"name"`
		ID       *string `json:"id"`
		Animated bool    `json:"animated"`
	} `json:"emoji"`
	Party *struct {
		ID   string `json:"id"`
		Size []int  `json:"size"`
	} `json:"party"`
	Assets *struct {
		LargeImage string `json:"large_image"`
		LargeText  string `json:"large_text"`
		SmallImage string `json:"small_image"`
		SmallText  string `json:"small_text"`
	} `json:"assets"`
	Flags   int64    `json:"flags"`
	Buttons []string `json:"buttons"`
}

type jsPresence struct {
	User         jsUser       `json:"user"`
	GuildID      *string      `json:"guild_id"`
	Status       string       `json:"status"`
	Activities   []jsActivity `json:"activities"`
	ClientStatus struct {
		Desktop *string `json:"desktop"`
		Mobile  *string `json:"mobile"`
		Web     *string `json:"web"`
	} `json:"client_status"`
}

type jsVoiceState struct {
	GuildID                 *string    `json:"guild_id"`
	ChannelID               *string    `json:"channel_id"`
	UserID                  string     `json:"user_id"`
	Member                  *jsMember  `json:"member"`
	SessionID               string     `json:"session_id"`
	Deaf                    bool       `json:"deaf"`
	Mute                    bool       `json:"mute"`
	SelfDeaf                bool       `json:"self_deaf"`
	SelfMute                bool       `json:"self_mute"`
	SelfStream              bool       `json:"self_stream"`
	SelfVideo               bool       `json:"self_video"`
	Suppress                bool       `json:"suppress"`
	RequestToSpeakTimestamp *time.Time `json:"request_to_speak_timestamp"`
}

type jsGuildCreate struct {
	ID                          string         `json:"id"`
	Name                        string         `json:"name"`
	Icon                        *string        `json:"icon"`
	Description                 *string        `json:"description"`
	Splash                      *string        `json:"splash"`
	DiscoverySplash             *string        `json:"discovery_splash"`
	Banner                      *string        `json:"banner"`
	OwnerID                     string         `json:"owner_id"`
	AFKChannelID                *string        `json:"afk_channel_id"`
	AFKTimeout                  int            `json:"afk_timeout"`
	WidgetEnabled               bool           `json:"widget_enabled"`
	WidgetChannelID             *string        `json:"widget_channel_id"`
	VerificationLevel           int            `json:"verification_level"`
	DefaultMessageNotifications int            `json:"default_message_notifications"`
	ExplicitContentFilter       int            `json:"explicit_content_filter"`
	MFALevel                    int            `json:"mfa_level"`
	ApplicationID               *string        `json:"application_id"`
	SystemChannelID             *string        `json:"system_channel_id"`
	SystemChannelFlags          int64          `json:"system_channel_flags"`
	RulesChannelID              *string        `json:"rules_channel_id"`
	PublicUpdatesChannelID      *string        `json:"public_updates_channel_id"`
	SafetyAlertsChannelID       *string        `json:"safety_alerts_channel_id"`
	MaxPresences                *int           `json:"max_presences"`
	MaxMembers                  int            `json:"max_members"`
	VanityURLCode               *string        `json:"vanity_url_code"`
	PremiumTier                 int            `json:"premium_tier"`
	PremiumSubscriptionCount    int            `json:"premium_subscription_count"`
	PreferredLocale             string         `json:"preferred_locale"`
	MaxVideoChannelUsers        int            `json:"max_video_channel_users"`
	NSFWLevel                   int            `json:"nsfw_level"`
	PremiumProgressBarEnabled   bool           `json:"premium_progress_bar_enabled"`
	Features                    []string       `json:"features"`
	Roles                       []jsRole       `json:"roles"`
	Emojis                      []jsEmoji      `json:"emojis"`
	JoinedAt                    time.Time      `json:"joined_at"`
	Large                       bool           `json:"large"`
	Unavailable                 *bool          `json:"unavailable"`
	MemberCount                 int            `json:"member_count"`
	VoiceStates                 []jsVoiceState `json:"voice_states"`
	Members                     []jsMember     `json:"members"`
	Channels                    []jsChannel    `json:"channels"`
	Threads                     []jsChannel    `json:"threads"`
	Presences                   []jsPresence   `json:"presences"`
}

type jsEmbedMedia struct {
	URL         string  `json:"url"`
	ProxyURL    *string `json:"proxy_url"`
	Height      *int    `json:"height"`
	Width       *int    `json:"width"`
	ContentType *string `json:"content_type"`
	Placeholder *string `json:"placeholder"`
	Flags       int64   `json:"flags"`
}

type jsEmbed struct {
	Title       *string    `json:"title"`
	Type        string     `json:"type"`
	Description *string    `json:"description"`
	URL         *string    `json:"url"`
	Timestamp   *time.Time `json:"timestamp"`
	Color       *int       `json:"color"`
	Footer      *struct {
		Text         string  `json:"text"`
		IconURL      *string `json:"icon_url"`
		ProxyIconURL *string `json:"proxy_icon_url"`
	} `json:"footer"`
	Image     *jsEmbedMedia `json:"image"`
	Thumbnail *jsEmbedMedia `json:"thumbnail"`
	Video     *jsEmbedMedia `json:"video"`
	Provider  *struct {
		Name *string `json:"name"`
		URL  *string `json:"url"`
	} `json:"provider"`
	Author *struct {
		Name    string  `json:"name"`
		URL     *string `json:"url"`
		IconURL *string `json:"icon_url"`
	} `json:"author"`
	Fields []struct {
		Name   string `json:"name"`
		Value  string `json:"value"`
		Inline bool   `json:"inline"`
	} `json:"fields"`
}

type jsAttachment struct {
	ID           string   `json:"id"`
	Filename     string   `json:"filename"`
	Description  *string  `json:"description"`
	ContentType  *string  `json:"content_type"`
	Size         int64    `json:"size"`
	URL          string   `json:"url"`
	ProxyURL     string   `json:"proxy_url"`
	Height       *int     `json:"height"`
	Width        *int     `json:"width"`
	Ephemeral    bool     `json:"ephemeral"`
	DurationSecs *float64 `json:"duration_secs"`
	Waveform     *string  `json:"waveform"`
	Flags        int64    `json:"flags"`
}

type jsComponent struct {
	Type      int      `json:"type"`
	ID        int      `json:"id"`
	CustomID  string   `json:"custom_id"`
	Style     int      `json:"style"`
	Label     string   `json:"label"`
	Emoji     *jsEmoji `json:"emoji"`
	URL       string   `json:"url"`
	Disabled  bool     `json:"disabled"`
	MinValues *int     `json:"min_values"`
	MaxValues *int     `json:"max_values"`
	Options   []struct {
		Label       string   `json:"label"`
		Value       string   `json:"value"`
		Description *string  `json:"description"`
		Emoji       *jsEmoji `json:"emoji"`
		Default     bool     `json:"default"`
	} `json:"options"`
	Placeholder string        `json:"placeholder"`
	Components  []jsComponent `json:"components"`
}

type jsMessage struct {
	ID              string     `json:"id"`
	ChannelID       string     `json:"channel_id"`
	Author          *jsUser    `json:"author"`
	Content         string     `json:"content"`
	Timestamp       time.Time  `json:"timestamp"`
	EditedTimestamp *time.Time `json:"edited_timestamp"`
	TTS             bool       `json:"tts"`
	MentionEveryone bool       `json:"mention_everyone"`
	Mentions        []jsUser   `json:"mentions"`
	MentionRoles    []string   `json:"mention_roles"`
	MentionChannels []struct {
		ID      string `json:"id"`
		GuildID string `json:"guild_id"`
		Type    int    `json:"type"`
		Name    string `json:"name"`
	} `json:"mention_channels"`
	Attachments []jsAttachment `json:"attachments"`
	Embeds      []jsEmbed      `json:"embeds"`
	Reactions   []struct {
		Count        int `json:"count"`
		CountDetails struct {
			Burst  int `json:"burst"`
			Normal int `json:"normal"`
		} `json:"count_details"`
		Me          bool     `json:"me"`
		MeBurst     bool     `json:"me_burst"`
		Emoji       jsEmoji  `json:"emoji"`
		BurstColors []string `json:"burst_colors"`
	} `json:"reactions"`
	Nonce            json.RawMessage `json:"nonce"`
	Pinned           bool            `json:"pinned"`
	WebhookID        *string         `json:"webhook_id"`
	Type             int             `json:"type"`
	ApplicationID    *string         `json:"application_id"`
	Flags            int64           `json:"flags"`
	MessageReference *struct {
		Type      int     `json:"type"`
		MessageID *string `json:"message_id"`
		ChannelID *string `json:"channel_id"`
		GuildID   *string `json:"guild_id"`
	} `json:"message_reference"`
	ReferencedMessage *jsMessage    `json:"referenced_message"`
	Thread            *jsChannel    `json:"thread"`
	Components        []jsComponent `json:"components"`
	StickerItems      []struct {
		ID         string `json:"id"`
		Name       string `json:"name"`
		FormatType int    `json:"format_type"`
	} `json:"sticker_items"`
	Position *int `json:"position"`
}

type jsMessageCreate struct {
	jsMessage
	GuildID     *string   `json:"guild_id"`
	Member      *jsMember `json:"member"`
	ChannelType *int      `json:"channel_type"`
}
