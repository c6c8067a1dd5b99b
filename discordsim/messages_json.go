package discordsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendJSON appends m's JSON encoding to b. Messages are what the REST API
// encodes most (every create, edit and fetch), and reflection-based encoding
// with Snowflake's MarshalJSON dominated the handler's profile; this writes
// the same object directly. Rare nested parts (attachments, reactions,
// interaction metadata) go through encoding/json. TestMessageAppendJSON
// checks the result decodes to what encoding/json produces.
func (m *Message) appendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"id":`...)
	b = appendID(b, m.ID)
	b = append(b, `,"channel_id":`...)
	b = appendID(b, m.ChannelID)
	b = append(b, `,"author":`...)
	b = appendUser(b, &m.Author)
	b = append(b, `,"content":`...)
	b = appendString(b, m.Content)
	b = append(b, `,"timestamp":`...)
	b = appendTime(b, m.Timestamp)
	b = append(b, `,"edited_timestamp":`...)
	if m.EditedTimestamp == nil {
		b = append(b, "null"...)
	} else {
		b = appendTime(b, *m.EditedTimestamp)
	}
	b = append(b, `,"tts":`...)
	b = strconv.AppendBool(b, m.TTS)
	b = append(b, `,"mention_everyone":`...)
	b = strconv.AppendBool(b, m.MentionEveryone)
	b = append(b, `,"mentions":`...)
	if m.Mentions == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range m.Mentions {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendUser(b, &m.Mentions[i])
		}
		b = append(b, ']')
	}
	b = append(b, `,"mention_roles":`...)
	b = appendIDs(b, m.MentionRoles)
	var err error
	if b, err = appendField(b, `,"attachments":`, m.Attachments); err != nil {
		return nil, err
	}
	b = append(b, `,"embeds":`...)
	b = appendRaws(b, m.Embeds)
	if len(m.Reactions) > 0 {
		if b, err = appendField(b, `,"reactions":`, m.Reactions); err != nil {
			return nil, err
		}
	}
	if len(m.Nonce) > 0 {
		b = append(b, `,"nonce":`...)
		b = append(b, m.Nonce...)
	}
	b = append(b, `,"pinned":`...)
	b = strconv.AppendBool(b, m.Pinned)
	if m.WebhookID != nil {
		b = append(b, `,"webhook_id":`...)
		b = appendID(b, *m.WebhookID)
	}
	b = append(b, `,"type":`...)
	b = strconv.AppendInt(b, int64(m.Type), 10)
	b = append(b, `,"flags":`...)
	b = strconv.AppendInt(b, int64(m.Flags), 10)
	b = append(b, `,"components":`...)
	b = appendRaws(b, m.Components)
	if m.ApplicationID != nil {
		b = append(b, `,"application_id":`...)
		b = appendID(b, *m.ApplicationID)
	}
	if len(m.MessageReference) > 0 {
		b = append(b, `,"message_reference":`...)
		b = append(b, m.MessageReference...)
	}
	if m.InteractionMetadata != nil {
		if b, err = appendField(b, `,"interaction_metadata":`, m.InteractionMetadata); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

// encodeMessage returns m's JSON.
func encodeMessage(m *Message) ([]byte, error) {
	return m.appendJSON(make([]byte, 0, 512+len(m.Content)))
}

func appendField(b []byte, key string, v any) ([]byte, error) {
	enc, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", key, err)
	}
	return append(append(b, key...), enc...), nil
}

func appendID(b []byte, id Snowflake) []byte {
	b = append(b, '"')
	b = strconv.AppendUint(b, uint64(id), 10)
	return append(b, '"')
}

func appendIDs(b []byte, ids []Snowflake) []byte {
	if ids == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendID(b, id)
	}
	return append(b, ']')
}

// appendRaws appends already-valid, compact JSON values as an array.
func appendRaws(b []byte, raws []json.RawMessage) []byte {
	if raws == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, r := range raws {
		if i > 0 {
			b = append(b, ',')
		}
		if len(r) == 0 {
			r = json.RawMessage("null")
		}
		b = append(b, r...)
	}
	return append(b, ']')
}

func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

func appendOptString(b []byte, s *string) []byte {
	if s == nil {
		return append(b, "null"...)
	}
	return appendString(b, *s)
}

// appendUser writes a User the way its struct tags say.
func appendUser(b []byte, u *User) []byte {
	b = append(b, `{"id":`...)
	b = appendID(b, u.ID)
	b = append(b, `,"username":`...)
	b = appendString(b, u.Username)
	b = append(b, `,"discriminator":`...)
	b = appendString(b, u.Discriminator)
	b = append(b, `,"global_name":`...)
	b = appendOptString(b, u.GlobalName)
	b = append(b, `,"avatar":`...)
	b = appendOptString(b, u.Avatar)
	if u.Bot {
		b = append(b, `,"bot":true`...)
	}
	b = append(b, `,"public_flags":`...)
	b = strconv.AppendInt(b, int64(u.PublicFlags), 10)
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD (as encoding/json
// does).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but break JavaScript parsers;
		// encoding/json escapes them too.
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// compactRaw returns raw without insignificant whitespace, so it can be copied
// into encoded messages as is.
func compactRaw(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return raw
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		// raw came from a successful json.Unmarshal, so it is valid JSON;
		// keep it as it is rather than lose it.
		return raw
	}
	return json.RawMessage(buf.Bytes())
}

// compactRaws compacts every value of raws in place.
func compactRaws(raws []json.RawMessage) {
	for i := range raws {
		raws[i] = compactRaw(raws[i])
	}
}
