#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# The kernel tier, end to end, from a clean clone:
#   fetch Debian's linux-source-7.3, build the stock and the patched bzImage (debug
#   config: lockdep, KASAN; cached), build the probe binaries and the initramfs, boot
#   each kernel under qemu (TCG) and run kernel/vm-suite.sh inside; assert the probe
#   (O_DIRECT overwrites of one passthrough file overlap on the patched kernel and
#   never on the stock one), the race checks, and a clean kernel log.
#
#   run-tier.sh [--broken] [--bench] [--quick] [--only stock|patched|none]
#               [--extra FILE[=DEST]]... [--extra-tests DIR]
#     --broken        also build every kernel/patches/broken/NAME.patch on top of the
#                     series (incremental builds) and boot each with the probe and race
#                     checks: each must fail at least one check; the table of what
#                     caught what goes to kernel/results/broken.md
#     --bench         also run the benchmark (bench.sh) in its own VM on the patched
#                     kernel built without the debug options; kernel/results/latest.md
#     --quick         no fpio mount tests (by default they run in the patched VM: the
#                     stock kernel's behaviour is what the host suites already test)
#     --extra         extra files for the initramfs (see mkinitramfs.sh); ELF deps follow
#     --extra-tests   directory whose executables run inside the VM (/test/extra.d)
#
# Also picked up automatically when present (fpio's build, e.g. `meson setup build`):
#   $FPIO_BUILD_DIR (default <repo>/build): examples/fpio-passthrough and libfpio.so.0.
#
#   FPIO_KERNEL_CACHE  cache root outside the clone (default /var/cache/fpio/kernel)
#   FPIO_TIER_OUT      logs and initramfs (default $FPIO_KERNEL_CACHE/run)
#   FPIO_BENCH_REPS    benchmark repetitions per point (default 5; medians are reported)
#   FPIO_VM_TIMEOUT    seconds per VM (default 2400)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
CACHE=${FPIO_KERNEL_CACHE:-/var/cache/fpio/kernel}
OUT=${FPIO_TIER_OUT:-$CACHE/run}
BUILD=${FPIO_BUILD_DIR:-$REPO/build}
BENCH=0
BROKEN=0
QUICK=0
ONLY=""
EXTRA=()
EXTRA_TESTS=""
while [[ $# -gt 0 ]]; do
	case $1 in
		--bench) BENCH=1; shift ;;
		--broken) BROKEN=1; shift ;;
		--quick) QUICK=1; shift ;;
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

for tool in flex bison bc cpio gzip xz mkfs.ext4 qemu-system-x86_64 gcc make getfattr python3; do
	command -v "$tool" >/dev/null || MISSING="${MISSING:-} $tool"
done
if [[ -n ${MISSING:-} || ! -e /usr/include/libelf.h || ! -x /bin/busybox ]]; then
	log "installing build/VM tools (missing:${MISSING:-})"
	apt-get update -q >&2 || true
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		flex bison bc cpio gzip xz-utils e2fsprogs qemu-system-x86 gcc make \
		libc6-dev libelf-dev libssl-dev busybox-static fio patch attr python3 >&2
fi

log "kernel source"
SRC=$("$HERE/fetch-source.sh")

