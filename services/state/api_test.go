package state

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	statev1 "github.com/kubecord/kubecord/gen/kubecord/state/v1"
	"github.com/kubecord/kubecord/internal/redistest"
	"github.com/kubecord/kubecord/services/state/internal/cache"
)

const (
	guildID uint64 = 1 << 22 * 2
	otherID uint64 = 1 << 22 * 3
	ownerID uint64 = 900
	// @everyone: VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | READ_MESSAGE_HISTORY | CONNECT.
	everyonePerms  uint64 = 1<<10 | 1<<11 | 1<<14 | 1<<16 | 1<<20
	manageMessages uint64 = 1 << 13
)

// world feeds the fixture guild: roles, members (one timed out), channels with overwrites,
// threads, a voice state and a presence; and a second guild sharing member 10.
func world(t *testing.T, s *testService) {
	t.Helper()
	roles := strings.Join([]string{
		fmt.Sprintf(`{"id":"%d","name":"@everyone","permissions":"%d","position":0}`, guildID, everyonePerms),
		fmt.Sprintf(`{"id":"501","name":"mods","permissions":"%d","position":2}`, manageMessages),
		`{"id":"502","name":"admins","permissions":"8","position":1}`,
	}, ",")
	members := strings.Join([]string{
		memberJSON(ownerID, "owner", ""),
		memberJSON(10, "plain", ""),
		memberJSON(11, "mod", "", 501),
		memberJSON(12, "admin", "", 502),
		memberJSON(13, "muted", `,"communication_disabled_until":"2099-01-01T00:00:00.000000+00:00"`),
		memberJSON(14, "mod2", "", 501),
		memberJSON(15, "other", `,"communication_disabled_until":"2001-01-01T00:00:00.000000+00:00"`),
	}, ",")
	ow := func(id uint64, typ int, allow, deny uint64) string {
		return fmt.Sprintf(`{"id":"%d","type":%d,"allow":"%d","deny":"%d"}`, id, typ, allow, deny)
	}
	ch := func(id uint64, typ int, parent uint64, pos int, ows ...string) string {
		p := "null"
		if parent != 0 {
			p = fmt.Sprintf(`"%d"`, parent)
		}
		return fmt.Sprintf(`{"id":"%d","type":%d,"name":"c%d","position":%d,"parent_id":%s,"permission_overwrites":[%s]}`, id, typ, id, pos, p, strings.Join(ows, ","))
	}
	channels := strings.Join([]string{
		ch(100, 0, 0, 3),
		ch(101, 0, 0, 1, ow(guildID, 0, 0, 1<<11), ow(501, 0, 1<<11, 0), ow(10, 1, 1<<11, 0)),
		ch(102, 0, 0, 2, ow(guildID, 0, 0, 1<<10), ow(501, 0, 1<<10, 0)),
		ch(103, 2, 0, 4, ow(guildID, 0, 0, 1<<20)),
	}, ",")
	threads := ch(200, 11, 100, 0) + "," + ch(201, 11, 101, 0)
	s.send(t, "GUILD_CREATE", fmt.Sprintf(`{"id":"%d","name":"fixture","owner_id":"%d","member_count":7,"roles":[%s],
"emojis":[{"id":"77","name":"wave","roles":[],"require_colons":true,"managed":false,"animated":false,"available":true}],
"members":[%s],"channels":[%s],"threads":[%s],
"voice_states":[{"channel_id":"103","user_id":"10","session_id":"v","deaf":false,"mute":false,"self_deaf":false,"self_mute":false,"self_video":false,"suppress":false}],
"presences":[{"user":{"id":"11"},"status":"online","activities":[],"client_status":{"web":"online"}}]}`,
		guildID, ownerID, roles, members, channels, threads))
	s.send(t, "GUILD_CREATE", fmt.Sprintf(`{"id":"%d","name":"other","owner_id":"1","roles":[],"members":[%s]}`, otherID, memberJSON(10, "plain", "")))
}

