#!/usr/bin/env bash
# `kosrun exec ID true` vs `runc exec ID true`, each into a running busybox
# `sleep` container of its own runtime. Target: kosrun under a third of runc's median.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../scripts/bundle.sh"
kosrun=${KOSRUN:-$(bash "$here/../scripts/build-kosrun.sh" --path)}
runs=${RUNS:-100}
work=$(mktemp -d /tmp/kos-bench-exec.XXXXXX)
cleanup() {
    "$kosrun" --root "$work/state-k" delete --force kos-bench-exec-k >/dev/null 2>&1 || true
    runc --root "$work/state-r" delete --force kos-bench-exec-r >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

make_bundle "$work/bundle"
(cd "$work/bundle" && "$kosrun" spec)
set_args "$work/bundle/config.json" /bin/sleep 1000000

"$kosrun" --root "$work/state-k" run -d -b "$work/bundle" kos-bench-exec-k </dev/null >/dev/null
runc --root "$work/state-r" run -d -b "$work/bundle" kos-bench-exec-r </dev/null >/dev/null

echo "== exec of true into a running container: kosrun vs runc"
hyperfine -N --warmup 5 --runs "$runs" --export-json "$work/exec.json" \
    -n kosrun "$kosrun --root $work/state-k exec kos-bench-exec-k true" \
    -n runc "runc --root $work/state-r exec kos-bench-exec-r true" >/dev/null

python3 - "$work/exec.json" <<'PY'
import json, sys
res = {r["command"]: r["median"] * 1000 for r in json.load(open(sys.argv[1]))["results"]}
k, r = res["kosrun"], res["runc"]
print(f"exec medians: kosrun {k:.2f} ms, runc {r:.2f} ms; kosrun/runc = {k / r:.2f} (target < 0.33)")
PY
