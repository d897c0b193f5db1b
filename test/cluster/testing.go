package cluster

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/go-logr/logr/testr"

	"governor.dev/governor/internal/localcluster"
)

// The components whose logs a failure shows: those of StartAPIServer, and
// those StartCluster adds.
var (
	apiServerLogs = []string{localcluster.Etcd, localcluster.KubeAPIServer}
	nodeLogs      = []string{localcluster.KubeControllerManager, localcluster.KubeScheduler, localcluster.Kwok}
)

// StartAPIServer starts kube-apiserver and etcd from the repository's
// bin/k8s with envtest (localcluster.LaunchAPIServer), installs the CRDs
// found in crdDirs (each must exist) and waits until they are established. The control plane is stopped in
// t.Cleanup. It fails the test (never skips it) when the binaries are
// missing; the logs of etcd and kube-apiserver are shown when they fail to
// start or stop, not for any failed test (their noise would bury the
// failure).
func StartAPIServer(t testing.TB, crdDirs ...string) *APIServer {
	t.Helper()
	assets, err := localcluster.Assets()
	if err != nil {
		t.Fatal(err)
	}
	logDir := t.TempDir()
	s, err := localcluster.LaunchAPIServer(context.Background(), localcluster.LaunchOptions{
		Options:   Options{CRDDirs: crdDirs},
		AssetsDir: assets,
		LogDir:    logDir,
		Logger:    testr.NewWithInterface(t, testr.Options{}),
	})
	if err != nil {
		dumpLogs(t, logDir, apiServerLogs...)
		t.Fatalf("%v (logs above)", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			dumpLogs(t, logDir, apiServerLogs...)
			t.Errorf("%v (logs above)", err)
		}
	})
	return s
}

// StartCluster starts a Cluster from the repository's bin/k8s
// (localcluster.Launch) and returns once kube-controller-manager and
// kube-scheduler are healthy and every Node is Ready and untainted. Everything is stopped in t.Cleanup; when the test
// has failed, the end of each component's log is shown.
//
// kube-controller-manager runs with --horizontal-pod-autoscaler-sync-period=2s
// (upstream default 15s) so that tests see the HPA controller react within
// seconds; override it with ControllerManagerArgs.
func StartCluster(t testing.TB, opts Options) *Cluster {
	t.Helper()
	assets, err := localcluster.Assets()
	if err != nil {
		t.Fatal(err)
	}
	logDir := t.TempDir()
	c, err := localcluster.Launch(context.Background(), localcluster.LaunchOptions{
		Options:   opts,
		AssetsDir: assets,
		LogDir:    logDir,
		Logger:    testr.NewWithInterface(t, testr.Options{}),
	})
	if err != nil {
		dumpLogs(t, logDir, slices.Concat(apiServerLogs, nodeLogs)...)
		t.Fatalf("%v (logs above)", err)
	}
	t.Cleanup(func() {
		err := c.Stop()
		switch {
		case err != nil:
			dumpLogs(t, logDir, slices.Concat(apiServerLogs, nodeLogs)...)
			t.Errorf("%v (logs above)", err)
		case t.Failed():
			dumpLogs(t, logDir, nodeLogs...)
		}
	})
	return c
}

// dumpLogs shows the end of the named components' logs in logDir.
func dumpLogs(t testing.TB, logDir string, names ...string) {
	t.Helper()
	for _, name := range names {
		path := filepath.Join(logDir, name+".log")
		if _, err := os.Stat(path); err == nil { // a component not started has none
			t.Log(localcluster.LogTail(name, path))
		}
	}
}

// Assets is the repository's bin/k8s, for a test that runs the control
// plane itself (governor demo); the test fails, in one line saying what is
// missing and that `make envtest-assets` builds it, when it is incomplete.
func Assets(t testing.TB) string {
	t.Helper()
	assets, err := localcluster.Assets()
	if err != nil {
		t.Fatal(err)
	}
	return assets
}
