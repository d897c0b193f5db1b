//go:build integration

package bundles

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/bundle"

	"governor.dev/governor/test/bundleserver"
	"governor.dev/governor/test/testkeys"
)

// The follower against Debian's nginx (bundleserver.StartNginx): ETags as a
// static file server makes them, and no long polling.

var publishTime = time.Now().Add(-time.Hour)

// publish builds a bundle tarball with Build into out, with a fresh mtime
// so that nginx's ETag changes.
func publish(t *testing.T, out, rev, testRev string) {
	t.Helper()
	if _, err := Build(context.Background(), BuildOptions{Dir: testBundleDir(t, rev, testRev), Output: out}); err != nil {
		t.Fatal(err)
	}
	touch(t, out)
}

func touch(t *testing.T, out string) {
	publishTime = publishTime.Add(10 * time.Second)
	if err := os.Chtimes(out, publishTime, publishTime); err != nil {
		t.Fatal(err)
	}
}

// writeSigned writes a tarball of the bundle at dir (read, not compiled:
// it may not compile), signed with k unless k is nil, with a fresh mtime.
func writeSigned(t *testing.T, out, dir string, k *testkeys.Pair) {
	t.Helper()
	b, err := readBundle(dir, "b", dir, nil, DefaultMaxBundleFileBytes)
	if err != nil {
		t.Fatal(err)
	}
	if k != nil {
		sc := bundle.NewSigningConfig(k.Private, k.Alg, "")
		if err := b.GenerateSignature(sc, DefaultKeyID, false); err != nil {
			t.Fatal(err)
		}
	}
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if err := bundle.NewWriter(f).Write(*b); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Rename(tmp, out); err != nil {
		t.Fatal(err)
	}
	touch(t, out)
}

// TestFollowNginx runs the sequence on one engine: revision 2 goes
// live; a compile error, a failing test, a bad signature and an unsigned
// bundle are each refused at their step while revision 2 keeps deciding;
// revision 3 goes live.
func TestFollowNginx(t *testing.T) {
	key, other := testkeys.RSA(t), testkeys.RSA(t)
	root := t.TempDir()
	out := filepath.Join(root, "b.tar.gz")
	writeSigned(t, out, testBundleDir(t, "2", "2"), &key)
	src := sourceFor(t, bundleserver.StartNginx(t, root), "    signing: {keyid: governor}",
		fmt.Sprintf("keys:\n  governor:\n    algorithm: RS256\n    key: |\n%s", indent(key.Public, "      ")))
	e, log := follow(t, src)

	waitFor(t, "revision 2", log, func(s Status) bool { return s.ActiveRevision == "b@2" })
	if got := evalRev(t, e); got != "2" {
		t.Fatalf("decision on revision 2 = %s", got)
	}

	refused := func(what string, n int, step GateStep) *GateError {
		t.Helper()
		st := waitFor(t, what, log, func(s Status) bool { return s.Refusals == n })
		var ge *GateError
		if !errors.As(st.LastError, &ge) || ge.Step != step {
			t.Fatalf("%s: want a refusal at %s, got %v", what, step, st.LastError)
		}
		if st.ActiveRevision != "b@2" || evalRev(t, e) != "2" {
			t.Fatalf("%s: revision 2 must stay active: %s", what, st.ActiveRevision)
		}
		return ge
	}

	compileErr := testBundleDir(t, "4", "4")
	if err := os.WriteFile(filepath.Join(compileErr, "t.rego"), []byte("package t\n\nrev := undefined_fn(1)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	writeSigned(t, out, compileErr, &key)
	refused("compile error", 1, StepCompile)

	writeSigned(t, out, testBundleDir(t, "9", "10"), &key)
	ge := refused("failing test", 2, StepTest)
	if len(ge.FailedTests) != 1 || ge.FailedTests[0] != "data.t.test_rev" || !strings.Contains(ge.Error(), "test_rev") {
		t.Fatalf("want the refusal to name data.t.test_rev, got %v", ge)
	}

	writeSigned(t, out, testBundleDir(t, "5", "5"), &other)
	ge = refused("signature by another key", 3, StepVerify)
	var verr *VerificationError
	if !errors.As(ge, &verr) {
		t.Fatalf("want a *VerificationError inside, got %v", ge)
	}

	writeSigned(t, out, testBundleDir(t, "6", "6"), nil)
	ge = refused("unsigned bundle", 4, StepVerify)
	if !strings.Contains(ge.Error(), ".signatures.json") {
		t.Fatalf("want the unsigned refusal to say so, got %v", ge)
	}

	writeSigned(t, out, testBundleDir(t, "3", "3"), &key)
	st := waitFor(t, "revision 3", log, func(s Status) bool { return s.ActiveRevision == "b@3" })
	if st.LastError != nil || st.Activations != 2 || evalRev(t, e) != "3" {
		t.Fatalf("revision 3: %+v", st)
	}
	if got := e.Revisions(); !slices.Equal(got, []string{"3", "2"}) {
		t.Fatalf("retained revisions = %v, want [3 2]", got)
	}
}

func TestFollowETagNoReactivation(t *testing.T) {
	root := t.TempDir()
	out := filepath.Join(root, "b.tar.gz")
	publish(t, out, "2", "2")
	_, log := follow(t, sourceFor(t, bundleserver.StartNginx(t, root), "", ""))
	first := waitFor(t, "revision 2", log, func(s Status) bool { return s.ActiveRevision == "b@2" })
	// Later polls answered "not modified" must not activate again.
	waitFor(t, "later polls", log, func(s Status) bool { return s.LastDownload.After(first.LastDownload.Add(2500 * time.Millisecond)) })
	if st := log.get(); st.Activations != 1 || st.ETag == "" || st.ETag != first.ETag {
		t.Fatalf("unchanged bundle re-activated or ETag lost: %+v", st)
	}
}
