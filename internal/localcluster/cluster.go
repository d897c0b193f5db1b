package localcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

const (
	// KwokNodeAnnotation marks the Nodes kwok manages (kwok runs with
	// --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake).
	KwokNodeAnnotation = "kwok.x-k8s.io/node"
	kwokNodeValue      = "fake"

	// DefaultNodes is the number of fake Nodes Launch creates when
	// Options.Nodes is 0.
	DefaultNodes = 3

	// clusterReadyTimeout bounds Launch's wait for the components'
	// health and for Ready Nodes.
	clusterReadyTimeout = 2 * time.Minute
)

// Options configures Launch (within LaunchOptions) and
// test/cluster.StartCluster. The zero value is a usable cluster of DefaultNodes fake
// Nodes and no CRDs.
type Options struct {
	// CRDDirs are installed (and must exist), as for LaunchAPIServer.
	CRDDirs []string
	// Nodes is the number of fake Nodes (kwok-node-0, kwok-node-1, ...);
	// 0 means DefaultNodes.
	Nodes int
	// NodeAllocatable, when set, is each Node's capacity and allocatable;
	// otherwise kwok's defaults apply (cpu 1k, memory 1Ti, pods 1M).
	NodeAllocatable corev1.ResourceList
	// NodeLabels are added to every Node's labels.
	NodeLabels map[string]string
	// ControllerManagerArgs, SchedulerArgs and KwokArgs are appended to
	// the components' flags (a later flag overrides an earlier one).
	ControllerManagerArgs []string
	SchedulerArgs         []string
	KwokArgs              []string
}

// Cluster is a local cluster: a real kube-apiserver and etcd (APIServer),
// a real kube-controller-manager (deployment, replicaset, HPA, garbage
// collector and every other default controller) and kube-scheduler, and
// kwok playing the kubelet of fake Nodes: it keeps them Ready and moves the
// Pods scheduled to them to Running. No container ever runs.
type Cluster struct {
	*APIServer
	// Nodes are the names of the fake Nodes.
	Nodes []string
	// LogDir holds each component's log (<name>.log) and the kubeconfig.
	LogDir string

	procs    []*process // in start order
	stopOnce sync.Once
	stopErr  error
}

// Launch starts a Cluster and returns once kube-controller-manager and
// kube-scheduler are healthy and every Node is Ready and untainted, within
// 2 minutes. The caller must Stop it. On error (ctx ending included)
// everything started is stopped again, and the error names the log
// directory.
//
// kube-controller-manager runs with --horizontal-pod-autoscaler-sync-period=2s
// (upstream default 15s) so that the HPA controller reacts within seconds;
// override it with ControllerManagerArgs.
func Launch(ctx context.Context, opts LaunchOptions) (*Cluster, error) {
	started := time.Now()
	assets, err := assetsFor(opts.AssetsDir, KubeAPIServer, Etcd, Kubectl, KubeControllerManager, KubeScheduler, Kwok)
	if err != nil {
		return nil, err
	}
	opts.AssetsDir = assets
	s, err := LaunchAPIServer(ctx, opts)
	if err != nil {
		return nil, err
	}
	c := &Cluster{APIServer: s, LogDir: s.logDir}
	if err := c.start(ctx, opts); err != nil {
		// Keep the logs: they tell why.
		s.removeLogDir = false
		if stopErr := c.Stop(); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		return nil, fmt.Errorf("%w (logs in %s)", err, c.LogDir)
	}
	s.log.Info("cluster ready", "in", time.Since(started).Round(time.Millisecond),
		"nodes", strings.Join(c.Nodes, ", "), "logs", c.LogDir)
	return c, nil
}

