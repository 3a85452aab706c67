#!/bin/bash
# Fetch the upstream tarball of a Debian source package (its orig tarball) and verify it.
# Usage: fetch-debian-orig.sh DIR SOURCE VERSION SUITE SHA256; prints the tarball's path
# (DIR/SOURCE_VERSION.orig.tar.xz) as the last line of stdout. An existing copy with the
# sha256 is used as it is.
#
# apt-get source --download-only with a private deb-src entry for SUITE and private apt
# lists/cache, so the host's apt configuration is neither read nor changed. apt fetches the
# orig tarball first; a later file that fails (e.g. a .dsc answering 404) does not matter,
# because only the orig tarball's sha256 is trusted. Only if apt cannot deliver it, the
# tarball is fetched directly from Debian's pool, and failing that taken from a pinned copy
# next to the repository (same sha256 check each time).
set -euo pipefail

usage="usage: fetch-debian-orig.sh DIR SOURCE VERSION SUITE SHA256"
dir=${1:?$usage} NAME=${2:?$usage} VERSION=${3:?$usage} SUITE=${4:?$usage} SHA256=${5:?$usage}
ORIG=${NAME}_${VERSION}.orig.tar.xz
# Debian's pool dir of a source package: lib* packages under their first four letters.
case $NAME in lib?*) POOL=${NAME:0:4} ;; *) POOL=${NAME:0:1} ;; esac
POOL=http://deb.debian.org/debian/pool/main/$POOL/$NAME

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
out=$dir/$ORIG

ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | awk '{ print $1 }')" = "$SHA256" ]; }
if ok "$out"; then
  echo "$out"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/dl"
cat >"$work/$SUITE-src.sources" <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $SUITE
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
# Check-Valid-Until=false: a mirror that stopped syncing serves a Release file past its
# Valid-Until; its signature is still checked, and the tarball's sha256 is checked below.
apt_opts=(-o Dir::Etc::SourceList="$work/$SUITE-src.sources" -o Dir::Etc::SourceParts=/dev/null
  -o Dir::State::Lists="$work/lists" -o Dir::Cache="$work/cache"
  -o APT::Sandbox::User=root -o Acquire::Retries=2 -o Acquire::Check-Valid-Until=false)
if apt-get "${apt_opts[@]}" update >"$work/apt.log" 2>&1; then
  (cd "$work/dl" && apt-get "${apt_opts[@]}" source --download-only "$NAME" >>"$work/apt.log" 2>&1) ||
    echo "fetch: apt-get source did not finish (the orig tarball may still be there)" >&2
else
  echo "fetch: apt-get update for $SUITE deb-src failed" >&2
fi
if ok "$work/dl/$ORIG"; then
  mv "$work/dl/$ORIG" "$out"
  echo "fetch: $ORIG from Debian's archive (sha256 ok)" >&2
  echo "$out"
  exit 0
fi
tail -n 5 "$work/apt.log" >&2 || true

# Fallback: the tarball straight from Debian's pool; apt's downloader checks the hash.
if /usr/lib/apt/apt-helper -o APT::Sandbox::User=root download-file "$POOL/$ORIG" "$work/$ORIG" "SHA256:$SHA256" \
  >>"$work/apt.log" 2>&1 && ok "$work/$ORIG"; then
  mv "$work/$ORIG" "$out"
  echo "fetch: $ORIG from $POOL (sha256 ok)" >&2
  echo "$out"
  exit 0
fi
tail -n 5 "$work/apt.log" >&2 || true

# Last resort, for machines that reach no Debian mirror: a pinned copy next to the repository.
pinned=$(cd "$(dirname "$0")/../.." && pwd)/../shared/thirdparty/$ORIG
if ok "$pinned"; then
  cp "$pinned" "$out"
  echo "fetch: $ORIG from the pinned copy $pinned (sha256 ok)" >&2
  echo "$out"
  exit 0
fi
echo "fetch: no $ORIG with sha256 $SHA256 (neither apt, $POOL nor a pinned copy delivered it)" >&2
exit 1
