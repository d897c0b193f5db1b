//go:build integration

package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/controller"
	"governor.dev/governor/test/cluster"
)

// TestAuthorisedAuthors applies config/admission (the ValidatingAdmissionPolicy that
// config/default ships) to a real API server, whose authorizer is RBAC, and writes
// ControlLoops as users with and without the rights Governor would use for them.
func TestAuthorisedAuthors(t *testing.T) {
	api := cluster.StartAPIServer(t, filepath.Join(repo, "config/crd/bases"))
	admin, err := client.New(api.Config, client.Options{Scheme: controller.Scheme()})
	require.NoError(t, err)
	ctx := context.Background()
	out, err := api.Kubectl("apply", "--server-side", "-k", filepath.Join(repo, "config/admission"))
	require.NoError(t, err, out)

	const ns = "tenant"
	require.NoError(t, admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	loops := rbacv1.PolicyRule{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"controlloops"},
		Verbs: []string{"get", "create", "update", "patch"}}
	// alice holds every right Governor uses, in the whole namespace.
	alice := roleUser(t, api.Config, admin, ns, "alice", loops,
		rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"deployments", "statefulsets"}, Verbs: []string{"patch"}},
		rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"deployments/scale", "statefulsets/scale"}, Verbs: []string{"update"}},
		rbacv1.PolicyRule{APIGroups: []string{"autoscaling"}, Resources: []string{"horizontalpodautoscalers"}, Verbs: []string{"patch"}},
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"patch"}},
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}})
	// bob may write loops and nothing else.
	bob := roleUser(t, api.Config, admin, ns, "bob", loops)
	// carol holds rights on named objects only (RBAC resourceNames).
	carol := roleUser(t, api.Config, admin, ns, "carol", loops,
		rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"patch"}, ResourceNames: []string{"web", "api", "cache"}},
		rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"deployments/scale"}, Verbs: []string{"update"}, ResourceNames: []string{"web"}},
		rbacv1.PolicyRule{APIGroups: []string{"autoscaling"}, Resources: []string{"horizontalpodautoscalers"}, Verbs: []string{"patch"}, ResourceNames: []string{"web-hpa"}},
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}, ResourceNames: []string{"push-token"}})

	// dave may patch Deployments, no other kind.
	dave := roleUser(t, api.Config, admin, ns, "dave", loops,
		rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"patch"}})

	web := v1alpha1.TargetSpec{Name: "web", Ref: v1alpha1.TargetRef{Kind: "Deployment", Name: "web"},
		Replicas: &v1alpha1.ReplicaBounds{Min: 1, Max: 5}}
	loop := func(name string, targets []v1alpha1.TargetSpec, tokenSecrets ...string) *v1alpha1.ControlLoop {
		l := &v1alpha1.ControlLoop{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: v1alpha1.ControlLoopSpec{Interval: metav1.Duration{Duration: time.Second}, Policy: v1alpha1.PolicySpec{Bundle: "reactive", Decision: "governor/reactive/decision"},
				Targets: targets}}
		for i, s := range tokenSecrets {
			l.Spec.Collectors = append(l.Spec.Collectors, v1alpha1.CollectorSpec{Name: fmt.Sprintf("pushed%d", i),
				Push: &v1alpha1.PushCollector{TokenSecret: s}})
		}
		return l
	}

	// The API server compiles a new policy in the background: until then it lets anything
	// through. Wait until bob is denied, removing what he managed to create meanwhile.
	probe := loop("probe", []v1alpha1.TargetSpec{web})
	eventually(t, 2*time.Minute, func() (bool, string) {
		err := bob.Create(ctx, probe.DeepCopy())
		if err == nil {
			require.NoError(t, admin.Delete(ctx, probe.DeepCopy()))
			return false, "bob's probe loop was admitted: the policy is not enforced yet"
		}
		require.True(t, apierrors.IsForbidden(err), "bob's probe loop: %v", err)
		return true, ""
	})

	t.Run("with every right", func(t *testing.T) {
		l := loop("everything", []v1alpha1.TargetSpec{web,
			{Name: "db", Ref: v1alpha1.TargetRef{Kind: "StatefulSet", Name: "db"}, Replicas: &v1alpha1.ReplicaBounds{Min: 1, Max: 3},
				Bandwidth: &v1alpha1.BandwidthBounds{Min: resource.MustParse("10M"), Max: resource.MustParse("1G")}},
			{Name: "api", Ref: v1alpha1.TargetRef{Name: "api"}, HPA: &v1alpha1.HPABounds{Min: 1, Max: 4}},
			{Name: "worker", Ref: v1alpha1.TargetRef{Name: "worker"}, HPA: &v1alpha1.HPABounds{Name: "worker-hpa", Min: 1, Max: 4}},
		}, "push-token", "other-token")
		require.NoError(t, alice.Create(ctx, l))
		l.Spec.Targets = append(l.Spec.Targets, v1alpha1.TargetSpec{Name: "more", Ref: v1alpha1.TargetRef{Name: "more"}})
		require.NoError(t, alice.Update(ctx, l))
	})

	t.Run("as many targets and push collectors as the CRD allows", func(t *testing.T) {
		var targets []v1alpha1.TargetSpec
		for i := range 100 {
			name := fmt.Sprintf("w%d", i)
			target := v1alpha1.TargetSpec{Name: name, Ref: v1alpha1.TargetRef{Kind: "Deployment", Name: name},
				Replicas: &v1alpha1.ReplicaBounds{Min: 1, Max: 3}}
			if i%10 == 4 { // an External target with as many settings as the CRD allows
				target = egressTarget(name, fmt.Sprintf("key-%d", i))
				for j := len(target.External.Settings); j < 32; j++ {
					target.External.Settings = append(target.External.Settings, v1alpha1.ExternalSetting{Name: fmt.Sprintf("s%d", j),
						QuantityRange: v1alpha1.QuantityRange{Min: resource.MustParse("0.5"), Max: resource.MustParse("1e18"), MaxStep: ptr(resource.MustParse("1k"))}})
				}
			} else if i%2 == 1 {
				target = v1alpha1.TargetSpec{Name: name, Ref: v1alpha1.TargetRef{Kind: "StatefulSet", Name: name},
					HPA:       &v1alpha1.HPABounds{Min: 1, Max: 3},
					Bandwidth: &v1alpha1.BandwidthBounds{Min: resource.MustParse("10M"), Max: resource.MustParse("1G")}}
			}
			targets = append(targets, target)
		}
		var secrets []string
		for i := range 32 {
			secrets = append(secrets, fmt.Sprintf("token-%d", i))
		}
		l := loop("largest", targets, secrets...)
		require.NoError(t, alice.Create(ctx, l.DeepCopy()), "within the API server's CEL cost limits")
		l.Name = "largest-bob"
		assertDenied(t, bob.Create(ctx, l), "user bob may not patch all of deployments/w0, deployments/w2,")
	})

	t.Run("by name", func(t *testing.T) {
		l := loop("named", []v1alpha1.TargetSpec{web,
			{Name: "api", Ref: v1alpha1.TargetRef{Name: "api"}, HPA: &v1alpha1.HPABounds{Name: "web-hpa", Min: 1, Max: 4}},
		}, "push-token")
		require.NoError(t, carol.Create(ctx, l))
	})

	t.Run("an External target", func(t *testing.T) {
		l := loop("egress", []v1alpha1.TargetSpec{egressTarget("lupus", "egress-key")})
		require.NoError(t, alice.Create(ctx, l), "alice may get every Secret")
		l = loop("egress-named", []v1alpha1.TargetSpec{egressTarget("lupus", "push-token")})
		require.NoError(t, carol.Create(ctx, l), "carol may get this Secret by name")
		// An External target needs no right on a workload.
		l = loop("egress-bob", []v1alpha1.TargetSpec{egressTarget("lupus", "egress-key")})
		assertDenied(t, bob.Create(ctx, l), "user bob may not get secrets/egress-key (signing keys of External targets) in namespace tenant")
	})

	t.Run("update adding a target", func(t *testing.T) {
		l := loop("growing", []v1alpha1.TargetSpec{{Name: "web", Ref: v1alpha1.TargetRef{Name: "web"}}})
		require.NoError(t, dave.Create(ctx, l))
		// An update is checked for what the new object declares: a kind dave may not patch.
		l.Spec.Targets = append(l.Spec.Targets, v1alpha1.TargetSpec{Name: "db", Ref: v1alpha1.TargetRef{Kind: "StatefulSet", Name: "db"}})
		assertDenied(t, dave.Update(ctx, l), "user dave may not patch statefulsets/db in namespace tenant")
		got := &v1alpha1.ControlLoop{}
		require.NoError(t, admin.Get(ctx, client.ObjectKeyFromObject(l), got))
		assert.Len(t, got.Spec.Targets, 1, "the denied update must change nothing")
	})

	denied := []struct {
		name    string
		user    client.Client
		loop    *v1alpha1.ControlLoop
		missing string
	}{
		{"deployment", bob, loop("deployment", []v1alpha1.TargetSpec{web}),
			"user bob may not patch deployments/web in namespace tenant"},
		{"statefulset", bob, loop("statefulset", []v1alpha1.TargetSpec{
			{Name: "db", Ref: v1alpha1.TargetRef{Kind: "StatefulSet", Name: "db"}}}),
			"user bob may not patch statefulsets/db in namespace tenant"},
		{"scale", carol, loop("scale", []v1alpha1.TargetSpec{
			{Name: "api", Ref: v1alpha1.TargetRef{Name: "api"}, Replicas: &v1alpha1.ReplicaBounds{Min: 1, Max: 3}}}),
			"user carol may not update deployments/api/scale in namespace tenant"},
		{"named hpa", carol, loop("named-hpa", []v1alpha1.TargetSpec{
			{Name: "api", Ref: v1alpha1.TargetRef{Name: "api"}, HPA: &v1alpha1.HPABounds{Name: "api-hpa", Min: 1, Max: 4}}}),
			"user carol may not patch horizontalpodautoscalers/api-hpa in namespace tenant"},
		{"hpa found by its target", carol, loop("found-hpa", []v1alpha1.TargetSpec{
			{Name: "api", Ref: v1alpha1.TargetRef{Name: "api"}, HPA: &v1alpha1.HPABounds{Min: 1, Max: 4}}}),
			"user carol may not patch horizontalpodautoscalers (the one scaling target api) in namespace tenant"},
		{"bandwidth", carol, loop("bandwidth", []v1alpha1.TargetSpec{
			{Name: "api", Ref: v1alpha1.TargetRef{Name: "api"}, Bandwidth: &v1alpha1.BandwidthBounds{Min: resource.MustParse("10M"), Max: resource.MustParse("1G")}}}),
			"user carol may not patch pods (bandwidth bounds on target api) in namespace tenant"},
		{"token secret", carol, loop("token", []v1alpha1.TargetSpec{web}, "admin-token"),
			"user carol may not get secrets/admin-token (push tokens) in namespace tenant"},
		{"signing secret", carol, loop("signing", []v1alpha1.TargetSpec{web, egressTarget("lupus", "admin-key")}),
			"user carol may not get secrets/admin-key (signing keys of External targets) in namespace tenant"},
		{"token and signing secrets", carol, loop("both", []v1alpha1.TargetSpec{web, egressTarget("lupus", "admin-key")}, "push-token"),
			"user carol may not get all of secrets/push-token, secrets/admin-key (push tokens and signing keys of External targets) in namespace tenant"},
		{"more objects by name than are checked", carol, loop("many", []v1alpha1.TargetSpec{
			{Name: "a", Ref: v1alpha1.TargetRef{Name: "web"}}, {Name: "b", Ref: v1alpha1.TargetRef{Name: "api"}},
			{Name: "c", Ref: v1alpha1.TargetRef{Name: "cache"}}}),
			"user carol may not patch all of deployments/web, deployments/api, deployments/cache in namespace tenant"},
	}
	for _, tc := range denied {
		t.Run("denied: "+tc.name, func(t *testing.T) {
			assertDenied(t, tc.user.Create(ctx, tc.loop), tc.missing)
			assert.True(t, apierrors.IsNotFound(admin.Get(ctx, client.ObjectKeyFromObject(tc.loop), &v1alpha1.ControlLoop{})), "the loop must not exist")
		})
	}
}

