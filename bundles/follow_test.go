package bundles

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/bundle"
)

// startNginx serves root on a free loopback port with Debian's nginx and
// returns its base URL.
func startNginx(t *testing.T, root string) string {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		for _, p := range []string{"/usr/sbin/nginx"} {
			if _, e := os.Stat(p); e == nil {
				bin = p
			}
		}
		if bin == "" {
			t.Fatal("nginx not found: apt-get install -y nginx")
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	conf := fmt.Sprintf(`daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  server { listen %[2]s; root %[3]s; etag on; }
}
`, dir, addr, root)
	cfg := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", cfg, "-p", dir)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return "http://" + addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx did not listen on %s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testBundleDir writes a bundle whose rule t.rev is rev and whose test
// expects testRev.
func testBundleDir(t *testing.T, rev, testRev string) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		".manifest":   `{"revision":"` + rev + `","roots":["t"]}`,
		"t.rego":      "package t\n\nrev := " + rev + "\n",
		"t_test.rego": "package t\n\ntest_rev if rev == " + testRev + "\n",
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

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

// publishCompileError writes, with OPA's bundle writer, a tarball that
// parses but does not compile (Build would refuse it).
func publishCompileError(t *testing.T, out string) {
	t.Helper()
	roots := []string{"t"}
	b := bundle.Bundle{
		Manifest: bundle.Manifest{Revision: "bad-compile", Roots: &roots},
		Modules:  []bundle.ModuleFile{{Path: "/t.rego", URL: "/t.rego", Raw: []byte("package t\n\nrev := undefined_fn(1)\n")}},
		Data:     map[string]any{},
	}
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if err := bundle.NewWriter(f).Write(b); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Rename(tmp, out); err != nil {
		t.Fatal(err)
	}
	touch(t, out)
}

func evalRev(t *testing.T, e *Engine) string {
	t.Helper()
	pq, err := e.Active().Prepare(context.Background(), "t/rev")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := pq.Eval(context.Background())
	if err != nil || len(rs) == 0 {
		t.Fatalf("eval: %v %v", rs, err)
	}
	return fmt.Sprint(rs[0].Expressions[0].Value)
}

type statusLog struct {
	mu   sync.Mutex
	last Status
}

func (s *statusLog) set(st Status) { s.mu.Lock(); s.last = st; s.mu.Unlock() }
func (s *statusLog) get() Status   { s.mu.Lock(); defer s.mu.Unlock(); return s.last }

func waitFor(t *testing.T, what string, log *statusLog, ok func(Status) bool) Status {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if st := log.get(); ok(st) {
			return st
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; last status %+v", what, log.get())
	return Status{}
}

func follow(t *testing.T, url string, e *Engine, log *statusLog) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Follow(ctx, FollowOptions{
			URL: url, Path: "b.tar.gz", Name: "b", Engine: e, Decisions: []string{"t/rev"},
			Polling:  Polling{Min: 100 * time.Millisecond, Max: 500 * time.Millisecond},
			OnStatus: log.set,
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

func TestFollowNginx(t *testing.T) {
	root := t.TempDir()
	out := filepath.Join(root, "b.tar.gz")
	initial, err := Build(context.Background(), BuildOptions{Dir: testBundleDir(t, "1", "1"), Output: filepath.Join(t.TempDir(), "b.tar.gz")})
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(initial)
	publish(t, out, "2", "2")
	url := startNginx(t, root)
	log := &statusLog{}
	follow(t, url, e, log)

	waitFor(t, "revision 2", log, func(s Status) bool { return s.ActiveRevision == "b@2" })
	if got := evalRev(t, e); got != "2" {
		t.Fatalf("decision on revision 2 = %s", got)
	}

	publishCompileError(t, out)
	st := waitFor(t, "compile refusal", log, func(s Status) bool { return s.Refusals == 1 })
	if ge, ok := st.LastError.(*GateError); !ok || ge.Step != StepCompile {
		t.Fatalf("want compile refusal, got %v", st.LastError)
	}
	if st.ActiveRevision != "b@2" || evalRev(t, e) != "2" {
		t.Fatalf("revision 2 must stay active: %s", st.ActiveRevision)
	}

	publish(t, out, "9", "10")
	st = waitFor(t, "test refusal", log, func(s Status) bool { return s.Refusals == 2 })
	ge, ok := st.LastError.(*GateError)
	if !ok || ge.Step != StepTest || len(ge.FailedTests) != 1 || ge.FailedTests[0] != "data.t.test_rev" {
		t.Fatalf("want test refusal naming data.t.test_rev, got %v", st.LastError)
	}
	if !strings.Contains(st.LastError.Error(), "test_rev") {
		t.Fatalf("error does not name the test: %v", st.LastError)
	}
	if st.ActiveRevision != "b@2" || evalRev(t, e) != "2" {
		t.Fatalf("revision 2 must stay active: %s", st.ActiveRevision)
	}

	publish(t, out, "3", "3")
	st = waitFor(t, "revision 3", log, func(s Status) bool { return s.ActiveRevision == "b@3" })
	if st.LastError != nil || st.Activations != 2 || evalRev(t, e) != "3" {
		t.Fatalf("revision 3: %+v", st)
	}
}

func TestFollowETagNoReactivation(t *testing.T) {
	root := t.TempDir()
	out := filepath.Join(root, "b.tar.gz")
	initial, err := Build(context.Background(), BuildOptions{Dir: testBundleDir(t, "1", "1"), Output: filepath.Join(t.TempDir(), "b.tar.gz")})
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(initial)
	publish(t, out, "2", "2")
	url := startNginx(t, root)
	log := &statusLog{}
	follow(t, url, e, log)
	first := waitFor(t, "revision 2", log, func(s Status) bool { return s.ActiveRevision == "b@2" })
	// Three more polls answered "not modified" must not activate again.
	waitFor(t, "later polls", log, func(s Status) bool { return s.LastDownload.After(first.LastDownload.Add(2500 * time.Millisecond)) })
	if st := log.get(); st.Activations != 1 || st.ETag == "" || st.ETag != first.ETag {
		t.Fatalf("unchanged bundle re-activated or ETag lost: %+v", st)
	}
}
