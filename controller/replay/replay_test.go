package replay

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"governor.dev/governor/actuators/bandwidth"
	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/bundles"
)

const traces = "../../test/traces"

func registry(t *testing.T) *bundles.Registry {
	t.Helper()
	r, err := bundles.LoadRegistry(context.Background(), "../../policies")
	require.NoError(t, err)
	return r
}

func readTrace(t *testing.T, path string) []Tick {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	trace, err := ReadTrace(f, path)
	require.NoError(t, err)
	return trace
}

func TestReplayOfTheBandwidthTrace(t *testing.T) {
	loop, err := ReadLoop(filepath.Join(traces, "factory-qos/loop.yaml"))
	require.NoError(t, err)
	rows, err := Run(context.Background(), registry(t), []*v1alpha1.ControlLoop{loop}, readTrace(t, filepath.Join(traces, "factory-qos/trace.jsonl")))
	require.NoError(t, err)
	require.Len(t, rows, 120)

	var lowered, raised int
	var last int64 = 1 << 62
	cooldown := 3 * time.Second
	var lastChange time.Time
	for _, r := range rows {
		if len(r.Entry.Applied) == 0 {
			continue
		}
		assert.True(t, lastChange.IsZero() || r.Tick.Time.Sub(lastChange) >= cooldown, "changes at least 3s apart")
		lastChange = r.Tick.Time
		e := r.Targets["telemetry"]["bandwidth"].(bandwidth.Value).Egress.Value()
		if e < last {
			lowered++
		} else {
			raised++
		}
		last = e
		assert.LessOrEqual(t, r.Targets["video"]["bandwidth"].(bandwidth.Value).Egress.Value(), int64(500_000_000), "video's own bound")
	}
	assert.GreaterOrEqual(t, lowered, 3, "high jitter lowers egress step by step")
	assert.GreaterOrEqual(t, raised, 2, "low jitter raises it again")
	// State carried from tick to tick: the ewma lags the trace.
	assert.Contains(t, string(loop.Status.State.Raw), `"ewma":0.4`)
	assert.Len(t, loop.Status.History, 20, "history bounded as in the controller")
}

func TestReplayOfAReactiveLoopWithItsSupervisor(t *testing.T) {
	scaling, err := ReadLoop(filepath.Join(traces, "factory-scaling/scaling.yaml"))
	require.NoError(t, err)
	priorities, err := ReadLoop(filepath.Join(traces, "factory-scaling/priorities.yaml"))
	require.NoError(t, err)
	// Given supervisor first: the replay orders them.
	rows, err := Run(context.Background(), registry(t), []*v1alpha1.ControlLoop{priorities, scaling},
		readTrace(t, filepath.Join(traces, "factory-scaling/trace.jsonl")))
	require.NoError(t, err)

	var story []string
	for _, r := range rows {
		switch {
		case r.Loop == "factory-scaling" && len(r.Entry.Applied) == 1:
			story = append(story, r.Entry.Actions[0].Metric)
		case r.Loop == "factory-priorities" && r.Entry.Params != nil:
			story = append(story, "rewrite "+string(r.Entry.Params.Raw))
		}
	}
	require.GreaterOrEqual(t, len(story), 7)
	assert.Equal(t, []string{"cpu", "cpu", "cpu", "cpu", "cpu", `rewrite {"priorities":["memory","cpu"]}`, "memory"}, story[:7])
	require.NotNil(t, scaling.Status.OverridesBy)
	assert.Equal(t, "factory-priorities", scaling.Status.OverridesBy.Loop)
	assert.Equal(t, "deliberative@deliberative-5", scaling.Status.OverridesBy.Revision)
}

