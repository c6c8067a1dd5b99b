package runtime

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
)

func TestAuth(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.AuthSecret = testSecret
	srv, logs := newServer(t, cfg, newTestService("auth"))
	startRun(t, srv)
	open := dial(t, srv.Addr(), ClientConfig{}) // no secret

	tests := []struct {
		name string
		md   []string // extra outgoing metadata
		conn *grpc.ClientConn
		want codes.Code
	}{
		{"no secret", nil, open, codes.Unauthenticated},
		{"wrong secret", []string{"authorization", "Bearer not-the-secret-at-all-0000"}, open, codes.Unauthenticated},
		{"not bearer", []string{"authorization", "Basic " + testSecret}, open, codes.Unauthenticated},
		{"secret twice", []string{"authorization", "Bearer " + testSecret, "authorization", "Bearer x"}, open, codes.Unauthenticated},
		{"right secret by hand", []string{"authorization", "Bearer " + testSecret}, open, codes.OK},
		{"Dial with secret", nil, dial(t, srv.Addr(), ClientConfig{AuthSecret: testSecret}), codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			if tt.md != nil {
				ctx = metadata.AppendToOutgoingContext(ctx, tt.md...)
			}
			_, err := testpb.NewTestServiceClient(tt.conn).EmptyCall(ctx, &testpb.Empty{})
			if got := status.Code(err); got != tt.want {
				t.Fatalf("EmptyCall: code %s (%v), want %s", got, err, tt.want)
			}
			if tt.want == codes.Unauthenticated && !strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q does not say what to fix", err)
			}
		})
	}

	t.Run("health and reflection stay open", func(t *testing.T) {
		t.Parallel()
		for _, svc := range []string{"", "grpc.testing.TestService"} {
			resp, err := healthpb.NewHealthClient(open).Check(t.Context(), &healthpb.HealthCheckRequest{Service: svc})
			if err != nil {
				t.Fatalf("health check %q without secret: %v", svc, err)
			}
			if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("health %q = %s, want SERVING", svc, resp.GetStatus())
			}
		}
		got := listServices(t, open)
		for _, want := range []string{"grpc.testing.TestService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
			if !slices.Contains(got, want) {
				t.Errorf("reflection lists %v, missing %s", got, want)
			}
		}
	})
	t.Cleanup(func() {
		if strings.Contains(logs.String(), testSecret) {
			t.Errorf("the shared secret reached the log:\n%s", logs)
		}
	})
}

