package state

import (
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	discordv1 "github.com/kubecord/kubecord/gen/kubecord/discord/v1"
	statev1 "github.com/kubecord/kubecord/gen/kubecord/state/v1"
	"github.com/kubecord/kubecord/internal/discordjson"
	"github.com/kubecord/kubecord/internal/redistest"
	"github.com/kubecord/kubecord/services/state/internal/cache"
)

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

type storeKind struct {
	name string
	open func(t testing.TB) cache.Store
}

func storeKinds() []storeKind {
	return []storeKind{
		{"memory", func(testing.TB) cache.Store { return cache.NewMemory() }},
		{"redis", func(t testing.TB) cache.Store {
			addr := redistest.Start(t).Addr
			st, err := cache.NewRedis(t.Context(), "redis://"+addr, "kubecord:test:")
			if err != nil {
				t.Fatalf("NewRedis: %v", err)
			}
			return st
		}},
	}
}

// testService is a started state service (no gateways) served on a real loopback socket.
type testService struct {
	srv    *Server
	client statev1.StateServiceClient
	seq    uint64
}

func startService(t *testing.T, st cache.Store, mutate func(*Config)) *testService {
	t.Helper()
	cfg := DefaultConfig()
	cfg.MemberID = "test"
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := NewWithStore(cfg, st, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	if err := srv.Register(g, prometheus.NewRegistry()); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = g.Serve(lis) // returns when Stop is called below
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		g.Stop()
		<-done
		if err := srv.Stop(t.Context()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return &testService{srv: srv, client: statev1.NewStateServiceClient(conn)}
}

// send applies a Discord dispatch (JSON) as the next event of shard 0.
func (s *testService) send(t testing.TB, name, d string) {
	t.Helper()
	s.seq++
	ev := &discordv1.Event{ShardId: 0, ShardCount: 1, Sequence: s.seq, Name: name, Raw: []byte(d), SessionId: "s1"}
	if err := discordjson.DecodeEvent(ev); err != nil {
		t.Fatalf("decoding %s: %v", name, err)
	}
	if err := s.srv.Cache().Apply(t.Context(), ev); err != nil {
		t.Fatalf("Apply(%s): %v", name, err)
	}
}

func userJSON(id uint64, name string) string {
	return fmt.Sprintf(`{"id":"%d","username":%q,"discriminator":"0","global_name":null,"avatar":null}`, id, name)
}

func memberJSON(id uint64, name string, extra string, roles ...uint64) string {
	rs := make([]string, len(roles))
	for i, r := range roles {
		rs[i] = fmt.Sprintf("%q", fmt.Sprint(r))
	}
	return fmt.Sprintf(`{"user":%s,"nick":null,"roles":[%s],"joined_at":"2025-01-02T03:04:05.000000+00:00","deaf":false,"mute":false,"flags":0%s}`,
		userJSON(id, name), strings.Join(rs, ","), extra)
}
