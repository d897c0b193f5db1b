// Package perf benchmarks governor as it is deployed: bin/governor `run`
// with the ServiceAccount, RBAC and flags of config/ (config/default, the
// args of config/manager/manager.yaml), on the local cluster of
// test/cluster (kube-apiserver, etcd, kube-controller-manager,
// kube-scheduler, kwok Nodes), measured from outside: pushes to its push
// endpoint, watches on the API server, /proc for its CPU and memory, its
// /metrics for the requests it sends (over HTTPS, with a token bound to
// governor-metrics-reader, as Prometheus scrapes it; test/deployed runs
// it). The benchmarks carry the build tag
// integration and run with `make bench`; they report figures and never
// assert timings, but fail when setup fails or governor exits. Linux only
// (it reads /proc).
package perf
