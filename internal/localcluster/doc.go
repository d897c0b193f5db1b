// Package localcluster starts a real, local Kubernetes control plane on this machine:
// kube-apiserver and etcd through controller-runtime's envtest (LaunchAPIServer), and, on
// top of them, kube-controller-manager, kube-scheduler and kwok playing the kubelet of a few
// fake Nodes (Launch). Nothing is mocked: the binaries are upstream Kubernetes v1.36, etcd
// v3.6 and kwok v0.8, built from source into <repo>/bin/k8s by `make envtest-assets` (see
// test/tools).
//
// It is product code, for any program (`governor demo` runs on it): every function returns
// errors, and it does not import package testing. LaunchAPIServer and Launch start,
// (*APIServer).Stop and (*Cluster).Stop stop everything they started:
//
//	c, err := localcluster.Launch(ctx, localcluster.LaunchOptions{AssetsDir: "bin/k8s", CRDs: crds})
//	if err != nil { ... }
//	defer c.Stop()
//	out, err := c.Kubectl("get", "pods", "-A")
//
// Tests start it through test/cluster (StartAPIServer, StartCluster), which stops it in
// t.Cleanup, shows the components' logs when a test fails, and fails a test whose binaries
// are missing.
//
// What envtest's API server differs in: the ServiceAccount admission plugin is off (Pods get
// no token volume and need no ServiceAccount), and it refuses Endpoints and EndpointSlices on
// 127.0.0.0/8, so an aggregated APIService cannot be routed to a test server on loopback.
package localcluster
