//go:build integration && linux

package deployed

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/types"

	"governor.dev/governor/controller"
	"governor.dev/governor/shard"
	"governor.dev/governor/test/testkeys"
)

// Governor is `governor run` started by Start.
type Governor struct {
	Cmd *exec.Cmd
	// Args are its args: the manifest's, then Start's own, then extra.
	Args []string
	// Log is the file of its output.
	Log string
	// Probe, Metrics and PushAddr are its listen addresses.
	Probe, Metrics, PushAddr string
	// PushURL and PushClient reach the push endpoint: HTTPS when the
	// manifest serves it so.
	PushURL    string
	PushClient *http.Client
	// metricsURL and metricsClient reach the metrics endpoint, HTTPS unless
	// --metrics-secure=false.
	metricsURL    string
	metricsClient *http.Client

	exited     chan struct{}
	err        error // once exited is closed
	terminated bool
	termErr    error
}

// Start runs the deployment's governor binary with the manifest's args:
// the bundles are policies/ of the repository (the image's /policies,
// Dockerfile), the endpoints listen on free loopback ports, the Lease is in
// the controller's namespace, the kubeconfig is the ServiceAccount's, and
// the push endpoint's certificate is one of a CA of the test's (in place of
// the Secret the Deployment mounts). extra flags come last (a later flag
// wins). It returns at once; WaitRunning waits until it holds its Lease. The process
// is stopped when the test ends.
func (d *Deployment) Start(t testing.TB, extra ...string) *Governor {
	t.Helper()
	g := &Governor{
		Log:   filepath.Join(t.TempDir(), "governor.log"),
		Probe: FreeAddr(t), Metrics: FreeAddr(t), PushAddr: FreeAddr(t),
		exited: make(chan struct{}),
	}
	ca := testkeys.NewCA(t, "push-ca")
	cert := ca.Server(t, "push")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, cert.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, cert.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, a := range d.Args {
		name, _, _ := strings.Cut(a, "=")
		seen[name] = true
		switch name {
		case "--bundles":
			a = name + "=" + filepath.Join(d.Root, "policies")
		case "--metrics-bind-address":
			a = name + "=" + g.Metrics
		case "--health-probe-bind-address":
			a = name + "=" + g.Probe
		case "--push-tls-cert":
			a = name + "=" + certFile
		case "--push-tls-key":
			a = name + "=" + keyFile
		}
		g.Args = append(g.Args, a)
	}
	for _, name := range []string{"run", "--bundles", "--metrics-bind-address", "--health-probe-bind-address"} {
		if !seen[name] {
			t.Fatalf("config/manager/manager.yaml's args %q lack %s: update test/deployed", d.Args, name)
		}
	}
	g.Args = append(g.Args, "--push-bind-address="+g.PushAddr, "--kubeconfig="+d.Kubeconfig,
		"--leader-election-namespace="+SystemNamespace)
	g.Args = append(g.Args, extra...)
	g.clients(ca.X509)

	logFile, err := os.Create(g.Log)
	if err != nil {
		t.Fatal(err)
	}
	g.Cmd = exec.Command(d.Binary, g.Args...)
	g.Cmd.Env = append(os.Environ(), d.Env...)
	if d.MemoryLimit > 0 {
		g.Cmd.Env = append(g.Cmd.Env, fmt.Sprintf("GOMEMLIMIT=%d", d.MemoryLimit/10*8))
	}
	g.Cmd.Stdout, g.Cmd.Stderr = logFile, logFile
	// Killed with the test if it dies without stopping it (a panic, go
	// test's -timeout), as the control plane's components are.
	g.Cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := g.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s %s", d.Binary, strings.Join(g.Args, " "))
	go func() {
		g.err = g.Cmd.Wait()
		_ = logFile.Close() // its content is all written
		close(g.exited)
	}()
	t.Cleanup(func() {
		if !g.terminated {
			g.Stop(t)
		}
		if t.Failed() {
			t.Log(g.Tail())
		}
	})
	return g
}

// clients sets the URLs and clients of the push and metrics endpoints, as
// the args serve them.
func (g *Governor) clients(pushCA *x509.Certificate) {
	g.PushURL, g.PushClient = "http://"+g.PushAddr, http.DefaultClient
	if _, ok := ArgValue(g.Args, "--push-tls-cert"); ok {
		pool := x509.NewCertPool()
		pool.AddCert(pushCA)
		g.PushURL = "https://" + g.PushAddr
		g.PushClient = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	}
	g.metricsURL, g.metricsClient = "http://"+g.Metrics, &http.Client{Timeout: 30 * time.Second}
	if v, _ := ArgValue(g.Args, "--metrics-secure"); v != "false" {
		g.metricsURL = "https://" + g.Metrics
		// The certificate is self-signed, as deployed: a scraper skips
		// verification (as kubebuilder's ServiceMonitor does by default)
		// unless --metrics-cert-path gives one of a CA it knows.
		g.metricsClient.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	}
}

