#!/usr/bin/env bash
# Dockerfile build: kos-image's builder (image/examples/kos_build.rs, RUN through kosrun) side by
# side with Debian's dockerd 20.10 legacy builder (DOCKER_BUILDKIT=0), on the same 6-step
# Dockerfile (FROM a busybox image, COPY of 2,000 files, RUN, ENV, WORKDIR, CMD) and context:
#   cold      every step runs (--no-cache; the base image is loaded in both)
#   one-file  rebuild after one of the 2,000 files changed (COPY and the steps after it run)
#   cached    rebuild with nothing changed (every step a cache hit)
# The dockerd runs with its own data-root, exec-root and socket, no iptables or bridge, and is
# stopped on exit; the base image is loaded into it with `docker load` of an archive made from
# the same image kos builds on. RUN steps use network none on both sides.
# Targets: cold <= 0.5x dockerd, one-file rebuild <= 0.25x.
#
#   bench/build.sh   (as root; RUNS=n for more runs, KOSRUN=path for the runtime)
set -euo pipefail

RUNS=${RUNS:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
KOSRUN=${KOSRUN:-$TARGET_DIR/release/kosrun}
BIN=$TARGET_DIR/release/examples/kos_build
for tool in dockerd docker hyperfine jq; do
    command -v "$tool" >/dev/null || { echo "build bench: $tool is not installed" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "build bench: run as root" >&2; exit 1; }

(cd "$ROOT" && cargo build --release -q -p kosrun && cargo build --release -q -p kos-image --example kos_build)

T=$(mktemp -d /var/tmp/kos-build-bench.XXXXXX)
DPID=""
TMPFS=""
# A private tmpfs unless BENCH_ON_DISK=1: every run creates and deletes thousands of files, and
# on this disk's ext4 that makes later runs crawl past recently deleted inodes (see
# image/bench/run.sh), which would measure the filesystem, not the builders.
if [ "${BENCH_ON_DISK:-0}" != 1 ]; then
    mount -t tmpfs -o size=8g,mode=0700 kos-build-bench "$T"
    TMPFS=1
fi
cleanup() {
    # Every step runs even when one fails (a grep that finds nothing must not end the cleanup).
    set +e +o pipefail
    if [ -n "$DPID" ]; then
        kill "$DPID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$DPID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$DPID" 2>/dev/null || true
    fi
    grep " $T/" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf "${T:?}"/* 2>/dev/null || true
    if [ -n "$TMPFS" ]; then umount -l "$T" 2>/dev/null || true; fi
    rm -rf "$T"
    # The cgroup parents of dockerd's build containers ("docker") and the builder's RUN steps
    # ("kos"), removed when this run made them.
    for n in docker kos; do
        grep -qx "$n" <<<"$cg_before" && continue
        for d in /sys/fs/cgroup/*/"$n"; do [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null; done
    done
}
cg_before=$(for n in docker kos; do if ls -d /sys/fs/cgroup/*/"$n" >/dev/null 2>&1; then echo "$n"; fi; done)
trap cleanup EXIT INT TERM

# The context: 2,000 small files and the Dockerfile.
mkdir -p "$T/ctx/files"
for i in $(seq -w 1 2000); do
    head -c $((512 + 10#$i % 3000)) /dev/urandom | base64 > "$T/ctx/files/f$i"
done
cat > "$T/ctx/Dockerfile" <<'EOF'
FROM kbt/busybox:bench
COPY files /app/files
RUN ls /app/files | wc -l > /app/count && cat /app/files/f0001 > /app/first
ENV APP=bench
WORKDIR /app
CMD ["cat", "/app/count"]
EOF

# The base image, once for both builders.
"$BIN" base "$T/store" kbt/busybox:bench "$T/base.tar"

SOCK=unix://$T/docker.sock
dockerd --data-root "$T/docker" --exec-root "$T/exec" --host "$SOCK" --pidfile "$T/docker.pid" \
    --iptables=false --ip6tables=false --ip-masq=false --bridge=none --storage-driver=overlay2 \
    >"$T/dockerd.log" 2>&1 &
DPID=$!
for _ in $(seq 1 200); do docker -H "$SOCK" version >/dev/null 2>&1 && break; sleep 0.1; done
docker -H "$SOCK" version >/dev/null || { echo "build bench: dockerd did not start:" >&2; tail -20 "$T/dockerd.log" >&2; exit 1; }
docker -H "$SOCK" load -q -i "$T/base.tar" >/dev/null
export DOCKER_BUILDKIT=0

KOS="$BIN build $T/store $T/ctx kbt/app:bench --kosrun $KOSRUN --network none -q"
DOCKER="docker -H $SOCK build --network none -q -t kbt/app:bench $T/ctx"

# Both must build and give the same result before anything is timed.
[ "$($KOS >/dev/null && echo ok)" = ok ]
[ "$($DOCKER >/dev/null && echo ok)" = ok ]

CHANGE="sh -c 'head -c 600 /dev/urandom | base64 > $T/ctx/files/f1000'"
hyperfine -N --warmup 1 --runs "$RUNS" --export-json "$T/cold.json" \
    -n kos "$KOS --no-cache" -n dockerd "$DOCKER --no-cache" >/dev/null 2>&1
hyperfine -N --warmup 1 --runs "$RUNS" --export-json "$T/onefile.json" --prepare "$CHANGE" \
    -n kos "$KOS" -n dockerd "$DOCKER" >/dev/null 2>&1
hyperfine -N --warmup 1 --runs "$RUNS" --export-json "$T/cached.json" \
    -n kos "$KOS" -n dockerd "$DOCKER" >/dev/null 2>&1

report() { # name file target
    jq -r --arg name "$1" --argjson target "$3" '
        (.results[] | select(.command == "kos") | .median) as $k
        | (.results[] | select(.command == "dockerd") | .median) as $d
        | "\($name): kos \($k * 1000 | round) ms, dockerd \($d * 1000 | round) ms, ratio \(($k / $d) * 100 | round / 100)x"
          + (if $target > 0 then " (target <= \($target)x: \(if $k / $d <= $target then "met" else "MISSED" end))" else "" end)
    ' "$2"
}
echo "Dockerfile build, 6 steps, COPY of 2,000 files; medians of $RUNS runs:"
report "  cold build         " "$T/cold.json" 0.5
report "  one file changed   " "$T/onefile.json" 0.25
report "  nothing changed    " "$T/cached.json" 0
