package deploy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// TestComposeStackRuns runs what docker-compose.yml + docker-compose.sim.yml
// describe, without a container engine: every service's real command and
// environment from `docker-compose config`, as processes on loopback, with
// each compose host:port mapped to a free 127.0.0.1 port. Services start in
// depends_on order, each once the one it waits for passes its compose
// health check (run with the real kubecord-probe). It proves that the
// variables and flags the deployment files give actually make the stack
// work: gateway through the REST passthrough to the simulator, the state
// service and the example worker consuming and acking events.
func TestComposeStackRuns(t *testing.T) {
	t.Parallel()
	files := []string{"docker-compose.yml", "docker-compose.sim.yml"}
	if _, err := os.Stat(filepath.Join(repoRoot, files[1])); err != nil {
		t.Skipf("%s is missing", files[1])
	}
	redisServer := requireRedis(t)
	stdout, stderr, err := compose(t, map[string]string{"KUBECORD_AUTH_SECRET": composeSecret}, files, "config")
	if err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, stderr)
	}
	var cf composeFile
	if err := yaml.Unmarshal([]byte(stdout), &cf); err != nil {
		t.Fatalf("reading docker-compose config's output: %v", err)
	}
	bins := buildStackBinaries(t)

	// Every host:port a service listens on, mapped to a free loopback port.
	ports := map[string]string{} // "gateway:7001" -> "127.0.0.1:41234"
	addPort := func(svc, port string) {
		if _, ok := ports[svc+":"+port]; !ok {
			ports[svc+":"+port] = freeAddr(t)
		}
	}
	addPort("redis", "6379")
	listenRe := regexp.MustCompile(`^--(?:[a-z-]*listen|addr|resume-addr)=[^:]*:(\d+)$`)
	for name, s := range cf.Services {
		for _, a := range s.Command {
			if m := listenRe.FindStringSubmatch(a); m != nil {
				addPort(name, m[1])
			}
		}
	}
	// rewrite maps a value from svc's configuration to loopback: its own
	// 0.0.0.0:P and 127.0.0.1:P, and every other service's name:P.
	hostPort := regexp.MustCompile(`(\b[a-z][a-z0-9-]*|0\.0\.0\.0|127\.0\.0\.1):(\d+)\b`)
	rewrite := func(svc, v string) string {
		return hostPort.ReplaceAllStringFunc(v, func(hp string) string {
			host, port, _ := strings.Cut(hp, ":")
			if host == "0.0.0.0" || host == "127.0.0.1" {
				host = svc
			}
			if mapped, ok := ports[host+":"+port]; ok {
				return mapped
			}
			return hp
		})
	}

	stack := &stack{t: t}
	t.Cleanup(stack.stop)
	stack.start("redis", redisServer, []string{"--bind", "127.0.0.1", "--port", portOf(ports["redis:6379"]), "--save", "", "--appendonly", "no"}, nil)
	waitFor(t, "redis", 20*time.Second, func() error { return dialOnce(t.Context(), ports["redis:6379"]) })

	started := map[string]bool{"redis": true}
	for len(started) < len(cf.Services) {
		progress := false
		for _, name := range sortedKeys(cf.Services) {
			s := cf.Services[name]
			if started[name] || !allStarted(s, started) {
				continue
			}
			bin := bins.kubecord
			if img, _ := imageName(s.Image); img == "kubecord-ping" {
				bin = bins.ping
			}
			var args []string
			for _, a := range s.Command {
				args = append(args, rewrite(name, a))
			}
			env := map[string]string{}
			for k, v := range s.Environment {
				env[k] = rewrite(name, v)
			}
			proc := stack.start(name, bin, args, env)
			if s.Healthcheck != nil {
				test := s.Healthcheck.Test
				if len(test) != 3 || test[0] != "CMD" || test[1] != "/kubecord-probe" {
					t.Fatalf("service %s: healthcheck %q is not [CMD, /kubecord-probe, URL]", name, test)
				}
				url := rewrite(name, test[2])
				waitFor(t, name, 60*time.Second, func() error {
					if err := proc.running(); err != nil {
						return stopWaiting{err}
					}
					out, err := exec.CommandContext(t.Context(), bins.probe, url).CombinedOutput()
					if err != nil {
						return fmt.Errorf("%v: %s", err, out)
					}
					return nil
				})
			}
			started[name] = true
			progress = true
		}
		if !progress {
			t.Fatalf("services %v wait on each other or on a service that does not exist", slices.DeleteFunc(sortedKeys(cf.Services), func(n string) bool { return started[n] }))
		}
	}
	if t.Failed() {
		return
	}

	// The simulator generates traffic: the gateway must deliver it to both
	// groups, and each must ack.
	metricsURL := "http://" + ports["gateway:9001"] + "/metrics"
	waitFor(t, "events acked by groups state and ping", 60*time.Second, func() error {
		body, err := httpGet(t, metricsURL)
		if err != nil {
			return err
		}
		for _, group := range []string{"state", "ping"} {
			if v := metricValue(body, `kubecord_gateway_group_members{group="`+group+`"}`); v != 1 {
				return fmt.Errorf("group %s has %v members, want 1", group, v)
			}
			if v := metricValue(body, `kubecord_gateway_group_acked_total{group="`+group+`"}`); v < 1 {
				return fmt.Errorf("group %s acked %v events", group, v)
			}
		}
		return nil
	})
}

