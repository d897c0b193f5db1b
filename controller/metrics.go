package controller

import (
	"context"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/collectors"
)

// MetricSource gives the metrics of one loop at one tick, by name;
// collectors.Set is the controller's.
type MetricSource interface {
	Metrics(ctx context.Context, loop *v1alpha1.ControlLoop, now time.Time) map[string]collectors.Metric
}

// metricDoc is a metric as input.metrics shows it, and whether it is stale:
// no value, or older than staleAfter. isNew says whether the loop's last
// decision read another observation of it (newObservation): a policy may
// act once per observation. When it has a value, observed_ns is when, in
// nanoseconds since the Unix epoch.
func metricDoc(m collectors.Metric, now time.Time, staleAfter time.Duration, isNew bool) (map[string]any, bool) {
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
	doc["new"] = m.Value != nil && isNew
	if m.Value != nil {
		doc["observed_ns"] = m.ObservedAt.UnixNano()
	}
	return doc, stale
}

// newObservation says whether a metric's observation is not the one the
// loop's last decision read (status.seen, to the microsecond the status
// keeps). A status from before status.seen falls back to the observation
// time against the previous tick's.
func newObservation(status *v1alpha1.ControlLoopStatus, name string, m collectors.Metric) bool {
	if status.Seen == nil {
		return m.ObservedAt.After(previousTick(status))
	}
	seen, ok := status.Seen[name]
	return !ok || !seen.Time.Truncate(time.Microsecond).Equal(m.ObservedAt.Truncate(time.Microsecond))
}

// seenObservations are the observation times of the metrics with a value,
// for status.seen.
func seenObservations(observed map[string]collectors.Metric) map[string]metav1.MicroTime {
	seen := map[string]metav1.MicroTime{}
	for name, m := range observed {
		if m.Value != nil {
			seen[name] = metav1.NewMicroTime(m.ObservedAt)
		}
	}
	return seen
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
