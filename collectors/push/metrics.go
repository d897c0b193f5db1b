package push

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// requests counts the endpoint's answers by status code (204, 400, 401,
// 403, 404, 405, 413, 415, 429, 500, 503): a bounded set.
var requests = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "governor_push_requests_total",
	Help: "Requests to the push endpoint, by the status code answered (204: observations written).",
}, []string{"code"})

// Metrics are the push endpoint's metrics, to register once per process.
func Metrics() []prometheus.Collector {
	return []prometheus.Collector{requests}
}

// counted counts h's answers in governor_push_requests_total.
func counted(h http.Handler) http.Handler {
	return promhttp.InstrumentHandlerCounter(requests, h)
}
