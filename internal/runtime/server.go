package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// Service is what a Kubecord service implements to be served by the runtime.
// The runtime calls, in order: Register once, Start once, and (only if Start
// succeeded) Stop once.
type Service interface {
	// Name is the service's short name ("gateway"), used in logs and errors.
	Name() string
	// Register registers the gRPC handlers on s and the service's own metrics
	// on metrics. Nothing is served yet.
	Register(s *grpc.Server, metrics prometheus.Registerer) error
	// Start starts background work and returns once the service is ready to
	// serve; health reports SERVING after it returns. The gRPC server is
	// already accepting calls (health says NOT_SERVING until then). ctx is
	// cancelled if shutdown is requested while Start runs; once Start has
	// returned it stays alive until Stop has returned, so background
	// goroutines may use it. A fatal error in them is reported with
	// Fail(ctx, err); SetServing(ctx, ...) reports the service's health. If
	// Start fails it must clean up itself: Stop is not called.
	Start(ctx context.Context) error
	// Stop stops background work and releases resources. It runs after the
	// gRPC server has stopped, so no handler is running any more; ctx
	// carries the shutdown deadline.
	Stop(ctx context.Context) error
}

// Drainer is implemented by a service with work to hand over before it stops, while its
// streams and calls are still served (the gateway hands its shards to other pods and lets
// workers ack what they hold). Drain runs when shutdown begins, alongside the drain delay;
// the streams end once both are over. ctx carries the shutdown timeout.
type Drainer interface {
	Drain(ctx context.Context)
}

// Server serves one Service: its gRPC server (with health, reflection,
// OpenTelemetry, Prometheus metrics, recovery, logging and auth) and its
// metrics HTTP server. Create it with NewServer and run it (once) with Run.
type Server struct {
	cfg     Config
	svc     Service
	name    string
	logger  *slog.Logger
	grpc    *grpc.Server
	health  *health.Server
	reg     *prometheus.Registry
	metrics *http.Server

	// streamsCtx is cancelled when shutdown begins, after the drain delay:
	// long-lived streams see their context end and return, so GracefulStop
	// does not wait for them until the timeout.
	streamsCtx    context.Context
	cancelStreams context.CancelFunc

	ready    atomic.Bool // what /readyz says
	healthMu sync.Mutex  // orders SetServing against start and drain
	phase    phase
	degraded bool // the service said NOT_SERVING with SetServing
	fail     func(error)
	readyCh  chan struct{}
	addr     atomic.Pointer[net.Addr]
	mAddr    atomic.Pointer[net.Addr]

	used        atomic.Bool     // a Server runs once
	lifeCtx     context.Context // given to Start; ends after Stop
	cancelLife  context.CancelFunc
	stopServing func() // waits for the serve loops to return
}

// Server-side keepalive: probe idle clients, and refuse clients that ping
// more often than MinTime (a misbehaving client could otherwise keep the
// server busy answering pings).
var (
	serverKeepalive = keepalive.ServerParameters{Time: time.Minute, Timeout: 20 * time.Second}
	serverEnforce   = keepalive.EnforcementPolicy{MinTime: 15 * time.Second, PermitWithoutStream: true}
)

