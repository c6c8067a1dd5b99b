package redact

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// A made-up token with the shape of a real one; it was never valid.
const fakeToken = "MTA5ODc2NTQzMjEwOTg3NjU0.GhIjKl.abcdefghijklmnopqrstuvwxyz0123456789AB"

func TestStringShapes(t *testing.T) {
	t.Parallel()
	var r Redactor
	r.Add("s3cret-shared-value")
	tests := []struct {
		name, in, want string
	}{
		{"registered secret", "secret is s3cret-shared-value!", "secret is [redacted]!"},
		{"bot token shape", "token=" + fakeToken + " ok", "token=[redacted] ok"},
		{"Bot scheme", "sent Bot abc.def to discord", "sent Bot [redacted] to discord"},
		{"prose after bot stays", "the bot is not in guild 12 (bot token missing)", "the bot is not in guild 12 (bot token missing)"},
		{"long plain word after Bot is redacted", "Bot abcdefghijklmnopqrstuvwxyz", "Bot [redacted]"},
		{"Bearer scheme", "metadata Bearer xyz123", "metadata Bearer [redacted]"},
		{"authorization header colon", "Authorization: Bot abc", "Authorization: [redacted]"},
		{"authorization kv", "authorization=hunter2hunter2 next", "authorization=[redacted] next"},
		{"authorization json", `{"Authorization":"Bot abc","x":1}`, `{"Authorization":"[redacted]","x":1}`},
		{"http.Header printed", fmt.Sprint(http.Header{"Authorization": {"Bot abc"}}), "map[Authorization:[[redacted]]]"},
		{"grpc metadata printed", fmt.Sprint(map[string][]string{"authorization": {"Bearer zz"}}), "map[authorization:[[redacted]]]"},
		{"plain text untouched", "guild 1234 has 56 members", "guild 1234 has 56 members"},
		{"robot is not a scheme", "robot arms", "robot arms"},
		{"short dotted text untouched", "v1.2.3 and a.b.c", "v1.2.3 and a.b.c"},
		{"already redacted stays", "Authorization: [redacted] Bot [redacted]", "Authorization: [redacted] Bot [redacted]"},
		{"redis URL password", "dial redis://:hunter2hunter2@10.0.0.7:6379/0 failed", "dial redis://:[redacted]@10.0.0.7:6379/0 failed"},
		{"rediss URL user and password", "rediss://default:p4ss-w0rd@cache:6380", "rediss://default:[redacted]@cache:6380"},
		{"password holding @", "redis://:p@ss@cache:6379", "redis://:[redacted]@cache:6379"},
		{"URL quoted by a log handler", `redis_url="redis://:s3cr3t@cache:6379" next=1`, `redis_url="redis://:[redacted]@cache:6379" next=1`},
		{"URL in JSON", `{"url":"redis://u:s3cr3t@cache/0"}`, `{"url":"redis://u:[redacted]@cache/0"}`},
		{"user name holding @ and '", "redis://o'neil@corp:pw'1@cache", "redis://o'neil@corp:[redacted]@cache"},
		{"URL user name alone stays", "redis://cache-user@cache:6379", "redis://cache-user@cache:6379"},
		{"URL without credentials stays", "redis://cache:6379/0", "redis://cache:6379/0"},
		{"@ in a URL path stays", "GET https://discord.com/api/v10/users/@me", "GET https://discord.com/api/v10/users/@me"},
		{"port then @ in the path stays", "http://127.0.0.1:7010/users/@me", "http://127.0.0.1:7010/users/@me"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := r.String(tt.in)
			if got != tt.want {
				t.Errorf("String(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if again := r.String(got); again != got {
				t.Errorf("redacting twice changed %q to %q", got, again)
			}
		})
	}
}

func TestAddEscapedFormsAndShortValues(t *testing.T) {
	t.Parallel()
	var r Redactor
	secret := `we"ird\secret value`
	r.Add(secret)
	r.Add("short") // below MinSecretLen: ignored on purpose
	quoted := fmt.Sprintf("%q", secret)
	if got := r.String(quoted); strings.Contains(got, "ird") {
		t.Errorf("Go-quoted secret not redacted: %s", got)
	}
	js, err := json.Marshal(secret)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.String(string(js)); strings.Contains(got, "ird") {
		t.Errorf("JSON-escaped secret not redacted: %s", got)
	}
	if got := r.String("a short word"); got != "a short word" {
		t.Errorf("short value was redacted: %q", got)
	}
}

func TestAddLongestFirst(t *testing.T) {
	t.Parallel()
	var r Redactor
	r.Add("abcdefgh")
	r.Add("abcdefghijklmnop")
	if got := r.String("x abcdefghijklmnop y"); got != "x [redacted] y" {
		t.Errorf("got %q, want the longer secret replaced whole", got)
	}
}

type creds struct {
	User  string
	Token string
}

type valuer struct{ tok string }

func (v valuer) LogValue() slog.Value { return slog.StringValue("tok " + v.tok) }

