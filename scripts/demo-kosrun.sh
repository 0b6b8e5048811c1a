#!/usr/bin/env bash
# Run a busybox container through kosrun and show, from inside, that it is isolated.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/bundle.sh"
kosrun=${KOSRUN:-$here/../target/release/kosrun}
work=$(mktemp -d /tmp/kos-demo.XXXXXX)
id="kos-demo-$$"
trap '"$kosrun" --root "$work/state" delete --force "$id" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

make_bundle "$work/bundle"
cat > "$work/bundle/rootfs/demo.sh" <<'SH'
echo "hostname:          $(hostname)"
echo "my pid:            $$ (pid 1 of its own pid namespace)"
echo "processes I see:   $(ps -o pid= | tr -s ' \n' ' ')"
echo "network links:     $(ip -o link | awk -F': ' '{print $2}' | tr '\n' ' ')"
echo "root filesystem:   $(touch /x 2>&1 | sed 's/.*: //' || true)"
echo "capabilities:      $(grep CapEff /proc/self/status | cut -f2) (effective)"
echo "no_new_privs:      $(grep NoNewPrivs /proc/self/status | cut -f2)"
echo "seccomp filters:   $(grep Seccomp_filters /proc/self/status | cut -f2)"
echo "cgroup:            $(grep memory /proc/self/cgroup | cut -d: -f3)"
echo "unshare a userns:  $(unshare -U true 2>&1 | sed 's/.*: //' || true)"
SH
(cd "$work/bundle" && "$kosrun" spec)
set_args "$work/bundle/config.json" /bin/sh /demo.sh
echo "== kosrun run $id (busybox from Debian's busybox-static)"
"$kosrun" --root "$work/state" run --bundle "$work/bundle" "$id"
echo "== host for comparison: hostname $(hostname), pid $$, $(ip -o link | wc -l) links"
