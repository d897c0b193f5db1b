package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/sim"
)

// The factory: its namespace, its workloads and its loops.
const (
	Namespace = "factory"

	// Critical is the workload whose traffic must stay smooth.
	Critical = "robot-control"
	// Telemetry and Video are the best-effort workloads whose egress the bandwidth loop
	// grants.
	Telemetry = "telemetry-upload"
	Video     = "video-archive"
	// Web is the scaled web tier.
	Web = "web"

	// The loops.
	LoopQoS        = "factory-qos"
	LoopScaling    = "factory-scaling"
	LoopPriorities = "factory-priorities"

	// classLabel sorts the workloads: critical, best-effort, web.
	classLabel = "governor.dev/class"
	bestEffort = "best-effort"
)

// Loops are the demo's loops, in the order they are shown.
var Loops = []string{LoopQoS, LoopScaling, LoopPriorities}

// The plant: the link the best-effort workloads share with robot-control. At full use the
// critical traffic's jitter is baseJitter + gain; each best-effort Pod starts with
// initialEgress, so the four of them fill the link.
const (
	linkCapacity  = 4000e6 // bits/s
	meanLatency   = 10 * time.Millisecond
	baseJitter    = 500 * time.Microsecond
	jitterGain    = 4 * time.Millisecond
	initialEgress = "1000M"
	flowRate      = 200 // robot-control's HTTP exchanges per second
	targetJitter  = 2.0 // ms, the bandwidth loop's target

	// The reactive pair's thresholds and window.
	cpuThreshold    = 80
	memoryThreshold = 85
	window          = 5
)

// The backlog: video-archive scales out, sending more, partway through a run long enough to
// show the bandwidth loop settle, then react again.
const (
	backlogReplicas    = 6
	backlogMinDuration = time.Minute
	backlogMinAt       = 30 * time.Second
)

// backlogAt is when the backlog starts, after the loops start; 0 when the run is too short
// to show it. A run without a duration has it at 40s.
func backlogAt(duration time.Duration) time.Duration {
	switch {
	case duration == 0:
		return 40 * time.Second
	case duration < backlogMinDuration:
		return 0
	default:
		return max(backlogMinAt, duration*2/5)
	}
}

// workload is one Deployment of the factory.
type workload struct {
	name, class string
	replicas    int32
	// egress is the governor.dev/egress-bandwidth it starts with ("": none).
	egress string
}

var workloads = []workload{
	{name: Critical, class: "critical", replicas: 2},
	{name: Telemetry, class: bestEffort, replicas: 2, egress: initialEgress},
	{name: Video, class: bestEffort, replicas: 2, egress: initialEgress},
	{name: Web, class: "web", replicas: 2},
}

// createFactory creates the namespace and the Deployments.
func createFactory(ctx context.Context, c client.Client) error {
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}); err != nil {
		return fmt.Errorf("creating namespace %s: %w", Namespace, err)
	}
	for _, w := range workloads {
		if err := c.Create(ctx, deployment(w)); err != nil {
			return fmt.Errorf("creating Deployment %s: %w", w.name, err)
		}
	}
	return nil
}

func deployment(w workload) *appsv1.Deployment {
	labels := map[string]string{"app": w.name, classLabel: w.class}
	container := corev1.Container{Name: "app", Image: "registry.example/factory/" + w.name + ":1",
		Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")}}}
	if w.name == Web {
		container.Resources = corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
		}
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: w.name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &w.replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": w.name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{container}},
			},
		},
	}
	if w.egress != "" {
		// As if granted before the loop took over: the bandwidth actuator's record on
		// the workload, which its propagation gives every Pod.
		d.Annotations = map[string]string{sim.WorkloadEgressAnnotation: w.egress}
	}
	return d
}

// scale sets a Deployment's replicas through its scale subresource.
func scale(ctx context.Context, c client.Client, name string, replicas int32) error {
	patch := client.RawPatch(types.MergePatchType, []byte(fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas)))
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: name}}
	return c.SubResource("scale").Patch(ctx, d, patch)
}

// The loops' specs.

func rawJSON(v any) *apiextensionsv1.JSON {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // static values
	}
	return &apiextensionsv1.JSON{Raw: b}
}

func seconds(d time.Duration) metav1.Duration { return metav1.Duration{Duration: d} }

// historyLimit is each loop's status.history bound: the demo reads it every half second,
// so that no entry is lost between two reads.
const historyLimit = 40

