package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/kubecord/kubecord/discordsim"
	discordv1 "github.com/kubecord/kubecord/gen/kubecord/discord/v1"
	statev1 "github.com/kubecord/kubecord/gen/kubecord/state/v1"
	"github.com/kubecord/kubecord/internal/runtime"
	"github.com/kubecord/kubecord/services/gateway"
	"github.com/kubecord/kubecord/services/state/internal/cache"
)

// waitFor polls cond until it holds, failing the test after 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		select {
		case <-tick.C:
		case <-t.Context().Done():
			t.Fatalf("test ended waiting for %s", what)
		}
	}
}

// runService runs svc with internal/runtime on a loopback port until the test ends.
func runService(t testing.TB, svc runtime.Service) *grpc.ClientConn {
	t.Helper()
	rcfg := runtime.DefaultConfig(0, 0)
	rcfg.MetricsListen = ""
	rcfg.DrainDelay = 0
	rcfg.ShutdownTimeout = 5 * time.Second
	srv, err := runtime.NewServer(rcfg, svc, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runtime.Run(ctx, srv) }()
	select {
	case <-srv.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("%s did not start: %v", svc.Name(), err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatalf("%s did not become ready", svc.Name())
	}
	conn, err := grpc.NewClient(srv.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s run: %v", svc.Name(), err)
		}
	})
	return conn
}

// simREST calls the simulator's REST API as the bot.
func simREST(t *testing.T, sim *discordsim.Server, method, path string, out any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, sim.URL()+"/api/v10"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bot "+sim.Bots()[0].Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: HTTP %d", method, path, resp.StatusCode)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: decoding: %v", method, path, err)
		}
	}
}

