//go:build integration

package bandwidth_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"governor.dev/governor/actuators"
	"governor.dev/governor/actuators/bandwidth"
	"governor.dev/governor/actuators/internal/acttest"
	"governor.dev/governor/workload"
)

// propagation is the leader's propagation controller: every Pod is its.
func propagation(mgr manager.Manager) error {
	return bandwidth.SetupPodPropagation(mgr, bandwidth.PropagationOptions{})
}

func q(s string) *resource.Quantity {
	v := resource.MustParse(s)
	return &v
}

const (
	egressField  = `{"f:metadata":{"f:annotations":{"f:kubernetes.io/egress-bandwidth":{}}}}`
	bothFields   = `{"f:metadata":{"f:annotations":{"f:kubernetes.io/egress-bandwidth":{},"f:kubernetes.io/ingress-bandwidth":{}}}}`
	recordEgress = `{"f:metadata":{"f:annotations":{"f:governor.dev/egress-bandwidth":{}}}}`
	recordBoth   = `{"f:metadata":{"f:annotations":{"f:governor.dev/egress-bandwidth":{},"f:governor.dev/ingress-bandwidth":{}}}}`
)

// deployment is a Deployment with a ReplicaSet it controls, as the API server alone has them
// (no controller makes Pods here: the test does).
type deployment struct {
	dep *appsv1.Deployment
	rs  *appsv1.ReplicaSet
}

func newWorkload(t *testing.T, env *acttest.Env, ns, name string) deployment {
	t.Helper()
	dep := acttest.Deployment(ns, name, 2, acttest.Container("app", nil))
	dep.Annotations = map[string]string{"team": "factory"}
	env.Create(t, dep)
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-5d9c", Labels: map[string]string{"app": name},
			OwnerReferences: []metav1.OwnerReference{acttest.ControllerRef(dep, "Deployment")}},
		Spec: appsv1.ReplicaSetSpec{Selector: dep.Spec.Selector, Template: dep.Spec.Template},
	}
	env.Create(t, rs)
	return deployment{dep: dep, rs: rs}
}

// pod creates a Pod of the workload (controlled by its ReplicaSet).
func (w deployment) pod(t *testing.T, env *acttest.Env, name string) *corev1.Pod {
	t.Helper()
	p := acttest.Pod(w.dep.Namespace, name, w.dep.Name, w.rs, "ReplicaSet")
	env.Create(t, p)
	return p
}

// terminatingPod creates a Pod of the workload that is being deleted (held by a finalizer
// until the test ends).
func (w deployment) terminatingPod(t *testing.T, env *acttest.Env, name string) *corev1.Pod {
	t.Helper()
	p := acttest.Pod(w.dep.Namespace, name, w.dep.Name, w.rs, "ReplicaSet")
	p.Finalizers = []string{"test.governor.dev/hold"}
	env.Create(t, p)
	require.NoError(t, env.Client.Delete(context.Background(), p))
	t.Cleanup(func() {
		env.Get(t, p)
		p.Finalizers = nil
		_ = env.Client.Update(context.Background(), p)
	})
	env.Get(t, p)
	require.NotNil(t, p.DeletionTimestamp)
	return p
}

func rvs(t *testing.T, env *acttest.Env, objs ...client.Object) []string {
	t.Helper()
	var out []string
	for _, o := range objs {
		env.Get(t, o)
		out = append(out, o.GetResourceVersion())
	}
	return out
}

