package discordjson_test

import (
	"fmt"

	discordv1 "github.com/kubecord/kubecord/gen/kubecord/discord/v1"
	"github.com/kubecord/kubecord/internal/discordjson"
)

// The gateway's path for one frame: find op, s and t, route by the guild without decoding the
// payload, and decode it once, later, where the typed form is needed.
func Example() {
	frame := []byte(`{"t":"MESSAGE_CREATE","s":42,"op":0,"d":{"id":"1310000000000010001",` +
		`"channel_id":"1150000000000000010","guild_id":"1150000000000000001","content":"hello",` +
		`"author":{"id":"300000000000000001","username":"alice"},"timestamp":"2026-11-22T10:21:33.417000+00:00"}}`)

	f, err := discordjson.ParseFrame(frame)
	if err != nil {
		fmt.Println(err)
		return
	}
	route, err := discordjson.RoutingKey(f.Type, f.D)
	if err != nil {
		fmt.Println(err)
		return
	}
	ev := &discordv1.Event{Name: f.Type, Sequence: f.Seq, Raw: f.D, RoutingKey: route.Proto()}
	if err := discordjson.DecodeEvent(ev); err != nil {
		fmt.Println(err)
		return
	}
	m := ev.GetMessageCreate()
	fmt.Println(f.Op, f.Seq, f.Type, route.Kind, route.ID)
	fmt.Println(m.GetGuildId(), m.GetMessage().GetAuthor().GetUsername(), m.GetMessage().GetContent(),
		m.GetMessage().GetTimestamp().AsTime())

	_, err = discordjson.Decode("MESSAGE_CREATE", []byte(`{"id":"1","author":{"id":"not a snowflake"}}`))
	fmt.Println(err)
	// Output:
	// 0 42 MESSAGE_CREATE guild 1150000000000000001
	// 1150000000000000001 alice hello 2026-11-22 10:21:33.417 +0000 UTC
	// MESSAGE_CREATE: .author.id: invalid snowflake "not a snowflake"
}
