package discordsim

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
)

// FuzzDecodeInbound feeds arbitrary client frames to the gateway's inbound
// decoder and to the per-op payload decoders: none may panic, a frame
// accepted by the decoder always has an op, and a rejected one always gets
// one of the documented close codes.
func FuzzDecodeInbound(f *testing.F) {
	for _, seed := range []string{
		`{"op":1,"d":null}`,
		`{"op":1,"d":42}`,
		`{"op":2,"d":{"token":"x","intents":513,"shard":[0,1],"large_threshold":50,"properties":{"os":"linux"}}}`,
		`{"op":6,"d":{"token":"x","session_id":"abc","seq":10}}`,
		`{"op":8,"d":{"guild_id":"123","query":"","limit":0,"presences":true,"nonce":"n"}}`,
		`{"op":8,"d":{"guild_id":123,"user_ids":["1",2,"x"]}}`,
		`{"op":4,"d":{"guild_id":"1","channel_id":null,"self_mute":true,"self_deaf":false}}`,
		`{"op":3,"d":{"since":null,"activities":[{"name":"x","type":0}],"status":"idle","afk":false}}`,
		`{"d":1}`, `{"op":"1"}`, `[]`, `null`, `{`, "\x00\xff", strings.Repeat(" ", 4097),
	} {
		f.Add([]byte(seed), true)
	}
	f.Add([]byte{0x78, 0x9c, 0x00}, false)
	f.Fuzz(func(t *testing.T, data []byte, text bool) {
		mt := websocket.BinaryMessage
		if text {
			mt = websocket.TextMessage
		}
		in, code, reason := decodeInbound(mt, data)
		switch code {
		case 0:
			if in.Op == nil {
				t.Fatal("accepted a frame without op")
			}
			if len(data) > maxInbound {
				t.Fatal("accepted a frame over 4096 bytes")
			}
		case CloseDecodeError, CloseUnknownOpcode:
			if reason == "" {
				t.Fatal("close without a reason")
			}
			return
		default:
			t.Fatalf("unexpected close code %d", code)
		}
		// The op payload decoders must not panic either.
		var id identifyPayload
		_ = json.Unmarshal(in.D, &id)
		var rp resumePayload
		_ = json.Unmarshal(in.D, &rp)
		var mr memberRequest
		if json.Unmarshal(in.D, &mr) == nil && len(mr.UserIDs) > 0 {
			var ids []json.RawMessage
			if json.Unmarshal(mr.UserIDs, &ids) == nil {
				for _, raw := range ids {
					var s Snowflake
					if s.UnmarshalJSON(raw) == nil {
						_ = notFoundID(s)
					}
				}
			}
		}
		var vp voicePayload
		_ = json.Unmarshal(in.D, &vp)
		var pp presencePayload
		_ = json.Unmarshal(in.D, &pp)
	})
}
