package discordsim

import (
	"encoding/json"
	"slices"
	"sync"
)

// dispatch emits an event to every live session whose shard owns guildID
// (guild 0, as for DMs, goes to shard 0), filtered by the sessions' intents.
// REST calls it after changing the world. Message events sent to a session
// without MESSAGE_CONTENT lose their content, embeds, attachments,
// components and poll unless the bot wrote or is mentioned in the message.
// A json.RawMessage d is sent as is (after a validity check) rather than
// decoded and re-encoded: callers that already hold the encoded event skip
// a marshal per dispatch.
func (s *Server) dispatch(guildID Snowflake, event string, d any) {
	var body []byte
	if raw, ok := d.(json.RawMessage); ok {
		if !json.Valid(raw) {
			s.log.Error("discordsim: dispatch payload is not valid JSON", "event", event, "bytes", len(raw))
			return
		}
		body = raw
	} else {
		var err error
		if body, err = json.Marshal(d); err != nil {
			s.log.Error("discordsim: encoding dispatch", "event", event, "err", err)
			return
		}
	}
	var mv *msgVariant
	if guildID != 0 && (event == "MESSAGE_CREATE" || event == "MESSAGE_UPDATE") {
		mv = &msgVariant{full: body}
	}
	s.gw.dispatchRaw(guildID, event, body, mv)
}

// Dispatch sends a custom event (d is JSON-encoded; a json.RawMessage is
// sent as is if valid) as if Discord emitted it for guildID, for tests that
// need an event the simulator does not generate.
func (s *Server) Dispatch(guildID Snowflake, event string, d any) { s.dispatch(guildID, event, d) }

// dispatchRaw sends the encoded d and returns how many sessions got it.
func (g *gatewayState) dispatchRaw(guildID Snowflake, event string, d []byte, mv *msgVariant) int {
	need := eventIntent(guildID, event)
	cfg := &g.s.cfg
	n := 0
	g.mu.RLock()
	defer g.mu.RUnlock()
	for numShards, byShard := range g.live {
		shard := 0
		if guildID != 0 {
			shard = ShardFor(guildID, numShards)
		}
		for sess := range byShard[shard] {
			if need != 0 && sess.intents&need == 0 {
				continue
			}
			body := d
			if mv != nil && sess.intents&IntentMessageContent == 0 {
				body = mv.forBot(sess.bot.ID)
			}
			sess.mu.Lock()
			if !sess.dead {
				sess.pushLocked(cfg, event, body)
				n++
			}
			sess.mu.Unlock()
		}
	}
	return n
}

// msgVariant holds a message event and, computed on first need, the same
// event as a bot without the MESSAGE_CONTENT intent sees it.
type msgVariant struct {
	full     []byte
	once     sync.Once
	stripped []byte
	author   Snowflake
	mentions []Snowflake
}

func (m *msgVariant) forBot(bot Snowflake) []byte {
	m.once.Do(m.strip)
	if m.stripped == nil || bot == m.author || slices.Contains(m.mentions, bot) {
		return m.full
	}
	return m.stripped
}

func (m *msgVariant) strip() {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(m.full, &fields); err != nil {
		return
	}
	var who struct {
		Author struct {
			ID Snowflake `json:"id"`
		} `json:"author"`
		Mentions []struct {
			ID Snowflake `json:"id"`
		} `json:"mentions"`
	}
	if err := json.Unmarshal(m.full, &who); err == nil {
		m.author = who.Author.ID
		for _, u := range who.Mentions {
			m.mentions = append(m.mentions, u.ID)
		}
	}
	if _, ok := fields["content"]; ok {
		fields["content"] = json.RawMessage(`""`)
	}
	for _, k := range []string{"embeds", "attachments", "components"} {
		if _, ok := fields[k]; ok {
			fields[k] = json.RawMessage(`[]`)
		}
	}
	delete(fields, "poll")
	out, err := json.Marshal(fields)
	if err != nil {
		return
	}
	m.stripped = out
}
