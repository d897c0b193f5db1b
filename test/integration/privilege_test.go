//go:build integration && linux

package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/test/cluster"
	"governor.dev/governor/test/deployed"
)

// privilegeBundle decides what its loop's params.actions say, and reports
// as events what its collectors failed with (the history shows them).
var privilegeBundle = map[string]string{
	".manifest": `{"revision": "privilege-1", "roots": ["test/privilege"]}`,
	"privilege.rego": `package test.privilege

decision := {
	"actions": input.params.actions,
	"events": [sprintf("%s: %s", [name, m.error]) | some name, m in input.metrics; m.error],
}
`,
}

// The path's OPA configuration, read from a ConfigMap in the controller's
// namespace (--opa-config-map, as the manifest offers): the privilege
// bundle, from a file:// resource.
const opaConfigMap = "governor-opa-config"

// TestLeastPrivilege runs governor as config/default deploys it (its
// ServiceAccount, ClusterRole and Lease Role, the manifest's
// flags) through the whole path (privilegePath): the path must complete
// and governor's log must say "forbidden" nowhere. Then it removes each
// rule of the ClusterRole and of the Role, one verb of one resource at a
// time, and runs the path again (informers listing, as on API servers
// without streaming lists): something must break (a step, or a forbidden
// in the log or a loop's status), or that rule is extra. One
// cluster serves every run; each run has a namespace of its own.
func TestLeastPrivilege(t *testing.T) {
	d := deployed.Deploy(t, governorBinary(t), cluster.Options{})
	p := newPrivilegePath(t, d)

	t.Run("the shipped role suffices", func(t *testing.T) {
		if broke := p.run(t); broke != "" {
			t.Fatalf("the path broke with the shipped role: %s", broke)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("every rule is needed", func(t *testing.T) {
		// Informers list before they watch on API servers without
		// streaming lists (WatchList: before Kubernetes 1.35, or turned
		// off), and client-go falls back to it: the list rules must
		// show as needed too.
		p.d.Env = []string{"KUBE_FEATURE_WatchListClient=false"}
		roles := []client.Object{
			&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: deployed.ClusterRole}},
			&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: deployed.SystemNamespace, Name: deployed.LeaderElectionRole}},
		}
		for _, role := range roles {
			require.NoError(t, d.Admin.Get(context.Background(), client.ObjectKeyFromObject(role), role))
			shipped := rulesOf(role)
			t.Cleanup(func() { setRules(t, d, role, shipped) })
			for i, atom := range atoms(shipped) {
				setRules(t, d, role, without(shipped, i))
				broke := p.run(t)
				t.Logf("%s without %s: %s", role.GetName(), atom, broke)
				switch {
				case broke == "":
					t.Errorf("%s without %s: nothing broke, the rule is extra", role.GetName(), atom)
				case strings.Contains(broke, "forbidden") && !atom.deniedIn(broke):
					t.Errorf("%s without %s: a forbidden of something else: %s", role.GetName(), atom, broke)
				}
			}
			setRules(t, d, role, shipped)
		}
	})
}

// privilegePath is what governor does as deployed, step by step: hold its
// Lease (a member's, with the manifest's --shards=auto), take a push, act on a Deployment's replicas,
// Pods' bandwidth and resources, a StatefulSet's replicas and resources
// and an HPA's bounds, propagate bandwidth to new Pods, record Events
// (series of them too), read pod metrics (metrics.k8s.io, which this
// cluster does not serve: NotFound, not Forbidden), serve its metrics to a
// reader, take back a loop another replica claimed, and stop, handing the
// Lease back.
type privilegePath struct {
	d            *deployed.Deployment
	metricsToken string
	runs         atomic.Int64
}

func newPrivilegePath(t *testing.T, d *deployed.Deployment) *privilegePath {
	dir := filepath.Join(t.TempDir(), "privilege")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	for name, body := range privilegeBundle {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	require.NoError(t, d.Admin.Create(context.Background(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: deployed.SystemNamespace, Name: opaConfigMap},
		Data:       map[string]string{"config.yaml": fmt.Sprintf("bundles: {privilege: {resource: %q}}\n", "file://"+dir)},
	}))
	return &privilegePath{d: d, metricsToken: d.MetricsToken(t)}
}

// pathStepTimeout bounds each step of the path: generous, for a busy
// machine; a step that breaks usually shows a forbidden much sooner.
const pathStepTimeout = 90 * time.Second

// errForbidden is a forbidden seen in governor's log or a loop's status.
var errForbidden = errors.New("forbidden")

