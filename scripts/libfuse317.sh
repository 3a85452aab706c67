#!/bin/bash
# Build libfuse 3.17.2 from Debian 13's own fuse3 source package into a private
# prefix (never /usr or /etc), so fpio can be built and tested against 3.17 on a
# Debian 12 host whose system libfuse is 3.14.
#
# Usage:  PKG_CONFIG_PATH=$(scripts/libfuse317.sh | tail -1) meson setup build317
#
# The last line of stdout is the pkg-config directory of the prefix.
# Environment:
#   FPIO_CACHE      cache root (default /var/cache/fpio); prefix is $FPIO_CACHE/libfuse-3.17.2
#   FPIO_LIBFUSE_REBUILD=1   ignore the stamp and rebuild
# Needs root (apt-get); a second run with the stamp present touches nothing and is fast.
set -euo pipefail

VERSION=3.17.2
CACHE=${FPIO_CACHE:-/var/cache/fpio}
PREFIX=$CACHE/libfuse-$VERSION
SRCROOT=$CACHE/src
BUILDDIR=$CACHE/build-libfuse-$VERSION
STAMP=$PREFIX/.fpio-built-$VERSION
LOG=$CACHE/libfuse-$VERSION.log
SOURCES_FILE=/etc/apt/sources.list.d/fpio-trixie-src.sources

# Debian's libdir for this arch; meson picks the same one on Debian.
multiarch=$(gcc -print-multiarch 2>/dev/null || true)
if [ -n "$multiarch" ]; then LIBDIR=lib/$multiarch; else LIBDIR=lib; fi
PCDIR=$PREFIX/$LIBDIR/pkgconfig

# Fast path: stamp present and the things callers rely on still exist.
if [ "${FPIO_LIBFUSE_REBUILD:-0}" != 1 ] && [ -f "$STAMP" ] \
   && [ -f "$PCDIR/fuse3.pc" ] && [ -x "$PREFIX/bin/passthrough_hp" ]; then
  echo "libfuse $VERSION already built in $PREFIX"
  echo "$PCDIR"
  exit 0
fi

mkdir -p "$CACHE" "$SRCROOT"
: > "$LOG"
step() { echo "libfuse317: $*"; echo "=== $*" >> "$LOG"; }
fail() {
  echo "libfuse317: FAILED during: $CURRENT_STEP (log: $LOG)" >&2
  tail -n 40 "$LOG" >&2 || true
  exit 1
}
CURRENT_STEP=start
trap fail ERR
run() { "$@" >> "$LOG" 2>&1; }

if [ "$(id -u)" != 0 ]; then
  echo "libfuse317: needs root (apt-get update/install/source)" >&2
  exit 1
fi

CURRENT_STEP="trixie deb-src entry"
step "$CURRENT_STEP"
want_sources='Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg'
if [ ! -f "$SOURCES_FILE" ] || [ "$(cat "$SOURCES_FILE")" != "$want_sources" ]; then
  printf '%s\n' "$want_sources" > "$SOURCES_FILE"
fi

# Tools the build needs. udev/systemd are only needed for fusermount3's rules,
# which we do not build (-Dutils=false), so they are deliberately absent.
CURRENT_STEP="build dependencies"
step "$CURRENT_STEP"
deps="meson ninja-build pkgconf gcc g++ dpkg-dev xz-utils"
missing=""
for p in $deps; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done

# Refresh only the trixie deb-src index: quick, and it cannot fail on some
# unrelated repository listed elsewhere on the host.
CURRENT_STEP="apt-get update (trixie deb-src only)"
step "$CURRENT_STEP"
run apt-get update \
  -o Dir::Etc::SourceList="$SOURCES_FILE" \
  -o Dir::Etc::SourceParts=/nonexistent \
  -o APT::Get::List-Cleanup=0

if [ -n "$missing" ]; then
  CURRENT_STEP="apt-get install$missing"
  step "$CURRENT_STEP"
  run apt-get update
  DEBIAN_FRONTEND=noninteractive run apt-get install -y --no-install-recommends $missing
fi

CURRENT_STEP="apt-get source fuse3 $VERSION"
step "$CURRENT_STEP"
# Pick the trixie source version of upstream $VERSION (e.g. 3.17.2-3).
srcver=$(apt-cache showsrc fuse3 2>>"$LOG" | awk '/^Version:/{print $2}' \
         | grep -E "^$(printf '%s' "$VERSION" | sed 's/\./\\./g')-" | sort -V | tail -1 || true)
if [ -z "$srcver" ]; then
  echo "no fuse3 $VERSION source package found in the trixie deb-src index" >> "$LOG"
  false
fi
SRCDIR=$SRCROOT/fuse3-$VERSION
if [ ! -f "$SRCDIR/meson.build" ] || [ ! -f "$SRCROOT/fuse3_$srcver.dsc" ]; then
  rm -rf "$SRCDIR"
  (cd "$SRCROOT" && run apt-get source --only-source "fuse3=$srcver")
fi
grep -q "version: '$VERSION'" "$SRCDIR/meson.build" || { echo "unexpected source tree in $SRCDIR" >> "$LOG"; false; }

CURRENT_STEP="meson setup"
step "$CURRENT_STEP"
# rpath to our own libdir: passthrough_hp (copied, not installed by meson) must
# load this libfuse3.so.4, not look for it in the system paths.
rm -rf "$BUILDDIR"
run meson setup "$BUILDDIR" "$SRCDIR" \
  --prefix="$PREFIX" --libdir="$LIBDIR" \
  --sysconfdir="$PREFIX/etc" \
  --buildtype=release \
  -Dexamples=true -Dutils=false -Dtests=false \
  -Dudevrulesdir="$PREFIX/lib/udev/rules.d" \
  -Dinitscriptdir="" \
  -Dc_link_args="-Wl,-rpath,$PREFIX/$LIBDIR" \
  -Dcpp_link_args="-Wl,-rpath,$PREFIX/$LIBDIR"

CURRENT_STEP="ninja build"
step "$CURRENT_STEP"
run ninja -C "$BUILDDIR"

CURRENT_STEP="meson install into $PREFIX"
step "$CURRENT_STEP"
rm -rf "$PREFIX"
run meson install -C "$BUILDDIR" --no-rebuild
# Examples are never installed by libfuse's meson; the benchmark needs passthrough_hp.
install -D -m 0755 "$BUILDDIR/example/passthrough_hp" "$PREFIX/bin/passthrough_hp"
for ex in passthrough_ll passthrough_fh; do
  [ -x "$BUILDDIR/example/$ex" ] && install -m 0755 "$BUILDDIR/example/$ex" "$PREFIX/bin/$ex"
done

CURRENT_STEP="checks"
step "$CURRENT_STEP"
got=$(PKG_CONFIG_PATH=$PCDIR pkg-config --modversion fuse3)
[ "$got" = "$VERSION" ] || { echo "pkg-config reports fuse3 $got, expected $VERSION" >> "$LOG"; false; }
run "$PREFIX/bin/passthrough_hp" --help
# Nothing may have escaped the prefix (e.g. an install script writing /etc).
if grep -E '^Installing .* to /(usr|etc)/' "$LOG" >> /dev/null; then
  echo "install wrote outside $PREFIX" >> "$LOG"; false
fi

trap - ERR
echo "$VERSION $srcver $(date -u +%FT%TZ)" > "$STAMP"
echo "libfuse $VERSION built in $PREFIX (log: $LOG)"
echo "$PCDIR"
