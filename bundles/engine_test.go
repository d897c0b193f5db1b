package bundles

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"governor.dev/governor/actuators/builtin"
	"governor.dev/governor/decision"
)

// writeBundle writes a bundle directory from file names and contents.
func writeBundle(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "scratch")
	for name, body := range files {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	}
	return dir
}

// labelled is a bundle whose decision says which revision made it twice,
// once from a rule and once from the bundle's data, so a decision mixing two
// revisions shows.
func labelled(t *testing.T, label string) string {
	return writeBundle(t, map[string]string{
		".manifest": fmt.Sprintf(`{"revision": %q, "roots": ["t"]}`, label),
		"p.rego": fmt.Sprintf(`package t

label := %q

decision := {"events": [label, data.t.meta.label]}
`, label),
		"t/meta/data.json": fmt.Sprintf(`{"label": %q}`, label),
	})
}

func TestLoadDirectoryAndTarball(t *testing.T) {
	ctx := context.Background()
	dir := labelled(t, "r1")
	rev, err := Load(ctx, dir)
	require.NoError(t, err)
	assert.Equal(t, "scratch@r1", rev.String())
	assert.Equal(t, "r1", rev.Revision())
	assert.Equal(t, []string{"t"}, rev.Roots())

	tarball := filepath.Join(t.TempDir(), "labelled.tar.gz")
	built, err := Build(ctx, BuildOptions{Dir: dir, Output: tarball, Revision: "r1-build"})
	require.NoError(t, err)
	assert.Equal(t, "labelled@r1-build", built.String())

	fromTar, err := Load(ctx, tarball)
	require.NoError(t, err)
	assert.Equal(t, "labelled@r1-build", fromTar.String())
	res, err := fromTar.Decide(ctx, Request{Decision: "t/decision", Input: map[string]any{}})
	require.NoError(t, err)
	assert.Equal(t, []string{"r1", "r1"}, res.Decision.Events)
	assert.Equal(t, "labelled@r1-build", res.Revision)
}

func TestLoadWithoutManifestIsUnversioned(t *testing.T) {
	rev, err := Load(context.Background(), writeBundle(t, map[string]string{"p.rego": "package t\n\ndecision := {}\n"}))
	require.NoError(t, err)
	assert.Equal(t, "scratch@unversioned", rev.String())
}

func TestLoadErrors(t *testing.T) {
	ctx := context.Background()

	_, err := Load(ctx, filepath.Join(t.TempDir(), "missing"))
	var le *LoadError
	require.ErrorAs(t, err, &le)
	assert.ErrorIs(t, err, fs.ErrNotExist)

	_, err = Load(ctx, writeBundle(t, map[string]string{"p.rego": "package t\n\ndecision := {\n"}))
	var ce *CompileError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "rego_parse_error", ce.Problems[0].Code)
	assert.Contains(t, err.Error(), "p.rego:4: rego_parse_error: unexpected eof token", "a parse error names file and line")

	dir := writeBundle(t, map[string]string{
		".manifest": `{"revision": "r1", "roots": ["t"]}`,
		"p.rego":    "package t\n\ndecision := {\"n\": x}\n\nother if {\n\tnot_a_function(1)\n}\n",
	})
	_, err = Load(ctx, dir)
	require.ErrorAs(t, err, &ce)
	require.NotEmpty(t, ce.Problems)
	p := ce.Problems[0]
	assert.Equal(t, filepath.Join(dir, "p.rego"), p.File)
	assert.Equal(t, 6, p.Line)
	assert.Contains(t, err.Error(), "p.rego:6: rego_type_error: undefined function not_a_function")

	_, err = Load(ctx, writeBundle(t, map[string]string{
		".manifest": `{"revision": "r1", "roots": ["elsewhere"]}`,
		"p.rego":    "package t\n\ndecision := {}\n",
	}))
	require.ErrorAs(t, err, &le)
	assert.Contains(t, err.Error(), "manifest roots [elsewhere] do not permit 'package t'")

	_, err = Load(ctx, writeBundle(t, map[string]string{".manifest": `{"revision": "r1"}`}))
	require.ErrorAs(t, err, &le)
	assert.Contains(t, err.Error(), "holds no Rego modules")
}

