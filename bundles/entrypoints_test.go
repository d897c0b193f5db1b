package bundles

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// entrypointBundle is a bundle at revision rev whose manifest carries
// metadata (a JSON object, or "" for none), with the rules of rego.
func entrypointBundle(t *testing.T, rev, metadata, rego string) string {
	t.Helper()
	manifest := `{"revision": "` + rev + `", "roots": ["t"]`
	if metadata != "" {
		manifest += `, "metadata": ` + metadata
	}
	return writeBundle(t, map[string]string{".manifest": manifest + "}", "t.rego": rego})
}

const entrypointRego = `package t

decision := {"actions": []}

helper := 1

# METADATA
# entrypoint: true
annotated := {"actions": []}
`

func TestEntrypoints(t *testing.T) {
	ctx := context.Background()
	rev, err := Load(ctx, entrypointBundle(t, "1", `{"entrypoints": ["t/decision"]}`, entrypointRego))
	if err != nil {
		t.Fatal(err)
	}
	if got := rev.Entrypoints(); len(got) != 2 || got[0] != "t/annotated" || got[1] != "t/decision" {
		t.Fatalf("entrypoints = %v, want the manifest's and the annotated rule", got)
	}
	for _, d := range []string{"t/decision", "data.t.decision", "t/annotated"} {
		if err := rev.CheckEntrypoint(d); err != nil {
			t.Errorf("%s: %v", d, err)
		}
	}
	err = rev.CheckEntrypoint("t/helper")
	var not *NotEntrypointError
	if !errors.As(err, &not) || err.Error() != "decision t/helper is not an entrypoint of "+rev.String()+" (its entrypoints: t/annotated, t/decision)" {
		t.Fatalf("helper: %v", err)
	}

	// A bundle that declares none: any rule may be decided, as before.
	legacy, err := Load(ctx, entrypointBundle(t, "1", "", "package t\n\nhelper := 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(legacy.Entrypoints()) != 0 || legacy.CheckEntrypoint("t/helper") != nil {
		t.Fatalf("a bundle without entrypoints restricts decisions: %v", legacy.Entrypoints())
	}

	// A declaration that is not a list of paths is a one-line load error.
	for metadata, want := range map[string]string{
		`{"entrypoints": "t/decision"}`: `manifest metadata.entrypoints: want a list of decision paths like "governor/reactive/decision", got string`,
		`{"entrypoints": [3]}`:          "manifest metadata.entrypoints: want decision paths (strings), got 3",
		`{"entrypoints": ["t/no-pe"]}`:  `manifest metadata.entrypoints: decision t/no-pe: "no-pe" is not a valid path segment`,
	} {
		_, err := Load(ctx, entrypointBundle(t, "1", metadata, entrypointRego))
		var le *LoadError
		if !errors.As(err, &le) || !strings.Contains(err.Error(), want) {
			t.Errorf("metadata %s: got %v, want %q", metadata, err, want)
		}
	}
}

// TestGateEntrypoints: a bundle that declares entrypoints is gated on them,
// not on the decision paths loops name: a loop naming a helper rule the
// next revision drops holds nothing back, and a declared entrypoint that
// no rule defines is refused.
func TestGateEntrypoints(t *testing.T) {
	ctx := context.Background()
	first, err := Load(ctx, entrypointBundle(t, "1", `{"entrypoints": ["t/decision"]}`, entrypointRego))
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(first)
	listed := 0
	hooks := Hooks{Decisions: func(context.Context, string) ([]string, error) {
		listed++
		return []string{"t/decision", "t/helper"}, nil
	}}
	f := NewFollower(&Source{Name: "b", URL: "test"}, e, hooks)
	gate := func(rego, metadata string) Status {
		t.Helper()
		b, err := readBundle(entrypointBundle(t, "next", metadata, rego), "b", "test", nil, DefaultMaxBundleFileBytes)
		if err != nil {
			t.Fatal(err)
		}
		f.gate(ctx, time.Now(), "", b)
		return f.Status()
	}

	// The helper is gone: the revision goes live all the same.
	st := gate("package t\n\ndecision := {\"actions\": []}\n", `{"entrypoints": ["t/decision"]}`)
	if st.LastError != nil || e.Active().Revision() != "next" || listed != 0 {
		t.Fatalf("revision without the helper: %v (active %s, loops listed %d times)", st.LastError, e.Active().Revision(), listed)
	}

	// An entrypoint it declares but does not define: refused at prepare.
	st = gate("package t\n\nother := 1\n", `{"entrypoints": ["t/decision"]}`)
	var ge *GateError
	if !errors.As(st.LastError, &ge) || ge.Step != StepPrepare || !strings.Contains(ge.Error(), "declared entrypoint: decision t/decision is undefined") {
		t.Fatalf("undefined entrypoint: %v", st.LastError)
	}

	// Without entrypoints, the loops' paths the active revision serves are
	// prepared, as before: dropping the helper is refused.
	legacy, err := Load(ctx, entrypointBundle(t, "1", "", entrypointRego))
	if err != nil {
		t.Fatal(err)
	}
	e = NewEngine(legacy)
	f = NewFollower(&Source{Name: "b", URL: "test"}, e, hooks)
	st = gate("package t\n\ndecision := {\"actions\": []}\n", "")
	if !errors.As(st.LastError, &ge) || ge.Step != StepPrepare || listed != 1 {
		t.Fatalf("legacy bundle dropping a rule loops use: %v (listed %d)", st.LastError, listed)
	}
}

// TestShippedEntrypoints: each shipped bundle declares its decision as its
// one entrypoint.
func TestShippedEntrypoints(t *testing.T) {
	for _, name := range []string{"reactive", "bandwidth", "deliberative"} {
		rev, err := Load(context.Background(), filepath.Join("..", "policies", name))
		if err != nil {
			t.Fatal(err)
		}
		if got := rev.Entrypoints(); len(got) != 1 || got[0] != "governor/"+name+"/decision" {
			t.Errorf("%s declares %v", name, got)
		}
		// governor bundle build keeps the declaration in the tarball.
		built, err := Build(context.Background(), BuildOptions{Dir: filepath.Join("..", "policies", name), Output: filepath.Join(t.TempDir(), name+".tar.gz")})
		if err != nil {
			t.Fatal(err)
		}
		if got := built.Entrypoints(); len(got) != 1 || got[0] != "governor/"+name+"/decision" {
			t.Errorf("%s built declares %v", name, got)
		}
	}
}

// A bundle directory whose declared entrypoint no rule defines is refused
// at start, as the gate refuses such a revision.
func TestAddDirChecksEntrypoints(t *testing.T) {
	dir := t.TempDir()
	src := entrypointBundle(t, "1", `{"entrypoints": ["t/decison"]}`, entrypointRego)
	if err := os.CopyFS(filepath.Join(dir, "b"), os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	err := NewRegistry().AddDir(context.Background(), dir)
	if err == nil || err.Error() != "bundle b: declared entrypoint: decision t/decison is undefined in b@1: no rule defines it: did you mean t/decision?" {
		t.Fatalf("got %v", err)
	}
}
