#!/usr/bin/env bash
# Installs what building and testing fpio needs on Debian 12 (as root):
# Debian packages and the pinned cbindgen. Idempotent.
set -euo pipefail
CBINDGEN_VERSION=0.29.4
export DEBIAN_FRONTEND=noninteractive

pkgs=(build-essential pkg-config meson ninja-build python3 libfuse3-dev fuse3
      fio attr util-linux procps psmisc e2fsprogs valgrind libcap2-bin curl ca-certificates)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null || { echo "setup: cargo (Rust >= 1.77) is required" >&2; exit 1; }
if [ "$(cbindgen --version 2>/dev/null | awk '{print $2}')" != "$CBINDGEN_VERSION" ]; then
  echo "setup: installing cbindgen $CBINDGEN_VERSION"
  cargo install --quiet cbindgen --version "$CBINDGEN_VERSION" --locked
fi
# Mount tests need the fuse module (built in on most kernels) and /dev/fuse.
[ -e /dev/fuse ] || modprobe fuse 2>/dev/null || true
echo "setup: done"