// NewServer validates cfg and builds the server for svc: the gRPC server with
// every interceptor, health, reflection and metrics, and svc's handlers
// registered. Extra options (message size limits, ...) go in opts. Nothing
// listens until Run.
func NewServer(cfg Config, svc Service, logger *slog.Logger, opts ...grpc.ServerOption) (*Server, error) {
	name := svc.Name()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s configuration: %w", name, err)
	}
	logger = logger.With("service", name)
	s := &Server{
		cfg:     cfg,
		svc:     svc,
		name:    name,
		logger:  logger,
		health:  health.NewServer(),
		reg:     prometheus.NewRegistry(),
		readyCh: make(chan struct{}),
	}
	s.streamsCtx, s.cancelStreams = context.WithCancel(context.Background())

	if err := s.reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("registering Go metrics: %w", err)
	}
	if err := s.reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("registering process metrics: %w", err)
	}
	grpcMetrics := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())
	panics := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kubecord_grpc_server_panics_total",
		Help: "Panics recovered in gRPC handlers, by full method.",
	}, []string{"grpc_method"})
	for _, c := range []prometheus.Collector{grpcMetrics, panics} {
		if err := s.reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering gRPC metrics: %w", err)
		}
	}

	logOpts := []logging.Option{
		logging.WithLogOnEvents(logging.FinishCall),
		logging.WithLevels(func(c codes.Code) logging.Level {
			if c == codes.OK {
				return logging.LevelDebug // a line per successful call is noise at info
			}
			return logging.DefaultServerCodeToLevel(c)
		}),
	}
	grpcLogger := logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		logger.Log(ctx, slog.Level(lvl), msg, fields...)
	})
	recoverOpt := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		method, _ := grpc.Method(ctx)
		panics.WithLabelValues(method).Inc()
		logger.ErrorContext(ctx, "recovered panic in gRPC handler", "grpc.method", method, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		return status.Error(codes.Internal, "internal error: the handler panicked and the server recovered; the server log has the stack trace")
	})

	// Order: metrics and logging see every call including rejected and
	// panicking ones; auth runs before the handler; recovery is innermost so
	// a panic becomes codes.Internal before logging and metrics see it.
	unary := []grpc.UnaryServerInterceptor{grpcMetrics.UnaryServerInterceptor(), logging.UnaryServerInterceptor(grpcLogger, logOpts...)}
	stream := []grpc.StreamServerInterceptor{grpcMetrics.StreamServerInterceptor(), logging.StreamServerInterceptor(grpcLogger, logOpts...), s.endStreamsOnShutdown}
	if cfg.AuthSecret != "" {
		a := newAuthenticator(cfg.AuthSecret, logger)
		unary = append(unary, a.unary)
		stream = append(stream, a.stream)
	}
	unary = append(unary, recovery.UnaryServerInterceptor(recoverOpt))
	stream = append(stream, recovery.StreamServerInterceptor(recoverOpt))

	base := []grpc.ServerOption{
		grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithPropagators(propagators), otelgrpc.WithFilter(filters.Not(filters.HealthCheck())))),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		grpc.KeepaliveParams(serverKeepalive),
		grpc.KeepaliveEnforcementPolicy(serverEnforce),
	}
	tlsCfg, err := serverTLS(cfg)
	if err != nil {
		return nil, err // Validate already checked this; files may have changed since
	}
	if tlsCfg != nil {
		base = append(base, grpc.Creds(credentials.NewTLS(tlsCfg)))
	}
	s.grpc = grpc.NewServer(append(base, opts...)...)

	if err := svc.Register(s.grpc, s.reg); err != nil {
		return nil, fmt.Errorf("registering %s: %w", name, err)
	}
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	grpcMetrics.InitializeMetrics(s.grpc)
	s.setHealth(healthpb.HealthCheckResponse_NOT_SERVING)

	if cfg.MetricsListen != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg}))
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte("ok\n")) // the process is alive; nothing to do if the client left
		})
		mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
			if !s.ready.Load() {
				http.Error(w, "not ready: starting or draining", http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("ok\n"))
		})
		s.metrics = &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 5 * time.Second,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		}
	}
	if !isLoopback(cfg.Listen) && cfg.AuthSecret == "" && cfg.TLSCA == "" {
		logger.Warn("gRPC listens beyond loopback without authentication: anyone who reaches it can call it; set --auth-secret or --tls-ca", "listen", cfg.Listen)
	}
	return s, nil
}

// Name returns the service's name.
func (s *Server) Name() string { return s.name }

// Ready is closed once the service has started and health reports its
// state (SERVING unless the service called SetServing(ctx, false)).
func (s *Server) Ready() <-chan struct{} { return s.readyCh }

// Addr returns the gRPC listener's address (useful with port 0), or nil
// before the server listens.
func (s *Server) Addr() net.Addr { return load(&s.addr) }

// MetricsAddr returns the metrics listener's address, or nil before it
// listens or when metrics are disabled.
func (s *Server) MetricsAddr() net.Addr { return load(&s.mAddr) }

// Registry returns the server's Prometheus registry (served on /metrics).
func (s *Server) Registry() *prometheus.Registry { return s.reg }