// egressTarget is an External target whose requests are signed with the key of Secret secret.
func egressTarget(name, secret string) v1alpha1.TargetSpec {
	return v1alpha1.TargetSpec{Name: name, Ref: v1alpha1.TargetRef{Kind: v1alpha1.TargetExternal, Name: name},
		External: &v1alpha1.ExternalTarget{URL: "https://" + name + ".example/settings", SigningSecret: secret,
			Settings: []v1alpha1.ExternalSetting{{Name: "rate", QuantityRange: v1alpha1.QuantityRange{Min: resource.MustParse("1"), Max: resource.MustParse("100")}}}}}
}

// assertDenied checks that err is the policy's denial, naming what is missing.
func assertDenied(t *testing.T, err error, missing string) {
	t.Helper()
	require.Error(t, err)
	assert.True(t, apierrors.IsForbidden(err), "want Forbidden, got %v", err)
	assert.Contains(t, err.Error(), missing)
}

// roleUser gives user the rules in namespace ns (a Role and its RoleBinding) and returns a
// client that impersonates the user (the admin, in system:masters, may impersonate).
func roleUser(t *testing.T, adminConfig *rest.Config, admin client.Client, ns, user string, rules ...rbacv1.PolicyRule) client.Client {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, admin.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user}, Rules: rules}))
	require.NoError(t, admin.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: user},
		Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: user}}}))
	cfg := rest.CopyConfig(adminConfig)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:authenticated"}}
	c, err := client.New(cfg, client.Options{Scheme: controller.Scheme()})
	require.NoError(t, err)
	return c
}
