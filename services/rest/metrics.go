package rest

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubecord/kubecord/services/rest/internal/ratelimit"
)

// metrics are the service's Prometheus metrics. The bot label is a
// configured bot's name, "request-token" for tokens callers bring, or
// "none": never the token.
type metrics struct {
	requests *prometheus.CounterVec   // bot, api, code
	latency  *prometheus.HistogramVec // bot, api
	waited   *prometheus.HistogramVec // bot
	limited  *prometheus.CounterVec   // bot, scope
	retries  *prometheus.CounterVec   // bot, reason
	refused  *prometheus.CounterVec   // bot, reason
}

func newMetrics() *metrics {
	return &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubecord_rest_requests_total",
			Help: "Calls answered, by bot, API (grpc or http) and HTTP status returned (0: no answer from Discord).",
		}, []string{"bot", "api", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kubecord_rest_request_duration_seconds",
			Help:    "Time from receiving a call to answering it, ratelimit waits and retries included.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"bot", "api"}),
		waited: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kubecord_rest_ratelimit_wait_seconds",
			Help:    "Time calls were held back by ratelimits before being sent.",
			Buckets: []float64{.0001, .001, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"bot"}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubecord_rest_429_total",
			Help: "429 responses received from Discord, by X-RateLimit-Scope (user, shared, global).",
		}, []string{"bot", "scope"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubecord_rest_retries_total",
			Help: "Requests sent again, by reason (429, 5xx, network).",
		}, []string{"bot", "reason"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubecord_rest_refused_total",
			Help: "Calls not sent to Discord, by reason (queue_full, invalid_requests, bad_webhook_token, bad_bot_token, deadline, body_too_large).",
		}, []string{"bot", "reason"}),
	}
}

func (m *metrics) register(reg prometheus.Registerer, lim *ratelimit.Limiter, log *slog.Logger) error {
	// Store stats can cost a Redis scan: compute them at most once per
	// second whatever the scrape rate.
	var mu sync.Mutex
	var last time.Time
	var cached ratelimit.StoreStats
	stats := func() ratelimit.StoreStats {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(last) < time.Second {
			return cached
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := lim.Store().Stats(ctx)
		if err != nil {
			log.Warn("reading ratelimit store stats", "err", err)
			return cached
		}
		cached, last = st, time.Now()
		return cached
	}
	cs := []prometheus.Collector{m.requests, m.latency, m.waited, m.limited, m.retries, m.refused,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "kubecord_rest_queue_depth",
			Help: "Calls waiting for a ratelimit slot in this replica.",
		}, func() float64 { return float64(lim.QueueDepth()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "kubecord_rest_buckets",
			Help: "Live ratelimit buckets in the store (shared by replicas when in Redis).",
		}, func() float64 { return float64(stats().Buckets) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "kubecord_rest_invalid_requests",
			Help: "401/403/429 responses counted toward Discord's invalid-request limit in the recent window.",
		}, func() float64 { return float64(stats().Invalid) }),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
