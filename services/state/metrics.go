package state

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the state service's own Prometheus metrics (the runtime adds the gRPC ones).
type metrics struct {
	applied     *prometheus.CounterVec
	applyErrors prometheus.Counter
	applyTime   prometheus.Histogram
	lost        prometheus.Counter
	reconnects  prometheus.Counter
}

func newMetrics() *metrics {
	return &metrics{
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubecord_state_events_applied_total", Help: "Events applied to the cache, by event name.",
		}, []string{"event"}),
		applyErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubecord_state_apply_errors_total", Help: "Events that could not be applied (nacked for redelivery).",
		}),
		applyTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "kubecord_state_apply_seconds", Help: "Time to apply one event to the store.",
			Buckets: prometheus.ExponentialBuckets(5e-6, 4, 10),
		}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubecord_state_events_lost_total", Help: "Events the gateway announced as lost for group state (gaps): the cache may be stale until the guilds' next GUILD_CREATE.",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubecord_state_consume_reconnects_total", Help: "Consume streams that ended and were reopened.",
		}),
	}
}

// objectsCollector reports what the cache holds at scrape time.
type objectsCollector struct {
	s    *Server
	desc *prometheus.Desc
	mem  *prometheus.Desc
}

func (c objectsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc; ch <- c.mem }

func (c objectsCollector) Collect(ch chan<- prometheus.Metric) {
	ca := c.s.cache.Load()
	if ca == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n, err := ca.Store().Counts(ctx)
	if err != nil {
		return // a scrape during a Redis outage reports no object counts rather than zeros
	}
	for kind, v := range map[string]uint64{
		"guilds": n.Guilds, "unavailable_guilds": n.UnavailableGuilds, "channels": n.Channels, "threads": n.Threads,
		"roles": n.Roles, "members": n.Members, "users": n.Users, "emojis": n.Emojis, "stickers": n.Stickers,
		"voice_states": n.VoiceStates, "presences": n.Presences,
	} {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(v), kind)
	}
	ch <- prometheus.MustNewConstMetric(c.mem, prometheus.GaugeValue, float64(n.MemoryBytes), ca.Store().Kind())
}

func (m *metrics) register(reg prometheus.Registerer, s *Server) error {
	for _, c := range []prometheus.Collector{m.applied, m.applyErrors, m.applyTime, m.lost, m.reconnects,
		objectsCollector{
			s:    s,
			desc: prometheus.NewDesc("kubecord_state_objects", "Objects in the cache, by kind.", []string{"kind"}, nil),
			mem:  prometheus.NewDesc("kubecord_state_memory_bytes", "Approximate memory used by the cache's store.", []string{"store"}, nil),
		}} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
