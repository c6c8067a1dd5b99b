package deploy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// repoRoot is the repository: this module lives in its deploy/ folder.
const repoRoot = ".."

// kubecordBin is the kubecord binary built once by TestMain from
// ../cmd/kubecord, so that the flags the deployment files pass are checked
// against the real binary, not a list that can go stale.
var kubecordBin string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "kubecord-deploy-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, "creating a temporary directory:", err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }() // best effort: it is a temporary directory
	// KUBECORD_BINARY tests against a binary built elsewhere (a release
	// build, or HEAD's while the working tree is mid-edit).
	if bin := os.Getenv("KUBECORD_BINARY"); bin != "" {
		kubecordBin = bin
		return m.Run()
	}
	kubecordBin = filepath.Join(dir, "kubecord")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// -C: build in the main module, whose go.mod this module does not share.
	cmd := exec.CommandContext(ctx, "go", "build", "-C", repoRoot, "-o", kubecordBin, "./cmd/kubecord")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building kubecord from %s/cmd/kubecord: %v\n%s", repoRoot, err, out)
		return 1
	}
	return m.Run()
}

// flagInfo is one flag of a kubecord command, as its --help prints it.
type flagInfo struct {
	name string
	def  string // the "(default ...)" of the help text, "" when none is shown
}

var (
	helpMu    sync.Mutex
	helpCache = map[string]map[string]flagInfo{}
)

// helpFlagLine is a flag's first line in Go's flag.PrintDefaults output:
// two spaces, the dash, the name and an optional type.
var (
	helpFlagLine = regexp.MustCompile(`^  -([A-Za-z0-9][A-Za-z0-9_.-]*)(?: \S+)?$`)
	helpDefault  = regexp.MustCompile(`\(default "?([^")]*)"?\)\s*$`)
)

// commandFlags returns the flags of `kubecord <command>`, from its --help.
// An unknown command fails the test.
func commandFlags(t *testing.T, command string) map[string]flagInfo {
	t.Helper()
	helpMu.Lock()
	defer helpMu.Unlock()
	if f, ok := helpCache[command]; ok {
		return f
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, kubecordBin, command, "--help")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubecord %s --help: %v (is %q a kubecord command?)\n%s", command, err, command, stderr.String())
	}
	flags := map[string]flagInfo{}
	var last string
	sc := bufio.NewScanner(strings.NewReader(stderr.String() + stdout.String()))
	for sc.Scan() {
		line := sc.Text()
		if m := helpFlagLine.FindStringSubmatch(line); m != nil {
			last = m[1]
			flags[last] = flagInfo{name: last}
			continue
		}
		if last != "" {
			if m := helpDefault.FindStringSubmatch(line); m != nil {
				f := flags[last]
				f.def = m[1]
				flags[last] = f
			}
		}
	}
	if len(flags) == 0 {
		t.Fatalf("kubecord %s --help listed no flags:\n%s", command, stderr.String())
	}
	helpCache[command] = flags
	return flags
}

// envFlag returns the flag an environment variable stands in for
// (KUBECORD_DRAIN_DELAY -> drain-delay), or "" for other variables.
func envFlag(env string) string {
	rest, ok := strings.CutPrefix(env, "KUBECORD_")
	if !ok {
		return ""
	}
	return strings.ReplaceAll(strings.ToLower(rest), "_", "-")
}

// parsedArgs is a kubecord command line: the command and its flags.
type parsedArgs struct {
	command string
	flags   map[string]string
}

// parseArgs splits a container's args ("gateway", "--listen=0.0.0.0:7001",
// ...) against the command's real flags; unknown flags and stray positional
// arguments are errors, as they are for the binary.
func parseArgs(t *testing.T, args []string) (parsedArgs, error) {
	t.Helper()
	if len(args) == 0 {
		return parsedArgs{}, fmt.Errorf("no command: want args like [gateway, --listen=...]")
	}
	p := parsedArgs{command: args[0], flags: map[string]string{}}
	known := commandFlags(t, p.command)
	for i := 1; i < len(args); i++ {
		a := args[i]
		name, ok := strings.CutPrefix(a, "--")
		if !ok {
			if name, ok = strings.CutPrefix(a, "-"); !ok {
				return p, fmt.Errorf("argument %q: kubecord %s takes only flags", a, p.command)
			}
		}
		name, value, hasValue := strings.Cut(name, "=")
		if _, ok := known[name]; !ok {
			return p, fmt.Errorf("flag --%s: kubecord %s has no such flag", name, p.command)
		}
		if !hasValue {
			if i+1 >= len(args) || strings.HasPrefix(args[i+1], "-") {
				value = "true" // a boolean flag
			} else {
				i++
				value = args[i]
			}
		}
		p.flags[name] = value
	}
	return p, nil
}