// requireRedis returns redis-server, skipping the test without it except in
// CI, where scripts/test.sh installs it.
func requireRedis(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server is not installed (apt-get install -y redis-server)")
		}
		t.Skip("redis-server is not installed")
	}
	return bin
}

// stackBinaries are the programs of the images, built from this checkout.
type stackBinaries struct{ kubecord, ping, probe string }

func buildStackBinaries(t *testing.T) stackBinaries {
	t.Helper()
	dir := t.TempDir()
	b := stackBinaries{kubecord: kubecordBin, ping: filepath.Join(dir, "ping"), probe: filepath.Join(dir, "kubecord-probe")}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	for _, c := range []*exec.Cmd{
		exec.CommandContext(ctx, "go", "build", "-C", repoRoot, "-o", b.ping, "./examples/ping"),
		exec.CommandContext(ctx, "go", "build", "-o", b.probe, "./probe"),
	} {
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", c.Args, err, out)
		}
	}
	return b
}

func allStarted(s composeService, started map[string]bool) bool {
	for dep := range s.DependsOn {
		if !started[dep] {
			return false
		}
	}
	return true
}

// stack is the processes of a test.
type stack struct {
	t     *testing.T
	mu    sync.Mutex
	procs []*stackProc
}

type stackProc struct {
	name   string
	cmd    *exec.Cmd
	out    *lockedBuffer
	exited chan struct{} // closed when the process has exited, err set
	err    error
}

// running returns an error once the process has exited.
func (p *stackProc) running() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s exited: %v", p.name, p.err)
	default:
		return nil
	}
}

func (s *stack) start(name, bin string, args []string, env map[string]string) *stackProc {
	s.t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + s.t.TempDir()}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("starting %s: %v", name, err)
	}
	p := &stackProc{name: name, cmd: cmd, out: out, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	return p
}

// stop ends every process: SIGTERM to all (the services drain in
// parallel), then SIGKILL to any still running past the longest compose
// stop_grace_period. Output of a process that failed is logged, and of all
// when the test failed.
func (s *stack) stop() {
	s.mu.Lock()
	procs := slices.Clone(s.procs)
	s.mu.Unlock()
	for _, p := range procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM) // it may have exited already
	}
	deadline := time.Now().Add(45 * time.Second)
	for _, p := range procs {
		select {
		case <-p.exited:
		case <-time.After(time.Until(deadline)):
			_ = p.cmd.Process.Kill() // past the grace period, as docker would
			<-p.exited
			p.err = fmt.Errorf("still running 45s after SIGTERM: killed (%v)", p.err)
		}
		err := p.err
		if err != nil || s.t.Failed() {
			s.t.Logf("%s exited: %v; its output ends with:\n%s", p.name, err, tail(p.out.String(), 3000))
		}
	}
}

// lockedBuffer is a bytes.Buffer written by a process and read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// waitFor polls check until it succeeds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return
		}
		if stop, ok := err.(stopWaiting); ok {
			t.Fatalf("%s: %v", what, stop.error)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not ready after %s: %v", what, timeout, err)
		}
		select {
		case <-tick.C:
		case <-t.Context().Done():
			t.Fatalf("%s: %v", what, t.Context().Err())
		}
	}
}

// stopWaiting ends a waitFor at once: what it waits for can no longer happen.
type stopWaiting struct{ error }

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatalf("freeing %s: %v", addr, err)
	}
	return addr
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr) // addr comes from freeAddr
	return port
}

func httpGet(t *testing.T, url string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }() // read-only
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(body), nil
}

// metricValue returns the value of one series in Prometheus text format, or
// -1 when it is absent.
func metricValue(body, series string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}
