package discordjson

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	discordv1 "github.com/kubecord/kubecord/gen/kubecord/discord/v1"
)

func decodeMessageCreate(t *testing.T, js string) *discordv1.MessageCreate {
	t.Helper()
	m, err := Decode("MESSAGE_CREATE", []byte(js))
	if err != nil {
		t.Fatalf("Decode(%s): %v", js, err)
	}
	return m.(*discordv1.MessageCreate)
}

func TestSnowflakes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		json string
		want uint64
	}{
		{"string", `"1310000000000010001"`, 1310000000000010001},
		{"number", `1310000000000010001`, 1310000000000010001},
		{"small number", `123`, 123},
		{"max uint64", `"18446744073709551615"`, math.MaxUint64},
		{"zero", `"0"`, 0},
		{"escaped digits", `"\u0031\u0032"`, 12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := decodeMessageCreate(t, `{"id":`+tt.json+`,"author":{"id":`+tt.json+`},"mention_roles":[`+tt.json+`]}`)
			if got := m.GetMessage().GetId(); got != tt.want {
				t.Errorf("id = %d, want %d", got, tt.want)
			}
			if got := m.GetMessage().GetAuthor().GetId(); got != tt.want {
				t.Errorf("author.id = %d, want %d", got, tt.want)
			}
			if got := m.GetMessage().GetMentionRoles(); len(got) != 1 || got[0] != tt.want {
				t.Errorf("mention_roles = %v, want [%d]", got, tt.want)
			}
		})
	}
}

func TestTimestamps(t *testing.T) {
	t.Parallel()
	tests := []string{
		"2026-11-22T10:00:00.123000+00:00",
		"2026-11-22T10:00:00+00:00",
		"2026-11-22T10:00:00Z",
		"2026-11-22T10:00:00.1Z",
		"2026-11-22T10:00:00.123456789Z",
		"2026-11-22T10:00:00.123456-05:00",
		"2026-11-22T10:00:00+05:30",
		"2026-11-22T00:30:00+14:00",
		"2024-02-29T23:59:59.999999+00:00",
		"1970-01-01T00:00:00Z",
		"1969-12-31T23:59:59.5Z",
		"0001-01-01T00:00:00Z",
		"9999-12-31T23:59:59.999999999Z",
		"2000-02-29T12:00:00z",
	}
	for _, ts := range tests {
		t.Run(ts, func(t *testing.T) {
			t.Parallel()
			want, err := time.Parse(time.RFC3339Nano, strings.ToUpper(ts))
			if err != nil {
				t.Fatal(err)
			}
			m := decodeMessageCreate(t, `{"timestamp":"`+ts+`"}`)
			got := m.GetMessage().GetTimestamp()
			if err := got.CheckValid(); err != nil {
				t.Fatalf("invalid Timestamp: %v", err)
			}
			if !got.AsTime().Equal(want) {
				t.Errorf("got %v, want %v", got.AsTime(), want.UTC())
			}
		})
	}

	t.Run("more than nine fraction digits are truncated", func(t *testing.T) {
		t.Parallel()
		m := decodeMessageCreate(t, `{"timestamp":"2026-11-22T10:00:00.123456789987+00:00"}`)
		if got := m.GetMessage().GetTimestamp().GetNanos(); got != 123456789 {
			t.Errorf("nanos = %d, want 123456789", got)
		}
	})
}

