#!/usr/bin/env bash
# Network attach + detach of one container to an existing bridge network, with one published
# port and DNS registration: KOS (kos-network through its kosnet example, kos-dns serving the
# names) side by side with Debian's netavark (`netavark setup` / `teardown` with the equivalent
# JSON, aardvark-dns serving the names), in one hyperfine run. Target: KOS median <= 0.3x
# netavark's. Then 100 attachments in a row, to show the cost does not grow with the count.
#
# Both networks exist before timing starts (KOS: created; netavark: a second container stays
# attached, so its bridge, firewall chains and aardvark-dns stay up), so both sides measure the
# per-container work. Everything made here is removed at exit, including the iptables chains
# netavark leaves behind and the host's ip_forward, which netavark turns on.
#
# State of both sides (KOS's run dir and DNS table, netavark's config dir) is on a tmpfs, as
# /run is on a normal host.
#
# Environment: RUNS (default 60), NETAVARK (default /usr/lib/podman/netavark).
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" -eq 0 ] || { echo "bench/network.sh: needs root (namespaces, links, nftables)" >&2; exit 1; }
NETAVARK=${NETAVARK:-/usr/lib/podman/netavark}
RUNS=${RUNS:-60}
for tool in hyperfine nft iptables python3 "$NETAVARK" /usr/lib/podman/aardvark-dns; do
    command -v "$tool" >/dev/null || { echo "bench/network.sh: $tool missing (make deps)" >&2; exit 1; }
done

cargo build --release --quiet -p kos-network --example kosnet -p kos-dns --bin kos-dns
KOSNET=$PWD/target/release/examples/kosnet
KOSDNS=$PWD/target/release/kos-dns

sfx=$(( $$ % 100000 ))
work=$(mktemp -d /run/kosbench.XXXXXX)
# Runtime state lives in /run, a tmpfs on a normal host (not on every VM): both sides get one.
mount -t tmpfs -o size=64m,mode=0700 kosbench "$work"
table="kos_bench$sfx"
kos_bridge="kosbk$sfx"
nv_bridge="kosbn$sfx"
ip_forward_before=$(cat /proc/sys/net/ipv4/ip_forward)
nft_tables_before=$(nft list tables)
netavark_chains_before=$(iptables-save 2>/dev/null | grep -c 'NETAVARK' || true)
kos="$KOSNET --root $work/kos --table $table --no-ip-forward --dns-pid-file $work/kos-dns.pid"
nv="$NETAVARK --config $work/netavark"

cleanup() {
    set +e
    [ -f "$work/kos-dns.pid" ] && kill "$(cat "$work/kos-dns.pid")" 2>/dev/null
    $kos detach kbench bench >/dev/null 2>&1
    [ -f "$work/nv.json" ] && $nv --file "$work/nv.json" teardown "$work/kos/netns/nvbench" >/dev/null 2>&1
    [ -f "$work/keeper.json" ] && $nv --file "$work/keeper.json" teardown "$work/kos/netns/nvkeeper" >/dev/null 2>&1
    pkill -F "$work/netavark/aardvark-dns/aardvark.pid" 2>/dev/null
    $kos reconcile >/dev/null 2>&1
    $kos remove bench >/dev/null 2>&1
    for pin in kbench nvbench nvkeeper; do $kos unpin "$pin" >/dev/null 2>&1; done
    nft delete table inet "$table" 2>/dev/null
    ip link del "$kos_bridge" 2>/dev/null
    ip link del "$nv_bridge" 2>/dev/null
    # netavark's chains, only when this run made them.
    if [ "$netavark_chains_before" -eq 0 ]; then
        iptables -t nat -D PREROUTING -m addrtype --dst-type LOCAL -j NETAVARK-HOSTPORT-DNAT 2>/dev/null
        iptables -t nat -D OUTPUT -m addrtype --dst-type LOCAL -j NETAVARK-HOSTPORT-DNAT 2>/dev/null
        iptables -t nat -D POSTROUTING -j NETAVARK-HOSTPORT-MASQ 2>/dev/null
        for c in NETAVARK-HOSTPORT-DNAT NETAVARK-HOSTPORT-MASQ NETAVARK-HOSTPORT-SETMARK; do
            iptables -t nat -F "$c" 2>/dev/null; iptables -t nat -X "$c" 2>/dev/null
        done
        iptables -D FORWARD -m comment --comment "netavark firewall plugin rules" -j NETAVARK_FORWARD 2>/dev/null
        iptables -F NETAVARK_FORWARD 2>/dev/null; iptables -X NETAVARK_FORWARD 2>/dev/null
        # iptables-nft made these tables for netavark; drop them when they were not there and
        # are empty again.
        for t in nat filter; do
            if ! grep -q "table ip $t\$" <<<"$nft_tables_before" \
                && ! nft list table ip "$t" 2>/dev/null | grep -qE '^\s+(ip|meta|counter|jump|iifname|oifname|ct|tcp|udp)'; then
                nft delete table ip "$t" 2>/dev/null
            fi
        done
    fi
    echo "$ip_forward_before" > /proc/sys/net/ipv4/ip_forward
    umount "$work" 2>/dev/null || umount -l "$work"
    rm -rf "$work"
}
trap cleanup EXIT

