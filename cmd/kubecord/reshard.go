package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	gatewayv1 "github.com/kubecord/kubecord/gen/kubecord/gateway/v1"
	"github.com/kubecord/kubecord/internal/runtime"
	"github.com/kubecord/kubecord/services/gateway"
)

func init() {
	register(command{
		name: "reshard",
		summary: "ask a bot's running gateway pods to move to a new shard count without downtime, or show the reshard status " +
			"(through any pod's gRPC address, --gateway, or the Redis they share, --redis-url)",
		run: runReshard,
	})
}

func runReshard(ctx context.Context, args []string) error {
	var (
		gatewayAddr, redisURL, prefix, token string
		shards                               int
		showStatus                           bool
	)
	fs := newFlagSet(ctx, "reshard")
	fs.StringVar(&gatewayAddr, "gateway", "", "the gRPC address of any of the bot's gateway pods (host:port or dns:///name:port)")
	runtime.SecretVar(fs, &redisURL, "redis-url", "instead of --gateway: the Redis the gateway pods share")
	fs.StringVar(&prefix, "redis-prefix", "", "with --redis-url: the pods' --redis-prefix (default kubecord)")
	runtime.SecretVar(fs, &token, "token", "with --redis-url: the bot's token (only a hash of its user id part is used)")
	fs.IntVar(&shards, "shard-count", 0, "the shard count to move to")
	fs.BoolVar(&showStatus, "status", false, "only show the active shard count and the latest reshard")
	if err := runtime.ParseFlags(fs, args, os.LookupEnv); err != nil {
		return err
	}
	if !showStatus && shards < 1 {
		return errors.New("--shard-count is required (at least 1), or pass --status")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	stdout, _ := outputs(ctx)
	switch {
	case gatewayAddr != "" && redisURL != "":
		return errors.New("pass either --gateway or --redis-url, not both")
	case gatewayAddr != "":
		return reshardOverGRPC(ctx, stdout, gatewayAddr, shards, showStatus)
	case redisURL != "":
		return reshardThroughRedis(ctx, stdout, redisURL, prefix, token, shards, showStatus)
	}
	return errors.New("--gateway (a gateway pod's gRPC address) or --redis-url (the Redis the pods share) is required")
}

func reshardOverGRPC(ctx context.Context, stdout io.Writer, addr string, shards int, showStatus bool) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("--gateway %q: %w", addr, err)
	}
	defer func() { _ = conn.Close() }()
	client := gatewayv1.NewGatewayServiceClient(conn)
	if !showStatus {
		resp, err := client.Reshard(ctx, &gatewayv1.ReshardRequest{ShardCount: uint32(shards)})
		if err != nil {
			return fmt.Errorf("reshard through %s: %s", addr, status.Convert(err).Message())
		}
		_, _ = fmt.Fprintf(stdout, "resharding from %d to %d shards; follow it with: kubecord reshard --gateway %s --status\n",
			resp.GetFromShardCount(), resp.GetToShardCount(), addr)
		return nil
	}
	st, err := client.GetReshardStatus(ctx, &gatewayv1.GetReshardStatusRequest{})
	if err != nil {
		return fmt.Errorf("reshard status from %s: %s", addr, status.Convert(err).Message())
	}
	printReshardStatus(stdout, gateway.ReshardStatus{
		Active: int(st.GetActiveShardCount()),
		From:   int(st.GetReshard().GetFromShardCount()),
		To:     int(st.GetReshard().GetToShardCount()),
		Phase:  gateway.ReshardPhaseName(st.GetReshard().GetPhase()),
		Reason: st.GetReshard().GetReason(),
	})
	return nil
}

func reshardThroughRedis(ctx context.Context, stdout io.Writer, redisURL, prefix, token string, shards int, showStatus bool) error {
	if token == "" {
		return errors.New("--token (or KUBECORD_TOKEN) is required with --redis-url: it names the bot whose pods to reshard")
	}
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		return fmt.Errorf("--redis-url: %w (want redis://[:password@]host:port[/db])", err)
	}
	client := redis.NewClient(opts)
	defer func() { _ = client.Close() }()
	if !showStatus {
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
	printReshardStatus(stdout, st)
	return nil
}

func printReshardStatus(stdout io.Writer, st gateway.ReshardStatus) {
	_, _ = fmt.Fprintf(stdout, "active shard count: %d\n", st.Active)
	if st.Phase == "" {
		_, _ = fmt.Fprintln(stdout, "no reshard in the last hour")
	} else {
		_, _ = fmt.Fprintf(stdout, "reshard %d -> %d: %s\n", st.From, st.To, st.Phase)
	}
	if st.Reason != "" {
		_, _ = fmt.Fprintf(stdout, "reason: %s\n", st.Reason)
	}
}
