package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// version is set at build time:
//
//	go build -ldflags "-X main.version=v1.2.3" ./cmd/kubecord
//
// Without it the module version recorded by the Go toolchain is used
// ("(devel)" for a build from a checkout).
var version = ""

func init() {
	register(command{name: "version", summary: "print the version and build information", run: runVersion})
}

func runVersion(ctx context.Context, args []string) error {
	fs := newFlagSet(ctx, "version")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: version takes no arguments", fs.Arg(0))
	}
	info, _ := debug.ReadBuildInfo() // nil in binaries built without module support; handled below
	stdout, _ := outputs(ctx)
	if _, err := io.WriteString(stdout, versionString(version, info)); err != nil {
		return fmt.Errorf("printing the version: %w", err)
	}
	return nil
}

// versionString renders one line: version, commit and build time when the
// toolchain recorded them, Go version and platform.
func versionString(v string, info *debug.BuildInfo) string {
	if v == "" && info != nil {
		v = info.Main.Version
	}
	if v == "" {
		v = "(unknown)"
	}
	details := []string{}
	if info != nil {
		var rev, when, dirty string
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = " (modified)"
				}
			}
		}
		if rev != "" {
			details = append(details, "commit "+rev[:min(12, len(rev))]+dirty)
		}
		if when != "" {
			details = append(details, "committed "+when)
		}
	}
	details = append(details, runtime.Version(), runtime.GOOS+"/"+runtime.GOARCH)
	return fmt.Sprintf("kubecord %s (%s)\n", v, strings.Join(details, ", "))
}
