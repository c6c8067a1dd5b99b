package discordsim

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"unicode/utf8"
)

// Interaction types and callback types used by the simulator.
const (
	interactionPing             = 1
	interactionApplicationCmd   = 2
	interactionMessageComponent = 3

	callbackPong                  = 1
	callbackChannelMessage        = 4
	callbackDeferredChannelMsg    = 5
	callbackDeferredUpdateMessage = 6
	callbackUpdateMessage         = 7
	callbackAutocompleteResult    = 8
	callbackModal                 = 9
	callbackLaunchActivity        = 12

	messageFlagLoading = 1 << 7
	messageTypeChatCmd = 20
)

// newToken returns a random token of the shape Discord uses for webhooks and
// interactions (URL-safe base64).
func newToken() string {
	b := make([]byte, 51)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}

// InteractionSpec describes an interaction to create with CreateInteraction.
type InteractionSpec struct {
	// BotID is the application (bot) that receives the interaction; zero
	// means the first bot.
	BotID Snowflake
	// Type is the interaction type (default 2, APPLICATION_COMMAND).
	Type      int
	GuildID   Snowflake
	ChannelID Snowflake
	// UserID is the user who triggered it (default: the guild's owner).
	UserID Snowflake
	// Data is the interaction's data object (default: a /ping command).
	Data json.RawMessage
	// MessageID is the message a component interaction belongs to.
	MessageID Snowflake
}

// CreateInteraction registers an interaction and dispatches INTERACTION_CREATE
// to the bot, as if a user had run a command. The bot then answers it through
// POST /interactions/{id}/{token}/callback within
// RESTConfig.InteractionResponseWindow.
func (s *Server) CreateInteraction(spec InteractionSpec) (Interaction, error) {
	rs := s.rest
	if rs == nil {
		return Interaction{}, errors.New("creating interaction: the simulator is not started")
	}
	var bot *Bot
	for _, b := range s.Bots() {
		if spec.BotID == 0 || b.ID == spec.BotID {
			bot = &b
			break
		}
	}
	if bot == nil {
		return Interaction{}, errors.New("creating interaction: unknown bot " + spec.BotID.String())
	}
	if spec.Type == 0 {
		spec.Type = interactionApplicationCmd
	}
	if spec.Data == nil && spec.Type == interactionApplicationCmd {
		spec.Data = json.RawMessage(`{"id":"1","name":"ping","type":1}`)
	}
	in := Interaction{ID: rs.s.newID(), ApplicationID: bot.ID, Type: spec.Type, Data: spec.Data, GuildID: spec.GuildID,
		ChannelID: spec.ChannelID, Token: newToken(), Version: 1, AppPermissions: "0", Locale: "en-US"}
	w := s.world
	w.mu.RLock()
	if spec.ChannelID != 0 {
		if _, ok := w.channels[spec.ChannelID]; !ok {
			w.mu.RUnlock()
			return Interaction{}, errors.New("creating interaction: unknown channel " + spec.ChannelID.String())
		}
	}
	if spec.GuildID != 0 {
		g, ok := w.guilds[spec.GuildID]
		if !ok {
			w.mu.RUnlock()
			return Interaction{}, errors.New("creating interaction: unknown guild " + spec.GuildID.String())
		}
		uid := spec.UserID
		if uid == 0 {
			uid = g.OwnerID
		}
		m, ok := w.memberLocked(g, uid)
		if !ok {
			w.mu.RUnlock()
			return Interaction{}, errors.New("creating interaction: user " + uid.String() + " is not a member of the guild")
		}
		m = w.memberWithUserLocked(m, uid)
		in.Member = &m
	} else {
		u, ok := w.userLocked(spec.UserID)
		if !ok {
			w.mu.RUnlock()
			return Interaction{}, errors.New("creating interaction: unknown user " + spec.UserID.String())
		}
		in.User = &u
	}
	w.mu.RUnlock()
	now := rs.now()
	rs.inters.expire(now, rs.cfg.InteractionTokenLifetime)
	rs.inters.put(&interactionState{in: in, created: now, message: spec.MessageID})
	rs.emit(spec.GuildID, "INTERACTION_CREATE", in)
	return in, nil
}

