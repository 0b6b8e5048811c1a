#!/usr/bin/env bash
# Unit manager (kos-units) with its process runtime, side by side with the floor of the same
# processes spawned directly: a target of 5 Type=notify units from start to all ready, and
# restart latency from a SIGKILLed main process to running (simple) / ready (notify) again.
# The kosd-level figures (containers, issue 15's 1 s and 200 ms targets): bench/units-kosd.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
runs=${RUNS:-50}
units=${UNITS:-5}
cd "$here"
cargo build --release -q -p kos-units --example units-bench --bin kos-notify
echo "== kos-units: ${units} notify units to ready, restart after a crash (${runs} runs each)"
"$here/target/release/examples/units-bench" "$here/target/release/kos-notify" "$runs" "$units"
