#!/usr/bin/env bash
# The unit manager inside kosd (issue 15's targets), with units as kosd containers:
#   boot      kosd started -> kos-system.target active with N Type=notify units ready
#             (each a busybox container whose script sends READY=1 with kos-notify); the
#             first start, which also loads the image archive, is reported apart.
#             Target: under 1 s.
#   restart   a unit's main process SIGKILLed -> the unit running again (READY=1 received),
#             with RestartSec=0 so the figure is the engine's own latency. Target: under 200 ms.
# Times come from kosd's /events (timeNano of the unit events) against the moment the
# script started kosd or sent the signal. Everything lives under one temp dir, removed at
# exit with the containers and the bridge/table kosd made.
#
#   bench/units-kosd.sh   (as root; UNITS=n, BOOTS=n, RUNS=n, PROFILE=debug, NO_BUILD=1)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
UNITS=${UNITS:-5}
BOOTS=${BOOTS:-5}
RUNS=${RUNS:-20}
PROFILE=${PROFILE:-release}
[ "$(id -u)" = 0 ] || { echo "bench/units-kosd.sh: run as root" >&2; exit 1; }
for tool in curl jq ldd tar sha256sum python3; do
    command -v "$tool" >/dev/null || { echo "bench/units-kosd.sh: $tool is missing (make deps)" >&2; exit 1; }
done
if [ -n "${NO_BUILD:-}" ]; then
    :
elif [ "$PROFILE" = release ]; then
    cargo build --release -q -p kosd -p kos-shim -p kosrun -p kos-dns
    cargo build --release -q -p kos-units --bin kos-notify
else
    cargo build -q -p kosd -p kos-shim -p kosrun -p kos-dns
    cargo build -q -p kos-units --bin kos-notify
fi
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE
DOCKER=/usr/local/bin/docker
[ -x "$DOCKER" ] || DOCKER=$(command -v docker)

