//go:build integration && linux

// Package deployed runs governor as config/default (or an overlay of it,
// such as config/namespaced) deploys it, for the tests and benchmarks about
// governor as shipped (test/perf, and test/integration's least privilege,
// metrics and scopes): a local cluster (test/cluster) with the configuration
// applied as a user would (kubectl apply --server-side -k),
// a kubeconfig with a token of the controller's ServiceAccount (TokenRequest,
// as the kubelet mints one for a Pod), and `governor run` with the args of
// the manager container. Only what a Pod has of its own differs: listen
// addresses (free loopback ports), the bundles' directory, the Lease's
// namespace (a Pod reads it from its ServiceAccount mount) and the push
// endpoint's certificate. Linux only (the process dies with the test:
// Pdeathsig).
package deployed

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"governor.dev/governor/controller"
	"governor.dev/governor/test/cluster"
)

// What config/default makes (namePrefix governor-, namespace
// governor-system).
const (
	SystemNamespace = "governor-system"
	ServiceAccount  = "governor-controller-manager"
	Manager         = "governor-controller-manager"
	// ClusterRole and Role of the controller, and the ClusterRole whose
	// subjects may read the metrics endpoint.
	ClusterRole        = "governor-manager-role"
	LeaderElectionRole = "governor-leader-election-role"
	MetricsReader      = "governor-metrics-reader"
)

// Deployment is a local cluster with config/default (or an overlay of it)
// applied: the CRD, the ServiceAccount and its RBAC, the admission policy,
// and the manager's Deployment (whose Pods kwok pretends to run: nothing of
// them executes).
type Deployment struct {
	// API is the cluster's API server (a whole cluster's, for Deploy).
	API *cluster.APIServer
	// Root is the repository's root directory, Config the kustomization
	// applied (relative to Root) and Applied kubectl apply's output.
	Root, Config, Applied string
	// Admin is a client of the test's own (system:masters): it makes
	// workloads and loops and reads the results. Clientset is the same
	// user's.
	Admin     client.Client
	Clientset kubernetes.Interface
	// Kubeconfig authenticates as the controller's ServiceAccount.
	Kubeconfig string
	// Args are those of the manager container, as kubectl applied them.
	Args []string
	// Binary is the governor binary Start runs, with Env added to the
	// test's environment.
	Binary string
	Env    []string
	// MemoryLimit is the manager container's memory limit (0: none): Start
	// bounds the heap by it as governor does in the container (GOMEMLIMIT,
	// 80 % of the cgroup's limit: heapShare in cmd/governor), since a
	// process here has no such cgroup.
	MemoryLimit int64
}

// Deploy starts a local cluster (workloads get Pods) and applies
// config/default to it. binary is the governor that Start runs.
func Deploy(t testing.TB, binary string, opts cluster.Options) *Deployment {
	t.Helper()
	checkBinary(t, binary)
	return DeployOn(t, binary, cluster.StartCluster(t, opts).APIServer)
}

// DeployOn applies config/default to a running API server.
func DeployOn(t testing.TB, binary string, api *cluster.APIServer) *Deployment {
	t.Helper()
	return DeployConfigOn(t, binary, api, "config/default")
}

// DeployConfigOn applies a kustomization of the repository (config/default
// or an overlay of it, such as config/namespaced) to a running API server.
func DeployConfigOn(t testing.TB, binary string, api *cluster.APIServer, kustomization string) *Deployment {
	t.Helper()
	checkBinary(t, binary)
	root := repoRoot(t)
	d := &Deployment{API: api, Root: root, Config: kustomization, Binary: binary}
	config := filepath.Join(root, kustomization)
	d.Applied = d.Kubectl(t, "apply", "--server-side", "-k", config)
	d.Kubectl(t, "wait", "--for=condition=Established", "--timeout=60s", "crd/controlloops.governor.dev")
	var err error
	if d.Admin, err = client.New(api.Config, client.Options{Scheme: controller.Scheme()}); err != nil {
		t.Fatal(err)
	}
	if d.Clientset, err = kubernetes.NewForConfig(api.Config); err != nil {
		t.Fatal(err)
	}
	d.Kubeconfig = d.kubeconfig(t, d.Token(t, SystemNamespace, ServiceAccount))
	manager := managerContainer(t, d.Kubectl(t, "kustomize", config), kustomization)
	d.Args, d.MemoryLimit = manager.Args, manager.Resources.Limits.Memory().Value()
	return d
}

// checkBinary fails the test when the governor binary is missing.
func checkBinary(t testing.TB, binary string) {
	t.Helper()
	if _, err := os.Stat(binary); err != nil {
		t.Fatalf("governor binary %s is missing: make build", binary)
	}
}

// Kubectl runs kubectl as the admin; an error fails the test.
func (d *Deployment) Kubectl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := d.API.Kubectl(args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// Token mints a token of a ServiceAccount (TokenRequest, valid a day).
func (d *Deployment) Token(t testing.TB, namespace, name string) string {
	t.Helper()
	tr, err := d.Clientset.CoreV1().ServiceAccounts(namespace).CreateToken(context.Background(), name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](24 * 3600)}},
		metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for ServiceAccount %s/%s: %v", namespace, name, err)
	}
	return tr.Status.Token
}

// MetricsToken is a token of a ServiceAccount bound to the ClusterRole
// governor-metrics-reader, as Prometheus' would be: what scrapes the
// metrics endpoint as deployed.
func (d *Deployment) MetricsToken(t testing.TB) string {
	t.Helper()
	const name = "metrics-scraper"
	ctx := context.Background()
	for _, obj := range []client.Object{
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: SystemNamespace, Name: name}},
		&rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: MetricsReader},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: SystemNamespace, Name: name}},
		},
	} {
		if err := d.Admin.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	return d.Token(t, SystemNamespace, name)
}

// kubeconfig writes a kubeconfig that authenticates with token.
func (d *Deployment) kubeconfig(t testing.TB, token string) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: d.API.Config.Host, CertificateAuthorityData: d.API.Config.CAData}
	cfg.AuthInfos[ServiceAccount] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["governor"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: ServiceAccount, Namespace: SystemNamespace}
	cfg.CurrentContext = "governor"
	path := filepath.Join(t.TempDir(), "governor.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// managerContainer is the manager container of the Deployment in the
// rendered kustomization.
func managerContainer(t testing.TB, rendered, kustomization string) corev1.Container {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(rendered)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var d appsv1.Deployment
		if err := yaml.Unmarshal(doc, &d); err != nil || d.Kind != "Deployment" || d.Name != Manager {
			continue
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			if c.Name == "manager" {
				return c
			}
		}
	}
	t.Fatalf("%s renders no Deployment %s with a container manager", kustomization, Manager)
	return corev1.Container{}
}

// repoRoot is the repository's root: the nearest directory above the
// working directory (a test's package) with config/default.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "config", "default", "kustomization.yaml")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no repository root (config/default) above the working directory")
		}
		dir = parent
	}
}

// ArgValue is the value governor takes for --name from args (the last
// --name=value wins), and whether args give one.
func ArgValue(args []string, name string) (string, bool) {
	var v string
	found := false
	for _, a := range args {
		if s, ok := strings.CutPrefix(a, name+"="); ok {
			v, found = s, true
		}
	}
	return v, found
}
