package sdk

import (
	"context"
	"errors"

	"google.golang.org/protobuf/types/known/durationpb"

	discordv1 "github.com/kubecord/kubecord/gen/kubecord/discord/v1"
	restv1 "github.com/kubecord/kubecord/gen/kubecord/rest/v1"
	statev1 "github.com/kubecord/kubecord/gen/kubecord/state/v1"
)

var (
	errNoState = errors.New("kubecord sdk: no state service configured: use WithState or KUBECORD_STATE_ADDR")
	errNoREST  = errors.New("kubecord sdk: no REST service configured: use WithREST or KUBECORD_REST_ADDR")
)

// State returns the state service client, or nil without WithState.
func (b *Bot) State() statev1.StateServiceClient { return b.stateCli }

// REST returns the REST service client, or nil without WithREST.
func (b *Bot) REST() restv1.RestServiceClient { return b.restCli }

// Consistency asks the state service to answer only once it has applied the
// event being handled in ctx (read-your-event). Nil outside a handler.
func Consistency(ctx context.Context) *statev1.Consistency {
	ev := EventFrom(ctx)
	if ev == nil || ev.GetSequence() == 0 {
		return nil
	}
	return &statev1.Consistency{ShardId: ev.GetShardId(), MinSequence: ev.GetSequence(), MaxWait: durationpb.New(1e9)}
}

// Member looks a member up in the state service, at least as new as the event
// being handled.
func (b *Bot) Member(ctx context.Context, guildID, userID uint64) (*discordv1.Member, error) {
	if b.stateCli == nil {
		return nil, errNoState
	}
	resp, err := b.stateCli.GetMember(ctx, &statev1.GetMemberRequest{GuildId: guildID, UserId: userID, Consistency: Consistency(ctx)})
	if err != nil {
		return nil, err
	}
	return resp.GetMember(), nil
}

// Guild looks a guild up in the state service, at least as new as the event
// being handled.
func (b *Bot) Guild(ctx context.Context, guildID uint64) (*discordv1.Guild, error) {
	if b.stateCli == nil {
		return nil, errNoState
	}
	resp, err := b.stateCli.GetGuild(ctx, &statev1.GetGuildRequest{GuildId: guildID, Consistency: Consistency(ctx)})
	if err != nil {
		return nil, err
	}
	return resp.GetGuild(), nil
}

// SendMessage posts a text message to a channel through the REST service.
func (b *Bot) SendMessage(ctx context.Context, channelID uint64, content string) (*discordv1.Message, error) {
	return b.CreateMessage(ctx, &restv1.CreateMessageRequest{ChannelId: channelID, Content: content})
}

// CreateMessage posts a message (embeds, components, files...) through the
// REST service. The request's bot defaults to the worker's.
func (b *Bot) CreateMessage(ctx context.Context, req *restv1.CreateMessageRequest) (*discordv1.Message, error) {
	if b.restCli == nil {
		return nil, errNoREST
	}
	if req.GetBot() == "" {
		req.Bot = b.cfg.restBot
	}
	resp, err := b.restCli.CreateMessage(ctx, req)
	if err != nil {
		return nil, err
	}
	return resp.GetMessage(), nil
}

// Reply answers a message in its channel, as a Discord reply to it.
func (b *Bot) Reply(ctx context.Context, to *discordv1.Message, content string) (*discordv1.Message, error) {
	return b.CreateMessage(ctx, &restv1.CreateMessageRequest{
		ChannelId: to.GetChannelId(),
		Content:   content,
		MessageReference: &discordv1.MessageReference{
			MessageId: to.GetId(),
			ChannelId: to.GetChannelId(),
		},
		AllowedMentions: &restv1.AllowedMentions{RepliedUser: false},
	})
}

// Respond answers an interaction with a message (callback type 4); ephemeral
// messages are seen only by the user who used the command.
func (b *Bot) Respond(ctx context.Context, in *discordv1.Interaction, content string, ephemeral bool) error {
	if b.restCli == nil {
		return errNoREST
	}
	var flags int64
	if ephemeral {
		flags = 1 << 6
	}
	_, err := b.restCli.CreateInteractionResponse(ctx, &restv1.CreateInteractionResponseRequest{
		Bot:              b.cfg.restBot,
		InteractionId:    in.GetId(),
		InteractionToken: in.GetToken(),
		Type:             4,
		Data:             &restv1.InteractionCallbackData{Content: content, Flags: flags},
	})
	return err
}
