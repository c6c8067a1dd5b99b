package main

import (
	"context"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/kubecord/kubecord/discordsim"
	"github.com/kubecord/kubecord/internal/testutil"
)

func TestParseMix(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		want    discordsim.EventMix
		wantErr bool
	}{
		{in: "", want: discordsim.EventMix{}},
		{in: "messages=10,typing=5", want: discordsim.EventMix{Messages: 10, Typing: 5}},
		{in: " voice=1.5 , members=0", want: discordsim.EventMix{Voice: 1.5}},
		{in: "messages", wantErr: true},
		{in: "emails=3", wantErr: true},
		{in: "messages=-1", wantErr: true},
		{in: "messages=lots", wantErr: true},
	} {
		got, err := parseMix(tc.in)
		if (err != nil) != tc.wantErr {
			t.Fatalf("parseMix(%q) error %v, want error %v", tc.in, err, tc.wantErr)
		}
		if err == nil && got != tc.want {
			t.Fatalf("parseMix(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

// envMap is a lookupEnv over a fixed set of variables.
func envMap(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
}

func TestParseSimFlags(t *testing.T) {
	t.Parallel()
	defaults := simFlags{
		guilds: 100, maxConc: 1, budget: 1000, heartbeat: 41250 * time.Millisecond, identWindow: 5 * time.Second,
		skew: 1.3, seed: 1, addr: "127.0.0.1:7010", resumeAddr: "127.0.0.1:7011",
	}
	with := func(change func(*simFlags)) simFlags {
		f := defaults
		change(&f)
		return f
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want simFlags
	}{
		{name: "defaults", want: defaults},
		{
			name: "KUBECORD_<FLAG>",
			env: map[string]string{
				"KUBECORD_GUILDS": "7", "KUBECORD_HOT_GUILDS": "2", "KUBECORD_HEARTBEAT_INTERVAL": "2s",
				"KUBECORD_RATE": "12.5", "KUBECORD_SKEW": "1.5", "KUBECORD_SEED": "42", "KUBECORD_MIX": "messages=1",
				"KUBECORD_RESUME_ADDR": "127.0.0.1:0", "KUBECORD_TOKEN": "sim-test-token-a,sim-test-token-b", "KUBECORD_V": "true",
			},
			want: with(func(f *simFlags) {
				f.guilds, f.hot, f.heartbeat, f.rate, f.skew, f.seed = 7, 2, 2*time.Second, 12.5, 1.5, 42
				f.mix, f.resumeAddr, f.tokens, f.verbose = "messages=1", "127.0.0.1:0", "sim-test-token-a,sim-test-token-b", true
			}),
		},
		{
			name: "older KUBECORD_SIM_<NAME>",
			env: map[string]string{
				"KUBECORD_SIM_GUILDS": "8", "KUBECORD_SIM_MEMBERS": "80", "KUBECORD_SIM_MAX_CONCURRENCY": "16",
				"KUBECORD_SIM_SESSION_START_LIMIT": "5", "KUBECORD_SIM_IDENTIFY_WINDOW": "100ms",
				"KUBECORD_SIM_ADDR": "127.0.0.1:0", "KUBECORD_SIM_TOKEN": "sim-test-old-token", "KUBECORD_SIM_SHARDS": "4",
			},
			want: with(func(f *simFlags) {
				f.guilds, f.members, f.maxConc, f.budget, f.identWindow = 8, 80, 16, 5, 100*time.Millisecond
				f.addr, f.tokens, f.shards = "127.0.0.1:0", "sim-test-old-token", 4
			}),
		},
		{
			name: "KUBECORD_<FLAG> wins over KUBECORD_SIM_<NAME>",
			env:  map[string]string{"KUBECORD_GUILDS": "7", "KUBECORD_SIM_GUILDS": "8", "KUBECORD_SIM_RATE": "3"},
			want: with(func(f *simFlags) { f.guilds, f.rate = 7, 3 }),
		},
		{
			name: "a bad older value is ignored when the new name is set",
			env:  map[string]string{"KUBECORD_GUILDS": "7", "KUBECORD_SIM_GUILDS": "many"},
			want: with(func(f *simFlags) { f.guilds = 7 }),
		},
		{
			name: "the command line wins over both",
			args: []string{"--guilds=9", "-v"},
			env:  map[string]string{"KUBECORD_GUILDS": "7", "KUBECORD_SIM_GUILDS": "8", "KUBECORD_SIM_V": "false"},
			want: with(func(f *simFlags) { f.guilds, f.verbose = 9, true }),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs := flag.NewFlagSet("kubecord sim", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			got, err := parseSimFlags(fs, tt.args, envMap(tt.env))
			if err != nil {
				t.Fatalf("parseSimFlags(%q, %v): %v", tt.args, tt.env, err)
			}
			if got != tt.want {
				t.Errorf("parseSimFlags(%q, %v) =\n%+v\nwant\n%+v", tt.args, tt.env, got, tt.want)
			}
		})
	}
}

func TestParseSimFlagsBadValues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want []string // substrings of the error
	}{
		{name: "new name", env: map[string]string{"KUBECORD_GUILDS": "lots"}, want: []string{`KUBECORD_GUILDS="lots"`, "--guilds"}},
		{name: "older name", env: map[string]string{"KUBECORD_SIM_RATE": "fast"}, want: []string{`KUBECORD_SIM_RATE="fast"`, "--rate"}},
		{
			name: "a duration without unit",
			env:  map[string]string{"KUBECORD_SIM_HEARTBEAT_INTERVAL": "41250"},
			want: []string{"KUBECORD_SIM_HEARTBEAT_INTERVAL", "--heartbeat-interval"},
		},
		{
			name: "every bad variable at once",
			env:  map[string]string{"KUBECORD_SEED": "-1", "KUBECORD_SIM_SHARDS": "two"},
			want: []string{"KUBECORD_SEED", "--seed", "KUBECORD_SIM_SHARDS", "--shards"},
		},
		{
			name: "a bad new value is not replaced by the older name",
			env:  map[string]string{"KUBECORD_GUILDS": "lots", "KUBECORD_SIM_GUILDS": "8"},
			want: []string{`KUBECORD_GUILDS="lots"`},
		},
		{name: "positional argument", args: []string{"100"}, want: []string{`unexpected argument "100"`}},
		{name: "unknown flag", args: []string{"-nope"}, want: []string{"-nope"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs := flag.NewFlagSet("kubecord sim", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			_, err := parseSimFlags(fs, tt.args, envMap(tt.env))
			if err == nil {
				t.Fatalf("parseSimFlags(%q, %v) succeeded, want an error", tt.args, tt.env)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestRunSimRejectsBadConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		env  map[string]string
	}{
		{args: []string{"-guilds", "-3"}},
		{args: []string{"-mix", "bogus=1"}},
		{args: []string{"-skew", "0.5", "-rate", "10"}},
		{args: []string{"-nope"}},
		{env: map[string]string{"KUBECORD_SIM_GUILDS": "-3"}},
		{env: map[string]string{"KUBECORD_MIX": "bogus=1"}},
	} {
		ctx := context.WithValue(t.Context(), stdioKey{}, stdio{io.Discard, io.Discard})
		if err := runSimEnv(ctx, tc.args, envMap(tc.env)); err == nil {
			t.Fatalf("runSim(%v) with environment %v succeeded, want an error", tc.args, tc.env)
		}
	}
}

// TestRunSimFromEnvironment runs the simulator with settings from both
// spellings of the environment and checks that it is built with them.
func TestRunSimFromEnvironment(t *testing.T) {
	t.Parallel()
	var stdout, stderr testutil.SyncBuffer
	ctx, cancel := context.WithCancel(context.WithValue(t.Context(), stdioKey{}, stdio{&stdout, &stderr}))
	defer cancel()
	env := map[string]string{
		"KUBECORD_SIM_GUILDS": "3", "KUBECORD_MEMBERS": "30", "KUBECORD_SIM_SHARDS": "2",
		"KUBECORD_ADDR": "127.0.0.1:0", "KUBECORD_SIM_RESUME_ADDR": "127.0.0.1:0",
	}
	done := make(chan error, 1)
	go func() { done <- runSimEnv(ctx, nil, envMap(env)) }()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(stdout.String(), "bot token:") {
		select {
		case err := <-done:
			t.Fatalf("runSim returned before it was ready: %v\nstderr: %s", err, stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the simulator did not start in time; stdout: %q, stderr: %q", stdout.String(), stderr.String())
		}
	}
	if want := "3 guilds, 30 members, 2 recommended shards"; !strings.Contains(stdout.String(), want) {
		t.Errorf("stdout %q, want %q", stdout.String(), want)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("runSim after cancel: %v", err)
	}
}
