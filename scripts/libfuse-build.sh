#!/bin/bash
# Build a libfuse from Debian's own fuse3 source package into a private prefix
# (never /usr or /etc), so fpio can be built and tested against libfuse
# releases newer than a Debian 12 host's system libfuse 3.14.
#
#   3.17.2  Debian 13 (trixie), 3.17.2-*
#   3.18.3  Debian sid, 3.18.3-*, built with upstream defaults: custom io is
#           compiled out (fuse_session_custom_io() returns -ENOTSUP) and FUSE over
#           io_uring is compiled in (liburing-dev and libnuma-dev are installed
#           for it; the build fails if meson did not enable it)
#
# Usage:  PKG_CONFIG_PATH=$(scripts/libfuse-build.sh 3.18.3 | tail -1) meson setup build-318
#
# The last line of stdout is the pkg-config directory of the prefix, whose bin/
# holds libfuse's example/passthrough_hp (plus passthrough_ll and passthrough_fh).
# Environment:
#   FPIO_CACHE      cache root (default /var/cache/fpio); prefix is $FPIO_CACHE/libfuse-VERSION
#   FPIO_LIBFUSE_REBUILD=1   ignore the stamp and rebuild
# Needs root (apt-get); a second run with the stamp present touches nothing and is fast.
#
# apt only ever sees a private deb-src list of the one suite a version comes
# from ($FPIO_CACHE/apt-SUITE/*.sources, with its own lists and caches): the
# host's apt configuration and package lists are left as they are.
# If the suite's index names the version but its .dsc cannot be fetched (a
# mirror mid-sync), a version with a pinned orig tarball (ORIG_SHA256 below,
# only for Debian revisions that carry no patches, so the orig tarball IS the
# source tree Debian builds) is fetched directly from the pool and checked.
set -Eeuo pipefail # -E: the ERR trap below also fires inside functions

VERSION=${1:-}
case $VERSION in
3.17.2)
  SUITE=trixie
  EXTRA_DEPS=""
  IO_URING=0
  ORIG=""
  ORIG_SHA256=""
  ;;
3.18.3)
  SUITE=sid
  EXTRA_DEPS="liburing-dev libnuma-dev"
  IO_URING=1
  # From fuse3_3.18.3-1.dsc; 3.18.3-1's debian.tar.xz has no debian/patches.
  ORIG=fuse3_3.18.3.orig.tar.gz
  ORIG_SHA256=bcd19582c5e30f7fe45dd86a5540e998590aa01903afc7ebcbeea6c8ac5421ee
  ;;
*)
  echo "usage: $0 3.17.2|3.18.3" >&2
  exit 2
  ;;
esac
shift

CACHE=${FPIO_CACHE:-/var/cache/fpio}
PREFIX=$CACHE/libfuse-$VERSION
SRCROOT=$CACHE/src
BUILDDIR=$CACHE/build-libfuse-$VERSION
STAMP=$PREFIX/.fpio-built-$VERSION
LOG=$CACHE/libfuse-$VERSION.log
APTDIR=$CACHE/apt-$SUITE
SOURCES_FILE=$APTDIR/fpio-$SUITE-src.sources
me="libfuse-build $VERSION"

# Debian's libdir for this arch; meson picks the same one on Debian.
multiarch=$(gcc -print-multiarch 2>/dev/null || true)
if [ -n "$multiarch" ]; then LIBDIR=lib/$multiarch; else LIBDIR=lib; fi
PCDIR=$PREFIX/$LIBDIR/pkgconfig

built() {
  [ -f "$STAMP" ] && [ -f "$PCDIR/fuse3.pc" ] && [ -x "$PREFIX/bin/passthrough_hp" ]
}
# Fast path: stamp present and the things callers rely on still exist.
if [ "${FPIO_LIBFUSE_REBUILD:-0}" != 1 ] && built; then
  echo "libfuse $VERSION already built in $PREFIX"
  echo "$PCDIR"
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "$me: needs root (apt-get update/install/source)" >&2
  exit 1
