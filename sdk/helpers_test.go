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
