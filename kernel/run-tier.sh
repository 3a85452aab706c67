#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# The kernel tier, end to end, from a clean clone:
#   fetch Debian's linux-source-6.12, build the stock and the patched bzImage (cached),
#   build the probe binaries and the initramfs, boot each kernel under qemu (TCG) and
#   run kernel/vm-suite.sh inside; assert the probe: O_DIRECT overwrites of one
#   passthrough file overlap on the patched kernel and never on the stock one.
#
#   run-tier.sh [--bench] [--only stock|patched] [--extra FILE[=DEST]]... [--extra-tests DIR]
#     --bench         also run the fio benchmark in each VM and write kernel/results/latest.md
#     --extra         extra files for the initramfs (see mkinitramfs.sh); ELF deps follow
#     --extra-tests   directory whose executables run inside the VM (/test/extra.d)
#
# Also picked up automatically when present (fpio's build, e.g. `meson setup build`):
#   $FPIO_BUILD_DIR (default <repo>/build): examples/fpio-passthrough and libfpio.so.0.
#
#   FPIO_KERNEL_CACHE  cache root outside the clone (default /var/cache/fpio/kernel)
#   FPIO_TIER_OUT      logs and initramfs (default $FPIO_KERNEL_CACHE/run)
#   FPIO_BENCH_REPS    benchmark repetitions per point (default 3; medians are reported)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
CACHE=${FPIO_KERNEL_CACHE:-/var/cache/fpio/kernel}
OUT=${FPIO_TIER_OUT:-$CACHE/run}
BUILD=${FPIO_BUILD_DIR:-$REPO/build}
BENCH=0
ONLY=""
EXTRA=()
EXTRA_TESTS=""
while [[ $# -gt 0 ]]; do
	case $1 in
		--bench) BENCH=1; shift ;;
		--only) ONLY=$2; shift 2 ;;
		--extra) EXTRA+=("$2"); shift 2 ;;
		--extra-tests) EXTRA_TESTS=$2; shift 2 ;;
		*) echo "run-tier: unknown option $1" >&2; exit 2 ;;
	esac
done
export FPIO_KERNEL_CACHE=$CACHE
mkdir -p "$OUT"
t0=$(date +%s)
log() { echo "run-tier: [$(( $(date +%s) - t0 ))s] $*" >&2; }

for tool in flex bison bc cpio gzip xz mkfs.ext4 qemu-system-x86_64 gcc make; do
	command -v "$tool" >/dev/null || MISSING="${MISSING:-} $tool"
done
if [[ -n ${MISSING:-} || ! -e /usr/include/libelf.h || ! -x /bin/busybox ]]; then
	log "installing build/VM tools (missing:${MISSING:-})"
	apt-get update -q >&2 || true
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		flex bison bc cpio gzip xz-utils e2fsprogs qemu-system-x86 gcc make \
		libc6-dev libelf-dev libssl-dev busybox-static fio patch >&2
fi

log "kernel source"
SRC=$("$HERE/fetch-source.sh")

log "kernels (cached by hash of patches + config fragment)"
kernels=$("$HERE/build-kernels.sh" "${ONLY:-both}")
STOCK=$(sed -n 's/^stock=//p' <<<"$kernels")
PATCHED=$(sed -n 's/^patched=//p' <<<"$kernels")
log "stock=${STOCK:-skipped} patched=${PATCHED:-skipped}"

log "probe binaries"
PROBE=$("$HERE/probe/build.sh" "$CACHE/probe" "$SRC")

files=("$PROBE/innerfs" "$PROBE/ptfs" "$PROBE/fpio-probe")
# fpio's example server, mount tests and effective-flags check, when fpio is built
if [[ -x $BUILD/examples/fpio-passthrough && -x $BUILD/c-tests/pwriters ]]; then
	log "including fpio from $BUILD (example server, mount tests, libfpio)"
	files+=("$BUILD/examples/fpio-passthrough=/bin/fpio-passthrough"
		"$BUILD/c-tests/pwriters=/bin/pwriters"
		"$BUILD/c-tests/openstorm=/bin/openstorm"
		"$BUILD/c-tests/conflicts=/bin/conflicts"
		"$(readlink -f "$BUILD/libfpio.so.0")=/usr/lib/x86_64-linux-gnu/libfpio.so.0"
		"$PROBE/fpio-rulecheck=/bin/fpio-rulecheck"
		"$REPO/c-tests=/opt/fpio/c-tests"
		"$HERE/vm-extra/fpio-mount-tests=/test/extra.d/fpio-mount-tests"
		"$(command -v bash)=/bin/bash"
		"$(command -v setpriv)=/usr/bin/setpriv"
		"$(command -v fusermount3)=/usr/bin/fusermount3")
	# the mount tests are written for GNU tools (rm --one-file-system, stat -f -c %T, ...)
	for t in rm stat mktemp chmod chown dd cmp head tail sort seq id cat cp mv mkdir \
		ls ln touch truncate tr cut wc env timeout sync readlink realpath basename \
		dirname mountpoint sha256sum od uniq; do
		p=$(command -v "$t" || true)
		[[ -n $p && $(readlink -f "$p") != */busybox ]] && files+=("$p=/usr/bin/$t")
	done
