package discordsim

import (
	"encoding/json"
	"slices"
	"sync"
	"time"
)

// Message is a message as Discord's REST API returns it.
type Message struct {
	ID               Snowflake         `json:"id"`
	ChannelID        Snowflake         `json:"channel_id"`
	Author           User              `json:"author"`
	Content          string            `json:"content"`
	Timestamp        time.Time         `json:"timestamp"`
	EditedTimestamp  *time.Time        `json:"edited_timestamp"`
	TTS              bool              `json:"tts"`
	MentionEveryone  bool              `json:"mention_everyone"`
	Mentions         []User            `json:"mentions"`
	MentionRoles     []Snowflake       `json:"mention_roles"`
	Attachments      []Attachment      `json:"attachments"`
	Embeds           []json.RawMessage `json:"embeds"`
	Reactions        []Reaction        `json:"reactions,omitempty"`
	Nonce            json.RawMessage   `json:"nonce,omitempty"`
	Pinned           bool              `json:"pinned"`
	WebhookID        *Snowflake        `json:"webhook_id,omitempty"`
	Type             int               `json:"type"`
	Flags            int               `json:"flags"`
	Components       []json.RawMessage `json:"components"`
	ApplicationID    *Snowflake        `json:"application_id,omitempty"`
	MessageReference json.RawMessage   `json:"message_reference,omitempty"`
	// InteractionMetadata is set on interaction responses.
	InteractionMetadata *InteractionMetadata `json:"interaction_metadata,omitempty"`
}

// InteractionMetadata links a response message to its interaction.
type InteractionMetadata struct {
	ID   Snowflake `json:"id"`
	Type int       `json:"type"`
	User User      `json:"user"`
}

// Attachment is a file attached to a message.
type Attachment struct {
	ID          Snowflake `json:"id"`
	Filename    string    `json:"filename"`
	Description string    `json:"description,omitempty"`
	ContentType string    `json:"content_type,omitempty"`
	Size        int       `json:"size"`
	URL         string    `json:"url"`
	ProxyURL    string    `json:"proxy_url"`
}

// Reaction is one emoji's reactions on a message, as seen by one user (Me).
type Reaction struct {
	Count        int                  `json:"count"`
	CountDetails ReactionCountDetails `json:"count_details"`
	Me           bool                 `json:"me"`
	MeBurst      bool                 `json:"me_burst"`
	BurstColors  []string             `json:"burst_colors"`
	Emoji        ReactionEmoji        `json:"emoji"`
}

// ReactionCountDetails splits a reaction count into normal and super reactions.
type ReactionCountDetails struct {
	Burst  int `json:"burst"`
	Normal int `json:"normal"`
}

// ReactionEmoji is the emoji of a reaction: a unicode emoji (ID null) or a
// custom one.
type ReactionEmoji struct {
	ID   *Snowflake `json:"id"`
	Name string     `json:"name"`
}

// emojiKey identifies a reaction emoji: a unicode emoji by its text, a custom
// emoji by its id.
type emojiKey struct {
	id   Snowflake
	name string
}

func (k emojiKey) same(o emojiKey) bool {
	if k.id != 0 || o.id != 0 {
		return k.id == o.id
	}
	return k.name == o.name
}

// storedReaction is one emoji's reactors, in the order they reacted.
type storedReaction struct {
	emoji emojiKey
	users []Snowflake
}

// storedMessage is a message with its reactions kept apart: "me" in the
// reaction objects depends on who asks.
type storedMessage struct {
	msg       Message
	guildID   Snowflake
	reactions []*storedReaction
}

// channelMessages is one channel's history, ordered by id.
type channelMessages struct {
	ids  []Snowflake
	byID map[Snowflake]*storedMessage
	pins []Snowflake // most recently pinned first
}

// messageStore holds every channel's messages, sharded by channel so
// concurrent writers in different channels do not contend.
type messageStore struct {
	max    int
	shards [32]msgShard
}

type msgShard struct {
	mu    sync.RWMutex
	chans map[Snowflake]*channelMessages
}

func newMessageStore(maxPerChannel int) *messageStore {
	ms := &messageStore{max: maxPerChannel}
	for i := range ms.shards {
		ms.shards[i].chans = make(map[Snowflake]*channelMessages)
	}
	return ms
}

func (ms *messageStore) shard(ch Snowflake) *msgShard {
	return &ms.shards[(uint64(ch)>>22^uint64(ch))%uint64(len(ms.shards))]
}