fi

mkdir -p "$CACHE" "$SRCROOT" "$APTDIR/lists/partial" "$APTDIR/cache"
# One build of a version at a time (the bench and the test matrix may both ask);
# whoever waited finds the stamp and takes the fast path.
exec 9>"$CACHE/libfuse-$VERSION.lock"
flock 9
if [ "${FPIO_LIBFUSE_REBUILD:-0}" != 1 ] && built; then
  echo "libfuse $VERSION built meanwhile in $PREFIX"
  echo "$PCDIR"
  exit 0
fi

: >"$LOG"
step() { echo "$me: $*"; echo "=== $*" >>"$LOG"; }
fail() {
  echo "$me: FAILED during: $CURRENT_STEP (log: $LOG)" >&2
  tail -n 40 "$LOG" >&2 || true
  exit 1
}
CURRENT_STEP=start
trap fail ERR
run() { "$@" >>"$LOG" 2>&1; }
# apt with the private source list only (and its own lists and caches).
# Check-Valid-Until=false: a mirror whose copy of a suite stopped syncing (seen
# with sid) serves a Release file that is still signed but past its
# Valid-Until, and apt refuses it. The signature is still checked, and where
# the .dsc is missing the orig tarball is checked against ORIG_SHA256.
apt_src() {
  "$@" -o Dir::Etc::SourceList="$SOURCES_FILE" -o Dir::Etc::SourceParts=/dev/null \
    -o Dir::State::Lists="$APTDIR/lists" -o Dir::Cache="$APTDIR/cache" \
    -o Acquire::Check-Valid-Until=false
}

CURRENT_STEP="$SUITE deb-src entry"
step "$CURRENT_STEP"
want_sources="Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $SUITE
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
if [ ! -f "$SOURCES_FILE" ] || [ "$(cat "$SOURCES_FILE")" != "$want_sources" ]; then
  printf '%s\n' "$want_sources" >"$SOURCES_FILE"
fi

# Tools the build needs. udev/systemd are only needed for fusermount3's rules,
# which we do not build (-Dutils=false), so they are deliberately absent.
CURRENT_STEP="build dependencies"
step "$CURRENT_STEP"
deps="meson ninja-build pkgconf gcc g++ dpkg-dev xz-utils $EXTRA_DEPS"
missing=""
for p in $deps; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  CURRENT_STEP="apt-get install$missing"
  step "$CURRENT_STEP"
  run apt-get update
  DEBIAN_FRONTEND=noninteractive run apt-get install -y --no-install-recommends $missing
fi

CURRENT_STEP="apt-get update ($SUITE deb-src only)"
step "$CURRENT_STEP"
run apt_src apt-get update

CURRENT_STEP="fuse3 $VERSION source"
step "$CURRENT_STEP"
# The suite's source version of upstream $VERSION (e.g. 3.17.2-3).
srcver=$(apt_src apt-cache showsrc fuse3 2>>"$LOG" | awk '/^Version:/{print $2}' |
  grep -E "^$(printf '%s' "$VERSION" | sed 's/\./\\./g')-" | sort -V | tail -1 || true)
SRCDIR=$SRCROOT/fuse3-$VERSION
origin=""
if [ -f "$SRCDIR/meson.build" ] && [ -f "$SRCDIR/.fpio-origin" ]; then
  origin=$(cat "$SRCDIR/.fpio-origin")
fi
if [ -n "$srcver" ] && [ "$origin" = "dsc $srcver" ]; then
  echo "source tree of fuse3 $srcver already unpacked in $SRCDIR" >>"$LOG"
