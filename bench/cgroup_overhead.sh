#!/usr/bin/env bash
# What linux.resources costs `kosrun run`: hyperfine medians of a busybox `true` container
# without a resources block and with memory + pids + cpu limits, and their difference.
# kosrun makes the container's cgroup (with its device rules) either way, so the difference
# is the cost of writing the limits.
#
#   KOSRUN=target/release/kosrun bench/cgroup_overhead.sh    (as root; RUNS, ROUNDS for more)
set -euo pipefail

KOSRUN=${KOSRUN:?set KOSRUN to a kosrun binary, preferably a release build}
BUSYBOX=${BUSYBOX:-/bin/busybox}
RUNS=${RUNS:-10}     # per variant and round
ROUNDS=${ROUNDS:-20}
for tool in hyperfine jq; do
    command -v "$tool" >/dev/null || { echo "cgroup_overhead: $tool is not installed" >&2; exit 1; }
done
[ -x "$BUSYBOX" ] || { echo "cgroup_overhead: no busybox at $BUSYBOX (apt-get install busybox-static)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "cgroup_overhead: run as root" >&2; exit 1; }

work=$(mktemp -d /tmp/kosbench-cg.XXXXXX)
tag="kosbench-cg-$$"
cleanup() {
    for v in plain limited; do
        "$KOSRUN" --root "$work/state" delete --force "$tag-$v" >/dev/null 2>&1 || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/rootfs/bin" "$work/rootfs/proc" "$work/rootfs/dev" "$work/rootfs/sys" "$work/rootfs/tmp"
cp "$BUSYBOX" "$work/rootfs/bin/busybox"
ln -s busybox "$work/rootfs/bin/true"
ln -s busybox "$work/rootfs/bin/sh"

bundle() { # name resources-json
    mkdir -p "$work/$1"
    "$KOSRUN" spec --bundle "$work/$1"
    jq --arg root "$work/rootfs" --arg cg "/$tag-$1" --argjson res "$2" '
        .process.terminal = false | .process.args = ["true"] | .root.path = $root
        | .linux.cgroupsPath = $cg
        | if $res == null then del(.linux.resources) else .linux.resources = $res end' \
        "$work/$1/config.json" > "$work/$1/config.json.new"
    mv "$work/$1/config.json.new" "$work/$1/config.json"
}
bundle plain null
# Limits that do not bind (shares at the default 1024, a quota of two CPUs): the difference
# is then the cost of writing them, not of running under them, which on a busy machine
# (lower shares lose to the other load) would dominate.
bundle limited '{"memory": {"limit": 268435456}, "pids": {"limit": 100},
                 "cpu": {"shares": 1024, "quota": 200000, "period": 100000}}'

run() { echo "$KOSRUN --root $work/state run --bundle $work/$1 $tag-$1"; }
# Both must work before they are timed.
for v in plain limited; do
    $(run $v) </dev/null || { echo "cgroup_overhead: kosrun run ($v) failed" >&2; exit 1; }
done

# Rounds alternate the order, so a load change on the machine during the run (builds, other
# benchmarks) lands on both variants alike; the medians are over all rounds' times.
for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then order=(plain limited); else order=(limited plain); fi
    args=()
    for v in "${order[@]}"; do args+=(-n "$v" "$(run "$v")"); done
    hyperfine -N --warmup 2 --runs "$RUNS" --export-json "$work/round-$r.json" "${args[@]}" >/dev/null
done

jq -rs '
    def median: sort | if length % 2 == 1 then .[length / 2 | floor]
                       else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    def times($n): [.[].results[] | select(.command == $n) | .times[]] | map(. * 1000);
    def ms: . * 1000 | round / 1000;
    def cpu($n): [.[].results[] | select(.command == $n) | (.user + .system) * 1000] | add / length;
    (times("plain") | median) as $a | (times("limited") | median) as $b
    | "kosrun run of a busybox `true` container, median of \(times("plain") | length) runs each:",
      "  without linux.resources: \($a | ms) ms",
      "  with memory+pids+cpu:    \($b | ms) ms",
      "  cost of the limits:      \(($b - $a) | ms) ms \(if ($b - $a) < 1 then "(under 1 ms)" else "(OVER 1 ms)" end)",
      "CPU time (user+system of kosrun and the container, mean), less disturbed by other load:",
      "  without: \(cpu("plain") | ms) ms, with: \(cpu("limited") | ms) ms, difference: \((cpu("limited") - cpu("plain")) | ms) ms"
' "$work"/round-*.json
read -r load _ < /proc/loadavg
echo "load average ${load} on $(nproc) CPUs (wall-time medians swing by milliseconds when it is well above the CPU count; CPU time does not)"
