package state

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/kubecord/kubecord/services/state/internal/cache"
)

// follow keeps one consumer per address that name (host:port) resolves to, re-resolving every
// ResolveInterval: each gateway pod delivers only the events of the shards it owns, so the
// state service must consume from all of them. A pod that disappears from the name has its
// consumer stopped; its unacked events are redelivered by whichever pod takes its shards.
func (s *Server) follow(ctx context.Context, c *cache.Cache, hostport string) {
	log := s.log.With("component", "discovery", "name", hostport)
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		log.Error("gateway address: want dns:///name:port", slog.Any("error", err))
		return
	}
	lookup := s.cfg.LookupHost
	if lookup == nil {
		lookup = net.DefaultResolver.LookupHost
	}
	every := s.cfg.ResolveInterval
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
			log.Warn("resolving gateways", slog.Any("error", err))
		} else {
			seen := make(map[string]bool, len(addrs))
			for _, a := range addrs {
				target := net.JoinHostPort(a, port)
				seen[target] = true
				if _, ok := peers[target]; ok {
					continue
				}
				cons, err := newConsumer(s, c, target)
				if err != nil {
					log.Error("gateway pod", slog.String("target", target), slog.Any("error", err))
					continue
				}
				pctx, cancel := context.WithCancel(ctx)
				peers[target] = cancel
				wg.Add(1)
				go func() {
					defer wg.Done()
					cons.run(pctx)
				}()
				log.Info("gateway pod found", slog.String("target", target))
			}
			for target, cancel := range peers {
				if !seen[target] {
					cancel()
					delete(peers, target)
					log.Info("gateway pod gone", slog.String("target", target))
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
