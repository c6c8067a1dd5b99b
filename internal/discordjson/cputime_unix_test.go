//go:build unix

package discordjson

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time (user and system) the test process has used. Benchmarks report
// it per operation because wall time is unreliable on a machine shared with other work, while
// the CPU an operation costs (garbage collection included) barely moves.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