FLAVORS=(stock patched)
[[ -n $ONLY ]] && FLAVORS=("$ONLY")
[[ $ONLY == none ]] && FLAVORS=() # e.g. --broken --only none: the broken variants only
BROKEN_FLAVORS=()
if [[ $BROKEN == 1 ]]; then
	for b in "$HERE"/patches/broken/*.patch; do
		[[ -f $b ]] && BROKEN_FLAVORS+=("broken-$(basename "$b" .patch)")
	done
	[[ ${#BROKEN_FLAVORS[@]} -gt 0 ]] || { log "--broken: no kernel/patches/broken/*.patch"; exit 1; }
fi
log "kernels (cached by hash of patches + config fragment): ${FLAVORS[*]} ${BROKEN_FLAVORS[*]}"
kernels=$("$HERE/build-kernels.sh" "${FLAVORS[@]}" "${BROKEN_FLAVORS[@]}")
declare -A KERNEL
for f in "${FLAVORS[@]}" "${BROKEN_FLAVORS[@]}"; do
	KERNEL[$f]=$(sed -n "s/^$f=//p" <<<"$kernels")
	[[ -n ${KERNEL[$f]} ]] || { log "no kernel for $f"; exit 1; }
	log "$f=${KERNEL[$f]}"
done
# Does the series propagate fcntl(F_SETFL) to the backing file? Then the setfl check
# asserts that on every kernel built with it; on stock it asserts released behaviour.
SERIES_SETFL=upstream
grep -qs 'F_SETFL' "$HERE"/patches/0*.patch && SERIES_SETFL=fixed

log "probe binaries"
PROBE=$("$HERE/probe/build.sh" "$CACHE/probe" "$SRC")

files=("$PROBE/innerfs" "$PROBE/ptfs" "$PROBE/fpio-probe")
# fpio's example servers, mount tests and effective-flags check, when fpio is built
if [[ -x $BUILD/examples/fpio-passthrough && -x $BUILD/c-tests/pwriters ]]; then
	log "including fpio from $BUILD (example server, mount tests, libfpio)"
	files+=("$BUILD/examples/fpio-passthrough=/bin/fpio-passthrough"
		"$BUILD/examples/fpio-highlevel=/bin/fpio-highlevel"
		"$BUILD/c-tests/pwriters=/bin/pwriters"
		"$BUILD/c-tests/openstorm=/bin/openstorm"
		"$BUILD/c-tests/conflicts=/bin/conflicts"
		"$(readlink -f "$BUILD/libfpio.so.0")=/usr/lib/x86_64-linux-gnu/libfpio.so.0"
		"$PROBE/fpio-rulecheck=/bin/fpio-rulecheck"
		"$REPO/c-tests=/opt/fpio/c-tests"
		"$HERE/vm-extra/fpio-mount-tests=/test/extra.d/fpio-mount-tests"
		"$(command -v bash)=/bin/bash"
		"$(command -v setpriv)=/usr/bin/setpriv"
		"$(command -v fusermount3)=/usr/bin/fusermount3"
		"$(command -v getfattr)=/usr/bin/getfattr"
		"$(command -v setfattr)=/usr/bin/setfattr")
	# python3 (the adoption test's MAP_SHARED writer) with its standard library, less
	# what no test imports
	# Debian's python3 (installed above), not whatever python3 comes first in PATH
	# (a pyenv shim is a shell script)
	py=$(readlink -f /usr/bin/python3)
	pylib=$("$py" -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')
	pystage="$CACHE/python-stdlib/$(tr / _ <<<"$pylib")"
	if [[ ! -d $pystage ]]; then
		rm -rf "$pystage.tmp"
		mkdir -p "$pystage.tmp"
		tar -C "$pylib" --exclude=__pycache__ --exclude=test --exclude=idlelib \
			--exclude=tkinter --exclude=ensurepip --exclude=lib2to3 --exclude=pydoc_data \
			--exclude=config-\* --exclude=site-packages --exclude=dist-packages -cf - . |
			tar -C "$pystage.tmp" -xf -
		mv "$pystage.tmp" "$pystage"
	fi
	files+=("$py=/usr/bin/python3" "$pystage=$pylib")
	# the mount tests' FPIO_LIBFUSE (meson's test environment sets it on the host):
	# major*100+minor of the libfuse the example server is linked with
	fuselib=$(ldd "$BUILD/examples/fpio-passthrough" | sed -n 's/.*libfuse3\.so\.3 => \([^ ]*\).*/\1/p')
	fminor=$(basename "$(readlink -f "$fuselib")" | sed -n 's/^libfuse3\.so\.3\.\([0-9]*\).*/\1/p')
	[[ -n $fminor ]] || { log "cannot tell the libfuse version of $fuselib"; exit 1; }
	echo "export FPIO_LIBFUSE=$((300 + fminor))" >"$OUT/fpio-env"
	files+=("$OUT/fpio-env=/opt/fpio/env")
	# the mount tests are written for GNU tools (rm --one-file-system, stat -f -c %T, ...)
	for t in rm stat mktemp chmod chown dd cmp head tail sort seq id cat cp mv mkdir \
		ls ln touch truncate tr cut wc env timeout sync readlink realpath basename \
		dirname mountpoint sha256sum od uniq pgrep awk grep sed find sleep; do
		p=$(command -v "$t" || true)
		[[ $p == /* && $(readlink -f "$p") != */busybox ]] && files+=("$p=/usr/bin/$t")
	done
else
	log "fpio not built in $BUILD: VM suite runs the probe checks only"
fi
files+=("$HERE/bench.sh=/test/bench.sh")
[[ -n $EXTRA_TESTS ]] && files+=("$EXTRA_TESTS=/test/extra.d")
files+=("${EXTRA[@]}")

log "initramfs"
"$HERE/mkinitramfs.sh" "$OUT/initramfs.cpio.gz" "$HERE/vm-suite.sh" "${files[@]}"

# Anything the debug kernel reports, anywhere on the console (boot, suite, shutdown):
# the same patterns vm-suite.sh checks in dmesg.
WARN_PAT='WARNING:|BUG:|BUG |Oops|general protection|Call Trace:|INFO: task .* blocked|possible circular locking|inconsistent lock state|possible recursive locking|suspicious RCU usage|KASAN:|UBSAN:|DEBUG_LOCKS_WARN_ON|INFO: trying to register non-static key|kernel BUG'

