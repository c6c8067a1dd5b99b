// Command ping is the example Kubecord worker in Go: it answers "!ping" and
// /ping. It reads its configuration from the environment (KUBECORD_GATEWAYS,
// KUBECORD_REST_ADDR, KUBECORD_GROUP, KUBECORD_AUTH_SECRET, ...).
//
//	KUBECORD_GATEWAYS=127.0.0.1:7001 KUBECORD_REST_ADDR=127.0.0.1:7002 go run ./examples/ping
package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/kubecord/kubecord/examples/ping/pingbot"
	"github.com/kubecord/kubecord/sdk"
)

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	bot, err := sdk.New(sdk.WithGroup("ping"), sdk.WithEnv(), sdk.WithLogger(logger))
	if err != nil {
		logger.Error("configuring the worker", "err", err)
		os.Exit(2)
	}
	defer bot.Close()
	pingbot.Register(bot, nil)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bot.Run(ctx); err != nil {
		logger.Error("worker stopped", "err", err)
		os.Exit(1)
	}
}
