#!/bin/bash
# Fetch libfuse 3.14.0's upstream release tarball (Debian 12's fuse3 orig tarball) and verify
# it. Usage: fetch.sh DIR; prints the tarball's path as the last line of stdout.
#
# Debian 12's fuse3 3.14.0-4 patches lib/ and include/ only, never example/passthrough.c, so
# the orig tarball's example/passthrough.c is the one Debian ships.
#
# apt-get source from a private bookworm deb-src entry, Debian's pool if apt cannot deliver it;
# only the pinned sha256 is trusted (../lib/fetch-debian-orig.sh).
set -euo pipefail
exec "$(dirname "$0")/../lib/fetch-debian-orig.sh" "${1:?usage: fetch.sh DIR}" \
  fuse3 3.14.0 bookworm 96115b2a8ff34bd1e0c7b00c5dfd8297571d7e165042b94498c9a26356a9a70a
