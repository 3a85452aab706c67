#!/usr/bin/env bash
# One version number: Cargo.toml's. meson.build, the header and the built
# fpio.pc must all say the same. Usage: check-version.sh [BUILD_DIR]
set -euo pipefail
root=${FPIO_SOURCE_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
build=${1:-${FPIO_BUILD_ROOT:-}}
cargo_v=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
meson_v=$(sed -n "s/^  version: '\(.*\)',/\1/p" "$root/meson.build" | head -1)
hdr() { sed -n "s/^#define FPIO_VERSION_$1 \([0-9]*\)$/\1/p" "$root/include/fpio.h"; }
header_v="$(hdr MAJOR).$(hdr MINOR).$(hdr PATCH)"
fail=0
for pair in "meson.build:$meson_v" "include/fpio.h:$header_v"; do
  if [ "${pair#*:}" != "$cargo_v" ]; then
    echo "version mismatch: Cargo.toml says $cargo_v, ${pair%%:*} says ${pair#*:}" >&2
    fail=1
  fi
done
if [ -n "$build" ]; then
  pc_v=$(sed -n 's/^Version: //p' "$build/fpio.pc")
  [ "$pc_v" = "$cargo_v" ] || { echo "version mismatch: fpio.pc says $pc_v" >&2; fail=1; }
  so=$(readlink "$build/libfpio.so.0")
  [ "$so" = "libfpio.so.$cargo_v" ] || { echo "library file is $so, want libfpio.so.$cargo_v" >&2; fail=1; }
fi
[ "$fail" = 0 ] && echo "version $cargo_v everywhere"
exit "$fail"
