#!/usr/bin/env bash
# kosd against Debian's dockerd 20.10 and podman, side by side in one run, on the same busybox
# image served from a loopback docker-registry:
#   run-none     `docker run --rm --network none IMG true` (kosd, dockerd) / `podman run --rm`
#   run-bridge   the same on the default bridge (kosd on its own bridge and nft table, dockerd
#                on its own kos-named bridge without iptables, podman on its own network)
#   100 x `docker run -d`; with 100 running on each, `docker ps`, `ps -a` and `ps -a --filter`
#                (CLI time) and GET /containers/json (API time, no CLI start); `docker rm -f`
#                of the 100 (kosd, dockerd); ratios kosd/dockerd against the 0.15 target
#   idle RSS of kosd, and of dockerd + its containerd; kosd's and its shims' RSS with 100 running
# Targets (issue 12): kosd <= 0.15x dockerd and <= 0.2x podman medians; idle RSS <= 15 MB,
# <= 30 MB with 100 running containers.
# Each engine gets its own data root, exec root and socket under one temp dir; everything is
# stopped and removed at exit (bridges, netavark chains, ip_forward as it was).
#
#   bench/kosd.sh   (as root; RUNS=n runs per engine, in ROUNDS=4 interleaved rounds;
#                    PROFILE=debug to use debug builds)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${RUNS:-20}
PROFILE=${PROFILE:-release}
for tool in dockerd docker podman hyperfine skopeo jq /usr/bin/docker-registry; do
    command -v "$tool" >/dev/null || { echo "bench/kosd.sh: $tool is not installed (make deps)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench/kosd.sh: run as root" >&2; exit 1; }
DOCKER=/usr/local/bin/docker
[ -x "$DOCKER" ] || DOCKER=$(command -v docker)

if [ "$PROFILE" = release ]; then
    cargo build --release -q -p kosd -p kos-shim -p kosrun -p kos-dns
else
    cargo build -q -p kosd -p kos-shim -p kosrun -p kos-dns
fi
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE

