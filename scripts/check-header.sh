#!/usr/bin/env bash
# Fails when include/fpio.h differs from what the pinned cbindgen makes of src/.
set -euo pipefail
root=${FPIO_SOURCE_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
"$root/scripts/gen-header.sh" "$tmp"
if ! diff -u "$root/include/fpio.h" "$tmp"; then
  echo "include/fpio.h is stale: run scripts/gen-header.sh and commit it" >&2
  exit 1
fi
echo "header is fresh"
