#!/usr/bin/env bash
# The kos CLI against the docker CLI (28.x, /usr/local/bin/docker), both talking to the same
# kosd, side by side in one hyperfine run:
#   kos run --rm --network none IMG true     vs     docker run --rm --network none IMG true
# and, to show the CLI's own cost without a container, `kos ps` vs `docker ps`.
# The busybox image is loaded into the kosd from a docker-archive made here. kosd gets its own
# data root, exec root and socket under one temp dir, removed at exit.
# Target (issue 13): kos run <= 1.1x docker run (the CLI adds nothing).
#
#   bench/cli.sh   (as root; RUNS=n for more runs; DAEMON_DIR=dir to take kosd, the shim and
#                   kosrun from dir instead of this tree's release build)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${RUNS:-30}
DOCKER=/usr/local/bin/docker
for tool in hyperfine jq "$DOCKER"; do
    command -v "$tool" >/dev/null || { echo "bench/cli.sh: $tool is not installed (make deps)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench/cli.sh: run as root" >&2; exit 1; }

BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
if [ -n "${DAEMON_DIR:-}" ]; then
    cargo build --release -q -p kos
    KOSD=$DAEMON_DIR/kosd
else
    cargo build --release -q -p kosd -p kos -p kos-shim -p kosrun -p kos-dns
    KOSD=$BIN/kosd
fi

T=$(mktemp -d /var/tmp/kos-cli-bench.XXXXXX)
KPID=""
cleanup() {
    set +e
    if [ -n "$KPID" ]; then
        ids=$("$BIN/kos" -H "unix://$T/run/kos.sock" ps -aq 2>/dev/null)
        [ -n "$ids" ] && "$BIN/kos" -H "unix://$T/run/kos.sock" rm -f $ids >/dev/null 2>&1
        kill "$KPID" 2>/dev/null
        for _ in $(seq 1 150); do kill -0 "$KPID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$KPID" 2>/dev/null
    fi
    grep " $T/" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do umount -l "$m"; done
    # kosd's containers go under the default cgroup parent "kos": removed when this run made it.
    if [ "$kos_cg_before" = 0 ]; then
        for d in /sys/fs/cgroup/*/kos; do [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null; done
    fi
    # kosd turns forwarding on for its bridge; put back as this run found it.
    echo "$ip_forward_before" > /proc/sys/net/ipv4/ip_forward
    rm -rf "$T"
}
ip_forward_before=$(cat /proc/sys/net/ipv4/ip_forward)
kos_cg_before=$( (ls -d /sys/fs/cgroup/*/kos 2>/dev/null || true) | wc -l)
trap cleanup EXIT INT TERM

# A docker-archive of busybox-static and its applets.
mkdir -p "$T/rootfs/bin" "$T/rootfs/etc" "$T/rootfs/tmp" "$T/archive"
cp /bin/busybox "$T/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$T/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$T/rootfs/etc/passwd"
echo 'root:x:0:' > "$T/rootfs/etc/group"
tar --numeric-owner --owner=0 --group=0 -C "$T/rootfs" -cf "$T/archive/layer.tar" .
L=$(sha256sum "$T/archive/layer.tar" | cut -d' ' -f1)
printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$L" > "$T/archive/config.json"
C=$(sha256sum "$T/archive/config.json" | cut -d' ' -f1)
mv "$T/archive/config.json" "$T/archive/$C.json"
printf '[{"Config":"%s.json","RepoTags":["kosbench/busybox:1"],"Layers":["layer.tar"]}]' "$C" > "$T/archive/manifest.json"
tar -C "$T/archive" -cf "$T/image.tar" manifest.json "$C.json" layer.tar

echo '{}' > "$T/daemon.json"
"$KOSD" -H "unix://$T/run/kos.sock" --data-root "$T/data" --exec-root "$T/run" \
    --config-file "$T/daemon.json" 2> "$T/kosd.log" &
KPID=$!
for _ in $(seq 1 300); do
    "$BIN/kos" -H "unix://$T/run/kos.sock" version >/dev/null 2>&1 && break
    kill -0 "$KPID" 2>/dev/null || { cat "$T/kosd.log" >&2; exit 1; }
    sleep 0.05
done
HOST="unix://$T/run/kos.sock"
"$BIN/kos" -H "$HOST" load -q -i "$T/image.tar" >/dev/null
export DOCKER_CONFIG="$T/docker-config"
unset DOCKER_HOST KOS_HOST DOCKER_CONTEXT

KOS_RUN="$BIN/kos -H $HOST run --rm --network none kosbench/busybox:1 true"
DOCKER_RUN="$DOCKER -H $HOST run --rm --network none kosbench/busybox:1 true"
# Both must work before they are timed.
$KOS_RUN
$DOCKER_RUN

hyperfine -N --style basic --warmup 3 --runs "$RUNS" --export-json "$T/run.json" \
    -n "kos run --rm" "$KOS_RUN" -n "docker run --rm" "$DOCKER_RUN"
hyperfine -N --style basic --warmup 3 --runs "$RUNS" --export-json "$T/ps.json" \
    -n "kos ps" "$BIN/kos -H $HOST ps" -n "docker ps" "$DOCKER -H $HOST ps"

ratio() { jq -r '(.results[0].median / .results[1].median)' "$1"; }
R=$(ratio "$T/run.json")
P=$(ratio "$T/ps.json")
km=$(jq -r '.results[0].median * 1000' "$T/run.json")
dm=$(jq -r '.results[1].median * 1000' "$T/run.json")
printf 'cli: kos run --rm %.1f ms, docker run --rm %.1f ms (medians): %.2fx (target <= 1.1x)\n' "$km" "$dm" "$R"
printf 'cli: kos ps / docker ps: %.2fx\n' "$P"
awk -v r="$R" 'BEGIN { exit !(r <= 1.1) }' || { echo "cli: kos run is above 1.1x docker run" >&2; exit 1; }
