// Package pingbot is the example bot's behaviour: it answers "!ping" messages
// and the /ping slash command with the gateway-to-reply latency. The ping
// example worker and `kubecord dev` both run it.
package pingbot

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	discordv1 "github.com/kubecord/kubecord/gen/kubecord/discord/v1"
	"github.com/kubecord/kubecord/sdk"
)

// Stats counts what the bot did, for `kubecord dev` to show.
type Stats struct {
	Messages atomic.Uint64 // MESSAGE_CREATE events seen
	Replies  atomic.Uint64 // pings answered
	Failures atomic.Uint64 // answers that failed
}

// Register adds the bot's handlers to b.
func Register(b *sdk.Bot, stats *Stats) {
	if stats == nil {
		stats = &Stats{}
	}
	sdk.On(b, func(ctx context.Context, e *discordv1.MessageCreate) error {
		stats.Messages.Add(1)
		m := e.GetMessage()
		if m.GetAuthor().GetBot() || !strings.EqualFold(strings.TrimSpace(m.GetContent()), "!ping") {
			return nil
		}
		if _, err := b.Reply(ctx, m, "pong "+since(ctx)); err != nil {
			stats.Failures.Add(1)
			return fmt.Errorf("replying to !ping in channel %d: %w", m.GetChannelId(), err)
		}
		stats.Replies.Add(1)
		return nil
	})
	sdk.On(b, func(ctx context.Context, e *discordv1.InteractionCreate) error {
		in := e.GetInteraction()
		if in.GetType() != 2 || in.GetData().GetName() != "ping" { // 2: APPLICATION_COMMAND
			return nil
		}
		if err := b.Respond(ctx, in, "pong "+since(ctx), false); err != nil {
			stats.Failures.Add(1)
			return fmt.Errorf("answering /ping: %w", err)
		}
		stats.Replies.Add(1)
		return nil
	})
}

// since says how long ago the gateway received the event being handled.
func since(ctx context.Context) string {
	ev := sdk.EventFrom(ctx)
	if ev.GetReceivedAt() == nil {
		return ""
	}
	return "(" + time.Since(ev.GetReceivedAt().AsTime()).Round(100*time.Microsecond).String() + " since the gateway got it)"
}
