package discordjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	discordv1 "github.com/kubecord/kubecord/gen/kubecord/discord/v1"
)

var largeGuildPath = filepath.Join("testdata", "bench", "GUILD_CREATE_1000_members.json")

// largeGuild writes the GUILD_CREATE of a community guild with 1,000 members, 60 channels, 40
// roles, 30 emojis, 12 active threads, voice states and presences for about a third of the
// members, the way Discord sends it. It is deterministic (fixed seed) so the file in testdata is
// reproducible with go test -update.
func largeGuild() []byte {
	r := rand.New(rand.NewPCG(1, 2))
	const guild = "1150000000000000001"
	var b strings.Builder
	id := func(base uint64, i int) string { return `"` + strconv.FormatUint(base+uint64(i), 10) + `"` }
	hash := func() string { return fmt.Sprintf(`"%016x%016x"`, r.Uint64(), r.Uint64()) }
	ts := func() string {
		t := time.Date(2017, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(r.Int64N(int64(9 * 365 * 24 * time.Hour))))
		return `"` + t.Format("2006-01-02T15:04:05.000000") + `+00:00"`
	}
	b.WriteString(`{"id":"` + guild + `","name":"Large Community","icon":` + hash() + `,"description":"A busy guild",` +
		`"splash":null,"discovery_splash":null,"banner":null,"owner_id":"300000000000000001","afk_channel_id":null,` +
		`"afk_timeout":300,"widget_enabled":false,"verification_level":2,"default_message_notifications":1,` +
		`"explicit_content_filter":2,"mfa_level":1,"application_id":null,"system_channel_id":"1150000000000000010",` +
		`"system_channel_flags":0,"rules_channel_id":null,"public_updates_channel_id":null,"max_presences":null,` +
		`"max_members":500000,"vanity_url_code":null,"premium_tier":3,"premium_subscription_count":42,` +
		`"preferred_locale":"en-US","max_video_channel_users":25,"nsfw_level":0,"premium_progress_bar_enabled":true,` +
		`"features":["COMMUNITY","NEWS","ANIMATED_ICON","THREADS_ENABLED","ROLE_ICONS"],` +
		`"joined_at":"2026-03-14T15:09:26.535000+00:00","large":true,"unavailable":false,"member_count":1000,"lazy":true,`)
	b.WriteString(`"roles":[`)
	for i := range 40 {
		if i > 0 {
			b.WriteByte(',')
		}
		color := r.IntN(1 << 24)
		fmt.Fprintf(&b, `{"id":%s,"name":"role-%d","color":%d,"colors":{"primary_color":%d,"secondary_color":null,"tertiary_color":null},`+
			`"hoist":%t,"icon":null,"unicode_emoji":null,"position":%d,"permissions":"%d","managed":false,"mentionable":%t,"flags":0}`,
			id(1309900000000000000, i), i, color, color, i%5 == 0, i, r.Uint64()>>12, i%3 == 0)
	}
	b.WriteString(`],"emojis":[`)
	for i := range 30 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%s,"name":"emoji_%d","roles":[],"require_colons":true,"managed":false,"animated":%t,"available":true}`,
			id(1200000000000000000, i), i, i%4 == 0)
	}
	b.WriteString(`],"channels":[`)
	for i := range 60 {
		if i > 0 {
			b.WriteByte(',')
		}
		typ := []int{0, 0, 0, 2, 4, 5, 15}[i%7]
		fmt.Fprintf(&b, `{"id":%s,"type":%d,"name":"channel-%d","position":%d,"parent_id":null,"topic":"Topic of channel %d",`+
			`"nsfw":false,"last_message_id":%s,"rate_limit_per_user":0,"flags":0,"permission_overwrites":[`+
			`{"id":"%s","type":0,"allow":"0","deny":"2048"},{"id":%s,"type":0,"allow":"3072","deny":"0"}]`,
			id(1150000000000000000, 100+i), typ, i, i, i, id(1310000000000000000, r.IntN(1_000_000)), guild, id(1309900000000000000, r.IntN(40)))
		if typ == 2 {
			b.WriteString(`,"bitrate":64000,"user_limit":0,"rtc_region":null`)
		}
		b.WriteString(`}`)
	}
	b.WriteString(`],"threads":[`)
	for i := range 12 {
		if i > 0 {
			b.WriteByte(',')
		}
		count, created := r.IntN(500), ts()
		fmt.Fprintf(&b, `{"id":%s,"guild_id":"%s","parent_id":%s,"owner_id":%s,"type":11,"name":"thread %d",`+
			`"last_message_id":%s,"rate_limit_per_user":0,"message_count":%d,"member_count":%d,"total_message_sent":%d,"flags":0,`+
			`"thread_metadata":{"archived":false,"auto_archive_duration":1440,"archive_timestamp":%s,"locked":false,"create_timestamp":%s}}`,
			id(1310000000000100000, i), guild, id(1150000000000000100, i), id(300000000000000000, r.IntN(1000)), i,
			id(1310000000000200000, i), count, 2+r.IntN(20), count, created, created)
	}
	b.WriteString(`],"members":[`)
	for i := range 1000 {
		if i > 0 {
			b.WriteByte(',')
		}
		nick := "null"
		if r.IntN(4) == 0 {
			nick = strconv.Quote("nick " + strconv.Itoa(i))
		}
		avatar := "null"
		if r.IntN(2) == 0 {
			avatar = hash()
		}
		roles := make([]string, r.IntN(5))
		for j := range roles {
			roles[j] = id(1309900000000000000, r.IntN(40))
		}
		premium := "null"
		if r.IntN(20) == 0 {
			premium = ts()
		}
		fmt.Fprintf(&b, `{"user":{"id":%s,"username":"user%d","global_name":%s,"discriminator":"0","avatar":%s,"public_flags":%d,`+
			`"avatar_decoration_data":null,"collectibles":null,"primary_guild":null,"clan":null},`+
			`"nick":%s,"avatar":null,"banner":null,"roles":[%s],"joined_at":%s,"premium_since":%s,"deaf":false,"mute":false,`+
			`"flags":%d,"pending":false,"communication_disabled_until":null}`,
			id(300000000000000000, i), i, strconv.Quote("User "+strconv.Itoa(i)), avatar, r.IntN(2)*64, nick,
			strings.Join(roles, ","), ts(), premium, r.IntN(2)*2)
	}
	b.WriteString(`],"voice_states":[`)
	for i := range 25 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"user_id":%s,"channel_id":%s,"session_id":"%016x%016x","deaf":false,"mute":false,"self_deaf":false,`+
			`"self_mute":%t,"self_video":false,"suppress":false,"request_to_speak_timestamp":null}`,
			id(300000000000000000, i*40), id(1150000000000000100, 3), r.Uint64(), r.Uint64(), i%2 == 0)
	}
	b.WriteString(`],"presences":[`)
	for i := range 330 {
		if i > 0 {
			b.WriteByte(',')
		}
		status := []string{"online", "idle", "dnd"}[r.IntN(3)]
		fmt.Fprintf(&b, `{"user":{"id":%s},"status":"%s","client_status":{"desktop":"%s"},"broadcast":null,"activities":[`,
			id(300000000000000000, i*3), status, status)
		if r.IntN(2) == 0 {
			fmt.Fprintf(&b, `{"type":0,"name":"Game %d","id":"%016x","created_at":%d,"timestamps":{"start":%d},"application_id":%s}`,
				r.IntN(50), r.Uint64(), 1763800000000+r.Int64N(1e7), 1763790000000+r.Int64N(1e7), id(400000000000000000, r.IntN(50)))
		}
		b.WriteString(`]}`)
	}
	b.WriteString(`],"stage_instances":[],"guild_scheduled_events":[],"soundboard_sounds":[]}`)
	return []byte(b.String())
}

