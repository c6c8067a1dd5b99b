// Package redistest runs a throwaway redis-server child process for tests
// across Kubecord (gateway leases and identify windows, the REST ratelimit
// store, the state cache): a real Redis on a free loopback port, without
// persistence, stopped when the test ends. Never a mock.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server is a running redis-server.
type Server struct {
	// Addr is 127.0.0.1:port.
	Addr string

	bin  string
	port int
	t    testing.TB

	mu   sync.Mutex
	stop func()
}

// Start runs redis-server on 127.0.0.1 and a free port with `--save ""
// --appendonly no`, waits until it answers PING and stops it in t.Cleanup.
// Without redis-server the test is skipped, unless CI or KUBECORD_REQUIRE_REDIS
// is set, where it fails: CI must not pass by skipping.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" || os.Getenv("KUBECORD_REQUIRE_REDIS") != "" {
			t.Fatalf("redis-server is required here (CI or KUBECORD_REQUIRE_REDIS is set): %v", err)
		}
		t.Skipf("redis-server not installed: %v", err)
	}
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			lastErr = err
			continue
		}
		s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), bin: bin, port: port, t: t}
		if err := s.run(); err != nil {
			lastErr = err // most likely the port was taken in between; try another
			continue
		}
		t.Cleanup(s.Stop)
		return s
	}
	t.Fatalf("starting redis-server: %v", lastErr)
	return nil
}

// Stop kills the server and waits for it to exit. Calling it again does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	stop := s.stop
	s.stop = nil
	s.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// Restart stops the server and starts an empty one on the same port, as after a
// Redis crash without persistence.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := s.run()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("restarting redis-server on %s: %v", s.Addr, err)
		}
		time.Sleep(50 * time.Millisecond) // the old process may still hold the port; retry with a deadline
	}
}

func (s *Server) run() error {
	cmd := exec.Command(s.bin, "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning")
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("running %s: %w", s.bin, err)
	}
	var waitErr error
	done := make(chan struct{})
	go func() {
		waitErr = cmd.Wait()
		close(done)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = cmd.Process.Kill()
			<-done
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("redis-server exited early: %w", waitErr)
		default:
		}
		if ping(s.Addr) == nil {
			s.mu.Lock()
			s.stop = stop
			s.mu.Unlock()
			return nil
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("redis-server on %s did not answer PING within 10s", s.Addr)
		}
		time.Sleep(10 * time.Millisecond) // polling for readiness with a deadline
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("freeing port %d: %w", port, err)
	}
	return port, nil
}

func ping(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	if err := c.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return err
	}
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("unexpected PING answer %q", line)
	}
	return nil
}