// invoker is the user of an interaction.
func (in *Interaction) invoker() User {
	if in.Member != nil && in.Member.User != nil {
		return *in.Member.User
	}
	if in.User != nil {
		return *in.User
	}
	return User{}
}

// interactionByID checks the callback route's id and token.
func (c *reqCtx) interactionByID() (*interactionState, bool) {
	is := c.rs.inters
	is.mu.Lock()
	st, ok := is.byID[c.id("interaction.id")]
	is.mu.Unlock()
	if !ok || c.rs.now().Sub(st.created) > c.rs.cfg.InteractionTokenLifetime {
		c.fail(http.StatusNotFound, 10062, "Unknown interaction")
		return nil, false
	}
	if subtle.ConstantTimeCompare([]byte(st.in.Token), []byte(c.str("interaction.token"))) != 1 {
		c.fail(http.StatusUnauthorized, 50027, "Invalid Webhook Token")
		return nil, false
	}
	return st, true
}

// interactionMessage builds a message sent on behalf of an interaction.
func (rs *restState) interactionMessage(st *interactionState, req *messageRequest, followup bool) (chanInfo, Message, *Member) {
	ch, ok := rs.channelInfo(st.in.ChannelID)
	if !ok {
		ch = chanInfo{id: st.in.ChannelID, guildID: st.in.GuildID}
	}
	b := rs.botByID(st.in.ApplicationID)
	var author User
	if b != nil {
		author = rs.botUser(b)
	}
	m := rs.newMessage(ch, author, req)
	app := st.in.ApplicationID
	m.WebhookID, m.ApplicationID = &app, &app
	if !followup {
		m.Type = messageTypeChatCmd
		m.InteractionMetadata = &InteractionMetadata{ID: st.in.ID, Type: st.in.Type, User: st.in.invoker()}
	}
	var member *Member
	if b != nil {
		member = rs.botMember(ch.guildID, b.ID)
	}
	return ch, m, member
}

// botByID returns the configured bot with id.
func (rs *restState) botByID(id Snowflake) *Bot {
	for _, b := range rs.s.Bots() {
		if b.ID == id {
			return &b
		}
	}
	return nil
}

