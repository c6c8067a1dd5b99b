// Package discovery follows a DNS name to every address behind it (a
// Kubernetes headless service resolves to one address per pod), so a client
// can keep one stream to each gateway pod: each pod delivers only the events
// of the shards it owns.
package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// LookupFunc resolves a host name to addresses (net.DefaultResolver.LookupHost
// by default; tests inject their own).
type LookupFunc func(ctx context.Context, host string) ([]string, error)

// Follow resolves hostport ("name:port") now and every interval until ctx
// ends, and keeps run(ctx, "addr:port") going for every address the name
// resolves to: a new address gets a run, an address that disappears has its
// run's context cancelled (a failed lookup changes nothing). Follow returns
// once ctx has ended and every run has returned; runs get contexts derived
// from ctx.
func Follow(ctx context.Context, hostport string, every time.Duration, lookup LookupFunc, log *slog.Logger,
	run func(ctx context.Context, target string)) error {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("gateway address %q: want dns:///name:port: %w", hostport, err)
	}
	if lookup == nil {
		lookup = net.DefaultResolver.LookupHost
	}
	if every <= 0 {
		every = 30 * time.Second
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	peers := map[string]context.CancelFunc{}
	defer func() {
		for _, cancel := range peers {
			cancel()
		}
	}()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		addrs, err := lookup(ctx, host)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("resolving gateways", "name", hostport, "err", err)
			}
		} else {
			seen := make(map[string]bool, len(addrs))
			for _, a := range addrs {
				target := net.JoinHostPort(a, port)
				seen[target] = true
				if _, ok := peers[target]; ok {
					continue
				}
				pctx, cancel := context.WithCancel(ctx)
				peers[target] = cancel
				wg.Add(1)
				go func() {
					defer wg.Done()
					run(pctx, target)
				}()
				log.Info("gateway pod found", "name", hostport, "target", target)
			}
			for target, cancel := range peers {
				if !seen[target] {
					cancel()
					delete(peers, target)
					log.Info("gateway pod gone", "name", hostport, "target", target)
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
