#!/usr/bin/env bash
# Lays the engine out in DEST as `make install` does: its programs side by side (kosd finds
# the shim and kos-dns beside itself, the shim finds kosrun), copied from FROM (a cargo
# profile directory), with the kosrun KOS ships: $KOSRUN, else scripts/build-kosrun.sh's.
#
#   scripts/engine-layout.sh FROM DEST
set -euo pipefail
from=$1 dest=$2
kosrun=${KOSRUN:-$(bash "$(dirname "$0")/build-kosrun.sh" --path)}
mkdir -p "$dest"
for b in kosd containerd-shim-kos-v2 kos-dns; do cp "$from/$b" "$dest/$b"; done
# The CLI, where it was built (the demo drives it; the engine benchmark does not).
if [ -x "$from/kos" ]; then cp "$from/kos" "$dest/kos"; fi
cp "$kosrun" "$dest/kosrun"
