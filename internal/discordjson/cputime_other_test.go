//go:build !unix

package discordjson

import "time"

// processCPU is not measured on this platform; benchmarks then report no CPU metric.
func processCPU() time.Duration { return 0 }
