package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const hotWorker = `package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	_ = os.WriteFile(os.Getenv("MARK_FILE"), []byte("VERSION "+os.Getenv("KUBECORD_GATEWAYS")), 0o644)
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, os.Interrupt)
	<-c
	_ = os.WriteFile(os.Getenv("MARK_FILE"), []byte("drained"), 0o644)
}
`

// TestDevWorkerHotReload builds a worker, changes its source, and sees the
// new build replace the old one (which is stopped with SIGTERM).
func TestDevWorkerHotReload(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Go programs")
	}
	dir := t.TempDir()
	mark := filepath.Join(t.TempDir(), "mark")
	write := func(version string) {
		t.Helper()
		src := strings.Replace(hotWorker, "VERSION", version, 1)
		if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module hot\n\ngo 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	write("v1")
	t.Setenv("MARK_FILE", mark)
	w := &devWorker{dir: dir, env: []string{"KUBECORD_GATEWAYS=127.0.0.1:7001"}, stdout: io.Discard, stderr: io.Discard,
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), poll: 50 * time.Millisecond}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.run(ctx) }()

	waitMark(t, mark, "v1 127.0.0.1:7001")
	write("v2-reloaded") // a different size: the fingerprint changes even within one mtime tick
	waitMark(t, mark, "v2-reloaded 127.0.0.1:7001")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	waitMark(t, mark, "drained")
}

func waitMark(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var got []byte
	for time.Now().Before(deadline) {
		got, _ = os.ReadFile(path)
		if string(got) == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("worker mark = %q, want %q", got, want)
}