T=$(mktemp -d /var/tmp/units-bench.XXXXXX)
BR=kosbu$(( $$ % 10000 ))
SOCK=$T/exec/kos.sock
KPID=""
api() { curl -s --unix-socket "$SOCK" "$@"; }
stop_kosd() {
    [ -n "$KPID" ] || return 0
    kill "$KPID" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$KPID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$KPID" 2>/dev/null || true
    KPID=""
}
cleanup() {
    set +e
    if [ -n "$KPID" ]; then
        ids=$("$DOCKER" -H "unix://$SOCK" ps -aq 2>/dev/null)
        [ -n "$ids" ] && "$DOCKER" -H "unix://$SOCK" rm -f $ids >/dev/null 2>&1
    fi
    stop_kosd
    ip link del "$BR" 2>/dev/null
    nft delete table inet "$BR" 2>/dev/null
    for d in /sys/fs/cgroup/*/"$BR"; do [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null; done
    grep " $T/" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do umount -l "$m"; done
    # kosd turns forwarding on for its bridge; put back as this run found it.
    echo "$ip_forward_before" > /proc/sys/net/ipv4/ip_forward
    rm -rf "$T"
}
ip_forward_before=$(cat /proc/sys/net/ipv4/ip_forward)
trap cleanup EXIT INT TERM

# The image archive: busybox, kos-notify and the libraries it links (as build-images.sh).
R=$T/rootfs; L=$T/oci
mkdir -p "$R"/{bin,usr/bin,etc,tmp,proc,sys,dev,shared} "$L/blobs/sha256" "$T/images" "$T/lib" "$T/etc/kos-system.target.wants" "$T/shared"
cp /bin/busybox "$R/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"; done
install -m 0755 "$BIN/kos-notify" "$R/usr/bin/kos-notify"
for lib in $(ldd "$BIN/kos-notify" | grep -oE '/[^ ]+'); do mkdir -p "$R$(dirname "$lib")"; cp -L "$lib" "$R$lib"; done
echo 'root:x:0:0:root:/:/bin/sh' > "$R/etc/passwd"
blob() { local d s; d=$(sha256sum "$1" | cut -d' ' -f1); s=$(stat -c %s "$1"); mv "$1" "$L/blobs/sha256/$d"; echo "$d $s"; }
tar --numeric-owner --owner=0 --group=0 -C "$R" -cf "$T/layer.tar" .
diff_id=$(sha256sum "$T/layer.tar" | cut -d' ' -f1)
read -r ld ls < <(blob "$T/layer.tar")
printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/bin:/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$diff_id" > "$T/config.json"
read -r cd cs < <(blob "$T/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' "$cd" "$cs" "$ld" "$ls" > "$T/m.json"
read -r md ms < <(blob "$T/m.json")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"latest","io.containerd.image.name":"kos.local/unit-bench:latest"}}]}' "$md" "$ms" > "$L/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' > "$L/oci-layout"
tar -C "$L" -cf "$T/images/unit-bench.oci.tar" .

# The units: u1..uN, independent notify services, enabled into kos-system.target.
cat > "$T/shared/service.sh" <<'EOF'
#!/bin/sh
trap 'exit 0' TERM
kos-notify READY=1
while :; do sleep 1 & wait $!; done
EOF
cp units/shipped/kos-system.target units/shipped/kos-network.target "$T/lib/"
for i in $(seq 1 "$UNITS"); do
    cat > "$T/lib/u$i.container" <<EOF
[Unit]
Description=bench unit $i
[Container]
Image=kos.local/unit-bench:latest
Exec=/bin/sh /shared/service.sh
Network=none
Volume=$T/shared:/shared:ro
[Service]
Type=notify
Restart=always
RestartSec=0
StartLimitBurst=0
TimeoutStopSec=5s
[Install]
WantedBy=kos-system.target
EOF
    ln -s "$T/lib/u$i.container" "$T/etc/kos-system.target.wants/u$i.container"
done

now_ns() { date +%s%N; }
start_kosd() {
    "$BIN/kosd" -H "unix://$SOCK" --data-root "$T/data" --exec-root "$T/exec" \
        --config-file /dev/null --bridge "$BR" --nft-table "$BR" --cgroup-parent "$BR" --cri-socket= \
        --unit-dir "$T/lib" --unit-dir "$T/etc" --unit-image-dir "$T/images" \
        2>>"$T/kosd.log" &
    KPID=$!
}
# Waits until kos-system.target is active; prints the timeNano of that event.
target_active_ns() {
    local since=$1
    for _ in $(seq 1 600); do
        if [ -S "$SOCK" ]; then
            t=$(api "http://kos/events?since=$((since / 1000000000))&until=$(( $(date +%s) + 1 ))&filters=%7B%22type%22%3A%5B%22unit%22%5D%7D" \
                | jq -rs --argjson s "$since" '[.[] | select(.Actor.ID=="kos-system.target" and .Action=="active" and .timeNano >= $s) | .timeNano] | first // empty' 2>/dev/null || true)
            [ -n "$t" ] && { echo "$t"; return 0; }
        fi
        sleep 0.05
    done
    echo "kos-system.target never became active; kosd log:" >&2; tail -30 "$T/kosd.log" >&2; return 1
}
stats() { python3 -c 'import sys,statistics as s; v=sorted(float(x) for x in sys.stdin.read().split()); print("median %.1f ms  p90 %.1f ms  min %.1f ms  (n=%d)" % (s.median(v), v[int(0.9*(len(v)-1))], v[0], len(v)))'; }

echo "== kosd: kos-system.target with $UNITS notify units (containers), $BOOTS boots"
boots=""
for b in $(seq 0 "$BOOTS"); do
    t0=$(now_ns)
    start_kosd
    t1=$(target_active_ns "$t0")
    ms=$(( (t1 - t0) / 1000 ))
    ms=$(python3 -c "print($ms/1000)")
    if [ "$b" = 0 ]; then
        echo "first start (image archive loaded, containers created): $ms ms"
    else
        boots="$boots $ms"
    fi
    [ "$b" = "$BOOTS" ] || stop_kosd
done
echo "kosd start -> all units ready: $(echo "$boots" | stats)   (target < 1000 ms)"

echo "== restart after SIGKILL (RestartSec=0), $RUNS runs"
rest=""
for r in $(seq 1 "$RUNS"); do
    pid=$(api http://kos/kos/units/u1 | jq -r .MainPID)
    t0=$(now_ns)
    kill -9 "$pid"
    t1=""
    for _ in $(seq 1 400); do
        t1=$(api "http://kos/events?since=$((t0 / 1000000000))&until=$(( $(date +%s) + 1 ))&filters=%7B%22type%22%3A%5B%22unit%22%5D%7D" \
            | jq -rs --argjson s "$t0" --arg pid "$pid" '[.[] | select(.Actor.ID=="u1.container" and .Action=="active" and .Actor.Attributes.sub=="running" and .Actor.Attributes.mainPid != $pid and .timeNano >= $s) | .timeNano] | first // empty' 2>/dev/null || true)
        [ -n "$t1" ] && break
        sleep 0.02
    done
    [ -n "$t1" ] || { echo "u1 did not come back; kosd log:" >&2; tail -30 "$T/kosd.log" >&2; exit 1; }
    rest="$rest $(python3 -c "print(($t1 - $t0) / 1e6)")"
done
echo "SIGKILL -> running again: $(echo "$rest" | stats)   (target < 200 ms)"
