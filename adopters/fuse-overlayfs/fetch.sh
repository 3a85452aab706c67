#!/bin/bash
# Fetch the fuse-overlayfs 1.14 upstream release tarball (Debian 13's orig tarball) and
# verify it. Usage: fetch.sh DIR; prints the tarball's path as the last line of stdout.
#
# apt-get source --download-only with a private deb-src entry for trixie and private apt
# lists/cache, so the host's apt configuration is neither read nor changed. apt fetches the
# orig tarball first; a later file that fails (e.g. a .dsc answering 404) does not matter,
# because only the orig tarball's sha256 is trusted. Only if apt cannot deliver it, the
# pinned copy beside the repository is used (same sha256 check).
set -euo pipefail

NAME=fuse-overlayfs
VERSION=1.14
SHA256=59c16cea55d493762c3f8bc82b5f0264c5f72264f241cb27d50ba60792aac698
ORIG=${NAME}_${VERSION}.orig.tar.xz

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
cat >"$work/trixie-src.sources" <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
apt_opts=(-o Dir::Etc::SourceList="$work/trixie-src.sources" -o Dir::Etc::SourceParts=/dev/null
  -o Dir::State::Lists="$work/lists" -o Dir::Cache="$work/cache"
  -o APT::Sandbox::User=root -o Acquire::Retries=2)
if apt-get "${apt_opts[@]}" update >"$work/apt.log" 2>&1; then
  (cd "$work/dl" && apt-get "${apt_opts[@]}" source --download-only "$NAME" >>"$work/apt.log" 2>&1) ||
    echo "fetch: apt-get source did not finish (the orig tarball may still be there)" >&2
else
  echo "fetch: apt-get update for trixie deb-src failed" >&2
fi
if ok "$work/dl/$ORIG"; then
  mv "$work/dl/$ORIG" "$out"
  echo "fetch: $ORIG from Debian's archive (sha256 ok)" >&2
  echo "$out"
  exit 0
fi
tail -n 5 "$work/apt.log" >&2 || true

# Fallback: the pinned copy next to the repository.
root=$(cd "$(dirname "$0")/../.." && pwd)
pinned=$root/../shared/thirdparty/$ORIG
if ok "$pinned"; then
  cp "$pinned" "$out"
  echo "fetch: $ORIG from the pinned copy $pinned (sha256 ok)" >&2
  echo "$out"
  exit 0
fi
echo "fetch: no $ORIG with sha256 $SHA256 (apt failed and no pinned copy)" >&2
exit 1
