#!/usr/bin/env bash
# Regenerates include/fpio.h (or writes to $1) with the pinned cbindgen.
set -euo pipefail
CBINDGEN_VERSION=0.29.4
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/include/fpio.h}
cbindgen=${CBINDGEN:-cbindgen}
have=$("$cbindgen" --version 2>/dev/null | awk '{print $2}') || true
if [ "$have" != "$CBINDGEN_VERSION" ]; then
  echo "gen-header: need cbindgen $CBINDGEN_VERSION (have '${have:-none}'): cargo install cbindgen --version $CBINDGEN_VERSION --locked" >&2
  exit 1
fi
cd "$root"
"$cbindgen" --quiet --config cbindgen.toml --crate fpio --output "$out" --lang c
