#!/usr/bin/env bash
# containerd-shim-kos-v2 vs containerd-shim-runc-v2 on the same private containerd:
#  - `ctr run --rm` of busybox `true` (target: kos shim at or under 0.5x the runc shim), with
#    the floor of that containerd measured in the same run: a shim that runs nothing
#    (shim/examples/noop_shim.rs, containerd-shim-noop-v2), so what is left is containerd's
#    and ctr's own time; and the same lifecycle through each shim alone
#    (shim/examples/lifecycle.rs, same runtime);
#  - idle shim memory with 1 and with 10 containers, RSS and PSS from /proc/PID/smaps_rollup
#    (target: at or under conmon's footprint, measured here too when podman can run it, and
#    at or under 0.2x containerd-shim-runc-v2).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
release=$here/../target/release
shim=${KOS_SHIM:-$release/containerd-shim-kos-v2}
kosrun=${KOSRUN:-$release/kosrun}
runs=${RUNS:-20}
noop=${KOS_NOOP_SHIM:-$release/examples/noop_shim}
for f in "$shim" "$kosrun"; do
    [ -x "$f" ] || { echo "missing $f: cargo build --release -p kos-shim -p kosrun" >&2; exit 1; }
done
# `make bench` builds binaries only: the no-op shim and the lifecycle driver are examples.
if [ ! -x "$noop" ] || [ ! -x "$release/examples/lifecycle" ]; then
    (cd "$here/.." && "${CARGO:-cargo}" build --release -p kos-shim --examples) >&2
fi
[ -x "$noop" ] || { echo "missing $noop: cargo build --release -p kos-shim --examples" >&2; exit 1; }

