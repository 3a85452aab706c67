#!/usr/bin/env bash
# An installed fpio works for a consumer: installs the build into a temp
# prefix, then builds and runs a small program with `pkg-config fpio`
# (shared and static) and with meson's dependency('fpio').
# With --installed, the fpio already installed on the system (libfpio-dev)
# instead: plain `pkg-config fpio`, no LD_LIBRARY_PATH, no rpath.
# Usage: check-consumer.sh BUILD_DIR | --installed
set -euo pipefail
root=${FPIO_SOURCE_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ "${1:-}" = --installed ]; then
  build=
  unset LD_LIBRARY_PATH
  sanitize=none
else
  build=$1
  meson install -C "$build" --no-rebuild --quiet --destdir "$tmp/dest" >/dev/null
  prefix=$(meson introspect "$build" --buildoptions | python3 -c \
    'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"]=="prefix"))')
  inst="$tmp/dest$prefix"
  pcdir=$(dirname "$(find "$inst" -name fpio.pc | head -1)")
  # Relocate: the .pc derives every path from prefix.
  sed -i "s|^prefix=.*|prefix=$inst|" "$pcdir/fpio.pc"
  export PKG_CONFIG_PATH="$pcdir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  # A sanitized build's library needs the sanitizer runtime loaded first.
  sanitize=$(meson introspect "$build" --buildoptions | python3 -c \
    'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"]=="b_sanitize"))')
fi
libdir=$(pkg-config --variable=libdir fpio)
# How to run a consumer: the staged library is found through LD_LIBRARY_PATH;
# an installed one must be found by the dynamic loader alone.
run=(env)
[ -z "$build" ] || run=(env "LD_LIBRARY_PATH=$libdir:${LD_LIBRARY_PATH:-}")
want=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
src="$root/scripts/consumer/main.c"
san_flags=()
[ "$sanitize" = none ] || san_flags=("-fsanitize=$sanitize")

# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror "${san_flags[@]}" -o "$tmp/shared" "$src" $(pkg-config --cflags --libs fpio)
got=$("${run[@]}" "$tmp/shared")
[ "$got" = "$want" ] || { echo "pkg-config consumer printed '$got', want '$want'" >&2; exit 1; }
ldd_out=$("${run[@]}" ldd "$tmp/shared")
# Compare real paths: with merged /usr the loader reports /lib/<multiarch>/...
loaded=$(sed -n 's/^\s*libfpio\.so\.0 => \(\S*\) .*/\1/p' <<<"$ldd_out")
if [ -z "$loaded" ] || [ "$(readlink -f "$loaded")" != "$(readlink -f "$libdir/libfpio.so.0")" ]; then
  echo "consumer did not load the installed libfpio.so.0 (ldd: ${loaded:-none}, want $libdir)" >&2; exit 1
fi
if [ -z "$build" ] && grep -qE 'RPATH|RUNPATH' <(readelf -d "$tmp/shared"); then
  echo "pkg-config consumer has an rpath: $(readelf -d "$tmp/shared" | grep -E 'RPATH|RUNPATH')" >&2; exit 1
fi

# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror "${san_flags[@]}" -o "$tmp/static" "$src" $(pkg-config --cflags fpio) \
  "$libdir/libfpio.a" $(pkg-config --static --libs fpio | sed 's/-lfpio\b//')
got=$("$tmp/static")
[ "$got" = "$want" ] || { echo "static consumer printed '$got'" >&2; exit 1; }
if grep -q libfpio <(ldd "$tmp/static"); then echo "static consumer links libfpio.so" >&2; exit 1; fi

meson setup "$tmp/mbuild" "$root/scripts/consumer" -Db_sanitize="$sanitize" -Db_lundef=false >/dev/null
ninja -C "$tmp/mbuild" >/dev/null
got=$("${run[@]}" "$tmp/mbuild/consumer")
[ "$got" = "$want" ] || { echo "meson consumer printed '$got'" >&2; exit 1; }
echo "pkg-config (shared, static) and meson consumers built and ran: fpio $got$([ -n "$build" ] || echo " (installed in $libdir)")"
