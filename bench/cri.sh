#!/usr/bin/env bash
# CRI: kos-cri (the kos-cri-server example: pods without a pause image, kos shim, kosrun)
# vs containerd 1.6's CRI plugin (pause sandbox, containerd-shim-runc-v2, runc), driven by
# the same client (cri/examples/cri-bench.rs), side by side in one run:
#   RunPodSandbox + CreateContainer + StartContainer to running, then StopPodSandbox +
#   RemovePodSandbox, for 1 pod and for 20 pods in a row (host network: no CNI on either).
# Target: kos at or under 0.3x containerd's medians. Also the memory (RSS, PSS) of each
# server and its shims while 20 pods run.
# Images are busybox-static built here and served from a loopback docker-registry.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$here/..
release=$root/target/release
runs=${RUNS:-5}
server=$release/examples/kos-cri-server
client=$release/examples/cri-bench
(cd "$root" && cargo build --release -q -p kosrun -p kos-shim && cargo build --release -q -p kos-cri --examples)

work=$(mktemp -d /tmp/kos-bench-cri.XXXXXX)
cg=kos-bench-cri-$$
pids=()
# containerd's CRI plugin puts pods under k8s.io/ in every hierarchy; removed after if made here.
k8s_existed=$( (ls -d /sys/fs/cgroup/*/k8s.io 2>/dev/null || true) | wc -l)
runc_k8s_existed=$( [ -d /run/containerd/runc/k8s.io ] && echo 1 || echo 0)
cleanup() {
    set +e
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    for p in $(pgrep -f -- "$work" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    grep " $work" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do umount -l "$m"; done
    for h in /sys/fs/cgroup/*/; do
        [ -d "$h$cg" ] && find "$h$cg" -depth -type d -exec rmdir {} \; 2>/dev/null
        [ "$k8s_existed" = 0 ] && [ -d "${h}k8s.io" ] && find "${h}k8s.io" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    # The runc shim's state root for the k8s.io namespace, when this run made it (empty now).
    [ "$runc_k8s_existed" = 0 ] && rmdir /run/containerd/runc/k8s.io 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# --- a busybox image in a loopback registry ---
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
reg=127.0.0.1:$port
cat > "$work/registry.yml" <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: $reg
YML
/usr/bin/docker-registry serve "$work/registry.yml" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fs "http://$reg/v2/" >/dev/null && break; sleep 0.1; done

mkimage() { # name cmd...
    local name=$1; shift
    local d=$work/img-$name
    mkdir -p "$d/root/bin" "$d/root/tmp" "$d/root/etc" "$d/root/proc" "$d/root/sys" "$d/root/dev" "$d/out"
    cp /bin/busybox "$d/root/bin/busybox"
    for a in sh sleep true; do ln -sf busybox "$d/root/bin/$a"; done
    tar --numeric-owner -C "$d/root" -cf "$d/layer.tar" .
    local diff; diff=$(sha256sum "$d/layer.tar" | cut -d' ' -f1)
    mkdir -p "$d/out/$diff"; cp "$d/layer.tar" "$d/out/$diff/layer.tar"
    local cmd; cmd=$(printf '"%s",' "$@"); cmd="[${cmd%,}]"
    printf '{"architecture":"amd64","os":"linux","config":{"Cmd":%s,"Env":["PATH=/bin"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$cmd" "$diff" > "$d/config.json"
    local cfg; cfg=$(sha256sum "$d/config.json" | cut -d' ' -f1)
    cp "$d/config.json" "$d/out/$cfg.json"
    printf '[{"Config":"%s.json","RepoTags":["bench/%s:1"],"Layers":["%s/layer.tar"]}]' "$cfg" "$name" "$diff" > "$d/out/manifest.json"
    tar -C "$d/out" -cf "$d/img.tar" .
    skopeo copy --quiet --dest-tls-verify=false "docker-archive:$d/img.tar" "docker://$reg/bench/$name:1"
}
mkimage busybox sh
mkimage pause sleep 2147483647

# --- kos-cri ---
"$server" --socket "$work/kos/cri.sock" --data-dir "$work/kos/data" --exec-root "$work/kos/run" \
    --shim "$release/containerd-shim-kos-v2" --runtime "$release/kosrun" \
    --registry-config-dir "$work/kos/certs.d" --cni-conf-dir "$work/kos/net.d" --cgroup-root "$cg" &
pids+=($!)
for _ in $(seq 100); do [ -S "$work/kos/cri.sock" ] && break; sleep 0.1; done

# --- containerd 1.6 with its CRI plugin (runc) ---
mkdir -p "$work/ctd"
cat > "$work/ctd/config.toml" <<TOML
version = 2
root = "$work/ctd/root"
state = "$work/ctd/state"
[grpc]
  address = "$work/ctd/c.sock"
[ttrpc]
  address = "$work/ctd/c.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$reg/bench/pause:1"
  disable_tcp_service = true
  disable_apparmor = true
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$work/ctd/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."$reg"]
    endpoint = ["http://$reg"]
TOML
containerd --config "$work/ctd/config.toml" >"$work/ctd/log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do [ -S "$work/ctd/c.sock" ] && break; sleep 0.1; done

echo "CRI: RunPodSandbox+CreateContainer+StartContainer, then StopPodSandbox+RemovePodSandbox (runs=$runs)"
for n in 1 20; do
    r=$runs; [ "$n" = 20 ] && r=$(( (runs + 1) / 2 ))
    k=$("$client" --socket "$work/kos/cri.sock" --image "$reg/bench/busybox:1" --pods $n --runs $r \
        --mem "$work/kos/cri.sock" --mem "$work/kos/run/cri-shim.sock")
    c=$("$client" --socket "$work/ctd/c.sock" --image "$reg/bench/busybox:1" \
        --sandbox-image "$reg/bench/pause:1" --pods $n --runs $r \
        --mem "containerd --config $work/ctd" --mem "-address $work/ctd/c.sock")
    echo "kos-cri     $k" | tr '\n' ' '; echo
    echo "containerd  $c" | tr '\n' ' '; echo
    ku=$(sed -n 's/.*up_median_ms=\([0-9.]*\).*/\1/p' <<<"$k"); cu=$(sed -n 's/.*up_median_ms=\([0-9.]*\).*/\1/p' <<<"$c")
    kd=$(sed -n 's/.*down_median_ms=\([0-9.]*\).*/\1/p' <<<"$k"); cd_=$(sed -n 's/.*down_median_ms=\([0-9.]*\).*/\1/p' <<<"$c")
    kr=$(sed -n 's/.*run_median_ms=\([0-9.]*\).*/\1/p' <<<"$k"); cr=$(sed -n 's/.*run_median_ms=\([0-9.]*\).*/\1/p' <<<"$c")
    python3 -c "print(f'  {$n} pod(s): up {${ku}/${cu}:.2f}x  down {${kd}/${cd_}:.2f}x  whole run {${kr}/${cr}:.2f}x of containerd (target <= 0.3x)')"
done
