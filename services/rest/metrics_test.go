package rest

import (
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/kubecord/kubecord/discordsim"
	restv1 "github.com/kubecord/kubecord/gen/kubecord/rest/v1"
)

// metricValue sums the samples of name whose labels include want.
func metricValue(t *testing.T, fams []*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	var sum float64
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue metrics
				}
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	sim := startSim(t, discordsim.RESTConfig{})
	s := startService(t, serviceConfig(sim))
	// A shared-scope 429 from Discord: retried after retry_after, counted.
	if err := sim.InjectRESTFault(discordsim.RESTFault{Route: "/users/@me", Method: "GET", Status: 429, RetryAfter: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	res, err := s.client.Do(t.Context(), &restv1.DoRequest{Method: "GET", Path: "/users/@me"})
	if err != nil || res.GetStatus() != http.StatusOK || res.GetRateLimit().GetRetries() != 1 {
		t.Fatalf("GET after a shared 429: %v %v, want 200 after one retry", res, err)
	}
	if _, err := s.client.Do(t.Context(), &restv1.DoRequest{Method: "GET", Path: "/users/@me", Token: tokenB}); err != nil {
		t.Fatal(err)
	}
	fams, err := s.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"kubecord_rest_429_total", map[string]string{"bot": "alpha", "scope": "shared"}, 1},
		{"kubecord_rest_retries_total", map[string]string{"bot": "alpha", "reason": "429"}, 1},
		{"kubecord_rest_requests_total", map[string]string{"bot": "alpha", "api": "grpc", "code": "200"}, 1},
		// A caller sending a configured bot's token is that bot.
		{"kubecord_rest_requests_total", map[string]string{"bot": "beta", "api": "grpc", "code": "200"}, 1},
		{"kubecord_rest_request_duration_seconds", map[string]string{"api": "grpc"}, 2},
	}
	for _, c := range checks {
		if got := metricValue(t, fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if got := metricValue(t, fams, "kubecord_rest_buckets", nil); got < 1 {
		t.Errorf("kubecord_rest_buckets = %v, want at least 1", got)
	}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.Contains(l.GetValue(), tokenA[:20]) || strings.Contains(l.GetValue(), tokenB[:20]) {
					t.Errorf("metric %s has a token in label %s", f.GetName(), l.GetName())
				}
			}
		}
	}
}
