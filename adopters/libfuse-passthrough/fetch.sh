#!/bin/bash
# Fetch libfuse 3.14.0's upstream release tarball (Debian 12's fuse3 orig tarball) and verify
# it. Usage: fetch.sh DIR; prints the tarball's path as the last line of stdout.
#
# Debian 12's fuse3 3.14.0-4 patches lib/ and include/ only, never example/passthrough.c, so
# the orig tarball's example/passthrough.c is the one Debian ships.
#
# apt-get source --download-only with a private deb-src entry for bookworm and private apt
# lists/cache, so the host's apt configuration is neither read nor changed. apt fetches the
# orig tarball first; a later file that fails (e.g. a .dsc answering 404) does not matter,
# because only the orig tarball's sha256 is trusted. Only if apt cannot deliver it, the
# tarball is fetched directly from Debian's pool (same sha256 check).
set -euo pipefail

NAME=fuse3
VERSION=3.14.0
SHA256=96115b2a8ff34bd1e0c7b00c5dfd8297571d7e165042b94498c9a26356a9a70a
ORIG=${NAME}_${VERSION}.orig.tar.xz
POOL=http://deb.debian.org/debian/pool/main/f/fuse3

dir=${1:?usage: fetch.sh DIR}
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
cat >"$work/bookworm-src.sources" <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
# Check-Valid-Until=false: a mirror that stopped syncing serves a Release file past its
# Valid-Until; its signature is still checked, and the tarball's sha256 is checked below.
apt_opts=(-o Dir::Etc::SourceList="$work/bookworm-src.sources" -o Dir::Etc::SourceParts=/dev/null
  -o Dir::State::Lists="$work/lists" -o Dir::Cache="$work/cache"
  -o APT::Sandbox::User=root -o Acquire::Retries=2 -o Acquire::Check-Valid-Until=false)
if apt-get "${apt_opts[@]}" update >"$work/apt.log" 2>&1; then
  (cd "$work/dl" && apt-get "${apt_opts[@]}" source --download-only "$NAME" >>"$work/apt.log" 2>&1) ||
    echo "fetch: apt-get source did not finish (the orig tarball may still be there)" >&2
else
  echo "fetch: apt-get update for bookworm deb-src failed" >&2
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
echo "fetch: no $ORIG with sha256 $SHA256 (neither apt nor $POOL delivered it)" >&2
exit 1