// run runs the path once, with the roles as they are now, and says what
// broke ("" when nothing did).
func (p *privilegePath) run(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	ns := fmt.Sprintf("privilege-%d", p.runs.Add(1))
	p.prepare(t, ns)
	// Gone before the next run: a namespace being deleted forbids new
	// Events in it, which the next governor would try to record.
	defer func() {
		require.NoError(t, p.d.Admin.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
		eventually(t, 2*time.Minute, func() (bool, string) {
			err := p.d.Admin.Get(ctx, types.NamespacedName{Name: ns}, &corev1.Namespace{})
			return apierrors.IsNotFound(err), fmt.Sprintf("namespace %s not deleted yet: %v", ns, err)
		})
	}()

	g := p.d.Start(t, "--opa-config-map="+deployed.SystemNamespace+"/"+opaConfigMap)
	defer func() { _ = g.Terminate() }()
	r := &pathRun{p: p, g: g, ns: ns}
	for _, s := range []struct {
		what string
		done func() (bool, error)
	}{
		{"holds its Lease, ready, serving metrics", r.running},
		{"takes a push", r.push},
		{"acts on every target", r.acted},
		{"propagates bandwidth to every Pod", r.bandwidth},
		{"records a series of Events (events.k8s.io)", r.eventSeries},
		{"reads pod metrics (NotFound: no metrics server)", r.usage},
		{"serves /metrics to a metrics reader", r.metrics},
		{"takes back a loop a replica since gone claimed", r.reclaimed},
	} {
		if err := r.wait(s.done); err != nil {
			return fmt.Sprintf("step %q: %v", s.what, err)
		}
	}
	if err := g.Terminate(); err != nil {
		return fmt.Sprintf("step \"stops cleanly\": %v: %s", err, forbiddenLine(g.Output()))
	}
	var lease coordinationv1.Lease
	if err := p.d.Admin.Get(ctx, types.NamespacedName{Namespace: deployed.SystemNamespace, Name: g.LeaseName()}, &lease); err != nil {
		return fmt.Sprintf("step \"hands the Lease back\": %v", err)
	}
	if h := lease.Spec.HolderIdentity; h != nil && *h != "" {
		return fmt.Sprintf("step \"hands the Lease back\": still held by %s", *h)
	}
	if line := forbiddenLine(g.Output()); line != "" {
		return "governor's log: " + line
	}
	return ""
}

// prepare starts a run from scratch: no Lease (governor creates it), no
// Events in the controller's namespace, and a namespace with the push token, the workloads (their
// Pods running), an HPA and the two loops.
func (p *privilegePath) prepare(t *testing.T, ns string) {
	t.Helper()
	ctx := context.Background()
	c := p.d.Admin
	err := c.Delete(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: deployed.SystemNamespace, Name: deployed.LeaseName(p.d.Args)}})
	require.True(t, err == nil || apierrors.IsNotFound(err), "%v", err)
	require.NoError(t, c.DeleteAllOf(ctx, &corev1.Event{}, client.InNamespace(deployed.SystemNamespace)))

	require.NoError(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	require.NoError(t, c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reporter"},
		StringData: map[string]string{"token": "privilege-token"}}))
	require.NoError(t, c.Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec: appsv1.DeploymentSpec{Replicas: ptr[int32](2), Selector: selector("web"), Template: podTemplate("web")}}))
	require.NoError(t, c.Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "api"},
		Spec: appsv1.DeploymentSpec{Replicas: ptr[int32](1), Selector: selector("api"), Template: podTemplate("api")}}))
	require.NoError(t, c.Create(ctx, &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"},
		Spec: appsv1.StatefulSetSpec{Replicas: ptr[int32](1), ServiceName: "db", Selector: selector("db"), Template: podTemplate("db")}}))
	require.NoError(t, c.Create(ctx, &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "api"},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "api"},
			MinReplicas:    ptr[int32](1), MaxReplicas: 3,
		}}))
	eventually(t, 2*time.Minute, func() (bool, string) {
		running, err := runningPods(c, ns, "")
		return len(running) >= 4, fmt.Sprintf("%d Pods running in %s (%v)", len(running), ns, err)
	})

	quantity := func(s string) resource.Quantity { return resource.MustParse(s) }
	act := privilegeLoop(`[
		{"target": "web", "set": {"replicas": 3, "bandwidth": {"egress": "50M"}, "resources": {"app": {"requests": {"cpu": "300m"}}}}},
		{"target": "db", "set": {"replicas": 2, "resources": {"app": {"requests": {"memory": "192Mi"}}}}},
		{"target": "api", "set": {"hpa": {"minReplicas": 2, "maxReplicas": 4}}}]`,
		v1alpha1.TargetSpec{Name: "web", Ref: v1alpha1.TargetRef{Kind: "Deployment", Name: "web"},
			Replicas:  &v1alpha1.ReplicaBounds{Min: 1, Max: 5},
			Bandwidth: &v1alpha1.BandwidthBounds{Min: quantity("1M"), Max: quantity("100M")},
			Resources: &v1alpha1.ResourceBounds{CPU: &v1alpha1.QuantityRange{Min: quantity("100m"), Max: quantity("1")}}},
		v1alpha1.TargetSpec{Name: "db", Ref: v1alpha1.TargetRef{Kind: "StatefulSet", Name: "db"},
			Replicas:  &v1alpha1.ReplicaBounds{Min: 1, Max: 5},
			Resources: &v1alpha1.ResourceBounds{Memory: &v1alpha1.QuantityRange{Min: quantity("64Mi"), Max: quantity("1Gi")}}},
		v1alpha1.TargetSpec{Name: "api", Ref: v1alpha1.TargetRef{Kind: "Deployment", Name: "api"},
			HPA: &v1alpha1.HPABounds{Name: "api", Min: 1, Max: 5}})
	act.Collectors = []v1alpha1.CollectorSpec{{Name: "load", Push: &v1alpha1.PushCollector{TokenSecret: "reporter"}}}
	// Refused every tick, the same way (the metric is missing): a series
	// of one Event.
	usage := privilegeLoop(`[{"target": "db", "metric": "usage", "set": {"replicas": 1}}]`,
		v1alpha1.TargetSpec{Name: "db", Ref: v1alpha1.TargetRef{Kind: "StatefulSet", Name: "db"}, Replicas: &v1alpha1.ReplicaBounds{Min: 1, Max: 5}})
	usage.Collectors = []v1alpha1.CollectorSpec{{Name: "usage", Resources: &v1alpha1.ResourcesCollector{Target: "db", Resource: "cpu"}}}
	for name, spec := range map[string]v1alpha1.ControlLoopSpec{"act": act, "usage": usage} {
		require.NoError(t, c.Create(ctx, &v1alpha1.ControlLoop{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}))
	}
}

