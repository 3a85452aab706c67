#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Boot a kernel + initramfs under qemu (TCG) and wait for the suite's verdict.
#
#   run-vm.sh KERNEL INITRAMFS [options]
#     --append STR     extra kernel command line (e.g. fpio.flavor=patched)
#     --disk IMG       raw disk image attached as virtio-blk (/dev/vda in the guest;
#                      repeat for /dev/vdb, ...)
#     --log FILE       console log (default: ./vm-console.log)
#     --timeout SEC    wall-clock limit for the whole VM run (default 900)
#     --quiet          do not echo the console while it runs
#
# Exits 0 only if the console shows "FPIO-VM-RESULT: PASS"; 1 on FAIL, no verdict,
# or timeout. TCG is used on purpose: CI machines may have no /dev/kvm.
set -euo pipefail

[[ $# -ge 2 ]] || { sed -n '3,13p' "$0" >&2; exit 2; }
KERNEL=$1
INITRD=$2
shift 2
APPEND="" DISKS=() LOG=./vm-console.log TIMEOUT=900 QUIET=0
while [[ $# -gt 0 ]]; do
	case $1 in
		--append) APPEND=$2; shift 2 ;;
		--disk) DISKS+=("$2"); shift 2 ;;
		--log) LOG=$2; shift 2 ;;
		--timeout) TIMEOUT=$2; shift 2 ;;
		--quiet) QUIET=1; shift ;;
		*) echo "run-vm: unknown option $1" >&2; exit 2 ;;
	esac
done

if ! command -v qemu-system-x86_64 >/dev/null; then
	echo "run-vm: installing qemu-system-x86" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends qemu-system-x86 >&2
fi

args=(
	# 2 sockets x 1 core: the kernel has no ACPI, and SeaBIOS's MP table lists one
	# CPU per socket, so plain "-smp 2" (1 socket, 2 cores) would boot with 1 CPU.
	-accel tcg,thread=multi -cpu max -smp 2,sockets=2,cores=1,threads=1 -m 2G
	-nographic -no-reboot -monitor none -serial stdio
	-kernel "$KERNEL" -initrd "$INITRD"
	-append "console=ttyS0 panic=-1 loglevel=4 $APPEND"
)
for d in "${DISKS[@]}"; do
	args+=(-drive "file=$d,if=virtio,format=raw,cache=unsafe")
done

mkdir -p "$(dirname "$LOG")"
start=$(date +%s)
set +e
if [[ $QUIET == 1 ]]; then
	timeout -k 10 "$TIMEOUT" qemu-system-x86_64 "${args[@]}" </dev/null >"$LOG" 2>&1
else
	timeout -k 10 "$TIMEOUT" qemu-system-x86_64 "${args[@]}" </dev/null 2>&1 | tee "$LOG"
fi
rc=${PIPESTATUS[0]}
set -e
secs=$(( $(date +%s) - start ))

if grep -q '^FPIO-VM-RESULT: PASS' <(tr -d '\r' <"$LOG"); then
	echo "run-vm: PASS in ${secs}s ($(basename "$KERNEL") $APPEND; log $LOG)" >&2
	exit 0
fi
if [[ $rc == 124 || $rc == 137 ]]; then
	echo "run-vm: TIMEOUT after ${secs}s (log $LOG)" >&2
elif grep -q 'FPIO-VM-RESULT: FAIL' "$LOG"; then
	echo "run-vm: FAIL in ${secs}s (log $LOG)" >&2
else
	echo "run-vm: no verdict (qemu exit $rc) after ${secs}s (log $LOG)" >&2
fi
exit 1