// add stores m (and forgets the oldest message past the channel's bound).
func (ms *messageStore) add(m Message, guildID Snowflake) {
	sh := ms.shard(m.ChannelID)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	cm := sh.chans[m.ChannelID]
	if cm == nil {
		cm = &channelMessages{byID: make(map[Snowflake]*storedMessage)}
		sh.chans[m.ChannelID] = cm
	}
	// Ids are generated before the lock is taken, so a concurrent writer may
	// insert a slightly older id after a newer one.
	i, _ := slices.BinarySearch(cm.ids, m.ID)
	cm.ids = slices.Insert(cm.ids, i, m.ID)
	cm.byID[m.ID] = &storedMessage{msg: m, guildID: guildID}
	// Forget the oldest messages in batches (down to max once the history
	// is a quarter over), so a full channel does not shift its whole
	// history on every message.
	if len(cm.ids) > ms.max+ms.max/4 {
		drop := cm.ids[:len(cm.ids)-ms.max]
		for _, old := range drop {
			delete(cm.byID, old)
		}
		cm.pins = slices.DeleteFunc(cm.pins, func(id Snowflake) bool { _, ok := cm.byID[id]; return !ok })
		cm.ids = slices.Clone(cm.ids[len(drop):])
	}
}

// view renders a stored message for viewer (who decides "me" on reactions).
func (sm *storedMessage) view(viewer Snowflake) Message {
	m := sm.msg
	if len(sm.reactions) > 0 {
		m.Reactions = make([]Reaction, 0, len(sm.reactions))
		for _, r := range sm.reactions {
			re := Reaction{Count: len(r.users), CountDetails: ReactionCountDetails{Normal: len(r.users)},
				BurstColors: []string{}, Emoji: r.emoji.view(), Me: slices.Contains(r.users, viewer)}
			m.Reactions = append(m.Reactions, re)
		}
	}
	return m
}

func (k emojiKey) view() ReactionEmoji {
	e := ReactionEmoji{Name: k.name}
	if k.id != 0 {
		id := k.id
		e.ID = &id
	}
	return e
}

// get returns message id of channel ch as viewer sees it.
func (ms *messageStore) get(ch, id, viewer Snowflake) (Message, bool) {
	sh := ms.shard(ch)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	cm := sh.chans[ch]
	if cm == nil {
		return Message{}, false
	}
	sm := cm.byID[id]
	if sm == nil {
		return Message{}, false
	}
	return sm.view(viewer), true
}

// update applies fn to a stored message under the lock and returns the result.
func (ms *messageStore) update(ch, id, viewer Snowflake, fn func(sm *storedMessage) bool) (Message, bool) {
	sh := ms.shard(ch)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	cm := sh.chans[ch]
	if cm == nil {
		return Message{}, false
	}
	sm := cm.byID[id]
	if sm == nil || !fn(sm) {
		return Message{}, false
	}
	if sm.msg.Pinned && !slices.Contains(cm.pins, id) {
		cm.pins = slices.Insert(cm.pins, 0, id)
	} else if !sm.msg.Pinned {
		cm.pins = slices.DeleteFunc(cm.pins, func(p Snowflake) bool { return p == id })
	}
	return sm.view(viewer), true
}

// remove deletes messages of ch and returns the ids that existed.
func (ms *messageStore) remove(ch Snowflake, ids ...Snowflake) []Snowflake {
	sh := ms.shard(ch)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	cm := sh.chans[ch]
	if cm == nil {
		return nil
	}
	var gone []Snowflake
	for _, id := range ids {
		if _, ok := cm.byID[id]; !ok {
			continue
		}
		delete(cm.byID, id)
		if i, found := slices.BinarySearch(cm.ids, id); found {
			cm.ids = slices.Delete(cm.ids, i, i+1)
		}
		cm.pins = slices.DeleteFunc(cm.pins, func(p Snowflake) bool { return p == id })
		gone = append(gone, id)
	}
	return gone
}

// dropChannel forgets a deleted channel's history.
func (ms *messageStore) dropChannel(ch Snowflake) {
	sh := ms.shard(ch)
	sh.mu.Lock()
	delete(sh.chans, ch)
	sh.mu.Unlock()
}

// historyQuery is a message list request: at most one of before, after and
// around is set.
type historyQuery struct {
	before, after, around Snowflake
	limit                 int
}

// list returns messages newest first, as GET /channels/{id}/messages does.
func (ms *messageStore) list(ch, viewer Snowflake, q historyQuery) []Message {
	sh := ms.shard(ch)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	out := []Message{}
	cm := sh.chans[ch]
	if cm == nil {
		return out
	}
	ids := cm.ids
	var lo, hi int // the window ids[lo:hi], returned newest first
	switch {
	case q.around != 0:
		i, _ := slices.BinarySearch(ids, q.around)
		// The message itself (if it exists) plus limit/2 on each side.
		half := q.limit / 2
		lo = max(0, i-half)
		hi = min(len(ids), lo+q.limit)
		lo = max(0, hi-q.limit)
	case q.after != 0:
		i, found := slices.BinarySearch(ids, q.after)
		if found {
			i++
		}
		lo, hi = i, min(len(ids), i+q.limit)
	default:
		hi = len(ids)
		if q.before != 0 {
			hi, _ = slices.BinarySearch(ids, q.before)
		}
		lo = max(0, hi-q.limit)
	}
	for i := hi - 1; i >= lo; i-- {
		out = append(out, cm.byID[ids[i]].view(viewer))
	}
	return out
}

