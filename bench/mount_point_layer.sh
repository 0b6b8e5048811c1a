#!/usr/bin/env bash
# The cached mount-point layer (kos-image, snapshot/mount_points.rs) against none, side by
# side in one run: N container rootfs starts and stops of a busybox-like image without
# /proc, /dev, /sys, /etc/hostname, /etc/hosts, /etc/resolv.conf, alternating with and
# without the layer. A start prepares the overlay rootfs, makes the targets the image
# lacks (as kosrun does) and mounts a tmpfs on /proc; a stop unmounts and releases it.
# The work dir is on the data root's filesystem (/var/tmp), where the new inodes the
# layer saves cost what they cost a real start; it is removed at exit.
#
#   bench/mount_point_layer.sh   (as root; RUNS=n starts of each, default 50)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-50}
[ "$(id -u)" = 0 ] || { echo "bench/mount_point_layer.sh: run as root (overlay mounts)" >&2; exit 1; }
cargo build --release -q -p kos-image --example mount_point_layer_bench
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/examples/mount_point_layer_bench
T=$(mktemp -d /var/tmp/kos-mpl-bench.XXXXXX)
cleanup() {
    # Anything a failed run left mounted below the work dir, deepest first.
    awk -v t="$T" '$5 ~ "^"t {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
    rm -rf "$T"
}
trap cleanup EXIT
"$BIN" "$T" "$RUNS"