func listServices(t *testing.T, conn *grpc.ClientConn) []string {
	t.Helper()
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(t.Context())
	if err != nil {
		t.Fatalf("reflection: %v", err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatalf("reflection send: %v", err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("reflection recv: %v", err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatalf("reflection close: %v", err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	return names
}

func TestUnknownHealthServiceAndNoAuth(t *testing.T) {
	t.Parallel()
	srv, _ := newServer(t, testConfig(), newTestService("noauth"))
	startRun(t, srv)
	conn := dial(t, srv.Addr(), ClientConfig{})
	if _, err := testpb.NewTestServiceClient(conn).EmptyCall(t.Context(), &testpb.Empty{}); err != nil {
		t.Fatalf("without --auth-secret calls need no secret: %v", err)
	}
	_, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{Service: "no.such.Service"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("health of an unknown service: %v, want NotFound", err)
	}
}

func TestPanicRecovery(t *testing.T) {
	t.Parallel()
	srv, logs := newServer(t, testConfig(), newTestService("panicky"))
	startRun(t, srv)
	client := testpb.NewTestServiceClient(dial(t, srv.Addr(), ClientConfig{}))

	_, err := client.UnaryCall(t.Context(), &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("panic")}})
	if status.Code(err) != codes.Internal {
		t.Fatalf("panicking call: %v, want Internal", err)
	}
	if _, err := client.EmptyCall(t.Context(), &testpb.Empty{}); err != nil {
		t.Fatalf("server did not survive the panic: %v", err)
	}
	if got := counterTotal(t, srv, "kubecord_grpc_server_panics_total"); got != 1 {
		t.Errorf("panics counter = %v, want 1", got)
	}
	out := logs.String()
	for _, want := range []string{"recovered panic", "handler exploded", "/grpc.testing.TestService/UnaryCall", "goroutine"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

// counterTotal sums the named counter over all its series in srv's registry.
func counterTotal(t *testing.T, srv *Server, name string) float64 {
	t.Helper()
	families, err := srv.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	for _, f := range families {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

func TestTLS(t *testing.T) {
	t.Parallel()
	ca := newPKI(t, "kubecord-test")
	rogue := newPKI(t, "rogue")
	serverCert, serverKey := ca.issue(t, "server")
	clientCert, clientKey := ca.issue(t, "client")
	rogueCert, rogueKey := rogue.issue(t, "rogue-client")

	tlsCfg := testConfig()
	tlsCfg.TLSCert, tlsCfg.TLSKey = serverCert, serverKey
	mtlsCfg := tlsCfg
	mtlsCfg.TLSCA = ca.CAFile
	tlsSrv, _ := newServer(t, tlsCfg, newTestService("tls"))
	mtlsSrv, _ := newServer(t, mtlsCfg, newTestService("mtls"))
	startRun(t, tlsSrv)
	startRun(t, mtlsSrv)

	tests := []struct {
		name   string
		srv    *Server
		client ClientConfig
		ok     bool
	}{
		{"tls: client trusts CA", tlsSrv, ClientConfig{TLSCA: ca.CAFile}, true},
		{"tls: plaintext client refused", tlsSrv, ClientConfig{}, false},
		{"tls: client trusts other CA", tlsSrv, ClientConfig{TLSCA: rogue.CAFile}, false},
		{"mtls: client certificate from CA", mtlsSrv, ClientConfig{TLSCA: ca.CAFile, TLSCert: clientCert, TLSKey: clientKey}, true},
		{"mtls: Config.Client reuses server cert", mtlsSrv, mtlsCfg.Client(), true},
		{"mtls: no client certificate", mtlsSrv, ClientConfig{TLSCA: ca.CAFile}, false},
		{"mtls: client certificate from other CA", mtlsSrv, ClientConfig{TLSCA: ca.CAFile, TLSCert: rogueCert, TLSKey: rogueKey}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			_, err := testpb.NewTestServiceClient(dial(t, tt.srv.Addr(), tt.client)).EmptyCall(ctx, &testpb.Empty{})
			if tt.ok && err != nil {
				t.Fatalf("call failed: %v", err)
			}
			if !tt.ok && status.Code(err) != codes.Unavailable {
				t.Fatalf("call: %v, want Unavailable (handshake refused)", err)
			}
		})
	}
}

func TestTLSCertificateRotation(t *testing.T) {
	t.Parallel()
	ca := newPKI(t, "rotation")
	cert, key := ca.issueCN(t, "server", "first")
	cfg := testConfig()
	cfg.TLSCert, cfg.TLSKey = cert, key
	srv, _ := newServer(t, cfg, newTestService("rotate"))
	startRun(t, srv)

	serverCN := func(conn *grpc.ClientConn) string {
		t.Helper()
		var p peer.Peer
		if _, err := testpb.NewTestServiceClient(conn).EmptyCall(t.Context(), &testpb.Empty{}, grpc.Peer(&p)); err != nil {
			t.Fatalf("call: %v", err)
		}
		info, ok := p.AuthInfo.(credentials.TLSInfo)
		if !ok {
			t.Fatalf("peer auth info %T, want TLS", p.AuthInfo)
		}
		return info.State.PeerCertificates[0].Subject.CommonName
	}
	old := dial(t, srv.Addr(), ClientConfig{TLSCA: ca.CAFile})
	if cn := serverCN(old); cn != "first" {
		t.Fatalf("server certificate %q, want first", cn)
	}

	ca.issueCN(t, "server", "second")  // rotated on disk, same paths
	later := time.Now().Add(time.Hour) // coarse file system clocks must still see a change
	for _, f := range []string{cert, key} {
		if err := os.Chtimes(f, later, later); err != nil {
			t.Fatal(err)
		}
	}
	if cn := serverCN(dial(t, srv.Addr(), ClientConfig{TLSCA: ca.CAFile})); cn != "second" {
		t.Errorf("new connection got certificate %q, want the rotated one", cn)
	}
	if cn := serverCN(old); cn != "first" {
		t.Errorf("existing connection changed certificate to %q", cn)
	}

	// A half-written pair (key of another certificate) keeps the last good one.
	_, otherKey := ca.issueCN(t, "other", "other")
	keyPEM, err := os.ReadFile(otherKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	later = later.Add(time.Hour)
	if err := os.Chtimes(key, later, later); err != nil {
		t.Fatal(err)
	}
	if cn := serverCN(dial(t, srv.Addr(), ClientConfig{TLSCA: ca.CAFile})); cn != "second" {
		t.Errorf("mismatched pair on disk: got certificate %q, want the last good one", cn)
	}
}

func TestGracefulDrain(t *testing.T) {
	t.Parallel()
	svc := newTestService("drain")
	cfg := testConfig()
	cfg.DrainDelay = 50 * time.Millisecond
	srv, _ := newServer(t, cfg, svc)
	r := startRun(t, srv)
	conn := dial(t, srv.Addr(), ClientConfig{})

	watch, err := healthpb.NewHealthClient(conn).Watch(t.Context(), &healthpb.HealthCheckRequest{Service: "grpc.testing.TestService"})
	if err != nil {
		t.Fatal(err)
	}
	if st := recvHealth(t, watch); st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health before shutdown = %s, want SERVING", st)
	}
	if code := httpGet(t, srv, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d while serving, want 200", code)
	}

	inFlight := make(chan error, 1)
	go func() {
		_, err := testpb.NewTestServiceClient(conn).UnaryCall(t.Context(), &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("block")}})
		inFlight <- err
	}()
	<-svc.entered
	r.cancel() // SIGTERM

	if st := recvHealth(t, watch); st != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health after shutdown began = %s, want NOT_SERVING", st)
	}
	select {
	case err := <-inFlight:
		t.Fatalf("in-flight call ended before it was released: %v", err)
	default:
	}
	close(svc.release)
	if err := <-inFlight; err != nil {
		t.Fatalf("in-flight call was cut off: %v", err)
	}
	if err := r.wait(t, 10*time.Second); err != nil {
		t.Fatalf("Run after a requested shutdown: %v", err)
	}
	if got, want := svc.events.get(), []string{"start drain", "stop drain"}; !slices.Equal(got, want) {
		t.Errorf("service calls %v, want %v", got, want)
	}
}

func recvHealth(t *testing.T, w grpc.ServerStreamingClient[healthpb.HealthCheckResponse]) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	resp, err := w.Recv()
	if err != nil {
		t.Fatalf("health watch: %v", err)
	}
	return resp.GetStatus()
}

func httpGet(t *testing.T, srv *Server, path string) int {
	t.Helper()
	code, _ := httpGetBody(t, srv, path)
	return code
}

func httpGetBody(t *testing.T, srv *Server, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+srv.MetricsAddr().String()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	return resp.StatusCode, string(body)
}

func TestShutdownEndsStreamsAndForcesStuckCalls(t *testing.T) {
	t.Parallel()
	svc := newTestService("stuck") // release is never closed: "block" calls hang
	cfg := testConfig()
	cfg.ShutdownTimeout = 300 * time.Millisecond
	srv, logs := newServer(t, cfg, svc)
	r := startRun(t, srv)
	client := testpb.NewTestServiceClient(dial(t, srv.Addr(), ClientConfig{}))

	stream, err := client.StreamingOutputCall(t.Context(), &testpb.StreamingOutputCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	stuck := make(chan error, 1)
	go func() {
		_, err := client.UnaryCall(t.Context(), &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("block")}})
		stuck <- err
	}()
	<-svc.entered
	r.cancel()
	if _, err := stream.Recv(); err == nil {
		t.Fatal("long-lived stream still open after shutdown")
	}
	if err := <-stuck; err == nil {
		t.Fatal("stuck call succeeded, want it cancelled at the shutdown timeout")
	}
	if err := r.wait(t, 10*time.Second); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !strings.Contains(logs.String(), "graceful stop timed out") {
		t.Errorf("forced stop not logged:\n%s", logs)
	}
}

func TestStreamsEndWithoutWaitingForTimeout(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.ShutdownTimeout = time.Minute // a stream holding GracefulStop would blow the test deadline
	srv, logs := newServer(t, cfg, newTestService("streams"))
	r := startRun(t, srv)
	stream, err := testpb.NewTestServiceClient(dial(t, srv.Addr(), ClientConfig{})).StreamingOutputCall(t.Context(), &testpb.StreamingOutputCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	r.cancel()
	if err := r.wait(t, 20*time.Second); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if strings.Contains(logs.String(), "graceful stop timed out") {
		t.Error("a long-lived stream held GracefulStop until the timeout")
	}
}

func TestRunSeveral(t *testing.T) {
	t.Parallel()
	t.Run("order", func(t *testing.T) {
		t.Parallel()
		events := &eventLog{}
		var servers []*Server
		for _, name := range []string{"a", "b", "c"} {
			svc := newTestService(name)
			svc.events = events
			srv, _ := newServer(t, testConfig(), svc)
			servers = append(servers, srv)
		}
		r := startRun(t, servers...)
		for _, s := range servers {
			select {
			case <-s.Ready():
			default:
				t.Errorf("%s not ready after the last server is", s.Name())
			}
		}
		r.cancel()
		if err := r.wait(t, 10*time.Second); err != nil {
			t.Fatalf("Run: %v", err)
		}
		want := []string{"start a", "start b", "start c", "stop c", "stop b", "stop a"}
		if got := events.get(); !slices.Equal(got, want) {
			t.Errorf("calls %v, want %v", got, want)
		}
	})
	t.Run("start failure stops the started ones", func(t *testing.T) {
		t.Parallel()
		events := &eventLog{}
		a, b := newTestService("a"), newTestService("b")
		b.startErr = errBoom
		a.events, b.events = events, events
		sa, _ := newServer(t, testConfig(), a)
		sb, _ := newServer(t, testConfig(), b)
		err := Run(t.Context(), sa, sb)
		if !errors.Is(err, errBoom) || !strings.Contains(err.Error(), "starting b") {
			t.Fatalf("Run = %v, want the start error of b", err)
		}
		want := []string{"start a", "failstart b", "stop a"}
		if got := events.get(); !slices.Equal(got, want) {
			t.Errorf("calls %v, want %v", got, want)
		}
	})
	t.Run("Fail stops everything", func(t *testing.T) {
		t.Parallel()
		events := &eventLog{}
		a, b := newTestService("a"), newTestService("b")
		a.events, b.events = events, events
		b.onStart = func(ctx context.Context) {
			go Fail(ctx, errBoom) // a background goroutine hitting a fatal error
		}
		sa, _ := newServer(t, testConfig(), a)
		sb, _ := newServer(t, testConfig(), b)
		done := make(chan error, 1)
		go func() { done <- Run(t.Context(), sa, sb) }()
		var err error
		select {
		case err = <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Fail did not stop Run")
		}
		if !errors.Is(err, errBoom) || !strings.Contains(err.Error(), "b: boom") {
			t.Fatalf("Run = %v, want b's failure", err)
		}
		want := []string{"start a", "start b", "stop b", "stop a"}
		if got := events.get(); !slices.Equal(got, want) {
			t.Errorf("calls %v, want %v", got, want)
		}
	})
	t.Run("shutdown during a slow Start cancels it", func(t *testing.T) {
		t.Parallel()
		a := newTestService("slow")
		starting := make(chan struct{})
		a.onStart = func(ctx context.Context) {
			close(starting)
			<-ctx.Done() // a dependency that never answers
		}
		sa, _ := newServer(t, testConfig(), a)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- Run(ctx, sa) }()
		<-starting
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v, want nil for a shutdown asked for during Start", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run waited for a Start that waits forever")
		}
		if got, want := a.events.get(), []string{"start slow", "stop slow"}; !slices.Equal(got, want) {
			t.Errorf("calls %v, want %v", got, want)
		}
	})
	t.Run("stop error is returned", func(t *testing.T) {
		t.Parallel()
		a := newTestService("a")
		a.stopErr = errBoom
		sa, _ := newServer(t, testConfig(), a)
		r := startRun(t, sa)
		r.cancel()
		if err := r.wait(t, 10*time.Second); !errors.Is(err, errBoom) || !strings.Contains(err.Error(), "stopping a") {
			t.Fatalf("Run = %v, want the stop error", err)
		}
	})
	t.Run("port in use", func(t *testing.T) {
		t.Parallel()
		var lc net.ListenConfig
		lis, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = lis.Close() })
		cfg := testConfig()
		cfg.Listen = lis.Addr().String()
		svc := newTestService("busy")
		srv, _ := newServer(t, cfg, svc)
		err = Run(t.Context(), srv)
		if err == nil || !strings.Contains(err.Error(), "--listen") {
			t.Fatalf("Run = %v, want a listen error naming --listen", err)
		}
		if got := svc.events.get(); len(got) != 0 {
			t.Errorf("service was called %v although the port was busy", got)
		}
	})
}

