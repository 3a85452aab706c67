#!/usr/bin/env bash
# Installs what building and testing fpio needs on Debian 12 (as root):
# Debian packages, Debian's Rust when there is no cargo, and the pinned
# cbindgen (built with that cargo). Idempotent.
set -euo pipefail
CBINDGEN_VERSION=0.29.4
root=$(cd "$(dirname "$0")/.." && pwd)
RUST_MIN=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' "$root/Cargo.toml")
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
# No cargo at all: Debian's own Rust. Debian 12 has a current one only as
# rustc-web/cargo-web (its rustc/cargo are 1.63); Debian 13 has rustc/cargo.
if ! command -v cargo >/dev/null; then
  # shellcheck disable=SC1091
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  case $codename in
  bookworm) rust_pkgs=(cargo-web rustc-web) ;;
  *) rust_pkgs=(cargo rustc) ;;
  esac
  echo "setup: installing Debian's Rust (${rust_pkgs[*]})"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${rust_pkgs[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "setup: cargo (Rust >= $RUST_MIN) is required" >&2; exit 1; }
have_rust=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n' "$RUST_MIN" "$have_rust" | sort -V | head -1)" != "$RUST_MIN" ]; then
  echo "setup: rustc $have_rust is older than $RUST_MIN (Cargo.toml's rust-version)" >&2
  exit 1
fi
# cargo install puts cbindgen in ~/.cargo/bin, also with Debian's cargo.
case ":$PATH:" in *":$HOME/.cargo/bin:"*) ;; *) export PATH="$PATH:$HOME/.cargo/bin" ;; esac
if [ "$(cbindgen --version 2>/dev/null | awk '{print $2}')" != "$CBINDGEN_VERSION" ]; then
  echo "setup: installing cbindgen $CBINDGEN_VERSION"
  cargo install --quiet cbindgen --version "$CBINDGEN_VERSION" --locked
fi
# Mount tests need the fuse module (built in on most kernels) and /dev/fuse.
[ -e /dev/fuse ] || modprobe fuse 2>/dev/null || true
echo "setup: done"
