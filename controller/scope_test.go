package controller

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/bundles"
	"governor.dev/governor/collectors"
)

// countingSource counts the loops it collects for.
type countingSource struct{ calls int }

func (c *countingSource) Metrics(context.Context, *v1alpha1.ControlLoop, time.Time) map[string]collectors.Metric {
	c.calls++
	return map[string]collectors.Metric{}
}

// TestOutOfScopeCollectsNothing: the controller's world reads no collector
// of a loop that reaches outside the operator's scope, and its tick fails
// with a one-line reason in the Ready condition, deciding nothing.
func TestOutOfScopeCollectsNothing(t *testing.T) {
	loop := echoLoop(t, `{"actions": [{"target": "web", "set": {"replicas": 4}}]}`)
	loop.Spec.Collectors = append(loop.Spec.Collectors, v1alpha1.CollectorSpec{Name: "jitter",
		Hubble: &v1alpha1.HubbleCollector{Destination: &v1alpha1.FlowEndpoint{Namespace: "payments", Workload: "api"}}})

	src := &countingSource{}
	l := &Loops{Metrics: src}
	cw := clusterWorld{l: l, r: l.newRunner(types.NamespacedName{Namespace: loop.Namespace, Name: loop.Name})}
	_, err := cw.Metrics(context.Background(), loop, tickNow)
	var scope *collectors.ScopeError
	require.ErrorAs(t, err, &scope)
	assert.Zero(t, src.calls, "nothing is collected")
	cw.l.Scope.Observe = []string{"payments"}
	_, err = cw.Metrics(context.Background(), loop, tickNow)
	require.NoError(t, err)
	assert.Equal(t, 1, src.calls)

	w := freshWorld()
	res := tick(context.Background(), w, echoRegistry(t), loop, &v1alpha1.ControlLoopStatus{}, tickNow, false, nil)
	assert.Equal(t, v1alpha1.PhaseDegraded, res.phase)
	assert.Nil(t, res.decision, "nothing decided")
	assert.Empty(t, w.acted)
	st, err := record(loop, &v1alpha1.ControlLoopStatus{}, res, 0)
	require.NoError(t, err)
	ready := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady)
	require.NotNil(t, ready)
	assert.Equal(t, "CollectorOutOfScope", ready.Reason)
	assert.Equal(t, "collector jitter: hubble destination namespace payments is outside what loops in factory may observe (factory; governor run --observe-namespaces adds others)", ready.Message)
}

// TestNotAnEntrypoint: a loop naming a rule its bundle does not declare as
// an entrypoint decides nothing, and says why.
func TestNotAnEntrypoint(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "echo"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "echo", ".manifest"), []byte(`{"revision": "e1", "metadata": {"entrypoints": ["echo/decision"]}}`), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "echo", "policy.rego"), []byte(echoPolicy+"\nhelper := decision\n"), 0o644))
	reg, err := bundles.LoadRegistry(context.Background(), dir)
	require.NoError(t, err)

	loop := echoLoop(t, `{"actions": [{"target": "web", "set": {"replicas": 4}}]}`)
	res := tick(context.Background(), freshWorld(), reg, loop, &v1alpha1.ControlLoopStatus{}, tickNow, false, nil)
	require.Empty(t, res.entry.Error)
	assert.Len(t, res.entry.Applied, 1, "the entrypoint decides")

	loop.Spec.Policy.Decision = "echo/helper"
	w := freshWorld()
	res = tick(context.Background(), w, reg, loop, &v1alpha1.ControlLoopStatus{}, tickNow, false, nil)
	assert.Equal(t, v1alpha1.PhaseDegraded, res.phase)
	assert.Empty(t, w.acted)
	assert.Equal(t, "NotAnEntrypoint", res.policy.Reason)
	assert.Equal(t, "decision echo/helper is not an entrypoint of echo@e1 (its entrypoints: echo/decision)", res.policy.Message)
}
