# Governor. `make help` lists the targets.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# Benchmarks: runs per benchmark (medians need several) and a filter.
BENCH_COUNT ?= 5
BENCH       ?= .

.PHONY: help build test lint bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: bin/governor ## build bin/governor

bin/governor: FORCE
	$(GO) build -ldflags "$(LDFLAGS)" -o $@ ./cmd/governor

# Upstream OPA at the version go.mod pins (a `tool` of the module): the
# reference that policies and `governor test` are checked against.
bin/opa: go.mod go.sum
	$(GO) build -o $@ github.com/open-policy-agent/opa

test: bin/governor bin/opa ## run every test (unit, CLI and upstream-parity)
	$(GO) test -count=1 ./...

lint: bin/opa ## gofmt, go vet, and opa check --strict / opa fmt on the policies
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	bin/opa check --strict policies/
	@out=$$(bin/opa fmt --list policies/); if [ -n "$$out" ]; then echo "opa fmt needed:"; echo "$$out"; exit 1; fi

bench: ## decision benchmarks (BENCH_COUNT runs each; BENCH=regexp filters)
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -count $(BENCH_COUNT) ./bundles/

clean: ## remove built binaries
	rm -rf bin

FORCE:
