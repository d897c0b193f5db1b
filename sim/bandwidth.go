package sim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The annotations the bandwidth-coupled plant reads: the egress bandwidth of a Pod as
// Cilium's bandwidth manager reads it, and the desired value Governor's bandwidth actuator
// records on the workload (both in bits per second, Kubernetes quantities such as "400M").
const (
	PodEgressAnnotation      = "kubernetes.io/egress-bandwidth"
	WorkloadEgressAnnotation = "governor.dev/egress-bandwidth"
)

// BandwidthConfig configures a Bandwidth plant.
type BandwidthConfig struct {
	// Client reads Deployments and Pods (a controller-runtime client; reads go to the API
	// server when it is not cached).
	Client client.Reader
	// Namespace of the best-effort Deployments; "" is every namespace.
	Namespace string
	// Selector picks the best-effort Deployments by their labels; nil is every Deployment
	// in Namespace.
	Selector labels.Selector
	// Capacity is the link's capacity in bits per second (> 0): an unlimited workload
	// takes all of it.
	Capacity float64
	// Mean is the critical workload's mean latency.
	Mean time.Duration
	// BaseJitter is its jitter on an idle link; Gain is what the jitter grows by when the
	// best-effort workloads are granted the whole capacity (or more).
	BaseJitter, Gain time.Duration
	// Interval between two reads of the API server; 200ms when 0.
	Interval time.Duration
}

// Bandwidth is a plant whose jitter grows with the egress bandwidth granted to best-effort
// workloads, read from the API server:
//
//	jitter = BaseJitter + Gain · min(1, egress/Capacity)
//
// where egress is the sum over the best-effort Deployments of what each may send:
//
//   - a Deployment with Pods (not terminating, not finished) sends the sum over them of each
//     Pod's kubernetes.io/egress-bandwidth, or when the Pod has none the Deployment's
//     governor.dev/egress-bandwidth, or when neither is set (or either is not a quantity:
//     Cilium ignores it) the whole Capacity: unlimited;
//   - a Deployment without Pods (the API server alone runs no kubelet) sends spec.replicas
//     (1 when unset) times its governor.dev/egress-bandwidth, or times Capacity.
//
// Until the first read, egress counts as 0. Run keeps it current.
type Bandwidth struct {
	cfg BandwidthConfig

	mu     sync.RWMutex
	egress float64
	read   time.Time
	err    error
}

// NewBandwidth returns a bandwidth-coupled plant; Run (or Poll) reads the API server.
func NewBandwidth(cfg BandwidthConfig) (*Bandwidth, error) {
	if cfg.Client == nil {
		return nil, errors.New("sim: BandwidthConfig.Client is nil")
	}
	if !(cfg.Capacity > 0) {
		return nil, fmt.Errorf("sim: BandwidthConfig.Capacity must be above 0, got %v", cfg.Capacity)
	}
	if cfg.Selector == nil {
		cfg.Selector = labels.Everything()
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 200 * time.Millisecond
	}
	return &Bandwidth{cfg: cfg}, nil
}

// Run reads the API server at once and then every Interval until ctx ends. A failed read
// keeps the last egress (Err reports it); Run returns ctx's error.
func (p *Bandwidth) Run(ctx context.Context) error {
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		_ = p.Poll(ctx)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Poll reads the best-effort Deployments and their Pods once and updates the egress.
func (p *Bandwidth) Poll(ctx context.Context) error {
	egress, err := p.total(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err = err
	if err == nil {
		p.egress, p.read = egress, time.Now()
	}
	return err
}

func (p *Bandwidth) total(ctx context.Context) (float64, error) {
	var deps appsv1.DeploymentList
	if err := p.cfg.Client.List(ctx, &deps, client.InNamespace(p.cfg.Namespace), client.MatchingLabelsSelector{Selector: p.cfg.Selector}); err != nil {
		return 0, fmt.Errorf("listing the best-effort Deployments: %w", err)
	}
	if len(deps.Items) == 0 {
		return 0, nil
	}
	var pods corev1.PodList
	if err := p.cfg.Client.List(ctx, &pods, client.InNamespace(p.cfg.Namespace)); err != nil {
		return 0, fmt.Errorf("listing Pods: %w", err)
	}
	total := 0.0
	for i := range deps.Items {
		total += p.deploymentEgress(&deps.Items[i], pods.Items)
	}
	return total, nil
}

func (p *Bandwidth) deploymentEgress(d *appsv1.Deployment, pods []corev1.Pod) float64 {
	perPod := p.quantity(d.Annotations[WorkloadEgressAnnotation])
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || sel.Empty() {
		sel = labels.Nothing()
	}
	sum, running := 0.0, 0
	for i := range pods {
		pod := &pods[i]
		if pod.Namespace != d.Namespace || pod.DeletionTimestamp != nil ||
			pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed ||
			!sel.Matches(labels.Set(pod.Labels)) {
			continue
		}
		running++
		if v, ok := pod.Annotations[PodEgressAnnotation]; ok {
			sum += p.quantity(v)
		} else {
			sum += perPod
		}
	}
	if running > 0 {
		return sum
	}
	replicas := int32(1)
	if d.Spec.Replicas != nil {
		replicas = *d.Spec.Replicas
	}
	return float64(replicas) * perPod
}

// quantity is an annotation's bits per second; absent or not a quantity is Capacity.
func (p *Bandwidth) quantity(s string) float64 {
	if s == "" {
		return p.cfg.Capacity
	}
	q, err := resource.ParseQuantity(s)
	if err != nil || q.Sign() < 0 {
		return p.cfg.Capacity
	}
	return q.AsApproximateFloat64()
}

// Egress returns the total egress bandwidth (bits/s) of the best-effort workloads at the
// last successful read, and when that was (zero before the first).
func (p *Bandwidth) Egress() (float64, time.Time) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.egress, p.read
}

// Err returns the error of the last read, nil when it succeeded.
func (p *Bandwidth) Err() error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.err
}

// Jitter returns the critical workload's jitter at the last read.
func (p *Bandwidth) Jitter() time.Duration {
	egress, _ := p.Egress()
	return p.JitterAt(egress)
}

// JitterAt is the jitter the plant has when the best-effort workloads may send egress
// bits per second.
func (p *Bandwidth) JitterAt(egress float64) time.Duration {
	load := min(1, max(0, egress/p.cfg.Capacity))
	return p.cfg.BaseJitter + time.Duration(load*float64(p.cfg.Gain))
}

// Latency implements Plant.
func (p *Bandwidth) Latency(_ time.Time, r *rand.Rand) time.Duration {
	return Draw(p.cfg.Mean, p.Jitter(), r)
}