func TestAPIReads(t *testing.T) {
	t.Parallel()
	for _, sk := range storeKinds() {
		t.Run(sk.name, func(t *testing.T) {
			t.Parallel()
			s := startService(t, sk.open(t), nil)
			world(t, s)
			ctx := t.Context()
			cl := s.client

			g, err := cl.GetGuild(ctx, &statev1.GetGuildRequest{GuildId: guildID})
			if err != nil || g.GetGuild().GetName() != "fixture" || len(g.GetGuild().GetRoles()) != 3 || len(g.GetGuild().GetMembers()) != 0 {
				t.Fatalf("GetGuild = %v, %v", g, err)
			}
			m, err := cl.GetMember(ctx, &statev1.GetMemberRequest{GuildId: guildID, UserId: 11})
			if err != nil || m.GetMember().GetUser().GetUsername() != "mod" || !slices.Equal(m.GetMember().GetRoles(), []uint64{501}) {
				t.Fatalf("GetMember = %v, %v", m, err)
			}
			u, err := cl.GetUser(ctx, &statev1.GetUserRequest{UserId: 12})
			if err != nil || u.GetUser().GetUsername() != "admin" {
				t.Fatalf("GetUser = %v, %v", u, err)
			}
			r, err := cl.GetRole(ctx, &statev1.GetRoleRequest{GuildId: guildID, RoleId: 501})
			if err != nil || r.GetRole().GetName() != "mods" {
				t.Fatalf("GetRole = %v, %v", r, err)
			}
			e, err := cl.GetEmoji(ctx, &statev1.GetEmojiRequest{GuildId: guildID, EmojiId: 77})
			if err != nil || e.GetEmoji().GetName() != "wave" {
				t.Fatalf("GetEmoji = %v, %v", e, err)
			}
			c, err := cl.GetChannel(ctx, &statev1.GetChannelRequest{ChannelId: 101})
			if err != nil || c.GetChannel().GetGuildId() != guildID || len(c.GetChannel().GetPermissionOverwrites()) != 3 {
				t.Fatalf("GetChannel = %v, %v", c, err)
			}
			v, err := cl.GetVoiceState(ctx, &statev1.GetVoiceStateRequest{GuildId: guildID, UserId: 10})
			if err != nil || v.GetVoiceState().GetChannelId() != 103 || v.GetVoiceState().GetMember().GetUser().GetUsername() != "plain" {
				t.Fatalf("GetVoiceState = %v, %v (want channel 103 and the member attached)", v, err)
			}
			p, err := cl.GetPresence(ctx, &statev1.GetPresenceRequest{GuildId: guildID, UserId: 11})
			if err != nil || p.GetPresence().GetStatus() != "online" || p.GetPresence().GetUser().GetUsername() != "mod" {
				t.Fatalf("GetPresence = %v, %v (want the full user attached)", p, err)
			}

			// Paging: page size 3 over 7 members, ordered by user id, until the token is empty.
			var ids []uint64
			token := ""
			for pages := 0; ; pages++ {
				if pages > 5 {
					t.Fatalf("ListMembers does not terminate")
				}
				resp, err := cl.ListMembers(ctx, &statev1.ListMembersRequest{GuildId: guildID, PageSize: 3, PageToken: token})
				if err != nil {
					t.Fatalf("ListMembers: %v", err)
				}
				for _, m := range resp.GetMembers() {
					ids = append(ids, m.GetUser().GetId())
					if m.GetUser().GetUsername() == "" {
						t.Errorf("member %d without its user", m.GetUser().GetId())
					}
				}
				if token = resp.GetNextPageToken(); token == "" {
					break
				}
			}
			if want := []uint64{10, 11, 12, 13, 14, 15, ownerID}; !slices.Equal(ids, want) {
				t.Fatalf("ListMembers ids = %v, want %v", ids, want)
			}
			gl, err := cl.ListGuilds(ctx, &statev1.ListGuildsRequest{PageSize: 1})
			if err != nil || len(gl.GetGuilds()) != 1 || gl.GetGuilds()[0].GetId() != guildID || gl.GetNextPageToken() == "" {
				t.Fatalf("ListGuilds page 1 = %v, %v", gl, err)
			}
			gl, err = cl.ListGuilds(ctx, &statev1.ListGuildsRequest{PageSize: 1, PageToken: gl.GetNextPageToken()})
			if err != nil || len(gl.GetGuilds()) != 1 || gl.GetGuilds()[0].GetId() != otherID {
				t.Fatalf("ListGuilds page 2 = %v, %v", gl, err)
			}

			chs, err := cl.ListChannels(ctx, &statev1.ListChannelsRequest{GuildId: guildID})
			if err != nil {
				t.Fatal(err)
			}
			var cids []uint64
			for _, c := range chs.GetChannels() {
				cids = append(cids, c.GetId())
			}
			if want := []uint64{101, 102, 100, 103}; !slices.Equal(cids, want) {
				t.Fatalf("ListChannels = %v, want %v (by position)", cids, want)
			}
			chs, err = cl.ListChannels(ctx, &statev1.ListChannelsRequest{GuildId: guildID, IncludeThreads: true})
			if err != nil || len(chs.GetChannels()) != 6 {
				t.Fatalf("ListChannels with threads: %d channels, %v; want 6", len(chs.GetChannels()), err)
			}
			rl, err := cl.ListRoles(ctx, &statev1.ListRolesRequest{GuildId: guildID})
			if err != nil || len(rl.GetRoles()) != 3 || rl.GetRoles()[1].GetId() != 502 {
				t.Fatalf("ListRoles = %v, %v (want ordered by position)", rl, err)
			}
			vl, err := cl.ListVoiceStates(ctx, &statev1.ListVoiceStatesRequest{GuildId: guildID, ChannelId: 103})
			if err != nil || len(vl.GetVoiceStates()) != 1 {
				t.Fatalf("ListVoiceStates = %v, %v", vl, err)
			}
			vl, err = cl.ListVoiceStates(ctx, &statev1.ListVoiceStatesRequest{GuildId: guildID, ChannelId: 100})
			if err != nil || len(vl.GetVoiceStates()) != 0 {
				t.Fatalf("ListVoiceStates of an empty channel = %v, %v", vl, err)
			}

			bm, err := cl.BatchGetMembers(ctx, &statev1.BatchGetMembersRequest{GuildId: guildID, UserIds: []uint64{12, 999, 10}})
			if err != nil || len(bm.GetMembers()) != 2 || bm.GetMembers()[0].GetUser().GetId() != 12 || !slices.Equal(bm.GetNotFound(), []uint64{999}) {
				t.Fatalf("BatchGetMembers = %v, %v", bm, err)
			}
			bu, err := cl.BatchGetUsers(ctx, &statev1.BatchGetUsersRequest{UserIds: []uint64{10, 998}})
			if err != nil || len(bu.GetUsers()) != 1 || !slices.Equal(bu.GetNotFound(), []uint64{998}) {
				t.Fatalf("BatchGetUsers = %v, %v", bu, err)
			}
			bc, err := cl.BatchGetChannels(ctx, &statev1.BatchGetChannelsRequest{ChannelIds: []uint64{200, 997}})
			if err != nil || len(bc.GetChannels()) != 1 || !slices.Equal(bc.GetNotFound(), []uint64{997}) {
				t.Fatalf("BatchGetChannels = %v, %v", bc, err)
			}
			mg, err := cl.ListMutualGuilds(ctx, &statev1.ListMutualGuildsRequest{UserId: 10})
			if err != nil || !slices.Equal(mg.GetGuildIds(), []uint64{guildID, otherID}) {
				t.Fatalf("ListMutualGuilds = %v, %v", mg, err)
			}
			st, err := cl.GetStats(ctx, &statev1.GetStatsRequest{})
			if err != nil || st.GetGuilds() != 2 || st.GetMembers() != 8 || st.GetUsers() != 7 || st.GetChannels() != 4 || st.GetThreads() != 2 ||
				st.GetRoles() != 3 || st.GetStore() != sk.name || st.GetEventsApplied() != 2 || len(st.GetShards()) != 1 || st.GetShards()[0].GetLastSequence() != 2 ||
				st.GetMemoryBytes() == 0 {
				t.Fatalf("GetStats = %v, %v", st, err)
			}
		})
	}
}

