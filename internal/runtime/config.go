package runtime

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/kubecord/kubecord/internal/redact"
)

// EnvPrefix starts the name of every environment variable that stands in for
// a flag: --drain-delay is read from KUBECORD_DRAIN_DELAY.
const EnvPrefix = "KUBECORD_"

// minSecretLen is the shortest accepted --auth-secret: anything shorter can
// be guessed, and redact ignores shorter values.
const minSecretLen = 16

// Config holds the settings every Kubecord service shares. Build one with
// DefaultConfig, bind it to flags with RegisterFlags, parse with ParseFlags
// and check it with Validate.
type Config struct {
	// Listen is the gRPC listen address (host:port).
	Listen string
	// MetricsListen is the HTTP address of /metrics, /healthz and /readyz;
	// empty disables the metrics server.
	MetricsListen string
	// AuthSecret is the shared secret callers present as
	// "authorization: Bearer <secret>"; empty disables the check.
	AuthSecret string
	// AuthSecretFile, when set, holds the secret (surrounding whitespace
	// trimmed). Validate reads it into AuthSecret.
	AuthSecretFile string
	// TLSCert and TLSKey are PEM files of the server's certificate and key.
	TLSCert, TLSKey string
	// TLSCA is a PEM bundle of CAs that sign client certificates; setting it
	// turns on mutual TLS (clients without a valid certificate are refused).
	// Clients use it to verify the server.
	TLSCA string
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// LogFormat is text or json.
	LogFormat string
	// DrainDelay is how long the server keeps serving after reporting
	// NOT_SERVING, so load balancers and clients move away first.
	DrainDelay time.Duration
	// ShutdownTimeout bounds the whole shutdown after the drain delay:
	// in-flight calls still running then are cancelled.
	ShutdownTimeout time.Duration
}

// DefaultConfig returns the defaults for a service whose gRPC server listens
// on 127.0.0.1:grpcPort and metrics server on 127.0.0.1:metricsPort.
func DefaultConfig(grpcPort, metricsPort int) Config {
	return Config{
		Listen:          net.JoinHostPort("127.0.0.1", strconv.Itoa(grpcPort)),
		MetricsListen:   net.JoinHostPort("127.0.0.1", strconv.Itoa(metricsPort)),
		LogLevel:        "info",
		LogFormat:       "text",
		DrainDelay:      5 * time.Second,
		ShutdownTimeout: 30 * time.Second,
	}
}

// RegisterFlags binds c's fields to flags on fs, with c's current values as
// defaults. Call it before ParseFlags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.RegisterListenFlags(fs, "")
	SecretVar(fs, &c.AuthSecret, "auth-secret", "shared secret that callers present as 'authorization: Bearer <secret>' (at least 16 characters; empty disables the check)")
	fs.StringVar(&c.AuthSecretFile, "auth-secret-file", c.AuthSecretFile, "file holding the shared secret (instead of --auth-secret)")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "PEM certificate of this server (with --tls-key enables TLS)")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "PEM private key of --tls-cert")
	fs.StringVar(&c.TLSCA, "tls-ca", c.TLSCA, "PEM CA bundle: servers require client certificates signed by it (mTLS), clients verify servers with it")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "log format: text or json")
	fs.DurationVar(&c.DrainDelay, "drain-delay", c.DrainDelay, "time to keep serving after reporting NOT_SERVING on shutdown")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "time allowed for in-flight calls and the service to stop after the drain delay")
}

// RegisterListenFlags binds only Listen and MetricsListen, as
// --<prefix>listen and --<prefix>metrics-listen. A process running several
// services (kubecord all) gives each one its own prefix ("rest-") and shares
// the other flags.
func (c *Config) RegisterListenFlags(fs *flag.FlagSet, prefix string) {
	fs.StringVar(&c.Listen, prefix+"listen", c.Listen, "gRPC listen address host:port (non-loopback hosts are reachable from the network: set --auth-secret or mTLS)")
	fs.StringVar(&c.MetricsListen, prefix+"metrics-listen", c.MetricsListen, "HTTP address of /metrics, /healthz and /readyz (empty disables)")
}

// ParseFlags parses args into fs, then sets every flag that was not given on
// the command line from its environment variable (KUBECORD_ + the flag name
// upper-cased with dashes as underscores), if that is set. Command-line flags
// win over the environment. lookupEnv is os.LookupEnv outside tests.
// Positional arguments are rejected: services take flags only.
func ParseFlags(fs *flag.FlagSet, args []string, lookupEnv func(string) (string, bool)) error {
	if err := fs.Parse(args); err != nil {
		return err // flag already printed it; ErrHelp passes through untouched
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: %s takes only flags (see --help)", fs.Arg(0), fs.Name())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		env := EnvName(f.Name)
		v, ok := lookupEnv(env)
		if !ok {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			shown := v
			if _, secret := f.Value.(*secretValue); secret {
				shown = redact.Placeholder
			}
			errs = append(errs, fmt.Errorf("environment %s=%q: invalid value for --%s: %w", env, shown, f.Name, err))
		}
	})
	return errors.Join(errs...)
}