func TestReplayRefusesBadInput(t *testing.T) {
	for body, want := range map[string]string{
		"":                "no ticks",
		`{"metrics": {}}`: "a tick needs a time",
		`{"time": "2026-11-21T10:00:00Z", "x": 1}`: `unknown field "x"`,
		`{"time": "2026-11-21T10:00:01Z", "metrics": {}}` + "\n" + `{"time": "2026-11-21T10:00:00Z", "metrics": {}}`: "trace.jsonl:2: time 2026-11-21T10:00:00Z is not after",
		`{"time": "2026-11-21T10:00:00Z", "metrics": {"cpu": "high"}}`:                                               "a metric is a number or an object",
		"# a comment\n\n" + `{"metrics": {}}`:                                                                        "trace.jsonl:3: a tick needs a time",
	} {
		_, err := ReadTrace(strings.NewReader(body), "trace.jsonl")
		assert.ErrorContains(t, err, want, body)
	}

	priorities, err := ReadLoop(filepath.Join(traces, "factory-scaling/priorities.yaml"))
	require.NoError(t, err)
	_, err = Run(context.Background(), registry(t), []*v1alpha1.ControlLoop{priorities}, readTrace(t, filepath.Join(traces, "factory-scaling/trace.jsonl")))
	assert.ErrorContains(t, err, "factory-priorities supervises factory-scaling, which is not in the replay")

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "l.yaml"), []byte("kind: ControlLoop\nmetadata: {name: x}\nspec: {policy: {bundle: b, decision: d}, intervall: 1s}\n"), 0o644))
	_, err = ReadLoop(filepath.Join(dir, "l.yaml"))
	assert.ErrorContains(t, err, `unknown field "intervall"`)
}

func TestReadLoopAppliesTheCRDDefaults(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "l.yaml")
	require.NoError(t, os.WriteFile(p, []byte("kind: ControlLoop\nmetadata: {name: x}\nspec:\n  policy: {bundle: b, decision: d}\n  safety: {cooldown: 0s}\n"), 0o644))
	l, err := ReadLoop(p)
	require.NoError(t, err)
	assert.Equal(t, v1alpha1.Reactive, l.Spec.Kind)
	assert.Equal(t, v1alpha1.Running, l.Spec.State)
	assert.Equal(t, time.Second, l.Spec.Interval.Duration)
	assert.Equal(t, time.Duration(0), l.Spec.Safety.Cooldown.Duration, "an explicit 0s stays")
	assert.Equal(t, 15*time.Second, l.Spec.Safety.StaleAfter.Duration)
	assert.Equal(t, int32(5), l.Spec.Safety.MaxActions)
	assert.Equal(t, "default", l.Namespace)
}

// The Orange/WUT closed-loop demo, its samples as shipped: a report every 3 s
// that then ages. With act_on: new each report is one pass (one change), and
// the deliberative loop's per-resource lists fill with the reports' changes;
// the same loop without act_on changes the analytics tier at every tick.
func TestReplayOfTheOrangeDemo(t *testing.T) {
	replay := func(actOnNew bool) (changes []string, rewrite int64) {
		scaling, err := ReadLoop("../../config/samples/orange-scaling.yaml")
		require.NoError(t, err)
		priorities, err := ReadLoop("../../config/samples/orange-priorities.yaml")
		require.NoError(t, err)
		require.Contains(t, string(scaling.Spec.Policy.Params.Raw), `"act_on":"new"`)
		if !actOnNew {
			scaling.Spec.Policy.Params.Raw = []byte(strings.Replace(string(scaling.Spec.Policy.Params.Raw), `"act_on":"new",`, "", 1))
		}
		rows, err := Run(context.Background(), registry(t), []*v1alpha1.ControlLoop{scaling, priorities},
			readTrace(t, filepath.Join(traces, "orange/trace.jsonl")))
		require.NoError(t, err)
		for _, r := range rows {
			switch {
			case r.Loop == "orange-scaling" && len(r.Entry.Applied) == 1:
				changes = append(changes, r.Entry.Applied[0].Metric)
			case r.Loop == "orange-priorities" && r.Entry.Params != nil && rewrite == 0:
				rewrite = r.Entry.Tick
				assert.JSONEq(t, `{"priorities":["memory","cpu"]}`, string(r.Entry.Params.Raw))
			}
		}
		return changes, rewrite
	}

	changes, rewrite := replay(true)
	// 16 reports, 15 of them with a shortage: one change each, the first by
	// rank; cpu's tenth change (tick 31) raises memory.
	assert.Equal(t, []string{"cpu", "cpu", "memory", "cpu", "cpu", "cpu", "cpu", "cpu", "cpu", "cpu", "cpu", "cpu", "memory", "memory", "memory"}, changes)
	assert.Equal(t, int64(31), rewrite)

	changes, rewrite = replay(false)
	assert.Len(t, changes, 45, "every tick of the 15 reports in violation changes the target")
	assert.Equal(t, int64(13), rewrite, "ten cpu changes from four reports")
}
