package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// composeFile is what this test reads of `docker-compose config`'s
// normalized output.
type composeFile struct {
	Services map[string]composeService `json:"services"`
	Volumes  map[string]any            `json:"volumes"`
}

type composeService struct {
	Image string `json:"image"`
	Build *struct {
		Context string `json:"context"`
		Target  string `json:"target"`
	} `json:"build"`
	Command     []string          `json:"command"`
	Entrypoint  []string          `json:"entrypoint"`
	Environment map[string]string `json:"environment"`
	EnvFile     []string          `json:"env_file"`
	// Ports are "host_ip:published:target/proto" strings, or objects
	// (published, target, host_ip) when no host IP is given.
	Ports       []json.RawMessage `json:"ports"`
	Healthcheck *struct {
		Test []string `json:"test"`
	} `json:"healthcheck"`
	DependsOn map[string]struct {
		Condition string `json:"condition"`
	} `json:"depends_on"`
	Restart         string   `json:"restart"`
	StopGracePeriod string   `json:"stop_grace_period"`
	ReadOnly        bool     `json:"read_only"`
	Profiles        []string `json:"profiles"`
}

// composeSecret stands in for KUBECORD_AUTH_SECRET: 32 characters, like
// `openssl rand -hex 16`.
const composeSecret = "0123456789abcdef0123456789abcdef"

// dockerCompose returns the docker-compose binary. Without it the compose
// checks are skipped on a developer's machine, but fail in CI (CI=true),
// where scripts/test.sh installs it.
func dockerCompose(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("docker-compose is not installed: CI must check docker-compose.yml (apt-get install -y docker-compose)")
		}
		t.Skip("docker-compose is not installed (apt-get install -y docker-compose); CI runs this check")
	}
	return bin
}

// compose runs docker-compose on files from the repository root with env as
// its only variables (an --env-file, so a developer's .env plays no part).
func compose(t *testing.T, env map[string]string, files []string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	bin := dockerCompose(t)
	envFile := filepath.Join(t.TempDir(), "test.env")
	var b strings.Builder
	for k, v := range env {
		fmt.Fprintf(&b, "%s=%s\n", k, v)
	}
	if err := os.WriteFile(envFile, []byte(b.String()), 0o600); err != nil {
		t.Fatalf("writing %s: %v", envFile, err)
	}
	full := []string{"--env-file", envFile}
	for _, f := range files {
		full = append(full, "-f", f)
	}
	full = append(full, args...)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, full...)
	cmd.Dir = repoRoot
	// Only what docker-compose needs to run: no variable of the caller's
	// shell may fill in ${...}.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "LANG=C.UTF-8"}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// composeSets are the ways the compose files are meant to be combined.
func composeSets(t *testing.T) [][]string {
	t.Helper()
	sets := [][]string{{"docker-compose.yml"}}
	if _, err := os.Stat(filepath.Join(repoRoot, "docker-compose.sim.yml")); err == nil {
		sets = append(sets, []string{"docker-compose.yml", "docker-compose.sim.yml"})
	}
	return sets
}

func TestComposeConfig(t *testing.T) {
	t.Parallel()
	env := map[string]string{"KUBECORD_AUTH_SECRET": composeSecret, "DISCORD_TOKEN": "test-token-not-real"}
	for _, files := range composeSets(t) {
		t.Run(strings.Join(files, "+"), func(t *testing.T) {
			t.Parallel()
			if _, stderr, err := compose(t, env, files, "config", "-q"); err != nil {
				t.Fatalf("docker-compose config -q: %v\n%s", err, stderr)
			}
			stdout, stderr, err := compose(t, env, files, "config")
			if err != nil {
				t.Fatalf("docker-compose config: %v\n%s", err, stderr)
			}
			var cf composeFile
			if err := yaml.Unmarshal([]byte(stdout), &cf); err != nil {
				t.Fatalf("reading docker-compose config's output: %v", err)
			}
			checkCompose(t, cf)
		})
	}
}

// TestComposeRequiresAuthSecret: the services listen beyond loopback, so
// compose refuses to start them without a shared secret instead of running
// them unauthenticated.
func TestComposeRequiresAuthSecret(t *testing.T) {
	t.Parallel()
	for _, files := range composeSets(t) {
		_, stderr, err := compose(t, map[string]string{"DISCORD_TOKEN": "x"}, files, "config", "-q")
		if err == nil || !strings.Contains(stderr, "KUBECORD_AUTH_SECRET") {
			t.Errorf("docker-compose %v config without KUBECORD_AUTH_SECRET: err = %v, stderr %q; want a failure naming KUBECORD_AUTH_SECRET", files, err, stderr)
		}
	}
}

