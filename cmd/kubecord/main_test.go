package main

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

// A command only the test binary has: it waits for its context, like a
// service does, so the signal path of run can be tested.
func init() {
	register(command{name: "test-wait", summary: "test only", run: func(ctx context.Context, _ []string) error {
		<-ctx.Done()
		return ctx.Err()
	}})
}

const fakeToken = "MTA5ODc2NTQzMjEwOTg3NjU0.GhIjKl.abcdefghijklmnopqrstuvwxyz0123456789AB"

func TestRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout []string
		wantStderr []string
		notStderr  []string
	}{
		{"no arguments", nil, exitUsage, nil, []string{"Usage: kubecord <command>", "version"}, nil},
		{"version", []string{"version"}, exitOK, []string{"kubecord ", "go1."}, nil, nil},
		{"--version", []string{"--version"}, exitOK, []string{"kubecord "}, nil, nil},
		{"--help lists commands", []string{"--help"}, exitOK, []string{"Commands:", "print the version and build information", "test-wait", "KUBECORD_"}, nil, nil},
		{"-h", []string{"-h"}, exitOK, []string{"Commands:"}, nil, nil},
		{"help", []string{"help"}, exitOK, []string{"Commands:"}, nil, nil},
		{"help for a command", []string{"help", "version"}, exitOK, nil, []string{"Usage of kubecord version"}, nil},
		{"unknown command", []string{"frobnicate"}, exitUsage, nil, []string{`unknown command "frobnicate"`, "Commands:"}, []string{"did you mean"}},
		{"typo gets a suggestion", []string{"vresion"}, exitUsage, nil, []string{`unknown command "vresion" (did you mean "version"?)`}, nil},
		{"prefix gets a suggestion", []string{"vers"}, exitUsage, nil, []string{`(did you mean "version"?)`}, nil},
		{"flag before command", []string{"--listen", "x"}, exitUsage, nil, []string{"flags go after the command"}, nil},
		{"command --help", []string{"version", "--help"}, exitOK, nil, []string{"Usage of kubecord version"}, nil},
		{"command error", []string{"version", "extra"}, exitError, nil, []string{`kubecord version: unexpected argument "extra"`}, nil},
		{"error is redacted", []string{"version", fakeToken}, exitError, nil, []string{"[redacted]"}, []string{fakeToken, "GhIjKl"}},
		{"bad flag", []string{"version", "--nope"}, exitError, nil, []string{"flag provided but not defined: -nope", "Usage of kubecord version"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), tt.args, &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, &stdout, &stderr)
			}
			for _, w := range tt.wantStdout {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, &stdout)
				}
			}
			for _, w := range tt.wantStderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, &stderr)
				}
			}
			for _, w := range tt.notStderr {
				if strings.Contains(stderr.String(), w) {
					t.Errorf("stderr has %q:\n%s", w, &stderr)
				}
			}
		})
	}
}

func TestRunStoppedBySignalExitsZero(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // as if SIGTERM had arrived
	var stdout, stderr bytes.Buffer
	if code := run(ctx, []string{"test-wait"}, &stdout, &stderr); code != exitOK {
		t.Errorf("exit code %d after a signal, want 0; stderr: %s", code, &stderr)
	}
}

func TestRegisterRejectsMistakes(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]command{
		"duplicate": {name: "version", run: runVersion},
		"no name":   {run: runVersion},
		"no run":    {name: "x"},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: register did not panic", name)
				}
			}()
			register(c)
		}()
	}
}

func TestVersionString(t *testing.T) {
	t.Parallel()
	info := &debug.BuildInfo{
		Main: debug.Module{Version: "v0.3.0"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123"},
			{Key: "vcs.time", Value: "2026-11-22T22:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	tests := []struct {
		name string
		v    string
		info *debug.BuildInfo
		want []string
	}{
		{"ldflags wins", "v1.2.3", info, []string{"kubecord v1.2.3 (", "commit 0123456789ab (modified)", "committed 2026-11-22T22:00:00Z", "go1."}},
		{"module version", "", info, []string{"kubecord v0.3.0 ("}},
		{"no build info", "", nil, []string{"kubecord (unknown) (go1."}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := versionString(tt.v, tt.info)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("versionString = %q, want it to contain %q", got, w)
				}
			}
		})
	}
}

func TestEditDistance(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		a, b string
		want int
	}{{"", "", 0}, {"gateway", "gateway", 0}, {"gatway", "gateway", 1}, {"kitten", "sitting", 3}, {"", "abc", 3}} {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

// TestBinary builds the real binary and checks what a user sees.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "kubecord")
	build := exec.CommandContext(t.Context(), "go", "build", "-ldflags", "-X main.version=v9.9.9-test", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	tests := []struct {
		args     []string
		wantCode int
		want     string // in stdout+stderr
	}{
		{[]string{"--help"}, 0, "version  print the version"},
		{[]string{"version"}, 0, "kubecord v9.9.9-test ("},
		{[]string{"nope"}, 2, `unknown command "nope"`},
		{nil, 2, "Usage: kubecord <command>"},
	}
	for _, tt := range tests {
		out, err := exec.CommandContext(t.Context(), bin, tt.args...).CombinedOutput()
		code := 0
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			code = exitErr.ExitCode()
		} else if err != nil {
			t.Fatalf("running %v: %v", tt.args, err)
		}
		if code != tt.wantCode || !strings.Contains(string(out), tt.want) {
			t.Errorf("kubecord %v: exit %d, output:\n%s\nwant exit %d and %q", tt.args, code, out, tt.wantCode, tt.want)
		}
	}
}
