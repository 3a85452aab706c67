#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Fetch Debian's linux-source-7.3 and unpack it into the kernel cache (idempotent).
#
#   FPIO_KERNEL_CACHE  cache root (default /var/cache/fpio/kernel)
#   FPIO_KERNEL_DEB    use this linux-source-7.3_*.deb instead of downloading one
#
# Prints the path of the unpacked (pristine, never modified) source tree on stdout.
# The package is in trixie-backports (7.3.x-1~bpo13+1). It is fetched through a private
# apt configuration under the cache (a deb822 .sources file, its own lists and archive
# dirs), so the system's apt configuration is never read for sources nor changed.
# The patch level is not pinned: whatever 7.3.x trixie-backports carries is used, and the
# cache is keyed by the Debian version, so a new upload means one fresh build.
# A downloaded .deb is reused for FPIO_DEB_MAX_AGE days (default 7) before apt is asked
# again, so a warm cache needs no network.
set -euo pipefail

CACHE=${FPIO_KERNEL_CACHE:-/var/cache/fpio/kernel}
SERIES=7.3
PKG=linux-source-$SERIES
MAX_AGE=${FPIO_DEB_MAX_AGE:-7}
mkdir -p "$CACHE/debs"

log() { echo "fetch-source: $*" >&2; }

apt_dir="$CACHE/apt"
# Check-Valid-Until=false: a mirror whose copy of a suite stops syncing serves a
# Release file still signed but past its Valid-Until; the signature is checked.
apt_opts=(-o Acquire::Check-Valid-Until=false -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$apt_dir/etc/sources.list.d"
	-o Dir::State::Lists="$apt_dir/lists" -o Dir::Cache="$apt_dir/cache"
	-o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts="$apt_dir/etc/preferences.d"
	-o Dir::State::Status=/dev/null -o APT::Get::List-Cleanup=0 -q)
private_apt_setup() {
	mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" \
		"$apt_dir/etc/sources.list.d" "$apt_dir/etc/preferences.d"
	cat >"$apt_dir/etc/sources.list.d/trixie-backports.sources" <<-EOS
	Types: deb
	URIs: http://deb.debian.org/debian
	Suites: trixie-backports
	Components: main
	Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
	EOS
}

deb=${FPIO_KERNEL_DEB:-}
if [[ -z $deb ]]; then
	# newest already downloaded .deb, if recent enough
	deb=$(ls -1 "$CACHE"/debs/${PKG}_*.deb 2>/dev/null | sort -V | tail -n1 || true)
	if [[ -n $deb && -n $(find "$deb" -mtime +"$MAX_AGE" 2>/dev/null) ]]; then
		log "$(basename "$deb") is older than $MAX_AGE days: asking apt for a newer one"
		old=$deb
		deb=""
	fi
	if [[ -z $deb ]]; then
		private_apt_setup
		if apt-get "${apt_opts[@]}" update >&2 &&
			(cd "$CACHE/debs" && apt-get "${apt_opts[@]}" download "$PKG" >&2); then
			deb=$(ls -1 "$CACHE"/debs/${PKG}_*.deb | sort -V | tail -n1)
			touch "$deb"
		elif [[ -n ${old:-} ]]; then
			log "apt failed; keeping $(basename "$old")"
			deb=$old
		else
			log "error: could not download $PKG from trixie-backports"
			exit 1
		fi
	fi
fi

ver=$(dpkg-deb -f "$deb" Version)
src="$CACHE/src/${ver//\~/_}"
if [[ -f "$src/.fpio-unpacked" ]]; then
	echo "$src/linux"
	exit 0
fi

log "unpacking $(basename "$deb") (version $ver)"
rm -rf "$src.tmp"
mkdir -p "$src.tmp/x"
tarball=$(dpkg-deb --fsys-tarfile "$deb" | tar -t | grep -E "^\./usr/src/$PKG\.tar\.[a-z]+$" | head -n1)
[[ -n $tarball ]] || { log "error: no /usr/src/$PKG.tar.* in $deb"; exit 1; }
dpkg-deb --fsys-tarfile "$deb" | tar -xO "$tarball" | tar -C "$src.tmp/x" -xJ
top=$(ls -1 "$src.tmp/x" | head -n1)
mv "$src.tmp/x/$top" "$src.tmp/linux"
rmdir "$src.tmp/x"
echo "$ver" >"$src.tmp/linux/.fpio-debian-version"
touch "$src.tmp/.fpio-unpacked"
rm -rf "$src"
mkdir -p "$CACHE/src"
mv "$src.tmp" "$src"
echo "$src/linux"