// start starts the components on the running API server and waits for
// them and the Nodes.
func (c *Cluster) start(ctx context.Context, opts LaunchOptions) error {
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	kcmPort, schedPort, err := twoFreePorts()
	if err != nil {
		return err
	}
	kcm, err := c.startControllerManager(kcmPort, opts.ControllerManagerArgs)
	if err != nil {
		return err
	}
	sched, err := c.startScheduler(schedPort, opts.SchedulerArgs)
	if err != nil {
		return err
	}
	kwok, err := c.startKwok(opts.KwokArgs)
	if err != nil {
		return err
	}

	// Wait for readiness, but no longer once a component has exited.
	ctx, cancelTimeout := context.WithTimeout(ctx, clusterReadyTimeout)
	defer cancelTimeout()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-kcm.exited:
			cancel(kcm.exitErr())
		case <-sched.exited:
			cancel(sched.exitErr())
		case <-kwok.exited:
			cancel(kwok.exitErr())
		case <-ctx.Done():
		}
	}()
	if err := c.createNodes(ctx, cs, opts.Options); err != nil {
		return err
	}
	if err := kcm.waitHealthy(ctx, hostPort(kcmPort)); err != nil {
		return readyErr(ctx, "kube-controller-manager: %v", err)
	}
	if err := sched.waitHealthy(ctx, hostPort(schedPort)); err != nil {
		return readyErr(ctx, "kube-scheduler: %v", err)
	}
	if err := c.WaitForNodesReady(ctx); err != nil {
		return readyErr(ctx, "%v", err)
	}
	return nil
}

// twoFreePorts returns two different free ports: kube-controller-manager's
// and kube-scheduler's.
func twoFreePorts() (kcmPort, schedPort int, err error) {
	if kcmPort, err = freePort(); err != nil {
		return 0, 0, err
	}
	if schedPort, err = freePort(); err != nil {
		return 0, 0, err
	}
	for kcmPort == schedPort {
		if schedPort, err = freePort(); err != nil {
			return 0, 0, err
		}
	}
	return kcmPort, schedPort, nil
}

// startControllerManager starts kube-controller-manager on port, with
// extraArgs after its flags.
func (c *Cluster) startControllerManager(port int, extraArgs []string) (*process, error) {
	args := append(c.componentArgs(port),
		// Every default controller: deployment, replicaset,
		// horizontalpodautoscaling, garbagecollector, namespace,
		// serviceaccount, nodelifecycle, ...
		"--controllers=*",
		// The serviceaccount-token controller signs with the key envtest
		// gave the API server (--service-account-signing-key-file).
		"--service-account-private-key-file="+filepath.Join(c.CertDir, "sa-signer.key"),
		"--use-service-account-credentials=false",
		"--horizontal-pod-autoscaler-sync-period=2s")
	return c.startProcess(KubeControllerManager, append(args, extraArgs...), nil)
}

// startScheduler starts kube-scheduler on port, with extraArgs after its
// flags.
func (c *Cluster) startScheduler(port int, extraArgs []string) (*process, error) {
	return c.startProcess(KubeScheduler, append(c.componentArgs(port), extraArgs...), nil)
}

// componentArgs are the flags kube-controller-manager and kube-scheduler
// share: the admin's kubeconfig, no leader election, the secure port on
// loopback, and the client's rate.
func (c *Cluster) componentArgs(port int) []string {
	return []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", port),
		"--kube-api-qps=200",
		"--kube-api-burst=400",
	}
}

// startKwok starts kwok with the stages of the assets directory, with
// extraArgs after its flags.
func (c *Cluster) startKwok(extraArgs []string) (*process, error) {
	args := []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=" + KwokNodeAnnotation + "=" + kwokNodeValue,
		// Pod IPs (kwok's default, 10.0.0.0/24, has room for 254 Pods).
		"--cidr=10.244.0.0/16",
		// kwok renews a Lease per Node in kube-node-lease, as the kubelet
		// does, so the node lifecycle controller never sees a Node go
		// silent. (Without a KwokConfiguration file the flag defaults to
		// 0: no Leases, only the node-heartbeat stage's status updates
		// every 20-25 s.)
		"--node-lease-duration-seconds=40",
	}
	for _, f := range stageFiles {
		args = append(args, "--config="+filepath.Join(c.assets, "stages", f))
	}
	args = append(args, extraArgs...)
	// kwok also loads ~/.kwok/kwok.yaml when it exists: give it a HOME of
	// its own so that nothing outside configures it.
	kwokHome := filepath.Join(c.LogDir, "kwok-home")
	if err := os.MkdirAll(kwokHome, 0o755); err != nil {
		return nil, err
	}
	return c.startProcess(Kwok, args, []string{"HOME=" + kwokHome})
}

