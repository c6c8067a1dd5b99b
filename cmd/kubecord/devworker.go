package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// devWorker builds a worker from source, runs it, and rebuilds and restarts
// it when its source changes. The gateway keeps its Discord sessions across
// restarts: the old process drains (SIGTERM), its unacked events go to the
// new one.
type devWorker struct {
	dir            string
	env            []string
	stdout, stderr io.Writer
	log            *slog.Logger
	poll           time.Duration // default 500ms
	stopTimeout    time.Duration // default 30s
}

func (w *devWorker) run(ctx context.Context) error {
	if w.poll == 0 {
		w.poll = 500 * time.Millisecond
	}
	if w.stopTimeout == 0 {
		w.stopTimeout = 30 * time.Second
	}
	dir, err := filepath.Abs(w.dir)
	if err != nil {
		return err
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("--worker %s: want the directory of your worker's main package", w.dir)
	}
	tmp, err := os.MkdirTemp("", "kubecord-dev-worker-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }()

	var proc *exec.Cmd
	var exited chan error
	stop := func() {
		if proc == nil {
			return
		}
		_ = proc.Process.Signal(syscall.SIGTERM)
		var err error
		select {
		case err = <-exited:
		case <-time.After(w.stopTimeout):
			_ = proc.Process.Kill()
			err = <-exited
		}
		w.log.Info("worker stopped", "exit", err)
		proc = nil
	}
	defer stop()

	last := ""
	build := 0
	tick := time.NewTicker(w.poll)
	defer tick.Stop()
	for {
		sum, err := sourceSum(dir)
		if err != nil {
			return err
		}
		if sum != last {
			last = sum
			build++
			bin := filepath.Join(tmp, fmt.Sprintf("worker-%d", build))
			w.log.Info("building worker", "dir", dir)
			cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			switch {
			case ctx.Err() != nil:
				return nil
			case err != nil:
				fmt.Fprintf(w.stderr, "worker build failed (the running worker, if any, keeps going):\n%s\n", out)
			default:
				stop()
				proc = exec.Command(bin)
				proc.Dir = dir
				proc.Env = append(os.Environ(), w.env...)
				proc.Stdout, proc.Stderr = w.stdout, w.stderr
				if err := proc.Start(); err != nil {
					return fmt.Errorf("starting the worker: %w", err)
				}
				exited = make(chan error, 1)
				go func(c *exec.Cmd, ch chan error) { ch <- c.Wait() }(proc, exited)
				w.log.Info("worker started", "pid", proc.Process.Pid, "build", build)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-exited:
			w.log.Warn("worker exited; waiting for a source change to restart it", "err", err)
			proc, exited = nil, nil
		case <-tick.C:
		}
	}
}

// sourceSum fingerprints the Go sources under dir (names, sizes, mtimes).
func sourceSum(dir string) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != dir && (strings.HasPrefix(name, ".") || name == "vendor" || name == "node_modules" || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") && d.Name() != "go.mod" && d.Name() != "go.sum" {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %d %d\n", path, info.Size(), info.ModTime().UnixNano())
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("watching %s: %w", dir, err)
	}
	return fmt.Sprintf("%x", h.Sum(nil)), nil
}
