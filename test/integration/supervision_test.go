//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"governor.dev/governor/api/v1alpha1"
)

// reactiveParams is the reactive policy of DESIGN.md: cpu ranked above memory.
const reactiveParams = `{
	"monitor": {"cpu": {"kind": "superior", "threshold": 80}, "memory": {"kind": "superior", "threshold": 85}},
	"priorities": ["cpu", "memory"],
	"remedies": {"cpu": {"target": "web", "scale": "replicas", "step": 1},
	             "memory": {"target": "web", "scale": "memory", "container": "app", "step": "64Mi"}}}`

func scalingSpec(overridable ...string) v1alpha1.ControlLoopSpec {
	return v1alpha1.ControlLoopSpec{
		Kind: v1alpha1.Reactive, State: v1alpha1.Running, Interval: metav1.Duration{Duration: 200 * time.Millisecond},
		Policy: v1alpha1.PolicySpec{Bundle: "reactive", Decision: "governor/reactive/decision",
			Params: &apiextensionsv1.JSON{Raw: []byte(reactiveParams)}, Overridable: overridable},
		Targets: []v1alpha1.TargetSpec{{Name: "web", Ref: v1alpha1.TargetRef{Kind: "Deployment", Name: "web"},
			Replicas: &v1alpha1.ReplicaBounds{Min: 1, Max: 50},
			Resources: &v1alpha1.ResourceBounds{Containers: []string{"app"},
				Memory: &v1alpha1.QuantityRange{Min: resource.MustParse("64Mi"), Max: resource.MustParse("1Gi")}}}},
		Safety:       v1alpha1.SafetySpec{StaleAfter: metav1.Duration{Duration: time.Hour}, MaxActions: 5},
		HistoryLimit: 50,
	}
}

func deliberativeSpec(supervises string) v1alpha1.ControlLoopSpec {
	return v1alpha1.ControlLoopSpec{
		Kind: v1alpha1.Deliberative, State: v1alpha1.Running, Interval: metav1.Duration{Duration: 300 * time.Millisecond},
		Policy: v1alpha1.PolicySpec{Bundle: "deliberative", Decision: "governor/deliberative/decision",
			Params: &apiextensionsv1.JSON{Raw: []byte(`{"window": 5, "min_interval_seconds": 3600}`)}},
		Supervises: supervises,
		Safety:     v1alpha1.SafetySpec{StaleAfter: metav1.Duration{Duration: time.Hour}, MaxActions: 5},
	}
}

