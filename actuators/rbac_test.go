//go:build integration

package actuators_test

import (
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	"governor.dev/governor/workload"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"governor.dev/governor/actuators/bandwidth"
	"governor.dev/governor/actuators/hpa"
	"governor.dev/governor/actuators/internal/acttest"
	"governor.dev/governor/actuators/replicas"
	"governor.dev/governor/actuators/resources"
	"governor.dev/governor/test/cluster"
)

// TestRBACMarkersSuffice runs every actuator and the propagation controller as a user that
// has exactly the permissions of the actuators' +kubebuilder:rbac markers, against a real
// kube-apiserver with RBAC, reading through a manager's cache as the controller does: they
// suffice; and that user cannot create, update (PUT) or delete workloads (least privilege).
func TestRBACMarkersSuffice(t *testing.T) {
	env := acttest.Start(t)
	ctx := acttest.Ctx(t, 2*time.Minute)
	admin := env.Client
	rules := cluster.MarkerRules(t, ".")
	require.NoError(t, admin.Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "governor-actuators"}, Rules: rules}))
	require.NoError(t, admin.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "governor-actuators"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "governor-actuators"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: "governor"}},
	}))
	user, err := env.Env.AddUser(envtest.User{Name: "governor"}, env.Config)
	require.NoError(t, err)

	ns := env.Namespace(t)
	web := acttest.Deployment(ns, "web", 1, acttest.Container("app", acttest.Requests("cpu", "100m")))
	env.Create(t, web)
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-1", OwnerReferences: []metav1.OwnerReference{acttest.ControllerRef(web, "Deployment")}},
		Spec:       appsv1.ReplicaSetSpec{Selector: web.Spec.Selector, Template: web.Spec.Template},
	}
	env.Create(t, rs)
	env.Create(t, acttest.Pod(ns, "web-1-a", "web", rs, "ReplicaSet"))
	env.Create(t, acttest.StatefulSet(ns, "db", 1, acttest.Container("db", nil)))
	env.Create(t, acttest.Deployment(ns, "api", 1, acttest.Container("api", nil)))
	env.Create(t, &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "api-hpa"},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "api"},
			MaxReplicas:    5,
		},
	})

	// The binding reaches the authorizer's cache within moments.
	direct := acttest.NewClient(t, user.Config())
	acttest.Eventually(t, 20*time.Second, func() (bool, string) {
		err := direct.List(ctx, &appsv1.DeploymentList{}, client.InNamespace(ns))
		return err == nil, "list deployments as governor: " + errString(err)
	})
	// The actuators run as in the controller: reading through the
	// manager's cache (list and watch: the markers grant no get on what
	// the cache holds), writing to the API server.
	gc := acttest.StartManager(t, user.Config(), func(mgr manager.Manager) error {
		return bandwidth.SetupPodPropagation(mgr, bandwidth.PropagationOptions{})
	}).GetClient()

	webT := workload.Ref{Kind: "Deployment", Namespace: ns, Name: "web"}
	dbT := workload.Ref{Kind: "StatefulSet", Namespace: ns, Name: "db"}
	apiT := workload.Ref{Kind: "Deployment", Namespace: ns, Name: "api"}
	egress := resource.MustParse("300M")
	mustChange := func(what string, changed bool, err error) {
		t.Helper()
		require.NoError(t, err, what)
		assert.True(t, changed, what)
	}
	changed, err := bandwidth.Apply(ctx, gc, webT, &egress, nil, bandwidth.ModeLive)
	mustChange("bandwidth live", changed, err)
	changed, err = bandwidth.Apply(ctx, gc, dbT, &egress, nil, bandwidth.ModeTemplate)
	mustChange("bandwidth template", changed, err)
	_, _, err = bandwidth.Current(ctx, gc, webT, bandwidth.ModeLive)
	require.NoError(t, err)
	changed, err = replicas.Apply(ctx, gc, webT, 2)
	mustChange("replicas", changed, err)
	changed, err = replicas.Apply(ctx, gc, dbT, 2)
	mustChange("replicas statefulset", changed, err)
	_, err = replicas.Apply(ctx, gc, apiT, 2)
	var owned *replicas.OwnedByHPAError
	assert.True(t, errors.As(err, &owned), "%v", err)
	changed, err = resources.Apply(ctx, gc, webT, map[string]resources.Container{"app": {Requests: acttest.Requests("memory", "64Mi")}})
	mustChange("resources", changed, err)
	changed, err = hpa.Apply(ctx, gc, ns, "api-hpa", ptr.To[int32](2), ptr.To[int32](4))
	mustChange("hpa", changed, err)
	h, err := hpa.Find(ctx, gc, apiT)
	require.NoError(t, err)
	require.NotNil(t, h)

	late := acttest.Pod(ns, "web-1-late", "web", rs, "ReplicaSet")
	env.Create(t, late)
	acttest.Eventually(t, 30*time.Second, func() (bool, string) {
		got := &corev1.Pod{}
		if err := admin.Get(ctx, client.ObjectKeyFromObject(late), got); err != nil {
			return false, err.Error()
		}
		return got.Annotations[bandwidth.EgressAnnotation] == "300M", "annotations " + acttest.JSON(got.Annotations)
	})

	// Least privilege: no create, update (PUT) or delete of workloads.
	dep := &appsv1.Deployment{}
	require.NoError(t, gc.Get(ctx, client.ObjectKeyFromObject(web), dep))
	dep.Labels = map[string]string{"x": "y"}
	assert.True(t, apierrors.IsForbidden(gc.Update(ctx, dep)), "update")
	assert.True(t, apierrors.IsForbidden(gc.Delete(ctx, dep)), "delete")
	assert.True(t, apierrors.IsForbidden(gc.Create(ctx, acttest.Deployment(ns, "new", 1, acttest.Container("x", nil)))), "create")

	var summary []string
	for _, r := range rules {
		summary = append(summary, strings.Join(r.APIGroups, ";")+" "+strings.Join(r.Resources, ";")+": "+strings.Join(r.Verbs, ";"))
	}
	sort.Strings(summary)
	t.Logf("rules from the markers:\n%s", strings.Join(summary, "\n"))
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
