package state

import (
	"time"

	discordv1 "github.com/kubecord/kubecord/gen/kubecord/discord/v1"
)

// Permission bits Discord defines that the computation needs.
const (
	permAdministrator          = 1 << 3
	permViewChannel            = 1 << 10
	permSendMessages           = 1 << 11
	permSendTTSMessages        = 1 << 12
	permEmbedLinks             = 1 << 14
	permAttachFiles            = 1 << 15
	permReadMessageHistory     = 1 << 16
	permMentionEveryone        = 1 << 17
	permConnect                = 1 << 20
	permSendMessagesInThreads  = 1 << 38
	permAll                    = 1<<53 - 1 // bits 0..52 are in use
	overwriteTypeRole          = 0
	overwriteTypeMember        = 1
	channelTypeGuildVoice      = 2
	channelTypeGuildStageVoice = 13
)

// permResult is the outcome of a computation.
type permResult struct {
	perms    uint64
	owner    bool
	admin    bool
	timedOut bool
	until    time.Time
}

// basePermissions is a member's guild-level permissions: owner gets all; otherwise @everyone
// (the role whose id is the guild id) OR every role of the member, all when ADMINISTRATOR.
func basePermissions(g *discordv1.Guild, m *discordv1.Member, userID uint64) permResult {
	if g.GetOwnerId() == userID {
		return permResult{perms: permAll, owner: true}
	}
	roles := make(map[uint64]uint64, len(g.GetRoles()))
	for _, r := range g.GetRoles() {
		roles[r.GetId()] = r.GetPermissions()
	}
	perms := roles[g.GetId()]
	for _, id := range m.GetRoles() {
		perms |= roles[id] // roles no longer cached (deleted) add nothing
	}
	if perms&permAdministrator != 0 {
		return permResult{perms: permAll, admin: true}
	}
	return permResult{perms: perms}
}

// applyOverwrites applies a channel's overwrites in Discord's order: @everyone, then all of
// the member's roles together, then the member's own; each as deny then allow.
func applyOverwrites(perms uint64, ch *discordv1.Channel, guildID uint64, m *discordv1.Member, userID uint64) uint64 {
	ows := ch.GetPermissionOverwrites()
	memberRoles := make(map[uint64]bool, len(m.GetRoles()))
	for _, id := range m.GetRoles() {
		memberRoles[id] = true
	}
	for _, ow := range ows {
		if ow.GetId() == guildID && ow.GetType() == overwriteTypeRole {
			perms = perms&^ow.GetDeny() | ow.GetAllow()
		}
	}
	var allow, deny uint64
	for _, ow := range ows {
		if ow.GetType() == overwriteTypeRole && ow.GetId() != guildID && memberRoles[ow.GetId()] {
			allow |= ow.GetAllow()
			deny |= ow.GetDeny()
		}
	}
	perms = perms&^deny | allow
	for _, ow := range ows {
		if ow.GetType() == overwriteTypeMember && ow.GetId() == userID {
			perms = perms&^ow.GetDeny() | ow.GetAllow()
		}
	}
	return perms
}

// channelPermissions computes permissions in ch from the guild-level result. For a thread,
// parent is its parent channel: threads take the parent's overwrites, and sending in them
// is SEND_MESSAGES_IN_THREADS rather than SEND_MESSAGES.
func channelPermissions(base permResult, ch, parent *discordv1.Channel, guildID uint64, m *discordv1.Member, userID uint64) uint64 {
	if base.owner || base.admin {
		return permAll
	}
	target := ch
	if parent != nil {
		target = parent
	}
	perms := applyOverwrites(base.perms, target, guildID, m, userID)
	if parent != nil {
		if perms&permSendMessagesInThreads != 0 {
			perms |= permSendMessages
		} else {
			perms &^= permSendMessages
		}
	}
	return implicit(perms, target.GetType())
}

// implicit applies Discord's implicit rules: no VIEW_CHANNEL means nothing; no SEND_MESSAGES
// means none of what only makes sense when sending; no CONNECT in voice means only seeing.
func implicit(perms uint64, channelType int32) uint64 {
	if perms&permViewChannel == 0 {
		return 0
	}
	if perms&permSendMessages == 0 {
		perms &^= permMentionEveryone | permSendTTSMessages | permAttachFiles | permEmbedLinks
	}
	if (channelType == channelTypeGuildVoice || channelType == channelTypeGuildStageVoice) && perms&permConnect == 0 {
		perms &= permViewChannel
	}
	return perms
}

// applyTimeout leaves a timed-out member (communication_disabled_until in the future) only
// VIEW_CHANNEL and READ_MESSAGE_HISTORY; owners and administrators are never timed out.
func applyTimeout(r *permResult, m *discordv1.Member, now time.Time) {
	until := m.GetCommunicationDisabledUntil()
	if until == nil || r.owner || r.admin {
		return
	}
	t := until.AsTime()
	if !t.After(now) {
		return
	}
	r.timedOut = true
	r.until = t
	r.perms &= permViewChannel | permReadMessageHistory
}
