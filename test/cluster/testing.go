package cluster

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-logr/logr/testr"
)

// StartAPIServer starts kube-apiserver and etcd from Assets() with envtest
// (LaunchAPIServer), installs the CRDs found in crdDirs (each must exist)
// and waits until they are established. The control plane is stopped in
// t.Cleanup. It fails the test (never skips it) when the binaries are
// missing; the logs of etcd and kube-apiserver are shown when they fail to
// start or stop, not for any failed test (their noise would bury the
// failure).
func StartAPIServer(t testing.TB, crdDirs ...string) *APIServer {
	t.Helper()
	assets, err := Assets()
	if err != nil {
		t.Fatal(err)
	}
	logDir := t.TempDir()
	s, err := LaunchAPIServer(context.Background(), LaunchOptions{
		ClusterOptions: ClusterOptions{CRDDirs: crdDirs},
		AssetsDir:      assets,
		LogDir:         logDir,
		Logger:         testr.NewWithInterface(t, testr.Options{}),
	})
	if err != nil {
		dumpLogs(t, logDir, binEtcd, binAPIServer)
		t.Fatalf("%v (logs above)", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			dumpLogs(t, logDir, binEtcd, binAPIServer)
			t.Errorf("%v (logs above)", err)
		}
	})
	return s
}

// StartCluster starts a Cluster from Assets() (Launch) and returns once
// kube-controller-manager and kube-scheduler are healthy and every Node is
// Ready and untainted. Everything is stopped in t.Cleanup; when the test
// has failed, the end of each component's log is shown.
//
// kube-controller-manager runs with --horizontal-pod-autoscaler-sync-period=2s
// (upstream default 15s) so that tests see the HPA controller react within
// seconds; override it with ControllerManagerArgs.
func StartCluster(t testing.TB, opts ClusterOptions) *Cluster {
	t.Helper()
	assets, err := Assets()
	if err != nil {
		t.Fatal(err)
	}
	logDir := t.TempDir()
	c, err := Launch(context.Background(), LaunchOptions{
		ClusterOptions: opts,
		AssetsDir:      assets,
		LogDir:         logDir,
		Logger:         testr.NewWithInterface(t, testr.Options{}),
	})
	if err != nil {
		dumpLogs(t, logDir, binEtcd, binAPIServer, binControllerManager, binScheduler, binKwok)
		t.Fatalf("%v (logs above)", err)
	}
	t.Cleanup(func() {
		err := c.Stop()
		switch {
		case err != nil:
			dumpLogs(t, logDir, binEtcd, binAPIServer, binControllerManager, binScheduler, binKwok)
			t.Errorf("%v (logs above)", err)
		case t.Failed():
			dumpLogs(t, logDir, binControllerManager, binScheduler, binKwok)
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
			t.Log(logTail(name, path))
		}
	}
}
