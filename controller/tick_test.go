package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"governor.dev/governor/actuators"
	"governor.dev/governor/actuators/bandwidth"
	"governor.dev/governor/actuators/builtin"
	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/bundles"
	"governor.dev/governor/collectors"
	"governor.dev/governor/controller/guard"
	"governor.dev/governor/decision"
	"governor.dev/governor/workload"
)

// echoPolicy decides what the loop's params tell it to: each case of the
// table writes its decision there.
const echoPolicy = `package echo

decision := input.params.decision
`

// world is a World of the test's own: targets held in memory, metrics as
// given, actuation that can fail on a field after applying the ones before.
type world struct {
	scope     collectors.Scope
	metrics   map[string]collectors.Metric
	targets   map[string]*actuators.Target
	loops     map[string]*v1alpha1.ControlLoop
	fail      map[string]error // by field
	intendErr error
	intended  [][]string
	acted     []decision.Set
	overrides []map[string]any
}

func (w *world) Actuators() *actuators.Registry { return builtin.Actuators }

func (w *world) Metrics(_ context.Context, loop *v1alpha1.ControlLoop, _ time.Time) (map[string]collectors.Metric, error) {
	if err := w.scope.Check(loop); err != nil {
		return nil, err
	}
	return w.metrics, nil
}

func (w *world) Target(_ context.Context, loop *v1alpha1.ControlLoop, spec *v1alpha1.TargetSpec) (*actuators.Target, map[string]any, error) {
	t, ok := w.targets[spec.Name]
	if !ok {
		return nil, nil, fmt.Errorf("no target %s", spec.Name)
	}
	t.Spec, t.Workload = spec, workload.Of(loop.Namespace, spec.Ref)
	return t, builtin.Actuators.Doc(t), nil
}

func (w *world) Act(_ context.Context, t *actuators.Target, set decision.Set) (decision.Set, error) {
	applied := decision.Set{}
	defer func() { w.acted = append(w.acted, applied) }()
	for _, a := range builtin.Actuators.All() {
		v, ok := set[a.Field()]
		if !ok {
			continue
		}
		if err := w.fail[a.Field()]; err != nil {
			return applied, fmt.Errorf("%s: %w", a.Field(), err)
		}
		t.Current[a.Field()] = a.Simulate(t.Spec, t.Current[a.Field()], v)
		applied[a.Field()] = v
	}
	return applied, nil
}

func (w *world) Loop(_ context.Context, namespace, name string) (*v1alpha1.ControlLoop, error) {
	return w.loops[namespace+"/"+name], nil
}

func (w *world) Intend(_ context.Context, _ *v1alpha1.ControlLoop, targets []string, at time.Time) (time.Time, error) {
	if w.intendErr != nil {
		return at, w.intendErr
	}
	w.intended = append(w.intended, targets)
	return at, nil
}

func (w *world) Override(_ context.Context, _, _ *v1alpha1.ControlLoop, params map[string]any, _ v1alpha1.OverridesSource) error {
	w.overrides = append(w.overrides, params)
	return nil
}

func echoRegistry(t *testing.T) *bundles.Registry {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "echo"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "echo", "policy.rego"), []byte(echoPolicy), 0o644))
	reg, err := bundles.LoadRegistry(context.Background(), dir)
	require.NoError(t, err)
	return reg
}

var tickNow = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

// echoLoop is a Running loop on the echo bundle with one target, web, that
// may change replicas (1-10, step 2) and egress bandwidth (10M-1000M).
func echoLoop(t *testing.T, decide string) *v1alpha1.ControlLoop {
	t.Helper()
	params, err := json.Marshal(map[string]json.RawMessage{"decision": json.RawMessage(decide)})
	require.NoError(t, err)
	return &v1alpha1.ControlLoop{
		ObjectMeta: metav1.ObjectMeta{Namespace: "factory", Name: "web-loop", Generation: 1},
		Spec: v1alpha1.ControlLoopSpec{
			Kind: v1alpha1.Reactive, State: v1alpha1.Running,
			Policy:     v1alpha1.PolicySpec{Bundle: "echo", Decision: "echo/decision", Params: &apiextensionsv1.JSON{Raw: params}},
			Collectors: []v1alpha1.CollectorSpec{{Name: "cpu", Push: &v1alpha1.PushCollector{TokenSecret: "s"}}},
			Targets: []v1alpha1.TargetSpec{{Name: "web", Ref: v1alpha1.TargetRef{Name: "web"},
				Replicas:  &v1alpha1.ReplicaBounds{Min: 1, Max: 10, MaxStep: 2},
				Bandwidth: &v1alpha1.BandwidthBounds{Min: resource.MustParse("10M"), Max: resource.MustParse("1000M")}}},
			Safety: v1alpha1.SafetySpec{Cooldown: metav1.Duration{Duration: 30 * time.Second},
				StaleAfter: metav1.Duration{Duration: 15 * time.Second}, MaxActions: 5},
		},
	}
}

