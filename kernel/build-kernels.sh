#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build a stock and a patched x86_64 bzImage from Debian's linux-source-6.12:
# `make tinyconfig` + kernel/config-fragment (merge_config.sh) + olddefconfig.
#
#   build-kernels.sh [stock|patched|both]     (default both)
#
# Images are cached outside the clone, keyed by a hash of what goes into them:
#   stock:   source version + config fragment
#   patched: source version + config fragment + the diffs in kernel/patches/*.patch
# A second run with nothing changed is a no-op. On success the last lines on stdout are
#   stock=/path/to/bzImage
#   patched=/path/to/bzImage
# and $CACHE/images/{stock,patched}.bzImage are symlinks to the current images.
#
#   FPIO_KERNEL_CACHE  cache root (default /var/cache/fpio/kernel)
#   FPIO_KERNEL_JOBS   make -j (default: number of cores)
# Builds always run under `nice -n 19` (the machine is shared).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${FPIO_KERNEL_CACHE:-/var/cache/fpio/kernel}
JOBS=${FPIO_KERNEL_JOBS:-$(nproc)}
WHICH=${1:-both}
FRAG="$HERE/config-fragment"
mkdir -p "$CACHE/build" "$CACHE/images"

log() { echo "build-kernels: $*" >&2; }

SRC=$("$HERE/fetch-source.sh")
VER=$(cat "$SRC/.fpio-debian-version")

# The code part of a git format-patch file: from the first "diff --git" to the
# signature ("-- "), without format-patch's base-commit trailer.
patch_code() {
	awk '/^diff --git /{d=1} /^-- $/{d=0} d && !/^base-commit: /' "$1"
}

key_of() { # flavor
	{
		echo "fpio-kernel-key-v1 $1 $VER"
		sha256sum <"$FRAG"
		if [[ $1 == patched ]]; then
			# only the diffs count: rewording a commit message rebuilds nothing
			for p in "$HERE"/patches/*.patch; do
				echo "$(basename "$p") $(patch_code "$p" | sha256sum)"
			done
		fi
	} | sha256sum | cut -c1-16
}

# Files touched by a set of patches (paths relative to the source root).
patched_files() {
	local p
	for p in "$@"; do
		sed -n 's|^+++ b/\([^[:space:]]*\).*|\1|p' "$p"
	done | sort -u
}

# Source tree for a flavor. stock: the pristine tree. patched: a hard-link copy of
# it with the patches applied (patch(1) writes new files, so the pristine tree is
# never modified; files touched now or by the previous patch set are replaced by
# fresh copies so that make sees them as changed).
prepare_source() { # flavor key
	local flavor=$1 key=$2
	if [[ $flavor == stock ]]; then
		echo "$SRC"
		return
	fi
	local tree="$CACHE/build/patched-src"
	if [[ -f "$tree/.fpio-key" && $(cat "$tree/.fpio-key") == "$key" ]]; then
		echo "$tree"
		return
	fi
	local old_files=""
	[[ -f "$tree/.fpio-patched-files" ]] && old_files=$(cat "$tree/.fpio-patched-files")
	log "preparing patched source tree"
	rm -rf "$tree"
	cp -al "$SRC" "$tree"
	local f
	for f in $old_files $(patched_files "$HERE"/patches/*.patch); do
		[[ -e "$SRC/$f" ]] || continue
		rm -f "$tree/$f"
		cp "$SRC/$f" "$tree/$f"
	done
	local p
	for p in "$HERE"/patches/*.patch; do
		log "applying $(basename "$p")"
		patch -d "$tree" -p1 --forward --no-backup-if-mismatch --quiet <"$p"
	done
	# Guard: the pristine tree must be untouched.
	for f in $(patched_files "$HERE"/patches/*.patch); do
		if cmp -s "$SRC/$f" "$tree/$f"; then
			log "error: $f unchanged by the patches"
			exit 1
		fi
	done
	patched_files "$HERE"/patches/*.patch >"$tree/.fpio-patched-files"
	echo "$key" >"$tree/.fpio-key"
	echo "$tree"
}

build_one() { # flavor
	local flavor=$1 key img out tree start
	key=$(key_of "$flavor")
	img="$CACHE/images/$flavor-$key/bzImage"
	if [[ -f $img ]]; then
		log "$flavor: cached ($img)"
		ln -sfn "$img" "$CACHE/images/$flavor.bzImage"
		return
	fi
	# one build at a time (the check above needs no lock: images appear atomically)
	exec 9>"$CACHE/build/.lock"
	flock 9
	if [[ -f $img ]]; then
		log "$flavor: cached ($img)"
		ln -sfn "$img" "$CACHE/images/$flavor.bzImage"
		exec 9>&-
		return
	fi
	start=$(date +%s)
	tree=$(prepare_source "$flavor" "$key")
	out="$CACHE/build/$flavor"
	mkdir -p "$out"
	local mk=(make -C "$tree" O="$out" ARCH=x86_64 -s)
	log "$flavor: configuring (tinyconfig + config-fragment) in $out"
	"${mk[@]}" tinyconfig >/dev/null
	(cd "$out" && "$tree/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" "$FRAG" >/dev/null)
	"${mk[@]}" olddefconfig >/dev/null
	# Every option the fragment asks for must have survived olddefconfig.
	local missing=0 line
	while IFS= read -r line; do
		[[ $line =~ ^CONFIG_[A-Z0-9_]+=y$ ]] || continue
		if ! grep -qx "$line" "$out/.config"; then
			log "$flavor: config-fragment option not in final .config: $line"
			missing=1
		fi
	done <"$FRAG"
	[[ $missing == 0 ]] || exit 1
	log "$flavor: building bzImage (nice -n 19, -j$JOBS); log $out/build.log"
	if ! nice -n 19 "${mk[@]}" -j"$JOBS" bzImage >"$out/build.log" 2>&1; then
		tail -n 40 "$out/build.log" >&2
		log "$flavor: build failed"
		exit 1
	fi
	if grep -n "warning:" "$out/build.log" | grep -q "fs/fuse/"; then
		grep -n "warning:" "$out/build.log" | grep "fs/fuse/" >&2
		log "$flavor: compiler warnings in fs/fuse"
		exit 1
	fi
	mkdir -p "$(dirname "$img")"
	cp "$out/arch/x86/boot/bzImage" "$img.tmp"
	cp "$out/.config" "$(dirname "$img")/config"
	mv "$img.tmp" "$img"
	ln -sfn "$img" "$CACHE/images/$flavor.bzImage"
	log "$flavor: built in $(( $(date +%s) - start ))s: $img"
	exec 9>&-
}

case $WHICH in
	stock) build_one stock ;;
	patched) build_one patched ;;
	both) build_one stock; build_one patched ;;
	*) echo "usage: $0 [stock|patched|both]" >&2; exit 2 ;;
esac

for f in stock patched; do
	if [[ $WHICH == both || $WHICH == "$f" ]]; then
		echo "$f=$(readlink -f "$CACHE/images/$f.bzImage")"
	fi
done
