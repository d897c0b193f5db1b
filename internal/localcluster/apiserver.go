package localcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-logr/logr"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
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

// LaunchOptions configures Launch and LaunchAPIServer. The zero value
// works from within the repository: the binaries of Assets(), a temporary
// directory for the logs, no CRDs and (Launch) DefaultNodes fake Nodes.
type LaunchOptions struct {
	// Options: the CRDs to install from directories, and for Launch
	// the fake Nodes and the components' extra flags (LaunchAPIServer uses
	// only CRDDirs).
	Options

	// AssetsDir holds the binaries (kube-apiserver, etcd, kubectl, and for
	// Launch kube-controller-manager, kube-scheduler, kwok and stages/), as
	// `make envtest-assets` builds them into bin/k8s. "" is Assets(), found
	// from the working directory. A missing binary is a *MissingAssetsError.
	AssetsDir string
	// LogDir receives each component's log (<name>.log) and the admin
	// kubeconfig (admin.kubeconfig); it is created if need be. "" is a new
	// temporary directory, which Stop removes when everything stopped well.
	LogDir string
	// Logger reports progress: each component ready and how long it took.
	// The zero value discards it.
	Logger logr.Logger
	// CRDs are installed as well as those of CRDDirs; the start waits until
	// every one is established.
	CRDs []*apiextensionsv1.CustomResourceDefinition
}

// APIServer is a real kube-apiserver backed by a real etcd, started by
// envtest (LaunchAPIServer; test/cluster.StartAPIServer for a test).
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
	// CRDs, ...). Do not Stop it: Stop (or t.Cleanup) does.
	Env *envtest.Environment

	assets       string
	logDir       string
	removeLogDir bool
	logs         []*logFile
	log          logr.Logger

	stopOnce sync.Once
	stopErr  error
}

// LaunchAPIServer starts kube-apiserver and etcd with envtest, installs
// the CRDs of opts (CRDDirs, which must exist, and CRDs) and waits until
// they are established. The caller must Stop it. On error nothing is left
// running; the error names the log directory when it is kept.
//
// envtest's start cannot be interrupted: a ctx that ends meanwhile makes
// LaunchAPIServer stop the control plane once it is up and return ctx's
// error.
func LaunchAPIServer(ctx context.Context, opts LaunchOptions) (*APIServer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	assets, err := assetsFor(opts.AssetsDir, KubeAPIServer, Etcd, Kubectl)
	if err != nil {
		return nil, err
	}
	logDir, removeLogDir, err := makeLogDir(opts.LogDir)
	if err != nil {
		return nil, err
	}
	s := &APIServer{assets: assets, logDir: logDir, removeLogDir: removeLogDir, log: opts.Logger}
	fail := func(err error) (*APIServer, error) {
		s.closeLogs()
		return nil, fmt.Errorf("%w (logs in %s)", err, logDir)
	}

	apiLog, err := newLogFile(filepath.Join(logDir, KubeAPIServer+".log"), KubeAPIServer)
	if err != nil {
		return fail(err)
	}
	s.logs = append(s.logs, apiLog)
	etcdLog, err := newLogFile(filepath.Join(logDir, Etcd+".log"), Etcd)
	if err != nil {
		return fail(err)
	}
	s.logs = append(s.logs, etcdLog)

	noExisting := false
	env := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		UseExistingCluster:       &noExisting,
		ControlPlaneStartTimeout: controlPlaneStartTimeout,
		ControlPlaneStopTimeout:  controlPlaneStopTimeout,
	}
	if len(opts.CRDDirs) > 0 {
		env.CRDDirectoryPaths = opts.CRDDirs
		env.ErrorIfCRDPathMissing = true
	}
	env.CRDs = opts.CRDs
	// Pin the binaries: envtest would otherwise prefer $KUBEBUILDER_ASSETS
	// or $TEST_ASSET_* over BinaryAssetsDirectory.
	apiServer := env.ControlPlane.GetAPIServer()
	apiServer.Path = filepath.Join(assets, KubeAPIServer)
	apiServer.Out, apiServer.Err = apiLog.f, apiLog.f
	env.ControlPlane.Etcd = &envtest.Etcd{
		Path: filepath.Join(assets, Etcd),
		Out:  etcdLog.f,
		Err:  etcdLog.f,
	}
	env.ControlPlane.KubectlPath = filepath.Join(assets, Kubectl)
	s.Env = env

	started := time.Now()
	cfg, err := env.Start()
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		// Stop whatever did start (envtest stops what it can).
		if stopErr := env.Stop(); stopErr != nil {
			err = errors.Join(err, fmt.Errorf("stopping: %w", stopErr))
		}
		if ctx.Err() != nil {
			return fail(err)
		}
		return fail(fmt.Errorf("starting kube-apiserver and etcd: %w", err))
	}
	s.Config = cfg
	s.CertDir = apiServer.CertDir

	s.Kubeconfig = filepath.Join(logDir, "admin.kubeconfig")
	if err := os.WriteFile(s.Kubeconfig, env.KubeConfig, 0o600); err != nil {
		_ = env.Stop()
		return fail(err)
	}
	s.log.Info("kube-apiserver ready", "host", cfg.Host, "in", time.Since(started).Round(time.Millisecond), "kubeconfig", s.Kubeconfig)
	return s, nil
}

// Stop stops kube-apiserver and etcd and closes their logs; the log
// directory is removed if LaunchAPIServer made it and both stopped well.
// Calling Stop again returns the first call's result.
func (s *APIServer) Stop() error {
	s.stopOnce.Do(func() {
		if err := s.Env.Stop(); err != nil {
			s.stopErr = fmt.Errorf("stopping kube-apiserver and etcd: %w (logs in %s)", err, s.logDir)
		}
		s.closeLogs()
		if s.stopErr == nil && s.removeLogDir {
			_ = os.RemoveAll(s.logDir)
		}
	})
	return s.stopErr
}

// AssetsDir is the directory the binaries were run from.
func (s *APIServer) AssetsDir() string { return s.assets }

func (s *APIServer) closeLogs() {
	for _, l := range s.logs {
		l.close()
	}
}

// makeLogDir returns dir, created if need be, or a new temporary directory
// (and true: the caller removes it).
func makeLogDir(dir string) (string, bool, error) {
	if dir == "" {
		d, err := os.MkdirTemp("", "governor-cluster-")
		if err != nil {
			return "", false, fmt.Errorf("localcluster: log directory: %w", err)
		}
		return d, true, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", false, fmt.Errorf("localcluster: log directory: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", false, fmt.Errorf("localcluster: log directory: %w", err)
	}
	return abs, false, nil
}

// Kubectl runs bin/k8s/kubectl with the admin kubeconfig and args, and
// returns its combined stdout and stderr.
func (s *APIServer) Kubectl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), kubectlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.assets, Kubectl), append([]string{"--kubeconfig", s.Kubeconfig}, args...)...)
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
	// Best effort: a manifest left behind is only a file in the log directory
	// (which Stop removes if it made it); the apply's result is what the
	// caller needs.
	defer func() { _ = os.Remove(f.Name()) }()
	if _, err := f.WriteString(manifest); err != nil {
		_ = f.Close() // the write error is the one to report
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return s.Kubectl("apply", "-f", f.Name())
}
