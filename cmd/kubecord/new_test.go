package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestNewScaffoldBuildsAndPasses scaffolds a worker, then builds it and runs
// its own test (which runs it against the simulator and the real services).
func TestNewScaffoldBuildsAndPasses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and tests a whole new module")
	}
	dir := filepath.Join(t.TempDir(), "hellobot")
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"new", "hellobot", "--dir", dir}, &stdout, &stderr); code != exitOK {
		t.Fatalf("kubecord new exited %d: %s", code, stderr.String())
	}
	for _, f := range []string{"go.mod", "go.sum", "main.go", "bot.go", "bot_test.go", "Dockerfile", "README.md"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("scaffold lacks %s: %v", f, err)
		}
	}
	for _, args := range [][]string{{"vet", "./..."}, {"build", "./..."}, {"test", "-count=1", "-v", "./..."}} {
		cmd := exec.CommandContext(t.Context(), "go", args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %s in the scaffold: %v\n%s", strings.Join(args, " "), err, out)
		}
		if args[0] == "test" && !strings.Contains(string(out), "--- PASS: TestHello") {
			t.Fatalf("the scaffold's test did not run:\n%s", out)
		}
	}
}

func TestNewRefusesBadInput(t *testing.T) {
	t.Parallel()
	taken := t.TempDir()
	if err := os.WriteFile(filepath.Join(taken, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"new"}, "missing NAME"},
		{[]string{"new", "My Bot"}, "lower-case"},
		{[]string{"new", "bot", "--dir", taken}, "not empty"},
		{[]string{"new", "bot", "--kubecord-source", t.TempDir()}, "no go.mod"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(t.Context(), tc.args, &stdout, &stderr)
		if code == exitOK || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("kubecord %v: exit %d, stderr %q; want a failure mentioning %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}