func load(p *atomic.Pointer[net.Addr]) net.Addr {
	if a := p.Load(); a != nil {
		return *a
	}
	return nil
}

// setHealth sets every registered service and the server as a whole ("").
func (s *Server) setHealth(st healthpb.HealthCheckResponse_ServingStatus) {
	s.health.SetServingStatus("", st)
	for svc := range s.grpc.GetServiceInfo() {
		if svc != healthpb.Health_ServiceDesc.ServiceName && !openServices[svc] {
			s.health.SetServingStatus(svc, st)
		}
	}
}

// endStreamsOnShutdown gives every stream a context that also ends when
// shutdown begins.
func (s *Server) endStreamsOnShutdown(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()
	stop := context.AfterFunc(s.streamsCtx, cancel)
	defer stop()
	return handler(srv, &streamWithContext{ServerStream: ss, ctx: ctx})
}

type streamWithContext struct {
	grpc.ServerStream
	ctx context.Context
}

func (w *streamWithContext) Context() context.Context { return w.ctx }

type phase int

const (
	phaseStarting phase = iota
	phaseServing
	phaseDraining
)

type serverKey struct{}

// Fail reports a fatal error of a service's background work: every server
// of the Run call shuts down and Run returns err. ctx must be the context
// given to Service.Start or one derived from it; otherwise Fail does nothing.
func Fail(ctx context.Context, err error) {
	if s, ok := ctx.Value(serverKey{}).(*Server); ok {
		s.fail(err)
	}
}

// SetServing lets a running service report that it cannot do its job for
// now (serving false: health NOT_SERVING, /readyz 503), for example while a
// dependency is unreachable, and that it recovered (true). During Start it
// decides what health says once Start returns; once shutdown began it has
// no effect. ctx must be the context given to Service.Start or one derived
// from it.
func SetServing(ctx context.Context, serving bool) {
	s, ok := ctx.Value(serverKey{}).(*Server)
	if !ok {
		return
	}
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	if s.degraded == !serving {
		return
	}
	s.degraded = !serving
	if s.phase == phaseServing {
		s.applyHealth()
		s.logger.Info("service reported its health", "serving", serving)
	}
}

// applyHealth publishes the serving state; healthMu is held.
func (s *Server) applyHealth() {
	st := healthpb.HealthCheckResponse_SERVING
	if s.degraded {
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	s.setHealth(st)
	s.ready.Store(!s.degraded)
}

// start listens, serves, and starts the service. On error it leaves nothing
// running.
func (s *Server) start(ctx context.Context, fail context.CancelCauseFunc) error {
	if !s.used.CompareAndSwap(false, true) {
		return fmt.Errorf("%s: this Server already ran; build a new one with NewServer", s.name)
	}
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("gRPC listener (--listen): %w", err)
	}
	var mLis net.Listener
	if s.metrics != nil {
		if mLis, err = lc.Listen(ctx, "tcp", s.cfg.MetricsListen); err != nil {
			_ = lis.Close() // the error that matters is the listen failure
			return fmt.Errorf("metrics listener (--metrics-listen): %w", err)
		}
		a := mLis.Addr()
		s.mAddr.Store(&a)
	}
	a := lis.Addr()
	s.addr.Store(&a)

	var wg sync.WaitGroup
	wg.Go(func() {
		if err := s.grpc.Serve(lis); err != nil {
			fail(fmt.Errorf("%s: serving gRPC: %w", s.name, err))
		}
	})
	if mLis != nil {
		wg.Go(func() {
			if err := s.metrics.Serve(mLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				fail(fmt.Errorf("%s: serving metrics: %w", s.name, err))
			}
		})
	}
	s.stopServing = func() { wg.Wait() }

	s.fail = func(err error) { fail(fmt.Errorf("%s: %w", s.name, err)) }
	s.lifeCtx, s.cancelLife = context.WithCancel(context.WithValue(context.WithoutCancel(ctx), serverKey{}, s))
	s.logger.Info("starting", "listen", a.String(), "metrics_listen", s.cfg.MetricsListen, "tls", s.cfg.TLSCert != "", "mtls", s.cfg.TLSCA != "", "auth", s.cfg.AuthSecret != "")
	// A shutdown requested while Start runs cancels Start's context, so a
	// slow start (waiting on a dependency) does not hold the process.
	// Afterwards the context lives until Stop has returned.
	stopWatching := context.AfterFunc(ctx, s.cancelLife)
	err = s.svc.Start(s.lifeCtx)
	stopWatching()
	if err != nil {
		s.cancelLife()
		s.cancelStreams()
		s.grpc.Stop()
		if s.metrics != nil {
			_ = s.metrics.Close() // already failing; Start's error is the one to report
		}
		wg.Wait()
		return fmt.Errorf("%s: %w", s.name, err)
	}
	s.healthMu.Lock()
	s.phase = phaseServing
	s.applyHealth()
	s.healthMu.Unlock()
	close(s.readyCh)
	s.logger.Info("serving", "listen", a.String())
	return nil
}

