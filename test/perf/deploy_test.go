//go:build integration && linux

package perf

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/test/cluster"
	"governor.dev/governor/test/deployed"
)

// repo is the repository root, relative to this package.
const repo = "../.."

// deployment is a local cluster with config/default applied, and bin/governor
// to run as deployed (test/deployed).
type deployment struct {
	*deployed.Deployment
	// metricsToken is a token of a ServiceAccount bound to the ClusterRole
	// governor-metrics-reader: the benchmarks scrape governor's /metrics as
	// Prometheus would, over HTTPS.
	metricsToken string
}

// deploy starts the local cluster and applies config/default to it as a
// user would (kubectl apply --server-side -k config/default).
//
// PERF_MEMORY_LIMIT replaces the manager container's memory limit (e.g.
// 1Gi), which bounds governor's heap at 80 % of it as in the container.
// PERF_GOVERNOR_ENV adds variables to governor's environment only (e.g.
// GOGC=200 GOMAXPROCS=4), as the container's env would.
func deploy(b *testing.B) *deployment {
	b.Helper()
	d := deployed.Deploy(b, filepath.Join(repo, "bin", "governor"), cluster.Options{})
	if limit := os.Getenv("PERF_MEMORY_LIMIT"); limit != "" {
		q, err := resource.ParseQuantity(limit)
		if err != nil {
			b.Fatalf("PERF_MEMORY_LIMIT=%q: %v", limit, err)
		}
		d.MemoryLimit = q.Value()
	}
	d.Env = append(d.Env, strings.Fields(os.Getenv("PERF_GOVERNOR_ENV"))...)
	return &deployment{Deployment: d, metricsToken: d.MetricsToken(b)}
}

// governor is bin/governor run by a benchmark, with its
// --status-flush-interval.
type governor struct {
	*deployed.Governor
	flush time.Duration
}

// start runs bin/governor as deployed (deployed.Start) and waits until it
// leads. extra flags come last (a later flag wins): benchmarks that vary a
// flag say so in their names.
func (d *deployment) start(b *testing.B, extra ...string) *governor {
	b.Helper()
	g := d.Start(b, extra...)
	g.WaitRunning(b, d.Deployment)
	return &governor{Governor: g, flush: statusFlush(b, g.Args)}
}

// namespace makes a namespace with the push token Secret "reporter".
func (d *deployment) namespace(b *testing.B, name string) {
	b.Helper()
	ctx := context.Background()
	if err := d.Admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		b.Fatal(err)
	}
	if err := d.Admin.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: name, Name: "reporter"},
		StringData: map[string]string{"token": pushToken}}); err != nil {
		b.Fatal(err)
	}
}

const pushToken = "perf-token"

// workloads makes Deployments of replicas Pods each and waits until kwok
// runs all of them.
func (d *deployment) workloads(b *testing.B, ns string, names []string, replicas int32) {
	b.Helper()
	ctx := context.Background()
	labels := func(n string) map[string]string { return map[string]string{"app": n} }
	for _, n := range names {
		err := d.Admin.Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: n},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To(replicas),
				Selector: &metav1.LabelSelector{MatchLabels: labels(n)},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels(n)},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
				},
			},
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	want := len(names) * int(replicas)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var pods corev1.PodList
		if err := d.Admin.List(ctx, &pods, client.InNamespace(ns)); err != nil {
			b.Fatal(err)
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		if running == want {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d Pods running in %s after 2 minutes", running, want, ns)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