// privilegeLoop is a loop on the privilege bundle that decides actions.
func privilegeLoop(actions string, targets ...v1alpha1.TargetSpec) v1alpha1.ControlLoopSpec {
	return v1alpha1.ControlLoopSpec{
		Kind: v1alpha1.Reactive, State: v1alpha1.Running,
		Interval: metav1.Duration{Duration: 200 * time.Millisecond},
		Policy: v1alpha1.PolicySpec{Bundle: "privilege", Decision: "test/privilege/decision",
			Params: &apiextensionsv1.JSON{Raw: []byte(`{"actions": ` + actions + `}`)}},
		Targets: targets,
		Safety: v1alpha1.SafetySpec{Cooldown: metav1.Duration{Duration: time.Hour},
			StaleAfter: metav1.Duration{Duration: time.Hour}, MaxActions: 5},
	}
}

func selector(app string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}
}

func podTemplate(app string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				"cpu": resource.MustParse("250m"), "memory": resource.MustParse("128Mi")}}}}},
	}
}

// runningPods are the running Pods of ns (of app, unless ""), not being
// deleted.
func runningPods(c client.Client, ns, app string) ([]corev1.Pod, error) {
	var pods corev1.PodList
	opts := []client.ListOption{client.InNamespace(ns)}
	if app != "" {
		opts = append(opts, client.MatchingLabels{"app": app})
	}
	if err := c.List(context.Background(), &pods, opts...); err != nil {
		return nil, err
	}
	var out []corev1.Pod
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out, nil
}

// pathRun is one run of the path.
type pathRun struct {
	p  *privilegePath
	g  *deployed.Governor
	ns string
	// claimedAt is the usage loop's tick when the test, as another
	// replica, claimed it (reclaimed); 0 until then.
	claimedAt int64
}