// dockerfileStages returns the stage names of the Dockerfile (FROM ... AS name).
func dockerfileStages(t *testing.T) []string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatalf("reading the Dockerfile: %v", err)
	}
	var out []string
	for _, m := range regexp.MustCompile(`(?mi)^FROM\s+\S+\s+AS\s+(\S+)\s*$`).FindAllSubmatch(src, -1) {
		out = append(out, string(m[1]))
	}
	return out
}

func checkCompose(t *testing.T, cf composeFile) {
	stages := dockerfileStages(t)
	sdkVars := sdkEnv(t)
	for _, need := range []string{"redis", "gateway", "state", "rest", "ping"} {
		if _, ok := cf.Services[need]; !ok {
			t.Errorf("no service %q", need)
		}
	}
	// grpcPorts maps each kubecord service to its gRPC port, for the
	// addresses the others are given.
	grpcPorts := map[string]int{}
	for name, s := range cf.Services {
		if img, _ := imageName(s.Image); img == "kubecord" && len(s.Command) > 0 {
			if p, err := parseArgs(t, s.Command); err == nil {
				if port, err := listenPort(effective(t, p, s.Environment, "listen")); err == nil {
					grpcPorts[name] = port
				}
			}
		}
	}
	if sim, ok := cf.Services["sim"]; ok {
		checkComposeSim(t, cf, sim)
	}
	for name, s := range cf.Services {
		where := "service " + name
		if s.Image == "" {
			t.Errorf("%s: no image", where)
		}
		if h := registryHost(s.Image); h != "" {
			t.Errorf("%s: image %q names registry %s", where, s.Image, h)
		}
		if s.Build != nil && s.Build.Target != "" && !slices.Contains(stages, s.Build.Target) {
			t.Errorf("%s: build target %q is no stage of the Dockerfile (stages: %v)", where, s.Build.Target, stages)
		}
		if s.Restart == "" || s.Restart == "no" {
			t.Errorf("%s: set a restart policy", where)
		}
		if len(s.EnvFile) > 0 {
			t.Errorf("%s: env_file %v: list the variables in environment, so that each is checked", where, s.EnvFile)
		}
		for dep, d := range s.DependsOn {
			ds, ok := cf.Services[dep]
			switch {
			case !ok:
				t.Errorf("%s: depends_on %q, which is no service", where, dep)
			case d.Condition == "service_healthy" && ds.Healthcheck == nil:
				t.Errorf("%s: waits for %s to be healthy, but %s has no healthcheck", where, dep, dep)
			}
		}
		for _, raw := range s.Ports {
			var short string
			var long struct {
				HostIP string `json:"host_ip"`
			}
			loopback := false
			if err := json.Unmarshal(raw, &short); err == nil {
				loopback = strings.HasPrefix(short, "127.0.0.1:")
			} else if err := json.Unmarshal(raw, &long); err == nil {
				loopback = long.HostIP == "127.0.0.1"
			}
			if !loopback {
				t.Errorf("%s: port %s is published on every interface of the host: publish on 127.0.0.1", where, raw)
			}
		}
		for k, v := range s.Environment {
			for _, a := range serviceAddrs(v) {
				if _, ok := cf.Services[a.host]; !ok {
					t.Errorf("%s: %s=%q: %s is no service", where, k, v, a.host)
				} else if want, ok := grpcPorts[a.host]; ok && (strings.HasSuffix(k, "_ADDR") || k == "KUBECORD_GATEWAYS") {
					if fmt.Sprint(want) != a.port {
						t.Errorf("%s: %s=%q: %s listens for gRPC on %d", where, k, v, a.host, want)
					}
				}
			}
		}
		img, _ := imageName(s.Image)
		switch img {
		case "kubecord":
			checkComposeKubecord(t, where, s)
		case "kubecord-ping":
			for k := range s.Environment {
				if strings.HasPrefix(k, "KUBECORD_") && !sdkVars[k] {
					t.Errorf("%s: %s: the SDK reads no such variable (it reads %v)", where, k, sortedKeys(sdkVars))
				}
			}
			if s.Build == nil || s.Build.Target != "worker" {
				t.Errorf("%s: build the example worker with the Dockerfile's worker target", where)
			}
		}
	}
}

