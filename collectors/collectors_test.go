package collectors

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"governor.dev/governor/api/v1alpha1"
)

type fixed struct{ v float64 }

func (f fixed) Collect(_ context.Context, _ *v1alpha1.ControlLoop, c *v1alpha1.CollectorSpec, now time.Time) Metric {
	v := f.v
	return Metric{Value: &v, ObservedAt: now, Fields: map[string]any{"name": c.Name}}
}

func TestSetReadsEachCollectorAndTheObservations(t *testing.T) {
	now := time.Unix(100, 0)
	loop := &v1alpha1.ControlLoop{
		Spec: v1alpha1.ControlLoopSpec{Collectors: []v1alpha1.CollectorSpec{
			{Name: "errors", Prometheus: &v1alpha1.PrometheusCollector{Query: "x"}},
			{Name: "jitter", Hubble: &v1alpha1.HubbleCollector{}},
			{Name: "load", Push: &v1alpha1.PushCollector{TokenSecret: "s"}},
			{Name: "queue", Push: &v1alpha1.PushCollector{TokenSecret: "s"}},
		}},
		Status: v1alpha1.ControlLoopStatus{Observations: map[string]v1alpha1.Observation{
			"load": {Value: resource.MustParse("2.4"), Time: metav1.NewTime(now.Add(-time.Second))},
		}},
	}
	m := Set{v1alpha1.CollectorPrometheus: fixed{7}}.Metrics(context.Background(), loop, now)
	require.Len(t, m, 4)
	assert.Equal(t, 7.0, *m["errors"].Value)
	assert.Equal(t, "errors", m["errors"].Fields["name"])
	assert.Nil(t, m["jitter"].Value)
	assert.Equal(t, "no hubble source configured in this controller", m["jitter"].Err)
	assert.InDelta(t, 2.4, *m["load"].Value, 1e-9)
	assert.Equal(t, now.Add(-time.Second), m["load"].ObservedAt)
	assert.Equal(t, "nothing pushed yet", m["queue"].Err)
}
