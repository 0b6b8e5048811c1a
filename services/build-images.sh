#!/usr/bin/env bash
# Builds the images of KOS's own services from the project's binaries, with no download:
# each image is one layer holding the release binary, the few shared libraries it links
# (glibc, libgcc_s: the binaries are otherwise static Rust), Debian's busybox-static as
# /bin/sh and its applets, and the directories the unit files mount over. Output: one
# OCI archive per service (`oci-archive:` for skopeo/podman, `kos image load`-able),
# reference kos.local/<name>:latest.
#
#   services/build-images.sh [OUTDIR]     (default: target/kos-images)
#   NO_BUILD=1 to use the release binaries already built.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${1:-$TARGET_DIR/kos-images}
SERVICES=(kaim kadcm kos-dns)
BUSYBOX=${BUSYBOX:-/bin/busybox}

for tool in tar gzip sha256sum ldd "$BUSYBOX"; do
    command -v "$tool" >/dev/null || { echo "build-images: $tool is missing (scripts/deps.sh)" >&2; exit 1; }
done
if [ -z "${NO_BUILD:-}" ]; then
    (cd "$ROOT" && for s in "${SERVICES[@]}"; do cargo build --release -q -p "$s" --bin "$s"; done)
fi
mkdir -p "$OUT"
T=$(mktemp -d /var/tmp/kos-images.XXXXXX)
trap 'rm -rf "$T"' EXIT INT TERM

# blob FILE MEDIATYPE -> prints "digest size", moves FILE into the layout's blobs.
blob() {
    local d s
    d=$(sha256sum "$1" | cut -d' ' -f1)
    s=$(stat -c %s "$1")
    mv "$1" "$LAYOUT/blobs/sha256/$d"
    echo "$d $s"
}

for name in "${SERVICES[@]}"; do
    bin=$TARGET_DIR/release/$name
    [ -x "$bin" ] || { echo "build-images: $bin missing (cargo build --release -p $name)" >&2; exit 1; }
    R=$T/$name/rootfs
    LAYOUT=$T/$name/oci
    mkdir -p "$R"/{bin,usr/bin,etc,tmp,run/kos,run/host,var/log/kos,var/run/cdi,etc/kos/$name,dev,proc,sys} "$LAYOUT/blobs/sha256"
    chmod 1777 "$R/tmp"
    install -m 0755 "$bin" "$R/usr/bin/$name"
    install -m 0755 "$BUSYBOX" "$R/bin/busybox"
    for a in $("$BUSYBOX" --list); do
        [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"
    done
    # The shared objects the binary links, at the paths the dynamic loader looks for them.
    for lib in $(ldd "$bin" | grep -oE '/[^ ]+'); do
        mkdir -p "$R$(dirname "$lib")"
        cp -L "$lib" "$R$lib"
    done
    # The shipped example policies, for admins to copy into /etc/kos/<name>/.
    if [ -d "$ROOT/services/$name/policies" ]; then
        mkdir -p "$R/usr/share/kos/$name/policies"
        cp "$ROOT/services/$name/policies/"*.rego "$R/usr/share/kos/$name/policies/"
    fi
    printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$R/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$R/etc/group"

    # Reproducible layer: sorted names, owner root, fixed times.
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$R" -cf "$T/$name/layer.tar" .
    diff_id=$(sha256sum "$T/$name/layer.tar" | cut -d' ' -f1)
    gzip -n -9 "$T/$name/layer.tar"
    read -r ld ls < <(blob "$T/$name/layer.tar.gz")
    cat >"$T/$name/config.json" <<JSON
{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/usr/bin/$name"],"Env":["PATH=/usr/bin:/bin"],"WorkingDir":"/","Labels":{"org.opencontainers.image.title":"$name","org.opencontainers.image.source":"kos services/$name"}},"rootfs":{"type":"layers","diff_ids":["sha256:$diff_id"]},"history":[{"created_by":"services/build-images.sh","created":"1970-01-01T00:00:00Z"}],"created":"1970-01-01T00:00:00Z"}
JSON
    read -r cd cs < <(blob "$T/$name/config.json")
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
        "$cd" "$cs" "$ld" "$ls" >"$T/$name/manifest.json"
    read -r md ms < <(blob "$T/$name/manifest.json")
    printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"latest","io.containerd.image.name":"kos.local/%s:latest"}}]}' \
        "$md" "$ms" "$name" >"$LAYOUT/index.json"
    echo '{"imageLayoutVersion":"1.0.0"}' >"$LAYOUT/oci-layout"
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$LAYOUT" -cf "$OUT/$name.oci.tar" .
    echo "$OUT/$name.oci.tar (kos.local/$name:latest, manifest sha256:$md)"
done
