// Package runtime is what every Kubecord service runs on: configuration from
// flags and KUBECORD_* environment variables, a redacting logger, the gRPC
// server (health, reflection, OpenTelemetry, Prometheus metrics, recovery,
// logging, shared-secret auth, TLS/mTLS, keepalive), the metrics HTTP server
// (/metrics, /healthz, /readyz), graceful shutdown, and Dial for calling
// other services.
//
// A service implements [Service] (Name, Register, Start, Stop) and its
// command does the rest in a few lines:
//
//	cfg := runtime.DefaultConfig(7002, 9002)
//	fs := flag.NewFlagSet("rest", flag.ContinueOnError)
//	cfg.RegisterFlags(fs)
//	if err := runtime.ParseFlags(fs, args, os.LookupEnv); err != nil {
//		return err
//	}
//	logger, err := runtime.NewLogger(cfg.LogLevel, cfg.LogFormat, os.Stderr)
//	if err != nil {
//		return err
//	}
//	srv, err := runtime.NewServer(cfg, rest.New(logger), logger)
//	if err != nil {
//		return err
//	}
//	return runtime.Run(ctx, srv) // until ctx ends (SIGINT/SIGTERM)
//
// Several services run in one process by passing several servers to Run:
// they start in order and stop in reverse order, and the first error stops
// them all.
//
// go-redis prints its own messages (failed dials, pool trouble) with the
// standard log package unless told otherwise: main calls RouteRedisLogs once
// so that they go through the logger NewLogger built, redacted, at Warn with
// component=redis.
//
// # Security
//
// Listeners bind to loopback by default; another address is the operator's
// explicit choice (--listen), and is logged as a warning when neither a
// shared secret nor mTLS protects it. With --auth-secret every call must
// carry "authorization: Bearer <secret>", except the health and reflection
// services: probes and `grpcurl list/describe` must work without
// credentials, and neither exposes data. With --tls-cert/--tls-key the
// server speaks TLS; adding --tls-ca requires client certificates signed by
// that CA (mTLS). Certificate and key files are re-read when they change on
// disk, so rotated certificates apply to new connections without a restart
// (the CA bundle is read once). Secrets given through SecretVar flags or --auth-secret are
// registered with package redact and never appear in logs or in Describe.
//
// # Shutdown
//
// When ctx ends: health and /readyz report NOT_SERVING, the drain delay
// passes (calls are still served, so load balancers can move away), stream
// handlers see their context cancelled (long-lived streams must return then,
// ideally with codes.Unavailable so clients reconnect elsewhere), GracefulStop
// waits for in-flight calls up to the shutdown timeout and then cancels
// them, Service.Stop runs, and the metrics server stops.
package runtime

import "go.opentelemetry.io/otel/propagation"

// propagators carry W3C trace context and baggage across calls. They are
// passed to otelgrpc explicitly rather than read from the otel globals,
// whose default propagates nothing: a trace must run from the gateway
// through a worker into the REST call whether or not the process set them.
var propagators = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
