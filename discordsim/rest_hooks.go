package discordsim

// emit sends the dispatch of a REST mutation to the gateway, which delivers
// it to the sessions of the shard owning guildID (shard 0 for DMs).
func (rs *restState) emit(guildID Snowflake, event string, d any) {
	rs.s.dispatch(guildID, event, d)
}
