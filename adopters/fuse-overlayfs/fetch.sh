#!/bin/bash
# Fetch the fuse-overlayfs 1.14 upstream release tarball (Debian 13's orig tarball) and
# verify it. Usage: fetch.sh DIR; prints the tarball's path as the last line of stdout.
# apt-get source from a private trixie deb-src entry, Debian's pool if apt cannot deliver it;
# only the pinned sha256 is trusted (../lib/fetch-debian-orig.sh).
set -euo pipefail
exec "$(dirname "$0")/../lib/fetch-debian-orig.sh" "${1:?usage: fetch.sh DIR}" \
  fuse-overlayfs 1.14 trixie 59c16cea55d493762c3f8bc82b5f0264c5f72264f241cb27d50ba60792aac698