func TestLoggerCannotLeak(t *testing.T) {
	t.Parallel()
	const registered = "registered-shared-secret-42"
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			var r Redactor
			r.Add(registered)
			var buf bytes.Buffer
			var h slog.Handler
			if format == "json" {
				h = slog.NewJSONHandler(r.Writer(&buf), nil)
			} else {
				h = slog.NewTextHandler(r.Writer(&buf), nil)
			}
			// Handler only (no writer) must be enough on its own, too.
			var bufHandlerOnly bytes.Buffer
			hOnly := r.Handler(slog.NewJSONHandler(&bufHandlerOnly, nil))
			for _, logger := range []*slog.Logger{slog.New(r.Handler(h)), slog.New(hOnly)} {
				logger.Info("message carries " + fakeToken + " and " + registered)
				logger.Info("attr", "token", fakeToken, "secret", registered)
				logger.Info("group", slog.Group("outer", slog.Group("inner", "t", fakeToken, "s", registered)))
				logger.Error("error", "err", fmt.Errorf("dialing: %w", errors.New("bad token "+fakeToken+" "+registered)))
				logger.Info("struct", "creds", creds{User: "u", Token: registered}, "ptr", &creds{Token: fakeToken})
				logger.Info("valuer", "v", valuer{tok: registered})
				logger.With("pre", registered, slog.Group("g", "t", fakeToken)).WithGroup("grp").Info("with", "k", registered)
				logger.Info("header", "h", http.Header{"Authorization": {"Bot abcdef"}})
				logger.Info("key", registered, 1)
			}
			for name, out := range map[string]string{"handler+writer": buf.String(), "handler only": bufHandlerOnly.String()} {
				for _, leak := range []string{fakeToken, registered, "abcdef", "GhIjKl"} {
					if strings.Contains(out, leak) {
						t.Errorf("%s output leaks %q:\n%s", name, leak, out)
					}
				}
				if n := strings.Count(out, Placeholder); n < 15 {
					t.Errorf("%s output has %d placeholders, want at least 15:\n%s", name, n, out)
				}
			}
		})
	}
}

func TestPackageLevel(t *testing.T) {
	// Not parallel: registers a secret in the process-wide Redactor.
	Add("package-level-secret-value")
	if got := String("x package-level-secret-value"); got != "x [redacted]" {
		t.Errorf("String = %q", got)
	}
	var buf bytes.Buffer
	slog.New(NewHandler(slog.NewTextHandler(NewWriter(&buf), nil))).Info("package-level-secret-value")
	if strings.Contains(buf.String(), "package-level-secret-value") {
		t.Errorf("leak: %s", buf.String())
	}
	if Default() != &global {
		t.Error("Default is not the process-wide Redactor")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriterError(t *testing.T) {
	t.Parallel()
	var r Redactor
	if _, err := r.Writer(failWriter{}).Write([]byte("x")); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Write error = %v, want the underlying error wrapped", err)
	}
}

func FuzzString(f *testing.F) {
	for _, s := range []string{
		"", "plain", fakeToken, "Bot x", "Authorization: Bearer y", `{"authorization":"x"}`,
		"map[Authorization:[Bot z]]", "fuzz-secret-value", "[redacted]", "authorization=[redacted",
		"redis://:pw@host:6379/0", "rediss://u:p@ss@h?x=1", "s://u:Bot abc1@h", "http://h:80/@me",
	} {
		f.Add(s)
	}
	var r Redactor
	r.Add("fuzz-secret-value")
	f.Fuzz(func(t *testing.T, s string) {
		out := r.String(s)
		if strings.Contains(out, "fuzz-secret-value") {
			t.Errorf("registered secret survives: %q -> %q", s, out)
		}
		if tokenShape.MatchString(out) {
			t.Errorf("token shape survives: %q -> %q", s, out)
		}
		if again := r.String(out); again != out {
			t.Errorf("not idempotent: %q -> %q -> %q", s, out, again)
		}
		// net/url is the oracle: whatever it reads as a URL password must
		// not come out unchanged.
		if u, err := url.Parse(s); err == nil && u.User != nil && out == s {
			if p, _ := u.User.Password(); p != "" {
				t.Errorf("URL password %q survives in %q", p, s)
			}
		}
	})
}

func BenchmarkString(b *testing.B) {
	var r Redactor
	r.Add("registered-shared-secret-42")
	line := `time=2026-11-22T22:00:00Z level=INFO msg="finished call" grpc.service=kubecord.rest.v1.RestService grpc.method=Do grpc.code=OK grpc.time_ms=0.35 peer.address=127.0.0.1:53422` + "\n"
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		_ = r.String(line)
	}
}

// FuzzReplaceTokens checks the hand-written scanner against the regexp it
// replaces.
func FuzzReplaceTokens(f *testing.F) {
	for _, s := range []string{
		"", fakeToken, "x." + fakeToken + ".y", fakeToken + fakeToken, "a.b.c", "abc.def.ghi.jkl",
		"MTA5ODc2NTQzMjEwOTg3NjU0.GhIjKl.short", strings.Repeat("a", 20) + "." + strings.Repeat("b", 6) + "." + strings.Repeat("c", 27),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := replaceTokens(s), tokenShape.ReplaceAllLiteralString(s, Placeholder); got != want {
			t.Errorf("replaceTokens(%q) = %q, regexp gives %q", s, got, want)
		}
	})
}

func BenchmarkStringWithToken(b *testing.B) {
	var r Redactor
	line := `time=2026-11-22T22:00:00Z level=WARN msg="identify failed" err="401 Unauthorized" authorization="Bot ` + fakeToken + `"` + "\n"
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		_ = r.String(line)
	}
}
