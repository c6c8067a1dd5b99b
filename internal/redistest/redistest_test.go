package redistest

import (
	"testing"
)

func TestStartRestartStop(t *testing.T) {
	t.Parallel()
	s := Start(t)
	if err := ping(s.Addr); err != nil {
		t.Fatalf("PING after Start: %v", err)
	}
	s.Restart()
	if err := ping(s.Addr); err != nil {
		t.Fatalf("PING after Restart: %v", err)
	}
	s.Stop()
	if err := ping(s.Addr); err == nil {
		t.Fatal("PING after Stop succeeded, want an error")
	}
	s.Stop() // idempotent
}
