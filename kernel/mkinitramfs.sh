#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build the test VM's initramfs (gzip'd newc cpio).
#
#   mkinitramfs.sh OUTPUT TEST_SCRIPT [FILE[=DEST]]...
#
# Contents:
#   /bin/busybox (+ applet links)       from Debian's busybox-static
#   /usr/bin/fio (+ its shared libs)    from Debian's fio
#   /test/run                           TEST_SCRIPT, run by /init
#   each FILE at DEST (default /bin/BASENAME); a FILE may be a directory (copied
#   recursively to DEST, default /opt/BASENAME). Every ELF file copied this way gets
#   its shared libraries (ldd) and ELF interpreter copied to the same paths, so
#   e.g. a test binary linked to libfuse3.so.3 and libfpio.so.0 just works.
#   Use DEST ending in / to keep the basename under that directory.
#
# /init mounts proc, sysfs, devtmpfs (with /dev/fd) and tmpfs (/tmp, /run), runs /test/run
# (cwd /test, output on the console), then prints exactly one of
#   FPIO-VM-RESULT: PASS
#   FPIO-VM-RESULT: FAIL (exit N)
# and powers the VM off (reboot -f; run-vm.sh runs qemu with -no-reboot).
set -euo pipefail

[[ $# -ge 2 ]] || { echo "usage: $0 OUTPUT TEST_SCRIPT [FILE[=DEST]]..." >&2; exit 2; }
OUT=$1
TEST=$2
shift 2

need_pkg() { # command package
	command -v "$1" >/dev/null 2>&1 && return
	[[ -x $1 ]] && return
	echo "mkinitramfs: installing $2" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >&2
}
need_pkg /bin/busybox busybox-static
need_pkg fio fio
need_pkg cpio cpio
if ! /bin/busybox --list >/dev/null 2>&1 || ldd /bin/busybox >/dev/null 2>&1; then
	# busybox (dynamic) may be installed instead of busybox-static
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static >&2
fi

ROOT=$(mktemp -d "${TMPDIR:-/tmp}/fpio-initramfs.XXXXXX")
trap 'rm -rf "$ROOT"' EXIT
chmod 755 "$ROOT" # it becomes "/": mktemp made it 0700, and non-root users must traverse it
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,mnt,test,etc,lib,lib64}

# Copy a file to the same path (or DEST) inside the initramfs, with its libraries.
copy_elf_deps() { # file-on-host
	local f=$1 lib deps
	[[ $(head -c 4 "$f" 2>/dev/null | od -An -c | tr -d ' \n') == '177ELF' ]] || return 0
	deps=$(ldd "$f" 2>&1) || return 0 # static: "not a dynamic executable"
	# ldd prints "name => /path (addr)" and "/lib64/ld-linux... (addr)"
	while read -r lib; do
		[[ -n $lib && -e $lib ]] || continue
		lib=$(realpath -s "$lib") # drop "dir/../" from RUNPATH-relative paths
		if [[ ! -e $ROOT$lib ]]; then
			mkdir -p "$ROOT$(dirname "$lib")"
			rm -f "$ROOT$lib"
			cp -L "$lib" "$ROOT$lib"
		fi
		# A library found through a build tree's RUNPATH ($ORIGIN/..) would not be
		# found from the binary's new place: also put it on the default search path.
		case $lib in
			/lib/* | /lib64/* | /usr/lib/* | /usr/lib64/*) ;;
			*)
				mkdir -p "$ROOT/usr/lib/x86_64-linux-gnu"
				rm -f "$ROOT/usr/lib/x86_64-linux-gnu/$(basename "$lib")"
				cp -L "$lib" "$ROOT/usr/lib/x86_64-linux-gnu/$(basename "$lib")"
				;;
		esac
	done < <(sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) (.*/\1/p' <<<"$deps")
	if grep -q 'not found' <<<"$deps"; then
		echo "mkinitramfs: unresolved libraries for $f:" >&2
		grep 'not found' <<<"$deps" >&2
		exit 1
	fi
}

add_file() { # src dest
	local src=$1 dest=$2
	[[ $dest == */ ]] && dest=$dest$(basename "$src")
	mkdir -p "$ROOT$(dirname "$dest")"
	rm -f "$ROOT$dest" # never write through an applet symlink (/bin/busybox!)
	cp -L "$src" "$ROOT$dest"
	copy_elf_deps "$src"
}

# busybox and its applets
cp /bin/busybox "$ROOT/bin/busybox"
for app in $(/bin/busybox --list-full); do
	[[ -e $ROOT/$app ]] || ln -s /bin/busybox "$ROOT/$app"
done

# fio with its libraries
add_file "$(command -v fio)" /usr/bin/fio

# requested extra files
for spec in "$@"; do
	src=${spec%%=*}
	dest=${spec#*=}
	[[ $spec == *=* ]] || dest=""
	if [[ -d $src ]]; then
		[[ -n $dest ]] || dest=/opt/$(basename "$src")
		mkdir -p "$ROOT$dest"
		cp -a "$src"/. "$ROOT$dest"/
		while IFS= read -r -d '' f; do
			copy_elf_deps "$f"
		done < <(find "$src" -type f -print0)
	elif [[ -f $src ]]; then
		[[ -n $dest ]] || dest=/bin/$(basename "$src")
		add_file "$src" "$dest"
	else
		echo "mkinitramfs: no such file: $src" >&2
		exit 1
	fi
done

rm -f "$ROOT/test/run"
cp "$TEST" "$ROOT/test/run"
chmod +x "$ROOT/test/run"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$ROOT/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$ROOT/etc/group"

cat >"$ROOT/init" <<'EOF'
#!/bin/busybox sh
export PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
# What udev adds on a real system and devtmpfs does not: bash's process
# substitution, <(...), reads /dev/fd/N.
ln -sfn /proc/self/fd /dev/fd
ln -sfn /proc/self/fd/0 /dev/stdin
ln -sfn /proc/self/fd/1 /dev/stdout
ln -sfn /proc/self/fd/2 /dev/stderr
mount -t tmpfs -o size=50% tmpfs /tmp
mount -t tmpfs tmpfs /run
echo "fpio-vm: kernel $(uname -r), $(grep -c ^processor /proc/cpuinfo) cpus, cmdline: $(cat /proc/cmdline)"
cd /test
/test/run
rc=$?
sync
if [ "$rc" = 0 ]; then
	echo "FPIO-VM-RESULT: PASS"
else
	echo "FPIO-VM-RESULT: FAIL (exit $rc)"
fi
reboot -f
sleep 10
EOF
chmod +x "$ROOT/init"

(cd "$ROOT" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet) | gzip -1 >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "mkinitramfs: $OUT ($(du -h "$OUT" | cut -f1))" >&2
