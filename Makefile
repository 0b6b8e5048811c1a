# KOS: build, demo, test, conformance and benchmarks.
# `make demo` and `make test` install what is missing (apt) first.

CARGO ?= cargo
RELEASE := target/release
KOSRUN ?= $(CURDIR)/$(RELEASE)/kosrun
RUNTIME ?= $(KOSRUN)
PREFIX ?= /usr/local

.PHONY: all deps build install demo test unit conformance lint bench bench-run clean

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

bench: build bench-run

bench-run:
	@KOSRUN=$(KOSRUN) bash scripts/bench-run.sh

clean:
	$(CARGO) clean
