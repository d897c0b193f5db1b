package controller

import (
	"context"
	"time"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/collectors"
)

// MetricSource gives the metrics of one loop at one tick, by name;
// collectors.Set is the controller's.
type MetricSource interface {
	Metrics(ctx context.Context, loop *v1alpha1.ControlLoop, now time.Time) map[string]collectors.Metric
}

// metricDoc is a metric as input.metrics shows it, and whether it is stale:
// no value, or older than staleAfter. It is new when it was observed after
// since, the previous tick: a policy may act once per observation. When it has
// a value, observed_ns is when, in nanoseconds since the Unix epoch.
func metricDoc(m collectors.Metric, now time.Time, staleAfter time.Duration, since time.Time) (map[string]any, bool) {
	doc := map[string]any{}
	for k, v := range m.Fields {
		doc[k] = v
	}
	age, stale := metricFreshness(m, now, staleAfter)
	if m.Value != nil {
		doc["value"] = *m.Value
		doc["age_seconds"] = age.Seconds()
	} else {
		doc["value"] = nil
	}
	if m.Err != "" {
		doc["error"] = m.Err
	}
	doc["stale"] = stale
	doc["new"] = m.Value != nil && m.ObservedAt.After(since)
	if m.Value != nil {
		doc["observed_ns"] = m.ObservedAt.UnixNano()
	}
	return doc, stale
}

// metricFreshness is the age of a metric's value at now, and whether it is
// stale: no value, or older than staleAfter (when set).
func metricFreshness(m collectors.Metric, now time.Time, staleAfter time.Duration) (time.Duration, bool) {
	if m.Value == nil {
		return 0, true
	}
	age := now.Sub(m.ObservedAt)
	return age, staleAfter > 0 && age > staleAfter
}

// previousTick is when the loop last ticked; zero before its first tick.
func previousTick(status *v1alpha1.ControlLoopStatus) time.Time {
	if status.LastTick == nil {
		return time.Time{}
	}
	return status.LastTick.Time
}
