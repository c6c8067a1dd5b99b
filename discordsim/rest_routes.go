package discordsim

// restRoutes is the table of simulated routes: method, documented path (as
// in routes.tsv), ratelimit bucket (bucketTable), how it authenticates and
// its handler. The major parameter is the first channel, guild, webhook,
// application or interaction id in the path. Routes documented by Discord
// but missing here answer 404 {"message": "404: Not Found", "code": 0}.
func restRoutes() []routeDef {
	return []routeDef{
		{method: "GET", path: "/gateway", bucket: "gateway", auth: authOptional, handle: handleGateway},
		{method: "GET", path: "/gateway/bot", bucket: "gateway", handle: handleGatewayBot},
		{method: "GET", path: "/users/@me", bucket: "users-me", handle: handleGetMe},
		{method: "GET", path: "/users/{user.id}", bucket: "default", handle: handleGetUser},
		{method: "POST", path: "/users/@me/channels", bucket: "dm-create", handle: handleCreateDM},
		{method: "GET", path: "/users/@me/guilds", bucket: "users-guilds", handle: handleMyGuilds},

		{method: "GET", path: "/applications/{application.id}/commands", bucket: "commands", handle: handleListCommands},
		{method: "POST", path: "/applications/{application.id}/commands", bucket: "commands", handle: handleCreateCommand},
		{method: "PUT", path: "/applications/{application.id}/commands", bucket: "commands", handle: handleBulkOverwriteCommands},
		{method: "GET", path: "/applications/{application.id}/commands/{command.id}", bucket: "commands", handle: handleGetCommand},
		{method: "PATCH", path: "/applications/{application.id}/commands/{command.id}", bucket: "commands", handle: handleEditCommand},
		{method: "DELETE", path: "/applications/{application.id}/commands/{command.id}", bucket: "commands", handle: handleDeleteCommand},
		{method: "GET", path: "/applications/{application.id}/guilds/{guild.id}/commands", bucket: "commands", handle: handleListCommands},
		{method: "POST", path: "/applications/{application.id}/guilds/{guild.id}/commands", bucket: "commands", handle: handleCreateCommand},
		{method: "PUT", path: "/applications/{application.id}/guilds/{guild.id}/commands", bucket: "commands", handle: handleBulkOverwriteCommands},
		{method: "GET", path: "/applications/{application.id}/guilds/{guild.id}/commands/{command.id}", bucket: "commands", handle: handleGetCommand},
		{method: "PATCH", path: "/applications/{application.id}/guilds/{guild.id}/commands/{command.id}", bucket: "commands", handle: handleEditCommand},
		{method: "DELETE", path: "/applications/{application.id}/guilds/{guild.id}/commands/{command.id}", bucket: "commands", handle: handleDeleteCommand},

		{method: "GET", path: "/channels/{channel.id}", bucket: "channel", handle: handleGetChannel},
		{method: "PATCH", path: "/channels/{channel.id}", bucket: "channel", handle: handleModifyChannel},
		{method: "DELETE", path: "/channels/{channel.id}", bucket: "channel-delete", handle: handleDeleteChannel},
		{method: "POST", path: "/channels/{channel.id}/typing", bucket: "typing", handle: handleTyping},
		{method: "PUT", path: "/channels/{channel.id}/permissions/{overwrite.id}", bucket: "channel-permissions", handle: handleEditOverwrite},
		{method: "DELETE", path: "/channels/{channel.id}/permissions/{overwrite.id}", bucket: "channel-permissions", handle: handleDeleteOverwrite},
		{method: "POST", path: "/channels/{channel.id}/threads", bucket: "threads", handle: handleStartThread},
		{method: "POST", path: "/channels/{channel.id}/messages/{message.id}/threads", bucket: "threads", handle: handleStartThreadFromMessage},
		{method: "PUT", path: "/channels/{channel.id}/thread-members/@me", bucket: "thread-members", handle: handleThreadMembership(true)},
		{method: "DELETE", path: "/channels/{channel.id}/thread-members/@me", bucket: "thread-members", handle: handleThreadMembership(false)},

		{method: "GET", path: "/channels/{channel.id}/messages", bucket: "messages-read", handle: handleListMessages},
		{method: "POST", path: "/channels/{channel.id}/messages", bucket: "message-create", handle: handleCreateMessage},
		{method: "GET", path: "/channels/{channel.id}/messages/{message.id}", bucket: "messages-read", handle: handleGetMessage},
		{method: "PATCH", path: "/channels/{channel.id}/messages/{message.id}", bucket: "message-edit", handle: handleEditMessage},
		{method: "DELETE", path: "/channels/{channel.id}/messages/{message.id}", bucket: "message-delete", handle: handleDeleteMessage},
		{method: "POST", path: "/channels/{channel.id}/messages/bulk-delete", bucket: "bulk-delete", handle: handleBulkDelete},

		{method: "PUT", path: "/channels/{channel.id}/messages/{message.id}/reactions/{emoji.id}/@me", bucket: "reactions", handle: handleAddReaction},
		{method: "DELETE", path: "/channels/{channel.id}/messages/{message.id}/reactions/{emoji.id}/@me", bucket: "reactions", handle: handleRemoveReaction},
		{method: "DELETE", path: "/channels/{channel.id}/messages/{message.id}/reactions/{emoji.id}/{user.id}", bucket: "reactions", handle: handleRemoveReaction},
		{method: "GET", path: "/channels/{channel.id}/messages/{message.id}/reactions/{emoji.id}", bucket: "reactions", handle: handleListReactions},
		{method: "DELETE", path: "/channels/{channel.id}/messages/{message.id}/reactions", bucket: "reactions", handle: handleClearReactions},
		{method: "DELETE", path: "/channels/{channel.id}/messages/{message.id}/reactions/{emoji.id}", bucket: "reactions", handle: handleClearReactions},

		{method: "GET", path: "/channels/{channel.id}/pins", bucket: "pins", handle: handleListPins},
		{method: "PUT", path: "/channels/{channel.id}/pins/{message.id}", bucket: "pins", handle: handleSetPin(true)},
		{method: "DELETE", path: "/channels/{channel.id}/pins/{message.id}", bucket: "pins", handle: handleSetPin(false)},
		{method: "GET", path: "/channels/{channel.id}/messages/pins", bucket: "pins", handle: handleListPinsPaged},
		{method: "PUT", path: "/channels/{channel.id}/messages/pins/{message.id}", bucket: "pins", handle: handleSetPin(true)},
		{method: "DELETE", path: "/channels/{channel.id}/messages/pins/{message.id}", bucket: "pins", handle: handleSetPin(false)},

		{method: "GET", path: "/guilds/{guild.id}", bucket: "guild", handle: handleGetGuild},
		{method: "PATCH", path: "/guilds/{guild.id}", bucket: "guild", handle: handleModifyGuild},
		{method: "GET", path: "/guilds/{guild.id}/channels", bucket: "guild-channels", handle: handleGuildChannels},
		{method: "POST", path: "/guilds/{guild.id}/channels", bucket: "guild-channels", handle: handleCreateChannel},
		{method: "GET", path: "/guilds/{guild.id}/members", bucket: "members-read", handle: handleListMembers},
		{method: "GET", path: "/guilds/{guild.id}/members/search", bucket: "members-search", handle: handleSearchMembers},
		{method: "GET", path: "/guilds/{guild.id}/members/{user.id}", bucket: "members-read", handle: handleGetMember},
		{method: "PATCH", path: "/guilds/{guild.id}/members/{user.id}", bucket: "member-modify", handle: handleModifyMember},
		{method: "DELETE", path: "/guilds/{guild.id}/members/{user.id}", bucket: "member-kick", handle: handleKickMember},
		{method: "PUT", path: "/guilds/{guild.id}/members/{user.id}/roles/{role.id}", bucket: "member-roles", handle: handleMemberRole(true)},
		{method: "DELETE", path: "/guilds/{guild.id}/members/{user.id}/roles/{role.id}", bucket: "member-roles", handle: handleMemberRole(false)},
		{method: "GET", path: "/guilds/{guild.id}/emojis", bucket: "emojis", handle: handleListEmojis},
		{method: "GET", path: "/guilds/{guild.id}/emojis/{emoji.id}", bucket: "emojis", handle: handleGetEmoji},
		{method: "GET", path: "/guilds/{guild.id}/roles", bucket: "roles-read", handle: handleListRoles},
		{method: "POST", path: "/guilds/{guild.id}/roles", bucket: "roles", handle: handleCreateRole},
		{method: "PATCH", path: "/guilds/{guild.id}/roles/{role.id}", bucket: "roles", handle: handleModifyRole},
		{method: "DELETE", path: "/guilds/{guild.id}/roles/{role.id}", bucket: "roles", handle: handleDeleteRole},
		{method: "GET", path: "/guilds/{guild.id}/bans", bucket: "bans", handle: handleListBans},
		{method: "GET", path: "/guilds/{guild.id}/bans/{user.id}", bucket: "bans", handle: handleGetBan},
		{method: "PUT", path: "/guilds/{guild.id}/bans/{user.id}", bucket: "bans", handle: handleBan},
		{method: "DELETE", path: "/guilds/{guild.id}/bans/{user.id}", bucket: "bans", handle: handleUnban},

		{method: "POST", path: "/channels/{channel.id}/webhooks", bucket: "webhook-create", handle: handleCreateWebhook},
		{method: "GET", path: "/channels/{channel.id}/webhooks", bucket: "webhook-create", handle: handleChannelWebhooks},
		{method: "GET", path: "/webhooks/{webhook.id}", bucket: "default", handle: handleGetWebhook},

		// Token routes: no Authorization, no global limit, one bucket per
		// webhook (or application) id + token.
		{method: "POST", path: "/interactions/{interaction.id}/{interaction.token}/callback", bucket: "interaction-callback", auth: authToken, noGlobal: true, handle: handleInteractionCallback},
		{method: "GET", path: "/webhooks/{webhook.id}/{webhook.token}", bucket: "webhook", auth: authToken, noGlobal: true, handle: handleGetWebhookToken},
		{method: "DELETE", path: "/webhooks/{webhook.id}/{webhook.token}", bucket: "webhook", auth: authToken, noGlobal: true, handle: handleDeleteWebhookToken},
		{method: "POST", path: "/webhooks/{webhook.id}/{webhook.token}", bucket: "webhook", auth: authToken, noGlobal: true, handle: handleExecuteWebhook},
		{method: "GET", path: "/webhooks/{webhook.id}/{webhook.token}/messages/{message.id}", bucket: "webhook", auth: authToken, noGlobal: true, handle: handleGetWebhookMessage},
		{method: "PATCH", path: "/webhooks/{webhook.id}/{webhook.token}/messages/{message.id}", bucket: "webhook", auth: authToken, noGlobal: true, handle: handleEditWebhookMessage},
		{method: "DELETE", path: "/webhooks/{webhook.id}/{webhook.token}/messages/{message.id}", bucket: "webhook", auth: authToken, noGlobal: true, handle: handleDeleteWebhookMessage},
	}
}
