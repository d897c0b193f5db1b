package controller

import "github.com/prometheus/client_golang/prometheus"

// loopPanics counts the panics recovered in a loop's runner. A deleted
// loop's series go with its runner.
var loopPanics = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "governor_loop_panics_total",
	Help: "Panics recovered in a loop's ticks (the tick fails, the loop goes Degraded) or in its runner (retried).",
}, []string{"namespace", "loop"})

// loopMetrics are the per-loop metrics, to register once per process.
func loopMetrics() []prometheus.Collector {
	return []prometheus.Collector{loopPanics}
}

// forgetLoop deletes a loop's series.
func forgetLoop(namespace, name string) {
	loopPanics.DeleteLabelValues(namespace, name)
}
