#!/usr/bin/env bash
# kosrun against runc, side by side on the same busybox `true` bundle, for what issue 9 asks
# not to lose:
#   list        `list` with 1,000 containers under each runtime's root (each run with
#               `run --detach`, so they are stopped and hold no process), hyperfine medians
#   create RSS  the peak resident set of one `create` (GNU time's maximum RSS, the runtime's
#               own process), median of 10
# (The third, 8 racing creates of one id with exactly one winner, is a test:
# kosrun/tests/create.rs `racing_creates_of_one_id_have_exactly_one_winner`.)
#
#   bench/runtime_state.sh   (as root; N=containers, 1000 by default)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../scripts/bundle.sh"
kosrun=${KOSRUN:-$(bash "$here/../scripts/build-kosrun.sh" --path)}
n=${N:-1000}
for tool in runc hyperfine /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "bench/runtime_state.sh: $tool is not installed (make deps)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench/runtime_state.sh: run as root" >&2; exit 1; }

work=$(mktemp -d /tmp/kos-bench-state.XXXXXX)
cleanup() {
    for r in kosrun runc; do
        bin=$kosrun
        [ "$r" = runc ] && bin=runc
        for d in "$work/run/$r"/*/; do
            [ -d "$d" ] || continue
            "$bin" --root "$work/run/$r" delete --force "$(basename "$d")" >/dev/null 2>&1 || true
        done
    done
    umount "$work/run" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
mkdir "$work/run"
mount -t tmpfs -o mode=0700 kos-bench-state "$work/run"
mkdir "$work/run/kosrun" "$work/run/runc"

make_true_bundle "$work/bundle" "$kosrun"

echo "== $n containers under each runtime (run --detach of true: stopped, no process left)"
prefix="kbs$$-"
for r in kosrun runc; do
    bin=$kosrun
    [ "$r" = runc ] && bin=runc
    start=$(date +%s.%N)
    seq "$n" | xargs -P 2 -I{} "$bin" --root "$work/run/$r" run --detach -b "$work/bundle" "$prefix{}" >/dev/null
    count=$("$bin" --root "$work/run/$r" list -q | wc -l)
    printf '  %-6s made %d in %.1f s\n' "$r" "$count" "$(echo "$(date +%s.%N) - $start" | bc)"
    [ "$count" = "$n" ] || { echo "bench/runtime_state.sh: $r lists $count of $n" >&2; exit 1; }
done

python3 "$here/../scripts/wait-idle.py"
hyperfine -N --warmup 2 --runs 10 --export-json "$work/list.json" \
    -n kosrun "$kosrun --root $work/run/kosrun list" \
    -n runc "runc --root $work/run/runc list" >/dev/null

echo "== peak RSS of one create (10 each)"
for r in kosrun runc; do
    bin=$kosrun
    [ "$r" = runc ] && bin=runc
    for i in $(seq 10); do
        id="${prefix}rss-$i"
        /usr/bin/time -f %M -o "$work/rss.$r.$i" "$bin" --root "$work/run/$r" create -b "$work/bundle" "$id" >/dev/null
        "$bin" --root "$work/run/$r" delete --force "$id" >/dev/null
    done
done

python3 - "$work" <<'PY'
import json, statistics, sys
work = sys.argv[1]
lst = {r["command"]: statistics.median(r["times"]) * 1000
       for r in json.load(open(f"{work}/list.json"))["results"]}
rss = {r: statistics.median(int(open(f"{work}/rss.{r}.{i}").read().split()[-1]) for i in range(1, 11))
       for r in ("kosrun", "runc")}
print(f"list of the containers (median): kosrun {lst['kosrun']:.0f} ms, runc {lst['runc']:.0f} ms"
      f" -> kosrun/runc {lst['kosrun'] / lst['runc']:.2f}")
print(f"create peak RSS (median): kosrun {rss['kosrun'] / 1024:.1f} MB, runc {rss['runc'] / 1024:.1f} MB"
      f" -> kosrun/runc {rss['kosrun'] / rss['runc']:.2f}")
PY
