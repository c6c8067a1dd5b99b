package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/kubecord/kubecord/internal/runtime"
	"github.com/kubecord/kubecord/services/state"
)

func init() {
	register(command{
		name:    "state",
		summary: "run the state service: the Discord cache built from the gateway's events (group \"state\"), served over gRPC",
		run:     runState,
	})
}

func runState(ctx context.Context, args []string) error {
	cfg := runtime.DefaultConfig(7003, 9003)
	scfg := state.DefaultConfig()
	fs := newFlagSet(ctx, "state")
	cfg.RegisterFlags(fs)
	scfg.RegisterFlags(fs)
	if err := runtime.ParseFlags(fs, args, os.LookupEnv); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	_, stderr := outputs(ctx)
	logger, err := runtime.NewLogger(cfg.LogLevel, cfg.LogFormat, stderr)
	if err != nil {
		return err
	}
	logger.LogAttrs(ctx, slog.LevelInfo, "configuration", runtime.Describe(fs)...)
	scfg.Client = cfg.Client()
	svc, err := state.New(scfg, logger.With("service", "state"))
	if err != nil {
		return err
	}
	srv, err := runtime.NewServer(cfg, svc, logger)
	if err != nil {
		return fmt.Errorf("building the server: %w", err)
	}
	return runtime.Run(ctx, srv)
}
