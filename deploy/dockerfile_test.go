package deploy

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// dockerStage is one FROM ... AS name section of the Dockerfile.
type dockerStage struct {
	name, from string
	lines      []string // instructions after FROM, continuation lines joined
}

func readDockerfile(t *testing.T) []dockerStage {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatalf("opening the Dockerfile: %v", err)
	}
	defer func() { _ = f.Close() }() // read-only
	from := regexp.MustCompile(`(?i)^FROM\s+(\S+)(?:\s+AS\s+(\S+))?$`)
	var stages []dockerStage
	var cont string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if s, ok := strings.CutSuffix(line, `\`); ok {
			cont += s + " "
			continue
		}
		line, cont = cont+line, ""
		if m := from.FindStringSubmatch(line); m != nil {
			stages = append(stages, dockerStage{name: m[2], from: m[1]})
			continue
		}
		if len(stages) > 0 {
			stages[len(stages)-1].lines = append(stages[len(stages)-1].lines, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading the Dockerfile: %v", err)
	}
	return stages
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	stages := readDockerfile(t)
	names := map[string]bool{}
	for _, s := range stages {
		names[s.name] = true
	}
	if len(stages) == 0 || stages[len(stages)-1].name != "kubecord" {
		t.Fatalf("the last stage (what a plain `docker build` makes) must be kubecord; stages: %v", stages)
	}
	if !names["worker"] {
		t.Error("no worker stage: docker-compose and the manifests build the example worker with --target worker")
	}
	// What the build stage writes under /out (go build -o, mkdir -p).
	built := map[string]bool{}
	outRe := regexp.MustCompile(`(?:-o|mkdir -p) (/out/\S+)`)
	for _, s := range stages {
		if h := registryHost(s.from); h != "" {
			t.Errorf("stage %s: FROM %s names registry %s", s.name, s.from, h)
		}
		for _, l := range s.lines {
			for _, m := range outRe.FindAllStringSubmatch(l, -1) {
				built[m[1]] = true
			}
		}
	}
	for _, name := range []string{"kubecord", "worker"} {
		i := slices.IndexFunc(stages, func(s dockerStage) bool { return s.name == name })
		if i < 0 {
			continue
		}
		s := stages[i]
		if s.from != "scratch" {
			t.Errorf("stage %s: FROM %s, want scratch (a static binary needs nothing else)", name, s.from)
		}
		var user, entry string
		copied := map[string]bool{}
		for _, l := range s.lines {
			f := strings.Fields(l)
			switch strings.ToUpper(f[0]) {
			case "USER":
				user = f[1]
			case "ENTRYPOINT":
				entry = l
			case "COPY":
				if from, ok := strings.CutPrefix(f[1], "--from="); ok {
					if !names[from] {
						t.Errorf("stage %s: COPY --from=%s: no such stage", name, from)
					}
					if strings.HasPrefix(f[2], "/out/") && !built[f[2]] {
						t.Errorf("stage %s: copies %s, which no go build writes", name, f[2])
					}
					copied[f[len(f)-1]] = true
				}
			}
		}
		if user == "" || strings.HasPrefix(user, "0") || strings.HasPrefix(user, "root") {
			t.Errorf("stage %s: USER %q: run as a non-root user", name, user)
		}
		bin := regexp.MustCompile(`\["(/[^"]+)"`).FindStringSubmatch(entry)
		if bin == nil || !copied[bin[1]] {
			t.Errorf("stage %s: ENTRYPOINT %q is not a binary the stage copies in", name, entry)
		}
		if name == "kubecord" && !copied["/kubecord-probe"] {
			t.Error("stage kubecord: /kubecord-probe is missing: docker-compose's health checks run it")
		}
	}
}

// TestDockerignoreKeepsSources: the build context must hold every file the
// image's go builds read. Checked against `go list -deps`, so a package that
// moves into an ignored folder fails here, not in someone's docker build.
func TestDockerignoreKeepsSources(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatalf("reading .dockerignore: %v", err)
	}
	var patterns []string
	for _, l := range strings.Split(string(raw), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			if strings.HasPrefix(l, "!") {
				t.Fatalf(".dockerignore: exception %q: this check does not handle exceptions; extend it", l)
			}
			patterns = append(patterns, l)
		}
	}
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	list := func(dir string, pkgs ...string) []string {
		args := append([]string{"list", "-deps", "-f", `{{if not .Standard}}{{.Dir}}{{end}}`}, pkgs...)
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list in %s: %v", dir, err)
		}
		return strings.Fields(string(out))
	}
	dirs := append(list(root, "./cmd/kubecord", "./examples/ping"), list(filepath.Join(root, "deploy"), "./probe")...)
	needed := []string{"go.mod", "go.sum", "deploy/go.mod", "deploy/go.sum"}
	for _, d := range dirs {
		rel, err := filepath.Rel(root, d)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue // a module from the module cache: downloaded in the image
		}
		needed = append(needed, filepath.ToSlash(rel)+"/x.go")
	}
	for _, path := range needed {
		for _, p := range patterns {
			if ignored(p, path) {
				t.Errorf(".dockerignore pattern %q drops %s, which the image's build needs", p, filepath.Dir(path))
			}
		}
	}
}

// ignored reports whether a .dockerignore pattern excludes path or one of
// its parent folders.
func ignored(pattern, path string) bool {
	pattern = strings.TrimPrefix(strings.TrimSuffix(pattern, "/"), "/")
	parts := strings.Split(path, "/")
	for i := 1; i <= len(parts); i++ {
		prefix := strings.Join(parts[:i], "/")
		if ok, _ := filepath.Match(pattern, prefix); ok {
			return true
		}
		// "**/" matches any number of folders.
		if rest, ok := strings.CutPrefix(pattern, "**/"); ok {
			if m, _ := filepath.Match(rest, parts[i-1]); m {
				return true
			}
		}
	}
	return false
}