func TestMetricsEndpoints(t *testing.T) {
	t.Parallel()
	srv, _ := newServer(t, testConfig(), newTestService("metrics"))
	startRun(t, srv)
	if _, err := testpb.NewTestServiceClient(dial(t, srv.Addr(), ClientConfig{})).EmptyCall(t.Context(), &testpb.Empty{}); err != nil {
		t.Fatal(err)
	}
	code, body := httpGetBody(t, srv, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		"go_goroutines",
		"process_cpu_seconds_total",
		`grpc_server_handled_total{grpc_code="OK",grpc_method="EmptyCall",grpc_service="grpc.testing.TestService",grpc_type="unary"} 1`,
		"grpc_server_handling_seconds_bucket",
		"test_metrics_things_total", // the service's own metric
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if code := httpGet(t, srv, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}
	if code := httpGet(t, srv, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d", code)
	}
}

func TestSetServing(t *testing.T) {
	t.Parallel()
	svc := newTestService("flaky")
	startCtx := make(chan context.Context, 1)
	svc.onStart = func(ctx context.Context) { startCtx <- ctx }
	srv, _ := newServer(t, testConfig(), svc)
	startRun(t, srv)
	ctx := <-startCtx
	watch, err := healthpb.NewHealthClient(dial(t, srv.Addr(), ClientConfig{})).Watch(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st := recvHealth(t, watch); st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %s, want SERVING", st)
	}
	SetServing(ctx, false)
	if st := recvHealth(t, watch); st != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health after SetServing(false) = %s, want NOT_SERVING", st)
	}
	if code := httpGet(t, srv, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d after SetServing(false), want 503", code)
	}
	SetServing(ctx, true)
	if st := recvHealth(t, watch); st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health after SetServing(true) = %s, want SERVING", st)
	}
	if code := httpGet(t, srv, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d after SetServing(true), want 200", code)
	}
	SetServing(t.Context(), false) // not a service context: ignored
	Fail(t.Context(), errBoom)     // likewise
	if code := httpGet(t, srv, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d after SetServing on a foreign context, want 200", code)
	}
}