func TestAPIErrors(t *testing.T) {
	t.Parallel()
	s := startService(t, storeKinds()[0].open(t), nil)
	world(t, s)
	off := startService(t, storeKinds()[0].open(t), func(c *Config) { c.Resources.Members = false; c.Resources.Presences = false })
	ctx := t.Context()
	cl := s.client
	tooMany := make([]uint64, maxBatch+1)
	for i := range tooMany {
		tooMany[i] = uint64(i + 1)
	}
	cases := []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"guild id 0", func() error { _, err := cl.GetGuild(ctx, &statev1.GetGuildRequest{}); return err }, codes.InvalidArgument, "guild_id is required"},
		{"unknown guild", func() error { _, err := cl.GetGuild(ctx, &statev1.GetGuildRequest{GuildId: 5}); return err }, codes.NotFound, "guild 5 is not cached"},
		{"member user id 0", func() error {
			_, err := cl.GetMember(ctx, &statev1.GetMemberRequest{GuildId: guildID})
			return err
		}, codes.InvalidArgument, "user_id is required"},
		{"unknown member", func() error {
			_, err := cl.GetMember(ctx, &statev1.GetMemberRequest{GuildId: guildID, UserId: 4})
			return err
		}, codes.NotFound, "member 4"},
		{"unknown role", func() error {
			_, err := cl.GetRole(ctx, &statev1.GetRoleRequest{GuildId: guildID, RoleId: 4})
			return err
		}, codes.NotFound, "role 4"},
		{"unknown channel", func() error { _, err := cl.GetChannel(ctx, &statev1.GetChannelRequest{ChannelId: 4}); return err }, codes.NotFound, "channel 4"},
		{"unknown user", func() error { _, err := cl.GetUser(ctx, &statev1.GetUserRequest{UserId: 4}); return err }, codes.NotFound, "user 4"},
		{"not in voice", func() error {
			_, err := cl.GetVoiceState(ctx, &statev1.GetVoiceStateRequest{GuildId: guildID, UserId: 11})
			return err
		}, codes.NotFound, "not in a voice channel"},
		{"offline", func() error {
			_, err := cl.GetPresence(ctx, &statev1.GetPresenceRequest{GuildId: guildID, UserId: 10})
			return err
		}, codes.NotFound, "offline"},
		{"page size too big", func() error {
			_, err := cl.ListMembers(ctx, &statev1.ListMembersRequest{GuildId: guildID, PageSize: 5000})
			return err
		}, codes.InvalidArgument, "page_size 5000"},
		{"malformed page token", func() error {
			_, err := cl.ListMembers(ctx, &statev1.ListMembersRequest{GuildId: guildID, PageToken: "garbage"})
			return err
		}, codes.InvalidArgument, "page_token"},
		{"list members of unknown guild", func() error {
			_, err := cl.ListMembers(ctx, &statev1.ListMembersRequest{GuildId: 5})
			return err
		}, codes.NotFound, "guild 5"},
		{"batch too big", func() error {
			_, err := cl.BatchGetUsers(ctx, &statev1.BatchGetUsersRequest{UserIds: tooMany})
			return err
		}, codes.InvalidArgument, "at most 1000"},
		{"batch empty", func() error {
			_, err := cl.BatchGetChannels(ctx, &statev1.BatchGetChannelsRequest{})
			return err
		}, codes.InvalidArgument, "empty"},
		{"batch with zero id", func() error {
			_, err := cl.BatchGetMembers(ctx, &statev1.BatchGetMembersRequest{GuildId: guildID, UserIds: []uint64{1, 0}})
			return err
		}, codes.InvalidArgument, "user_ids[1] is 0"},
		{"channel of another guild", func() error {
			_, err := cl.ComputePermissions(ctx, &statev1.ComputePermissionsRequest{GuildId: otherID, UserId: 10, ChannelId: 100})
			return err
		}, codes.InvalidArgument, "belongs to guild"},
		{"negative max_wait", func() error {
			_, err := cl.GetGuild(ctx, &statev1.GetGuildRequest{GuildId: guildID, Consistency: &statev1.Consistency{MinSequence: 1, MaxWait: durationpb.New(-time.Second)}})
			return err
		}, codes.InvalidArgument, "max_wait"},
		{"members turned off", func() error {
			_, err := off.client.GetMember(ctx, &statev1.GetMemberRequest{GuildId: guildID, UserId: 10})
			return err
		}, codes.FailedPrecondition, "--cache-members=false"},
		{"presences turned off", func() error {
			_, err := off.client.GetPresence(ctx, &statev1.GetPresenceRequest{GuildId: guildID, UserId: 10})
			return err
		}, codes.FailedPrecondition, "--cache-presences=false"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.call()
			if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.msg) {
				t.Fatalf("got %v, want %s containing %q", err, tc.code, tc.msg)
			}
		})
	}
}