// POST /interactions/{interaction.id}/{interaction.token}/callback
func handleInteractionCallback(c *reqCtx) {
	st, ok := c.interactionByID()
	if !ok {
		return
	}
	var body struct {
		Type int             `json:"type"`
		Data json.RawMessage `json:"data"`
	}
	if !c.decodeJSONBody(&body) {
		return
	}
	switch body.Type {
	case callbackPong, callbackChannelMessage, callbackDeferredChannelMsg, callbackDeferredUpdateMessage,
		callbackUpdateMessage, callbackAutocompleteResult, callbackModal, callbackLaunchActivity:
	default:
		errs := formErrors{}
		errs.add("BASE_TYPE_CHOICES", "Value must be one of {1, 4, 5, 6, 7, 8, 9, 12}.", "type")
		c.invalidForm(errs)
		return
	}
	if (body.Type == callbackPong) != (st.in.Type == interactionPing) ||
		((body.Type == callbackDeferredUpdateMessage || body.Type == callbackUpdateMessage) && st.in.Type != interactionMessageComponent) {
		c.fail(http.StatusBadRequest, 40043, "This interaction type does not support this response type")
		return
	}
	var req *messageRequest
	if body.Type == callbackChannelMessage || body.Type == callbackUpdateMessage {
		var rerr *requestError
		data := body.Data
		if len(data) == 0 {
			data = json.RawMessage(`{}`)
		}
		if req, rerr = decodeMessageJSON(data, true); rerr == nil {
			rerr = req.validate(body.Type == callbackChannelMessage)
		}
		if rerr != nil {
			if rerr.body.Errors != nil {
				rerr.body.Errors = formErrors{"data": map[string]any(rerr.body.Errors)}
			}
			c.json(rerr.status, rerr.body)
			return
		}
	}

	is := c.rs.inters
	is.mu.Lock()
	late := c.rs.now().Sub(st.created) > c.rs.cfg.InteractionResponseWindow
	already := st.responded
	if !late && !already {
		st.responded = true
	}
	is.mu.Unlock()
	switch {
	case already:
		c.fail(http.StatusBadRequest, 40060, "Interaction has already been acknowledged.")
		return
	case late:
		// Discord forgets an interaction that was not answered in time.
		c.fail(http.StatusNotFound, 10062, "Unknown interaction")
		return
	}

	var resMsg *Message
	switch body.Type {
	case callbackChannelMessage, callbackDeferredChannelMsg:
		if req == nil {
			req = &messageRequest{}
		}
		ch, m, member := c.rs.interactionMessage(st, req, false)
		if body.Type == callbackDeferredChannelMsg {
			m.Flags |= messageFlagLoading
		}
		if _, err := c.rs.postMessage(ch, m, member); err != nil {
			c.rs.log.Error("posting interaction response", "err", err)
			c.fail(http.StatusInternalServerError, 0, "500: Internal Server Error")
			return
		}
		is.mu.Lock()
		st.original = m.ID
		is.mu.Unlock()
		resMsg = &m
	case callbackUpdateMessage:
		if st.message != 0 {
			ch, _ := c.rs.channelInfo(st.in.ChannelID)
			if m, ok := c.rs.msgs.update(st.in.ChannelID, st.message, st.in.ApplicationID, func(sm *storedMessage) bool {
				applyEdit(&sm.msg, req, c.rs.now())
				return true
			}); ok {
				c.rs.emit(ch.guildID, "MESSAGE_UPDATE", messageEvent{Message: m, GuildID: optID(ch.guildID)})
				resMsg = &m
			}
		}
	}
	if !parseBool(c.r.URL.Query().Get("with_response")) {
		c.noContent()
		return
	}
	type callbackInteraction struct {
		ID                     Snowflake  `json:"id"`
		Type                   int        `json:"type"`
		ResponseMessageID      *Snowflake `json:"response_message_id,omitempty"`
		ResponseMessageLoading bool       `json:"response_message_loading"`
	}
	type callbackResource struct {
		Type    int      `json:"type"`
		Message *Message `json:"message,omitempty"`
	}
	out := struct {
		Interaction callbackInteraction `json:"interaction"`
		Resource    *callbackResource   `json:"resource,omitempty"`
	}{Interaction: callbackInteraction{ID: st.in.ID, Type: st.in.Type, ResponseMessageLoading: body.Type == callbackDeferredChannelMsg}}
	if resMsg != nil {
		id := resMsg.ID
		out.Interaction.ResponseMessageID = &id
		out.Resource = &callbackResource{Type: body.Type, Message: resMsg}
	}
	c.json(http.StatusOK, out)
}

// tokenTarget is what a /webhooks/{id}/{token} path resolves to: a webhook or
// an interaction (followups use the application id and interaction token).
type tokenTarget struct {
	hook  *Webhook
	inter *interactionState
}

// resolveToken resolves the webhook id+token of the path, answering 10015 or
// 50027 when it cannot.
func (c *reqCtx) resolveToken() (tokenTarget, bool) {
	id, token := c.id("webhook.id"), c.str("webhook.token")
	is := c.rs.inters
	is.mu.Lock()
	st, ok := is.byToken[token]
	is.mu.Unlock()
	if ok && st.in.ApplicationID == id {
		if c.rs.now().Sub(st.created) > c.rs.cfg.InteractionTokenLifetime {
			c.fail(http.StatusUnauthorized, 50027, "Invalid Webhook Token")
			return tokenTarget{}, false
		}
		return tokenTarget{inter: st}, true
	}
	h, ok := c.rs.hooks.get(id)
	if !ok {
		c.unknownWebhook()
		return tokenTarget{}, false
	}
	if subtle.ConstantTimeCompare([]byte(h.Token), []byte(token)) != 1 {
		c.fail(http.StatusUnauthorized, 50027, "Invalid Webhook Token")
		return tokenTarget{}, false
	}
	return tokenTarget{hook: &h}, true
}