// TestBandwidth runs the bandwidth actuator and its propagation controller against a real
// kube-apiserver.
func TestBandwidth(t *testing.T) {
	env := acttest.Start(t)

	// Live: the value is recorded in governor.dev annotations of the Deployment (not its
	// template: no rollout) and every live Pod the selector selects is annotated; a Pod
	// being deleted and a Pod of another app are left alone. governor owns exactly the
	// annotations it wrote; the creator's annotation stays. A second Apply of the same
	// value, written differently, makes no write at all.
	t.Run("LiveRecordsOnTheWorkloadAndAnnotatesItsPods", func(t *testing.T) {
		ctx := acttest.Ctx(t, time.Minute)
		ns := env.Namespace(t)
		w := newWorkload(t, env, ns, "web")
		p1, p2 := w.pod(t, env, "web-1"), w.pod(t, env, "web-2")
		dying := w.terminatingPod(t, env, "web-dying")
		other := acttest.Pod(ns, "api-1", "api", nil, "")
		env.Create(t, other)
		target := workload.Ref{Kind: "Deployment", Namespace: ns, Name: "web"}
		template := w.dep.Spec.Template.DeepCopy()
		var writes acttest.Writes
		c := acttest.Counting(env.Client, &writes, nil)

		changed, err := bandwidth.Apply(ctx, c, target, q("400M"), nil, "")
		require.NoError(t, err)
		assert.True(t, changed)
		assert.EqualValues(t, 3, writes.N(), "the Deployment and two Pods")

		env.Get(t, w.dep)
		assert.Equal(t, "400M", w.dep.Annotations[bandwidth.DesiredEgressAnnotation])
		assert.Equal(t, "factory", w.dep.Annotations["team"])
		// The template is untouched: no rollout. (The generation does move: a Deployment's
		// annotations are copied to its ReplicaSets; the end-to-end test shows the same
		// ReplicaSet and Pods stay.)
		assert.Equal(t, template, &w.dep.Spec.Template, "the template is not touched")
		assert.JSONEq(t, recordEgress, acttest.Fields(w.dep, actuators.FieldManager, metav1.ManagedFieldsOperationApply, ""))
		assert.Contains(t, acttest.Fields(w.dep, acttest.Creator, metav1.ManagedFieldsOperationUpdate, ""), `"f:team"`)
		for _, p := range []*corev1.Pod{p1, p2} {
			env.Get(t, p)
			assert.Equal(t, "400M", p.Annotations[bandwidth.EgressAnnotation], p.Name)
			assert.NotContains(t, p.Annotations, bandwidth.IngressAnnotation)
			assert.JSONEq(t, egressField, acttest.Fields(p, actuators.FieldManager, metav1.ManagedFieldsOperationApply, ""), p.Name)
		}
		for _, p := range []*corev1.Pod{dying, other} {
			env.Get(t, p)
			assert.NotContains(t, p.Annotations, bandwidth.EgressAnnotation, p.Name)
		}

		before := rvs(t, env, w.dep, p1, p2)
		changed, err = bandwidth.Apply(ctx, c, target, q("400000k"), nil, bandwidth.ModeLive)
		require.NoError(t, err)
		assert.False(t, changed)
		assert.EqualValues(t, 3, writes.N(), "no write for an unchanged value")
		assert.Equal(t, before, rvs(t, env, w.dep, p1, p2))

		egress, ingress, err := bandwidth.Current(ctx, env.Client, target, bandwidth.ModeLive)
		require.NoError(t, err)
		assert.Equal(t, "400M", egress.String())
		assert.Nil(t, ingress)
		egress, ingress, err = bandwidth.Current(ctx, env.Client, target, bandwidth.ModeTemplate)
		require.NoError(t, err)
		assert.Nil(t, egress)
		assert.Nil(t, ingress)
	})

	// nil leaves a direction alone: applying ingress keeps the egress governor set before,
	// on the workload and on the Pods, and governor then owns both.
	t.Run("LiveLeavesTheOtherDirectionAlone", func(t *testing.T) {
		ctx := acttest.Ctx(t, time.Minute)
		ns := env.Namespace(t)
		w := newWorkload(t, env, ns, "web")
		p := w.pod(t, env, "web-1")
		target := workload.Ref{Kind: "Deployment", Namespace: ns, Name: "web"}
		_, err := bandwidth.Apply(ctx, env.Client, target, q("400M"), nil, bandwidth.ModeLive)
		require.NoError(t, err)
		changed, err := bandwidth.Apply(ctx, env.Client, target, nil, q("1G"), bandwidth.ModeLive)
		require.NoError(t, err)
		assert.True(t, changed)
		env.Get(t, w.dep)
		env.Get(t, p)
		assert.Equal(t, "400M", w.dep.Annotations[bandwidth.DesiredEgressAnnotation])
		assert.Equal(t, "1G", w.dep.Annotations[bandwidth.DesiredIngressAnnotation])
		assert.Equal(t, "400M", p.Annotations[bandwidth.EgressAnnotation])
		assert.Equal(t, "1G", p.Annotations[bandwidth.IngressAnnotation])
		assert.JSONEq(t, recordBoth, acttest.Fields(w.dep, actuators.FieldManager, metav1.ManagedFieldsOperationApply, ""))
		assert.JSONEq(t, bothFields, acttest.Fields(p, actuators.FieldManager, metav1.ManagedFieldsOperationApply, ""))

		changed, err = bandwidth.Apply(ctx, env.Client, target, nil, nil, bandwidth.ModeLive)
		require.NoError(t, err)
		assert.False(t, changed)
	})

	// Live on a StatefulSet: its Pods (controlled by it directly) are annotated.
	t.Run("LiveOnAStatefulSet", func(t *testing.T) {
		ctx := acttest.Ctx(t, time.Minute)
		ns := env.Namespace(t)
		sts := acttest.StatefulSet(ns, "db", 1, acttest.Container("db", nil))
		env.Create(t, sts)
		p := acttest.Pod(ns, "db-0", "db", sts, "StatefulSet")
		env.Create(t, p)
		changed, err := bandwidth.Apply(ctx, env.Client, workload.Ref{Kind: "StatefulSet", Namespace: ns, Name: "db"}, q("50M"), q("60M"), "")
		require.NoError(t, err)
		assert.True(t, changed)
		env.Get(t, sts)
		env.Get(t, p)
		assert.Equal(t, "50M", sts.Annotations[bandwidth.DesiredEgressAnnotation])
		assert.Equal(t, "60M", sts.Annotations[bandwidth.DesiredIngressAnnotation])
		assert.Equal(t, "50M", p.Annotations[bandwidth.EgressAnnotation])
		assert.Equal(t, "60M", p.Annotations[bandwidth.IngressAnnotation])
	})

	// Template: the kubernetes.io annotations go into the pod template (the Deployment
	// rolls: its generation moves), nothing is recorded on the workload and no Pod is
	// touched. Current reads them back; an identical Apply makes no write.
	t.Run("TemplateWritesThePodTemplate", func(t *testing.T) {
		ctx := acttest.Ctx(t, time.Minute)
		ns := env.Namespace(t)
		w := newWorkload(t, env, ns, "web")
		p := w.pod(t, env, "web-1")
		target := workload.Ref{Kind: "Deployment", Namespace: ns, Name: "web"}
		gen := w.dep.Generation
		var writes acttest.Writes
		c := acttest.Counting(env.Client, &writes, nil)

		changed, err := bandwidth.Apply(ctx, c, target, q("200M"), q("300M"), bandwidth.ModeTemplate)
		require.NoError(t, err)
		assert.True(t, changed)
		assert.EqualValues(t, 1, writes.N())
		env.Get(t, w.dep)
		assert.Equal(t, "200M", w.dep.Spec.Template.Annotations[bandwidth.EgressAnnotation])
		assert.Equal(t, "300M", w.dep.Spec.Template.Annotations[bandwidth.IngressAnnotation])
		assert.NotContains(t, w.dep.Annotations, bandwidth.DesiredEgressAnnotation)
		assert.Greater(t, w.dep.Generation, gen)
		assert.JSONEq(t, `{"f:spec":{"f:template":`+bothFields+`}}`,
			acttest.Fields(w.dep, actuators.FieldManager, metav1.ManagedFieldsOperationApply, ""))
		env.Get(t, p)
		assert.NotContains(t, p.Annotations, bandwidth.EgressAnnotation)

		egress, ingress, err := bandwidth.Current(ctx, env.Client, target, bandwidth.ModeTemplate)
		require.NoError(t, err)
		assert.Equal(t, "200M", egress.String())
		assert.Equal(t, "300M", ingress.String())

		rv := w.dep.ResourceVersion
		changed, err = bandwidth.Apply(ctx, c, target, q("0.2G"), q("300M"), bandwidth.ModeTemplate)
		require.NoError(t, err)
		assert.False(t, changed)
		assert.EqualValues(t, 1, writes.N())
		env.Get(t, w.dep)
		assert.Equal(t, rv, w.dep.ResourceVersion)
	})

	// Writes that race other writers (the Deployment, then a Pod, change between the
	// actuator's read and its apply) get a Conflict, read again and succeed.
	t.Run("RetriesOnConflict", func(t *testing.T) {
		ctx := acttest.Ctx(t, time.Minute)
		ns := env.Namespace(t)
		w := newWorkload(t, env, ns, "web")
		p := w.pod(t, env, "web-1")
		var writes acttest.Writes
		race := func(ctx context.Context, obj client.Object) error {
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
				return err
			}
			obj.SetLabels(map[string]string{"app": "web", "raced": "yes"})
			return env.Client.Update(ctx, obj, client.FieldOwner("racer"))
		}
		c := acttest.Counting(env.Client, &writes, func(ctx context.Context, n int64, verb string) error {
			switch n {
			case 1: // the Deployment's first apply
				return race(ctx, &appsv1.Deployment{ObjectMeta: w.dep.ObjectMeta})
			case 3: // the Pod's first apply
				return race(ctx, &corev1.Pod{ObjectMeta: p.ObjectMeta})
			}
			return nil
		})
		changed, err := bandwidth.Apply(ctx, c, workload.Ref{Kind: "Deployment", Namespace: ns, Name: "web"}, q("10M"), nil, "")
		require.NoError(t, err)
		assert.True(t, changed)
		assert.EqualValues(t, 4, writes.N(), "each object: one apply lost the race, one won")
		env.Get(t, w.dep)
		env.Get(t, p)
		assert.Equal(t, "10M", w.dep.Annotations[bandwidth.DesiredEgressAnnotation])
		assert.Equal(t, "yes", w.dep.Labels["raced"])
		assert.Equal(t, "10M", p.Annotations[bandwidth.EgressAnnotation])
		assert.Equal(t, "yes", p.Labels["raced"])
	})

	// The Pods are annotated side by side, at most PodApplyConcurrency at once: every
	// Pod's apply waits until that many are in flight, which one at a time would never
	// reach (it then goes on after 10 s, and the count fails). A Pod whose apply fails does not stop the others, and the error names it.
	t.Run("LiveAnnotatesPodsSideBySide", func(t *testing.T) {
		ctx := acttest.Ctx(t, time.Minute)
		ns := env.Namespace(t)
		w := newWorkload(t, env, ns, "web")
		const n = bandwidth.PodApplyConcurrency + 4
		pods := make([]*corev1.Pod, n)
		for i := range pods {
			pods[i] = w.pod(t, env, fmt.Sprintf("web-%02d", i))
		}
		var (
			writes         acttest.Writes
			inFlight, most atomic.Int64
			full           = make(chan struct{})
			fullOnce       sync.Once
			failing        = errors.New("refused for the test")
		)
		c := acttest.Counting(env.Client, &writes, func(ctx context.Context, k int64, verb string) error {
			if k == 1 { // the Deployment's apply, before any Pod's
				return nil
			}
			now := inFlight.Add(1)
			defer inFlight.Add(-1)
			for m := most.Load(); now > m && !most.CompareAndSwap(m, now); m = most.Load() {
			}
			if now == bandwidth.PodApplyConcurrency {
				fullOnce.Do(func() { close(full) })
			}
			select {
			case <-full:
			case <-time.After(10 * time.Second): // one at a time: never full
			}
			if k == 2 {
				return failing
			}
			return nil
		})
		_, err := bandwidth.Apply(ctx, c, workload.Ref{Kind: "Deployment", Namespace: ns, Name: "web"}, q("10M"), nil, "")
		require.ErrorIs(t, err, failing)
		assert.EqualValues(t, bandwidth.PodApplyConcurrency, most.Load(), "Pod applies in flight at once")
		assert.EqualValues(t, 1+n, writes.N(), "the Deployment and every Pod, the refused one too")
		var lacking []string
		for _, p := range pods {
			env.Get(t, p)
			if p.Annotations[bandwidth.EgressAnnotation] != "10M" {
				lacking = append(lacking, p.Name)
			}
		}
		require.Len(t, lacking, 1, "only the refused Pod lacks the bandwidth")
		assert.Contains(t, err.Error(), "pod "+ns+"/"+lacking[0]+": apply: refused for the test")
	})

	// Errors say what and where; an unknown mode and an unparsable record are refused.
	t.Run("Errors", func(t *testing.T) {
		ctx := acttest.Ctx(t, time.Minute)
		ns := env.Namespace(t)
		target := workload.Ref{Kind: "Deployment", Namespace: ns, Name: "web"}
		_, err := bandwidth.Apply(ctx, env.Client, target, q("1M"), nil, "")
		assert.True(t, workload.IsNotFound(err), "%v", err)
		assert.EqualError(t, err, "deployment "+ns+"/web: not found")

		w := newWorkload(t, env, ns, "web")
		_, err = bandwidth.Apply(ctx, env.Client, target, q("1M"), nil, "Sideways")
		assert.EqualError(t, err, `deployment `+ns+`/web: unknown bandwidth mode "Sideways" (want Live or Template)`)

		w.dep.Annotations[bandwidth.DesiredEgressAnnotation] = "fast"
		require.NoError(t, env.Client.Update(ctx, w.dep))
		_, _, err = bandwidth.Current(ctx, env.Client, target, bandwidth.ModeLive)
		require.Error(t, err)
		assert.Contains(t, err.Error(), `deployment `+ns+`/web: annotation governor.dev/egress-bandwidth: "fast" is not a Kubernetes quantity`)
	})

	// The propagation controller leaves a workload's Pods to the Apply that records a new
	// value for a while (replaceAfter): a Pod carrying the old value reconciled at once, each
	// Pod was written by both, and one of the two applies refused as a Conflict.
	t.Run("ApplyDoesNotRaceThePropagation", func(t *testing.T) {
		ctx := acttest.Ctx(t, time.Minute)
		ns := env.Namespace(t)
		acttest.StartManager(t, env.Config, propagation)
		w := newWorkload(t, env, ns, "web")
		pods := make([]*corev1.Pod, 4)
		for i := range pods {
			pods[i] = w.pod(t, env, fmt.Sprintf("web-%d", i))
		}
		var conflicts atomic.Int64
		c := interceptor.NewClient(env.Client, interceptor.Funcs{
			Apply: func(ctx context.Context, c client.WithWatch, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
				err := c.Apply(ctx, obj, opts...)
				if apierrors.IsConflict(err) {
					conflicts.Add(1)
				}
				return err
			},
		})
		target := workload.Ref{Kind: "Deployment", Namespace: ns, Name: "web"}
		for _, egress := range []string{"10M", "20M", "30M", "40M", "50M", "60M"} {
			changed, err := bandwidth.Apply(ctx, c, target, q(egress), nil, "")
			require.NoError(t, err)
			require.True(t, changed)
			for _, p := range pods {
				env.Get(t, p)
				require.Equal(t, egress, p.Annotations[bandwidth.EgressAnnotation], p.Name)
			}
		}
		assert.Zero(t, conflicts.Load(), "applies refused as Conflicts")
	})

	// The propagation controller, in a controller-runtime manager: a Pod created after
	// Apply (of a Deployment through its ReplicaSet, or of a StatefulSet) gets the recorded
	// value; a Pod of a workload that records nothing is left alone; an annotation someone
	// removes is put back; a value recorded while a Pod existed reaches it even if Apply did
	// not see the Pod (the workload watch).
	t.Run("PropagationAnnotatesPodsCreatedLater", func(t *testing.T) {
		ctx := acttest.Ctx(t, 2*time.Minute)
		ns := env.Namespace(t)
		acttest.StartManager(t, env.Config, propagation)

		w := newWorkload(t, env, ns, "web")
		quiet := newWorkload(t, env, ns, "quiet")
		sts := acttest.StatefulSet(ns, "db", 1, acttest.Container("db", nil))
		env.Create(t, sts)
		_, err := bandwidth.Apply(ctx, env.Client, workload.Ref{Kind: "Deployment", Namespace: ns, Name: "web"}, q("400M"), q("100M"), "")
		require.NoError(t, err)
		_, err = bandwidth.Apply(ctx, env.Client, workload.Ref{Kind: "StatefulSet", Namespace: ns, Name: "db"}, nil, q("70M"), "")
		require.NoError(t, err)

		late := w.pod(t, env, "web-late")
		quietPod := quiet.pod(t, env, "quiet-1")
		stsPod := acttest.Pod(ns, "db-0", "db", sts, "StatefulSet")
		env.Create(t, stsPod)

		annotated := func(p *corev1.Pod, want map[string]string) func() (bool, string) {
			return func() (bool, string) {
				got := &corev1.Pod{}
				if err := env.Client.Get(ctx, client.ObjectKeyFromObject(p), got); err != nil {
					return false, err.Error()
				}
				for k, v := range want {
					if got.Annotations[k] != v {
						return false, fmt.Sprintf("pod %s annotations %v, want %v", p.Name, got.Annotations, want)
					}
				}
				return true, ""
			}
		}
		acttest.Eventually(t, 30*time.Second, annotated(late, map[string]string{bandwidth.EgressAnnotation: "400M", bandwidth.IngressAnnotation: "100M"}))
		acttest.Eventually(t, 30*time.Second, annotated(stsPod, map[string]string{bandwidth.IngressAnnotation: "70M"}))
		env.Get(t, late)
		assert.JSONEq(t, bothFields, acttest.Fields(late, actuators.FieldManager, metav1.ManagedFieldsOperationApply, ""))
		env.Get(t, stsPod)
		assert.NotContains(t, stsPod.Annotations, bandwidth.EgressAnnotation)
		env.Get(t, quietPod)
		assert.NotContains(t, quietPod.Annotations, bandwidth.EgressAnnotation)

		// Someone removes the annotation: it is put back.
		delete(late.Annotations, bandwidth.EgressAnnotation)
		require.NoError(t, env.Client.Update(ctx, late, client.FieldOwner("someone")))
		acttest.Eventually(t, 30*time.Second, annotated(late, map[string]string{bandwidth.EgressAnnotation: "400M"}))

		// A value recorded on the workload by another writer (as if Apply had missed the
		// Pod) reaches the Pods through the workload watch.
		env.Get(t, quiet.dep)
		quiet.dep.Annotations[bandwidth.DesiredEgressAnnotation] = "20M"
		require.NoError(t, env.Client.Update(ctx, quiet.dep, client.FieldOwner("someone")))
		acttest.Eventually(t, 30*time.Second, annotated(quietPod, map[string]string{bandwidth.EgressAnnotation: "20M"}))
	})

	// Loops sharded across replicas: a replica gives a new Pod its bandwidth
	// at once when it owns the Pod's workload, and otherwise leaves it to
	// the owner for the grace, then gives it itself (the owner may be gone).
	t.Run("PropagationSharedAmongReplicas", func(t *testing.T) {
		ctx := acttest.Ctx(t, 2*time.Minute)
		ns := env.Namespace(t)
		mine := newWorkload(t, env, ns, "mine")
		theirs := newWorkload(t, env, ns, "theirs")
		const grace = 3 * time.Second
		acttest.StartManager(t, env.Config, func(mgr manager.Manager) error {
			return bandwidth.SetupPodPropagation(mgr, bandwidth.PropagationOptions{
				Owns:  func(uid string) bool { return uid == string(mine.dep.UID) },
				Grace: grace,
			})
		})
		for _, w := range []deployment{mine, theirs} {
			_, err := bandwidth.Apply(ctx, env.Client, workload.Ref{Kind: "Deployment", Namespace: ns, Name: w.dep.Name}, q("300M"), nil, "")
			require.NoError(t, err)
		}
		egress := func(p *corev1.Pod) string {
			got := &corev1.Pod{}
			require.NoError(t, env.Client.Get(ctx, client.ObjectKeyFromObject(p), got))
			return got.Annotations[bandwidth.EgressAnnotation]
		}
		created := time.Now()
		minePod, theirPod := mine.pod(t, env, "mine-late"), theirs.pod(t, env, "theirs-late")
		acttest.Eventually(t, 30*time.Second, func() (bool, string) {
			return egress(minePod) == "300M", "the owned workload's new Pod not annotated yet"
		})
		// Before the grace has passed since the Pod was created, the other
		// replica's Pod cannot have been given its bandwidth by this one.
		if time.Since(created) < grace-time.Second {
			assert.Empty(t, egress(theirPod), "a Pod of another replica's workload annotated within the grace")
		}
		acttest.Eventually(t, 30*time.Second, func() (bool, string) {
			return egress(theirPod) == "300M", "the other replica's Pod not annotated after the grace"
		})
		assert.GreaterOrEqual(t, time.Since(created), grace, "annotated before the grace had passed")
	})
}
