//go:build integration

package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/controller"
)

// counter counts its ticks in its state; writer, a Deliberative loop, counts
// its own and writes the count into counter's overrides at every tick.
var stateBundles = map[string]map[string]string{
	"counter": {
		".manifest":    `{"revision": "counter-1", "roots": ["test/counter"]}`,
		"counter.rego": "package test.counter\n\ndecision := {\"state\": {\"n\": object.get(input.state, \"n\", 0) + 1}}\n",
	},
	"writer": {
		".manifest":   `{"revision": "writer-1", "roots": ["test/writer"]}`,
		"writer.rego": "package test.writer\n\nn := object.get(input.state, \"n\", 0) + 1\n\ndecision := {\"state\": {\"n\": n}, \"params\": {\"seq\": n}}\n",
	},
}

// loggedDecision is what a decision log line says of a loop's decision.
type loggedDecision struct {
	Msg    string `json:"msg"`
	Custom struct {
		Loop string `json:"loop"`
	} `json:"custom"`
	Input struct {
		State struct {
			N int64 `json:"n"`
		} `json:"state"`
	} `json:"input"`
	Result struct {
		State struct {
			N int64 `json:"n"`
		} `json:"state"`
	} `json:"result"`
}

// decided is what one governor process decided for a loop, from its
// console decision log: the state it started from, the last it reached.
type decided struct{ from, to int64 }

func decisionsOf(t *testing.T, log []byte) map[string]decided {
	t.Helper()
	out := map[string]decided{}
	sc := bufio.NewScanner(bytes.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var d loggedDecision
		if json.Unmarshal(sc.Bytes(), &d) != nil || d.Msg != "Decision Log" {
			continue // the controller's own log, or a line cut by the kill
		}
		got, seen := out[d.Custom.Loop]
		if !seen {
			got.from = d.Input.State.N
		}
		got.to = max(got.to, d.Result.State.N)
		out[d.Custom.Loop] = got
	}
	return out
}

