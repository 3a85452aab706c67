#!/usr/bin/env bash
# The shared library exports exactly the functions the header declares, all
# fpio_*, each under the version node src/fpio.map lists it in (one node per
# release), with soname libfpio.so.0.
# Usage: check-exports.sh LIBRARY HEADER
set -euo pipefail
lib=$1 header=$2
soname=$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ "$soname" = libfpio.so.0 ] || { echo "soname is '$soname', want libfpio.so.0" >&2; exit 1; }
exported=$(nm -D --defined-only "$lib" | awk '$2 == "T" {print $3}' | sed 's/@.*//' | sort)
declared=$(grep -o '\bfpio_[a-z0-9_]*(' "$header" | tr -d '(' | sort -u)
map=$(dirname "$0")/../src/fpio.map
others=$(nm -D --defined-only "$lib" | awk '{print $3}' | sed 's/@.*//' | grep -v '^fpio_' | grep -vx 'FPIO_[0-9.]*' || true)
if [ -n "$others" ]; then
  echo "exports outside fpio_*:" >&2; echo "$others" >&2; exit 1
fi
if [ "$exported" != "$declared" ]; then
  echo "exported functions differ from the header's declarations:" >&2
  diff <(echo "$exported") <(echo "$declared") >&2 || true
  exit 1
fi
# "symbol node" pairs from the map, and from the library.
listed=$(awk '/^FPIO_[0-9.]* *\{/ { node = $1 } /^ *fpio_[a-z0-9_]*;/ { sub(/;/, "", $1); print $1 " " node }' "$map" | sort)
versioned=$(nm -D --defined-only --with-symbol-versions "$lib" | awk '$3 ~ /^fpio_/ { split($3, a, "@@"); print a[1] " " a[2] }' | sort)
if [ "$listed" != "$versioned" ]; then
  echo "symbol versions differ from src/fpio.map:" >&2
  diff <(echo "$listed") <(echo "$versioned") >&2 || true
  exit 1
fi
echo "$(echo "$exported" | wc -l) functions exported, all declared, soname $soname"