// Get GETs a path of the metrics endpoint with a bearer token ("" for
// none) and returns the status code and body.
func (g *Governor) Get(path, token string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, g.metricsURL+path, nil)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := g.metricsClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// WaitRunning waits until governor is ready, holds its Lease (Running)
// and its metrics endpoint listens (it makes its self-signed certificate
// first, after readiness at times).
func (g *Governor) WaitRunning(t testing.TB, d *Deployment) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		g.Check(t)
		if g.Running(d) && g.Ready() && g.listening(g.Metrics) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("governor not ready and holding its Lease after 2 minutes\n%s", g.Tail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Running tells whether governor holds the Lease it runs loops under
// (LeaseName).
func (g *Governor) Running(d *Deployment) bool {
	var lease coordinationv1.Lease
	err := d.Admin.Get(context.Background(), types.NamespacedName{Namespace: SystemNamespace, Name: g.LeaseName()}, &lease)
	return err == nil && lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity != ""
}

// LeaseName is the Lease governor runs loops under (LeaseName of its args).
func (g *Governor) LeaseName() string { return LeaseName(g.Args) }

// LeaseName is the Lease a governor of these args runs loops under, in
// SystemNamespace: its member Lease with --shards=auto (named after
// --shard-member, else the host name: there is no POD_NAME here), the
// leader Lease otherwise.
func LeaseName(args []string) string {
	if shards, _ := ArgValue(args, "--shards"); shards != "auto" {
		return controller.LeaderElectionID
	}
	member, ok := ArgValue(args, "--shard-member")
	if !ok {
		member, _ = os.Hostname()
	}
	return shard.LeasePrefix + member
}

// Ready tells whether /readyz answers 200.
func (g *Governor) Ready() bool {
	resp, err := http.Get("http://" + g.Probe + "/readyz")
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// listening tells whether addr accepts connections.
func (g *Governor) listening(addr string) bool {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// Exited is closed once the process is gone.
func (g *Governor) Exited() <-chan struct{} { return g.exited }

// Check fails the test when governor has exited.
func (g *Governor) Check(t testing.TB) {
	t.Helper()
	select {
	case <-g.exited:
		t.Fatalf("governor exited: %v\n%s", g.err, g.Tail())
	default:
	}
}

// Terminate sends SIGTERM and waits (a clean stop hands the Lease back, so
// that the next governor leads at once), killing it after 30 s. It says
// how governor ended when that was not a clean stop on this SIGTERM; a
// second call returns the first's answer.
func (g *Governor) Terminate() error {
	if g.terminated {
		return g.termErr
	}
	g.terminated = true
	select {
	case <-g.exited:
		g.termErr = errors.New("governor exited before the end (exit status 0)")
		if g.err != nil {
			g.termErr = fmt.Errorf("governor exited before the end: %w", g.err)
		}
		return g.termErr
	default:
	}
	_ = g.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.exited:
		if g.err != nil {
			g.termErr = fmt.Errorf("governor stopped with %w", g.err)
		}
	case <-time.After(30 * time.Second):
		g.termErr = fmt.Errorf("governor did not stop within 30s of SIGTERM%s", g.dumpGoroutines())
	}
	return g.termErr
}

// Kill SIGKILLs governor, as a crash or an OOM would, and waits until it
// is gone; the test's end does not stop it again.
func (g *Governor) Kill() {
	g.terminated = true
	_ = g.Cmd.Process.Kill()
	<-g.exited
}

// Stop terminates governor and fails the test unless it stopped cleanly.
func (g *Governor) Stop(t testing.TB) {
	t.Helper()
	if err := g.Terminate(); err != nil {
		t.Errorf("%v\n%s", err, g.Tail())
	}
}

// dumpGoroutines makes a governor that would not stop write its goroutines'
// stacks (SIGQUIT), kills it, and keeps its log, where they are, beyond the
// test's end: where it was stuck.
func (g *Governor) dumpGoroutines() string {
	_ = g.Cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-g.exited:
	case <-time.After(10 * time.Second):
		_ = g.Cmd.Process.Kill()
		<-g.exited
	}
	kept := filepath.Join(os.TempDir(), fmt.Sprintf("governor-stuck-%d.log", g.Cmd.Process.Pid))
	log, err := os.ReadFile(g.Log)
	if err == nil {
		err = os.WriteFile(kept, log, 0o600)
	}
	if err != nil {
		return fmt.Sprintf(" (its goroutines' stacks not kept: %v)", err)
	}
	return " (its goroutines' stacks: " + kept + ")"
}

// Output is governor's log so far.
func (g *Governor) Output() string {
	out, err := os.ReadFile(g.Log)
	if err != nil {
		return err.Error()
	}
	return string(out)
}

// Tail is the end of governor's log.
func (g *Governor) Tail() string {
	out := g.Output()
	if len(out) > 8000 {
		out = out[len(out)-8000:]
	}
	return "governor's log, end:\n" + out
}

// Push reports observations of a loop to governor's push endpoint, as a
// managed system does. A refusal for now (503: the API server did not take
// the observation in time; 429: the rate limit) wraps ErrTryAgain.
func (g *Governor) Push(ns, loop, token string, values map[string]float64) error {
	var body bytes.Buffer
	body.WriteString("{")
	first := true
	for k, v := range values {
		if !first {
			body.WriteString(",")
		}
		first = false
		fmt.Fprintf(&body, "%q:%g", k, v)
	}
	body.WriteString("}")
	req, err := http.NewRequest(http.MethodPost, g.PushURL+"/v1/loops/"+ns+"/"+loop+"/observations", &body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := g.PushClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusNoContent {
		msg, _ := io.ReadAll(resp.Body)
		err := fmt.Errorf("push to %s/%s: %s %s", ns, loop, resp.Status, msg)
		if resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusTooManyRequests {
			err = fmt.Errorf("%w: %w", ErrTryAgain, err)
		}
		return err
	}
	return nil
}

// ErrTryAgain is a push refused for now: the API server did not take the
// observation in time, or the endpoint's rate limit (429) held it.
var ErrTryAgain = errors.New("try again later")

// handedOut are the addresses FreeAddr gave: a port closed again is free
// for the kernel to give once more, and TestShards once got one port for a
// replica's metrics and its health probe (the replica failed to start).
var handedOut sync.Map

// FreeAddr is a loopback address with a port free right now, and not
// given before in this test process.
func FreeAddr(t testing.TB) string {
	t.Helper()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		_ = l.Close()
		if _, given := handedOut.LoadOrStore(addr, true); !given {
			return addr
		}
	}
}