else
	log "fpio not built in $BUILD: VM suite runs the probe checks only"
fi
files+=("$HERE/bench.sh=/test/bench.sh")
[[ -n $EXTRA_TESTS ]] && files+=("$EXTRA_TESTS=/test/extra.d")
files+=("${EXTRA[@]}")

log "initramfs"
"$HERE/mkinitramfs.sh" "$OUT/initramfs.cpio.gz" "$HERE/vm-suite.sh" "${files[@]}"

run_flavor() { # flavor kernel
	local flavor=$1 kernel=$2 disk="$OUT/ext4-$1.img" append="fpio.flavor=$1"
	rm -f "$disk"
	truncate -s 1G "$disk"
	mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$disk"
	[[ $BENCH == 1 ]] && append="$append fpio.bench=1 fpio.bench_reps=${FPIO_BENCH_REPS:-3}"
	log "VM: $flavor kernel (console: $OUT/console-$flavor.log)"
	local s=$(date +%s) rc=0
	"$HERE/run-vm.sh" "$kernel" "$OUT/initramfs.cpio.gz" --append "$append" \
		--disk "$disk" --log "$OUT/console-$flavor.log" --timeout 1500 --quiet || rc=$?
	rm -f "$disk"
	log "VM: $flavor finished in $(( $(date +%s) - s ))s (rc $rc)"
	grep -E '^(ok|not ok) - |^probe\[|^integrity:|^[0-9]+ passed|^FPIO-VM-RESULT' \
		<(tr -d '\r' <"$OUT/console-$flavor.log") >&2 || true
	return $rc
}

fail=0
if [[ -n $STOCK ]]; then
	run_flavor stock "$STOCK" || fail=1
	tr -d '\r' <"$OUT/console-stock.log" | grep -q '^probe\[odirect\]: max concurrent writes in flight = 1 (serialized)' ||
		{ log "stock kernel: expected serialized O_DIRECT overwrites"; fail=1; }
fi
if [[ -n $PATCHED ]]; then
	run_flavor patched "$PATCHED" || fail=1
	tr -d '\r' <"$OUT/console-patched.log" | grep -q '^probe\[odirect\]: max concurrent writes in flight = 2 (overlap)' ||
		{ log "patched kernel: expected overlapping O_DIRECT overwrites"; fail=1; }
fi

if [[ $BENCH == 1 && $fail == 0 ]]; then
	"$HERE/bench-report.sh" "$OUT" >"$HERE/results/latest.md.tmp" &&
		mv "$HERE/results/latest.md.tmp" "$HERE/results/latest.md" &&
		log "benchmark table: $HERE/results/latest.md"
fi

# one closing line over both VMs: the suites' own counts plus the two probe assertions
np=0 nf=0
for f in stock patched; do
	[[ -f $OUT/console-$f.log ]] || continue
	[[ $f == stock && -z $STOCK ]] && continue
	[[ $f == patched && -z $PATCHED ]] && continue
	line=$(tr -d '\r' <"$OUT/console-$f.log" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -n1 || true)
	if [[ -n $line ]]; then
		np=$((np + $(cut -d' ' -f1 <<<"$line")))
		nf=$((nf + $(cut -d' ' -f3 <<<"$line")))
	else
		nf=$((nf + 1)) # the suite never finished
	fi
done
if [[ $fail == 0 ]]; then
	log "PASS (kernel tier)"
else
	log "FAIL (kernel tier)"
	[[ $nf == 0 ]] && nf=1
fi
echo "kernel tier: $np passed, $nf failed"
exit $fail