func checkComposeKubecord(t *testing.T, where string, s composeService) {
	if len(s.Entrypoint) > 0 {
		t.Errorf("%s: entrypoint %v replaces /kubecord: use command", where, s.Entrypoint)
	}
	if s.Build == nil || s.Build.Target != "kubecord" {
		t.Errorf("%s: build the kubecord image with the Dockerfile's kubecord target", where)
	}
	p, err := parseArgs(t, s.Command)
	if err != nil {
		t.Errorf("%s: command %q: %v", where, s.Command, err)
		return
	}
	where += " (kubecord " + p.command + ")"
	if !s.ReadOnly {
		t.Errorf("%s: set read_only: true", where)
	}
	var names []string
	for k := range s.Environment {
		names = append(names, k)
	}
	for _, err := range checkEnvFlags(t, p.command, names) {
		t.Errorf("%s: %v", where, err)
	}
	if _, service := commandFlags(t, p.command)["listen"]; !service {
		// A tool such as the simulator: no listeners, health or drain of
		// the service runtime to check, but it must have a health check
		// for the services that wait on it.
		if s.Healthcheck == nil || len(s.Healthcheck.Test) < 2 || s.Healthcheck.Test[1] != "/kubecord-probe" {
			t.Errorf("%s: want a healthcheck with /kubecord-probe", where)
		}
		return
	}
	if v := s.Environment["KUBECORD_AUTH_SECRET"]; v != composeSecret {
		t.Errorf("%s: KUBECORD_AUTH_SECRET must come from ${KUBECORD_AUTH_SECRET}", where)
	}
	for _, flag := range []string{"listen", "metrics-listen"} {
		addr := effective(t, p, s.Environment, flag)
		host, _, err := net.SplitHostPort(addr)
		if err != nil || host == "127.0.0.1" || host == "localhost" {
			t.Errorf("%s: --%s %q: bind beyond loopback (0.0.0.0:PORT), or other containers cannot reach it", where, flag, addr)
		}
	}
	// The health check asks this service's own /readyz.
	mport, err := listenPort(effective(t, p, s.Environment, "metrics-listen"))
	want := []string{"CMD", "/kubecord-probe", fmt.Sprintf("http://127.0.0.1:%d/readyz", mport)}
	if err != nil || s.Healthcheck == nil || !slices.Equal(s.Healthcheck.Test, want) {
		var got []string
		if s.Healthcheck != nil {
			got = s.Healthcheck.Test
		}
		t.Errorf("%s: healthcheck test = %q, want %q", where, got, want)
	}
	drain := flagDuration(t, p, s.Environment, "drain-delay") + flagDuration(t, p, s.Environment, "shutdown-timeout")
	grace, err := time.ParseDuration(s.StopGracePeriod)
	if err != nil || grace <= drain {
		t.Errorf("%s: stop_grace_period %q must exceed drain delay + shutdown timeout (%s)", where, s.StopGracePeriod, drain)
	}
}

// checkComposeSim checks that gateway and rest talk to the simulator with a
// token it accepts.
func checkComposeSim(t *testing.T, cf composeFile, sim composeService) {
	p, err := parseArgs(t, sim.Command)
	if err != nil || p.command != "sim" {
		t.Errorf("service sim: command %q: want kubecord sim (%v)", sim.Command, err)
		return
	}
	token := p.flags["token"]
	if token == "" {
		t.Error("service sim: set --token, so that gateway and rest can be given the same one")
	}
	if got := cf.Services["gateway"].Environment["KUBECORD_TOKEN"]; got != token {
		t.Errorf("service gateway: KUBECORD_TOKEN is not the simulator's --token")
	}
	if got := cf.Services["rest"].Environment["KUBECORD_BOTS"]; !strings.HasSuffix(got, "="+token) {
		t.Errorf("service rest: KUBECORD_BOTS is not name=<the simulator's --token>")
	}
	_, port, err := net.SplitHostPort(p.flags["addr"])
	if err != nil {
		t.Errorf("service sim: --addr %q: %v", p.flags["addr"], err)
	}
	want := "http://sim:" + port + "/api"
	if got := cf.Services["rest"].Environment["KUBECORD_DISCORD_URL"]; got != want {
		t.Errorf("service rest: KUBECORD_DISCORD_URL = %q, want %q (the simulator's --addr)", got, want)
	}
	if _, ok := cf.Services["rest"].DependsOn["sim"]; !ok {
		t.Error("service rest: depends_on sim, so it starts once the simulator answers")
	}
}