func TestComputePermissions(t *testing.T) {
	t.Parallel()
	for _, sk := range storeKinds() {
		t.Run(sk.name, func(t *testing.T) {
			t.Parallel()
			now := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
			s := startService(t, sk.open(t), func(c *Config) { c.Now = func() time.Time { return now } })
			world(t, s)
			const (
				view, send, embed, history = 1 << 10, 1 << 11, 1 << 14, 1 << 16
				all                        = 1<<53 - 1
			)
			cases := []struct {
				name            string
				user, channel   uint64
				want            uint64
				owner, admin    bool
				timedOut        bool
				wantUntilInYear int
			}{
				{"owner", ownerID, 0, all, true, false, false, 0},
				{"owner in a hidden channel", ownerID, 102, all, true, false, false, 0},
				{"administrator role", 12, 102, all, false, true, false, 0},
				{"@everyone only", 10, 0, everyonePerms, false, false, false, 0},
				{"@everyone and a role", 11, 0, everyonePerms | manageMessages, false, false, false, 0},
				{"no overwrites", 10, 100, everyonePerms, false, false, false, 0},
				{"member overwrite allows what @everyone denies", 10, 101, everyonePerms, false, false, false, 0},
				{"role overwrite allows what @everyone denies", 14, 101, everyonePerms | manageMessages, false, false, false, 0},
				{"send denied drops embed links", 15, 101, everyonePerms &^ (send | embed), false, false, false, 0},
				{"view denied means nothing", 10, 102, 0, false, false, false, 0},
				{"role overwrite grants view", 11, 102, everyonePerms | manageMessages, false, false, false, 0},
				{"voice without connect only sees", 10, 103, view, false, false, false, 0},
				{"thread without send-in-threads", 10, 200, everyonePerms &^ (send | embed), false, false, false, 0},
				{"timed out member", 13, 0, view | history, false, false, true, 2099},
				{"timed out member in a channel", 13, 100, view | history, false, false, true, 2099},
				{"expired timeout", 15, 0, everyonePerms, false, false, false, 0},
			}
			for _, tc := range cases {
				resp, err := s.client.ComputePermissions(t.Context(), &statev1.ComputePermissionsRequest{GuildId: guildID, UserId: tc.user, ChannelId: tc.channel})
				if err != nil {
					t.Errorf("%s: %v", tc.name, err)
					continue
				}
				if resp.GetPermissions() != tc.want || resp.GetIsOwner() != tc.owner || resp.GetIsAdministrator() != tc.admin || resp.GetTimedOut() != tc.timedOut {
					t.Errorf("%s: got perms %b owner %v admin %v timed out %v; want %b %v %v %v", tc.name,
						resp.GetPermissions(), resp.GetIsOwner(), resp.GetIsAdministrator(), resp.GetTimedOut(), tc.want, tc.owner, tc.admin, tc.timedOut)
				}
				if tc.timedOut && resp.GetTimedOutUntil().AsTime().Year() != tc.wantUntilInYear {
					t.Errorf("%s: timed_out_until = %v", tc.name, resp.GetTimedOutUntil())
				}
			}
		})
	}
}