func TestNullsAndAbsence(t *testing.T) {
	t.Parallel()
	// Every kind of field set to null: all stay unset, except the two whose null means something.
	m := decodeMessageCreate(t, `{
		"id": null, "author": null, "content": null, "timestamp": null, "edited_timestamp": null,
		"tts": null, "mentions": null, "mention_roles": null, "position": null, "flags": null,
		"member": null, "channel_type": null, "referenced_message": null, "nonce": null
	}`)
	msg := m.GetMessage()
	switch {
	case msg.GetId() != 0, msg.Author != nil, msg.GetContent() != "", msg.Timestamp != nil,
		msg.EditedTimestamp != nil, msg.GetTts(), msg.Mentions != nil, msg.MentionRoles != nil,
		msg.Position != nil, msg.GetFlags() != 0, m.Member != nil, m.ChannelType != nil,
		msg.ReferencedMessage != nil:
		t.Errorf("a null field was set: %v", m)
	}
	// google.protobuf.Value keeps a JSON null as a null value.
	if _, ok := msg.GetNonce().GetKind().(*structpb.Value_NullValue); !ok {
		t.Errorf("nonce = %v, want a null Value", msg.GetNonce())
	}

	// Missing optional fields keep their presence unset; present zero values are set.
	m = decodeMessageCreate(t, `{"position":0}`)
	if m.GetMessage().Position == nil || m.ChannelType != nil {
		t.Errorf("position present=%v (want true), channel_type present=%v (want false)",
			m.GetMessage().Position != nil, m.ChannelType != nil)
	}

	// A key whose JSON null means "true" (RoleTags.premium_subscriber) is present exactly when sent.
	r, err := Decode("GUILD_ROLE_UPDATE", []byte(`{"guild_id":"1","role":{"id":"2","tags":{"premium_subscriber":null}}}`))
	if err != nil {
		t.Fatal(err)
	}
	tags := r.(*discordv1.GuildRoleUpdate).GetRole().GetTags()
	if tags.PremiumSubscriber == nil || tags.AvailableForPurchase != nil {
		t.Errorf("premium_subscriber present=%v (want true), available_for_purchase present=%v (want false)",
			tags.PremiumSubscriber != nil, tags.AvailableForPurchase != nil)
	}
}

func TestInlineFields(t *testing.T) {
	t.Parallel()
	m := decodeMessageCreate(t, `{"id":"7","guild_id":"5","channel_id":"6","member":{"nick":"n"},
		"mentions":[{"id":"8","username":"bob","member":{"nick":"b"}}],"channel_type":0}`)
	want := &discordv1.MessageCreate{
		Message: &discordv1.Message{
			Id:        7,
			ChannelId: 6,
			Mentions: []*discordv1.UserWithMember{{
				User:   &discordv1.User{Id: 8, Username: "bob"},
				Member: &discordv1.Member{Nick: proto.String("b")},
			}},
		},
		GuildId:     5,
		Member:      &discordv1.Member{Nick: proto.String("n")},
		ChannelType: proto.Int32(0),
	}
	if !proto.Equal(m, want) {
		t.Errorf("got %v\nwant %v", m, want)
	}

	// The event's own field wins over the inline message's field of the same name: ThreadCreate's
	// member is the Channel's (thread member), newly_created is ThreadCreate's own.
	tc, err := Decode("THREAD_CREATE", []byte(`{"id":"9","newly_created":true,"member":{"user_id":"3"}}`))
	if err != nil {
		t.Fatal(err)
	}
	got := tc.(*discordv1.ThreadCreate)
	if got.GetThread().GetId() != 9 || !got.GetNewlyCreated() || got.GetThread().GetMember().GetUserId() != 3 {
		t.Errorf("got %v", got)
	}
}

