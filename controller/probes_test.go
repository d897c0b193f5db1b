package controller

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"governor.dev/governor/actuators/builtin"
	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/bundles"
)

// asJSON is v as the engine would see it once encoded.
func asJSON(t *testing.T, v any) string {
	t.Helper()
	raw, err := json.Marshal(v)
	require.NoError(t, err)
	return string(raw)
}

// TestLastInputRebuiltFromTheStatus: a tick's status keeps what the tick
// read of its input (status.lastInput); the rest comes from the loop and its
// status, so the input rebuilt is the one the loop decided on, with the
// state and history the next tick sees.
func TestLastInputRebuiltFromTheStatus(t *testing.T) {
	reg := limitedRegistry(t, bundles.Limits{})
	loop := echoLoop(t, `{"events": ["hello"], "state": {"n": 1}}`)
	st := &v1alpha1.ControlLoopStatus{}
	res := tick(context.Background(), freshWorld(), reg, loop, st, tickNow, false, nil)
	require.NotNil(t, res.probe)
	next, err := record(loop, st, res, 0)
	require.NoError(t, err)
	withLastInput(next, res.probe.Input, 0)
	require.NotNil(t, next.LastInput)
	assert.ElementsMatch(t, readKeys, keys(t, next.LastInput))

	loop.Status = *next
	rebuilt, err := recordedInput(loop, nil)
	require.NoError(t, err)
	for _, k := range append(readKeys, "loop", "params") {
		assert.JSONEq(t, asJSON(t, res.probe.Input[k]), asJSON(t, rebuilt[k]), k)
	}
	assert.JSONEq(t, `{"n": 1}`, asJSON(t, rebuilt["state"]), "the state the next tick sees")
	assert.Len(t, rebuilt["history"], 1, "the history the next tick sees")

	// A pinned loop's decisions are not kept; nor is an input over a quarter
	// of the status's limit.
	loop.Spec.Policy.Revision = "1"
	res = tick(context.Background(), freshWorld(), reg, loop, next, tickNow.Add(time.Second), false, nil)
	require.Empty(t, res.entry.Error)
	pinned, err := record(loop, next, res, 0)
	require.NoError(t, err)
	assert.Nil(t, res.probe)
	assert.Nil(t, pinned.LastInput)
	assert.Nil(t, lastInput(map[string]any{"metrics": strings.Repeat("x", 1000)}, 4000))
	assert.NotNil(t, lastInput(map[string]any{"metrics": strings.Repeat("x", 900)}, 4000))
}

func keys(t *testing.T, j *apiextensionsv1.JSON) []string {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(j.Raw, &m))
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestLastDecisionsForTheGate: every replica reads the loops' last inputs
// from the API server: one probe per loop on the bundle that follows its
// active revision and has one; none for a pinned loop, another bundle's, or
// a Deliberative loop whose supervised loop is gone.
func TestLastDecisionsForTheGate(t *testing.T) {
	reg := limitedRegistry(t, bundles.Limits{})
	decided := echoLoop(t, `{"events": ["hello"]}`)
	res := tick(context.Background(), freshWorld(), reg, decided, &v1alpha1.ControlLoopStatus{}, tickNow, false, nil)
	next, err := record(decided, &v1alpha1.ControlLoopStatus{}, res, 0)
	require.NoError(t, err)
	withLastInput(next, res.probe.Input, 0)
	decided.Status = *next

	named := func(name string, change func(l *v1alpha1.ControlLoop)) client.Object {
		l := decided.DeepCopy()
		l.Name = name
		change(l)
		return l
	}
	objs := []client.Object{
		decided,
		named("pinned", func(l *v1alpha1.ControlLoop) { l.Spec.Policy.Revision = "1" }),
		named("other-bundle", func(l *v1alpha1.ControlLoop) { l.Spec.Policy.Bundle = "spin" }),
		named("not-decided", func(l *v1alpha1.ControlLoop) { l.Status.LastInput = nil }),
		named("orphan", func(l *v1alpha1.ControlLoop) {
			l.Spec.Kind, l.Spec.Supervises = v1alpha1.Deliberative, "gone"
		}),
	}
	scheme := runtime.NewScheme()
	require.NoError(t, v1alpha1.AddToScheme(scheme))
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).WithStatusSubresource(&v1alpha1.ControlLoop{}).Build()

	probes, err := lastDecisions(c, nil, reg, builtin.Actuators)(context.Background(), "echo")
	require.NoError(t, err)
	require.Len(t, probes, 1)
	p := probes[0]
	assert.Equal(t, "factory/web-loop", p.Loop)
	assert.Equal(t, "echo/decision", p.Decision)
	assert.Equal(t, res.probe.Contract.Targets, p.Contract.Targets)
	assert.Equal(t, res.probe.Timeout, p.Timeout)
	assert.JSONEq(t, asJSON(t, res.probe.Input["metrics"]), asJSON(t, p.Input["metrics"]))

	// The gate makes the decision again on it.
	engine, ok := reg.Engine("echo")
	require.True(t, ok)
	rev, err := engine.Revision("")
	require.NoError(t, err)
	out, err := rev.Decide(context.Background(), bundles.Request{Decision: p.Decision, Input: p.Input, Contract: &p.Contract, Timeout: p.Timeout})
	require.NoError(t, err)
	assert.Equal(t, []string{"hello"}, out.Decision.Events)
}