# Two /24s that no host route covers.
pick_subnet() {
    local x
    for x in $(seq 0 255); do
        local net="10.251.$x.0/24"
        ip -4 route | grep -q "^10\.251\.$x\." && continue
        [ "$net" = "${1:-}" ] && continue
        echo "$net"; return 0
    done
    echo "bench/network.sh: no free subnet in 10.251.0.0/16" >&2; return 1
}
kos_net=$(pick_subnet)
nv_net=$(pick_subnet "$kos_net")
nv_prefix=${nv_net%.0/24}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("",0)); print(s.getsockname()[1])'; }
kos_port=$(free_port)
nv_port=$(free_port)

# KOS: the network, the container's pin, and kos-dns serving the table kos-network writes.
$kos create bench --subnet "$kos_net" --bridge "$kos_bridge" >/dev/null
$kos pin kbench >/dev/null
$KOSDNS --table "$work/kos/run/dns.json" --port 53 --poll-ms 600000 --upstream 127.0.0.1:9 2>/dev/null &
echo $! > "$work/kos-dns.pid"

# netavark: the same container with the same options (static address, port, name, alias).
$kos pin nvbench >/dev/null
$kos pin nvkeeper >/dev/null
mkdir -p "$work/netavark"
netavark_json() { # id name ip port
    local ports='[]'
    [ "$4" != 0 ] && ports="[{\"host_ip\": \"\", \"container_port\": 80, \"host_port\": $4, \"range\": 1, \"protocol\": \"tcp\"}]"
    cat <<EOF
{
  "container_id": "$1",
  "container_name": "$2",
  "port_mappings": $ports,
  "networks": {"bench": {"static_ips": ["$3"], "interface_name": "eth0", "aliases": ["$2"]}},
  "network_info": {"bench": {"name": "bench", "id": "$(printf 'b%.0s' $(seq 64))", "driver": "bridge",
    "network_interface": "$nv_bridge", "subnets": [{"subnet": "$nv_net", "gateway": "$nv_prefix.1"}],
    "ipv6_enabled": false, "internal": false, "dns_enabled": true, "ipam_options": {"driver": "host-local"}}}
}
EOF
}
netavark_json "$(printf 'k%.0s' $(seq 64))" keeper "$nv_prefix.3" 0 > "$work/keeper.json"
netavark_json "$(printf 'c%.0s' $(seq 64))" web "$nv_prefix.2" "$nv_port" > "$work/nv.json"
$nv --file "$work/keeper.json" setup "$work/kos/netns/nvkeeper" >/dev/null 2>&1

# Sanity: both sides work before they are timed.
$kos cycle kbench bench --port "$kos_port:80" --name web
$nv --file "$work/nv.json" setup "$work/kos/netns/nvbench" >/dev/null 2>&1
$nv --file "$work/nv.json" teardown "$work/kos/netns/nvbench" >/dev/null 2>&1

echo "== attach + detach, one container, one published port, DNS name (runs: $RUNS)"
hyperfine --warmup 5 --runs "$RUNS" --style basic --export-json "$work/hyperfine.json" \
    -n "kos (one process: attach, detach)" \
    "$kos cycle kbench bench --port $kos_port:80 --name web" \
    -n "kos (two processes: attach; detach)" \
    "$kos attach kbench bench --port $kos_port:80 --name web >/dev/null && $kos detach kbench bench" \
    -n "netavark (setup; teardown)" \
    "$nv --file $work/nv.json setup $work/kos/netns/nvbench >/dev/null 2>&1 && $nv --file $work/nv.json teardown $work/kos/netns/nvbench >/dev/null 2>&1"

python3 - "$work/hyperfine.json" <<'EOF'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
med = {r["command"]: r["median"] for r in results}
ref = [v for k, v in med.items() if k.startswith("netavark")][0]
for name, m in med.items():
    print(f"{name:40s} median {m * 1e3:8.2f} ms   {m / ref:5.2f}x netavark")
kos = min(v for k, v in med.items() if k.startswith("kos"))
print(f"target: KOS <= 0.30x netavark's median: {'met' if kos / ref <= 0.30 else 'NOT met'} ({kos / ref:.2f}x)")
EOF

echo "== 100 attachments in a row (each with a published port and a DNS name)"
$kos fill 100 bench --port 0:80
