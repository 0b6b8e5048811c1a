# KOS: build, demo, test, conformance and benchmarks.
# `make demo` and `make test` install what is missing (apt) first.

CARGO ?= cargo
RELEASE := target/release
KOSRUN ?= $(CURDIR)/$(RELEASE)/kosrun
RUNTIME ?= $(KOSRUN)
PREFIX ?= /usr/local

.PHONY: all deps build install demo test unit conformance lint bench clean

all: build

deps:
	@bash scripts/deps.sh

build: deps
	$(CARGO) build --release --workspace --bins

install: build
	install -m 0755 $(RELEASE)/kosrun $(PREFIX)/bin/kosrun

demo: build
	@KOSRUN=$(KOSRUN) bash scripts/demo.sh

# Every test: unit and integration tests of all crates, then the conformance suite
# against kosrun.
test: build
	$(CARGO) test --workspace --no-fail-fast
	$(MAKE) --no-print-directory conformance

unit:
	$(CARGO) test --workspace --lib

conformance: build
	$(RELEASE)/kos-conformance --runtime $(RUNTIME) --keep-going --skip-known-departures

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Benchmarks, each side by side with the reference it is measured against:
# kosrun run vs runc and crun, cgroup cost, kosrun exec vs runc exec, image pull vs containerd.
bench: build
	$(CARGO) build --release -p kos-image --examples
	@KOSRUN=$(KOSRUN) bash bench/run.sh
	@KOSRUN=$(KOSRUN) bash bench/cgroup_overhead.sh
	@KOSRUN=$(KOSRUN) bash bench/exec.sh
	@sh image/bench/run.sh

clean:
	$(CARGO) clean
