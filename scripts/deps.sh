#!/usr/bin/env bash
# Install what KOS needs to build, demo and test, only where it is missing.
set -euo pipefail

# One line per purpose; tests fail (never skip) when a tool listed here is missing.
pkgs=(busybox-static runc crun containerd podman conmon skopeo docker-registry criu uidmap
      netavark aardvark-dns containernetworking-plugins iptables docker.io docker-compose python3-docker
      iproute2 nftables util-linux bsdutils procps tmux sqlite3 jq python3 hyperfine
      protobuf-compiler libssl-dev pkg-config libcrypt-dev
      gcc libc6-dev)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# kubectl (the CRI streaming tests drive it): this machine image ships one (1.32, Google's
# package); where none is installed, Debian's kubernetes-client provides it.
command -v kubectl >/dev/null || missing+=(kubernetes-client)
if ((${#missing[@]})); then
    echo "deps: installing ${missing[*]}"
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
    echo "deps: cargo is missing; install a Rust toolchain (https://rustup.rs) and re-run" >&2
    exit 1
fi