// startStack runs discordsim (guilds guilds, one shard), the gateway service (group state
// declared) and a state service on store consuming from it.
func startStack(t *testing.T, guilds int, store cache.Store) (*discordsim.Server, *Server, statev1.StateServiceClient) {
	t.Helper()
	sim, err := discordsim.New(discordsim.Config{Guilds: guilds, Members: 400, Shards: 1,
		HeartbeatInterval: 2 * time.Second}) // long enough not to flap on a loaded machine
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)

	gcfg := gateway.DefaultConfig()
	gcfg.Token = sim.Bots()[0].Token
	gcfg.RESTBase = sim.URL() + "/api/v10"
	gcfg.ShardCount = 1
	// GUILDS, GUILD_MEMBERS, GUILD_VOICE_STATES, GUILD_PRESENCES, GUILD_MESSAGES, MESSAGE_CONTENT.
	gcfg.Intents = 1<<0 | 1<<1 | 1<<7 | 1<<8 | 1<<9 | 1<<15
	gcfg.GatewayID = "e2e"
	gcfg.StreamHeartbeat = time.Second
	// Declared, the state group buffers from the first event on, even before the
	// state service joins: deployments run the gateway with --groups=state.
	gcfg.Groups = []string{Group}
	gw, err := gateway.New(gcfg, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	gwConn := runService(t, gw)

	scfg := DefaultConfig()
	scfg.Gateways = []string{gwConn.Target()}
	scfg.MemberID = "state-e2e"
	scfg.ReconnectMin, scfg.ReconnectMax = 10*time.Millisecond, 100*time.Millisecond
	st, err := NewWithStore(scfg, store, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	cl := statev1.NewStateServiceClient(runService(t, st))
	return sim, st, cl
}

// TestLifecycleThroughGateway runs discordsim, the gateway service and the state service
// (consuming as group "state") and checks the cache against the simulator's world through
// READY and the GUILD_CREATE backfill, a kick, a non-resumable session loss (a new READY and
// GUILD_CREATEs that must replace stale data), a resume and generated load.
func TestLifecycleThroughGateway(t *testing.T) {
	t.Parallel()
	const guilds = 8
	for _, sk := range storeKinds() {
		t.Run(sk.name, func(t *testing.T) {
			t.Parallel()
			sim, st, cl := startStack(t, guilds, sk.open(t))
			ctx := t.Context()

			stats := func() *statev1.GetStatsResponse {
				s, err := cl.GetStats(ctx, &statev1.GetStatsRequest{})
				if err != nil {
					t.Fatalf("GetStats: %v", err)
				}
				return s
			}
			var last *statev1.GetStatsResponse
			allAvailable := func() bool {
				last = stats()
				return last.GetGuilds() == guilds && last.GetUnavailableGuilds() == 0
			}
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("last stats: %v", last)
				}
			})
			waitFor(t, "every guild's GUILD_CREATE applied", allAvailable)

			// The cache agrees with the simulator's REST view.
			gl, err := cl.ListGuilds(ctx, &statev1.ListGuildsRequest{})
			if err != nil || len(gl.GetGuilds()) != guilds {
				t.Fatalf("ListGuilds: %d guilds, %v", len(gl.GetGuilds()), err)
			}
			var target *discordv1.Guild
			for _, g := range gl.GetGuilds() {
				var rg struct {
					Name  string `json:"name"`
					Owner string `json:"owner_id"`
				}
				simREST(t, sim, "GET", fmt.Sprintf("/guilds/%d", g.GetId()), &rg)
				if rg.Name != g.GetName() || rg.Owner != fmt.Sprint(g.GetOwnerId()) {
					t.Errorf("guild %d: cache says %q owned by %d, the simulator %q owned by %s", g.GetId(), g.GetName(), g.GetOwnerId(), rg.Name, rg.Owner)
				}
				if target == nil || g.GetMemberCount() < target.GetMemberCount() {
					target = g // the smallest guild: all its members come with GUILD_CREATE
				}
			}
			var restMembers []struct {
				User struct {
					ID       string `json:"id"`
					Username string `json:"username"`
				} `json:"user"`
				Roles []string `json:"roles"`
			}
			simREST(t, sim, "GET", fmt.Sprintf("/guilds/%d/members?limit=1000", target.GetId()), &restMembers)
			lm, err := cl.ListMembers(ctx, &statev1.ListMembersRequest{GuildId: target.GetId(), PageSize: 1000})
			if err != nil {
				t.Fatal(err)
			}
			if len(lm.GetMembers()) != len(restMembers) || len(restMembers) == 0 {
				t.Fatalf("guild %d: %d members cached, %d on the simulator", target.GetId(), len(lm.GetMembers()), len(restMembers))
			}
			byID := map[string]string{}
			for _, m := range restMembers {
				byID[m.User.ID] = m.User.Username
			}
			for _, m := range lm.GetMembers() {
				if byID[fmt.Sprint(m.GetUser().GetId())] != m.GetUser().GetUsername() {
					t.Errorf("member %d: cached username %q, simulator %q", m.GetUser().GetId(), m.GetUser().GetUsername(), byID[fmt.Sprint(m.GetUser().GetId())])
				}
			}
			owner := target.GetOwnerId()
			perms, err := cl.ComputePermissions(ctx, &statev1.ComputePermissionsRequest{GuildId: target.GetId(), UserId: owner})
			if err != nil || !perms.GetIsOwner() {
				t.Fatalf("owner permissions: %v, %v", perms, err)
			}

			// A kick reaches the cache.
			var kicked uint64
			for _, m := range lm.GetMembers() {
				if id := m.GetUser().GetId(); id != owner && id != uint64(sim.Bots()[0].ID) {
					kicked = id
					break
				}
			}
			simREST(t, sim, "DELETE", fmt.Sprintf("/guilds/%d/members/%d", target.GetId(), kicked), nil)
			gone := func(uid uint64) func() bool {
				return func() bool {
					_, err := cl.GetMember(ctx, &statev1.GetMemberRequest{GuildId: target.GetId(), UserId: uid})
					return status.Code(err) == codes.NotFound
				}
			}
			waitFor(t, "the kicked member leaving the cache", gone(kicked))

			// A guild outage keeps the data (marked unavailable); the GUILD_CREATE that ends it
			// replaces the guild's snapshot.
			if err := sim.SetGuildUnavailable(discordsim.Snowflake(target.GetId()), true); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the outage applied", func() bool {
				g, err := cl.GetGuild(ctx, &statev1.GetGuildRequest{GuildId: target.GetId()})
				return err == nil && g.GetGuild().GetUnavailable()
			})
			during, err := cl.ListMembers(ctx, &statev1.ListMembersRequest{GuildId: target.GetId(), PageSize: 1000})
			if err != nil || len(during.GetMembers()) != len(lm.GetMembers())-1 {
				t.Fatalf("members during the outage: %d, %v; want the %d cached before it", len(during.GetMembers()), err, len(lm.GetMembers())-1)
			}
			if err := sim.SetGuildUnavailable(discordsim.Snowflake(target.GetId()), false); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the outage's end applied", allAvailable)

			// A stale member the next session's GUILD_CREATE does not carry must not survive
			// it. It is planted straight into the cache (sequence 0: no progress).
			stale := &discordv1.Event{Name: "GUILD_MEMBER_ADD", GuildId: target.GetId(), Payload: &discordv1.Event_GuildMemberAdd{
				GuildMemberAdd: &discordv1.GuildMemberAdd{GuildId: target.GetId(), Member: &discordv1.Member{
					User: &discordv1.User{Id: 42, Username: "stale"}}}}}
			if err := st.Cache().Apply(ctx, stale); err != nil {
				t.Fatal(err)
			}
			if _, err := cl.GetMember(ctx, &statev1.GetMemberRequest{GuildId: target.GetId(), UserId: 42}); err != nil {
				t.Fatalf("planted member: %v", err)
			}
			sessions := len(sim.Sessions())
			if n := sim.InvalidateSession(discordsim.Target{}, false); n != 1 {
				t.Fatalf("InvalidateSession hit %d connections, want 1", n)
			}
			waitFor(t, "a new session", func() bool { return len(sim.Sessions()) > sessions })
			waitFor(t, "the stale member replaced away by the new GUILD_CREATE", gone(42))
			waitFor(t, "every guild available again", allAvailable)

			// A resume, then load: the cache applies everything the simulator sent.
			// The shard may be between connections right after the new session: retry.
			waitFor(t, "a connection to disconnect", func() bool { return sim.Disconnect(discordsim.Target{}, 4000) > 0 })
			if err := sim.StartLoad(discordsim.LoadConfig{Rate: 400}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "load emitted", func() bool { return sim.LoadStats().Emitted >= 200 })
			sim.StopLoad()
			waitFor(t, "the cache applying the session's last sequence", func() bool {
				ss := sim.Sessions()
				last := ss[len(ss)-1]
				s := stats()
				return len(s.GetShards()) == 1 && s.GetShards()[0].GetSessionId() == last.SessionID &&
					s.GetShards()[0].GetLastSequence() == uint64(last.LastSeq)
			})
			if gs := sim.GatewayStats(); gs.Resumes == 0 {
				t.Errorf("the disconnect was not resumed: %+v", gs)
			}
			// Read-your-event: a read at the last sequence succeeds at once.
			s := stats()
			if _, err := cl.GetGuild(ctx, &statev1.GetGuildRequest{GuildId: target.GetId(), Consistency: &statev1.Consistency{
				ShardId: 0, MinSequence: s.GetShards()[0].GetLastSequence()}}); err != nil {
				t.Fatalf("consistent read: %v", err)
			}
			if s.GetMembers() == 0 || s.GetUsers() == 0 || s.GetChannels() == 0 || s.GetRoles() == 0 {
				t.Errorf("stats after load: %v", s)
			}
			mg, err := cl.ListMutualGuilds(ctx, &statev1.ListMutualGuildsRequest{UserId: uint64(sim.Bots()[0].ID)})
			if err != nil || len(mg.GetGuildIds()) != guilds || !slices.IsSorted(mg.GetGuildIds()) {
				t.Errorf("the bot's mutual guilds: %v, %v; want all %d", mg.GetGuildIds(), err, guilds)
			}
		})
	}
}

