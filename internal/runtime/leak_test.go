package runtime

import (
	"fmt"
	"os"
	goruntime "runtime"
	"strings"
	"testing"
	"time"
)

// TestMain fails the package when goroutines outlive its tests: every test
// must stop the servers, clients and streams it starts.
func TestMain(m *testing.M) {
	before := goruntime.NumGoroutine()
	code := m.Run()
	if code == 0 {
		if leaked := waitGoroutines(before, 5*time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines outlived the tests:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// waitGoroutines polls until at most n goroutines run, or returns their
// stacks at the deadline.
func waitGoroutines(n int, d time.Duration) string {
	deadline := time.Now().Add(d)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if goruntime.NumGoroutine() <= n {
			return ""
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			stacks := string(buf[:goruntime.Stack(buf, true)])
			var out []string
			for _, g := range strings.Split(stacks, "\n\n") {
				if !strings.Contains(g, "TestMain") && !strings.Contains(g, "waitGoroutines") {
					out = append(out, g)
				}
			}
			return strings.Join(out, "\n\n")
		}
		<-tick.C
	}
}