func TestDecideErrors(t *testing.T) {
	ctx := context.Background()
	rev, err := Load(ctx, writeBundle(t, map[string]string{
		".manifest": `{"revision": "r1", "roots": ["t"]}`,
		"p.rego": `package t

only_when_big := {} if input.n > 5

conflict := {"events": ["a"]} if input.n > 1

conflict := {"events": ["b"]} if input.n > 2

unknown_target := {"actions": [{"target": "db", "set": {"replicas": 1}}]}
`,
	}))
	require.NoError(t, err)
	in := map[string]any{"n": 3, "targets": map[string]any{"web": map[string]any{}}}

	_, err = rev.Decide(ctx, Request{Decision: "t/only_when_big", Input: in})
	var ude *UndefinedDecisionError
	require.ErrorAs(t, err, &ude)
	assert.Contains(t, err.Error(), "no value for this input")

	_, err = rev.Decide(ctx, Request{Decision: "t/absent", Input: in})
	require.ErrorAs(t, err, &ude)
	assert.Contains(t, err.Error(), "no rule defines it")

	_, err = rev.Decide(ctx, Request{Decision: "t/../etc", Input: in})
	require.ErrorAs(t, err, &ude)

	_, err = rev.Decide(ctx, Request{Decision: "t/conflict", Input: in})
	var ee *EvalError
	require.ErrorAs(t, err, &ee)
	assert.Contains(t, err.Error(), "conflicting values")

	_, err = rev.Decide(ctx, Request{Decision: "t/unknown_target", Input: in})
	var ide *decision.InvalidDecisionError
	require.ErrorAs(t, err, &ide)
	assert.Equal(t, "actions[0].target", ide.Problems[0].Field)

	_, err = rev.Decide(ctx, Request{Decision: "t/unknown_target", Input: in,
		Contract: &decision.Contract{Targets: map[string]bool{"db": true}, Fields: builtin.Actuators}})
	require.NoError(t, err, "an explicit contract replaces the one derived from the input")

	_, err = rev.Decide(ctx, Request{Decision: "t/only_when_big"})
	var ie *InputError
	require.ErrorAs(t, err, &ie)
}

func TestDecisionPathForms(t *testing.T) {
	for _, path := range []string{"governor/reactive/decision", "/governor/reactive/decision", "data.governor.reactive.decision", "governor.reactive.decision"} {
		ref, err := DecisionRef(path)
		require.NoError(t, err, path)
		assert.Equal(t, "data.governor.reactive.decision", ref.String(), path)
	}
	for _, path := range []string{"", "governor//decision", "governor/re-active/decision", "governor/if/decision"} {
		_, err := DecisionRef(path)
		assert.Error(t, err, path)
	}
}

func TestPrepareOncePerDecisionPath(t *testing.T) {
	ctx := context.Background()
	rev, err := Load(ctx, labelled(t, "r1"))
	require.NoError(t, err)
	for range 5 {
		_, err := rev.Decide(ctx, Request{Decision: "t/decision", Input: map[string]any{}})
		require.NoError(t, err)
		_, err = rev.Decide(ctx, Request{Decision: "data.t.decision", Input: map[string]any{}})
		require.NoError(t, err)
	}
	assert.Len(t, rev.queries, 1, "both spellings of the path share one prepared query")
}

func TestEngineSwapIsAtomicUnderConcurrentDecisions(t *testing.T) {
	ctx := context.Background()
	r1, err := Load(ctx, labelled(t, "r1"))
	require.NoError(t, err)
	r2, err := Load(ctx, labelled(t, "r2"))
	require.NoError(t, err)
	engine := NewEngine(r1)

	var stop atomic.Bool
	var decided atomic.Int64
	seen := sync.Map{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for !stop.Load() {
				res, err := engine.Decide(ctx, Request{Decision: "t/decision", Input: map[string]any{}})
				if !assert.NoError(t, err) {
					return
				}
				label := strings.TrimPrefix(res.Revision, "scratch@")
				// Rule, data and the revision reported must all agree.
				assert.Equal(t, []string{label, label}, res.Decision.Events)
				seen.Store(label, true)
				decided.Add(1)
			}
		})
	}
	for i := range 200 {
		next := r1
		if i%2 == 0 {
			next = r2
		}
		require.NoError(t, engine.Activate(ctx, next, "t/decision"))
		// More decisions than can be in flight (8) complete before the next
		// swap, so some of them started on this revision.
		for after := decided.Load() + 10; decided.Load() < after && !t.Failed(); {
			runtime.Gosched()
		}
	}
	stop.Store(true)
	wg.Wait()
	_, r1Seen := seen.Load("r1")
	_, r2Seen := seen.Load("r2")
	assert.True(t, r1Seen && r2Seen, "decisions ran on both revisions")
}

func TestActivateKeepsTheOldRevisionWhenANewOneCannotDecide(t *testing.T) {
	ctx := context.Background()
	good, err := Load(ctx, labelled(t, "good"))
	require.NoError(t, err)
	renamed, err := Load(ctx, writeBundle(t, map[string]string{
		".manifest": `{"revision": "renamed", "roots": ["t"]}`,
		"p.rego":    "package t\n\nverdict := {}\n",
	}))
	require.NoError(t, err)
	engine := NewEngine(good)

	err = engine.Activate(ctx, renamed, "t/decision")
	var ude *UndefinedDecisionError
	require.ErrorAs(t, err, &ude)
	assert.Same(t, good, engine.Active())
	res, err := engine.Decide(ctx, Request{Decision: "t/decision", Input: map[string]any{}})
	require.NoError(t, err)
	assert.Equal(t, "scratch@good", res.Revision)
}