func TestIntegers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		json string
		want *discordv1.Role
	}{
		{"bitfield as string", `{"permissions":"2251799813685247"}`, &discordv1.Role{Permissions: 2251799813685247}},
		{"bitfield as number", `{"permissions":1024}`, &discordv1.Role{Permissions: 1024}},
		{"max uint64 bitfield", `{"permissions":"18446744073709551615"}`, &discordv1.Role{Permissions: math.MaxUint64}},
		{"int64 as string", `{"flags":"-3"}`, &discordv1.Role{Flags: -3}},
		{"int64 min", `{"flags":-9223372036854775808}`, &discordv1.Role{Flags: math.MinInt64}},
		{"int32 with exponent", `{"position":1e2}`, &discordv1.Role{Position: 100}},
		{"int32 written as float", `{"color":3.0}`, &discordv1.Role{Color: 3}},
		{"negative int32", `{"position":-2147483648}`, &discordv1.Role{Position: math.MinInt32}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := &discordv1.Role{}
			if err := DecodeInto(got, []byte(tt.json)); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestUnknownKeysAreSkipped(t *testing.T) {
	t.Parallel()
	m := decodeMessageCreate(t, `{"x":{"a":[1,-2.5e-3,{"b":"c\"}"}],"n":null,"t":true,"f":false},"id":"1",
		"y":[],"z":{},"w":"\u00e9\ud83d\ude80","v":[[[[]]]],"content":"ok"}`)
	if m.GetMessage().GetId() != 1 || m.GetMessage().GetContent() != "ok" {
		t.Errorf("got %v", m)
	}
}

func TestStrings(t *testing.T) {
	t.Parallel()
	tests := []struct{ json, want string }{
		{`"plain"`, "plain"},
		{`"tab\tquote\"slash\/back\\"`, "tab\tquote\"slash/back\\"},
		{`"\b\f\n\r"`, "\b\f\n\r"},
		{`"caf\u00e9 \u4e16"`, "café 世"},
		{`"rocket \ud83d\ude80"`, "rocket 🚀"},
		{`"lone \ud83d surrogate"`, "lone \ufffd surrogate"},
		{`"raw ünïcödé 🧵"`, "raw ünïcödé 🧵"},
		{`""`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			t.Parallel()
			m := decodeMessageCreate(t, `{"content":`+tt.json+`}`)
			if got := m.GetMessage().GetContent(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDuplicateKeysLastWins(t *testing.T) {
	t.Parallel()
	m := decodeMessageCreate(t, `{"content":"a","content":"b","mention_roles":["1"],"mention_roles":["2","3"]}`)
	if m.GetMessage().GetContent() != "b" || len(m.GetMessage().GetMentionRoles()) != 2 {
		t.Errorf("got %v", m)
	}
}

func TestUntypedEvents(t *testing.T) {
	t.Parallel()
	m, err := Decode("SOMETHING_NEW", []byte(`{"whatever":[1,2,3]}`))
	if m != nil || err != nil {
		t.Errorf("Decode of an untyped event = %v, %v; want nil, nil", m, err)
	}
	if Typed("SOMETHING_NEW") || !Typed("MESSAGE_CREATE") {
		t.Error("Typed disagrees with the Event oneof")
	}
	ev := &discordv1.Event{Name: "SOMETHING_NEW", Raw: []byte(`{}`)}
	if err := DecodeEvent(ev); err != nil || ev.GetPayload() != nil {
		t.Errorf("DecodeEvent of an untyped event = %v, payload %v", err, ev.GetPayload())
	}
}

func TestDecodeEventErrorLeavesNoPayload(t *testing.T) {
	t.Parallel()
	ev := &discordv1.Event{Name: "MESSAGE_CREATE", Raw: []byte(`{"id":"1","author":{"id":"x"}}`)}
	err := DecodeEvent(ev)
	if err == nil {
		t.Fatal("no error")
	}
	if ev.GetPayload() != nil {
		t.Errorf("payload left set after an error: %v", ev.GetPayload())
	}
}

func TestDecodeInto(t *testing.T) {
	t.Parallel()
	g := &discordv1.Guild{}
	err := DecodeInto(g, []byte(`{"id":"1","name":"g","roles":[{"id":"1","permissions":"8"}],"joined_at":"2026-01-02T03:04:05Z"}`))
	if err != nil {
		t.Fatal(err)
	}
	if g.GetId() != 1 || g.GetName() != "g" || g.GetRoles()[0].GetPermissions() != 8 || g.GetJoinedAt().GetSeconds() != 1767323045 {
		t.Errorf("got %v", g)
	}
	err = DecodeInto(&discordv1.Guild{}, []byte(`{"id":true}`))
	if err == nil || err.Error() != `kubecord.discord.v1.Guild: .id: expected a snowflake string, found boolean` {
		t.Errorf("error = %v", err)
	}
}

// nest wraps inner in n levels of open and close.
func nest(n int, open, inner, close string) string {
	return strings.Repeat(open, n) + inner + strings.Repeat(close, n)
}

func TestMalformed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		event string
		json  string
		want  string // the whole error, or a prefix when it ends in "..."
	}{
		{"bad snowflake", "MESSAGE_CREATE", `{"id":"x"}`, `MESSAGE_CREATE: .id: invalid snowflake "x"`},
		{"nested bad snowflake", "MESSAGE_CREATE", `{"author":{"id":"x"}}`, `MESSAGE_CREATE: .author.id: invalid snowflake "x"`},
		{"snowflake overflow", "MESSAGE_CREATE", `{"id":"18446744073709551616"}`, `MESSAGE_CREATE: .id: invalid snowflake "18446744073709551616"`},
		{"negative snowflake", "MESSAGE_CREATE", `{"id":-1}`, `MESSAGE_CREATE: .id: invalid snowflake "-1"`},
		{"empty snowflake", "MESSAGE_CREATE", `{"id":""}`, `MESSAGE_CREATE: .id: invalid snowflake ""`},
		{"fractional snowflake", "MESSAGE_CREATE", `{"id":1.5}`, `MESSAGE_CREATE: .id: invalid snowflake "1.5"`},
		{"snowflake in array", "MESSAGE_CREATE", `{"mention_roles":["1",true]}`, `MESSAGE_CREATE: .mention_roles[1]: expected a snowflake string, found boolean`},
		{"object expected", "MESSAGE_CREATE", `{"author":"bob"}`, `MESSAGE_CREATE: .author: expected object, found string`},
		{"array expected", "MESSAGE_CREATE", `{"mentions":{}}`, `MESSAGE_CREATE: .mentions: expected array, found object`},
		{"deep path", "MESSAGE_CREATE", `{"mentions":[{"id":"1"},{"member":{"joined_at":"then"}}]}`, `MESSAGE_CREATE: .mentions[1].member.joined_at: invalid timestamp "then"`},
		{"boolean expected", "MESSAGE_CREATE", `{"tts":"yes"}`, `MESSAGE_CREATE: .tts: expected boolean, found string`},
		{"string expected", "MESSAGE_CREATE", `{"content":1}`, `MESSAGE_CREATE: .content: expected string, found number`},
		{"int32 from string", "MESSAGE_CREATE", `{"type":"0"}`, `MESSAGE_CREATE: .type: expected integer, found string`},
		{"int32 overflow", "MESSAGE_CREATE", `{"type":2147483648}`, `MESSAGE_CREATE: .type: integer 2147483648 out of range for int32`},
		{"int32 fraction", "MESSAGE_CREATE", `{"type":1.5}`, `MESSAGE_CREATE: .type: expected an integer, found 1.5`},
		{"uint64 negative", "GUILD_ROLE_CREATE", `{"role":{"permissions":"-8"}}`, `GUILD_ROLE_CREATE: .role.permissions: integer -8 out of range for uint64`},
		{"uint64 bad string", "GUILD_ROLE_CREATE", `{"role":{"permissions":"8 "}}`, `GUILD_ROLE_CREATE: .role.permissions: invalid or out of range integer "8 "`},
		{"int64 overflow", "GUILD_ROLE_CREATE", `{"role":{"flags":9223372036854775808}}`, `GUILD_ROLE_CREATE: .role.flags: integer 9223372036854775808 out of range for int64`},
		{"double expected", "RATE_LIMITED", `{"retry_after":"1"}`, `RATE_LIMITED: .retry_after: expected number, found string`},
		{"NullValue with a value", "GUILD_ROLE_CREATE", `{"role":{"tags":{"premium_subscriber":true}}}`, `GUILD_ROLE_CREATE: .role.tags.premium_subscriber: expected null, found boolean`},
		{"timestamp as number", "MESSAGE_CREATE", `{"timestamp":1763806893}`, `MESSAGE_CREATE: .timestamp: expected ISO 8601 timestamp string, found number`},
		{"timestamp without offset", "MESSAGE_CREATE", `{"timestamp":"2026-11-22T10:00:00"}`, `MESSAGE_CREATE: .timestamp: invalid timestamp "2026-11-22T10:00:00"`},
		{"timestamp month 13", "MESSAGE_CREATE", `{"timestamp":"2026-13-01T00:00:00Z"}`, `MESSAGE_CREATE: .timestamp: invalid timestamp "2026-13-01T00:00:00Z"`},
		{"timestamp february 30", "MESSAGE_CREATE", `{"timestamp":"2026-02-30T00:00:00Z"}`, `MESSAGE_CREATE: .timestamp: invalid timestamp "2026-02-30T00:00:00Z"`},
		{"timestamp february 29 of a common year", "MESSAGE_CREATE", `{"timestamp":"2100-02-29T00:00:00Z"}`, `MESSAGE_CREATE: .timestamp: invalid timestamp "2100-02-29T00:00:00Z"`},
		{"timestamp hour 24", "MESSAGE_CREATE", `{"timestamp":"2026-11-22T24:00:00Z"}`, `MESSAGE_CREATE: .timestamp: invalid timestamp "2026-11-22T24:00:00Z"`},
		{"timestamp bad offset", "MESSAGE_CREATE", `{"timestamp":"2026-11-22T10:00:00+0100"}`, `MESSAGE_CREATE: .timestamp: invalid timestamp "2026-11-22T10:00:00+0100"`},
		{"timestamp empty fraction", "MESSAGE_CREATE", `{"timestamp":"2026-11-22T10:00:00.Z"}`, `MESSAGE_CREATE: .timestamp: invalid timestamp "2026-11-22T10:00:00.Z"`},
		{"timestamp year 0", "MESSAGE_CREATE", `{"timestamp":"0000-01-01T00:00:00Z"}`, `MESSAGE_CREATE: .timestamp: invalid timestamp "0000-01-01T00:00:00Z"`},
		{"timestamp date only", "MESSAGE_CREATE", `{"timestamp":"2026-11-22"}`, `MESSAGE_CREATE: .timestamp: invalid timestamp "2026-11-22"`},
		{"map key not a snowflake", "INTERACTION_CREATE", `{"data":{"resolved":{"users":{"bob":{}}}}}`, `INTERACTION_CREATE: .data.resolved.users.bob: invalid snowflake "bob"`},
		{"map value", "INTERACTION_CREATE", `{"authorizing_integration_owners":{"0":"x"}}`, `INTERACTION_CREATE: .authorizing_integration_owners.0: invalid snowflake "x"`},
		{"top level array", "MESSAGE_CREATE", `[]`, `MESSAGE_CREATE: expected object, found array`},
		{"top level null", "MESSAGE_CREATE", `null`, `MESSAGE_CREATE: expected object, found null`},
		{"empty input", "MESSAGE_CREATE", ``, `MESSAGE_CREATE: unexpected end of JSON input at offset 0`},
		{"truncated", "MESSAGE_CREATE", `{"id":"1"`, `MESSAGE_CREATE: unexpected end of JSON input at offset 9`},
		{"truncated string", "MESSAGE_CREATE", `{"content":"abc`, `MESSAGE_CREATE: .content: unexpected end of JSON input at offset 15`},
		{"truncated literal", "MESSAGE_CREATE", `{"tts":tr`, `MESSAGE_CREATE: .tts: unexpected end of JSON input at offset 9`},
		{"trailing comma", "MESSAGE_CREATE", `{"id":"1",}`, `MESSAGE_CREATE: expected object key string, found '}' at offset 10`},
		{"missing colon", "MESSAGE_CREATE", `{"id" "1"}`, `MESSAGE_CREATE: expected ':', found '"' at offset 6`},
		{"missing comma", "MESSAGE_CREATE", `{"id":"1" "content":"x"}`, `MESSAGE_CREATE: expected ',' or '}', found '"' at offset 10`},
		{"trailing data", "MESSAGE_CREATE", `{"id":"1"} {}`, `MESSAGE_CREATE: unexpected data after the JSON object at offset 11`},
		{"leading zero", "MESSAGE_CREATE", `{"flags":01}`, `MESSAGE_CREATE: expected ',' or '}', found '1' at offset 10`},
		{"bare word", "MESSAGE_CREATE", `{"tts":yes}`, `MESSAGE_CREATE: .tts: expected boolean, found 'y'`},
		{"bad literal", "MESSAGE_CREATE", `{"tts":trve}`, `MESSAGE_CREATE: .tts: invalid literal, expected true at offset 7`},
		{"invalid UTF-8", "MESSAGE_CREATE", "{\"content\":\"a\xffb\"}", `MESSAGE_CREATE: .content: invalid UTF-8 in string at offset 11`},
		{"invalid UTF-8 after escape", "MESSAGE_CREATE", "{\"content\":\"\\n\xff\"}", `MESSAGE_CREATE: .content: invalid UTF-8 in string...`},
		{"control character", "MESSAGE_CREATE", "{\"content\":\"a\nb\"}", `MESSAGE_CREATE: .content: control character in string...`},
		{"bad escape", "MESSAGE_CREATE", `{"content":"\x41"}`, `MESSAGE_CREATE: .content: invalid escape in string...`},
		{"short unicode escape", "MESSAGE_CREATE", `{"content":"\u12"}`, `MESSAGE_CREATE: .content: invalid \u escape in string...`},
		{"bad key escape", "MESSAGE_CREATE", `{"\q":1}`, `MESSAGE_CREATE: invalid escape in string...`},
		{"unknown key malformed value", "MESSAGE_CREATE", `{"zzz":[1,2,}`, `MESSAGE_CREATE: .zzz: invalid character '}' looking for a value...`},
		{"unknown key bad number", "MESSAGE_CREATE", `{"zzz":-}`, `MESSAGE_CREATE: .zzz: invalid character '}' looking for a value...`},
		{"unknown key bad exponent", "MESSAGE_CREATE", `{"zzz":1e}`, `MESSAGE_CREATE: .zzz: invalid number: digit expected in exponent...`},
		{"base64 expected", "MESSAGE_CREATE", `{"content":{}}`, `MESSAGE_CREATE: .content: expected string, found object`},
		{"deep unknown value", "MESSAGE_CREATE", `{"x":` + nest(100, "[", "", "]") + `}`, `MESSAGE_CREATE: .x: JSON nested deeper than 64 levels...`},
		{"deep unknown objects", "MESSAGE_CREATE", `{"x":` + nest(100, `{"a":`, "1", "}") + `}`, `MESSAGE_CREATE: .x: JSON nested deeper than 64 levels...`},
		{"deep typed recursion", "MESSAGE_CREATE", nest(70, `{"referenced_message":`, "{}", "}"), `MESSAGE_CREATE: .referenced_message.referenced_message...`},
		{"deep Value", "MESSAGE_CREATE", `{"nonce":` + nest(100, "[", "", "]") + `}`, `MESSAGE_CREATE: .nonce[0][0]...`},
		{"deep Value objects", "MESSAGE_CREATE", `{"nonce":` + nest(100, `{"a":`, "1", "}") + `}`, `MESSAGE_CREATE: .nonce.a.a...`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := Decode(tt.event, []byte(tt.json))
			if err == nil {
				t.Fatalf("no error; decoded %v", m)
			}
			if m != nil {
				t.Errorf("a message came back with the error: %v", m)
			}
			var de *Error
			if !errors.As(err, &de) || de.Event != tt.event {
				t.Errorf("error %T %v is not an *Error for %s", err, err, tt.event)
			}
			if prefix, ok := strings.CutSuffix(tt.want, "..."); ok {
				if !strings.HasPrefix(err.Error(), prefix) {
					t.Errorf("error = %q, want prefix %q", err, prefix)
				}
			} else if err.Error() != tt.want {
				t.Errorf("error = %q\n         want %q", err, tt.want)
			}
		})
	}
}

// TestDepthLimitAllowsDiscordShapes checks the limit is not so tight that real nesting fails.
func TestDepthLimitAllowsDiscordShapes(t *testing.T) {
	t.Parallel()
	js := nest(20, `{"referenced_message":`, `{"id":"1"}`, "}")
	if _, err := Decode("MESSAGE_CREATE", []byte(js)); err != nil {
		t.Fatal(err)
	}
	js = `{"x":` + nest(MaxDepth-1, "[", "", "]") + `}`
	if _, err := Decode("MESSAGE_CREATE", []byte(js)); err != nil {
		t.Fatalf("nesting of exactly MaxDepth: %v", err)
	}
}

func TestValues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		json string
		want *structpb.Value
	}{
		{`"abc"`, structpb.NewStringValue("abc")},
		{`42`, structpb.NewNumberValue(42)},
		{`-2.5e3`, structpb.NewNumberValue(-2500)},
		{`true`, structpb.NewBoolValue(true)},
		{`null`, structpb.NewNullValue()},
		{`[1,"a",[]]`, structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{
			structpb.NewNumberValue(1), structpb.NewStringValue("a"), structpb.NewListValue(&structpb.ListValue{})}})},
		{`{"a":{"b":null}}`, structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
			"a": structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"b": structpb.NewNullValue()}})}})},
		// google.protobuf.Value holds numbers as doubles: integers beyond 2^53 round, as in
		// JavaScript. Discord's nonces are normally strings, which stay exact.
		{`1310000000000020999`, structpb.NewNumberValue(1310000000000021000)},
	}
	for _, tt := range tests {
		t.Run(tt.json, func(t *testing.T) {
			t.Parallel()
			m := decodeMessageCreate(t, `{"nonce":`+tt.json+`}`)
			if !proto.Equal(m.GetMessage().GetNonce(), tt.want) {
				t.Errorf("got %v, want %v", m.GetMessage().GetNonce(), tt.want)
			}
		})
	}
}