// wait polls done until it holds, governor exits, a forbidden shows, or
// pathStepTimeout passes.
func (r *pathRun) wait(done func() (bool, error)) error {
	deadline := time.Now().Add(pathStepTimeout)
	last := errors.New("no answer yet")
	for {
		if line := forbiddenLine(r.g.Output()); line != "" {
			return fmt.Errorf("%w in governor's log: %s", errForbidden, line)
		}
		if where := r.forbiddenStatus(); where != "" {
			return fmt.Errorf("%w in %s", errForbidden, where)
		}
		select {
		case <-r.g.Exited():
			return fmt.Errorf("governor exited: %s", r.g.Tail())
		default:
		}
		ok, err := done()
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s (last: %w)", pathStepTimeout, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// forbiddenStatus names the loop whose status says forbidden ("" when
// none does).
func (r *pathRun) forbiddenStatus() string {
	var loops v1alpha1.ControlLoopList
	if err := r.p.d.Admin.List(context.Background(), &loops, client.InNamespace(r.ns)); err != nil {
		return ""
	}
	for _, l := range loops.Items {
		raw, _ := json.Marshal(l.Status)
		if line := forbiddenLine(string(raw)); line != "" {
			return fmt.Sprintf("loop %s's status: ...%s...", l.Name, around(line, "forbidden", 400))
		}
	}
	return ""
}

// around is s within n bytes of the first occurrence of word.
func around(s, word string, n int) string {
	i := strings.Index(strings.ToLower(s), word)
	return s[max(0, i-n):min(len(s), i+len(word)+n)]
}

// forbiddenLine is the first line of s that says forbidden ("" when none).
func forbiddenLine(s string) string {
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(strings.ToLower(line), "forbidden") {
			return line
		}
	}
	return ""
}

func (r *pathRun) running() (bool, error) {
	if !r.g.Running(r.p.d) || !r.g.Ready() {
		return false, errors.New("not holding its Lease and ready yet")
	}
	code, _, err := r.g.Get("/healthz", "")
	return err == nil && code != 0, err // listening: any answer
}

func (r *pathRun) push() (bool, error) {
	err := r.g.Push(r.ns, "act", "privilege-token", map[string]float64{"load": 1})
	return err == nil, err
}

func (r *pathRun) acted() (bool, error) {
	ctx := context.Background()
	c := r.p.d.Admin
	var web, api appsv1.Deployment
	var db appsv1.StatefulSet
	var hpa autoscalingv2.HorizontalPodAutoscaler
	for _, o := range []struct {
		name string
		obj  client.Object
	}{{"web", &web}, {"api", &api}, {"db", &db}, {"api", &hpa}} {
		if err := c.Get(ctx, types.NamespacedName{Namespace: r.ns, Name: o.name}, o.obj); err != nil {
			return false, err
		}
	}
	request := func(t corev1.PodTemplateSpec, name corev1.ResourceName) string {
		q := t.Spec.Containers[0].Resources.Requests[name]
		return q.String()
	}
	got := fmt.Sprintf("web replicas %d cpu %s egress %q; db replicas %d memory %s; hpa %d-%d",
		*web.Spec.Replicas, request(web.Spec.Template, "cpu"), web.Annotations["governor.dev/egress-bandwidth"],
		*db.Spec.Replicas, request(db.Spec.Template, "memory"), *hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas)
	want := `web replicas 3 cpu 300m egress "50M"; db replicas 2 memory 192Mi; hpa 2-4`
	if got != want {
		return false, fmt.Errorf("%s, want %s", got, want)
	}
	return true, nil
}

// bandwidth: every running Pod of web, those the actuator annotated and
// those made since (the replicas and the resources' rollout), has the
// egress.
func (r *pathRun) bandwidth() (bool, error) {
	var web appsv1.Deployment
	if err := r.p.d.Admin.Get(context.Background(), types.NamespacedName{Namespace: r.ns, Name: "web"}, &web); err != nil {
		return false, err
	}
	pods, err := runningPods(r.p.d.Admin, r.ns, "web")
	if err != nil {
		return false, err
	}
	var missing []string
	for _, p := range pods {
		if p.Annotations["kubernetes.io/egress-bandwidth"] != "50M" {
			missing = append(missing, p.Name)
		}
	}
	if len(pods) < 3 || len(missing) > 0 || web.Status.UpdatedReplicas != 3 || web.Status.Replicas != 3 {
		return false, fmt.Errorf("%d running Pods of web, %v without egress 50M (rollout: %d of %d updated)",
			len(pods), missing, web.Status.UpdatedReplicas, web.Status.Replicas)
	}
	return true, nil
}

func (r *pathRun) eventSeries() (bool, error) {
	var events eventsv1.EventList
	if err := r.p.d.Admin.List(context.Background(), &events, client.InNamespace(r.ns)); err != nil {
		return false, err
	}
	for _, e := range events.Items {
		if e.Regarding.Name == "usage" && e.Series != nil && e.Series.Count >= 2 {
			return true, nil
		}
	}
	var l v1alpha1.ControlLoop
	_ = r.p.d.Admin.Get(context.Background(), types.NamespacedName{Namespace: r.ns, Name: "usage"}, &l)
	_, desc := lastEntry(&l)
	return false, fmt.Errorf("%d Events, no series of loop usage (its last tick: %s)", len(events.Items), desc)
}

func (r *pathRun) usage() (bool, error) {
	var l v1alpha1.ControlLoop
	if err := r.p.d.Admin.Get(context.Background(), types.NamespacedName{Namespace: r.ns, Name: "usage"}, &l); err != nil {
		return false, err
	}
	h, desc := lastEntry(&l)
	for _, e := range h.Events {
		if strings.Contains(e, "usage: metrics.k8s.io") && strings.Contains(e, "the server could not find the requested resource") {
			return true, nil
		}
	}
	return false, errors.New(desc)
}

func (r *pathRun) metrics() (bool, error) {
	code, body, err := r.g.Get("/metrics", r.p.metricsToken)
	if err != nil {
		return false, err
	}
	if code != http.StatusOK || !strings.Contains(body, "governor_") {
		return false, fmt.Errorf("%d %.300s", code, body)
	}
	return true, nil
}

// reclaimed claims the usage loop as another replica would (its status
// names it as owner, status.sequence moved on; it has no member Lease: it
// is gone), then waits until governor has it back and ticks it again: its
// runner, whose cache names another owner as new as its claim, asks the
// API server (get), stops, and a new runner claims the loop back.
func (r *pathRun) reclaimed() (bool, error) {
	ctx := context.Background()
	var loop v1alpha1.ControlLoop
	if err := r.p.d.Admin.Get(ctx, types.NamespacedName{Namespace: r.ns, Name: "usage"}, &loop); err != nil {
		return false, err
	}
	if r.claimedAt == 0 {
		if loop.Status.Tick == 0 {
			return false, errors.New("the usage loop has not ticked")
		}
		tick := loop.Status.Tick
		loop.Status.Owner = &v1alpha1.LoopOwner{Member: "gone", Epoch: 1}
		loop.Status.Sequence++
		if err := r.p.d.Admin.Status().Update(ctx, &loop); err != nil {
			return false, err // a write of governor's between: tried again
		}
		r.claimedAt = tick
		return false, nil
	}
	o := loop.Status.Owner
	if o == nil || o.Member == "gone" || loop.Status.Tick <= r.claimedAt {
		return false, fmt.Errorf("owner %v at tick %d (claimed at %d)", o, loop.Status.Tick, r.claimedAt)
	}
	return true, nil
}

// atom is one verb on one resource of one API group: the unit a rule is
// removed by.
type atom struct{ group, resource, verb string }

// deniedIn tells whether the API server's message in s denies this atom
// ("cannot VERB resource "RESOURCE" in API group "GROUP"", JSON-escaped
// or not).
func (a atom) deniedIn(s string) bool {
	s = strings.ReplaceAll(s, `\"`, `"`)
	return strings.Contains(s, fmt.Sprintf(`cannot %s resource "%s" in API group "%s"`, a.verb, a.resource, a.group))
}

func (a atom) String() string {
	g := a.group
	if g == "" {
		g = "core"
	}
	return fmt.Sprintf("%s %s/%s", a.verb, g, a.resource)
}

// atoms are the rules' (group, resource, verb) combinations, in order.
func atoms(rules []rbacv1.PolicyRule) []atom {
	var out []atom
	for _, r := range rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					out = append(out, atom{g, res, v})
				}
			}
		}
	}
	return out
}

// without is rules with the i-th atom taken out: one rule per atom.
func without(rules []rbacv1.PolicyRule, i int) []rbacv1.PolicyRule {
	var out []rbacv1.PolicyRule
	for j, a := range atoms(rules) {
		if j != i {
			out = append(out, rbacv1.PolicyRule{APIGroups: []string{a.group}, Resources: []string{a.resource}, Verbs: []string{a.verb}})
		}
	}
	return out
}

func rulesOf(role client.Object) []rbacv1.PolicyRule {
	switch r := role.(type) {
	case *rbacv1.ClusterRole:
		return r.Rules
	case *rbacv1.Role:
		return r.Rules
	}
	panic(fmt.Sprintf("not a role: %T", role))
}

// setRules replaces a role's rules.
func setRules(t *testing.T, d *deployed.Deployment, role client.Object, rules []rbacv1.PolicyRule) {
	t.Helper()
	switch r := role.(type) {
	case *rbacv1.ClusterRole:
		r.Rules = rules
	case *rbacv1.Role:
		r.Rules = rules
	}
	require.NoError(t, d.Admin.Update(context.Background(), role))
}