func TestConsistency(t *testing.T) {
	t.Parallel()
	for _, sk := range storeKinds() {
		t.Run(sk.name, func(t *testing.T) {
			t.Parallel()
			s := startService(t, sk.open(t), nil)
			world(t, s) // sequences 1 and 2
			ctx := t.Context()
			cons := func(seq uint64, wait time.Duration) *statev1.Consistency {
				return &statev1.Consistency{ShardId: 0, MinSequence: seq, MaxWait: durationpb.New(wait)}
			}
			if _, err := s.client.GetMember(ctx, &statev1.GetMemberRequest{GuildId: guildID, UserId: 10, Consistency: cons(2, time.Millisecond)}); err != nil {
				t.Fatalf("read at an applied sequence: %v", err)
			}
			_, err := s.client.GetMember(ctx, &statev1.GetMemberRequest{GuildId: guildID, UserId: 10, Consistency: cons(3, 30*time.Millisecond)})
			if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), "up to sequence 2, not yet 3") {
				t.Fatalf("read ahead of the cache: %v, want DEADLINE_EXCEEDED saying how far the shard is", err)
			}
			// A read waiting for sequence 3 sees the member that event 3 adds.
			type result struct {
				name string
				err  error
			}
			done := make(chan result, 1)
			go func() {
				resp, err := s.client.GetMember(ctx, &statev1.GetMemberRequest{GuildId: guildID, UserId: 50, Consistency: cons(3, 10*time.Second)})
				done <- result{resp.GetMember().GetUser().GetUsername(), err}
			}()
			s.send(t, "GUILD_MEMBER_ADD", fmt.Sprintf(`{"guild_id":"%d",%s`, guildID, memberJSON(50, "late", "")[1:]))
			select {
			case r := <-done:
				if r.err != nil || r.name != "late" {
					t.Fatalf("waiting read: %q, %v; want the member added by event 3", r.name, r.err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("waiting read did not return")
			}
		})
	}
}