// TestDepthLimitIsTheSameEverywhere checks Decode, ParseFrame and RoutingKey agree on where the
// nesting limit falls, so a payload one accepts is never refused by another.
func TestDepthLimitIsTheSameEverywhere(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		levels int // total nesting of d, counting d itself
		ok     bool
	}{{MaxDepth, true}, {MaxDepth + 1, false}} {
		for _, shape := range []struct{ name, open, close string }{{"arrays", "[", "]"}, {"objects", `{"a":`, "}"}} {
			d := []byte(`{"x":` + nest(tt.levels-1, shape.open, "0", shape.close) + `}`)
			if shape.name == "arrays" {
				d = []byte(`{"x":` + nest(tt.levels-1, shape.open, "", shape.close) + `}`)
			}
			_, errDecode := Decode("MESSAGE_CREATE", d)
			_, errFrame := ParseFrame(append(append([]byte(`{"op":0,"d":`), d...), '}'))
			_, errRoute := RoutingKey("MESSAGE_CREATE", d)
			for what, err := range map[string]error{"Decode": errDecode, "ParseFrame": errFrame, "RoutingKey": errRoute} {
				if (err == nil) != tt.ok {
					t.Errorf("%d levels of %s: %s error = %v, want ok=%v", tt.levels, shape.name, what, err, tt.ok)
				}
			}
		}
	}
}