// POST /channels/{channel.id}/webhooks
func handleCreateWebhook(c *reqCtx) {
	ci, ok := c.textChannel()
	if !ok {
		return
	}
	var p struct {
		Name   string  `json:"name"`
		Avatar *string `json:"avatar"`
	}
	if !c.decodeJSONBody(&p) {
		return
	}
	if n := utf8.RuneCountInString(p.Name); n < 1 || n > 80 {
		errs := formErrors{}
		errs.add("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 80 in length.", "name")
		c.invalidForm(errs)
		return
	}
	u := c.rs.botUser(c.bot)
	h := &Webhook{ID: c.rs.s.newID(), Type: 1, GuildID: ci.guildID, ChannelID: ci.id, Name: p.Name, Avatar: p.Avatar,
		Token: newToken(), User: &u}
	c.rs.hooks.put(h)
	type webhooksUpdate struct {
		GuildID   Snowflake `json:"guild_id"`
		ChannelID Snowflake `json:"channel_id"`
	}
	c.rs.emit(ci.guildID, "WEBHOOKS_UPDATE", webhooksUpdate{GuildID: ci.guildID, ChannelID: ci.id})
	c.json(http.StatusOK, h)
}

// GET /channels/{channel.id}/webhooks
func handleChannelWebhooks(c *reqCtx) {
	ci, ok := c.rs.channelInfo(c.id("channel.id"))
	if !ok {
		c.unknownChannel()
		return
	}
	c.json(http.StatusOK, c.rs.hooks.inChannel(ci.id))
}

// GET /webhooks/{webhook.id} (bot authenticated)
func handleGetWebhook(c *reqCtx) {
	h, ok := c.rs.hooks.get(c.id("webhook.id"))
	if !ok {
		c.unknownWebhook()
		return
	}
	c.json(http.StatusOK, h)
}

// GET /webhooks/{webhook.id}/{webhook.token}
func handleGetWebhookToken(c *reqCtx) {
	t, ok := c.resolveToken()
	if !ok {
		return
	}
	if t.hook == nil {
		c.unknownWebhook()
		return
	}
	h := *t.hook
	h.User = nil // the token form does not reveal the creator
	c.json(http.StatusOK, h)
}

// DELETE /webhooks/{webhook.id}/{webhook.token}
func handleDeleteWebhookToken(c *reqCtx) {
	t, ok := c.resolveToken()
	if !ok {
		return
	}
	if t.hook == nil || !c.rs.hooks.remove(t.hook.ID) {
		c.unknownWebhook()
		return
	}
	c.noContent()
}

// POST /webhooks/{webhook.id}/{webhook.token} (execute, or an interaction followup)
func handleExecuteWebhook(c *reqCtx) {
	t, ok := c.resolveToken()
	if !ok {
		return
	}
	req, ok := c.readMessageRequest(true)
	if !ok {
		return
	}
	if req.Username != nil {
		if n := utf8.RuneCountInString(*req.Username); n < 1 || n > 80 {
			errs := formErrors{}
			errs.add("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 80 in length.", "username")
			c.invalidForm(errs)
			return
		}
	}
	if t.inter != nil {
		c.rs.inters.mu.Lock()
		responded := t.inter.responded
		c.rs.inters.mu.Unlock()
		if !responded {
			// Followups need the initial response first.
			c.unknownWebhook()
			return
		}
		ch, m, member := c.rs.interactionMessage(t.inter, req, true)
		c.postMessage(ch, m, member)
		return
	}
	h := t.hook
	ch, ok := c.rs.channelInfo(h.ChannelID)
	if !ok {
		c.unknownChannel()
		return
	}
	author := User{ID: h.ID, Username: h.Name, Discriminator: "0000", Avatar: h.Avatar, Bot: true}
	if req.Username != nil {
		author.Username = *req.Username
	}
	m := c.rs.newMessage(ch, author, req)
	hid := h.ID
	m.WebhookID = &hid
	if !parseBool(c.r.URL.Query().Get("wait")) {
		if _, err := c.rs.postMessage(ch, m, nil); err != nil {
			c.rs.log.Error("posting webhook message", "err", err)
			c.fail(http.StatusInternalServerError, 0, "500: Internal Server Error")
			return
		}
		c.noContent()
		return
	}
	c.postMessage(ch, m, nil)
}

