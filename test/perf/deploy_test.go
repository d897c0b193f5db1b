//go:build integration && linux

package perf

import (
	"bufio"
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
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/controller"
	"governor.dev/governor/test/cluster"
	"governor.dev/governor/test/testkeys"
)

// repo is the repository root, relative to this package.
const repo = "../.."

// What config/default makes: the namespace, the controller's
// ServiceAccount and Deployment (namePrefix governor-).
const (
	systemNamespace = "governor-system"
	serviceAccount  = "governor-controller-manager"
	manager         = "governor-controller-manager"
)

// deployment is a local cluster with config/default applied: the CRD, the
// ServiceAccount and its RBAC, and the manager's Deployment (whose Pods kwok
// pretends to run: nothing of them executes), plus a kubeconfig that
// authenticates as that ServiceAccount, for bin/governor to run with.
type deployment struct {
	cluster *cluster.Cluster
	// admin is the benchmark's own client (system:masters): it makes the
	// workloads and loops and reads the results.
	admin client.Client
	cs    kubernetes.Interface
	// kubeconfig holds a token of the controller's ServiceAccount.
	kubeconfig string
	// args are those of the manager container in config/default, as kubectl
	// would apply them.
	args []string
}

// deploy starts the local cluster and applies config/default to it as a
// user would (kubectl apply --server-side -k config/default).
func deploy(b *testing.B) *deployment {
	b.Helper()
	if _, err := os.Stat(filepath.Join(repo, "bin", "governor")); err != nil {
		b.Fatal("bin/governor is missing: make build (make bench builds it)")
	}
	c := cluster.StartCluster(b, cluster.Options{})
	kubectl := func(args ...string) string {
		b.Helper()
		out, err := c.Kubectl(args...)
		if err != nil {
			b.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	config := filepath.Join(repo, "config", "default")
	kubectl("apply", "--server-side", "-k", config)
	kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/controlloops.governor.dev")

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		b.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		b.Fatal(err)
	}
	admin, err := client.New(c.Config, client.Options{Scheme: scheme})
	if err != nil {
		b.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		b.Fatal(err)
	}
	return &deployment{
		cluster:    c,
		admin:      admin,
		cs:         cs,
		kubeconfig: serviceAccountKubeconfig(b, c, cs),
		args:       managerArgs(b, kubectl("kustomize", config)),
	}
}

// serviceAccountKubeconfig mints a token for the controller's ServiceAccount
// (TokenRequest, as the kubelet does for a Pod) and writes a kubeconfig
// that uses it.
func serviceAccountKubeconfig(b *testing.B, c *cluster.Cluster, cs kubernetes.Interface) string {
	b.Helper()
	tr, err := cs.CoreV1().ServiceAccounts(systemNamespace).CreateToken(context.Background(), serviceAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](24 * 3600)}},
		metav1.CreateOptions{})
	if err != nil {
		b.Fatalf("token for ServiceAccount %s/%s: %v", systemNamespace, serviceAccount, err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: c.Config.Host, CertificateAuthorityData: c.Config.CAData}
	cfg.AuthInfos[serviceAccount] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["governor"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: serviceAccount, Namespace: systemNamespace}
	cfg.CurrentContext = "governor"
	path := filepath.Join(b.TempDir(), "governor.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		b.Fatal(err)
	}
	return path
}

// managerArgs are the args of the manager container of the Deployment in
// the rendered kustomization.
func managerArgs(b *testing.B, rendered string) []string {
	b.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(rendered)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
		var d appsv1.Deployment
		if err := yaml.Unmarshal(doc, &d); err != nil || d.Kind != "Deployment" || d.Name != manager {
			continue
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			if c.Name == "manager" {
				return c.Args
			}
		}
	}
	b.Fatalf("config/default renders no Deployment %s with a container manager", manager)
	return nil
}

// governor is bin/governor run by a benchmark.
type governor struct {
	cmd                      *exec.Cmd
	log                      string
	probe, metrics, pushAddr string
	// pushURL and client reach the push endpoint: HTTPS when the manifest
	// serves it so.
	pushURL string
	client  *http.Client
	// flush is its --status-flush-interval.
	flush  time.Duration
	exited chan struct{}
	err    error // once exited is closed
}