work=$(mktemp -d /tmp/kos-bench-shim.XXXXXX)
ns=kos-bench-$$
sock=$work/c.sock
ctr="ctr -a $sock -n $ns"
img=kos.bench/busybox:latest
cpid=""
cleanup() {
    set +e
    if [ -n "$cpid" ]; then
        for t in $($ctr tasks ls -q 2>/dev/null); do $ctr tasks kill -a -s 9 "$t" >/dev/null 2>&1; done
        sleep 0.5
        for t in $($ctr tasks ls -q 2>/dev/null); do $ctr tasks rm -f "$t" >/dev/null 2>&1; done
        for c in $($ctr containers ls -q 2>/dev/null); do $ctr containers rm "$c" >/dev/null 2>&1; done
        kill "$cpid" 2>/dev/null; wait "$cpid" 2>/dev/null
    fi
    if [ -n "${podman_root:-}" ]; then
        podman $podman_opts rm -f -a >/dev/null 2>&1
        podman $podman_opts system reset -f >/dev/null 2>&1
        # podman's default cgroup parent (and its conmon group), when this run made it.
        if [ -z "$libpod_before" ]; then
            for d in /sys/fs/cgroup/*/libpod_parent; do
                [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
            done
        fi
    fi
    for p in $(pgrep -f -- "-address $sock " 2>/dev/null) $(pgrep -f -- "-namespace $ns-lc " 2>/dev/null) \
        $(pgrep -f -- "serve /run/containerd/s/noop-$ns-" 2>/dev/null); do
        kill -9 "$p" 2>/dev/null
    done
    rm -f /run/containerd/s/noop-"$ns"-*
    grep " $work" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do umount -l "$m"; done
    for d in /sys/fs/cgroup/*/"$ns" /sys/fs/cgroup/unified/"$ns"; do
        [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    rm -rf "/run/containerd/kos/$ns" "/run/containerd/runc/$ns" "/run/containerd/kos/$ns-lc" \
        "/run/containerd/runc/$ns-lc" "$work"
}
libpod_before=$(ls -d /sys/fs/cgroup/*/libpod_parent 2>/dev/null || true)
trap cleanup EXIT

# The shim next to kosrun, so the shim's default runtime is this kosrun.
mkdir -p "$work/bin"
cp "$shim" "$work/bin/containerd-shim-kos-v2"
ln -s "$(readlink -f "$kosrun")" "$work/bin/kosrun"
cp "$noop" "$work/bin/containerd-shim-noop-v2"

# A busybox image built here (docker-save layout), never downloaded.
mkdir -p "$work/img/root/bin" "$work/img/out"
cp /bin/busybox "$work/img/root/bin/"
for a in sh true sleep; do ln -s busybox "$work/img/root/bin/$a"; done
tar -C "$work/img/root" -cf "$work/img/layer.tar" .
diff=$(sha256sum "$work/img/layer.tar" | cut -d' ' -f1)
mkdir -p "$work/img/out/$diff" && mv "$work/img/layer.tar" "$work/img/out/$diff/layer.tar"
printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"],"Env":["PATH=/bin"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$diff" >"$work/img/cfg.json"
cfg=$(sha256sum "$work/img/cfg.json" | cut -d' ' -f1)
cp "$work/img/cfg.json" "$work/img/out/$cfg.json"
printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]' "$cfg" "$img" "$diff" >"$work/img/out/manifest.json"
tar -C "$work/img/out" -cf "$work/busybox.tar" .

cat >"$work/config.toml" <<TOML
version = 2
root = "$work/root"
state = "$work/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
TOML
PATH="$work/bin:$PATH" containerd --config "$work/config.toml" >"$work/containerd.log" 2>&1 &
cpid=$!
for _ in $(seq 100); do [ -S "$sock" ] && $ctr version >/dev/null 2>&1 && break; sleep 0.1; done
$ctr images import "$work/busybox.tar" >/dev/null

echo "== ctr run --rm busybox true: io.containerd.kos.v2 vs io.containerd.runc.v2 ($runs runs)"
hyperfine --warmup 3 --runs "$runs" --export-json "$work/run.json" \
    -n kos "$ctr run --rm --runtime io.containerd.kos.v2 $img k\$(date +%s%N) true" \
    -n runc "$ctr run --rm --runtime io.containerd.runc.v2 $img r\$(date +%s%N) true" \
    -n noop "$ctr run --rm --runtime io.containerd.noop.v2 $img n\$(date +%s%N) true" >/dev/null
python3 - "$work/run.json" <<'PY'
import json, sys
res = {r["command"]: r["median"] * 1000 for r in json.load(open(sys.argv[1]))["results"]}
k, r, n = res["kos"], res["runc"], res["noop"]
print(f"ctr run --rm medians: kos shim {k:.1f} ms, runc shim {r:.1f} ms; kos/runc = {k / r:.2f} (target <= 0.5)")
print(f"  floor (no-op shim, no runtime: containerd + ctr alone) {n:.1f} ms = {n / r:.2f} of runc;")
print(f"  above the floor: kos shim + kosrun {k - n:.1f} ms, runc shim + runc {r - n:.1f} ms ({(k - n) / (r - n):.2f});")
print(f"  0.5x would leave the kos shim and its runtime {max(0.5 * r - n, 0):.1f} ms")
PY

# The shims alone, without containerd: start, Create, Start, Wait, Delete, Shutdown driven by
# shim/examples/lifecycle.rs. Same runtime (runc) under both shims isolates the shims' cost;
# kos shim + kosrun is the whole KOS stack.
lc=$release/examples/lifecycle
if [ -x "$lc" ]; then
    mkdir -p "$work/lc/rootfs/bin"
    cp /bin/busybox "$work/lc/rootfs/bin/"
    ln -s busybox "$work/lc/rootfs/bin/true"
    (cd "$work/lc" && "$kosrun" spec)
    python3 - "$work/lc/config.json" "$ns" <<'PY'
import json, sys
p, ns = sys.argv[1], sys.argv[2]
v = json.load(open(p))
v["process"]["args"] = ["true"]
v["process"]["terminal"] = False
v["linux"]["cgroupsPath"] = f"/{ns}/lifecycle"
json.dump(v, open(p, "w"))
PY
    echo "== one container lifecycle through the shim alone (no containerd), $runs runs"
    hyperfine -N --warmup 3 --runs "$runs" --export-json "$work/lc.json" \
        -n kos-runc "$lc $work/bin/containerd-shim-kos-v2 $(command -v runc) $work/lc $ns-lc" \
        -n runc-runc "$lc $(command -v containerd-shim-runc-v2) $(command -v runc) $work/lc $ns-lc" \
        -n kos-kosrun "$lc $work/bin/containerd-shim-kos-v2 $kosrun $work/lc $ns-lc" >/dev/null
    python3 - "$work/lc.json" <<'PY'
import json, sys
res = {r["command"]: r["median"] * 1000 for r in json.load(open(sys.argv[1]))["results"]}
a, b, c = res["kos-runc"], res["runc-runc"], res["kos-kosrun"]
print(f"  kos shim + runc {a:.1f} ms, runc shim + runc {b:.1f} ms: kos/runc shim = {a / b:.2f} (the shims' own difference, runc's time in both; informational)")
print(f"  kos shim + kosrun {c:.1f} ms: KOS stack / runc stack = {c / b:.2f}")
PY
else
    echo "== shim-only lifecycle skipped: build it with cargo build --release -p kos-shim --examples"
fi

# Sum of RSS and PSS (kB) over the processes whose command line matches $1.
mem() {
    local rss=0 pss=0 n=0
    for p in $(pgrep -f -- "$1"); do
        read -r r s < <(awk '/^Rss:/{r=$2} /^Pss:/{s=$2} END{print r, s}' "/proc/$p/smaps_rollup")
        rss=$((rss + r)); pss=$((pss + s)); n=$((n + 1))
    done
    echo "$rss $pss $n"
}

declare -A R P
for count in 1 10; do
    for rt in kos runc; do
        for i in $(seq "$count"); do
            $ctr run -d --runtime "io.containerd.$rt.v2" $img "idle-$rt-$count-$i" sleep 100000 >/dev/null
        done
    done
    sleep 1
    read -r kr kp kn < <(mem "containerd-shim-kos-v2 -namespace $ns ")
    read -r rr rp rn < <(mem "containerd-shim-runc-v2 -namespace $ns ")
    R[kos$count]=$kr; P[kos$count]=$kp
    R[runc$count]=$rr; P[runc$count]=$rp
    echo "== $count idle container(s) per runtime: shim memory per container"
    python3 - "$count" "$kr" "$kp" "$kn" "$rr" "$rp" "$rn" <<'PY'
import sys
c, kr, kp, kn, rr, rp, rn = map(int, sys.argv[1:])
print(f"  kos shim : {kn} process(es), RSS {kr / c / 1024:.2f} MB, PSS {kp / c / 1024:.2f} MB per container")
print(f"  runc shim: {rn} process(es), RSS {rr / c / 1024:.2f} MB, PSS {rp / c / 1024:.2f} MB per container")
print(f"  kos/runc: RSS {kr / rr:.3f}, PSS {kp / rp:.3f} (target <= 0.2)")
print(f"  kos shim vs conmon's footprint: RSS {kr / c / 1024:.2f} of 2 MB, PSS {kp / c / 1024:.2f} of 0.6 MB (target: at or under both)")
PY
    for t in $($ctr tasks ls -q); do $ctr tasks kill -s 9 "$t" >/dev/null; done
    sleep 0.5
    for t in $($ctr tasks ls -q); do $ctr tasks rm "$t" >/dev/null 2>&1; done
    for c in $($ctr containers ls -q); do $ctr containers rm "$c" >/dev/null; done
done

# conmon, the footprint target, measured live when podman can run a container here.
podman_root=$work/podman
podman_opts="--root $podman_root/root --runroot $podman_root/run --cgroup-manager cgroupfs --events-backend file --storage-driver vfs"
if podman $podman_opts load -i "$work/busybox.tar" >/dev/null 2>&1 &&
    podman $podman_opts run -d --network none --name kos-bench-conmon $img sleep 100000 >/dev/null 2>&1; then
    sleep 1
    read -r cr cp cn < <(mem "conmon .*kos-bench-conmon")
    echo "== conmon (podman) for 1 idle container: RSS $((cr / 1024)).$(((cr % 1024) * 100 / 1024)) MB, PSS $((cp / 1024)).$(((cp % 1024) * 100 / 1024)) MB"
    python3 -c "import sys; kr,kp,cr,cp=map(int,sys.argv[1:]); print(f'  kos/conmon (1 container): RSS {kr/cr:.2f}, PSS {kp/cp:.2f} (target <= 1.0)')" \
        "${R[kos1]}" "${P[kos1]}" "$cr" "$cp"
else
    echo "== conmon not measured (podman could not run a container here); reference: about 2 MB RSS, 0.6 MB PSS"
fi
