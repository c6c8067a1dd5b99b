package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"

	discordv1 "github.com/kubecord/kubecord/gen/kubecord/discord/v1"
	"github.com/kubecord/kubecord/internal/discordjson"
)

// FuzzPresentKeys: any bytes give a key set or nil, never a panic; for a valid JSON object
// the set is exactly its keys, and nothing that is not an object yields keys.
func FuzzPresentKeys(f *testing.F) {
	for _, s := range []string{`{"a":1,"b":{"c":[1,2]},"d":null}`, `[]`, `{`, `{"a":}`, `"x"`, ``, ` {"a":1}`, `{"a":1,"a":2}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		keys := presentKeys(raw)
		trimmed := bytes.TrimLeft(raw, " \t\r\n")
		if keys != nil && (len(trimmed) == 0 || trimmed[0] != '{') {
			t.Fatalf("keys %v from a non-object %q", keys, raw)
		}
		var obj map[string]json.RawMessage
		if json.Valid(raw) && json.Unmarshal(raw, &obj) == nil && obj != nil {
			if len(keys) != len(obj) {
				t.Fatalf("keys %v, want those of %q", keys, raw)
			}
			for k := range obj {
				if !keys[k] {
					t.Fatalf("key %q of %q missing from %v", k, raw, keys)
				}
			}
		}
	})
}

// FuzzApply decodes arbitrary JSON as each cached event kind and applies it to a cache that
// holds a guild: malformed or hostile payloads are errors or no-ops, never panics.
func FuzzApply(f *testing.F) {
	names := []string{"READY", "GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE", "GUILD_ROLE_CREATE", "GUILD_ROLE_DELETE",
		"GUILD_MEMBER_ADD", "GUILD_MEMBER_UPDATE", "GUILD_MEMBER_REMOVE", "GUILD_MEMBERS_CHUNK", "CHANNEL_CREATE",
		"CHANNEL_UPDATE", "CHANNEL_DELETE", "THREAD_CREATE", "THREAD_LIST_SYNC", "USER_UPDATE", "VOICE_STATE_UPDATE",
		"PRESENCE_UPDATE", "MESSAGE_CREATE", "GUILD_EMOJIS_UPDATE", "GUILD_STICKERS_UPDATE"}
	f.Add(uint8(1), []byte(fullGuild1().json()))
	f.Add(uint8(6), []byte(`{"guild_id":"8388608","user":{"id":"10"},"roles":["1"]}`))
	f.Add(uint8(14), []byte(`{"guild_id":"8388608","channel_ids":[],"threads":[{"id":"5","type":11,"parent_id":"100"}],"members":[]}`))
	f.Add(uint8(16), []byte(`{"guild_id":"8388608","channel_id":null,"user_id":"10","member":{"user":{"id":"10"}}}`))
	f.Add(uint8(0), []byte(`{"v":10,"guilds":[{"id":"1","unavailable":true}],"shard":[0,1]}`))
	f.Fuzz(func(t *testing.T, which uint8, raw []byte) {
		c := New(NewMemory(), AllResources(), slog.New(slog.NewTextHandler(io.Discard, nil)))
		ctx := context.Background()
		setup := &discordv1.Event{Name: "GUILD_CREATE", Raw: []byte(fullGuild1().json()), Sequence: 1, ShardCount: 1}
		if err := discordjson.DecodeEvent(setup); err != nil {
			t.Fatal(err)
		}
		if err := c.Apply(ctx, setup); err != nil {
			t.Fatal(err)
		}
		ev := &discordv1.Event{Name: names[int(which)%len(names)], Raw: raw, Sequence: 2, ShardCount: 1}
		if err := discordjson.DecodeEvent(ev); err != nil {
			return // the gateway would deliver it raw-only; nothing typed to apply
		}
		_ = c.Apply(ctx, ev) // errors are fine; panics are not
		if _, err := c.Store().Counts(ctx); err != nil {
			t.Fatal(err)
		}
	})
}
