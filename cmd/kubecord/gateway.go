package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/kubecord/kubecord/internal/runtime"
	"github.com/kubecord/kubecord/services/gateway"
)

func init() {
	register(command{
		name:    "gateway",
		summary: "run the gateway service: Discord shards and the acknowledged event stream (GatewayService.Consume)",
		run:     runGateway,
	})
}

func runGateway(ctx context.Context, args []string) error {
	cfg := runtime.DefaultConfig(7001, 9001)
	gcfg := gateway.DefaultConfig()
	fs := newFlagSet(ctx, "gateway")
	cfg.RegisterFlags(fs)
	gcfg.RegisterFlags(fs)
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
	svc, err := gateway.New(gcfg, logger.With("service", "gateway"))
	if err != nil {
		return err
	}
	srv, err := runtime.NewServer(cfg, svc, logger)
	if err != nil {
		return fmt.Errorf("building the server: %w", err)
	}
	return runtime.Run(ctx, srv)
}