else
  rm -rf "$SRCDIR"
  if [ -z "$srcver" ]; then
    echo "no fuse3 $VERSION-* in the $SUITE deb-src index" >>"$LOG"
  elif (cd "$SRCROOT" && run apt_src apt-get source --only-source "fuse3=$srcver"); then
    echo "dsc $srcver" >"$SRCDIR/.fpio-origin"
  else
    echo "apt-get source fuse3=$srcver failed" >>"$LOG"
  fi
  if [ ! -f "$SRCDIR/.fpio-origin" ]; then
    [ -n "$ORIG_SHA256" ] || { echo "no pinned orig tarball for $VERSION to fall back on" >>"$LOG"; false; }
    CURRENT_STEP="fetch pinned $ORIG"
    step "$CURRENT_STEP (the $SUITE source package could not be fetched)"
    rm -f "$SRCROOT/$ORIG"
    # apt's own downloader checks the hash and removes a mismatching file.
    run /usr/lib/apt/apt-helper download-file \
      "http://deb.debian.org/debian/pool/main/f/fuse3/$ORIG" "$SRCROOT/$ORIG" "SHA256:$ORIG_SHA256"
    echo "$ORIG_SHA256  $SRCROOT/$ORIG" | run sha256sum -c -
    rm -rf "$SRCDIR" "$SRCROOT/fuse-$VERSION"
    run tar -C "$SRCROOT" -xf "$SRCROOT/$ORIG"
    mv "$SRCROOT/fuse-$VERSION" "$SRCDIR"
    echo "orig $ORIG_SHA256" >"$SRCDIR/.fpio-origin"
    srcver="$VERSION (orig tarball, sha256 $ORIG_SHA256)"
  fi
fi
grep -q "version: '$VERSION'" "$SRCDIR/meson.build" || {
  echo "unexpected source tree in $SRCDIR" >>"$LOG"
  false
}

CURRENT_STEP="meson setup"
step "$CURRENT_STEP"
# rpath to our own libdir: passthrough_hp (copied, not installed by meson) must
# load this libfuse3.so.4, not look for it in the system paths. No -D for
# io_uring or custom io: upstream defaults.
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
if [ "$IO_URING" = 1 ]; then
  # libfuse enables io_uring silently when liburing (with SQE128) and libnuma are found.
  grep -qE 'liburing linking and SQE128 support".*links: YES' "$BUILDDIR/meson-logs/meson-log.txt" || {
    echo "meson did not enable io_uring (liburing with SQE128 and libnuma needed)" >>"$LOG"
    false
  }
  grep -qx '#define HAVE_URING' "$BUILDDIR/fuse_config.h" || {
    echo "HAVE_URING not defined in $BUILDDIR/fuse_config.h" >>"$LOG"
    false
  }
  echo "meson: io_uring enabled (HAVE_URING)" >>"$LOG"
fi

CURRENT_STEP="ninja build"
step "$CURRENT_STEP"
# Two cores shared with other work: one compile job at a time is enough here.
run ninja -C "$BUILDDIR" -j "${FPIO_LIBFUSE_JOBS:-1}"

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
[ "$got" = "$VERSION" ] || {
  echo "pkg-config reports fuse3 $got, expected $VERSION" >>"$LOG"
  false
}
run "$PREFIX/bin/passthrough_hp" --help
lib=$(ls "$PREFIX/$LIBDIR"/libfuse3.so.*.*)
if [ "$IO_URING" = 1 ]; then
  grep -q 'NEEDED.*liburing' <(readelf -d "$lib") || {
    echo "$lib does not link liburing" >>"$LOG"
    false
  }
fi
if grep -qx '#define HAVE_CUSTOM_IO' "$BUILDDIR/fuse_config.h" 2>/dev/null; then
  echo "custom io compiled in: not upstream defaults" >>"$LOG"
  false
fi
# Nothing may have escaped the prefix (e.g. an install script writing /etc).
if grep -E '^Installing .* to /(usr|etc)/' "$LOG" >>/dev/null; then
  echo "install wrote outside $PREFIX" >>"$LOG"
  false
fi

trap - ERR
echo "$VERSION $srcver io_uring=$IO_URING $(date -u +%FT%TZ)" >"$STAMP"
echo "libfuse $VERSION built in $PREFIX (log: $LOG)"
echo "$PCDIR"
