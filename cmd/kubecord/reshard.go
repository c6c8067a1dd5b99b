package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kubecord/kubecord/internal/runtime"
	"github.com/kubecord/kubecord/services/gateway"
)

func init() {
	register(command{
		name:    "reshard",
		summary: "ask a bot's running gateway pods (sharing --redis-url) to move to a new shard count without downtime, or show the reshard status",
		run:     runReshard,
	})
}

func runReshard(ctx context.Context, args []string) error {
	var (
		redisURL, prefix, token string
		shards                  int
		status                  bool
	)
	fs := newFlagSet(ctx, "reshard")
	runtime.SecretVar(fs, &redisURL, "redis-url", "the Redis the gateway pods share (required)")
	fs.StringVar(&prefix, "redis-prefix", "", "the pods' --redis-prefix (default kubecord)")
	runtime.SecretVar(fs, &token, "token", "the bot's token (required; only a hash of its user id part is used)")
	fs.IntVar(&shards, "shard-count", 0, "the shard count to move to")
	fs.BoolVar(&status, "status", false, "only show the active shard count and the latest reshard")
	if err := runtime.ParseFlags(fs, args, os.LookupEnv); err != nil {
		return err
	}
	if redisURL == "" {
		return errors.New("--redis-url is required: the Redis the gateway pods run with")
	}
	if token == "" {
		return errors.New("--token (or KUBECORD_TOKEN) is required: it names the bot whose pods to reshard")
	}
	if !status && shards < 1 {
		return errors.New("--shard-count is required (at least 1), or pass --status")
	}
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		return fmt.Errorf("--redis-url: %w (want redis://[:password@]host:port[/db])", err)
	}
	client := redis.NewClient(opts)
	defer func() { _ = client.Close() }()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	stdout, _ := outputs(ctx)
	if !status {
		from, err := gateway.RequestReshard(ctx, client, prefix, token, shards)
		if err != nil {
			return fmt.Errorf("reshard: %w", err)
		}
		_, _ = fmt.Fprintf(stdout, "resharding from %d to %d shards; follow it with: kubecord reshard --status\n", from, shards)
		return nil
	}
	st, err := gateway.GetReshardStatus(ctx, client, prefix, token)
	if err != nil {
		return fmt.Errorf("reshard status: %w", err)
	}
	_, _ = fmt.Fprintf(stdout, "active shard count: %d\n", st.Active)
	if st.Phase == "" {
		_, _ = fmt.Fprintln(stdout, "no reshard in the last hour")
	} else {
		_, _ = fmt.Fprintf(stdout, "reshard %d -> %d: %s\n", st.From, st.To, st.Phase)
	}
	return nil
}