// EnvName returns the environment variable that stands in for flag name.
func EnvName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// secretValue is a string flag that registers its value with redact and
// prints as [redacted], so flag listings and config dumps never show it.
type secretValue struct{ p *string }

func (s *secretValue) String() string {
	if s == nil || s.p == nil || *s.p == "" {
		return ""
	}
	return redact.Placeholder
}

func (s *secretValue) Set(v string) error {
	redact.Add(v)
	*s.p = v
	return nil
}

// SecretVar defines a string flag for a secret (a bot token, a password):
// its value is registered with redact as soon as it is set, and it prints as
// [redacted] in flag listings and in Describe.
func SecretVar(fs *flag.FlagSet, p *string, name, usage string) {
	redact.Add(*p)
	fs.Var(&secretValue{p: p}, name, usage)
}

// Describe returns every flag of fs with its current value, secrets shown as
// [redacted]: log it at start so an operator sees what the service runs with.
func Describe(fs *flag.FlagSet) []slog.Attr {
	var attrs []slog.Attr
	fs.VisitAll(func(f *flag.Flag) {
		attrs = append(attrs, slog.String(f.Name, f.Value.String()))
	})
	return attrs
}

// Validate checks c, reads AuthSecretFile, registers the secret with redact,
// and returns every problem at once, each saying which flag to fix.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if err := checkAddr(c.Listen); err != nil {
		add("--listen %q: %w", c.Listen, err)
	}
	if c.MetricsListen != "" {
		if err := checkAddr(c.MetricsListen); err != nil {
			add("--metrics-listen %q: %w (or set it empty to disable metrics)", c.MetricsListen, err)
		}
	}
	if c.AuthSecretFile != "" {
		if c.AuthSecret != "" {
			add("--auth-secret and --auth-secret-file are both set: keep only one")
		} else if b, err := os.ReadFile(c.AuthSecretFile); err != nil {
			add("--auth-secret-file: %w", err)
		} else if c.AuthSecret = strings.TrimSpace(string(b)); c.AuthSecret == "" {
			add("--auth-secret-file %q is empty: put the shared secret in it", c.AuthSecretFile)
		}
	}
	redact.Add(c.AuthSecret)
	if c.AuthSecret != "" && len(c.AuthSecret) < minSecretLen {
		add("--auth-secret is %d characters long: use at least %d random characters (e.g. `openssl rand -hex 32`)", len(c.AuthSecret), minSecretLen)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		add("--tls-cert and --tls-key go together: set both or neither")
	}
	if c.TLSCA != "" && c.TLSCert == "" {
		add("--tls-ca (mTLS) needs the server's own certificate: set --tls-cert and --tls-key too")
	}
	if c.TLSCert != "" && c.TLSKey != "" {
		if _, err := serverTLS(*c); err != nil {
			add("%w", err)
		}
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		add("--log-level: %w", err)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		add("--log-format %q: use text or json", c.LogFormat)
	}
	if c.DrainDelay < 0 {
		add("--drain-delay %s: must not be negative", c.DrainDelay)
	}
	if c.ShutdownTimeout <= 0 {
		add("--shutdown-timeout %s: must be positive (e.g. 30s)", c.ShutdownTimeout)
	}
	return errors.Join(errs...)
}

// LogValue shows c in logs with the secret redacted.
func (c Config) LogValue() slog.Value {
	secret := ""
	if c.AuthSecret != "" {
		secret = redact.Placeholder
	}
	return slog.GroupValue(
		slog.String("listen", c.Listen),
		slog.String("metrics_listen", c.MetricsListen),
		slog.String("auth_secret", secret),
		slog.String("auth_secret_file", c.AuthSecretFile),
		slog.String("tls_cert", c.TLSCert),
		slog.String("tls_key", c.TLSKey),
		slog.String("tls_ca", c.TLSCA),
		slog.String("log_level", c.LogLevel),
		slog.String("log_format", c.LogFormat),
		slog.Duration("drain_delay", c.DrainDelay),
		slog.Duration("shutdown_timeout", c.ShutdownTimeout),
	)
}

// String shows c with the secret redacted.
func (c Config) String() string { return c.LogValue().String() }

func checkAddr(addr string) error {
	// Any host is allowed: binding beyond loopback is the operator's
	// explicit choice, warned about at start when no auth is configured.
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("not host:port: %w", err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return nil
}

// isLoopback reports whether addr only accepts local connections.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