T=$(mktemp -d /var/tmp/kosd-bench.XXXXXX)
sfx=$(( $$ % 10000 ))
BR=kosbd$sfx
PODNET=kosbp$sfx
KBR=kosbk$sfx
ip_forward_before=$(cat /proc/sys/net/ipv4/ip_forward)
KPID="" DPID="" RPID=""
stop_pid() {
    [ -n "$1" ] || return 0
    kill "$1" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$1" 2>/dev/null || true
}
cleanup() {
    set +e
    [ -n "$KPID" ] && "$DOCKER" -H "unix://$T/kosd/kos.sock" rm -f $("$DOCKER" -H "unix://$T/kosd/kos.sock" ps -aq 2>/dev/null) >/dev/null 2>&1
    stop_pid "$KPID"
    ip link del "$KBR" 2>/dev/null
    nft delete table inet "$KBR" 2>/dev/null
    [ -n "$DPID" ] && "$DOCKER" -H "unix://$T/docker.sock" rm -f $("$DOCKER" -H "unix://$T/docker.sock" ps -aq 2>/dev/null) >/dev/null 2>&1
    stop_pid "$DPID"
    podman --root "$T/podman" --runroot "$T/run/podman" rm -af >/dev/null 2>&1
    ip link del "$PODNET" 2>/dev/null
    stop_pid "$RPID"
    ip link del "$BR" 2>/dev/null
    # netavark's chains for our network (and its own base chains when this run made them),
    # and ip_forward as it was.
    iptables-save 2>/dev/null | grep -q "$PODNET" && iptables-save | grep -v "$PODNET" | iptables-restore 2>/dev/null
    if [ "$netavark_before" = 0 ] && iptables-save 2>/dev/null | grep -q NETAVARK; then
        iptables-save | grep -v NETAVARK | iptables-restore 2>/dev/null
    fi
    echo "$ip_forward_before" > /proc/sys/net/ipv4/ip_forward
    grep " $T/" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do umount -l "$m"; done
    # The engines' cgroup parents this run made (kosd's own; dockerd's and podman's defaults).
    for d in /sys/fs/cgroup/*/"$KBR" /sys/fs/cgroup/*/docker /sys/fs/cgroup/*/libpod_parent; do
        [ -d "$d" ] || continue
        grep -qxF "$d" <<<"$cg_before" && continue
        find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    rm -rf "$T"
}
cg_before=$(ls -d /sys/fs/cgroup/*/docker /sys/fs/cgroup/*/libpod_parent 2>/dev/null || true)
netavark_before=$(iptables-save 2>/dev/null | grep -c NETAVARK || true)
trap cleanup EXIT INT TERM
if [ "$PROFILE" = release ]; then
    # The engine as installed, with the kosrun KOS ships.
    KOSRUN=${KOSRUN:-$(bash scripts/build-kosrun.sh)} bash scripts/engine-layout.sh "$BIN" "$T/bin"
    BIN=$T/bin
fi

# The image: busybox-static with its applets, as an OCI layout pushed to a loopback registry.
mkdir -p "$T/rootfs/bin" "$T/rootfs/etc" "$T/rootfs/tmp" "$T/oci/blobs/sha256"
cp /bin/busybox "$T/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$T/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$T/rootfs/etc/passwd"
echo 'root:x:0:' > "$T/rootfs/etc/group"
tar --numeric-owner --owner=0 --group=0 -C "$T/rootfs" -cf "$T/layer.tar" .
L=$(sha256sum "$T/layer.tar" | cut -d' ' -f1); LS=$(stat -c %s "$T/layer.tar")
mv "$T/layer.tar" "$T/oci/blobs/sha256/$L"
printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$L" > "$T/config.json"
C=$(sha256sum "$T/config.json" | cut -d' ' -f1); CS=$(stat -c %s "$T/config.json"); mv "$T/config.json" "$T/oci/blobs/sha256/$C"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' "$C" "$CS" "$L" "$LS" > "$T/m.json"
M=$(sha256sum "$T/m.json" | cut -d' ' -f1); MS=$(stat -c %s "$T/m.json"); mv "$T/m.json" "$T/oci/blobs/sha256/$M"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"bench"}}]}' "$M" "$MS" > "$T/oci/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' > "$T/oci/oci-layout"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' "$T/registry" "$PORT" > "$T/registry.yml"
/usr/bin/docker-registry serve "$T/registry.yml" >/dev/null 2>&1 & RPID=$!
for _ in $(seq 1 100); do curl -s "http://127.0.0.1:$PORT/v2/" >/dev/null && break; sleep 0.1; done
IMG=127.0.0.1:$PORT/kosbench/busybox:1
skopeo copy --quiet --dest-tls-verify=false "oci:$T/oci:bench" "docker://$IMG"

# kosd.
mkdir -p "$T/kosd" "$T/run"
# Each engine's exec/run root (state that must not outlive a boot: runtime state, shim and
# containerd sockets, fifos) lives under /run on a standard host, a tmpfs; on this VM /run
# is ext4 without a journal, where every new inode scans past recently deleted ones. So all
# three get theirs on one tmpfs; data roots stay on disk.
mount -t tmpfs -o mode=0700 kos-bench-run "$T/run"
echo '{}' > "$T/kosd/daemon.json"
"$BIN/kosd" -H "unix://$T/kosd/kos.sock" --data-root "$T/kosd/data" --exec-root "$T/run/kosd" \
    --config-file "$T/kosd/daemon.json" --bridge "$KBR" --nft-table "$KBR" --cgroup-parent "$KBR" --log-level error 2>"$T/kosd.log" & KPID=$!
# dockerd on its own bridge, without touching the host's firewall.
ip link add "$BR" type bridge && ip addr add 10.213.$(( sfx % 200 )).1/24 dev "$BR" && ip link set "$BR" up
dockerd --data-root "$T/docker" --exec-root "$T/run/docker" --host "unix://$T/docker.sock" --pidfile "$T/docker.pid" \
    --iptables=false --ip6tables=false --ip-masq=false --bridge="$BR" --storage-driver=overlay2 \
    --containerd-namespace "kosbench$sfx" --log-level error >"$T/dockerd.log" 2>&1 & DPID=$!
for _ in $(seq 1 300); do
    "$DOCKER" -H "unix://$T/kosd/kos.sock" version >/dev/null 2>&1 && "$DOCKER" -H "unix://$T/docker.sock" version >/dev/null 2>&1 && break
    sleep 0.1
done
K="$DOCKER -H unix://$T/kosd/kos.sock"
D="$DOCKER -H unix://$T/docker.sock"
# podman's network config lives here, so its bridge gets a kos name and the host's config is untouched.
mkdir -p "$T/podnet"
printf '[network]\nnetwork_config_dir = "%s"\n' "$T/podnet" > "$T/containers.conf"
export CONTAINERS_CONF=$T/containers.conf
printf '{"name":"%s","id":"%064d","driver":"bridge","network_interface":"%s","created":"2024-01-01T00:00:00Z","subnets":[{"subnet":"10.214.%d.0/24","gateway":"10.214.%d.1"}],"ipv6_enabled":false,"internal":false,"dns_enabled":false,"ipam_options":{"driver":"host-local"}}' \
    "$PODNET" "$sfx" "$PODNET" $(( sfx % 200 )) $(( sfx % 200 )) > "$T/podnet/$PODNET.json"
P="podman --runtime runc --root $T/podman --runroot $T/run/podman --tmpdir $T/run/libpod"
# runc: crun refuses hybrid cgroup hosts. No CAP_SYS_RESOURCE here: podman's default
# nofile/nproc limits cannot be set, so the limits are given.
PR="--ulimit nofile=1024:1024 --ulimit nproc=4096:4096"
$K pull -q "$IMG" >/dev/null
$D pull -q "$IMG" >/dev/null
$P pull -q --tls-verify=false "$IMG" >/dev/null

# One run each first, so a broken engine fails here with its own message.
$K run --rm --network none "$IMG" true
$K run --rm "$IMG" true
$D run --rm --network none "$IMG" true
$P run $PR --rm --network none "$IMG" true
$P run $PR --rm --network "$PODNET" "$IMG" true

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
sleep 1
KRSS=$(rss_kb "$KPID")
CPID=$(pgrep -f "containerd --config $T/run/docker" | head -1 || true)
[ -n "$CPID" ] || CPID=$(pgrep -P "$DPID" containerd | head -1 || true)
DRSS=$(( $(rss_kb "$DPID") + ${CPID:+$(rss_kb "$CPID")}+0 ))

# The three engines' runs go in rounds (each round every engine, in turn), each engine's
# median over all its runs: this VM's speed drifts within a minute (the host's load, the
# kernel's teardown of earlier containers), and hyperfine timing one engine's runs and then
# the next's would tilt the ratios by that drift.
ROUNDS=${ROUNDS:-4}
PER=$(( (RUNS + ROUNDS - 1) / ROUNDS ))
rounds() { # name, then -n NAME CMD pairs: $T/name.json with every command's runs of all rounds
    local name=$1 r; shift
    for r in $(seq 1 "$ROUNDS"); do
        hyperfine -N -w 1 -r "$PER" --style none --export-json "$T/$name.$r.json" "$@" >/dev/null
    done
    python3 - "$T" "$name" "$ROUNDS" <<'PY'
import json, statistics, sys
t, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
times, by_round = {}, {}
for r in range(1, n + 1):
    for res in json.load(open(f"{t}/{name}.{r}.json"))["results"]:
        times.setdefault(res["command"], []).extend(res["times"])
        by_round.setdefault(res["command"], []).append(res["median"])
out = []
for cmd, ts in times.items():
    med = statistics.median(ts)
    out.append({"command": cmd, "median": med, "times": ts})
    rounds = " ".join(f"{m * 1000:.1f}" for m in by_round[cmd])
    print(f"  {cmd:8} median {med * 1000:7.1f} ms  min {min(ts) * 1000:7.1f}  "
          f"max {max(ts) * 1000:7.1f}  ({len(ts)} runs; round medians {rounds})")
json.dump({"results": out}, open(f"{t}/{name}.json", "w"))
PY
}
# The setup (image pushes and pulls, three daemons started) and earlier benchmarks leave
# writeback and discards running for a while.
python3 "$ROOT/scripts/wait-idle.py"
echo "== docker run --rm IMAGE true, --network none ($ROUNDS rounds of $PER runs)"
rounds none \
    -n kosd "$K run --rm --network none $IMG true" \
    -n dockerd "$D run --rm --network none $IMG true" \
    -n podman "$P run $PR --rm --network none $IMG true"
echo "== docker run --rm IMAGE true, default bridge ($ROUNDS rounds of $PER runs)"
rounds bridge \
    -n kosd "$K run --rm $IMG true" \
    -n dockerd "$D run --rm $IMG true" \
    -n podman "$P run $PR --rm --network $PODNET $IMG true"

# Resident memory of kosd's shims (their total and their number), found by their socket directory.
shims_rss_kb() {
    local total=0 n=0 p
    for p in $(pgrep -f "containerd-shim-kos-v2 .*-address $T/run/kosd/s" || true); do
        total=$(( total + $(rss_kb "$p" 2>/dev/null || echo 0) )); n=$(( n + 1 ))
    done
    echo "$total $n"
}
# The 100-container phases, side by side: 100 x `run -d` on kosd, then on dockerd (kosd's
# 100 still running), then the lists with 100 running on each, then `rm -f` of each 100.
# kosd's RSS is sampled between the phases, outside every timed span (sampling 100 shims
# with pgrep and awk takes most of a second; inside the ps span it was once read as ps time).
now() { date +%s.%N; }
run100() { # engine-cli: seconds for 100 x run -d
    local t0; t0=$(now)
    for _ in $(seq 1 100); do $1 run -d --network none "$IMG" sleep 1000 >/dev/null; done
    echo "$(now) - $t0" | bc
}
rm100() { # engine-cli: seconds for one rm -f of every container
    local ids t0; ids=$($1 ps -aq); t0=$(now)
    $1 rm -f $ids >/dev/null
    echo "$(now) - $t0" | bc
}
api_ms() { # socket query: median ms of 50 GET /containers/json on one connection (no CLI start)
    local args=() i
    for i in $(seq 1 50); do args+=(-o /dev/null "http://localhost/containers/json$2"); done
    curl -s --unix-socket "$1" -w '%{time_total}\n' "${args[@]}" | sort -n \
        | awk '{a[NR] = $1} END {printf "%.3f", a[int((NR + 1) / 2)] * 1000}'
}
echo "== 100 x run -d, then ps with 100 running, then rm -f of the 100"
k1=$(run100 "$K")
KRSS100=$(rss_kb "$KPID")
read -r SHIMS SHIMN <<<"$(shims_rss_kb)"
d1=$(run100 "$D")
[ "$($K ps -q | wc -l)" = 100 ] && [ "$($D ps -q | wc -l)" = 100 ] \
    || { echo "bench/kosd.sh: expected 100 running containers on each engine" >&2; exit 1; }
hyperfine -N -w 3 -r "$RUNS" --export-json "$T/ps.json" \
    -n kosd-ps "$K ps" -n dockerd-ps "$D ps" \
    -n kosd-ps-a "$K ps -a" -n dockerd-ps-a "$D ps -a" \
    -n kosd-ps-filter "$K ps -a --filter status=running --filter name=_" \
    -n dockerd-ps-filter "$D ps -a --filter status=running --filter name=_" \
    -n kosd-version "$K version" -n dockerd-version "$D version"
FQ='?all=1&filters=%7B%22status%22%3A%7B%22running%22%3Atrue%7D%7D'
ka=$(api_ms "$T/kosd/kos.sock" ""); da=$(api_ms "$T/docker.sock" "")
kaf=$(api_ms "$T/kosd/kos.sock" "$FQ"); daf=$(api_ms "$T/docker.sock" "$FQ")
k3=$(rm100 "$K")
KRSSRM=$(rss_kb "$KPID")
d3=$(rm100 "$D")

med() { jq -r ".results[] | select(.command==\"$2\") | .median * 1000" "$1"; }
kn=$(med "$T/none.json" kosd); dn=$(med "$T/none.json" dockerd); pn=$(med "$T/none.json" podman)
echo "== summary (medians, ms)"
printf 'network none: kosd %.1f  dockerd %.1f  podman %.1f  -> kosd/dockerd %.3f (target <= 0.15), kosd/podman %.3f (target <= 0.2)\n' \
    "$kn" "$dn" "$pn" "$(echo "$kn / $dn" | bc -l)" "$(echo "$kn / $pn" | bc -l)"
kb=$(med "$T/bridge.json" kosd); db=$(med "$T/bridge.json" dockerd); pb=$(med "$T/bridge.json" podman)
printf 'bridge: kosd %.1f  dockerd %.1f  podman %.1f  -> kosd/dockerd %.3f, kosd/podman %.3f\n' \
    "$kb" "$db" "$pb" "$(echo "$kb / $db" | bc -l)" "$(echo "$kb / $pb" | bc -l)"
psmed() { med "$T/ps.json" "$1"; }
ratio() { echo "$1 / $2" | bc -l; }
echo "== 100 containers (kosd/dockerd, target <= 0.15)"
printf '100 x run -d: kosd %.2f s  dockerd %.2f s  -> %.3f\n' "$k1" "$d1" "$(ratio "$k1" "$d1")"
for c in ps ps-a ps-filter; do
    kp=$(psmed "kosd-$c"); dp=$(psmed "dockerd-$c")
    printf 'docker %-10s (CLI, median): kosd %.1f ms  dockerd %.1f ms  -> %.3f\n' "${c/-a/ -a}" "$kp" "$dp" "$(ratio "$kp" "$dp")"
done
printf 'GET /containers/json (API, median): kosd %.3f ms  dockerd %.3f ms  -> %.3f\n' "$ka" "$da" "$(ratio "$ka" "$da")"
printf 'GET /containers/json?all=1&filters=status (API): kosd %.3f ms  dockerd %.3f ms  -> %.3f\n' "$kaf" "$daf" "$(ratio "$kaf" "$daf")"
printf 'rm -f of 100: kosd %.2f s  dockerd %.2f s  -> %.3f\n' "$k3" "$d3" "$(ratio "$k3" "$d3")"
printf '(the CLI times hold the docker CLI'"'"'s own start: docker version takes kosd %.1f ms, dockerd %.1f ms)\n' \
    "$(psmed kosd-version)" "$(psmed dockerd-version)"
printf 'idle RSS: kosd %d kB (target <= 15360), dockerd+containerd %d kB\n' "$KRSS" "$DRSS"
printf 'RSS with 100 running: kosd %d kB (target <= 30720), its %d shims %d kB (%d kB each); kosd after their rm -f %d kB\n' \
    "$KRSS100" "$SHIMN" "$SHIMS" "$(( SHIMS / (SHIMN > 0 ? SHIMN : 1) ))" "$KRSSRM"
