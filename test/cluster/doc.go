// Package cluster is the tests' way to the local Kubernetes control plane of
// internal/localcluster: StartAPIServer (kube-apiserver and etcd, through
// envtest) and StartCluster (kube-controller-manager, kube-scheduler and kwok
// with a few fake Nodes on top of them). The control plane is stopped in
// t.Cleanup, the components' logs are shown when it fails to start or stop
// (and, for StartCluster, when the test failed), and a test whose binaries
// are missing fails, saying what is missing and that `make envtest-assets`
// builds it: it is never skipped. MarkerRules and RBACUser (build tag
// integration, as the tests that use them) run code with exactly the
// permissions its +kubebuilder:rbac markers declare.
//
// Typical use in a test, with the project's CRDs installed:
//
//	s := cluster.StartAPIServer(t, filepath.Join(repoRoot, "config", "crd", "bases"))
//	c, err := client.New(s.Config, client.Options{Scheme: scheme})
//	out, err := s.Kubectl("get", "pods", "-A")
//
// Programs (`governor demo`) use internal/localcluster directly: this package
// imports package testing and is for tests only.
package cluster

import "governor.dev/governor/internal/localcluster"

// The types of internal/localcluster, under the names the tests use.
type (
	// APIServer is a real kube-apiserver backed by a real etcd.
	APIServer = localcluster.APIServer
	// Cluster is an APIServer with kube-controller-manager, kube-scheduler
	// and kwok's fake Nodes.
	Cluster = localcluster.Cluster
	// Options configures StartCluster.
	Options = localcluster.Options
)