// start runs bin/governor with the manifest's args, as deployed: only what
// holds inside a Pod alone is made to hold on this host, shared with other
// programs: the bundles are the repository's policies/ (the image's
// /policies, Dockerfile), the endpoints listen on free loopback ports
// (a Pod has ports of its own), the Lease is in the ServiceAccount's
// namespace (which a Pod reads from its ServiceAccount mount), and the
// kubeconfig is the ServiceAccount's. extra flags come last (a later flag
// wins): benchmarks that vary a flag say so in their names.
func (d *deployment) start(b *testing.B, extra ...string) *governor {
	b.Helper()
	g := &governor{
		log:   filepath.Join(b.TempDir(), "governor.log"),
		probe: freeAddr(b), metrics: freeAddr(b), pushAddr: freeAddr(b),
		exited: make(chan struct{}),
	}
	bundles, err := filepath.Abs(filepath.Join(repo, "policies"))
	if err != nil {
		b.Fatal(err)
	}
	// The push endpoint's certificate: the Secret the Deployment mounts
	// holds one a CA of the cluster's issued; here a CA of the benchmark's.
	ca := testkeys.NewCA(b, "push-ca")
	cert := ca.Server(b, "push")
	dir := b.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, cert.CertPEM, 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(keyFile, cert.KeyPEM, 0o600); err != nil {
		b.Fatal(err)
	}
	var args []string
	seen := map[string]bool{}
	for _, a := range d.args {
		name, _, _ := strings.Cut(a, "=")
		seen[name] = true
		switch name {
		case "--bundles":
			a = "--bundles=" + bundles
		case "--metrics-bind-address":
			a = name + "=" + g.metrics
		case "--health-probe-bind-address":
			a = name + "=" + g.probe
		case "--push-tls-cert":
			a = name + "=" + certFile
		case "--push-tls-key":
			a = name + "=" + keyFile
		}
		args = append(args, a)
	}
	g.pushURL, g.client = "http://"+g.pushAddr, http.DefaultClient
	if seen["--push-tls-cert"] {
		pool := x509.NewCertPool()
		pool.AddCert(ca.X509)
		g.pushURL = "https://" + g.pushAddr
		g.client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	}
	for _, name := range []string{"run", "--bundles", "--metrics-bind-address", "--health-probe-bind-address"} {
		if !seen[name] {
			b.Fatalf("config/manager/manager.yaml's args %q lack %s: update test/perf", d.args, name)
		}
	}
	args = append(args, "--push-bind-address="+g.pushAddr, "--kubeconfig="+d.kubeconfig,
		"--leader-election-namespace="+systemNamespace)
	args = append(args, extra...)
	g.flush = statusFlush(b, args)

	logFile, err := os.Create(g.log)
	if err != nil {
		b.Fatal(err)
	}
	g.cmd = exec.Command(filepath.Join(repo, "bin", "governor"), args...)
	g.cmd.Stdout, g.cmd.Stderr = logFile, logFile
	// Killed with the benchmark if it dies without stopping it (a panic,
	// go test's -timeout), as the control plane's components are.
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := g.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Logf("bin/governor %s", strings.Join(args, " "))
	go func() {
		g.err = g.cmd.Wait()
		_ = logFile.Close() // its content is all written
		close(g.exited)
	}()
	b.Cleanup(func() { g.stop(b) })
	g.waitLeader(b, d)
	return g
}

// waitLeader waits until governor is ready and holds the leader Lease.
func (g *governor) waitLeader(b *testing.B, d *deployment) {
	b.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		g.check(b)
		var lease coordinationv1.Lease
		err := d.admin.Get(context.Background(), types.NamespacedName{Namespace: systemNamespace, Name: controller.LeaderElectionID}, &lease)
		if err == nil && lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity != "" && g.ready() {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("governor not ready and leading after 2 minutes (lease: %v)\n%s", err, g.tail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (g *governor) ready() bool {
	resp, err := http.Get("http://" + g.probe + "/readyz")
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// check fails the benchmark when governor has exited.
func (g *governor) check(b *testing.B) {
	b.Helper()
	select {
	case <-g.exited:
		b.Fatalf("governor exited: %v\n%s", g.err, g.tail())
	default:
	}
}

// stop sends SIGTERM and waits (a clean stop hands the Lease back, so that
// the next governor leads at once); it fails the benchmark when governor
// had exited on its own or does not stop.
func (g *governor) stop(b *testing.B) {
	b.Helper()
	select {
	case <-g.exited:
		b.Errorf("governor exited before the end: %v\n%s", g.err, g.tail())
		return
	default:
	}
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.exited:
		if g.err != nil {
			b.Errorf("governor stopped with %v\n%s", g.err, g.tail())
		}
	case <-time.After(30 * time.Second):
		_ = g.cmd.Process.Kill()
		<-g.exited
		b.Errorf("governor did not stop within 30s of SIGTERM\n%s", g.tail())
	}
}

// tail is the end of governor's log.
func (g *governor) tail() string {
	out, err := os.ReadFile(g.log)
	if err != nil {
		return err.Error()
	}
	if len(out) > 8000 {
		out = out[len(out)-8000:]
	}
	return "governor's log, end:\n" + string(out)
}

// push reports observations of a loop to governor's push endpoint, as a
// managed system does.
func (g *governor) push(ns, loop, token string, values map[string]float64) error {
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
	req, err := http.NewRequest(http.MethodPost, g.pushURL+"/v1/loops/"+ns+"/"+loop+"/observations", &body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := g.client.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusNoContent {
		msg, _ := io.ReadAll(resp.Body)
		err := fmt.Errorf("push to %s/%s: %s %s", ns, loop, resp.Status, msg)
		if resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusTooManyRequests {
			err = fmt.Errorf("%w: %w", errTryAgain, err)
		}
		return err
	}
	return nil
}

// errTryAgain is a push refused for now: the API server did not take the
// observation in time, or the endpoint's rate limit (429) held it.
var errTryAgain = errors.New("try again later")

// namespace makes a namespace with the push token Secret "reporter".
func (d *deployment) namespace(b *testing.B, name string) {
	b.Helper()
	ctx := context.Background()
	if err := d.admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		b.Fatal(err)
	}
	if err := d.admin.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: name, Name: "reporter"},
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
		err := d.admin.Create(ctx, &appsv1.Deployment{
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
		if err := d.admin.List(ctx, &pods, client.InNamespace(ns)); err != nil {
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

// freeAddr is a loopback address with a port free right now.
func freeAddr(b *testing.B) string {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}
