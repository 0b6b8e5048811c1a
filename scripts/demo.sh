#!/usr/bin/env bash
# KOS's main job, end to end on this machine and with nothing downloaded: start kosd, build an
# image from busybox-static with `kos build`, run it with `kos run` (isolation seen from inside,
# a published port answered from the host, a container found by name on a user network), and
# drive the same daemon with the real docker CLI when it is installed. Everything the demo
# makes (daemon, containers, bridge, nft table, state) is removed when it ends.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${KOS_BIN_DIR:-$here/../target/release}
kos="$bin/kos"
work=$(mktemp -d /tmp/kos-demo.XXXXXX)
sock="$work/kos.sock"
tag=$$
bridge="kosdemo$((tag % 100000))"
table="kos_demo_$tag"
net="demo-net-$tag"
kosd_pid=""

k() { "$kos" -H "unix://$sock" "$@"; }

cleanup() {
    set +e
    if [ -n "$kosd_pid" ]; then
        k rm -f web peer >/dev/null 2>&1
        k network rm "$net" >/dev/null 2>&1
        kill -TERM "$kosd_pid" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$kosd_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$kosd_pid" 2>/dev/null
    fi
    ip link del "$bridge" 2>/dev/null
    nft delete table inet "$table" 2>/dev/null
    umount -R "$work/exec" "$work/data" 2>/dev/null
    # The containers' cgroup parent, named for this demo.
    for d in /sys/fs/cgroup/*/"$bridge"; do [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null; done
    # kosd turns forwarding on for its bridge; put back as the demo found it.
    echo "$ip_forward_before" > /proc/sys/net/ipv4/ip_forward
    rm -rf "$work"
}
ip_forward_before=$(cat /proc/sys/net/ipv4/ip_forward)
trap cleanup EXIT

# The engine as installed, with the kosrun KOS ships ($KOSRUN, from `make demo`), when that
# is not the one in $bin already.
if [ -n "${KOSRUN:-}" ] && [ "$KOSRUN" != "$bin/kosrun" ]; then
    bash "$here/engine-layout.sh" "$bin" "$work/bin"
    bin=$work/bin
    kos="$bin/kos"
fi

echo "== 1. kosrun, the runtime underneath (runc's command line)"
KOSRUN="$bin/kosrun" bash "$here/demo-kosrun.sh"

echo
echo "== 2. kosd, the engine: Docker Engine API on $sock"
"$bin/kosd" -H "unix://$sock" --data-root "$work/data" --exec-root "$work/exec" \
    -b "$bridge" --nft-table "$table" --cgroup-parent "$bridge" --log-level warn >"$work/kosd.log" 2>&1 &
kosd_pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && k version >/dev/null 2>&1 && break; sleep 0.1; done
k version --format '{{.Server.Version}} (API {{.Server.APIVersion}})' | sed 's/^/kosd /'

echo
echo "== 3. kos build: an image from busybox-static, no download"
ctx="$work/ctx"
mkdir -p "$ctx"
cp /bin/busybox "$ctx/busybox"
printf '<h1>hello from a KOS container</h1>\n' >"$ctx/index.html"
cat >"$ctx/Dockerfile" <<'DF'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY index.html /www/index.html
ENV GREETING="hello"
WORKDIR /www
EXPOSE 80
CMD ["httpd", "-f", "-p", "80", "-h", "/www"]
DF
k build -t kos-demo/hello "$ctx"
k images kos-demo/hello

echo
echo "== 4. kos run --rm: isolation seen from inside"
k run --rm --memory 64m --pids-limit 50 --cap-drop ALL kos-demo/hello sh -c '
echo "hostname:        $(hostname)"
echo "processes:       $(ps -o pid,comm | tail -n +2 | tr -s " \n" " ")"
echo "network:         $(ip -o -4 addr show eth0 | awk "{print \$4}")"
echo "memory limit:    $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max)"
echo "capabilities:    $(grep CapEff /proc/self/status | cut -f2)"
echo "env GREETING:    $GREETING"'

echo
echo "== 5. a published port and a name on a user network"
k network create "$net" >/dev/null
k run -d --name web --network "$net" -p 127.0.0.1::80 kos-demo/hello >/dev/null
port=$(k port web 80 | head -n1 | sed 's/.*://')
echo "host -> 127.0.0.1:$port -> web:80 says: $(busybox wget -qO- "http://127.0.0.1:$port/")"
k run --rm --name peer --network "$net" kos-demo/hello wget -qO- http://web/ | sed 's/^/peer -> http:\/\/web\/ says: /'
k ps

if command -v docker >/dev/null 2>&1; then
    echo
    echo "== 6. the real docker CLI against the same daemon"
    docker -H "unix://$sock" ps --format 'table {{.Names}}\t{{.Image}}\t{{.Status}}\t{{.Ports}}'
    docker -H "unix://$sock" logs web 2>&1 | tail -n 3 || true
fi
echo
echo "== done: the daemon, containers, network and state are removed on exit"