// flakyStore fails its first fail commits, as a Redis outage would.
type flakyStore struct {
	cache.Store
	fail atomic.Int32
}

func (f *flakyStore) Commit(ctx context.Context, b *cache.Batch) error {
	if f.fail.Add(-1) >= 0 {
		return errors.New("store unavailable")
	}
	return f.Store.Commit(ctx, b)
}

// TestConsumerRetriesFailedApply: events the store refused are retried until applied; none is
// lost.
func TestConsumerRetriesFailedApply(t *testing.T) {
	t.Parallel()
	const guilds, failures = 4, 6
	store := &flakyStore{Store: cache.NewMemory()}
	store.fail.Store(failures)
	sim, st, cl := startStack(t, guilds, store)
	waitFor(t, "every guild applied despite the failures", func() bool {
		s, err := cl.GetStats(t.Context(), &statev1.GetStatsRequest{})
		return err == nil && s.GetGuilds() == guilds && s.GetUnavailableGuilds() == 0
	})
	var m dto.Metric
	if err := st.metrics.applyErrors.Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetCounter().GetValue(); got != failures {
		t.Errorf("apply errors metric = %v, want %d", got, failures)
	}
	waitFor(t, "the cache applying the session's last sequence", func() bool {
		ss := sim.Sessions()
		s, err := cl.GetStats(t.Context(), &statev1.GetStatsRequest{})
		return err == nil && len(ss) == 1 && len(s.GetShards()) == 1 && s.GetShards()[0].GetLastSequence() == uint64(ss[0].LastSeq)
	})
}
