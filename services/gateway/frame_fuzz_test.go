package gateway

import (
	"testing"

	"google.golang.org/protobuf/proto"

	discordv1 "github.com/kubecord/kubecord/gen/kubecord/discord/v1"
	gatewayv1 "github.com/kubecord/kubecord/gen/kubecord/gateway/v1"
	"github.com/kubecord/kubecord/services/gateway/internal/delivery"
)

// FuzzDeliveryFrame checks, for any event bytes and delivery fields, that the hand-built
// frame is exactly what proto.Marshal would produce for the same ConsumeResponse, and that
// stripping the typed payload never panics and keeps a decodable event.
func FuzzDeliveryFrame(f *testing.F) {
	seed, err := proto.Marshal(&discordv1.Event{ShardId: 1, Sequence: 9, Name: "MESSAGE_CREATE", Raw: []byte(`{"id":"1"}`),
		Payload: &discordv1.Event_MessageCreate{MessageCreate: &discordv1.MessageCreate{Message: &discordv1.Message{Content: "x"}}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed, uint64(1), uint32(1), uint64(9), uint32(1), false)
	f.Add([]byte{}, uint64(1<<60), uint32(0), uint64(0), uint32(7), true)
	f.Add([]byte{0xff, 0x01}, uint64(3), uint32(2), uint64(1<<40), uint32(2), true)
	f.Fuzz(func(t *testing.T, event []byte, tag uint64, shard uint32, seq uint64, attempt uint32, redelivered bool) {
		var ev discordv1.Event
		if proto.Unmarshal(event, &ev) != nil {
			// Only well-formed events are ever framed; still, stripping must not panic.
			_ = stripTypedPayload(event)
			return
		}
		d := delivery.Delivery{Tag: tag, Attempt: attempt, Redelivered: redelivered,
			Event: &delivery.Event{ID: delivery.EventID{Shard: int(shard), Seq: seq}}}
		frame := appendDeliveryFrame(nil, d, event)
		var got gatewayv1.ConsumeResponse
		if err := proto.Unmarshal(frame, &got); err != nil {
			t.Fatalf("frame does not decode: %v", err)
		}
		gd := got.GetDelivery()
		if gd.GetDeliveryId() != tag || gd.GetAttempt() != attempt || gd.GetRedelivered() != redelivered ||
			gd.GetId().GetShardId() != shard || gd.GetId().GetSequence() != seq || !proto.Equal(gd.GetEvent(), &ev) {
			t.Fatalf("frame decodes to %v", gd)
		}
		var stripped discordv1.Event
		if err := proto.Unmarshal(stripTypedPayload(event), &stripped); err != nil {
			t.Fatalf("stripped event does not decode: %v", err)
		}
		if stripped.GetPayload() != nil || stripped.GetSequence() != ev.GetSequence() || string(stripped.GetRaw()) != string(ev.GetRaw()) {
			t.Fatalf("stripped event %v from %v", &stripped, &ev)
		}
	})
}