func TestNotStarted(t *testing.T) {
	t.Parallel()
	srv, err := New(DefaultConfig(), quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	_, err = srv.GetGuild(context.Background(), &statev1.GetGuildRequest{GuildId: 1})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("before Start: %v, want UNAVAILABLE", err)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"defaults", func(*Config) {}, ""},
		{"redis url scheme", func(c *Config) { c.RedisURL = "localhost:6379" }, "--redis-url must start with redis://"},
		{"wait above max", func(c *Config) { c.DefaultWait = time.Minute }, "--consistency-wait"},
		{"zero in flight", func(c *Config) { c.MaxInFlight = 0 }, "--max-in-flight"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := DefaultConfig()
			tc.mutate(&c)
			err := c.Validate()
			if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestRedisReadReplica: a second state service on the same Redis (no gateways of its own)
// serves what the first one applies, and its consistency waits see the first one's progress.
func TestRedisReadReplica(t *testing.T) {
	t.Parallel()
	addr := redistest.Start(t).Addr
	open := func() cache.Store {
		st, err := cache.NewRedis(t.Context(), "redis://"+addr, "kubecord:replica:")
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	writer := startService(t, open(), nil)
	reader := startService(t, open(), nil)
	world(t, writer) // sequences 1 and 2
	ctx := t.Context()
	m, err := reader.client.GetMember(ctx, &statev1.GetMemberRequest{GuildId: guildID, UserId: 11,
		Consistency: &statev1.Consistency{MinSequence: 2, MaxWait: durationpb.New(time.Second)}})
	if err != nil || m.GetMember().GetUser().GetUsername() != "mod" {
		t.Fatalf("read replica GetMember = %v, %v", m, err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := reader.client.GetMember(ctx, &statev1.GetMemberRequest{GuildId: guildID, UserId: 60,
			Consistency: &statev1.Consistency{MinSequence: 3, MaxWait: durationpb.New(10 * time.Second)}})
		done <- err
	}()
	writer.send(t, "GUILD_MEMBER_ADD", fmt.Sprintf(`{"guild_id":"%d",%s`, guildID, memberJSON(60, "new", "")[1:]))
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("read replica waiting for sequence 3: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("read replica did not see sequence 3")
	}
	st, err := reader.client.GetStats(ctx, &statev1.GetStatsRequest{})
	if err != nil || st.GetMembers() != 9 || st.GetStore() != "redis" || st.GetEventsApplied() != 0 {
		t.Fatalf("read replica stats = %v, %v (want the writer's 9 members, none applied here)", st, err)
	}
}

// brokenStore answers reads with an outage error, as an unreachable Redis does.
type brokenStore struct{ cache.Store }

var errOutage = errors.New("dial tcp 127.0.0.1:6379: connection refused")

func (brokenStore) Member(context.Context, uint64, uint64) (cache.MemberBlob, error) {
	return cache.MemberBlob{}, errOutage
}
func (brokenStore) Guild(context.Context, uint64) ([]byte, error) { return nil, errOutage }
func (brokenStore) Progress(context.Context) ([]cache.Progress, error) {
	return nil, errOutage
}

// TestStoreOutage: a store that cannot be read gives UNAVAILABLE (retryable), never NOT_FOUND.
func TestStoreOutage(t *testing.T) {
	t.Parallel()
	s := startService(t, brokenStore{cache.NewMemory()}, nil)
	ctx := t.Context()
	for name, call := range map[string]func() error{
		"GetMember": func() error {
			_, err := s.client.GetMember(ctx, &statev1.GetMemberRequest{GuildId: 1, UserId: 2})
			return err
		},
		"GetGuild": func() error { _, err := s.client.GetGuild(ctx, &statev1.GetGuildRequest{GuildId: 1}); return err },
		"consistent read": func() error {
			_, err := s.client.GetChannel(ctx, &statev1.GetChannelRequest{ChannelId: 1, Consistency: &statev1.Consistency{MinSequence: 1}})
			return err
		},
	} {
		if err := call(); status.Code(err) != codes.Unavailable {
			t.Errorf("%s during an outage: %v, want UNAVAILABLE", name, err)
		}
	}
}

func TestFlags(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		ok   bool
		want func(Config) bool
	}{
		{[]string{"--gateways", "a:1, b:2", "--cache-presences=false", "--max-in-flight", "64"}, true, func(c Config) bool {
			return slices.Equal(c.Gateways, []string{"a:1", "b:2"}) && !c.Resources.Presences && c.Resources.Members && c.MaxInFlight == 64
		}},
		{[]string{"--max-in-flight", "12abc"}, false, nil},
		{[]string{"--max-in-flight", "0"}, false, nil},
	}
	for _, tc := range cases {
		c := DefaultConfig()
		fs := flag.NewFlagSet("state", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c.RegisterFlags(fs)
		err := fs.Parse(tc.args)
		if (err == nil) != tc.ok || (tc.want != nil && !tc.want(c)) {
			t.Errorf("%v: err %v, config %+v", tc.args, err, c)
		}
	}
}
