// Command kubecord runs Kubecord's services: one binary, services chosen by
// name ("kubecord gateway", "kubecord all", ...). Run "kubecord --help" for
// the list of commands and "kubecord <command> --help" for a command's flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/kubecord/kubecord/internal/redact"
	"github.com/kubecord/kubecord/internal/runtime"
)

// command is one subcommand of the kubecord binary. Each lives in its own file
// and registers itself from init.
type command struct {
	name    string
	summary string
	// run parses args (everything after the command name) and runs until ctx
	// is cancelled (SIGINT/SIGTERM) or the command finishes. Returning
	// flag.ErrHelp (after printing the flags) exits 0.
	run func(ctx context.Context, args []string) error
}

var commands = map[string]command{}

type stdioKey struct{}

type stdio struct{ stdout, stderr io.Writer }

// outputs returns where a command prints: the writers run was given (tests
// pass buffers), os.Stdout and os.Stderr otherwise.
func outputs(ctx context.Context) (stdout, stderr io.Writer) {
	if s, ok := ctx.Value(stdioKey{}).(stdio); ok {
		return s.stdout, s.stderr
	}
	return os.Stdout, os.Stderr
}

// newFlagSet returns the flag set a command should parse its args with: it
// reports errors instead of exiting, and prints usage where run says.
func newFlagSet(ctx context.Context, name string) *flag.FlagSet {
	fs := flag.NewFlagSet("kubecord "+name, flag.ContinueOnError)
	_, stderr := outputs(ctx)
	fs.SetOutput(stderr)
	return fs
}

// register adds c to the binary. It panics on a duplicate or incomplete
// command: both are programming errors that every test run catches.
func register(c command) {
	if c.name == "" || c.run == nil {
		panic("kubecord: command registered without a name or run function")
	}
	if _, dup := commands[c.name]; dup {
		panic("kubecord: command registered twice: " + c.name)
	}
	commands[c.name] = c
}

// Exit codes: 2 for a usage mistake, 1 for a command that failed.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

func usage(w io.Writer) {
	var b strings.Builder
	b.WriteString("Kubecord runs a Discord bot as services that scale on their own.\n\n")
	b.WriteString("Usage: kubecord <command> [flags]\n\nCommands:\n")
	names := make([]string, 0, len(commands))
	width := 0
	for n := range commands {
		names = append(names, n)
		width = max(width, len(n))
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(&b, "  %-*s  %s\n", width, n, commands[n].summary)
	}
	b.WriteString("\nRun 'kubecord <command> --help' for a command's flags. Every flag can also be set\n")
	b.WriteString("from the environment: --drain-delay as KUBECORD_DRAIN_DELAY (flags win).\n")
	_, _ = io.WriteString(w, b.String()) // nothing useful to do if the terminal is gone
}

// suggest returns the registered command closest to name ("gatway" ->
// "gateway"), or "" when none is close.
func suggest(name string) string {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	slices.Sort(names)      // ties go to the first name, whatever the map order
	best, bestDist := "", 3 // three or more edits away is no suggestion
	for _, n := range names {
		if d := editDistance(name, n); d < bestDist {
			best, bestDist = n, d
		}
	}
	if best == "" && name != "" {
		for _, n := range names {
			if strings.HasPrefix(n, name) {
				return n
			}
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// run is the whole program minus process concerns, so tests can call it:
// it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "-version", "--version":
		return run(ctx, []string{"version"}, stdout, stderr)
	case "-h", "-help", "--help", "help":
		if name == "help" && len(args) > 1 {
			// "kubecord help rest" is "kubecord rest --help".
			return run(ctx, []string{args[1], "--help"}, stdout, stderr)
		}
		usage(stdout)
		return exitOK
	}
	c, ok := commands[name]
	if !ok {
		msg := fmt.Sprintf("kubecord: unknown command %q", name)
		if strings.HasPrefix(name, "-") {
			msg = fmt.Sprintf("kubecord: %q: flags go after the command, as in 'kubecord <command> %s'", name, name)
		} else if s := suggest(name); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		_, _ = fmt.Fprintf(stderr, "%s\n\n", msg) // a closed stderr leaves nobody to tell
		usage(stderr)
		return exitUsage
	}
	err := c.run(context.WithValue(ctx, stdioKey{}, stdio{stdout, stderr}), args[1:])
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		return exitOK // stopped by a signal, as asked
	}
	// Errors may quote configuration or Discord responses: redact them like
	// log lines.
	_, _ = fmt.Fprintf(stderr, "kubecord %s: %s\n", c.name, redact.String(err.Error()))
	return exitError
}

func main() {
	// go-redis logs through one process-wide logger; point it at slog before
	// any command builds a Redis client, once, here rather than in the
	// services (their tests build many in parallel).
	runtime.RouteRedisLogs(os.Stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, restore the default handling so that a
		// second Ctrl-C kills a shutdown that takes too long.
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
