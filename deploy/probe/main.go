// Command kubecord-probe is the container health check of the Kubecord images.
// The images are FROM scratch (no shell, no curl), so docker-compose's
// healthcheck needs a binary of its own: it GETs one URL (a service's /readyz
// or /healthz on its metrics port) and exits 0 on a 2xx answer, 1 otherwise.
//
//	kubecord-probe http://127.0.0.1:9001/readyz
//
// Kubernetes does not need it: its native grpc and httpGet probes do the same.
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"
)

// timeout bounds the whole check, so a hung service fails its health check
// instead of piling up probe processes.
const timeout = 3 * time.Second

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// run checks the URL in args and returns the exit code; problems are printed
// to stderr, which docker keeps in the container's health log.
func run(args []string, stderr io.Writer) int {
	if len(args) != 1 {
		_, _ = fmt.Fprintln(stderr, "usage: kubecord-probe http://127.0.0.1:PORT/readyz")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := check(ctx, http.DefaultClient, args[0]); err != nil {
		_, _ = fmt.Fprintf(stderr, "kubecord-probe: %v\n", err)
		return 1
	}
	return 0
}

// check GETs target and returns nil when the answer is 2xx.
func check(ctx context.Context, client *http.Client, target string) error {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL with a host", target)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("building the request: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("checking %s: %w", u.Redacted(), err)
	}
	defer func() { _ = resp.Body.Close() }() // read-only: a close error changes nothing
	// A short excerpt of the body says why a service is not ready
	// ("not ready: starting or draining").
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 256)) // best effort: the status decides
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s answered %s: %q", u.Redacted(), resp.Status, body)
	}
	return nil
}
