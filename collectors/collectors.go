// Package collectors gathers what a loop watches into input.metrics: one
// Metric per collector name, each tick. Each kind of collector is a Source
// in a package of its own (hubble, prometheus, resources); values reported
// through the API or the push endpoint arrive in status.observations.
package collectors

import (
	"context"
	"sync"
	"time"

	"governor.dev/governor/api/v1alpha1"
)

// Metric is one metric at one tick, as a source reads it. The controller
// decides from ObservedAt whether it is stale.
type Metric struct {
	// Value is the metric's main figure; nil when there is none.
	Value *float64
	// ObservedAt is when Value was true.
	ObservedAt time.Time
	// Fields are further figures a source adds (p95, count, series, ...).
	Fields map[string]any
	// Err says why there is no value (or why it may be old).
	Err string
}

// Source is one kind of collector.
type Source interface {
	// Collect reads what one of a loop's collectors names, at a tick. It
	// returns within ctx's deadline and reports failures in Metric.Err.
	Collect(ctx context.Context, loop *v1alpha1.ControlLoop, c *v1alpha1.CollectorSpec, now time.Time) Metric
}

// Set is the collectors the controller has, by kind (a CollectorSpec's
// Kind()): a kind missing is one this controller was not configured for.
// Push has no Source: its values are status.observations.
type Set map[string]Source

// Metrics reads every collector of a loop, concurrently, and adds the
// loop's status.observations (a push collector's value is its observation).
func (s Set) Metrics(ctx context.Context, loop *v1alpha1.ControlLoop, now time.Time) map[string]Metric {
	out := map[string]Metric{}
	for name, o := range loop.Status.Observations {
		v := o.Value.AsApproximateFloat64()
		out[name] = Metric{Value: &v, ObservedAt: o.Time.Time}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range loop.Spec.Collectors {
		c := &loop.Spec.Collectors[i]
		kind := c.Kind()
		src := s[kind]
		if src == nil {
			mu.Lock() // collectors started before this one write out meanwhile
			if _, observed := out[c.Name]; !observed {
				out[c.Name] = Metric{Err: missing(kind)}
			}
			mu.Unlock()
			continue
		}
		wg.Go(func() {
			m := src.Collect(ctx, loop, c, now)
			mu.Lock()
			out[c.Name] = m
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

func missing(kind string) string {
	switch kind {
	case v1alpha1.CollectorPush:
		return "nothing pushed yet"
	case "":
		return "the collector names no kind"
	}
	return "no " + kind + " source configured in this controller"
}
