package discordsim

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// sameJSON decodes a and b and compares the values.
func sameJSON(t *testing.T, a, b []byte) {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("manual encoding is not JSON: %v\n%s", err, a)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(va, vb) {
		t.Fatalf("manual encoding differs from encoding/json:\n got  %s\n want %s", a, b)
	}
}

func TestMessageAppendJSON(t *testing.T) {
	t.Parallel()
	gn, av := "Global \"Name\"", "abc"
	now := time.Date(2026, 11, 22, 23, 0, 0, 123456789, time.UTC)
	hook, app := Snowflake(77), Snowflake(88)
	for _, m := range []Message{
		{},
		{ID: 1, ChannelID: 2, Author: User{ID: 3, Username: "u", Discriminator: "0"}, Content: "hello", Timestamp: now,
			Mentions: []User{}, MentionRoles: []Snowflake{}, Attachments: []Attachment{}, Embeds: []json.RawMessage{}, Components: []json.RawMessage{}},
		{ID: 1 << 62, ChannelID: 2, Author: User{ID: 3, Username: "bot", GlobalName: &gn, Avatar: &av, Bot: true, PublicFlags: 64},
			Content: "quotes \" backslash \\ newline \n tab \t ctrl \x01 html <&> unicode é 🎉 sep \u2028 bad \xff end", Timestamp: now, EditedTimestamp: &now,
			TTS: true, MentionEveryone: true, Mentions: []User{{ID: 9, Username: "m"}}, MentionRoles: []Snowflake{5, 6},
			Attachments: []Attachment{{ID: 4, Filename: "a.png", Size: 3, URL: "u", ProxyURL: "p"}},
			Embeds:      []json.RawMessage{json.RawMessage(`{"title":"t","fields":[{"name":"n","value":"v"}]}`)},
			Reactions:   []Reaction{{Count: 1, Me: true, BurstColors: []string{}, Emoji: ReactionEmoji{Name: "👍"}}},
			Nonce:       json.RawMessage(`"abc"`), Pinned: true, WebhookID: &hook, Type: 19, Flags: 64,
			Components: []json.RawMessage{json.RawMessage(`{"type":1,"components":[]}`)}, ApplicationID: &app,
			MessageReference:    json.RawMessage(`{"message_id":"1"}`),
			InteractionMetadata: &InteractionMetadata{ID: 1, Type: 2, User: User{ID: 3}}},
	} {
		got, err := encodeMessage(&m)
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		sameJSON(t, got, want)
	}
}

// FuzzAppendString checks the string encoder against encoding/json on
// arbitrary (including invalid UTF-8) input.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "\"\\\n\r\t\x00\x1f", "é🎉", "\xff\xfe", "\u2028\u2029", "<script>&"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		sameJSON(t, appendString(nil, s), want)
	})
}

func BenchmarkEncodeMessage(b *testing.B) {
	now := time.Now()
	m := Message{ID: 1 << 60, ChannelID: 2 << 50, Author: User{ID: 3 << 50, Username: "benchbot", Discriminator: "0", Bot: true},
		Content: "benchmark message with a little text in it", Timestamp: now, Mentions: []User{}, MentionRoles: []Snowflake{},
		Attachments: []Attachment{}, Embeds: []json.RawMessage{}, Components: []json.RawMessage{}, Nonce: json.RawMessage(`"12345"`)}
	b.Run("manual", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := encodeMessage(&m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(m); err != nil {
				b.Fatal(err)
			}
		}
	})
}