// webhookMessage resolves the message of a webhook message route
// (/messages/@original or /messages/{message.id}), answering on error.
func (c *reqCtx) webhookMessage() (tokenTarget, Snowflake, Snowflake, bool) {
	t, ok := c.resolveToken()
	if !ok {
		return t, 0, 0, false
	}
	var ch, mid Snowflake
	if t.inter != nil {
		ch = t.inter.in.ChannelID
		c.rs.inters.mu.Lock()
		mid = t.inter.original
		c.rs.inters.mu.Unlock()
	} else {
		ch = t.hook.ChannelID
	}
	if c.str("message.id") != "@original" {
		mid = c.id("message.id")
	}
	if mid == 0 {
		c.unknownMessage()
		return t, 0, 0, false
	}
	return t, ch, mid, true
}

// owns reports whether a stored message was sent through target t.
func (t tokenTarget) owns(m *Message) bool {
	if m.WebhookID == nil {
		return false
	}
	if t.inter != nil {
		return *m.WebhookID == t.inter.in.ApplicationID
	}
	return *m.WebhookID == t.hook.ID
}

// GET /webhooks/{webhook.id}/{webhook.token}/messages/{message.id|@original}
func handleGetWebhookMessage(c *reqCtx) {
	t, ch, mid, ok := c.webhookMessage()
	if !ok {
		return
	}
	m, ok := c.rs.msgs.get(ch, mid, 0)
	if !ok || !t.owns(&m) {
		c.unknownMessage()
		return
	}
	c.json(http.StatusOK, m)
}

// PATCH /webhooks/{webhook.id}/{webhook.token}/messages/{message.id|@original}
func handleEditWebhookMessage(c *reqCtx) {
	t, ch, mid, ok := c.webhookMessage()
	if !ok {
		return
	}
	req, ok := c.readMessageRequest(false)
	if !ok {
		return
	}
	m, ok := c.rs.msgs.update(ch, mid, 0, func(sm *storedMessage) bool {
		if !t.owns(&sm.msg) {
			return false
		}
		applyEdit(&sm.msg, req, c.rs.now())
		// Editing a deferred response replaces its loading state.
		sm.msg.Flags &^= messageFlagLoading
		return true
	})
	if !ok {
		c.unknownMessage()
		return
	}
	ci, _ := c.rs.channelInfo(ch)
	c.rs.emit(ci.guildID, "MESSAGE_UPDATE", messageEvent{Message: m, GuildID: optID(ci.guildID)})
	c.json(http.StatusOK, m)
}

// DELETE /webhooks/{webhook.id}/{webhook.token}/messages/{message.id|@original}
func handleDeleteWebhookMessage(c *reqCtx) {
	t, ch, mid, ok := c.webhookMessage()
	if !ok {
		return
	}
	m, ok := c.rs.msgs.get(ch, mid, 0)
	if !ok || !t.owns(&m) || len(c.rs.msgs.remove(ch, mid)) == 0 {
		c.unknownMessage()
		return
	}
	ci, _ := c.rs.channelInfo(ch)
	c.rs.emit(ci.guildID, "MESSAGE_DELETE", messageDeleteEvent{ID: mid, ChannelID: ch, GuildID: optID(ci.guildID)})
	c.noContent()
}
