package runtime

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func newFlags(c *Config) *flag.FlagSet {
	fs := flag.NewFlagSet("svc", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.RegisterFlags(fs)
	return fs
}

func TestParseFlagsEnvFallback(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(Config) error
		wantErr string
	}{
		{
			name: "defaults",
			check: func(c Config) error {
				if c.Listen != "127.0.0.1:7000" || c.DrainDelay != 5*time.Second || c.LogFormat != "text" {
					return fmt.Errorf("defaults changed: %v", c)
				}
				return nil
			},
		},
		{
			name: "env fills unset flags",
			env:  map[string]string{"KUBECORD_LISTEN": "0.0.0.0:1", "KUBECORD_DRAIN_DELAY": "2s", "KUBECORD_METRICS_LISTEN": "", "KUBECORD_AUTH_SECRET": testSecret},
			check: func(c Config) error {
				if c.Listen != "0.0.0.0:1" || c.DrainDelay != 2*time.Second || c.MetricsListen != "" || c.AuthSecret != testSecret {
					return fmt.Errorf("env not applied: %+v", c)
				}
				return nil
			},
		},
		{
			name: "flags win over env",
			args: []string{"--listen", "127.0.0.1:2", "--log-level=debug"},
			env:  map[string]string{"KUBECORD_LISTEN": "0.0.0.0:1", "KUBECORD_LOG_LEVEL": "error"},
			check: func(c Config) error {
				if c.Listen != "127.0.0.1:2" || c.LogLevel != "debug" {
					return fmt.Errorf("env overrode a flag: %+v", c)
				}
				return nil
			},
		},
		{
			name:    "bad env value names the variable",
			env:     map[string]string{"KUBECORD_SHUTDOWN_TIMEOUT": "soon"},
			wantErr: `environment KUBECORD_SHUTDOWN_TIMEOUT="soon": invalid value for --shutdown-timeout`,
		},
		{
			name:    "stray argument",
			args:    []string{"extra"},
			wantErr: `unexpected argument "extra"`,
		},
		{
			name:    "unknown flag",
			args:    []string{"--nope"},
			wantErr: "flag provided but not defined: -nope",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := DefaultConfig(7000, 9000)
			err := ParseFlags(newFlags(&c), tt.args, envOf(tt.env))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseFlags = %v, want error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseFlags: %v", err)
			}
			if err := tt.check(c); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestParseFlagsHelp(t *testing.T) {
	t.Parallel()
	c := DefaultConfig(1, 2)
	if err := ParseFlags(newFlags(&c), []string{"--help"}, envOf(nil)); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help = %v, want flag.ErrHelp", err)
	}
}

func TestSecretFlagNeverShown(t *testing.T) {
	t.Parallel()
	const token = "secret-flag-value-do-not-print-1"
	c := DefaultConfig(1, 2)
	fs := newFlags(&c)
	var botToken string
	SecretVar(fs, &botToken, "bot-token", "bot token")
	err := ParseFlags(fs, []string{"--auth-secret", token}, envOf(map[string]string{"KUBECORD_BOT_TOKEN": token}))
	if err != nil {
		t.Fatal(err)
	}
	if botToken != token || c.AuthSecret != token {
		t.Fatalf("secret flags not set: %q %q", botToken, c.AuthSecret)
	}
	var out bytes.Buffer
	fs.SetOutput(&out)
	fs.PrintDefaults()
	for _, a := range Describe(fs) {
		out.WriteString(a.String() + "\n")
	}
	out.WriteString(c.String())
	if strings.Contains(out.String(), token) {
		t.Errorf("secret printed:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "bot-token=[redacted]") || !strings.Contains(out.String(), "auth_secret=[redacted]") {
		t.Errorf("secrets not shown as [redacted]:\n%s", out.String())
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte("  "+testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyFile := filepath.Join(dir, "empty")
	if err := os.WriteFile(emptyFile, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ca := newPKI(t, "validate")
	cert, key := ca.issue(t, "srv")

	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr []string // all must appear; none means valid
	}{
		{"defaults", func(*Config) {}, nil},
		{"metrics disabled", func(c *Config) { c.MetricsListen = "" }, nil},
		{"tls and mtls", func(c *Config) { c.TLSCert, c.TLSKey, c.TLSCA = cert, key, ca.CAFile }, nil},
		{"secret file", func(c *Config) { c.AuthSecretFile = secretFile }, nil},
		{"bad listen", func(c *Config) { c.Listen = "localhost" }, []string{"--listen", "host:port"}},
		{"bad port", func(c *Config) { c.Listen = "127.0.0.1:99999" }, []string{"--listen", "0 to 65535"}},
		{"bad metrics listen", func(c *Config) { c.MetricsListen = "x" }, []string{"--metrics-listen", "empty to disable"}},
		{"short secret", func(c *Config) { c.AuthSecret = "hunter2-x" }, []string{"--auth-secret", "at least 16"}},
		{"secret and file", func(c *Config) { c.AuthSecret, c.AuthSecretFile = testSecret, secretFile }, []string{"keep only one"}},
		{"missing secret file", func(c *Config) { c.AuthSecretFile = filepath.Join(dir, "nope") }, []string{"--auth-secret-file", "no such file"}},
		{"empty secret file", func(c *Config) { c.AuthSecretFile = emptyFile }, []string{"is empty"}},
		{"cert without key", func(c *Config) { c.TLSCert = cert }, []string{"--tls-cert and --tls-key go together"}},
		{"ca without cert", func(c *Config) { c.TLSCA = ca.CAFile }, []string{"--tls-ca (mTLS) needs"}},
		{"unreadable cert", func(c *Config) { c.TLSCert, c.TLSKey = filepath.Join(dir, "x.pem"), key }, []string{"loading the key pair"}},
		{"ca not pem", func(c *Config) { c.TLSCert, c.TLSKey, c.TLSCA = cert, key, secretFile }, []string{"--tls-ca", "no PEM certificate"}},
		{"bad level", func(c *Config) { c.LogLevel = "loud" }, []string{"--log-level", "debug, info, warn or error"}},
		{"bad format", func(c *Config) { c.LogFormat = "xml" }, []string{"--log-format", "text or json"}},
		{"negative drain", func(c *Config) { c.DrainDelay = -time.Second }, []string{"--drain-delay"}},
		{"zero timeout", func(c *Config) { c.ShutdownTimeout = 0 }, []string{"--shutdown-timeout"}},
		{"all errors at once", func(c *Config) { c.LogLevel, c.LogFormat = "x", "y" }, []string{"--log-level", "--log-format"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := DefaultConfig(7000, 9000)
			tt.mod(&c)
			err := c.Validate()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate passed, want errors %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %q, want it to contain %q", err, w)
				}
			}
		})
	}
	t.Run("secret file is read", func(t *testing.T) {
		t.Parallel()
		c := DefaultConfig(1, 2)
		c.AuthSecretFile = secretFile
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		if c.AuthSecret != testSecret {
			t.Errorf("AuthSecret = %q, want the trimmed file content", c.AuthSecret)
		}
	})
}

func TestEnvName(t *testing.T) {
	t.Parallel()
	for flagName, want := range map[string]string{
		"listen":           "KUBECORD_LISTEN",
		"metrics-listen":   "KUBECORD_METRICS_LISTEN",
		"rest-listen":      "KUBECORD_REST_LISTEN",
		"shutdown-timeout": "KUBECORD_SHUTDOWN_TIMEOUT",
	} {
		if got := EnvName(flagName); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", flagName, got, want)
		}
	}
}

func TestRegisterListenFlagsPrefix(t *testing.T) {
	t.Parallel()
	shared, rest := DefaultConfig(1, 2), DefaultConfig(3, 4)
	fs := newFlags(&shared)
	rest.RegisterListenFlags(fs, "rest-")
	err := ParseFlags(fs, []string{"--rest-listen", "127.0.0.1:5"}, envOf(map[string]string{"KUBECORD_REST_METRICS_LISTEN": "127.0.0.1:6"}))
	if err != nil {
		t.Fatal(err)
	}
	if rest.Listen != "127.0.0.1:5" || rest.MetricsListen != "127.0.0.1:6" || shared.Listen != "127.0.0.1:1" {
		t.Errorf("prefixed flags: rest=%s/%s shared=%s", rest.Listen, rest.MetricsListen, shared.Listen)
	}
}

func TestNewLogger(t *testing.T) {
	t.Parallel()
	const token = "MTA5ODc2NTQzMjEwOTg3NjU0.GhIjKl.abcdefghijklmnopqrstuvwxyz0123456789AB"
	for _, format := range []string{"text", "json"} {
		var buf bytes.Buffer
		l, err := NewLogger("info", format, &buf)
		if err != nil {
			t.Fatal(err)
		}
		l.Debug("hidden")
		l.Info("connecting with "+token, "err", errors.New("401 for Bot "+token), "nested", map[string]string{"Authorization": "Bot " + token})
		out := buf.String()
		if strings.Contains(out, "hidden") {
			t.Errorf("%s: debug line printed at info level", format)
		}
		if strings.Contains(out, token) || strings.Contains(out, "GhIjKl") {
			t.Errorf("%s: token leaked:\n%s", format, out)
		}
		if !strings.Contains(out, "[redacted]") {
			t.Errorf("%s: nothing redacted:\n%s", format, out)
		}
	}
	if _, err := NewLogger("loud", "text", io.Discard); err == nil {
		t.Error("NewLogger accepted level loud")
	}
	if _, err := NewLogger("info", "xml", io.Discard); err == nil {
		t.Error("NewLogger accepted format xml")
	}
}

func TestDialErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, c := range map[string]ClientConfig{
		"cert without key": {TLSCert: "x.pem"},
		"missing CA":       {TLSCA: filepath.Join(dir, "nope.pem")},
		"missing cert":     {TLSCert: filepath.Join(dir, "c.pem"), TLSKey: filepath.Join(dir, "k.pem")},
	} {
		if _, err := Dial("127.0.0.1:1", c); err == nil {
			t.Errorf("%s: Dial succeeded", name)
		}
	}
}

func TestNonLoopbackWarning(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		listen string
		secret string
		warn   bool
	}{
		{"loopback", "127.0.0.1:0", "", false},
		{"localhost", "localhost:0", "", false},
		{"ipv6 loopback", "[::1]:0", "", false},
		{"all interfaces without auth", "0.0.0.0:0", "", true},
		{"empty host without auth", ":0", "", true},
		{"all interfaces with auth", "0.0.0.0:0", testSecret, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig()
			cfg.Listen, cfg.AuthSecret = tt.listen, tt.secret
			_, logs := newServer(t, cfg, newTestService("w")) // never run: nothing listens
			if got := strings.Contains(logs.String(), "beyond loopback without authentication"); got != tt.warn {
				t.Errorf("warning logged = %v, want %v:\n%s", got, tt.warn, logs)
			}
		})
	}
}
