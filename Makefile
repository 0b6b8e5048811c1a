# KOS: build, demo, test, conformance, lint, benchmarks and install.
# `make build`, `make demo` and `make test` install what is missing (apt) first.

CARGO ?= cargo
RELEASE := target/release
# The kosrun KOS ships: a static musl build where the target is available (see
# scripts/build-kosrun.sh), else the workspace's glibc one. Looked up when used, after `build`.
KOSRUN ?= $(shell bash $(CURDIR)/scripts/build-kosrun.sh --path)
RUNTIME ?= $(KOSRUN)
PREFIX ?= /usr/local
SYSTEMD_UNIT_DIR ?= /lib/systemd/system
KOS_UNIT_DIR ?= /usr/lib/kos/units
KOS_IMAGE_DIR ?= /usr/lib/kos/images

.PHONY: all deps build install demo test unit conformance lint bench clean

all: build

deps:
	@bash scripts/deps.sh

build: deps
	$(CARGO) build --release --workspace --bins
	@CARGO=$(CARGO) bash scripts/build-kosrun.sh >/dev/null

# Every binary the workspace defines that the build produced (kosrun, kosd, kos,
# containerd-shim-kos-v2, kos-dns, ... as their crates land).
install: build
	@bins=$$($(CARGO) metadata --no-deps --format-version 1 | python3 -c 'import json,sys; \
		print(" ".join(t["name"] for p in json.load(sys.stdin)["packages"] \
		for t in p["targets"] if "bin" in t["kind"]))'); \
	for b in $$bins; do \
		src=$(RELEASE)/$$b; [ $$b = kosrun ] && src=$(KOSRUN); \
		if [ -x $$src ]; then \
			install -D -m 0755 $$src $(DESTDIR)$(PREFIX)/bin/$$b && echo "installed $(DESTDIR)$(PREFIX)/bin/$$b"; \
		fi; \
	done
	@sed 's#/usr/local/bin/#$(PREFIX)/bin/#' kosd/packaging/kosd.service > kosd.service.tmp && \
		install -D -m 0644 kosd.service.tmp $(DESTDIR)$(SYSTEMD_UNIT_DIR)/kosd.service && \
		rm -f kosd.service.tmp && echo "installed $(DESTDIR)$(SYSTEMD_UNIT_DIR)/kosd.service"
	@for u in units/shipped/* services/units/*; do \
		install -D -m 0644 $$u $(DESTDIR)$(KOS_UNIT_DIR)/$$(basename $$u) && echo "installed $(DESTDIR)$(KOS_UNIT_DIR)/$$(basename $$u)"; \
	done
	@# Default settings of the components, never over an admin's own.
	@for f in services/kaim/etc/config.json:/etc/kos/kaim/config.json \
		services/kadcm/policies/default.rego:/etc/kos/kadcm/policy.rego; do \
		src=$${f%%:*}; dst=$(DESTDIR)$${f#*:}; \
		if [ ! -e $$dst ]; then install -D -m 0644 $$src $$dst && echo "installed $$dst"; fi; \
	done
	@# The units' images (kosd loads them into its store at start when missing).
	@NO_BUILD=1 bash services/build-images.sh target/kos-images >/dev/null && \
	for i in target/kos-images/*.oci.tar; do \
		install -D -m 0644 $$i $(DESTDIR)$(KOS_IMAGE_DIR)/$$(basename $$i) && echo "installed $(DESTDIR)$(KOS_IMAGE_DIR)/$$(basename $$i)"; \
	done

demo: build
	@KOSRUN=$(KOSRUN) bash scripts/demo.sh

# Every test of every crate in the workspace (found by cargo, so new crates are included),
# the doc tests and the conformance suite against the release kosrun; independent suites
# run side by side. Ends with one line "N passed, N failed, N skipped" and fails if any
# test failed. See scripts/run_tests.py for KOS_TEST_JOBS, KOS_TEST_ONLY and the skip record.
test: deps
	@python3 scripts/run_tests.py

unit:
	$(CARGO) test --workspace --lib --bins

conformance: build
	$(RELEASE)/kos-conformance --runtime $(RUNTIME) --keep-going --skip-known-departures

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Benchmarks, each side by side with the reference it is measured against: every
# bench/*.sh (kosrun run vs crun, runc and the kernel's floor, cgroup cost, exec vs runc,
# and whatever lands there later), then image pull vs containerd.
bench: build
	@rc=0; for b in bench/*.sh image/bench/run.sh; do \
		echo "### $$b"; KOSRUN=$(KOSRUN) bash $$b || { echo "### $$b FAILED"; rc=1; }; echo; \
	done; exit $$rc

clean:
	$(CARGO) clean