// createNodes creates the fake Nodes of opts (DefaultNodes when
// opts.Nodes is 0) and records their names.
func (c *Cluster) createNodes(ctx context.Context, cs kubernetes.Interface, opts Options) error {
	n := opts.Nodes
	if n <= 0 {
		n = DefaultNodes
	}
	for i := range n {
		name := fmt.Sprintf("kwok-node-%d", i)
		if _, err := cs.CoreV1().Nodes().Create(ctx, fakeNode(name, opts), metav1.CreateOptions{}); err != nil {
			return readyErr(ctx, "creating Node %s: %v", name, err)
		}
		c.Nodes = append(c.Nodes, name)
	}
	return nil
}

// readyErr is an error of the wait for the cluster, with the reason ctx
// was cancelled when it is more than ctx's own error: a component's exit.
func readyErr(ctx context.Context, format string, args ...any) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, ctx.Err()) {
		format += " (%v)"
		args = append(args, cause)
	}
	return fmt.Errorf(format, args...)
}

// startProcess starts the component name from the assets directory.
func (c *Cluster) startProcess(name string, args, env []string) (*process, error) {
	p, err := startProcess(c.LogDir, name, filepath.Join(c.assets, name), args, env)
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, p)
	return p, nil
}

// Stop stops kwok, kube-scheduler, kube-controller-manager (SIGTERM, then
// SIGKILL after 10 s), then kube-apiserver and etcd. A component that had
// exited on its own is reported by the Logger and Err, not by Stop. The
// log directory is removed if Launch made it and everything stopped well.
// Calling Stop again returns the first call's result.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		for i := len(c.procs) - 1; i >= 0; i-- {
			p := c.procs[i]
			if err := p.exitErr(); err != nil {
				c.log.Info("component had already exited", "component", p.name, "error", p.err)
			} else if killed := p.stop(); killed {
				c.log.Info("component did not stop within 10s of SIGTERM: killed", "component", p.name)
			}
			p.log.close()
		}
		c.stopErr = c.APIServer.Stop()
	})
	return c.stopErr
}

// Err reports a component (kube-controller-manager, kube-scheduler, kwok)
// that has exited on its own since Launch, with its exit status and log;
// nil while all run.
func (c *Cluster) Err() error {
	var errs []error
	for _, p := range c.procs {
		if err := p.exitErr(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// fakeNode is a Node as kwok expects one: annotated for kwok, no taints.
func fakeNode(name string, opts Options) *corev1.Node {
	labels := map[string]string{
		"kubernetes.io/hostname":        name,
		"kubernetes.io/os":              "linux",
		"kubernetes.io/arch":            "amd64",
		"kubernetes.io/role":            "agent",
		"node-role.kubernetes.io/agent": "",
		"type":                          "kwok",
	}
	for k, v := range opts.NodeLabels {
		labels[k] = v
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:   name,
			Labels: labels,
			Annotations: map[string]string{
				KwokNodeAnnotation:             kwokNodeValue,
				"node.alpha.kubernetes.io/ttl": "0",
			},
		},
	}
	if len(opts.NodeAllocatable) > 0 {
		node.Status.Capacity = opts.NodeAllocatable.DeepCopy()
		node.Status.Allocatable = opts.NodeAllocatable.DeepCopy()
	}
	return node
}

// WaitForNodesReady waits until every Node of the cluster is Ready and
// carries no NoSchedule or NoExecute taint (the node lifecycle controller
// taints a Node until it is Ready), or ctx ends.
func (c *Cluster) WaitForNodesReady(ctx context.Context) error {
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	var notReady []string
	for {
		notReady = notReady[:0]
		for _, name := range c.Nodes {
			node, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				notReady = append(notReady, fmt.Sprintf("%s (%v)", name, err))
				continue
			}
			if why := nodeNotReady(node); why != "" {
				notReady = append(notReady, name+" ("+why+")")
			}
		}
		if len(notReady) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nodes not ready: %s: %w", strings.Join(notReady, ", "), ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// nodeNotReady says why a Node is not ready and schedulable, or "".
func nodeNotReady(node *corev1.Node) string {
	ready := false
	for _, cond := range node.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			ready = cond.Status == corev1.ConditionTrue
		}
	}
	if !ready {
		return "not Ready"
	}
	for _, taint := range node.Spec.Taints {
		if taint.Effect == corev1.TaintEffectNoSchedule || taint.Effect == corev1.TaintEffectNoExecute {
			return "tainted " + taint.Key
		}
	}
	if node.Spec.Unschedulable {
		return "unschedulable"
	}
	return ""
}
