package sdk_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	gatewayv1 "github.com/kubecord/kubecord/gen/kubecord/gateway/v1"
	"github.com/kubecord/kubecord/internal/runtime"
	"github.com/kubecord/kubecord/sdk/sdktest"
)

// waitAcked waits until the gateway holds nothing for group: every event was
// delivered and acked.
func waitAcked(t *testing.T, env *sdktest.Env, group string) {
	t.Helper()
	conn, err := runtime.Dial(env.GatewayAddr, runtime.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	c := gatewayv1.NewGatewayServiceClient(conn)
	deadline := time.Now().Add(20 * time.Second)
	var last *gatewayv1.Group
	for time.Now().Before(deadline) {
		resp, err := c.ListGroups(context.Background(), &gatewayv1.ListGroupsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range resp.GetGroups() {
			if g.GetName() == group {
				last = g
				if g.GetBuffered() == 0 && g.GetLost() == 0 {
					return
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("group %s never drained: %v", group, last)
}

// counterSum sums a counter family's series from reg.
func counterSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range fams {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// buffered returns how many events the gateway buffers for group.
func buffered(t *testing.T, env *sdktest.Env, group string) uint64 {
	t.Helper()
	conn, err := runtime.Dial(env.GatewayAddr, runtime.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	resp, err := gatewayv1.NewGatewayServiceClient(conn).ListGroups(t.Context(), &gatewayv1.ListGroupsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range resp.GetGroups() {
		if g.GetName() == group {
			return g.GetBuffered()
		}
	}
	return 0
}

// waitBuffered waits until the gateway buffers at least n events for group.
func waitBuffered(t *testing.T, env *sdktest.Env, group string, n uint64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for got := buffered(t, env, group); got < n; got = buffered(t, env, group) {
		if time.Now().After(deadline) {
			t.Fatalf("group %s buffers %d events, never %d", group, got, n)
		}
		time.Sleep(20 * time.Millisecond) // polling, bounded by the deadline
	}
}
