package cluster

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Timeouts for the envtest control plane. envtest's defaults (20 s) are
// ample on an idle machine, where etcd and kube-apiserver start in about
// 3 s, but parallel test packages on 2 cores can slow them a lot.
const (
	controlPlaneStartTimeout = 90 * time.Second
	controlPlaneStopTimeout  = 30 * time.Second
	kubectlTimeout           = 2 * time.Minute
)

// APIServer is a real kube-apiserver backed by a real etcd, started by
// envtest for one test and stopped in its t.Cleanup.
type APIServer struct {
	// Config connects as an admin (group system:masters) with a high QPS
	// limit.
	Config *rest.Config
	// Kubeconfig is the path of a kubeconfig file for the same admin user,
	// usable by kubectl and by other processes (controllers under test).
	Kubeconfig string
	// CertDir is the API server's certificate directory. It holds, among
	// others, sa-signer.key, the key that signs service account tokens.
	CertDir string
	// Env is the underlying envtest environment (for AddUser, the installed
	// CRDs, ...). Do not Stop it: t.Cleanup does.
	Env *envtest.Environment

	assets string
	logDir string
}

// StartAPIServer starts kube-apiserver and etcd from Assets() with envtest,
// installs the CRDs found in crdDirs (each must exist) and waits until
// they are established. The control plane is stopped in t.Cleanup. It
// fails the test (never skips it) when the binaries are missing.
func StartAPIServer(t testing.TB, crdDirs ...string) *APIServer {
	t.Helper()
	assets, err := Assets()
	if err != nil {
		t.Fatal(err)
	}
	logDir := t.TempDir()

	apiLog, err := newLogFile(filepath.Join(logDir, "kube-apiserver.log"), binAPIServer)
	if err != nil {
		t.Fatal(err)
	}
	etcdLog, err := newLogFile(filepath.Join(logDir, "etcd.log"), binEtcd)
	if err != nil {
		t.Fatal(err)
	}
	noExisting := false
	env := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		UseExistingCluster:       &noExisting,
		ControlPlaneStartTimeout: controlPlaneStartTimeout,
		ControlPlaneStopTimeout:  controlPlaneStopTimeout,
	}
	if len(crdDirs) > 0 {
		env.CRDDirectoryPaths = crdDirs
		env.ErrorIfCRDPathMissing = true
	}
	// Pin the binaries: envtest would otherwise prefer $KUBEBUILDER_ASSETS
	// or $TEST_ASSET_* over BinaryAssetsDirectory.
	apiServer := env.ControlPlane.GetAPIServer()
	apiServer.Path = filepath.Join(assets, binAPIServer)
	apiServer.Out, apiServer.Err = apiLog.f, apiLog.f
	env.ControlPlane.Etcd = &envtest.Etcd{
		Path: filepath.Join(assets, binEtcd),
		Out:  etcdLog.f,
		Err:  etcdLog.f,
	}
	env.ControlPlane.KubectlPath = filepath.Join(assets, binKubectl)

	s := &APIServer{Env: env, assets: assets, logDir: logDir}
	started := time.Now()
	cfg, startErr := env.Start()
	// Registered even when Start failed: it stops whatever did start. The
	// logs of etcd and kube-apiserver are shown when they failed to start
	// or stop, not for any failed test (their noise would bury the
	// failure).
	t.Cleanup(func() {
		stopErr := env.Stop()
		if stopErr != nil {
			t.Errorf("stopping kube-apiserver and etcd (logs below): %v", stopErr)
		}
		for _, l := range []*logFile{etcdLog, apiLog} {
			l.close()
			if startErr != nil || stopErr != nil {
				l.dump(t)
			}
		}
	})
	if startErr != nil {
		t.Fatalf("starting kube-apiserver and etcd (logs below): %v", startErr)
	}
	s.Config = cfg
	s.CertDir = apiServer.CertDir

	s.Kubeconfig = filepath.Join(logDir, "admin.kubeconfig")
	if err := os.WriteFile(s.Kubeconfig, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-apiserver %s ready in %v (kubeconfig %s)", cfg.Host, time.Since(started).Round(time.Millisecond), s.Kubeconfig)
	return s
}

// Kubectl runs bin/k8s/kubectl with the admin kubeconfig and args, and
// returns its combined stdout and stderr.
func (s *APIServer) Kubectl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), kubectlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.assets, binKubectl), append([]string{"--kubeconfig", s.Kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// KubectlApply writes manifest (YAML or JSON, several documents allowed) to
// a file and runs `kubectl apply -f` on it.
func (s *APIServer) KubectlApply(manifest string) (string, error) {
	f, err := os.CreateTemp(s.logDir, "manifest-*.yaml")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(manifest); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return s.Kubectl("apply", "-f", f.Name())
}
