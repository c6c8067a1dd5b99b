package rest

import (
	"strconv"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kubecord/kubecord/discordsim"
	discordv1 "github.com/kubecord/kubecord/gen/kubecord/discord/v1"
	restv1 "github.com/kubecord/kubecord/gen/kubecord/rest/v1"
)

func TestCreateMessage(t *testing.T) {
	t.Parallel()
	sim := startSim(t, discordsim.RESTConfig{})
	ch := textChannels(t, sim, tokenA)[0]
	chID, err := strconv.ParseUint(ch, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	s := startService(t, serviceConfig(sim))
	res, err := s.client.CreateMessage(t.Context(), &restv1.CreateMessageRequest{
		Bot: "beta", ChannelId: chID, Content: "typed hello",
		Embeds:          []*discordv1.Embed{{Title: proto.String("An embed"), Description: proto.String("with text"), Color: proto.Int32(0x5865F2)}},
		AllowedMentions: &restv1.AllowedMentions{Parse: []string{}},
		Files:           []*restv1.File{{Name: "note.txt", Data: []byte("typed file")}},
	})
	if err != nil {
		t.Fatalf("CreateMessage: %v", err)
	}
	m := res.GetMessage()
	if m.GetContent() != "typed hello" || m.GetChannelId() != chID || len(m.GetEmbeds()) != 1 ||
		m.GetEmbeds()[0].GetTitle() != "An embed" || len(m.GetAttachments()) != 1 {
		t.Errorf("message %v: want the content, channel, embed and attachment sent", m)
	}
	if _, err := s.client.CreateMessage(t.Context(), &restv1.CreateMessageRequest{ChannelId: 1, Content: "x"}); status.Code(err) != codes.NotFound {
		t.Errorf("CreateMessage to an unknown channel: %v, want NOT_FOUND", err)
	}
	if _, err := s.client.CreateMessage(t.Context(), &restv1.CreateMessageRequest{ChannelId: chID}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("CreateMessage of an empty message: %v, want INVALID_ARGUMENT (Discord's 50006)", err)
	}
}

func TestCreateInteractionResponse(t *testing.T) {
	t.Parallel()
	sim := startSim(t, discordsim.RESTConfig{})
	w := learnWorld(t, sim, tokenA)
	ch := w.channels[0]
	members := w.members[w.guildOf[ch]]
	if len(members) == 0 {
		t.Fatal("no member in the channel's guild")
	}
	sf := func(s string) discordsim.Snowflake {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return discordsim.Snowflake(n)
	}
	s := startService(t, serviceConfig(sim))
	in, err := sim.CreateInteraction(discordsim.InteractionSpec{ChannelID: sf(ch), GuildID: sf(w.guildOf[ch]), UserID: sf(members[0])})
	if err != nil {
		t.Fatal(err)
	}
	req := &restv1.CreateInteractionResponseRequest{
		InteractionId: uint64(in.ID), InteractionToken: in.Token, Type: 4, WithResponse: true,
		Data: &restv1.InteractionCallbackData{Content: "pong", Flags: 1 << 6},
	}
	res, err := s.client.CreateInteractionResponse(t.Context(), req)
	if err != nil {
		t.Fatalf("CreateInteractionResponse: %v", err)
	}
	if res.GetMessage().GetContent() != "pong" {
		t.Errorf("message %v, want the response message with_response returns", res.GetMessage())
	}
	if _, err := s.client.CreateInteractionResponse(t.Context(), req); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("answering twice: %v, want FAILED_PRECONDITION (40060)", err)
	}
}
