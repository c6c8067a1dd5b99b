// Package testutil holds small helpers the project's tests share: a free loopback address
// for a process the test starts, and a buffer several goroutines may write logs to.
package testutil

import (
	"bytes"
	"net"
	"sync"
	"testing"
)

// FreeAddr returns a 127.0.0.1 address with a port free at the time of the call, for a
// server the test starts in another process (one in this process listens on :0 instead).
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers and readers, e.g. a child
// process's output read while it runs.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
