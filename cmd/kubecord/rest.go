package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"google.golang.org/grpc"

	"github.com/kubecord/kubecord/internal/runtime"
	"github.com/kubecord/kubecord/services/rest"
)

func init() {
	register(command{
		name:    "rest",
		summary: "run the REST service: Discord REST calls with every ratelimit in one place (gRPC Do and an HTTP passthrough)",
		run:     runRest,
	})
}

// grpcOverhead is room for the rest of a DoRequest beside its body and files.
const grpcOverhead = 1 << 20

func runRest(ctx context.Context, args []string) error {
	cfg := runtime.DefaultConfig(7002, 9002)
	rcfg := rest.DefaultConfig()
	fs := newFlagSet(ctx, "rest")
	cfg.RegisterFlags(fs)
	rcfg.RegisterFlags(fs)
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
	rcfg.AuthSecret = cfg.AuthSecret
	logger.LogAttrs(ctx, slog.LevelInfo, "configuration", runtime.Describe(fs)...)
	svc, err := rest.New(rcfg, logger.With("service", "rest"))
	if err != nil {
		return err
	}
	// Uploads ride in DoRequest: accept messages as big as the body limit.
	maxMsg := int(min(rcfg.MaxBodyBytes+grpcOverhead, 1<<31-1))
	srv, err := runtime.NewServer(cfg, svc, logger, grpc.MaxRecvMsgSize(maxMsg), grpc.MaxSendMsgSize(64<<20+grpcOverhead))
	if err != nil {
		return fmt.Errorf("building the server: %w", err)
	}
	return runtime.Run(ctx, srv)
}
