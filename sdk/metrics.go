package sdk

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	duration   *prometheus.HistogramVec
	errors     *prometheus.CounterVec
	panics     *prometheus.CounterVec
	deliveries *prometheus.CounterVec
	batches    prometheus.Counter
	lost       prometheus.Counter
	gaps       *prometheus.CounterVec
	slow       *prometheus.CounterVec
}

func newMetrics(r prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kubecord_sdk_handler_duration_seconds",
			Help:    "Time handlers took, by Discord event name.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"event"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubecord_sdk_handler_errors_total",
			Help: "Handlers that returned an error, by event name.",
		}, []string{"event"}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubecord_sdk_handler_panics_total",
			Help: "Handlers that panicked (recovered), by event name.",
		}, []string{"event"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubecord_sdk_deliveries_total",
			Help: "Events received from gateways; redelivered=true for redeliveries.",
		}, []string{"redelivered"}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubecord_sdk_delivery_batches_total",
			Help: "Gateway messages that carried several deliveries at once (DeliveryBatch).",
		}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubecord_sdk_gap_events_total",
			Help: "Events the gateway announced as lost for this group (Gap messages).",
		}),
		gaps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubecord_sdk_gaps_total",
			Help: "Gap messages from gateways, by reason (buffer_overflow, retries_exhausted, session_reset).",
		}, []string{"reason"}),
		slow: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubecord_sdk_slow_handlers_total",
			Help: "Handlers slower than the slow-handler threshold, by event name.",
		}, []string{"event"}),
	}
	if r == nil {
		return m, nil
	}
	var err error
	if m.duration, err = register(r, m.duration); err != nil {
		return nil, err
	}
	if m.errors, err = register(r, m.errors); err != nil {
		return nil, err
	}
	if m.panics, err = register(r, m.panics); err != nil {
		return nil, err
	}
	if m.deliveries, err = register(r, m.deliveries); err != nil {
		return nil, err
	}
	if m.batches, err = register(r, m.batches); err != nil {
		return nil, err
	}
	if m.lost, err = register(r, m.lost); err != nil {
		return nil, err
	}
	if m.gaps, err = register(r, m.gaps); err != nil {
		return nil, err
	}
	if m.slow, err = register(r, m.slow); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the collector already registered under
// its name, so several workers in one process share their metrics.
func register[T prometheus.Collector](r prometheus.Registerer, c T) (T, error) {
	err := r.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(T); ok {
			return existing, nil
		}
	}
	return c, err
}
