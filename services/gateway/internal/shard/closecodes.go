package shard

import (
	"errors"
	"fmt"
)

// action is what a shard does after its connection ends.
type action int

const (
	actResume            action = iota // reconnect to resume_gateway_url and resume
	actIdentify                        // forget the session, reconnect and identify
	actIdentifyAfterWait               // op 9 d=false: wait 1-5 s, then identify
	actFatalShard                      // stop this shard with an error
	actFatalAll                        // stop every shard with an error
	actStop                            // the manager is stopping
)

func (a action) String() string {
	switch a {
	case actResume:
		return "resume"
	case actIdentify:
		return "identify"
	case actIdentifyAfterWait:
		return "identify after a wait"
	case actFatalShard:
		return "stop the shard"
	case actFatalAll:
		return "stop every shard"
	case actStop:
		return "stop"
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// closeResumable is the code a shard closes with when it wants to resume: anything but
// 1000 and 1001, which would end the session.
const closeResumable = 4900

// ErrFatal is wrapped by the errors of close codes that must not be retried.
var ErrFatal = errors.New("fatal gateway close")

// classifyClose maps a gateway close code to the shard's next step and, for fatal codes,
// an error that says what to fix. Codes follow Discord's close event table.
func classifyClose(code int, shardID, shardCount int) (action, error) {
	switch code {
	case 4000, 4001, 4002, 4005, 4008:
		return actResume, nil
	case 4003, 4007, 4009:
		return actIdentify, nil
	case 4004:
		return actFatalAll, fmt.Errorf("%w 4004: authentication failed: Discord rejected the bot token; set a valid token (Developer Portal, Bot, Reset Token)", ErrFatal)
	case 4010:
		return actFatalShard, fmt.Errorf("%w 4010: invalid shard: shard [%d, %d] is not valid for this bot; use the shard count from GET /gateway/bot", ErrFatal, shardID, shardCount)
	case 4011:
		return actFatalShard, fmt.Errorf("%w 4011: sharding required: shard [%d, %d] would hold too many guilds; raise the shard count (GET /gateway/bot recommends one)", ErrFatal, shardID, shardCount)
	case 4012:
		return actFatalShard, fmt.Errorf("%w 4012: invalid API version: the gateway does not accept the version in the URL; use v=10", ErrFatal)
	case 4013:
		return actFatalShard, fmt.Errorf("%w 4013: invalid intents: the intents bitfield has unknown bits; fix the configured intents", ErrFatal)
	case 4014:
		return actFatalShard, fmt.Errorf("%w 4014: disallowed intents: a privileged intent (GUILD_MEMBERS, GUILD_PRESENCES or MESSAGE_CONTENT) is not enabled for this bot; enable it in the Developer Portal or remove it from the intents", ErrFatal)
	}
	// 4006 is gone from the table, 1000/1001 from the server, 1006 and anything unknown:
	// try to resume; if the session is gone, the server answers with op 9.
	return actResume, nil
}
