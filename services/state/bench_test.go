package state

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	statev1 "github.com/kubecord/kubecord/gen/kubecord/state/v1"
)

const (
	benchGuilds    = 100
	benchPerGuild  = 1000
	benchBatchSize = 100
	benchFirstUser = 10_000
)

func benchGuildID(g int) uint64 { return uint64(1)<<40 + uint64(g)<<22 }

func benchUserID(g, u int) uint64 { return uint64(benchFirstUser + g*benchPerGuild + u) }

// benchClient is a state service holding benchGuilds x benchPerGuild members, served by
// internal/runtime (with all its interceptors) on a loopback socket.
func benchClient(b *testing.B, sk storeKind) statev1.StateServiceClient {
	b.Helper()
	cfg := DefaultConfig()
	cfg.MemberID = "bench"
	srv, err := NewWithStore(cfg, sk.open(b), quietLogger())
	if err != nil {
		b.Fatal(err)
	}
	conn := runService(b, srv)
	ts := &testService{srv: srv}
	for g := range benchGuilds {
		gid := benchGuildID(g)
		members := make([]string, 0, benchPerGuild)
		for u := range benchPerGuild {
			members = append(members, memberJSON(benchUserID(g, u), fmt.Sprintf("user%d", u), "", gid+1))
		}
		ts.send(b, "GUILD_CREATE", fmt.Sprintf(`{"id":"%d","name":"g%d","owner_id":"1","roles":[{"id":"%d","name":"@everyone","permissions":"1024","position":0},{"id":"%d","name":"r","permissions":"2048","position":1}],"members":[%s]}`,
			gid, g, gid, gid+1, strings.Join(members, ",")))
	}
	return statev1.NewStateServiceClient(conn)
}

// latencies collects per-call durations from parallel goroutines.
type latencies struct {
	mu  sync.Mutex
	all []time.Duration
}

func (l *latencies) add(d []time.Duration) {
	l.mu.Lock()
	l.all = append(l.all, d...)
	l.mu.Unlock()
}

func (l *latencies) report(b *testing.B) {
	if len(l.all) == 0 {
		return
	}
	slices.Sort(l.all)
	at := func(q float64) float64 { return float64(l.all[int(q*float64(len(l.all)-1))].Nanoseconds()) / 1e3 }
	b.ReportMetric(at(0.50), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
	b.ReportMetric(float64(len(l.all))/b.Elapsed().Seconds(), "calls/s")
}

// BenchmarkGRPC measures GetMember and BatchGetMembers (100 ids) over gRPC on loopback from
// parallel clients (4 per core), reporting calls per second and p50/p99 latency.
//
//	go test -run '^$' -bench GRPC -benchtime 3s ./services/state/
func BenchmarkGRPC(b *testing.B) {
	for _, sk := range storeKinds() {
		b.Run(sk.name, func(b *testing.B) {
			cl := benchClient(b, sk)
			b.Run("GetMember", func(b *testing.B) {
				var lat latencies
				b.SetParallelism(4)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					rng := rand.New(rand.NewPCG(rand.Uint64(), 1))
					var mine []time.Duration
					for pb.Next() {
						g, u := rng.IntN(benchGuilds), rng.IntN(benchPerGuild)
						start := time.Now()
						resp, err := cl.GetMember(b.Context(), &statev1.GetMemberRequest{GuildId: benchGuildID(g), UserId: benchUserID(g, u)})
						mine = append(mine, time.Since(start))
						if err != nil || resp.GetMember().GetUser().GetId() != benchUserID(g, u) {
							b.Errorf("GetMember: %v, %v", resp, err)
							return
						}
					}
					lat.add(mine)
				})
				lat.report(b)
			})
			b.Run("BatchGetMembers100", func(b *testing.B) {
				var lat latencies
				b.SetParallelism(4)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					rng := rand.New(rand.NewPCG(rand.Uint64(), 2))
					var mine []time.Duration
					ids := make([]uint64, benchBatchSize)
					for pb.Next() {
						g := rng.IntN(benchGuilds)
						for i := range ids {
							ids[i] = benchUserID(g, rng.IntN(benchPerGuild))
						}
						start := time.Now()
						resp, err := cl.BatchGetMembers(b.Context(), &statev1.BatchGetMembersRequest{GuildId: benchGuildID(g), UserIds: ids})
						mine = append(mine, time.Since(start))
						if err != nil || len(resp.GetMembers()) != benchBatchSize {
							b.Errorf("BatchGetMembers: %d members, %v", len(resp.GetMembers()), err)
							return
						}
					}
					lat.add(mine)
				})
				lat.report(b)
			})
		})
	}
}
