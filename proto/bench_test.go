package proto_test

import (
	"bytes"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	discordv1 "github.com/kubecord/kubecord/gen/kubecord/discord/v1"
	gatewayv1 "github.com/kubecord/kubecord/gen/kubecord/gateway/v1"
)

// sampleDelivery builds the Delivery of a typical guild MESSAGE_CREATE: typed payload plus the raw
// JSON (about 1.2 KB), as the gateway sends it on the Consume stream.
func sampleDelivery() *gatewayv1.Delivery {
	now := timestamppb.New(time.Date(2026, 11, 22, 22, 0, 0, 0, time.UTC))
	nick := "ops"
	raw := []byte(`{"type":0,"tts":false,"timestamp":"2026-11-22T22:00:00.000000+00:00","pinned":false,` +
		`"nonce":"1310000000000000123","mentions":[],"mention_roles":[],"mention_everyone":false,` +
		`"member":{"roles":["1150000000000000100"],"premium_since":null,"pending":false,"nick":"ops",` +
		`"mute":false,"joined_at":"2024-01-01T00:00:00.000000+00:00","flags":0,"deaf":false,` +
		`"communication_disabled_until":null,"banner":null,"avatar":null},"id":"1310000000000000124",` +
		`"flags":0,"embeds":[],"edited_timestamp":null,"content":"` + string(bytes.Repeat([]byte("x"), 600)) + `",` +
		`"components":[],"channel_type":0,"channel_id":"1150000000000000200","author":{"username":"someone",` +
		`"public_flags":0,"id":"1150000000000000300","global_name":"Someone","discriminator":"0",` +
		`"clan":null,"avatar_decoration_data":null,"avatar":"0123456789abcdef0123456789abcdef"},` +
		`"attachments":[],"guild_id":"1150000000000000001"}`)
	return &gatewayv1.Delivery{
		DeliveryId: 42,
		Id:         &discordv1.EventId{ShardId: 3, Sequence: 1234567},
		Attempt:    1,
		Event: &discordv1.Event{
			ShardId:      3,
			ShardCount:   16,
			Sequence:     1234567,
			Name:         "MESSAGE_CREATE",
			GuildId:      1150000000000000001,
			RoutingKey:   &discordv1.RoutingKey{Kind: discordv1.RoutingKey_KIND_GUILD, Id: 1150000000000000001},
			ReceivedAt:   now,
			TraceContext: map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
			SessionId:    "9c3a1f6be2d54a6f8c1d2e3f4a5b6c7d",
			Raw:          raw,
			Payload: &discordv1.Event_MessageCreate{MessageCreate: &discordv1.MessageCreate{
				GuildId: 1150000000000000001,
				Member: &discordv1.Member{
					Nick:     &nick,
					Roles:    []uint64{1150000000000000100},
					JoinedAt: timestamppb.New(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)),
				},
				Message: &discordv1.Message{
					Id:        1310000000000000124,
					ChannelId: 1150000000000000200,
					Author:    &discordv1.User{Id: 1150000000000000300, Username: "someone", Discriminator: "0"},
					Content:   string(bytes.Repeat([]byte("x"), 600)),
					Timestamp: now,
				},
			}},
		},
	}
}

// TestDeliveryRoundTrip guards the sample the benchmarks use: it must survive the wire intact.
func TestDeliveryRoundTrip(t *testing.T) {
	t.Parallel()
	in := sampleDelivery()
	b, err := proto.Marshal(in)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	out := &gatewayv1.Delivery{}
	if err := proto.Unmarshal(b, out); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	if !proto.Equal(in, out) {
		t.Fatalf("round trip changed the delivery:\n in: %v\nout: %v", in, out)
	}
	if got := out.GetEvent().GetMessageCreate().GetMessage().GetAuthor().GetId(); got != 1150000000000000300 {
		t.Errorf("author id after round trip = %d, want 1150000000000000300", got)
	}
}

// BenchmarkDeliveryMarshal measures encoding one Delivery (what the gateway does per event per
// group unless it reuses the encoded Event).
func BenchmarkDeliveryMarshal(b *testing.B) {
	d := sampleDelivery()
	size := proto.Size(d)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	buf := make([]byte, 0, size)
	for b.Loop() {
		var err error
		buf, err = proto.MarshalOptions{}.MarshalAppend(buf[:0], d)
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDeliveryUnmarshal measures decoding one Delivery (what a worker does per event).
func BenchmarkDeliveryUnmarshal(b *testing.B) {
	data, err := proto.Marshal(sampleDelivery())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var d gatewayv1.Delivery
		if err := proto.Unmarshal(data, &d); err != nil {
			b.Fatal(err)
		}
	}
}
