package runtime_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/kubecord/kubecord/internal/runtime"
)

// echo is a minimal Service: one gRPC service, one metric, no background work.
type echo struct {
	testpb.UnimplementedTestServiceServer
	calls prometheus.Counter
}

func (e *echo) Name() string { return "echo" }

func (e *echo) Register(s *grpc.Server, metrics prometheus.Registerer) error {
	testpb.RegisterTestServiceServer(s, e)
	e.calls = prometheus.NewCounter(prometheus.CounterOpts{Name: "echo_calls_total", Help: "Echo calls."})
	return metrics.Register(e.calls)
}

// Start would launch background work (using ctx, which lives until Stop).
func (e *echo) Start(context.Context) error { return nil }

// Stop would stop it; every gRPC handler has returned by now.
func (e *echo) Stop(context.Context) error { return nil }

func (e *echo) EmptyCall(context.Context, *testpb.Empty) (*testpb.Empty, error) {
	e.calls.Inc()
	return &testpb.Empty{}, nil
}

// Example runs a service, calls it with the shared secret as a peer service
// would, and shuts it down.
func Example() {
	cfg := runtime.DefaultConfig(0, 0) // port 0: any free port
	cfg.AuthSecret = "example-secret-0123456789abcdef"
	cfg.DrainDelay = 0

	logger, err := runtime.NewLogger("warn", "text", os.Stderr)
	if err != nil {
		fmt.Println(err)
		return
	}
	srv, err := runtime.NewServer(cfg, &echo{}, logger)
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- runtime.Run(ctx, srv) }()
	select {
	case <-srv.Ready():
	case err := <-done:
		fmt.Println(err)
		return
	case <-time.After(10 * time.Second):
		fmt.Println("not ready")
		return
	}

	conn, err := runtime.Dial(srv.Addr().String(), cfg.Client())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = conn.Close() }()
	health, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "grpc.testing.TestService"})
	fmt.Println(health.GetStatus(), err)
	_, err = testpb.NewTestServiceClient(conn).EmptyCall(ctx, &testpb.Empty{})
	fmt.Println("call error:", err)

	cancel() // what SIGTERM does
	fmt.Println("run error:", <-done)
	// Output:
	// SERVING <nil>
	// call error: <nil>
	// run error: <nil>
}
