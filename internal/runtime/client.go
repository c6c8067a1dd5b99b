package runtime

import (
	"fmt"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// ClientConfig says how one Kubecord service calls another.
type ClientConfig struct {
	// AuthSecret is sent as "authorization: Bearer <secret>" on every call;
	// empty sends nothing.
	AuthSecret string
	// TLSCA verifies the server's certificate; empty uses the system roots.
	// TLS is on when TLSCA or TLSCert is set, plaintext otherwise.
	TLSCA string
	// TLSCert and TLSKey are this client's certificate for mTLS.
	TLSCert, TLSKey string
	// ServerName overrides the name checked in the server's certificate
	// (defaults to the host of the target).
	ServerName string
}

func (c ClientConfig) tlsEnabled() bool { return c.TLSCA != "" || c.TLSCert != "" }

// Client returns the ClientConfig a service started with c uses to call its
// peers: the same shared secret, and with TLS the same certificate (which
// then doubles as the client certificate, so it must allow client
// authentication: extended key usage clientAuth as well as serverAuth) and
// CA. It assumes all services of a deployment share one secret and one CA,
// the way Kubecord deploys them.
func (c Config) Client() ClientConfig {
	return ClientConfig{AuthSecret: c.AuthSecret, TLSCA: c.TLSCA, TLSCert: c.TLSCert, TLSKey: c.TLSKey}
}

// Client keepalive stays above the server's enforcement MinTime, or the
// server would close the connection with ENHANCE_YOUR_CALM.
const (
	clientKeepaliveTime    = 30 * time.Second
	clientKeepaliveTimeout = 10 * time.Second
)

// Dial returns a client connection to target ("host:port", or
// "dns:///name:port" to balance over every address of a headless Kubernetes
// service) for service-to-service calls: the shared secret as per-RPC
// credentials, TLS when configured, OpenTelemetry tracing, keepalive, capped
// reconnect backoff and round-robin balancing. Like grpc.NewClient it does
// not connect until the first call. The secret travels in plaintext when TLS
// is off: keep such traffic on loopback or a trusted network.
func Dial(target string, c ClientConfig, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	tlsCfg, err := clientTLS(c)
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", target, err)
	}
	transport := insecure.NewCredentials()
	if tlsCfg != nil {
		transport = credentials.NewTLS(tlsCfg)
	}
	base := []grpc.DialOption{
		grpc.WithTransportCredentials(transport),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithPropagators(propagators))),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                clientKeepaliveTime,
			Timeout:             clientKeepaliveTimeout,
			PermitWithoutStream: true,
		}),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  250 * time.Millisecond,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   10 * time.Second,
			},
			MinConnectTimeout: 5 * time.Second,
		}),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
	}
	if c.AuthSecret != "" {
		base = append(base, grpc.WithPerRPCCredentials(bearer{header: "Bearer " + c.AuthSecret, requireTLS: tlsCfg != nil}))
	}
	conn, err := grpc.NewClient(target, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", target, err)
	}
	return conn, nil
}
