#!/usr/bin/env bash
# kaim's overhead per API call: `/_ping` and a small JSON GET (`/v1.47/containers/json`), each
# on a fresh connection, straight to the upstream socket and through kaim (identity lookup,
# bounded body read, path normalisation, Rego policy in regorus, audit line, forward), the two
# alternated in one run. Target: median overhead < 1 ms.
#
# The upstream is a minimal HTTP server (services/kaim/examples/kaim_bench.rs) so the figure is
# kaim's own; KAIM_UPSTREAM=/path/to/engine.sock measures against a running engine instead
# (kosd, or dockerd for reference).
#
#   bench/kaim.sh   (as root; N=calls per path, default 2000)
set -euo pipefail

N=${N:-2000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
(cd "$ROOT" && cargo build --release -q -p kaim --bin kaim --example kaim_bench)
KAIM=$TARGET_DIR/release/kaim
BENCH=$TARGET_DIR/release/examples/kaim_bench

T=$(mktemp -d /tmp/kaim-bench.XXXXXX)
PIDS=()
CG=""
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    [ -n "$CG" ] && rmdir "$CG" 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT INT TERM

wait_socket() {
    for _ in $(seq 1 200); do [ -S "$1" ] && return 0; sleep 0.02; done
    echo "kaim bench: $1 never appeared" >&2
    exit 1
}

if [ -n "${KAIM_UPSTREAM:-}" ]; then
    UP=$KAIM_UPSTREAM
else
    UP=$T/upstream.sock
    "$BENCH" serve "$UP" &
    PIDS+=($!)
    wait_socket "$UP"
fi

# One policy for both sockets: reads of the ping, version and container list.
cat >"$T/policy.rego" <<'REGO'
package kaim

default allow := false

allow if {
	input.RequestMethod == "GET"
	input.RequestPath in {"/_ping", "/containers/json", "/version"}
}

deny contains "no body on reads" if input.RequestBodySize > 0

reason := "bench: read" if allow
REGO
# A grant socket too, its client in a cgroup made for the run (the v1 pids hierarchy on a
# hybrid host, the unified one on v2), so each connection also pays the cgroup lookup.
if [ -f /sys/fs/cgroup/pids/cgroup.procs ]; then CGROOT=/sys/fs/cgroup/pids; else CGROOT=/sys/fs/cgroup; fi
CGNAME=kaim-bench-$$
CG=$CGROOT/$CGNAME
mkdir "$CG"
"$KAIM" --upstream "unix://$UP" --audit "$T/audit.log" \
    --users-socket "$T/kaim.sock" --user-policy "$(id -u)=$T/policy.rego" \
    --grant "bench=benchctr:$T/policy.rego:$T/grant.sock:/$CGNAME" &
PIDS+=($!)
wait_socket "$T/kaim.sock"
wait_socket "$T/grant.sock"

echo "== kaim overhead per API call, $N calls per path (upstream: ${KAIM_UPSTREAM:-minimal HTTP server})"
echo "-- per-user socket (SO_PEERCRED uid -> policy)"
rc1=0
"$BENCH" measure "$UP" "$T/kaim.sock" "$N" || rc1=$?
echo "-- grant socket (SO_PEERCRED pid -> /proc/PID/cgroup -> container), client in a cgroup"
rc=0
(echo "$BASHPID" >"$CG/cgroup.procs" && exec "$BENCH" measure "$UP" "$T/grant.sock" "$N") || rc=$?
echo "audit lines written: $(wc -l <"$T/audit.log")"
[ "$rc1" = 0 ] && [ "$rc" = 0 ]
