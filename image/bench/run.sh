#!/bin/sh
# Pull+unpack benchmark: KOS vs containerd's `ctr image pull`, and KOS's
# layer unpack vs a plain `tar -x` of the same layers. Everything runs
# against a private docker-registry on a loopback port and a private
# containerd (own root/state/socket), both stopped on exit.
#
# Usage: image/bench/run.sh   (as root; needs docker-registry, containerd,
#        ctr, hyperfine, tar, python3). RUNS=n sets hyperfine's run count.
#
# The work directory is a private tmpfs unless BENCH_ON_DISK=1: every run
# deletes the previous run's tree, and on ext4 without a journal new inodes
# then crawl past the recently deleted ones (recently_deleted() in
# ext4_new_inode), which swamps the numbers with the filesystem's, not the
# tools', behaviour.
set -eu

RUNS="${RUNS:-5}"
REPO_ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
BIN="$TARGET_DIR/release/examples/kos_image_bench"

for tool in docker-registry containerd ctr hyperfine tar python3; do
    command -v "$tool" >/dev/null 2>&1 || { echo "bench: $tool is not installed" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench: containerd needs root" >&2; exit 1; }

(cd "$REPO_ROOT" && cargo build --release -q -p kos-image --example kos_image_bench)

T="$(mktemp -d /var/tmp/kos-bench.XXXXXX)"
REG_PID=""
CTRD_PID=""
TMPFS=""
if [ "${BENCH_ON_DISK:-0}" != 1 ]; then
    mount -t tmpfs -o size=12g,mode=0700 kos-bench "$T"
    TMPFS=1
fi
cleanup() {
    [ -n "$CTRD_PID" ] && kill "$CTRD_PID" 2>/dev/null && wait "$CTRD_PID" 2>/dev/null || true
    [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null && wait "$REG_PID" 2>/dev/null || true
    # containerd may leave snapshot mounts below its root.
    grep " $T/" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    if [ -n "$TMPFS" ]; then umount -l "$T" 2>/dev/null || true; fi
    rm -rf "$T"
}
trap cleanup EXIT INT TERM

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
mkdir -p "$T/registry"
cat > "$T/registry/config.yml" <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $T/registry/storage
http:
  addr: 127.0.0.1:$PORT
YML
docker-registry serve "$T/registry/config.yml" >"$T/registry/log" 2>&1 &
REG_PID=$!
for _ in $(seq 100); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/v2/')" 2>/dev/null && break
    sleep 0.1
done

REF="127.0.0.1:$PORT/kos-bench/app:1"
"$BIN" gen "$REF" "$T/layers"

mkdir -p "$T/ctrd"
cat > "$T/ctrd/config.toml" <<TOML
version = 2
root = "$T/ctrd/root"
state = "$T/ctrd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$T/ctrd/containerd.sock"
[ttrpc]
  address = "$T/ctrd/containerd.sock.ttrpc"
[debug]
  address = "$T/ctrd/debug.sock"
TOML
containerd --config "$T/ctrd/config.toml" >"$T/ctrd/log" 2>&1 &
CTRD_PID=$!
SOCK="$T/ctrd/containerd.sock"
for _ in $(seq 100); do
    ctr --address "$SOCK" version >/dev/null 2>&1 && break
    sleep 0.1
done
CTR="ctr --address $SOCK -n kosbench"

echo "== pull + unpack of $REF ($RUNS runs each)"
hyperfine --runs "$RUNS" --warmup 1 --export-json "$T/pull.json" \
    --prepare "rm -rf $T/kstore; sync" \
    -n kos "$BIN pull $T/kstore $REF" \
    --prepare "$CTR images rm --sync $REF >/dev/null 2>&1 || true; sync" \
    -n containerd "$CTR images pull --plain-http $REF"
echo "containerd content left after its prepare step: $($CTR images rm --sync "$REF" >/dev/null 2>&1; $CTR content ls -q | wc -l) blobs"

echo "== unpack of the same layers ($RUNS runs each)"
hyperfine --runs "$RUNS" --warmup 1 --export-json "$T/unpack.json" \
    --prepare "rm -rf $T/kunpack; sync" \
    -n kos-unpack "$BIN unpack $T/kunpack $T/layers/layer-0.tar.gz $T/layers/layer-1.tar.gz $T/layers/layer-2.tar.gz $T/layers/layer-3.tar.gz $T/layers/layer-4.tar.gz $T/layers/layer-5.tar.gz $T/layers/layer-6.tar.gz $T/layers/layer-7.tar.gz" \
    --prepare "rm -rf $T/tunpack; mkdir -p $T/tunpack; sync" \
    -n tar-x "sh -c 'for l in $T/layers/layer-*.tar.gz; do tar -xzf \$l -C $T/tunpack; done'"

python3 - "$T/pull.json" "$T/unpack.json" <<'PY'
import json, sys
def means(p):
    return {r["command"]: r["mean"] for r in json.load(open(p))["results"]}
pull, unpack = means(sys.argv[1]), means(sys.argv[2])
r1 = pull["kos"] / pull["containerd"]
r2 = unpack["kos-unpack"] / unpack["tar-x"]
print(f"kos pull {pull['kos']:.2f}s vs containerd {pull['containerd']:.2f}s: ratio {r1:.2f} (target < 0.60) {'MET' if r1 < 0.6 else 'MISSED'}")
print(f"kos unpack {unpack['kos-unpack']:.2f}s vs tar -x {unpack['tar-x']:.2f}s: ratio {r2:.2f} (target <= 1.50) {'MET' if r2 <= 1.5 else 'MISSED'}")
PY
