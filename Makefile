# Governor. `make help` lists the targets.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# Benchmarks: runs per benchmark (medians need several) and a filter.
BENCH_COUNT ?= 5
BENCH       ?= .
# Benchmarks through bin/governor as deployed (test/perf): runs of each, the
# loop counts of the scale benchmark, and --status-flush-interval values to
# run it with besides the manifest's (e.g. PERF_LOOPS=100,1000
# PERF_STATUS_FLUSH=10s). The defaults complete on a 2-core machine.
PERF_COUNT        ?= 3
PERF_LOOPS        ?= 100
PERF_STATUS_FLUSH ?=
# BenchmarkShards (bench-shards): its loops, their interval, and a
# --status-flush-interval for every replica (empty: the manifest's); see README,
# "Sharded loops through the deployed binary" (the issue's 600 loops at 1s
# completed here only below load 10; its 10,000 at 180s).
PERF_SHARD_LOOPS    ?= 100
PERF_SHARD_INTERVAL ?= 1s
PERF_SHARD_FLUSH    ?= 10s

# Files controller-gen writes from the API types and the code's markers.
GENERATED := api/v1alpha1/zz_generated.deepcopy.go config/crd/bases/governor.dev_controlloops.yaml config/rbac/role.yaml
# controller-gen, pinned, run from the module proxy.
CONTROLLER_GEN ?= $(GO) run sigs.k8s.io/controller-tools/cmd/controller-gen@v0.23.0
# golangci-lint, pinned, run from the module proxy (configuration: .golangci.yml).
GOLANGCI_LINT ?= $(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0

.PHONY: help build test test-race test-fast lint bench bench-policies bench-deployed bench-shards fuzz clean manifests generate test-servers

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-21s %s\n", $$1, $$2}'

build: bin/governor ## build bin/governor

bin/governor: FORCE
	$(GO) build -ldflags "$(LDFLAGS)" -o $@ ./cmd/governor

# Upstream OPA at the version go.mod pins (a `tool` of the module): the
# reference that policies and `governor test` are checked against.
bin/opa: go.mod go.sum
	$(GO) build -o $@ github.com/open-policy-agent/opa

# Two tiers. The fast one, `go test ./...`, runs every test that needs
# nothing but Go: no bin/k8s, no Prometheus, no nginx, no binary to build.
# Tests that need the local control plane, a real server or the governor and
# opa binaries carry the build tag `integration`; `go test -tags integration
# ./...` runs both tiers (a tagged test whose assets are missing fails, in one
# line saying how to get them: it is never skipped). make test runs the fast
# tier under the race detector first: a data race fails it.
test: bin/governor bin/opa envtest-assets test-servers ## the fast tier under the race detector, then both tiers: unit, CLI, upstream parity, integration (API server, Prometheus, nginx), end to end (local cluster)
	$(GO) test -count=1 -race -timeout 20m ./...
	$(GO) test -count=1 -timeout 60m -tags integration ./...

test-race: bin/governor bin/opa envtest-assets test-servers ## both tiers under the race detector (about 25 min on 2 cores; make test races the fast tier only)
	$(GO) test -count=1 -race -timeout 90m -tags integration ./...

test-fast: ## the fast tier only (go test ./...): pure tests, no bin/k8s, Prometheus or nginx needed, about 30 s once compiled
	$(GO) test -count=1 -timeout 10m ./...

# The demo (sim/demo): flags for `governor demo`, after --duration 2m (a later flag wins),
# e.g. make demo DEMO_ARGS="--duration 60s --report /tmp/report".
DEMO_ARGS ?=

.PHONY: demo
demo: bin/governor envtest-assets ## governor demo: a local cluster, a simulated factory and three loops, live for 2 minutes; report in demo-report/
	bin/governor demo --duration 2m $(DEMO_ARGS)

# golangci-lint runs twice: without and with the integration build tag, so
# that both tiers of test files are linted. Another golangci-lint running on
# the machine (another checkout) is waited for, not an error.
lint: bin/opa test-servers ## gofmt, go vet and golangci-lint (both test tiers), opa check --strict / opa fmt on the policies, promtool check rules on the alerts, generated files up to date
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags integration ./...
	$(GOLANGCI_LINT) run --allow-serial-runners ./...
	$(GOLANGCI_LINT) run --allow-serial-runners --build-tags integration ./...
	bin/opa check --strict policies/
	promtool check rules config/prometheus/rules.yaml
	@before=$$(cat $(GENERATED) | sha256sum); $(MAKE) --no-print-directory generate manifests >/dev/null; \
		[ "$$before" = "$$(cat $(GENERATED) | sha256sum)" ] || { echo "generated files were stale (regenerated now): $(GENERATED)"; exit 1; }
	@out=$$(bin/opa fmt --list policies/); if [ -n "$$out" ]; then echo "opa fmt needed:"; echo "$$out"; exit 1; fi

# Debian's Prometheus and nginx, for tests against real servers (the
# Prometheus collector; bundles from a bundle server; the dashboard) and for
# promtool (the package's; make lint checks the alerts with it), and gcc, which
# the race detector needs (cgo): installed with apt-get when missing (as root,
# or through sudo).
test-servers: ## install Debian's prometheus (with promtool), nginx and gcc when missing (apt-get), for the integration tier, the race detector and make lint
	@missing=; { command -v prometheus && command -v promtool; } >/dev/null || missing="$$missing prometheus"; \
	[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || missing="$$missing nginx"; \
	command -v gcc >/dev/null || missing="$$missing gcc"; \
	[ -z "$$missing" ] || { \
		echo "installing Debian's$$missing (for the tests against real servers and the race detector)..."; \
		sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		export DEBIAN_FRONTEND=noninteractive; \
		$$sudo apt-get update -qq && $$sudo apt-get install -y -qq --no-install-recommends $$missing >/dev/null; }

bench: bin/opa envtest-assets test-servers ## benchmarks: the shipped policies in opa bench; in process (decisions; Hubble ingest and memory; tick-to-patch, 100-loop throughput, publish-to-decide and failover on a real API server); then bench-deployed
	COUNT=$(BENCH_COUNT) hack/policy-bench.sh
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -count $(BENCH_COUNT) ./bundles/
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -cpu 1 -count $(BENCH_COUNT) ./collectors/hubble/
	$(GO) test -tags integration -run '^$$' -bench 'TickToPatch' -benchtime 100x -count $(BENCH_COUNT) ./test/integration/
	$(GO) test -tags integration -run '^$$' -bench 'TicksPerSecond' -benchtime 1x -count $(BENCH_COUNT) ./test/integration/
	$(GO) test -tags integration -run '^$$' -bench 'PublishToDecide' -benchtime 5x -count $(BENCH_COUNT) ./test/integration/
	$(GO) test -tags integration -run '^$$' -bench 'Failover' -benchtime 1x -count $(BENCH_COUNT) ./test/integration/
	$(GO) test -tags integration -run '^$$' -bench 'FindHPA' -count $(BENCH_COUNT) ./test/integration/
	$(MAKE) --no-print-directory bench-deployed

bench-deployed: bin/governor envtest-assets ## benchmarks through bin/governor run as config/ deploys it, on the local cluster: push-to-Pod reaction, ticks/s, scale (PERF_LOOPS, PERF_STATUS_FLUSH, PERF_COUNT), then bench-shards
	$(GO) test -tags integration -run '^$$' -bench 'Reaction' -benchtime 100x -count $(PERF_COUNT) -timeout 30m ./test/perf/
	$(GO) test -tags integration -run '^$$' -bench 'TickRate' -benchtime 1x -count $(PERF_COUNT) -timeout 30m ./test/perf/
	PERF_LOOPS=$(PERF_LOOPS) PERF_STATUS_FLUSH=$(PERF_STATUS_FLUSH) \
		$(GO) test -tags integration -run '^$$' -bench 'Scale' -benchtime 1x -count $(PERF_COUNT) -timeout 120m ./test/perf/
	$(MAKE) --no-print-directory bench-shards

bench-shards: bin/governor envtest-assets ## sharded loops through bin/governor as deployed: 3 replicas, failover on SIGKILL, a 4th joining, 3/2/1 replicas (PERF_SHARD_LOOPS, PERF_SHARD_INTERVAL, PERF_SHARD_FLUSH, PERF_COUNT)
	PERF_SHARD_LOOPS=$(PERF_SHARD_LOOPS) PERF_SHARD_INTERVAL=$(PERF_SHARD_INTERVAL) PERF_SHARD_FLUSH=$(PERF_SHARD_FLUSH) \
		$(GO) test -tags integration -run '^$$' -bench 'Shards' -benchtime 1x -count $(PERF_COUNT) -timeout 120m ./test/perf/

bench-policies: bin/opa ## the shipped policies in upstream opa bench against a trivial policy (hack/policy-bench.sh): medians and ratios
	COUNT=$(BENCH_COUNT) hack/policy-bench.sh

# Fuzzing: how long each fuzzer runs (go test -fuzztime: a duration, or Nx for N execs).
FUZZTIME ?= 60s

# Each fuzzer in turn (go test fuzzes one target at a time). A failing input is written to
# the package's testdata/fuzz/<Fuzzer>/, which `go test` then runs in the fast tier: commit it
# with the fix. The seed corpus there runs in `go test` too.
fuzz: ## run each fuzzer for FUZZTIME (60s): FuzzGuard (the guard), FuzzValidate (the decision contract), FuzzParseReport (the push body), FuzzSchedule (a loop's ticks and status writes), FuzzTargetDocsKeepOnlyTheSame (targets' documents kept between ticks)
	$(GO) test -run '^$$' -fuzz '^FuzzGuard$$' -fuzztime $(FUZZTIME) ./controller/guard/
	$(GO) test -run '^$$' -fuzz '^FuzzValidate$$' -fuzztime $(FUZZTIME) ./decision/
	$(GO) test -run '^$$' -fuzz '^FuzzParseReport$$' -fuzztime $(FUZZTIME) ./collectors/push/
	$(GO) test -run '^$$' -fuzz '^FuzzSchedule$$' -fuzztime $(FUZZTIME) ./controller/
	$(GO) test -run '^$$' -fuzz '^FuzzTargetDocsKeepOnlyTheSame$$' -fuzztime $(FUZZTIME) ./controller/

generate: ## deepcopy code of the API types
	$(CONTROLLER_GEN) object paths=./api/...

manifests: ## the CRD and the RBAC role, from the API types and the code's markers
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=manager-role paths=./actuators/... paths=./controller/... paths=./collectors/... output:rbac:artifacts:config=config/rbac

clean: ## remove bin/governor and bin/opa (bin/k8s stays: clean-envtest-assets removes it)
	rm -f bin/governor bin/opa

FORCE:

# --- local control plane (test/tools) ---
# Real kube-apiserver, etcd, kube-controller-manager, kube-scheduler, kubectl
# and kwok for the integration tests (test/cluster) and the demo
# (internal/localcluster), built from source through the Go module proxy by
# the tools modules under test/tools (each its own go.mod, so
# the main module never sees their dependencies). Each binary is built once
# and then kept: delete it (or `make clean-envtest-assets`) to rebuild, e.g.
# after changing a version in test/tools/*/go.mod. The builds run one after
# another (the order-only prerequisites chain them even under -j): each one
# alone takes both cores and up to 2 GB of memory. From an empty build cache
# on 2 cores: 7 to 12 minutes in all, most of it kube-apiserver (the others
# reuse most of its packages); bin/k8s takes 440 MB, the Go build cache
# about 3.7 GB more.
K8S_ASSETS := $(CURDIR)/bin/k8s
KWOK_STAGES := node/fast/node-initialize.yaml node/heartbeat/node-heartbeat.yaml \
	pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml
# Version stamps as Kubernetes' own release builds set them (kubectl version,
# /version of the API server); -s -w leaves out the symbol table and DWARF.
kube_ldflags = -s -w $(foreach p,k8s.io/component-base/version k8s.io/client-go/pkg/version,\
	-X $(p).gitVersion=$(1) -X $(p).gitMajor=$(word 1,$(subst ., ,$(1:v%=%))) \
	-X $(p).gitMinor=$(word 2,$(subst ., ,$(1:v%=%))) -X $(p).gitTreeState=clean)
# (Recursive: only evaluated when a Kubernetes binary is actually built.)
KUBE_LDFLAGS = $(call kube_ldflags,$(shell $(GO) list -C test/tools/kube -m -f '{{.Version}}' k8s.io/kubernetes))
# go build -C <tools module> -o <asset>; written to a temporary name first so
# that an interrupted build never leaves a binary that looks cached.
define build_k8s_tool
	@echo "building $(notdir $@) (about $(2))..."
	@mkdir -p $(K8S_ASSETS)
	@$(GO) build -C test/tools/$(1) -trimpath $(3) -o $@.tmp $(4) && mv $@.tmp $@
endef

.PHONY: envtest-assets clean-envtest-assets

ENVTEST_ASSETS := $(addprefix $(K8S_ASSETS)/,kube-apiserver etcd kubectl \
	kube-controller-manager kube-scheduler kwok stages)

envtest-assets: $(ENVTEST_ASSETS) ## build the local control plane into bin/k8s (once; cached)

$(K8S_ASSETS)/kube-apiserver:
	$(call build_k8s_tool,kube,3.5 minutes,-ldflags "$(KUBE_LDFLAGS)",k8s.io/kubernetes/cmd/kube-apiserver)

$(K8S_ASSETS)/etcd: | $(K8S_ASSETS)/kube-apiserver
	$(call build_k8s_tool,etcd,30 seconds,-ldflags "-s -w",.)

$(K8S_ASSETS)/kubectl: | $(K8S_ASSETS)/etcd
	$(call build_k8s_tool,kube,1 minute,-ldflags "$(KUBE_LDFLAGS)",k8s.io/kubernetes/cmd/kubectl)

$(K8S_ASSETS)/kube-controller-manager: | $(K8S_ASSETS)/kubectl
	$(call build_k8s_tool,kube,1 minute,-ldflags "$(KUBE_LDFLAGS)",k8s.io/kubernetes/cmd/kube-controller-manager)

$(K8S_ASSETS)/kube-scheduler: | $(K8S_ASSETS)/kube-controller-manager
	$(call build_k8s_tool,kube,10 seconds,-ldflags "$(KUBE_LDFLAGS)",k8s.io/kubernetes/cmd/kube-scheduler)

$(K8S_ASSETS)/kwok: | $(K8S_ASSETS)/kube-scheduler
	$(call build_k8s_tool,kwok,1.5 minutes,-ldflags "-s -w",sigs.k8s.io/kwok/cmd/kwok)

# kwok's stage definitions (node fast + heartbeat, pod fast), copied from the
# kwok module the binary was built from.
$(K8S_ASSETS)/stages: | $(K8S_ASSETS)/kwok
	@echo "copying kwok stages..."
	@$(GO) -C test/tools/kwok mod download sigs.k8s.io/kwok
	@src=$$($(GO) list -C test/tools/kwok -m -f '{{.Dir}}' sigs.k8s.io/kwok) && \
		rm -rf $@.tmp && mkdir -p $@.tmp && \
		for f in $(KWOK_STAGES); do cp "$$src/kustomize/stage/$$f" $@.tmp/ || exit 1; done && \
		chmod 644 $@.tmp/*.yaml && mv $@.tmp $@

clean-envtest-assets: ## remove bin/k8s (the next envtest-assets rebuilds it)
	rm -rf $(K8S_ASSETS)
