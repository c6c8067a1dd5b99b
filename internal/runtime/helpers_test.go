package runtime

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/kubecord/kubecord/internal/testutil"
)

const testSecret = "test-shared-secret-0123456789abcdef"

// testService is a real gRPC service (grpc.testing.TestService) driven by
// the request payload: "panic" panics, "block" waits for release.
type testService struct {
	testpb.UnimplementedTestServiceServer
	name     string
	startErr error
	stopErr  error
	// events records "start <name>" and "stop <name>" in call order; shared
	// between services of one Run.
	events  *eventLog
	entered chan struct{} // a "block" call arrived
	release chan struct{} // lets "block" calls return
	onStart func(ctx context.Context)
}

type eventLog struct {
	mu     sync.Mutex
	events []string
}

func (l *eventLog) add(e string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *eventLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.events...)
}

func newTestService(name string) *testService {
	return &testService{name: name, events: &eventLog{}, entered: make(chan struct{}, 16), release: make(chan struct{})}
}

func (s *testService) Name() string { return s.name }

func (s *testService) Register(g *grpc.Server, reg prometheus.Registerer) error {
	testpb.RegisterTestServiceServer(g, s)
	return reg.Register(prometheus.NewCounter(prometheus.CounterOpts{Name: "test_" + s.name + "_things_total", Help: "Things."}))
}

func (s *testService) Start(ctx context.Context) error {
	if s.startErr != nil {
		s.events.add("failstart " + s.name)
		return s.startErr
	}
	s.events.add("start " + s.name)
	if s.onStart != nil {
		s.onStart(ctx)
	}
	return nil
}

func (s *testService) Stop(context.Context) error {
	s.events.add("stop " + s.name)
	return s.stopErr
}

func (s *testService) EmptyCall(context.Context, *testpb.Empty) (*testpb.Empty, error) {
	return &testpb.Empty{}, nil
}

func (s *testService) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	switch string(req.GetPayload().GetBody()) {
	case "panic":
		panic("handler exploded")
	case "trace": // answers with the trace id the handler runs under
		return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: []byte(trace.SpanContextFromContext(ctx).TraceID().String())}}, nil
	case "block":
		s.entered <- struct{}{}
		select {
		case <-s.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return &testpb.SimpleResponse{Payload: req.GetPayload()}, nil
}

// StreamingOutputCall is a long-lived stream: it sends one message, then
// holds until its context ends.
func (s *testService) StreamingOutputCall(_ *testpb.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	if err := stream.Send(&testpb.StreamingOutputCallResponse{}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return stream.Context().Err()
}

func testConfig() Config {
	c := DefaultConfig(0, 0)
	c.DrainDelay = 0
	c.ShutdownTimeout = 5 * time.Second
	return c
}

func testLogger(t *testing.T) (*slog.Logger, *testutil.SyncBuffer) {
	t.Helper()
	buf := &testutil.SyncBuffer{}
	l, err := NewLogger("debug", "text", buf)
	if err != nil {
		t.Fatal(err)
	}
	return l, buf
}

// running is a server started by startRun.
type running struct {
	srv    *Server
	cancel context.CancelFunc
	done   chan error
}

// wait returns Run's result, failing the test if it takes longer than d.
func (r *running) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // keep it for cleanup
		return err
	case <-time.After(d):
		t.Fatalf("Run did not return within %s", d)
		return nil
	}
}

// startRun runs servers until the test ends and waits until the last one is
// ready.
func startRun(t *testing.T, servers ...*Server) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	r := &running{srv: servers[len(servers)-1], cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- Run(ctx, servers...) }()
	t.Cleanup(func() {
		cancel()
		if err := <-r.done; err != nil {
			t.Logf("Run: %v", err) // tests that expect an error check it themselves
		}
	})
	select {
	case <-r.srv.Ready():
	case err := <-r.done:
		r.done <- err
		t.Fatalf("Run returned before the server was ready: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("server not ready within 10s")
	}
	return r
}

func newServer(t *testing.T, cfg Config, svc Service) (*Server, *testutil.SyncBuffer) {
	t.Helper()
	logger, buf := testLogger(t)
	srv, err := NewServer(cfg, svc, logger)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	return srv, buf
}

func dial(t *testing.T, addr net.Addr, c ClientConfig) *grpc.ClientConn {
	t.Helper()
	conn, err := Dial(addr.String(), c)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() {
		if err := conn.Close(); err != nil {
			t.Errorf("closing client: %v", err)
		}
	})
	return conn
}

// pki is a throwaway CA with certificates written to a temp dir.
type pki struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	CAFile string
}

func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{dir: t.TempDir(), ca: ca, caKey: key}
	p.CAFile = p.write(t, name+"-ca.pem", "CERTIFICATE", der)
	return p
}

func (p *pki) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue returns cert and key files for a leaf valid for 127.0.0.1, usable
// as both server and client certificate.
func (p *pki) issue(t *testing.T, name string) (certFile, keyFile string) {
	t.Helper()
	return p.issueCN(t, name, name)
}

// issueCN is issue with a common name that differs from the file name, to
// replace a certificate in place.
func (p *pki) issueCN(t *testing.T, name, cn string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return p.write(t, name+".pem", "CERTIFICATE", der), p.write(t, name+"-key.pem", "EC PRIVATE KEY", keyDER)
}

var errBoom = errors.New("boom")