// drain reports NOT_SERVING everywhere; calls keep being served.
func (s *Server) drain() {
	s.healthMu.Lock()
	s.phase = phaseDraining
	s.ready.Store(false)
	s.health.Shutdown() // NOT_SERVING for all, and ignores later updates
	s.healthMu.Unlock()
	s.logger.Info("draining: health reports NOT_SERVING", "drain_delay", s.cfg.DrainDelay)
}

// stop ends streams, stops gRPC gracefully (forcefully at the timeout), then
// the service and the metrics server.
func (s *Server) stop() error {
	defer s.cancelLife()
	var errs []error
	s.cancelStreams()
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.logger.Warn("graceful stop timed out: cancelling in-flight calls", "shutdown_timeout", s.cfg.ShutdownTimeout)
		s.grpc.Stop()
		<-done
	}

	svcCtx, svcCancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer svcCancel()
	if err := s.svc.Stop(svcCtx); err != nil {
		errs = append(errs, fmt.Errorf("stopping %s: %w", s.name, err))
	}
	if s.metrics != nil {
		if err := s.metrics.Shutdown(svcCtx); err != nil {
			_ = s.metrics.Close() // Shutdown timed out; Close cannot report anything more useful
			errs = append(errs, fmt.Errorf("stopping %s metrics server: %w", s.name, err))
		}
	}
	s.stopServing()
	s.logger.Info("stopped")
	return errors.Join(errs...)
}

// Run serves every server until ctx ends or one of them fails, then shuts
// them all down. Servers start one after another in the given order (each
// is ready before the next starts) and stop in reverse order. Shutdown:
// health NOT_SERVING on all, the longest drain delay, then per server: end
// streams, GracefulStop (Stop at the shutdown timeout), Service.Stop,
// metrics server shutdown.
//
// Run returns nil after a shutdown asked for by ctx, or the first error: a
// server failing to start or serve, or Fail; stop errors are joined to it.
func Run(ctx context.Context, servers ...*Server) error {
	if len(servers) == 0 {
		return errors.New("runtime.Run: no servers to run")
	}
	runCtx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	var started []*Server
	var cause error
	for _, s := range servers {
		if err := s.start(runCtx, fail); err != nil {
			cause = fmt.Errorf("starting %w", err)
			break
		}
		started = append(started, s)
	}
	if cause == nil {
		<-runCtx.Done()
		// A shutdown asked for by ctx is no error; a failure is, even if
		// ctx ended right after it.
		if c := context.Cause(runCtx); ctx.Err() == nil || c != context.Cause(ctx) {
			cause = c
		}
	}
	if cause != nil && len(started) > 0 {
		started[0].logger.Error("shutting down after an error", "err", cause)
	}

	var (
		drain    time.Duration
		draining sync.WaitGroup
	)
	for _, s := range started {
		s.drain()
		drain = max(drain, s.cfg.DrainDelay)
		if d, ok := s.svc.(Drainer); ok {
			draining.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
				defer cancel()
				d.Drain(ctx)
			})
		}
	}
	if drain > 0 && len(started) > 0 {
		t := time.NewTimer(drain)
		<-t.C
	}
	draining.Wait()
	errs := []error{cause}
	for i := len(started) - 1; i >= 0; i-- {
		errs = append(errs, started[i].stop())
	}
	return errors.Join(errs...)
}