// pinned returns the pinned messages, most recently pinned first.
func (ms *messageStore) pinned(ch, viewer Snowflake) []Message {
	sh := ms.shard(ch)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	out := []Message{}
	if cm := sh.chans[ch]; cm != nil {
		for _, id := range cm.pins {
			out = append(out, cm.byID[id].view(viewer))
		}
	}
	return out
}

// Webhook is a channel webhook (type 1, incoming).
type Webhook struct {
	ID            Snowflake  `json:"id"`
	Type          int        `json:"type"`
	GuildID       Snowflake  `json:"guild_id,omitempty"`
	ChannelID     Snowflake  `json:"channel_id"`
	Name          string     `json:"name"`
	Avatar        *string    `json:"avatar"`
	Token         string     `json:"token,omitempty"`
	ApplicationID *Snowflake `json:"application_id"`
	User          *User      `json:"user,omitempty"`
}

// webhookStore holds the webhooks created through the API.
type webhookStore struct {
	mu   sync.RWMutex
	byID map[Snowflake]*Webhook
}

func newWebhookStore() *webhookStore {
	return &webhookStore{byID: make(map[Snowflake]*Webhook)}
}

func (ws *webhookStore) put(w *Webhook) {
	ws.mu.Lock()
	ws.byID[w.ID] = w
	ws.mu.Unlock()
}

func (ws *webhookStore) get(id Snowflake) (Webhook, bool) {
	ws.mu.RLock()
	defer ws.mu.RUnlock()
	w, ok := ws.byID[id]
	if !ok {
		return Webhook{}, false
	}
	return *w, true
}

func (ws *webhookStore) remove(id Snowflake) bool {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	_, ok := ws.byID[id]
	delete(ws.byID, id)
	return ok
}

func (ws *webhookStore) inChannel(ch Snowflake) []Webhook {
	ws.mu.RLock()
	defer ws.mu.RUnlock()
	out := []Webhook{}
	for _, w := range ws.byID {
		if w.ChannelID == ch {
			out = append(out, *w)
		}
	}
	slices.SortFunc(out, func(a, b Webhook) int { return cmpSnowflake(a.ID, b.ID) })
	return out
}

func cmpSnowflake(a, b Snowflake) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Interaction is an interaction as dispatched in INTERACTION_CREATE.
type Interaction struct {
	ID             Snowflake       `json:"id"`
	ApplicationID  Snowflake       `json:"application_id"`
	Type           int             `json:"type"`
	Data           json.RawMessage `json:"data,omitempty"`
	GuildID        Snowflake       `json:"guild_id,omitempty"`
	ChannelID      Snowflake       `json:"channel_id,omitempty"`
	Member         *Member         `json:"member,omitempty"`
	User           *User           `json:"user,omitempty"`
	Token          string          `json:"token"`
	Version        int             `json:"version"`
	AppPermissions string          `json:"app_permissions"`
	Locale         string          `json:"locale,omitempty"`
}

// interactionState tracks one interaction's token and responses.
type interactionState struct {
	in        Interaction
	created   time.Time
	responded bool
	// original is the @original response message, once there is one.
	original Snowflake
	// message is the message a component interaction belongs to.
	message Snowflake
}

// interactionStore holds live interactions by id and by token.
type interactionStore struct {
	mu      sync.Mutex
	byID    map[Snowflake]*interactionState
	byToken map[string]*interactionState
	// nextExpire is when expire next scans.
	nextExpire time.Time
}

func newInteractionStore() *interactionStore {
	return &interactionStore{byID: make(map[Snowflake]*interactionState), byToken: make(map[string]*interactionState)}
}

func (is *interactionStore) put(st *interactionState) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.byID[st.in.ID] = st
	is.byToken[st.in.Token] = st
}

// expire forgets interactions whose token has expired. It scans at most
// once a second, so creating many interactions stays linear.
func (is *interactionStore) expire(now time.Time, lifetime time.Duration) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if now.Before(is.nextExpire) {
		return
	}
	is.nextExpire = now.Add(time.Second)
	for id, st := range is.byID {
		if now.Sub(st.created) > lifetime {
			delete(is.byID, id)
			delete(is.byToken, st.in.Token)
		}
	}
}
