package state

import (
	"context"
	"log/slog"

	"github.com/kubecord/kubecord/internal/discovery"
	"github.com/kubecord/kubecord/services/state/internal/cache"
)

// follow keeps one consumer per address that name (host:port) resolves to, re-resolving every
// ResolveInterval: each gateway pod delivers only the events of the shards it owns, so the
// state service must consume from all of them. A pod that disappears from the name has its
// consumer stopped; its unacked events are redelivered by whichever pod takes its shards.
func (s *Server) follow(ctx context.Context, c *cache.Cache, hostport string) {
	log := s.log.With("component", "discovery")
	err := discovery.Follow(ctx, hostport, s.cfg.ResolveInterval, s.cfg.LookupHost, log, func(ctx context.Context, target string) {
		cons, err := newConsumer(s, c, target)
		if err != nil {
			log.Error("gateway pod", slog.String("target", target), slog.Any("error", err))
			return
		}
		cons.run(ctx)
	})
	if err != nil {
		log.Error("gateway discovery", slog.Any("error", err))
	}
}
