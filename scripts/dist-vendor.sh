#!/usr/bin/env bash
# meson dist script: vendors every crate the build needs into the release
# tarball (vendor/) and writes .cargo/config.toml that points cargo at it, so
# a build from the tarball needs no network and no crates.io cache.
# The fuzz/ crate (nightly, cargo-fuzz) is not vendored: it is not built from
# a release. Usage (from meson): dist-vendor.sh CARGO
set -euo pipefail
cargo=${1:-cargo}
dist=${MESON_PROJECT_DIST_ROOT:-$MESON_DIST_ROOT}
cd "$dist"
rm -rf vendor .cargo
mkdir .cargo
{
  echo "# Written by scripts/dist-vendor.sh (meson dist): crates come from vendor/ only."
  "$cargo" vendor --locked --versioned-dirs --manifest-path Cargo.toml vendor
} > .cargo/config.toml
# The tarball must build with what it carries: prove it before meson packs it.
empty_home=$(mktemp -d)
trap 'rm -rf "$empty_home"' EXIT
CARGO_HOME=$empty_home CARGO_NET_OFFLINE=true "$cargo" metadata --locked --offline \
  --format-version 1 --manifest-path Cargo.toml >/dev/null
echo "dist-vendor: $(find vendor -mindepth 1 -maxdepth 1 -type d | wc -l) crates in vendor/"
