package bundles

import "github.com/prometheus/client_golang/prometheus"

// Bundle metrics, for a Prometheus registry (the controller registers them
// with its manager's). They are per process, as bundles are followed once
// per process.
var (
	activations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "governor_bundle_activations_total",
		Help: "Bundle revisions that passed the activation gate and went live.",
	}, []string{"bundle"})
	refusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "governor_bundle_refusals_total",
		Help: "Downloaded bundle revisions refused, by the gate's step (verify, read, compile, test, prepare, activate).",
	}, []string{"bundle", "step"})
	downloadErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "governor_bundle_download_errors_total",
		Help: "Bundle polls that got no answer or an HTTP error.",
	}, []string{"bundle"})
	lastActivation = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "governor_bundle_last_activation_timestamp_seconds",
		Help: "When a bundle's revision last went live (Unix time).",
	}, []string{"bundle"})
	activeRevision = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "governor_bundle_active_revision",
		Help: "1 for the revision of each bundle that decisions run on.",
	}, []string{"bundle", "revision"})
)

// Metrics are the bundle metrics, to register once per process.
func Metrics() []prometheus.Collector {
	return []prometheus.Collector{activations, refusals, downloadErrors, lastActivation, activeRevision}
}
