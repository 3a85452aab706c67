#!/usr/bin/env bash
# The shared library exports exactly the functions the header declares, all
# fpio_*, under the FPIO_0 version node, with soname libfpio.so.0.
# Usage: check-exports.sh LIBRARY HEADER
set -euo pipefail
lib=$1 header=$2
soname=$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ "$soname" = libfpio.so.0 ] || { echo "soname is '$soname', want libfpio.so.0" >&2; exit 1; }
exported=$(nm -D --defined-only "$lib" | awk '$2 == "T" {print $3}' | sed 's/@.*//' | sort)
declared=$(grep -o '\bfpio_[a-z0-9_]*(' "$header" | tr -d '(' | sort -u)
others=$(nm -D --defined-only "$lib" | awk '{print $3}' | sed 's/@.*//' | grep -v '^fpio_' | grep -vx 'FPIO_0' || true)
if [ -n "$others" ]; then
  echo "exports outside fpio_*:" >&2; echo "$others" >&2; exit 1
fi
if [ "$exported" != "$declared" ]; then
  echo "exported functions differ from the header's declarations:" >&2
  diff <(echo "$exported") <(echo "$declared") >&2 || true
  exit 1
fi
nm -D --defined-only --with-symbol-versions "$lib" | grep ' fpio_' | grep -qv '@@FPIO_0' && {
  echo "some fpio_* symbols lack the FPIO_0 version" >&2; exit 1; }
echo "$(echo "$exported" | wc -l) functions exported, all declared, soname $soname"