func TestTracePropagation(t *testing.T) {
	t.Parallel()
	srv, _ := newServer(t, testConfig(), newTestService("trace"))
	startRun(t, srv)
	tid := trace.TraceID{0x4b, 0x75, 0x62, 0x65, 0x63, 0x6f, 0x72, 0x64, 1, 2, 3, 4, 5, 6, 7, 8}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8}, TraceFlags: trace.FlagsSampled})
	ctx := trace.ContextWithSpanContext(t.Context(), sc)
	resp, err := testpb.NewTestServiceClient(dial(t, srv.Addr(), ClientConfig{})).UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("trace")}})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(resp.GetPayload().GetBody()); got != tid.String() {
		t.Errorf("handler ran under trace %s, want the caller's %s", got, tid)
	}
}

func TestServerRunsOnce(t *testing.T) {
	t.Parallel()
	srv, _ := newServer(t, testConfig(), newTestService("once"))
	r := startRun(t, srv)
	r.cancel()
	if err := r.wait(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := Run(t.Context(), srv); err == nil || !strings.Contains(err.Error(), "already ran") {
		t.Errorf("second Run = %v, want an error", err)
	}
	if err := Run(t.Context()); err == nil {
		t.Error("Run without servers succeeded")
	}
}

func TestMetricsDisabled(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MetricsListen = ""
	srv, _ := newServer(t, cfg, newTestService("nometrics"))
	startRun(t, srv)
	if srv.MetricsAddr() != nil {
		t.Errorf("metrics listener %v with --metrics-listen empty", srv.MetricsAddr())
	}
}

type badRegister struct{ *testService }

func (b badRegister) Register(*grpc.Server, prometheus.Registerer) error { return errBoom }

func TestNewServerErrors(t *testing.T) {
	t.Parallel()
	logger, _ := testLogger(t)
	bad := testConfig()
	bad.LogFormat = "xml"
	if _, err := NewServer(bad, newTestService("x"), logger); err == nil || !strings.Contains(err.Error(), "--log-format") {
		t.Errorf("NewServer with bad config = %v, want a validation error", err)
	}
	if _, err := NewServer(testConfig(), badRegister{newTestService("y")}, logger); !errors.Is(err, errBoom) {
		t.Errorf("NewServer with failing Register = %v, want its error", err)
	}
}

func BenchmarkUnaryCall(b *testing.B) {
	cfg := testConfig()
	cfg.AuthSecret = testSecret
	logger, err := NewLogger("info", "text", io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	srv, err := NewServer(cfg, newTestService("bench"), logger)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(b.Context())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, srv) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()
	<-srv.Ready()
	conn, err := Dial(srv.Addr().String(), cfg.Client())
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	client := testpb.NewTestServiceClient(conn)
	req := &testpb.SimpleRequest{Payload: &testpb.Payload{Body: make([]byte, 256)}}
	b.SetBytes(256)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.UnaryCall(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnaryCallBare is the baseline for BenchmarkUnaryCall: the same
// call on a plain grpc.Server and client, without the runtime's
// interceptors, stats handlers and credentials.
func BenchmarkUnaryCallBare(b *testing.B) {
	var lc net.ListenConfig
	lis, err := lc.Listen(b.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	g := grpc.NewServer()
	testpb.RegisterTestServiceServer(g, newTestService("bare"))
	done := make(chan error, 1)
	go func() { done <- g.Serve(lis) }()
	defer func() {
		g.Stop()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	client := testpb.NewTestServiceClient(conn)
	req := &testpb.SimpleRequest{Payload: &testpb.Payload{Body: make([]byte, 256)}}
	b.SetBytes(256)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.UnaryCall(b.Context(), req); err != nil {
			b.Fatal(err)
		}
	}
}
