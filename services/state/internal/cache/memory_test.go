package cache

import (
	"bytes"
	"context"
	"fmt"
	"testing"
)

// TestMemoryCompaction rewrites members and users until the arenas are mostly garbage and
// checks that compaction kept every live blob and dropped the garbage.
func TestMemoryCompaction(t *testing.T) {
	t.Parallel()
	m := NewMemory()
	ctx := context.Background()
	const guildID, members = 7, 50
	b := &Batch{}
	b.putGuild(guildID, []byte("guild"), 0, 0, 0, false)
	if err := m.Commit(ctx, b); err != nil {
		t.Fatal(err)
	}
	blob := func(kind string, round, id int) []byte {
		return bytes.Repeat([]byte(fmt.Sprintf("%s-%d-%d;", kind, round, id)), 20)
	}
	compacted := false
	const rounds = 400
	for round := range rounds {
		b.reset()
		for id := 1; id <= members; id++ {
			b.putMember(guildID, uint64(id), blob("m", round, id), blob("u", round, id))
		}
		if err := m.Commit(ctx, b); err != nil {
			t.Fatal(err)
		}
		if m.memberA.garbage == 0 && round > 0 {
			compacted = true
		}
	}
	if !compacted {
		t.Fatalf("no compaction after %d rounds (garbage %d of %d bytes)", rounds, m.memberA.garbage, m.memberA.used)
	}
	for id := 1; id <= members; id++ {
		mb, err := m.Member(ctx, guildID, uint64(id))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(mb.Member, blob("m", rounds-1, id)) || !bytes.Equal(mb.User, blob("u", rounds-1, id)) {
			t.Fatalf("member %d after compaction: %q / %q", id, mb.Member[:20], mb.User[:20])
		}
	}
	if m.memberA.used > 4<<20 || m.userA.used > 4<<20 {
		t.Fatalf("arenas hold %d and %d bytes for %d members: compaction does not reclaim", m.memberA.used, m.userA.used, members)
	}
}

func TestArenaLargeBlob(t *testing.T) {
	t.Parallel()
	var a arena
	small := a.put([]byte("x"))
	big := bytes.Repeat([]byte{7}, arenaChunkSize+10)
	ref := a.put(big)
	if !bytes.Equal(a.get(ref), big) || string(a.get(small)) != "x" || a.get(0) != nil {
		t.Fatal("arena lost a blob larger than a chunk")
	}
	empty := a.put(nil)
	if got := a.get(empty); got == nil || len(got) != 0 {
		t.Fatalf("empty blob = %v, want empty and non-nil", got)
	}
}

func TestPresentKeys(t *testing.T) {
	t.Parallel()
	cases := []struct {
		raw  string
		want []string // nil: not an object
	}{
		{`{"id":"1","nick":null,"roles":["1",{"x":"}"}],"user":{"id":"2"},"n":-1.5e3,"b":true}`, []string{"id", "nick", "roles", "user", "n", "b"}},
		{` { } `, []string{}},
		{`{"a\u0062":1,"c":"\"}"}`, []string{"ab", "c"}},
		{`[1]`, nil},
		{`{"a":1`, nil},
		{`{"a" 1}`, nil},
		{`{"a":}`, nil},
		{`{"a":"unterminated}`, nil},
		{``, nil},
	}
	for _, tc := range cases {
		got := presentKeys([]byte(tc.raw))
		if tc.want == nil {
			if got != nil {
				t.Errorf("presentKeys(%q) = %v, want nil", tc.raw, got)
			}
			continue
		}
		if len(got) != len(tc.want) {
			t.Errorf("presentKeys(%q) = %v, want %v", tc.raw, got, tc.want)
			continue
		}
		for _, k := range tc.want {
			if !got[k] {
				t.Errorf("presentKeys(%q) = %v, missing %q", tc.raw, got, k)
			}
		}
	}
}
