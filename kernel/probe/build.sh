#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build the probe binaries (static, no libfuse) into OUTDIR.
#   build.sh OUTDIR KERNEL_SOURCE_DIR
# <linux/fuse.h> is taken from the kernel source (7.3 uapi: passthrough, backing ids),
# since the build host's linux-libc-dev may be older.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=$1
KSRC=$2
mkdir -p "$OUT/include/linux"
cp "$KSRC/include/uapi/linux/fuse.h" "$OUT/include/linux/fuse.h"
CFLAGS=(-O2 -g0 -Wall -Wextra -Wno-unused-parameter -Werror -static -pthread -I"$OUT/include")
for p in innerfs ptfs probe; do
	name=$p
	[[ $p == probe ]] && name=fpio-probe
	if [[ ! -x $OUT/$name || $HERE/$p.c -nt $OUT/$name || $HERE/fusewire.h -nt $OUT/$name ]]; then
		gcc "${CFLAGS[@]}" -o "$OUT/$name.tmp" "$HERE/$p.c"
		mv "$OUT/$name.tmp" "$OUT/$name"
	fi
done
# dynamic on purpose: it dlopen()s libfpio.so.0
if [[ ! -x $OUT/fpio-rulecheck || $HERE/rulecheck.c -nt $OUT/fpio-rulecheck ]]; then
	gcc -O2 -Wall -Wextra -Werror -o "$OUT/fpio-rulecheck.tmp" "$HERE/rulecheck.c" -ldl
	mv "$OUT/fpio-rulecheck.tmp" "$OUT/fpio-rulecheck"
fi
echo "$OUT"
