#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build x86_64 bzImages from Debian's linux-source-7.3: `make tinyconfig` +
# kernel/config-fragment (merge_config.sh) + olddefconfig (a debug config: lockdep, KASAN).
#
#   build-kernels.sh FLAVOR...      (default: stock patched)
#     stock            the pristine source
#     patched          + kernel/patches/*.patch
#     broken-NAME      + kernel/patches/*.patch + kernel/patches/broken/NAME.patch
#     FLAVOR+nodebug   the same sources, config-fragment without its debug section
#                      (for the benchmark; its own O= directory)
#
# All flavors share ONE work tree (a hard-link copy of the pristine source) and ONE O=
# directory: switching flavor replaces only the files the patches touch (fresh copies, so
# their mtime moves forward) and make rebuilds only what depends on them. The first
# kernel costs a full build, every further one an incremental fs/fuse build + relink.
# Images are cached, keyed by a hash of what goes into them (source version, config
# fragment, the code of the patches applied); a second run with nothing changed is a
# no-op. On success the last lines on stdout are FLAVOR=/path/to/bzImage, and
# $CACHE/images/FLAVOR.bzImage are symlinks to the current images.
#
#   FPIO_KERNEL_CACHE  cache root (default /var/cache/fpio/kernel)
#   FPIO_KERNEL_JOBS   make -j (default: number of cores)
# Builds always run under `nice -n 19` (the machine is shared).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${FPIO_KERNEL_CACHE:-/var/cache/fpio/kernel}
JOBS=${FPIO_KERNEL_JOBS:-$(nproc)}
WORK="$CACHE/build/src"
FRAG= OUTD= # per flavor: set_config
[[ $# -gt 0 ]] || set -- stock patched
mkdir -p "$CACHE/build" "$CACHE/images"

log() { echo "build-kernels: $*" >&2; }

SRC=$("$HERE/fetch-source.sh")
VER=$(cat "$SRC/.fpio-debian-version")

# The fragment and O= directory of a flavor (debug or not).
set_config() { # flavor
	if [[ $1 == *+nodebug ]]; then
		FRAG="$CACHE/build/config-fragment.nodebug"
		sed '/^# >>> debug/,/^# <<< debug/d' "$HERE/config-fragment" >"$FRAG"
		OUTD="$CACHE/build/out-nodebug"
	else
		FRAG="$HERE/config-fragment"
		OUTD="$CACHE/build/out"
	fi
}

# The options of a fragment, without comments: rewording a comment rebuilds nothing.
frag_options() {
	grep -E '^CONFIG_|^# CONFIG_[A-Z0-9_]+ is not set' "$1"
}

patches_of() { # flavor -> patch files, in order
	case ${1%+nodebug} in
		stock) ;;
		patched) ls -1 "$HERE"/patches/*.patch ;;
		broken-*)
			local b="$HERE/patches/broken/${1#broken-}.patch"
			[[ -f $b ]] || { log "no such broken variant: $b"; exit 2; }
			ls -1 "$HERE"/patches/*.patch
			echo "$b"
			;;
		*) log "unknown flavor $1"; exit 2 ;;
	esac
}

# The code part of a git format-patch file: from the first "diff --git" to the
# signature ("-- "), without format-patch's base-commit trailer.
patch_code() {
	awk '/^diff --git /{d=1} /^-- $/{d=0} d && !/^base-commit: /' "$1"
}

key_of() { # flavor
	local p
	set_config "$1"
	{
		echo "fpio-kernel-key-v2 $VER"
		frag_options "$FRAG" | sha256sum
		# only the diffs count: rewording a commit message rebuilds nothing
		for p in $(patches_of "$1"); do
			echo "$(basename "$p") $(patch_code "$p" | sha256sum)"
		done
	} | sha256sum | cut -c1-16
}

# Files touched by a set of patches (paths relative to the source root).
patched_files() {
	local p
	for p in "$@"; do
		sed -n 's|^+++ b/\([^[:space:]]*\).*|\1|p' "$p"
	done | sort -u
}

# Replace a hard link in the work tree by a fresh private copy of the pristine file
# (or remove it if the pristine tree has no such file).
fresh_copy() { # relpath
	rm -f "$WORK/$1"
	if [[ -e $SRC/$1 ]]; then
		mkdir -p "$(dirname "$WORK/$1")"
		cp "$SRC/$1" "$WORK/$1"
	fi
}

# objtool decodes x86 instructions with its own copies of the kernel's decoder
# (tools/arch/x86/...). A stable update can change one copy and not the other
# (6.12.118: the opcode map got XOP entries, tools' inat.h did not, and objtool's
# inat-tables.c stopped compiling). The kernel itself builds with the arch/x86 copies,
# which are consistent by construction; where the tools copies differ in more than
# their include lines, use the arch/x86 ones (in the work tree only).
sync_tools_decoder() {
	local pair a t changed=0
	for pair in include/asm/inat.h include/asm/inat_types.h lib/x86-opcode-map.txt \
		tools/gen-insn-attr-x86.awk; do
		a="arch/x86/$pair" t="tools/arch/x86/$pair"
		[[ -f $SRC/$a && -f $SRC/$t ]] || continue
		if ! cmp -s <(grep -v '#include' "$SRC/$a") <(grep -v '#include' "$SRC/$t"); then
			log "objtool: $t differs from $a; using the arch/x86 copy"
			rm -f "$WORK/$t"
			if [[ $pair == *.h ]]; then
				# arch headers include <asm/...>; objtool's include path resolves that
				# to tools/arch/x86/include/asm, i.e. to the synced copies
				cp "$SRC/$a" "$WORK/$t"
			else
				cp "$SRC/$a" "$WORK/$t"
			fi
			echo "$t" >>"$WORK/.fpio-tools-synced"
			changed=1
		fi
	done
	[[ $changed == 0 ]] || log "objtool: decoder copies synced from arch/x86"
}

ensure_work_tree() {
	if [[ -f $WORK/.fpio-src && $(cat "$WORK/.fpio-src") == "$SRC" ]]; then
		return
	fi
	log "work tree: hard-link copy of $SRC"
	rm -rf "$WORK" "$CACHE/build/out" "$CACHE/build/out-nodebug"
	cp -al "$SRC" "$WORK.tmp"
	mv "$WORK.tmp" "$WORK"
	: >"$WORK/.fpio-touched"
	: >"$WORK/.fpio-state"
	sync_tools_decoder
	echo "$SRC" >"$WORK/.fpio-src"
}

# Put the work tree in the state "pristine + these patches".
set_tree_state() { # flavor
	local want f p
	want=$(for p in $(patches_of "$1"); do echo "$(basename "$p") $(patch_code "$p" | sha256sum)"; done)
	[[ $want == "$(cat "$WORK/.fpio-state")" ]] && return
	# everything touched before or now goes back to a fresh pristine copy
	for f in $(cat "$WORK/.fpio-touched") $(patched_files $(patches_of "$1")); do
		fresh_copy "$f"
	done
	: >"$WORK/.fpio-state"
	for p in $(patches_of "$1"); do
		log "$1: applying ${p#"$HERE"/}"
		patch -d "$WORK" -p1 --forward --no-backup-if-mismatch --quiet <"$p"
	done
	patched_files $(patches_of "$1") >"$WORK/.fpio-touched"
	# guard: hard links must never have been written through
	for f in $(cat "$WORK/.fpio-touched"); do
		if [[ -e $SRC/$f && $(stat -c %i "$SRC/$f") == $(stat -c %i "$WORK/$f") ]]; then
			log "error: $f is still a hard link to the pristine tree"
			exit 1
		fi
	done
	echo "$want" >"$WORK/.fpio-state"
}

configure() {
	local ckey
	ckey=$( (echo "$VER"; frag_options "$FRAG") | sha256sum | cut -c1-16)
	[[ -f $OUTD/.fpio-config-key && $(cat "$OUTD/.fpio-config-key") == "$ckey" && -f $OUTD/.config ]] && return
	mkdir -p "$OUTD"
	rm -f "$OUTD/.fpio-config-key"
	local mk=(make -C "$WORK" O="$OUTD" ARCH=x86_64 -s)
	log "configuring (tinyconfig + config-fragment) in $OUTD"
	"${mk[@]}" tinyconfig >/dev/null
	(cd "$OUTD" && "$WORK/scripts/kconfig/merge_config.sh" -m -O "$OUTD" "$OUTD/.config" "$FRAG" >/dev/null)
	"${mk[@]}" olddefconfig >/dev/null
	# Every option the fragment sets or unsets must have survived olddefconfig.
	local missing=0 line opt
	while IFS= read -r line; do
		if [[ $line =~ ^CONFIG_[A-Z0-9_]+=y$ ]]; then
			grep -qx "$line" "$OUTD/.config" && continue
		elif [[ $line =~ ^#\ (CONFIG_[A-Z0-9_]+)\ is\ not\ set$ ]]; then
			opt=${BASH_REMATCH[1]}
			grep -q "^$opt=" "$OUTD/.config" || continue
		else
			continue
		fi
		log "config-fragment option not in final .config: $line"
		missing=1
	done <"$FRAG"
	[[ $missing == 0 ]] || exit 1
	echo "$ckey" >"$OUTD/.fpio-config-key"
}

build_one() { # flavor
	local flavor=$1 key img start
	key=$(key_of "$flavor")
	img="$CACHE/images/$flavor-$key/bzImage"
	if [[ ! -f $img ]]; then
		# one build at a time (the check above needs no lock: images appear atomically)
		exec 9>"$CACHE/build/.lock"
		flock 9
	fi
	if [[ -f $img ]]; then
		log "$flavor: cached ($img)"
		ln -sfn "$img" "$CACHE/images/$flavor.bzImage"
		exec 9>&-
		return
	fi
	start=$(date +%s)
	set_config "$flavor"
	ensure_work_tree
	set_tree_state "$flavor"
	configure
	log "$flavor: building bzImage (nice -n 19, -j$JOBS); log $OUTD/build-$flavor.log"
	if ! nice -n 19 make -C "$WORK" O="$OUTD" ARCH=x86_64 -s -j"$JOBS" bzImage \
		>"$OUTD/build-$flavor.log" 2>&1; then
		tail -n 40 "$OUTD/build-$flavor.log" >&2
		log "$flavor: build failed"
		exit 1
	fi
	if grep -q "fs/fuse/\|fs/backing-file" <(grep -n "warning:" "$OUTD/build-$flavor.log"); then
		grep -n "warning:" "$OUTD/build-$flavor.log" | grep "fs/fuse/\|fs/backing-file" >&2
		log "$flavor: compiler warnings in the code under test"
		exit 1
	fi
	mkdir -p "$(dirname "$img")"
	cp "$OUTD/arch/x86/boot/bzImage" "$img.tmp"
	cp "$OUTD/.config" "$(dirname "$img")/config"
	mv "$img.tmp" "$img"
	ln -sfn "$img" "$CACHE/images/$flavor.bzImage"
	log "$flavor: built in $(( $(date +%s) - start ))s: $img"
	exec 9>&-
}

for f in "$@"; do
	build_one "$f"
done
for f in "$@"; do
	echo "$f=$(readlink -f "$CACHE/images/$f.bzImage")"
done
