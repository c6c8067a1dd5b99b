package runtime

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// openServices stay reachable without the shared secret, so that probes
// (grpc_health_probe, Kubernetes gRPC probes) and grpcurl's describe/list
// work without credentials. Neither exposes data: health says SERVING or not,
// reflection lists the public schema.
var openServices = map[string]bool{
	"grpc.health.v1.Health":                    true,
	"grpc.reflection.v1.ServerReflection":      true,
	"grpc.reflection.v1alpha.ServerReflection": true,
}

// serviceOf returns the service part of "/pkg.Service/Method".
func serviceOf(fullMethod string) string {
	s := strings.TrimPrefix(fullMethod, "/")
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		return s[:i]
	}
	return s
}

// authenticator checks the shared secret on every call to a service that is
// not open.
type authenticator struct {
	want   [sha256.Size]byte
	logger *slog.Logger
}

func newAuthenticator(secret string, logger *slog.Logger) *authenticator {
	return &authenticator{want: sha256.Sum256([]byte(secret)), logger: logger}
}

func (a *authenticator) check(ctx context.Context, fullMethod string) error {
	if openServices[serviceOf(fullMethod)] {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		a.reject(ctx, fullMethod, "missing")
		return status.Error(codes.Unauthenticated, "missing authorization metadata: send 'authorization: Bearer <secret>' with the shared secret this server runs with (--auth-secret / KUBECORD_AUTH_SECRET)")
	}
	token, ok := strings.CutPrefix(vals[0], "Bearer ")
	if !ok {
		a.reject(ctx, fullMethod, "not bearer")
		return status.Error(codes.Unauthenticated, "authorization metadata must be 'Bearer <secret>'")
	}
	// Comparing digests keeps the comparison constant-time in the secret's
	// length too.
	got := sha256.Sum256([]byte(token))
	if len(vals) != 1 || subtle.ConstantTimeCompare(got[:], a.want[:]) != 1 {
		a.reject(ctx, fullMethod, "wrong secret")
		return status.Error(codes.Unauthenticated, "wrong shared secret in authorization metadata: the caller's --auth-secret must equal this server's")
	}
	return nil
}

func (a *authenticator) reject(ctx context.Context, fullMethod, why string) {
	addr := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		addr = p.Addr.String()
	}
	a.logger.WarnContext(ctx, "rejected unauthenticated call", "grpc.method", fullMethod, "reason", why, "peer.address", addr)
}

func (a *authenticator) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := a.check(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (a *authenticator) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := a.check(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return handler(srv, ss)
}

// bearer sends the shared secret with every call.
type bearer struct {
	header     string
	requireTLS bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": b.header}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.requireTLS }
