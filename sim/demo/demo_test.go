//go:build integration

package demo

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"governor.dev/governor/internal/plot"
	"governor.dev/governor/test/cluster"
)

// syncBuffer is the demo's output, read while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The demo end to end, on the local cluster, for 25 seconds: the three loops tick; the
// bandwidth loop lowers the best-effort egress as the jitter is above target; the
// deliberative loop rewrites factory-scaling's priorities, and factory-scaling then remedies
// memory; the report is written; nothing is left running.
func TestDemo(t *testing.T) {
	assets := cluster.Assets(t)
	dir := filepath.Join(t.TempDir(), "report")
	var out syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	started := time.Now()
	res, err := Run(ctx, Options{
		Duration:   25 * time.Second,
		ReportDir:  dir,
		AssetsDir:  assets,
		BundlesDir: filepath.Join("..", "..", "policies"),
		Out:        &out,
	})
	t.Logf("demo output (%v):\n%s", time.Since(started).Round(time.Second), out.String())
	require.NoError(t, err)
	require.NotNil(t, res)
	assert.False(t, res.Interrupted)
	assert.GreaterOrEqual(t, res.Ended.Sub(res.Started), 25*time.Second)

	// The loops exist and tick: about 2, 1 and 0.5 ticks a second.
	for name, minTicks := range map[string]int64{LoopQoS: 30, LoopScaling: 15, LoopPriorities: 7} {
		l, ok := res.Loops[name]
		require.True(t, ok, "loop %s", name)
		assert.GreaterOrEqual(t, l.Tick, minTicks, "%s ticks", name)
		assert.Equal(t, "Running", l.Phase, name)
		assert.GreaterOrEqual(t, int64(l.Entries), l.Tick-1, "%s: every tick recorded", name)
		assert.Zero(t, l.Errors, name)
	}
	assert.Equal(t, "Deliberative", res.Loops[LoopPriorities].Kind)

	// The bandwidth loop changed the egress, down from the initial 1000M: once in 25 s, its
	// cooldown being 30 s.
	assert.GreaterOrEqual(t, res.EgressChanges, 1, "egress changes")

	// The deliberative loop rewrote the priorities: memory raised above cpu.
	require.GreaterOrEqual(t, len(res.Priorities), 2, "priorities over time: %v", res.Priorities)
	assert.Equal(t, []string{"cpu", "memory"}, res.Priorities[0])
	assert.Equal(t, []string{"memory", "cpu"}, res.Priorities[1])

	// The report.
	assert.Equal(t, filepath.Join(dir, "report.png"), res.ReportPNG)
	f, err := os.Open(res.ReportPNG)
	require.NoError(t, err)
	img, err := png.Decode(f)
	f.Close()
	require.NoError(t, err)
	w, h := plot.Size(5)
	assert.Equal(t, image.Rect(0, 0, w, h), img.Bounds())

	records := readHistory(t, res.HistoryJSONL)
	byLoop := map[string][]historyRecord{}
	for _, r := range records {
		byLoop[r.Loop] = append(byLoop[r.Loop], r)
		assert.Equal(t, Namespace, r.Namespace)
	}
	for _, name := range Loops {
		assert.Equal(t, res.Loops[name].Entries, len(byLoop[name]), "history.jsonl entries of %s", name)
		assert.NotEmpty(t, byLoop[name], name)
	}
	for i := 1; i < len(records); i++ {
		assert.False(t, records[i].Time.Before(&records[i-1].Time), "history.jsonl is in time order")
	}
	// Egress applied by factory-qos; priorities written by factory-priorities; then memory
	// remedied by factory-scaling.
	var egressApplied, paramsWritten, memoryAfter bool
	var rewrite time.Time
	for _, r := range records {
		switch r.Loop {
		case LoopQoS:
			for _, a := range r.Applied {
				egressApplied = egressApplied || strings.Contains(string(a.Set.Raw), `"egress"`)
			}
		case LoopPriorities:
			if paramsOf(r.HistoryEntry) != "" && rewrite.IsZero() {
				paramsWritten, rewrite = true, r.Time.Time
				assert.JSONEq(t, `{"priorities": ["memory", "cpu"]}`, string(r.Params.Raw))
			}
		case LoopScaling:
			for _, a := range r.Applied {
				if a.Metric == "memory" && !rewrite.IsZero() && r.Time.After(rewrite) {
					memoryAfter = true
				}
			}
		}
	}
	assert.True(t, egressApplied, "factory-qos applied an egress bandwidth")
	assert.True(t, paramsWritten, "factory-priorities wrote factory-scaling's params")
	assert.True(t, memoryAfter, "factory-scaling remedied memory after the rewrite")

	// What the terminal showed, line by line.
	text := out.String()
	for _, want := range []string{"local cluster up", "factory: robot-control", LoopQoS + "         changed  telemetry egress",
		LoopPriorities + "  changed  factory-scaling's params: priorities [memory cpu]", "priorities now [memory cpu]", "report:"} {
		assert.Contains(t, text, want)
	}

	// Nothing left running: no component with the cluster's kubeconfig in its arguments.
	kubeconfig, err := filepath.Abs(filepath.Join(res.LogDir, "admin.kubeconfig"))
	require.NoError(t, err)
	assert.Empty(t, processesWith(t, kubeconfig))
}

func readHistory(t *testing.T, path string) []historyRecord {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var out []historyRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r historyRecord
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r), sc.Text())
		out = append(out, r)
	}
	require.NoError(t, sc.Err())
	return out
}

// processesWith lists the processes whose command line contains s.
func processesWith(t *testing.T, s string) []string {
	t.Helper()
	dirs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil || len(dirs) == 0 {
		t.Log("no /proc: not checked")
		return nil
	}
	var found []string
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err == nil && strings.Contains(string(b), s) {
			found = append(found, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return found
}

func TestMissingBundle(t *testing.T) {
	assets := cluster.Assets(t)
	dir := t.TempDir()
	require.NoError(t, os.CopyFS(filepath.Join(dir, "bundles", "reactive"), os.DirFS("../../policies/reactive")))
	_, err := Run(context.Background(), Options{AssetsDir: assets, ReportDir: filepath.Join(dir, "report"), BundlesDir: filepath.Join(dir, "bundles")})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "bundle bandwidth not found")
}
