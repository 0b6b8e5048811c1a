#!/usr/bin/env bash
# Builds the kosrun that KOS ships and prints its path: a static musl binary when the
# x86_64-unknown-linux-musl standard library is installed (or rustup can add it), else the
# glibc static PIE of the workspace build (target/release/kosrun).
#
# Why musl: a static glibc process runs ~45 CPUID instructions at start-up (init_cpu_features
# and the cache-size probe), and under a hypervisor each one is a VM exit: on this VM that is
# 0.3 ms of every exec (an empty Rust program: glibc 0.53 ms, musl 0.24 ms), and kosrun is
# exec'd once per `run` and per engine container (the shim's `run --detach`). musl probes
# nothing at start.
# kosrun has no C dependency, so the musl build needs nothing but the target's std.
#
#   scripts/build-kosrun.sh           build (quietly unless it fails) and print the path
#   scripts/build-kosrun.sh --path    print the path of the newest build, building nothing
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=x86_64-unknown-linux-musl
cargo=${CARGO:-cargo}
musl=$root/target/$target/release/kosrun
glibc=$root/target/release/kosrun

if [ "${1:-}" = "--path" ]; then
    if [ -x "$musl" ]; then echo "$musl"; else echo "$glibc"; fi
    exit 0
fi

have_target() {
    rustup target list --installed 2>/dev/null | grep -qx "$target"
}
# Bounded: where rustup's server is out of reach, its retries would hold the build for minutes.
if command -v rustup >/dev/null && { have_target || timeout 180 rustup target add "$target" >&2; }; then
    # The musl build goes to its own target directory level (target/<triple>/release), so
    # the workspace's glibc build of kosrun (tests' CARGO_BIN_EXE_kosrun) is left alone.
    (cd "$root" && "$cargo" build --release -q -p kosrun --target "$target" >&2)
    echo "$musl"
else
    echo "build-kosrun: the $target target is not available; shipping the glibc build" >&2
    (cd "$root" && "$cargo" build --release -q -p kosrun >&2)
    echo "$glibc"
fi