run_flavor() { # name kernel append...
	local name=$1 kernel=$2 disk="$OUT/ext4-$1.img" append=$3
	rm -f "$disk"
	truncate -s 1G "$disk"
	mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$disk"
	log "VM: $name ($append; console: $OUT/console-$name.log)"
	local s=$(date +%s) rc=0 nwarn
	# /dev/vdb: a small unused disk, only for innerfs's fuseblk mount (probe/innerfs.c)
	rm -f "$OUT/blk-$name.img"
	truncate -s 16M "$OUT/blk-$name.img"
	"$HERE/run-vm.sh" "$kernel" "$OUT/initramfs.cpio.gz" --append "$append" \
		--disk "$disk" --disk "$OUT/blk-$name.img" --log "$OUT/console-$name.log" --timeout "${FPIO_VM_TIMEOUT:-2400}" \
		--quiet || rc=$?
	rm -f "$disk" "$OUT/blk-$name.img"
	nwarn=$(tr -d '\r' <"$OUT/console-$name.log" | grep -Ec "$WARN_PAT" || true)
	log "VM: $name finished in $(( $(date +%s) - s ))s (rc $rc), console: $nwarn warning lines"
	grep -E '^(ok|not ok) - |^probe\[|^integrity:|^race\[|^exclusive\[|^setfl|^isize:|^[0-9]+ passed|^FPIO-VM-RESULT' \
		<(tr -d '\r' <"$OUT/console-$name.log") >&2 || true
	[[ $nwarn == 0 ]] || { log "$name: the kernel reported problems on the console"; rc=1; }
	return $rc
}

fail=0
for f in "${FLAVORS[@]}"; do
	setfl=upstream quick=1
	[[ $f == stock ]] || setfl=$SERIES_SETFL
	[[ $f == patched && $QUICK == 0 ]] && quick=0
	run_flavor "$f" "${KERNEL[$f]}" "fpio.flavor=$f fpio.setfl=$setfl fpio.quick=$quick" || fail=1
	want="2 (overlap)"
	[[ $f == stock ]] && want="1 (serialized)"
	# grep -q stops reading at the first match; fed by a pipe under pipefail, the writer's
	# SIGPIPE would turn a match into a failure once the console log outgrows the pipe.
	grep -q "^probe\[odirect\]: max concurrent writes in flight = $want" <(tr -d '\r' <"$OUT/console-$f.log") ||
		{ log "$f kernel: expected O_DIRECT overwrites: $want"; fail=1; }
done

# Broken variants: the probe and race checks only; each must fail at least one.
if [[ ${#BROKEN_FLAVORS[@]} -gt 0 ]]; then
	table="$OUT/broken.md"
	{
		echo "| broken variant | checks that failed (and should) | checks passed |"
		echo "|---|---|---:|"
	} >"$table"
	for f in "${BROKEN_FLAVORS[@]}"; do
		run_flavor "$f" "${KERNEL[$f]}" "fpio.flavor=$f fpio.setfl=$SERIES_SETFL fpio.quick=1" && {
			log "$f: every check passed: this variant is NOT caught"
			fail=1
		}
		caught=$(tr -d '\r' <"$OUT/console-$f.log" | sed -n 's/^not ok - //p' | paste -sd ';' | sed 's/;/; /g')
		passed=$(tr -d '\r' <"$OUT/console-$f.log" | grep -c '^ok - ' || true)
		nwarn=$(tr -d '\r' <"$OUT/console-$f.log" | grep -Ec "$WARN_PAT" || true)
		[[ $nwarn == 0 ]] || caught="$caught; console: $nwarn warning lines"
		echo "| ${f#broken-} | ${caught:-NONE (not caught)} | $passed |" >>"$table"
		[[ -n $caught ]] || fail=1
	done
	log "broken variants:"
	cat "$table" >&2
	{
		echo "# Broken variants of the series: which checks caught them"
		echo
		echo "Generated $(date -u '+%Y-%m-%d %H:%M') UTC by \`kernel/run-tier.sh --broken\`"
		echo "(Debian $(cat "$SRC/.fpio-debian-version"), debug config, probe and race checks only)."
		echo
		cat "$table"
	} >"$HERE/results/broken.md"
fi

if [[ $BENCH == 1 ]]; then
	log "benchmark kernel: patched, without the debug options"
	bk=$("$HERE/build-kernels.sh" patched+nodebug | sed -n 's/^patched+nodebug=//p')
	run_flavor bench "$bk" "fpio.flavor=patched fpio.setfl=$SERIES_SETFL fpio.bench=1 fpio.bench_reps=${FPIO_BENCH_REPS:-5}" || fail=1
	"$HERE/bench-report.sh" "$OUT/console-bench.log" \
		"Kernel: the patched series on Debian $(cat "$SRC/.fpio-debian-version"), config-fragment without its debug section (lockdep and KASAN distort timings)" \
		>"$HERE/results/latest.md.tmp" &&
		mv "$HERE/results/latest.md.tmp" "$HERE/results/latest.md" &&
		log "benchmark table: $HERE/results/latest.md" && cat "$HERE/results/latest.md" >&2
fi

# one closing line over the stock and patched VMs: the suites' own counts
np=0 nf=0
for f in "${FLAVORS[@]}"; do
	[[ -f $OUT/console-$f.log ]] || continue
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