// TestStateAndOverridesSurviveSIGKILL kills the real binary at random
// moments, 30 times, with the manifest's --status-flush-interval (1s), and
// checks what each restart goes on from, against the decisions the killed
// process made (its console decision log): a loop's policy state loses at
// most the ticks of two flush intervals (quiet ticks wait for one: at most
// flush/interval of them, and the one being written; and since status
// writes are off the ticks' path, the ticks made while that write waited or
// was in flight, allowed here a second flush interval); a loop that acts at
// every tick (writer, on counter's overrides) loses at most the tick that
// was acting; as the API server shows them (a watch), a state never goes
// back, each write carries its own tick's state (state.n = tick), and an
// override, once written, is never lost: never removed, never replaced but
// by a later write.
func TestStateAndOverridesSurviveSIGKILL(t *testing.T) {
	const (
		kills    = 30
		interval = 100 * time.Millisecond
		flush    = time.Second // config/manager's --status-flush-interval
	)
	e := newEnv(t)
	ctx := context.Background()
	ns := e.namespace(t)
	dir := t.TempDir()
	for name, files := range stateBundles {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "bundles", name), 0o755))
		for file, body := range files {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "bundles", name, file), []byte(body), 0o644))
		}
	}
	opaConfig := filepath.Join(dir, "opa.yaml")
	require.NoError(t, os.WriteFile(opaConfig, []byte("decision_logs: {console: true}\n"), 0o644))

	counter := echoSpec(`{}`)
	counter.Policy.Bundle, counter.Policy.Decision, counter.Policy.Params = "counter", "test/counter/decision", nil
	counter.Policy.Overridable = []string{"seq"}
	counter.Policy.Timeout = &metav1.Duration{Duration: 10 * time.Second} // a slow tick is no lost state
	counter.Interval = metav1.Duration{Duration: interval}
	writer := counter
	writer.Kind, writer.Supervises = v1alpha1.Deliberative, "counter"
	writer.Policy.Bundle, writer.Policy.Decision, writer.Policy.Overridable = "writer", "test/writer/decision", nil
	writer.Interval = metav1.Duration{Duration: 2 * interval}
	e.loop(t, ns, "counter", counter)
	e.loop(t, ns, "writer", writer)

	// Every status the API server holds, as a watch sees it.
	wc, err := client.NewWithWatch(e.api.Config, client.Options{Scheme: controller.Scheme()})
	require.NoError(t, err)
	w, err := wc.Watch(ctx, &v1alpha1.ControlLoopList{}, client.InNamespace(ns))
	require.NoError(t, err)
	defer w.Stop()
	var mu sync.Mutex
	statuses := map[string][]v1alpha1.ControlLoopStatus{}
	go func() {
		for ev := range w.ResultChan() {
			if l, ok := ev.Object.(*v1alpha1.ControlLoop); ok && ev.Type == watch.Modified {
				mu.Lock()
				statuses[l.Name] = append(statuses[l.Name], l.Status)
				mu.Unlock()
			}
		}
	}()

	rig := newCrashRig(t, e, "--bundles", filepath.Join(dir, "bundles"), "--opa-config", opaConfig,
		"--status-flush-interval", flush.String())
	for range kills {
		// Long enough, now and then, for quiet ticks to wait for a flush.
		rig.run(t, func() { time.Sleep(time.Second + rig.upTo(3*time.Second)) })
	}
	rig.run(t, func() { time.Sleep(3 * time.Second) })
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the last governor run's output:\n%s", rig.runs[len(rig.runs)-1])
		}
	})

	// What each restart went on from, against what the killed process had
	// decided.
	bound := map[string]int64{ns + "/counter": 2*int64(flush/interval) + 1, ns + "/writer": 1}
	worst := map[string]int64{}
	last := map[string]int64{}
	for i, out := range rig.runs {
		for loop, d := range decisionsOf(t, out) {
			if prev, ok := last[loop]; ok {
				lost := prev - d.from
				assert.GreaterOrEqual(t, lost, int64(0), "run %d: %s went on from %d, beyond the %d decided before", i, loop, d.from, prev)
				assert.LessOrEqual(t, lost, bound[loop], "run %d: %s went on from %d, %d ticks behind the %d decided before its kill", i, loop, d.from, lost, prev)
				worst[loop] = max(worst[loop], lost)
			}
			last[loop] = max(last[loop], d.to)
		}
	}
	require.Len(t, worst, 2, "both loops decided across restarts")
	t.Logf("ticks of state lost at a restart, at most: counter %d (bound %d), writer %d (bound %d)",
		worst[ns+"/counter"], bound[ns+"/counter"], worst[ns+"/writer"], bound[ns+"/writer"])

	mu.Lock()
	defer mu.Unlock()
	for name, sts := range statuses {
		var n int64
		for _, st := range sts {
			var state struct{ N int64 }
			if st.State != nil {
				require.NoError(t, json.Unmarshal(st.State.Raw, &state))
			}
			assert.GreaterOrEqual(t, state.N, n, "%s: the state went back from %d to %d", name, n, state.N)
			assert.Equal(t, st.Tick, state.N, "%s: tick %d written with the state of another", name, st.Tick)
			n = state.N
		}
	}
	var seq int64
	var by time.Time
	for _, st := range statuses["counter"] {
		if seq == 0 && st.Overrides == nil {
			continue // before the first
		}
		require.NotNil(t, st.Overrides, "the overrides were removed")
		var o struct{ Seq int64 }
		require.NoError(t, json.Unmarshal(st.Overrides.Raw, &o))
		at := st.OverridesBy.Time.Time
		assert.False(t, at.Before(by), "overrides of %s replaced by older ones of %s", by, at)
		if at.Equal(by) {
			assert.Equal(t, seq, o.Seq, "overrides changed without a write")
		}
		seq, by = o.Seq, at
	}
	assert.Positive(t, seq, "the writer wrote overrides")
	assert.GreaterOrEqual(t, len(statuses["counter"]), kills, "counter's statuses seen")
}