func loops() []*v1alpha1.ControlLoop {
	qos := &v1alpha1.ControlLoop{
		ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: LoopQoS},
		Spec: v1alpha1.ControlLoopSpec{
			Kind: v1alpha1.Reactive, State: v1alpha1.Running, Interval: seconds(500 * time.Millisecond),
			Policy: v1alpha1.PolicySpec{Bundle: "bandwidth", Decision: "governor/bandwidth/decision",
				Params: rawJSON(map[string]any{"target_jitter_ms": targetJitter, "cooldown_seconds": 30, "targets": []string{"telemetry", "video"}})},
			Collectors: []v1alpha1.CollectorSpec{{Name: "jitter", Hubble: &v1alpha1.HubbleCollector{
				Destination: &v1alpha1.FlowEndpoint{Namespace: Namespace, Workload: Critical},
				Window:      seconds(5 * time.Second)}}},
			Targets: []v1alpha1.TargetSpec{
				{Name: "telemetry", Ref: v1alpha1.TargetRef{Kind: "Deployment", Name: Telemetry}, Bandwidth: bandwidthBounds()},
				{Name: "video", Ref: v1alpha1.TargetRef{Kind: "Deployment", Name: Video}, Bandwidth: bandwidthBounds()},
			},
			Safety:       v1alpha1.SafetySpec{Cooldown: seconds(30 * time.Second), StaleAfter: seconds(10 * time.Second), MaxActions: 5},
			HistoryLimit: historyLimit,
		},
	}
	scaling := &v1alpha1.ControlLoop{
		ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: LoopScaling},
		Spec: v1alpha1.ControlLoopSpec{
			Kind: v1alpha1.Reactive, State: v1alpha1.Running, Interval: seconds(time.Second),
			Policy: v1alpha1.PolicySpec{Bundle: "reactive", Decision: "governor/reactive/decision",
				Params: rawJSON(map[string]any{
					"monitor": map[string]any{
						"cpu":    map[string]any{"kind": "superior", "threshold": cpuThreshold},
						"memory": map[string]any{"kind": "superior", "threshold": memoryThreshold},
					},
					"priorities": []string{"cpu", "memory"},
					"remedies": map[string]any{
						"cpu":    map[string]any{"target": "web", "scale": "replicas", "step": 1},
						"memory": map[string]any{"target": "web", "scale": "memory", "container": "app", "step": "64Mi"},
					},
				}),
				Overridable: []string{"priorities"},
			},
			Targets: []v1alpha1.TargetSpec{{
				Name: "web", Ref: v1alpha1.TargetRef{Kind: "Deployment", Name: Web},
				Replicas: &v1alpha1.ReplicaBounds{Min: 1, Max: 10},
				Resources: &v1alpha1.ResourceBounds{Containers: []string{"app"},
					Memory: &v1alpha1.QuantityRange{Min: resource.MustParse("64Mi"), Max: resource.MustParse("1Gi")}},
			}},
			Safety:       v1alpha1.SafetySpec{Cooldown: seconds(2 * time.Second), StaleAfter: seconds(10 * time.Second), MaxActions: 5},
			HistoryLimit: historyLimit,
		},
	}
	priorities := &v1alpha1.ControlLoop{
		ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: LoopPriorities},
		Spec: v1alpha1.ControlLoopSpec{
			Kind: v1alpha1.Deliberative, State: v1alpha1.Running, Interval: seconds(2 * time.Second),
			Policy: v1alpha1.PolicySpec{Bundle: "deliberative", Decision: "governor/deliberative/decision",
				Params: rawJSON(map[string]any{"window": window, "min_interval_seconds": 20})},
			Supervises:   LoopScaling,
			HistoryLimit: historyLimit,
		},
	}
	return []*v1alpha1.ControlLoop{qos, scaling, priorities}
}

func bandwidthBounds() *v1alpha1.BandwidthBounds {
	return &v1alpha1.BandwidthBounds{Min: resource.MustParse("10M"), Max: resource.MustParse("1000M")}
}

// load is the web tier's simulated load, as whole percentages of its requests: both above
// their thresholds all along (cpu 86-94 %, memory 88-94 %), in slow waves, so that the reactive
// loop always has two violations to rank and the deliberative loop a reason to rerank them.
// It ignores the remedies on purpose: the demo is about how the loops decide, and a load
// that fell with each remedy would end the story after a few ticks.
func load(since time.Duration) (cpu, memory float64) {
	s := since.Seconds()
	cpu = 90 + 4*math.Sin(2*math.Pi*s/37)
	memory = 91 + 3*math.Sin(2*math.Pi*s/53+1)
	return math.Round(cpu), math.Round(memory)
}

// observe writes the load into factory-scaling's status.observations (its metrics cpu and
// memory), as a managed system reporting on itself would.
func observe(ctx context.Context, c client.Client, cpu, memory float64, now time.Time) error {
	at := now.UTC().Format(time.RFC3339)
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"observations": map[string]any{
		"cpu":    map[string]any{"value": strconv.FormatFloat(cpu, 'f', -1, 64), "time": at},
		"memory": map[string]any{"value": strconv.FormatFloat(memory, 'f', -1, 64), "time": at},
	}}})
	if err != nil {
		return err
	}
	loop := &v1alpha1.ControlLoop{ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: LoopScaling}}
	return c.Status().Patch(ctx, loop, client.RawPatch(types.MergePatchType, patch))
}
