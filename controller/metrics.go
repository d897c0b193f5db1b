package controller

import (
	"context"
	"sort"
	"time"

	"governor.dev/governor/api/v1alpha1"
)

// Metric is one metric of one tick, as a source reports it; the loop
// decides from it whether it is stale.
type Metric struct {
	// Value is the metric's main figure; nil when there is none.
	Value *float64
	// ObservedAt is when Value was true.
	ObservedAt time.Time
	// Fields are further figures a source adds (p95, count, ...).
	Fields map[string]any
	// Err says why there is no value.
	Err string
}

// MetricSource gives the metrics of one loop at one tick, by name.
type MetricSource interface {
	Metrics(ctx context.Context, loop *v1alpha1.ControlLoop, now time.Time) map[string]Metric
}

// Observations is the MetricSource that reads status.observations: values
// reported through the API. A declared collector with no observation of its
// name is reported with no value, so the loop sees it missing.
type Observations struct{}

// Metrics implements MetricSource.
func (Observations) Metrics(_ context.Context, loop *v1alpha1.ControlLoop, _ time.Time) map[string]Metric {
	out := map[string]Metric{}
	for name, o := range loop.Status.Observations {
		v := o.Value.AsApproximateFloat64()
		out[name] = Metric{Value: &v, ObservedAt: o.Time.Time}
	}
	for _, c := range loop.Spec.Collectors {
		if _, ok := out[c.Name]; !ok {
			out[c.Name] = Metric{Err: "no observation reported"}
		}
	}
	return out
}

// metricDoc is a metric as input.metrics shows it, and whether it is stale:
// no value, or older than staleAfter.
func metricDoc(m Metric, now time.Time, staleAfter time.Duration) (map[string]any, bool) {
	doc := map[string]any{}
	for k, v := range m.Fields {
		doc[k] = v
	}
	stale := m.Value == nil
	if m.Value != nil {
		age := now.Sub(m.ObservedAt)
		doc["value"] = *m.Value
		doc["age_seconds"] = age.Seconds()
		stale = staleAfter > 0 && age > staleAfter
	} else {
		doc["value"] = nil
	}
	if m.Err != "" {
		doc["error"] = m.Err
	}
	doc["stale"] = stale
	return doc, stale
}

func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