func freshWorld() *world {
	cpu := 91.0
	return &world{
		metrics: map[string]collectors.Metric{"cpu": {Value: &cpu, ObservedAt: tickNow.Add(-time.Second)}},
		targets: map[string]*actuators.Target{"web": {Name: "web", Exists: true, Current: map[string]any{
			"replicas": ptr.To(int64(3)), "bandwidth": bandwidth.Value{Egress: ptr.To(resource.MustParse("500M"))}}}},
		loops: map[string]*v1alpha1.ControlLoop{},
		fail:  map[string]error{},
	}
}

func TestTick(t *testing.T) {
	reg := echoRegistry(t)
	cases := []struct {
		name   string
		decide string
		setup  func(l *v1alpha1.ControlLoop, st *v1alpha1.ControlLoopStatus, w *world)
		check  func(t *testing.T, res tickResult, w *world)
	}{
		{
			name:   "an action within bounds is applied and starts the cooldown",
			decide: `{"actions": [{"target": "web", "metric": "cpu", "set": {"replicas": 4}, "reason": "High cpu"}]}`,
			check: func(t *testing.T, res tickResult, w *world) {
				require.Len(t, res.entry.Applied, 1)
				assert.JSONEq(t, `{"replicas": 4}`, string(res.entry.Applied[0].Set.Raw))
				assert.Equal(t, tickNow, res.changed["web"])
				assert.Equal(t, v1alpha1.PhaseRunning, res.phase)
				assert.Equal(t, int64(4), *w.targets["web"].Current["replicas"].(*int64))
				assert.Equal(t, [][]string{{"web"}}, w.intended, "the change was recorded before it was made")
			},
		},
		{
			name:   "when the change cannot be recorded first, nothing is acted on",
			decide: `{"actions": [{"target": "web", "metric": "cpu", "set": {"replicas": 4}}]}`,
			setup: func(_ *v1alpha1.ControlLoop, _ *v1alpha1.ControlLoopStatus, w *world) {
				w.intendErr = errors.New("etcdserver: request timed out")
			},
			check: func(t *testing.T, res tickResult, w *world) {
				assert.Empty(t, w.acted)
				assert.Empty(t, res.entry.Applied)
				assert.Empty(t, res.changed)
				assert.Contains(t, res.entry.Guard, "Failed web: not acted on: recording the change before making it failed: etcdserver: request timed out")
				assert.Equal(t, int64(3), *w.targets["web"].Current["replicas"].(*int64))
			},
		},
		{
			name:   "clamped to one step",
			decide: `{"actions": [{"target": "web", "set": {"replicas": 9}}]}`,
			check: func(t *testing.T, res tickResult, w *world) {
				require.Len(t, res.entry.Applied, 1)
				assert.JSONEq(t, `{"replicas": 5}`, string(res.entry.Applied[0].Set.Raw))
				assert.Contains(t, res.entry.Guard, "Clamped web: replicas 9 limited to one step (2) above 3")
			},
		},
		{
			name:   "inside the cooldown nothing acts",
			decide: `{"actions": [{"target": "web", "set": {"replicas": 4}}]}`,
			setup: func(_ *v1alpha1.ControlLoop, st *v1alpha1.ControlLoopStatus, _ *world) {
				st.Targets = []v1alpha1.TargetStatus{{Name: "web", LastChange: ptr.To(metav1.NewMicroTime(tickNow.Add(-10 * time.Second)))}}
			},
			check: func(t *testing.T, res tickResult, w *world) {
				assert.Empty(t, res.entry.Applied)
				assert.Empty(t, w.acted)
				assert.Contains(t, res.entry.Guard, "Refused web: in cooldown for 20s more (cooldown 30s)")
				assert.Empty(t, res.changed)
			},
		},
		{
			name:   "Passive decides and guards but never acts",
			decide: `{"actions": [{"target": "web", "set": {"replicas": 4}}]}`,
			setup: func(l *v1alpha1.ControlLoop, _ *v1alpha1.ControlLoopStatus, _ *world) {
				l.Spec.State = v1alpha1.Passive
			},
			check: func(t *testing.T, res tickResult, w *world) {
				assert.Equal(t, v1alpha1.PhasePassive, res.phase)
				assert.Len(t, res.entry.Actions, 1, "the decision is recorded")
				assert.Empty(t, res.entry.Applied)
				assert.Empty(t, w.acted)
				assert.Empty(t, w.intended)
				assert.Contains(t, res.entry.Guard, "Passive: 1 action(s) not applied")
			},
		},
		{
			name:   "a decision that breaks the contract is rejected whole",
			decide: `{"actions": [{"target": "web", "set": {"replicas": 4}}, {"target": "cache", "set": {"replicas": 1}}]}`,
			check: func(t *testing.T, res tickResult, w *world) {
				assert.Contains(t, res.entry.Error, `decision rejected: invalid decision echo/decision`)
				assert.Contains(t, res.entry.Error, `actions[1].target: "cache" is not one of the loop's targets [web]`)
				assert.Empty(t, w.acted, "not even the valid action")
				assert.Equal(t, v1alpha1.PhaseRunning, res.phase, "the bundle is fine; its decision was not")
			},
		},
		{
			name:   "an actuation that fails half-way is recorded as partly applied, with its cooldown",
			decide: `{"actions": [{"target": "web", "set": {"replicas": 4, "bandwidth": {"egress": "400M"}}}]}`,
			setup: func(_ *v1alpha1.ControlLoop, _ *v1alpha1.ControlLoopStatus, w *world) {
				w.fail["bandwidth"] = errors.New("pods: connection refused")
			},
			check: func(t *testing.T, res tickResult, w *world) {
				require.Len(t, res.entry.Applied, 1)
				assert.JSONEq(t, `{"replicas": 4}`, string(res.entry.Applied[0].Set.Raw), "what was applied, and only that")
				assert.Equal(t, tickNow, res.changed["web"], "the cooldown covers what changed")
				assert.Contains(t, res.entry.Guard, "Failed web: actuation failed after applying replicas: bandwidth: pods: connection refused")
				assert.Equal(t, int64(4), *w.targets["web"].Current["replicas"].(*int64))
			},
		},
		{
			name:   "an actuation that fails before changing anything starts no cooldown",
			decide: `{"actions": [{"target": "web", "set": {"bandwidth": {"egress": "400M"}}}]}`,
			setup: func(_ *v1alpha1.ControlLoop, _ *v1alpha1.ControlLoopStatus, w *world) {
				w.fail["bandwidth"] = errors.New("forbidden")
			},
			check: func(t *testing.T, res tickResult, _ *world) {
				assert.Empty(t, res.entry.Applied)
				assert.Empty(t, res.changed)
				assert.Contains(t, res.entry.Guard, "Failed web: actuation failed: bandwidth: forbidden")
			},
		},
		{
			name:   "a stale metric holds actions that name none",
			decide: `{"actions": [{"target": "web", "set": {"replicas": 4}}]}`,
			setup: func(_ *v1alpha1.ControlLoop, _ *v1alpha1.ControlLoopStatus, w *world) {
				cpu := 91.0
				w.metrics["cpu"] = collectors.Metric{Value: &cpu, ObservedAt: tickNow.Add(-time.Minute)}
			},
			check: func(t *testing.T, res tickResult, w *world) {
				assert.Empty(t, w.acted)
				assert.Contains(t, res.entry.Guard, "Refused web: the action names no metric and metrics [cpu] are stale or missing")
			},
		},
		{
			name:   "a decision that is not there degrades the loop",
			decide: `null`,
			setup: func(l *v1alpha1.ControlLoop, _ *v1alpha1.ControlLoopStatus, _ *world) {
				l.Spec.Policy.Decision = "echo/nothing"
			},
			check: func(t *testing.T, res tickResult, w *world) {
				assert.Equal(t, v1alpha1.PhaseDegraded, res.phase)
				assert.Equal(t, "UndefinedDecision", res.policy.Reason)
				assert.Empty(t, w.acted)
			},
		},
		{
			name:   "params a supervised loop does not allow are refused whole",
			decide: `{"params": {"priorities": ["memory", "cpu"], "threshold": 3}}`,
			setup: func(l *v1alpha1.ControlLoop, _ *v1alpha1.ControlLoopStatus, w *world) {
				l.Spec.Kind, l.Spec.Supervises, l.Spec.Targets = v1alpha1.Deliberative, "scaling", nil
				w.loops["factory/scaling"] = &v1alpha1.ControlLoop{ObjectMeta: metav1.ObjectMeta{Namespace: "factory", Name: "scaling"},
					Spec: v1alpha1.ControlLoopSpec{Kind: v1alpha1.Reactive, Policy: v1alpha1.PolicySpec{Overridable: []string{"priorities"}}}}
			},
			check: func(t *testing.T, res tickResult, w *world) {
				assert.Empty(t, w.overrides)
				assert.Nil(t, res.entry.Params)
				assert.Contains(t, strings.Join(res.entry.Guard, "\n"), "Refused scaling: params [threshold] are not overridable")
				require.Len(t, res.notes, 1, "the refusal becomes an Event too")
				assert.Equal(t, guard.Refused, res.notes[0].Verdict)
			},
		},
		{
			name:   "params it allows are written",
			decide: `{"params": {"priorities": ["memory", "cpu"]}}`,
			setup: func(l *v1alpha1.ControlLoop, _ *v1alpha1.ControlLoopStatus, w *world) {
				l.Spec.Kind, l.Spec.Supervises, l.Spec.Targets = v1alpha1.Deliberative, "scaling", nil
				w.loops["factory/scaling"] = &v1alpha1.ControlLoop{ObjectMeta: metav1.ObjectMeta{Namespace: "factory", Name: "scaling"},
					Spec: v1alpha1.ControlLoopSpec{Kind: v1alpha1.Reactive, Policy: v1alpha1.PolicySpec{Overridable: []string{"priorities"}}}}
			},
			check: func(t *testing.T, res tickResult, w *world) {
				require.Len(t, w.overrides, 1)
				assert.Equal(t, []any{"memory", "cpu"}, w.overrides[0]["priorities"])
				require.NotNil(t, res.entry.Params)
				assert.JSONEq(t, `{"priorities": ["memory", "cpu"]}`, string(res.entry.Params.Raw))
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			loop := echoLoop(t, tc.decide)
			st := &v1alpha1.ControlLoopStatus{Tick: 4}
			w := freshWorld()
			if tc.setup != nil {
				tc.setup(loop, st, w)
			}
			res := tick(context.Background(), w, reg, loop, st, tickNow, false, nil)
			assert.Equal(t, int64(5), res.entry.Tick)
			assert.False(t, res.interrupted)
			tc.check(t, res, w)
			next, err := record(loop, st, res, 0)
			require.NoError(t, err)
			assert.Equal(t, res.phase, next.Phase)
			require.Len(t, next.History, 1)
			if at, ok := res.changed["web"]; ok {
				assert.Equal(t, at, lastChanges(next)["web"], "the cooldown is in the status")
			}
		})
	}
}

