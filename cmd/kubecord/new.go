package main

import (
	"bufio"
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"runtime/debug"
	"strings"
	"text/template"
)

func init() {
	register(command{
		name:    "new",
		summary: "scaffold a worker project (go.mod, a handler, a test against the simulator, a Dockerfile)",
		run:     runNew,
	})
}

//go:embed scaffold/*.tmpl
var scaffold embed.FS

const kubecordModule = "github.com/kubecord/kubecord"

var projectName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

func runNew(ctx context.Context, args []string) error {
	fs := newFlagSet(ctx, "new")
	module := fs.String("module", "", "Go module path of the new project (default: the name)")
	dir := fs.String("dir", "", "directory to create (default: ./NAME)")
	source := fs.String("kubecord-source", "", "a Kubecord checkout to build against (default: the one this binary was built from, if known)")
	tidy := fs.Bool("tidy", true, "run 'go mod tidy' in the new project")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: kubecord new [flags] NAME\n\nNAME: lower-case letters, digits and dashes; it is also the worker's consumer group.\n\n")
		fs.PrintDefaults()
	}
	// NAME may come before or after the flags.
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if name == "" && fs.NArg() > 0 {
		name = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q: give one NAME", fs.Args())
	}
	if name == "" {
		fs.Usage()
		return errors.New("missing NAME: kubecord new mybot")
	}
	if !projectName.MatchString(name) {
		return fmt.Errorf("name %q: use lower-case letters, digits and dashes, starting with a letter", name)
	}
	if *module == "" {
		*module = name
	}
	if *dir == "" {
		*dir = name
	}
	if entries, err := os.ReadDir(*dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("%s exists and is not empty: choose another --dir", *dir)
	}
	src, version, err := kubecordSource(*source)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	data := struct{ Name, Module string }{name, *module}
	files := map[string]string{
		"main.go": "main.go.tmpl", "bot.go": "bot.go.tmpl", "bot_test.go": "bot_test.go.tmpl",
		"Dockerfile": "Dockerfile.tmpl", "README.md": "README.md.tmpl", ".gitignore": "gitignore.tmpl",
	}
	for out, tmpl := range files {
		t, err := template.ParseFS(scaffold, "scaffold/"+tmpl)
		if err != nil {
			return err
		}
		var b bytes.Buffer
		if err := t.Execute(&b, data); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(*dir, out), b.Bytes(), 0o644); err != nil {
			return err
		}
	}
	goVersion := strings.TrimPrefix(goruntime.Version(), "go")
	if parts := strings.SplitN(goVersion, ".", 3); len(parts) >= 2 {
		goVersion = parts[0] + "." + parts[1]
	}
	gomod := fmt.Sprintf("module %s\n\ngo %s\n\nrequire %s %s\n", *module, goVersion, kubecordModule, version)
	if src != "" {
		gomod += fmt.Sprintf("\n// Built against a local Kubecord checkout.\nreplace %s => %s\n", kubecordModule, src)
		// Kubecord's own checksums spare the first tidy most look-ups.
		if sum, err := os.ReadFile(filepath.Join(src, "go.sum")); err == nil {
			if err := os.WriteFile(filepath.Join(*dir, "go.sum"), sum, 0o644); err != nil {
				return err
			}
		}
	}
	if err := os.WriteFile(filepath.Join(*dir, "go.mod"), []byte(gomod), 0o644); err != nil {
		return err
	}
	if *tidy {
		cmd := exec.CommandContext(ctx, "go", "mod", "tidy")
		cmd.Dir = *dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go mod tidy in %s: %v\n%s", *dir, err, out)
		}
	}
	stdout, _ := outputs(ctx)
	fmt.Fprintf(stdout, "Created %s (module %s).\n\n  cd %s\n  go test ./...            # the worker against a simulated Discord\n  kubecord dev --worker .  # run it with hot reload\n", *dir, *module, *dir)
	return nil
}

// kubecordSource finds the Kubecord to build a new project against: a
// checkout (given, or the one this binary was built from) or the released
// version of this binary.
func kubecordSource(given string) (dir, version string, err error) {
	const local = "v0.0.0-00010101000000-000000000000"
	if given != "" {
		abs, err := filepath.Abs(given)
		if err != nil {
			return "", "", err
		}
		if !isKubecordCheckout(abs) {
			return "", "", fmt.Errorf("--kubecord-source %s: no go.mod of %s there", given, kubecordModule)
		}
		return abs, local, nil
	}
	if _, file, _, ok := goruntime.Caller(0); ok {
		root := filepath.Dir(filepath.Dir(filepath.Dir(file)))
		if filepath.IsAbs(root) && isKubecordCheckout(root) {
			return root, local, nil
		}
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Path == kubecordModule && strings.HasPrefix(bi.Main.Version, "v") {
		return "", bi.Main.Version, nil
	}
	return "", "", errors.New("cannot tell which Kubecord to build against (this binary has no release version and no checkout beside it): pass --kubecord-source <checkout>")
}

func isKubecordCheckout(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); strings.HasPrefix(line, "module ") {
			return strings.TrimSpace(strings.TrimPrefix(line, "module ")) == kubecordModule
		}
	}
	return false
}
