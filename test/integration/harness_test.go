//go:build integration

// Package integration runs the controller against a real kube-apiserver and
// etcd (envtest, binaries built by `make envtest-assets`).
package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zapcore"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/bundles"
	"governor.dev/governor/controller"
	"governor.dev/governor/test/cluster"
)

// repo is the repository root, relative to this package.
const repo = "../.."

// The controller's own log: errors only, to stderr, where go test shows them.
func init() {
	ctrl.SetLogger(zap.New(zap.Level(zapcore.ErrorLevel), zap.WriteTo(os.Stderr)))
}

// testBundles are bundles only tests use, beside the shipped ones.
var testBundles = map[string]map[string]string{
	// echo decides whatever its params say: the test picks the decision,
	// and the real engine, contract and guard judge it.
	"echo": {
		".manifest": `{"revision": "echo-1", "roots": ["test/echo"]}`,
		"echo.rego": "package test.echo\n\ndecision := input.params.decision\n",
	},
	// newness tells what it sees of the metric load: whether it is new since
	// the previous tick, and its value.
	"newness": {
		".manifest": `{"revision": "newness-1", "roots": ["test/newness"]}`,
		"newness.rego": `package test.newness

decision := {"events": [sprintf("load new=%v value=%v", [input.metrics.load.new, input.metrics.load.value])]}
`,
	},
	// targets tells what it sees of its targets' replicas, cpu request
	// (container app) and egress bandwidth.
	"targets": {
		".manifest": `{"revision": "targets-1", "roots": ["test/targets"]}`,
		"targets.rego": `package test.targets

decision := {"events": [sprintf("replicas=%v cpu=%v egress=%v", [t.replicas, t.resources.app.cpu_millis.requests, object.get(t, ["bandwidth", "egress"], "none")]) | some t in input.targets]}
`,
	},
	// ticker sets a new egress bandwidth every tick, (1000 + tick) M, so a
	// watcher can tell which tick wrote what it sees.
	"ticker": {
		".manifest": `{"revision": "ticker-1", "roots": ["test/ticker"]}`,
		"ticker.rego": `package test.ticker

decision := {"actions": [{"target": "t", "set": {"bandwidth": {"egress": sprintf("%dM", [1000 + input.tick])}}}]}
`,
	},
}

var (
	buildOnce sync.Once
	binPath   string
	binErr    error
)

// TestMain removes the binary governorBinary built.
func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// governorBinary builds cmd/governor once per test binary and returns its path.
func governorBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "governor-integration-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "governor")
		build := exec.Command("go", "build", "-o", binPath, "./cmd/governor")
		build.Dir = repo
		if out, err := build.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("building governor: %w: %s", err, out)
		}
	})
	require.NoError(t, binErr)
	return binPath
}

// registry loads the shipped policies and the test bundles.
func registry(t testing.TB) *bundles.Registry {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"reactive", "bandwidth", "deliberative"} {
		require.NoError(t, os.CopyFS(filepath.Join(dir, name), os.DirFS(filepath.Join(repo, "policies", name))))
	}
	for name, files := range testBundles {
		for file, body := range files {
			p := filepath.Join(dir, name, file)
			require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
			require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
		}
	}
	r, err := bundles.LoadRegistry(context.Background(), dir)
	require.NoError(t, err)
	return r
}

// env is a real API server with the CRD installed, a direct (uncached)
// client to it, and the bundles managers started on it will know.
type env struct {
	api     *cluster.APIServer
	c       client.Client
	bundles *bundles.Registry
}

func newEnv(t testing.TB) *env {
	t.Helper()
	api := cluster.StartAPIServer(t, filepath.Join(repo, "config/crd/bases"))
	c, err := client.New(api.Config, client.Options{Scheme: controller.Scheme()})
	require.NoError(t, err)
	return &env{api: api, c: c, bundles: registry(t)}
}

// startManager runs a controller manager until the returned stop is called
// (or the test ends).
func (e *env) startManager(t testing.TB) (stop func()) {
	t.Helper()
	return e.startManagerWith(t, controller.Options{})
}

// startManagerWith runs a controller manager with options of the test's
// (bundles and listen addresses are the env's).
func (e *env) startManagerWith(t testing.TB, opts controller.Options) (stop func()) {
	t.Helper()
	_, stop = e.runManager(t, opts)
	return stop
}

// runManager is startManagerWith, and the manager it runs.
func (e *env) runManager(t testing.TB, opts controller.Options) (mgr ctrl.Manager, stop func()) {
	t.Helper()
	opts.Bundles, opts.MetricsAddr, opts.ProbeAddr = e.bundles, "0", "0"
	mgr, err := controller.NewManager(e.api.Config, opts)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	var stopped atomic.Bool
	stop = func() {
		if stopped.Swap(true) {
			return
		}
		cancel()
		require.NoError(t, <-done)
	}
	t.Cleanup(stop)
	return mgr, stop
}