// cutWorld is a world stopped while it changes a target: the change may
// have landed, nothing says what was applied.
type cutWorld struct {
	*world
	cancel context.CancelFunc
}

func (w cutWorld) Act(ctx context.Context, _ *actuators.Target, _ decision.Set) (decision.Set, error) {
	w.cancel()
	return decision.Set{}, ctx.Err()
}

// A tick stopped while a target changes is recorded, not dropped: the
// change may have landed, so the target's cooldown must hold.
func TestActuationCutShortKeepsItsCooldown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := cutWorld{world: freshWorld(), cancel: cancel}
	loop := echoLoop(t, `{"actions": [{"target": "web", "metric": "cpu", "set": {"replicas": 4}}]}`)
	res := tick(ctx, w, echoRegistry(t), loop, &v1alpha1.ControlLoopStatus{Tick: 4}, tickNow, false, nil)
	assert.True(t, res.interrupted)
	assert.Empty(t, res.entry.Applied)
	assert.True(t, res.wrote(), "the tick may have changed web: it must be recorded")
	assert.Equal(t, tickNow, res.changed["web"])
	next, err := record(loop, &v1alpha1.ControlLoopStatus{Tick: 4}, res, 0)
	require.NoError(t, err)
	assert.Equal(t, tickNow, lastChanges(next)["web"])
}
