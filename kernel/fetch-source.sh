#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Fetch Debian's linux-source-6.12 and unpack it into the kernel cache (idempotent).
#
#   FPIO_KERNEL_CACHE  cache root (default /var/cache/fpio/kernel)
#
# Prints the path of the unpacked (pristine, never modified) source tree on stdout.
# The package comes from whichever configured suite has it (bookworm-security carries
# 6.12.x as linux-source-6.12); if none does, a private apt configuration with a
# trixie .sources entry is used, so the system's apt configuration is never changed.
set -euo pipefail

CACHE=${FPIO_KERNEL_CACHE:-/var/cache/fpio/kernel}
PKG=linux-source-6.12
mkdir -p "$CACHE/debs"

log() { echo "fetch-source: $*" >&2; }

# A private apt setup pointing at trixie, used only if the system's suites lack the package.
private_apt_opts() {
	local d="$CACHE/apt"
	mkdir -p "$d/lists/partial" "$d/cache/archives/partial" "$d/etc/preferences.d"
	cat >"$d/etc/trixie.sources" <<-EOF
	Types: deb
	URIs: http://deb.debian.org/debian
	Suites: trixie
	Components: main
	Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
	EOF
	echo "-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts=$d/etc" \
	     "-o Dir::Etc::sourceparts=$d/etc -o Dir::State::Lists=$d/lists" \
	     "-o Dir::Cache=$d/cache -o Dir::Etc::Preferences=/dev/null" \
	     "-o Dir::Etc::PreferencesParts=$d/etc/preferences.d"
}

# Reuse an already downloaded .deb if there is one (newest version first).
deb=$(ls -1 "$CACHE"/debs/${PKG}_*.deb 2>/dev/null | sort -V | tail -n1 || true)
if [[ -z "$deb" ]]; then
	apt_opts=""
	if ! apt-cache show "$PKG" >/dev/null 2>&1; then
		apt-get update -q >&2 || true
	fi
	if ! apt-cache show "$PKG" >/dev/null 2>&1; then
		log "$PKG not in the configured suites; using a private trixie apt configuration"
		apt_opts=$(private_apt_opts)
		# shellcheck disable=SC2086
		apt-get $apt_opts update -q >&2
	fi
	log "downloading $PKG"
	# shellcheck disable=SC2086
	(cd "$CACHE/debs" && apt-get $apt_opts download -q "$PKG" >&2)
	deb=$(ls -1 "$CACHE"/debs/${PKG}_*.deb | sort -V | tail -n1)
fi

ver=$(dpkg-deb -f "$deb" Version)
src="$CACHE/src/${ver//\~/_}"
if [[ -f "$src/.fpio-unpacked" ]]; then
	echo "$src/linux"
	exit 0
fi

log "unpacking $deb (version $ver)"
rm -rf "$src.tmp"
mkdir -p "$src.tmp/deb"
dpkg-deb -x "$deb" "$src.tmp/deb"
tarball=$(ls -1 "$src.tmp"/deb/usr/src/linux-source-6.12*.tar.* | head -n1)
mkdir -p "$src.tmp/x"
tar -C "$src.tmp/x" -xf "$tarball"
top=$(ls -1 "$src.tmp/x" | head -n1)
mv "$src.tmp/x/$top" "$src.tmp/linux"
rm -rf "$src.tmp/deb" "$src.tmp/x"
echo "$ver" >"$src.tmp/linux/.fpio-debian-version"
touch "$src.tmp/.fpio-unpacked"
rm -rf "$src"
mkdir -p "$CACHE/src"
mv "$src.tmp" "$src"
echo "$src/linux"