// TestDeliberativeLoopRewritesPriorities runs the pair of DESIGN.md on a real
// API server, step by step.
func TestDeliberativeLoopRewritesPriorities(t *testing.T) {
	e := newEnv(t)
	e.startManager(t)
	ctx := context.Background()
	ns := e.namespace(t)
	e.deployment(t, ns, "web", 2)
	e.loop(t, ns, "scaling", scalingSpec("priorities"))
	// Both resources stay in violation.
	e.observe(t, ns, "scaling", "cpu", "95", time.Now())
	e.observe(t, ns, "scaling", "memory", "95", time.Now())
	web := func() (int32, string) {
		var d appsv1.Deployment
		require.NoError(t, e.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "web"}, &d))
		mem := d.Spec.Template.Spec.Containers[0].Resources.Requests["memory"]
		return *d.Spec.Replicas, mem.String()
	}

	// 1. cpu ranks first: every tick remedies cpu, adding a replica.
	eventually(t, 15*time.Second, func() (bool, string) {
		n, mem := web()
		return n >= 6 && mem == "128Mi", fmt.Sprintf("replicas %d memory %s", n, mem)
	})
	l := e.get(t, ns, "scaling")
	for _, h := range l.Status.History {
		for _, a := range h.Actions {
			require.Equal(t, "cpu", a.Metric, "before the deliberative loop, only cpu is remedied")
		}
		if len(h.Actions) > 0 {
			assert.Equal(t, []string{"High cpu", "High memory"}, h.Events)
		}
	}

	// 2. The deliberative loop sees `window` cpu actions while memory was in
	// violation too, and moves memory up one rank.
	e.loop(t, ns, "priorities", deliberativeSpec("scaling"))
	eventually(t, 15*time.Second, func() (bool, string) {
		l := e.get(t, ns, "scaling")
		if l.Status.Overrides == nil {
			return false, "no overrides yet"
		}
		return string(l.Status.Overrides.Raw) == `{"priorities":["memory","cpu"]}`, string(l.Status.Overrides.Raw)
	})
	l = e.get(t, ns, "scaling")
	require.NotNil(t, l.Status.OverridesBy)
	assert.Equal(t, "priorities", l.Status.OverridesBy.Loop)
	assert.Equal(t, "deliberative@deliberative-5", l.Status.OverridesBy.Revision)
	// The tick's record follows its overrides (the status writer writes it
	// once the tick is over): read until it is there.
	var rewrote *v1alpha1.HistoryEntry
	d := e.get(t, ns, "priorities")
	eventually(t, 10*time.Second, func() (bool, string) {
		d = e.get(t, ns, "priorities")
		for i := range d.Status.History {
			if d.Status.History[i].Params != nil {
				rewrote = &d.Status.History[i]
			}
		}
		return rewrote != nil, "the deliberative loop's history records no params applied"
	})
	assert.JSONEq(t, `{"priorities": ["memory", "cpu"]}`, string(rewrote.Params.Raw))
	assert.Equal(t, []string{"Raise memory above cpu"}, rewrote.Events)

	// 3. The reactive loop reads the new order and remedies memory.
	eventually(t, 15*time.Second, func() (bool, string) {
		_, mem := web()
		return mem != "128Mi", "memory " + mem
	})
	eventually(t, 15*time.Second, func() (bool, string) {
		l := e.get(t, ns, "scaling")
		h, desc := lastEntry(l)
		ok := len(h.Actions) == 1 && h.Actions[0].Metric == "memory"
		var cond string
		for _, c := range l.Status.Conditions {
			if c.Type == v1alpha1.ConditionOverridden {
				cond = c.Reason
			}
		}
		return ok && cond == "Supervised", cond + " " + desc
	})

	// 4. Removing the deliberative loop leaves the overrides, and says so.
	require.NoError(t, e.c.Delete(ctx, d))
	eventually(t, 15*time.Second, func() (bool, string) {
		l := e.get(t, ns, "scaling")
		for _, c := range l.Status.Conditions {
			if c.Type == v1alpha1.ConditionOverridden && c.Reason == "SupervisorGone" {
				return strings.Contains(c.Message, `"overrides":null`), c.Message
			}
		}
		return false, fmt.Sprint(l.Status.Conditions)
	})
	assert.Equal(t, `{"priorities":["memory","cpu"]}`, string(e.get(t, ns, "scaling").Status.Overrides.Raw))
}

// TestDeliberativeLoopMayRewriteOnlyWhatTheSpecAllows: a supervised loop
// that declares nothing overridable keeps its params.
func TestDeliberativeLoopMayRewriteOnlyWhatTheSpecAllows(t *testing.T) {
	e := newEnv(t)
	e.startManager(t)
	ns := e.namespace(t)
	e.deployment(t, ns, "web", 2)
	e.loop(t, ns, "scaling", scalingSpec())
	e.observe(t, ns, "scaling", "cpu", "95", time.Now())
	e.observe(t, ns, "scaling", "memory", "95", time.Now())
	e.loop(t, ns, "priorities", deliberativeSpec("scaling"))
	eventually(t, 20*time.Second, func() (bool, string) {
		h, desc := lastEntry(e.get(t, ns, "priorities"))
		return strings.Contains(joined(h.Guard), "Refused scaling: params [priorities] are not overridable (spec.policy.overridable of scaling: [])"), desc
	})
	l := e.get(t, ns, "scaling")
	assert.Nil(t, l.Status.Overrides)
	raw, err := json.Marshal(l.Status.History[len(l.Status.History)-1].Actions)
	require.NoError(t, err)
	assert.Contains(t, string(raw), `"metric":"cpu"`)
}
