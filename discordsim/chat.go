package discordsim

import (
	"errors"
	"fmt"
)

// UserMessage has a person (a non-bot member of the channel's guild) post
// content in a text channel, as if typed in a Discord client: the message is
// stored, so bots can fetch it and reply to it, and dispatched as
// MESSAGE_CREATE to the bots' sessions.
func (s *Server) UserMessage(channelID, userID Snowflake, content string) (Message, error) {
	if s.rest == nil {
		return Message{}, errors.New("discordsim: server not started")
	}
	ch, ok := s.rest.channelInfo(channelID)
	if !ok {
		return Message{}, fmt.Errorf("discordsim: unknown channel %d", channelID)
	}
	if ch.guildID == 0 {
		return Message{}, fmt.Errorf("discordsim: channel %d is not a guild channel", channelID)
	}
	w := s.world
	w.mu.RLock()
	g, ok := w.guilds[ch.guildID]
	var member Member
	var user User
	if ok {
		member, ok = w.memberLocked(g, userID)
	}
	if ok && member.User != nil {
		user = *member.User
	}
	w.mu.RUnlock()
	if !ok {
		return Message{}, fmt.Errorf("discordsim: user %d is not a member of guild %d", userID, ch.guildID)
	}
	if user.Bot {
		return Message{}, fmt.Errorf("discordsim: user %d is a bot; bots post through the REST API", userID)
	}
	m := s.rest.newMessage(ch, user, &messageRequest{Content: &content})
	eventMember := member
	eventMember.User = nil // MESSAGE_CREATE carries the author as "author" and a partial member
	if _, err := s.rest.postMessage(ch, m, &eventMember); err != nil {
		return Message{}, err
	}
	return m, nil
}

// ChatSpot picks, deterministically from n, a guild text channel and a
// person who can talk in it: somewhere for UserMessage to post.
func (s *Server) ChatSpot(n uint64) (channelID, userID Snowflake, err error) {
	w := s.world
	w.mu.RLock()
	defer w.mu.RUnlock()
	ids := w.guildIDsLocked()
	for i := range ids {
		g := w.guilds[ids[(n+uint64(i))%uint64(len(ids))]]
		if g == nil || g.Unavailable || len(g.textChannels) == 0 {
			continue
		}
		channelID = g.textChannels[n%uint64(len(g.textChannels))]
		found := false
		w.forEachMemberLocked(g, 0, func(m Member) bool {
			if m.User != nil && !m.User.Bot {
				userID, found = m.User.ID, true
				return false
			}
			return true
		})
		if found {
			return channelID, userID, nil
		}
	}
	return 0, 0, errors.New("discordsim: no guild with a text channel and a human member")
}

// ChannelMessages returns up to limit of a channel's latest messages, newest
// first, as a bot would see them.
func (s *Server) ChannelMessages(channelID Snowflake, limit int) []Message {
	if s.rest == nil {
		return nil
	}
	return s.rest.msgs.list(channelID, 0, historyQuery{limit: limit})
}
