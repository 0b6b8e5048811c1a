#!/usr/bin/env bash
# make_bundle DIR: a bundle whose rootfs is Debian's static busybox and its applets.
make_bundle() {
    local dir=$1
    mkdir -p "$dir/rootfs"/{bin,proc,sys,dev,tmp,etc,root}
    cp /bin/busybox "$dir/rootfs/bin/busybox"
    for a in $(/bin/busybox --list); do
        [ "$a" = busybox ] && continue
        ln -sf busybox "$dir/rootfs/bin/$a"
    done
    echo 'root:x:0:0:root:/root:/bin/sh' > "$dir/rootfs/etc/passwd"
    echo 'root:x:0:' > "$dir/rootfs/etc/group"
}

# set_args CONFIG ARG...: replace process.args of a `kosrun spec` config, and run without a tty.
set_args() {
    local cfg=$1
    shift
    local json="" a
    for a in "$@"; do
        a=${a//\\/\\\\}
        a=${a//\"/\\\"}
        json+="${json:+, }\"$a\""
    done
    # Escape what sed's replacement text would interpret.
    json=${json//\\/\\\\}
    json=${json//|/\\|}
    json=${json//&/\\&}
    sed -i -e "s|^\(\s*\)\"sh\"$|\1$json|" -e 's|"terminal": true|"terminal": false|' "$cfg"
}

# make_true_bundle DIR KOSRUN: a busybox bundle from `kosrun spec` running /bin/true, without
# a resources block (crun raises RLIMIT_MEMLOCK to load its device eBPF program whenever
# device rules are given, which needs CAP_SYS_RESOURCE): the same input for every runtime.
make_true_bundle() {
    local dir=$1 kosrun=$2
    make_bundle "$dir"
    (cd "$dir" && "$kosrun" spec)
    set_args "$dir/config.json" /bin/true
    python3 - "$dir/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["linux"].pop("resources", None)
json.dump(c, open(sys.argv[1], "w"), indent=1)
PY
}
