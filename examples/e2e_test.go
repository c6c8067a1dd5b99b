package examples

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubecord/kubecord/discordsim"
	gatewayv1 "github.com/kubecord/kubecord/gen/kubecord/gateway/v1"
	"github.com/kubecord/kubecord/internal/runtime"
	"github.com/kubecord/kubecord/internal/testutil"
)

// TestWorkersAnswerPing runs the kubecord binary (`kubecord all`) against the
// simulator, starts the Go, Python and Node.js example workers as separate
// processes, has a simulated user say "!ping", and waits for each worker's
// reply to that message in the channel.
func TestWorkersAnswerPing(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end: builds binaries and runs three language runtimes")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	python, node := requireTool(t, "/usr/bin/python3"), requireTool(t, "node")
	if _, err := os.Stat(filepath.Join(root, "examples/node/node_modules/@grpc/grpc-js")); err != nil {
		requireMissing(t, "examples/node/node_modules (run: cd examples/node && npm ci)")
	}
	tmp := t.TempDir()
	build(t, root, filepath.Join(tmp, "kubecord"), "./cmd/kubecord")
	build(t, root, filepath.Join(tmp, "ping"), "./examples/ping")
	stubs := filepath.Join(tmp, "pystubs")
	run(t, root, "bash", "examples/python/gen.sh", stubs)

	sim, err := discordsim.New(discordsim.Config{Guilds: 4, Members: 200, Shards: 2, MaxConcurrency: 2, Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)

	gw, rs, st, passthrough := testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t)
	secret := "e2e-shared-secret-0123456789"
	start(t, filepath.Join(tmp, "kubecord"), root, []string{
		"KUBECORD_AUTH_SECRET=" + secret,
		"KUBECORD_TOKEN=" + sim.Bots()[0].Token,
	}, "all", "--gateway-listen", gw, "--rest-listen", rs, "--state-listen", st,
		"--gateway-metrics-listen", "", "--rest-metrics-listen", "", "--state-metrics-listen", "",
		"--rest-http-listen", passthrough, "--discord-url", sim.URL()+"/api",
		"--intents", fmt.Sprint(1<<0|1<<9|1<<12|1<<15), "--drain-delay", "0")

	env := []string{"KUBECORD_GATEWAYS=" + gw, "KUBECORD_REST_ADDR=" + rs, "KUBECORD_STATE_ADDR=" + st, "KUBECORD_AUTH_SECRET=" + secret}
	start(t, filepath.Join(tmp, "ping"), root, env)
	start(t, python, root, append(env, "KUBECORD_PY_STUBS="+stubs), "examples/python/worker.py")
	start(t, node, root, env, "examples/node/worker.js")

	// Every worker's group has a live member on the gateway.
	conn, err := runtime.Dial(gw, runtime.ClientConfig{AuthSecret: secret})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client := gatewayv1.NewGatewayServiceClient(conn)
	groups := []string{"ping", "ping-python", "ping-node"}
	waitFor(t, 90*time.Second, "every worker to join its group", func() (bool, string) {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		resp, err := client.ListGroups(ctx, &gatewayv1.ListGroupsRequest{})
		if err != nil {
			return false, err.Error()
		}
		live := map[string]bool{}
		for _, g := range resp.GetGroups() {
			live[g.GetName()] = len(g.GetMembers()) > 0
		}
		for _, g := range groups {
			if !live[g] {
				return false, fmt.Sprintf("groups: %v", live)
			}
		}
		return true, ""
	})

	channel, user, err := sim.ChatSpot(1)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := sim.UserMessage(channel, user, "!ping")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"ping": "pong (", "ping-python": "pong from Python", "ping-node": "pong from Node.js"}
	waitFor(t, 60*time.Second, "a reply from each worker", func() (bool, string) {
		got := map[string]bool{}
		for _, m := range sim.ChannelMessages(channel, 50) {
			var ref struct {
				MessageID discordsim.Snowflake `json:"message_id"`
			}
			if len(m.MessageReference) == 0 || json.Unmarshal(m.MessageReference, &ref) != nil || ref.MessageID != msg.ID {
				continue
			}
			for g, prefix := range want {
				if strings.HasPrefix(m.Content, prefix) {
					got[g] = true
				}
			}
		}
		return len(got) == len(want), fmt.Sprintf("replies from %v", got)
	})
	if n := sim.RESTStats().RateLimited; n != 0 {
		t.Errorf("the simulator answered %d requests with 429; the REST service should have prevented every one", n)
	}
}

func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		requireMissing(t, name)
	}
	return p
}

// requireMissing fails under CI (scripts/test.sh installs everything) and
// skips on a developer machine that lacks an optional runtime.
func requireMissing(t *testing.T, what string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is missing; scripts/test.sh installs it", what)
	}
	t.Skipf("%s is missing (scripts/test.sh installs it)", what)
}

func build(t *testing.T, dir, out, pkg string) {
	t.Helper()
	run(t, dir, "go", "build", "-o", out, pkg)
}

func run(t *testing.T, dir, name string, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// start runs a process for the rest of the test; its output is shown if the
// test fails. It is stopped with SIGTERM (then killed) at cleanup.
func start(t *testing.T, bin, dir string, env []string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("output of %s %s:\n%s", filepath.Base(bin), strings.Join(args, " "), out.String())
		}
	})
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("waited %s for %s; last seen: %s", limit, what, last)
}