// checkEnvFlags reports KUBECORD_* variables that no flag of command reads:
// the binary would ignore them silently.
func checkEnvFlags(t *testing.T, command string, envNames []string) []error {
	t.Helper()
	known := commandFlags(t, command)
	var errs []error
	for _, e := range envNames {
		f := envFlag(e)
		if f == "" {
			continue
		}
		if _, ok := known[f]; !ok {
			errs = append(errs, fmt.Errorf("environment %s: kubecord %s has no flag --%s, so it is ignored", e, command, f))
		}
	}
	return errs
}

// effective returns a flag's value for a container: the command line, then
// the environment, then the binary's default.
func effective(t *testing.T, p parsedArgs, env map[string]string, flag string) string {
	t.Helper()
	if v, ok := p.flags[flag]; ok {
		return v
	}
	if v, ok := env["KUBECORD_"+strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))]; ok {
		return v
	}
	return commandFlags(t, p.command)[flag].def
}

// flagDuration is effective() parsed as a duration.
func flagDuration(t *testing.T, p parsedArgs, env map[string]string, flag string) time.Duration {
	t.Helper()
	v := effective(t, p, env, flag)
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("kubecord %s --%s = %q: not a duration: %v", p.command, flag, v, err)
	}
	return d
}

// listenPort returns the port of a host:port listen address.
func listenPort(addr string) (int, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return 0, fmt.Errorf("%q: port %q is not a number", addr, port)
	}
	return n, nil
}

// sdkEnv returns the KUBECORD_* variables the Go SDK's WithEnv reads, from
// its source, so that worker environments are checked against the SDK as it is.
func sdkEnv(t *testing.T) map[string]bool {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot, "sdk", "sdk.go"))
	if err != nil {
		t.Fatalf("reading the SDK's environment variables: %v", err)
	}
	vars := map[string]bool{}
	for _, m := range regexp.MustCompile(`os\.Getenv\("(KUBECORD_[A-Z0-9_]+)"\)`).FindAllStringSubmatch(string(src), -1) {
		vars[m[1]] = true
	}
	if len(vars) == 0 {
		t.Fatal("found no os.Getenv(\"KUBECORD_...\") in sdk/sdk.go: has WithEnv moved?")
	}
	return vars
}

// healthServices returns the gRPC service each kubecord command registers
// (and reports in the health service), from proto/: "gateway" ->
// "kubecord.gateway.v1.GatewayService".
func healthServices(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, "proto", "kubecord", "*", "v1", "*.proto"))
	if err != nil || len(files) == 0 {
		t.Fatalf("listing proto/kubecord/*/v1/*.proto: %v (found %d)", err, len(files))
	}
	pkgRe := regexp.MustCompile(`(?m)^package (kubecord\.([a-z]+)\.v1);`)
	svcRe := regexp.MustCompile(`(?m)^service (\w+) \{`)
	out := map[string]string{}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("reading %s: %v", f, err)
		}
		pkg := pkgRe.FindSubmatch(src)
		if pkg == nil {
			continue
		}
		for _, s := range svcRe.FindAllSubmatch(src, -1) {
			out[string(pkg[2])] = string(pkg[1]) + "." + string(s[1])
		}
	}
	return out
}

// imageName splits an image reference into its name and tag ("kubecord:dev"
// -> "kubecord", "dev").
func imageName(ref string) (name, tag string) {
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[:i], ref[i+1:]
	}
	return ref, ""
}

// registryHost returns the registry host an image reference names, if any:
// the first path element when it has a dot or a port, or is localhost.
func registryHost(ref string) string {
	first, _, ok := strings.Cut(ref, "/")
	if ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return first
	}
	return ""
}