// TestLargeGuildFile keeps the benchmark payload in step with its generator.
func TestLargeGuildFile(t *testing.T) {
	t.Parallel()
	want := largeGuild()
	if *update {
		if err := os.MkdirAll(filepath.Dir(largeGuildPath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(largeGuildPath, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(largeGuildPath)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale: run go test -update", largeGuildPath)
	}
	m, err := Decode("GUILD_CREATE", got)
	if err != nil {
		t.Fatal(err)
	}
	g := m.(*discordv1.GuildCreate).GetGuild()
	if len(g.GetMembers()) != 1000 || len(g.GetPresences()) != 330 || len(g.GetChannels()) != 60 {
		t.Errorf("decoded %d members, %d presences, %d channels", len(g.GetMembers()), len(g.GetPresences()), len(g.GetChannels()))
	}
	// The baseline must decode the same payload, or the comparison means nothing.
	var base jsGuildCreate
	if err := json.Unmarshal(got, &base); err != nil {
		t.Fatal(err)
	}
	if len(base.Members) != 1000 || base.Members[999].User.ID != strconv.FormatUint(g.GetMembers()[999].GetUser().GetId(), 10) {
		t.Error("baseline and decoder disagree")
	}
}

type benchCase struct {
	name  string
	event string
	path  string
	into  func() any // the baseline's target
}

var benchCases = []benchCase{
	{"MESSAGE_CREATE", "MESSAGE_CREATE", filepath.Join("testdata", "events", "MESSAGE_CREATE.json"), func() any { return &jsMessageCreate{} }},
	{"GUILD_CREATE_1000_members", "GUILD_CREATE", largeGuildPath, func() any { return &jsGuildCreate{} }},
	{"PRESENCE_UPDATE", "PRESENCE_UPDATE", filepath.Join("testdata", "events", "PRESENCE_UPDATE.json"), func() any { return &jsPresence{} }},
}

// measureCPU runs the benchmark loop body and reports CPU nanoseconds per operation beside the
// wall-clock figure (see processCPU).
func measureCPU(b *testing.B, body func()) {
	b.Helper()
	start := processCPU()
	n := 0
	for b.Loop() {
		body()
		n++
	}
	if used := processCPU() - start; used > 0 && n > 0 {
		b.ReportMetric(float64(used.Nanoseconds())/float64(n), "cpu-ns/op")
	}
}

func readBench(b *testing.B, path string) []byte {
	b.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkDecode measures this package's decoder.
func BenchmarkDecode(b *testing.B) {
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			data := readBench(b, bc.path)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			measureCPU(b, func() {
				if _, err := Decode(bc.event, data); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

// BenchmarkDecodeProtoreflect is BenchmarkDecode with every field written through protoreflect
// instead of straight into the generated structs: the measurement behind fast.go.
func BenchmarkDecodeProtoreflect(b *testing.B) {
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			data := readBench(b, bc.path)
			ec := eventCases[bc.event]
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			measureCPU(b, func() {
				if err := decodeWith(ec.mt.New(), ec.table, data, false); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

// BenchmarkEncodingJSON is the baseline: encoding/json into plain structs.
func BenchmarkEncodingJSON(b *testing.B) {
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			data := readBench(b, bc.path)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			measureCPU(b, func() {
				if err := json.Unmarshal(data, bc.into()); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

// BenchmarkParseFrame measures the gateway's per-frame work: op, s, t and the bounds of d.
func BenchmarkParseFrame(b *testing.B) {
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			data := readBench(b, bc.path)
			frame := append(append([]byte(`{"t":"`+bc.event+`","s":12345,"op":0,"d":`), data...), '}')
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			measureCPU(b, func() {
				if _, err := ParseFrame(frame); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

// BenchmarkRoutingKey measures reading the routing key from a raw payload.
func BenchmarkRoutingKey(b *testing.B) {
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			data := readBench(b, bc.path)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			measureCPU(b, func() {
				if _, err := RoutingKey(bc.event, data); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}