var nsCount atomic.Int64

// namespace creates a namespace of the test's own.
func (e *env) namespace(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("it-%d", nsCount.Add(1))
	require.NoError(t, e.c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}))
	return name
}

// deployment creates a Deployment with one container "app" (requests cpu
// 250m, memory 128Mi; limit memory 256Mi).
func (e *env) deployment(t testing.TB, ns, name string, replicas int32) *appsv1.Deployment {
	t.Helper()
	labels := map[string]string{"app": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: "registry.example/app:1",
					Resources: corev1.ResourceRequirements{
						Requests: corev1.ResourceList{"cpu": resource.MustParse("250m"), "memory": resource.MustParse("128Mi")},
						Limits:   corev1.ResourceList{"memory": resource.MustParse("256Mi")},
					},
				}}},
			},
		},
	}
	require.NoError(t, e.c.Create(context.Background(), d))
	return d
}

// pod creates a Pod with the labels of a deployment made by deployment():
// the bare API server runs no ReplicaSet controller.
func (e *env) pod(t testing.TB, ns, name, app string) {
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": app}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
	}
	require.NoError(t, e.c.Create(context.Background(), p))
}

// loop creates a ControlLoop.
func (e *env) loop(t testing.TB, ns, name string, spec v1alpha1.ControlLoopSpec) {
	t.Helper()
	require.NoError(t, e.c.Create(context.Background(), &v1alpha1.ControlLoop{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec,
	}))
}

// get reads a ControlLoop.
func (e *env) get(t testing.TB, ns, name string) *v1alpha1.ControlLoop {
	t.Helper()
	var l v1alpha1.ControlLoop
	require.NoError(t, e.c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &l))
	return &l
}

// update changes an object by read-modify-write, reading again on a
// conflict: the controller writes the loops' status, and the actuators their
// targets, meanwhile.
func (e *env) update(t testing.TB, obj client.Object, change func()) {
	t.Helper()
	require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := e.c.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		change()
		return e.c.Update(context.Background(), obj)
	}))
}

// observe reports a metric to a loop through its status, as a managed
// system would.
func (e *env) observe(t testing.TB, ns, name, metric, value string, at time.Time) {
	t.Helper()
	patch := map[string]any{"status": map[string]any{"observations": map[string]any{
		metric: map[string]any{"value": value, "time": at.UTC().Format("2006-01-02T15:04:05.000000Z07:00")},
	}}}
	raw, err := json.Marshal(patch)
	require.NoError(t, err)
	l := &v1alpha1.ControlLoop{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	require.NoError(t, e.c.Status().Patch(context.Background(), l, client.RawPatch(types.MergePatchType, raw)))
}

// events are the Events about a loop.
func (e *env) events(t testing.TB, ns, loop string) []eventsv1.Event {
	t.Helper()
	var list eventsv1.EventList
	require.NoError(t, e.c.List(context.Background(), &list, client.InNamespace(ns)))
	var out []eventsv1.Event
	for _, ev := range list.Items {
		if ev.Regarding.Kind == "ControlLoop" && ev.Regarding.Name == loop {
			out = append(out, ev)
		}
	}
	return out
}

// eventually polls cond every 50ms until it holds or timeout passes, then
// fails with cond's last word.
func eventually(t testing.TB, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var why string
	for {
		var ok bool
		if ok, why = cond(); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", timeout, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// echoSpec is a loop on the echo bundle that makes the given decision.
func echoSpec(decision string, targets ...v1alpha1.TargetSpec) v1alpha1.ControlLoopSpec {
	return v1alpha1.ControlLoopSpec{
		Kind:     v1alpha1.Reactive,
		State:    v1alpha1.Running,
		Interval: metav1.Duration{Duration: 200 * time.Millisecond},
		Policy: v1alpha1.PolicySpec{Bundle: "echo", Decision: "test/echo/decision",
			Params: &apiextensionsv1.JSON{Raw: []byte(`{"decision": ` + decision + `}`)}},
		Targets: targets,
		Safety: v1alpha1.SafetySpec{Cooldown: metav1.Duration{Duration: time.Hour},
			StaleAfter: metav1.Duration{Duration: 15 * time.Second}, MaxActions: 5},
	}
}

func deploymentTarget(name, deployment string) v1alpha1.TargetSpec {
	return v1alpha1.TargetSpec{Name: name, Ref: v1alpha1.TargetRef{Kind: "Deployment", Name: deployment}}
}

// lastEntry is the newest history entry, and a description for messages.
func lastEntry(l *v1alpha1.ControlLoop) (v1alpha1.HistoryEntry, string) {
	if len(l.Status.History) == 0 {
		return v1alpha1.HistoryEntry{}, "no history yet"
	}
	h := l.Status.History[len(l.Status.History)-1]
	raw, _ := json.Marshal(h)
	return h, string(raw)
}

func joined(s []string) string { return strings.Join(s, "\n") }
