#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The kernel tier's functional suite. Runs INSIDE the VM as /test/run (busybox sh).
#
# Kernel command line:
#   fpio.flavor=stock|patched|broken-NAME   which kernel this is (decides the probes'
#                               expectations; a broken variant is expected to behave
#                               like patched, and the checks it breaks fail)
#   fpio.setfl=fixed|upstream   whether fcntl(F_SETFL) toggles must reach the backing
#                               file (the series propagates them) or behave as in
#                               released kernels
#   fpio.bench=1                run the benchmark instead of the suite (bench.sh)
#   fpio.quick=1                the probe and race checks only (no fpio mount tests)
# Needs /bin/innerfs, /bin/ptfs, /bin/fpio-probe; /dev/vda (ext4, made by the host)
# for the ext4 checks and the benchmark. Each executable in /test/extra.d/ is run
# too (fpio's own mount tests go there), with FPIO_FLAVOR set.
#
# Every check prints "ok - NAME" or "not ok - NAME"; the last line is
# "N passed, N failed" and the exit status is non-zero if anything failed.

PASSED=0
FAILED=0
ok() { PASSED=$((PASSED + 1)); echo "ok - $*"; }
notok() { FAILED=$((FAILED + 1)); echo "not ok - $*"; }
check() { # name cmd...
	name=$1
	shift
	if "$@"; then ok "$name"; else notok "$name"; fi
}

FLAVOR=${FPIO_FLAVOR_OVERRIDE:-}
[ -n "$FLAVOR" ] || FLAVOR=$(sed -n 's/.*fpio\.flavor=\([a-z-]*\).*/\1/p' /proc/cmdline)
BENCH=$(sed -n 's/.*fpio\.bench=\([0-9]*\).*/\1/p' /proc/cmdline)
SETFL=$(sed -n 's/.*fpio\.setfl=\([a-z]*\).*/\1/p' /proc/cmdline)
QUICK=$(sed -n 's/.*fpio\.quick=\([0-9]*\).*/\1/p' /proc/cmdline)
case $FLAVOR in
	patched | broken-*) EXPECT_ODIRECT=overlap ;;
	stock) EXPECT_ODIRECT=serialized ;;
	*) echo "vm-suite: fpio.flavor=stock|patched|broken-NAME missing from the command line"; exit 2 ;;
esac
case $SETFL in
	fixed | upstream) ;;
	*) echo "vm-suite: fpio.setfl=fixed|upstream missing from the command line"; exit 2 ;;
esac
export FPIO_FLAVOR=$FLAVOR
echo "vm-suite: flavor=$FLAVOR, O_DIRECT overwrites expected: $EXPECT_ODIRECT, F_SETFL toggles: $SETFL"

# ---- benchmark mode: only the benchmark, on the ext4 disk ----
if [ "$BENCH" = 1 ]; then
	mkdir -p /mnt/ext4
	mount -t ext4 /dev/vda /mnt/ext4 || { echo "vm-suite: no ext4 disk for the benchmark"; exit 1; }
	/test/bench.sh /mnt/ext4
	rc=$?
	umount /mnt/ext4 || rc=1
	exit $rc
fi

PIDS=""
MOUNTS=""
# start_fs MOUNTPOINT CMD... : start a FUSE server that mounts itself, wait for it
start_fs() {
	mnt=$1
	shift
	mkdir -p "$mnt"
	"$@" &
	PIDS="$! $PIDS"
	MOUNTS="$mnt $MOUNTS"
	i=0
	while ! grep -q " $mnt fuse" /proc/mounts; do
		i=$((i + 1))
		if [ $i -gt 100 ]; then echo "vm-suite: $mnt did not mount"; return 1; fi
		sleep 0.1
	done
}
stop_all() {
	for m in $MOUNTS; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
	for p in $PIDS; do wait "$p" 2>/dev/null; done
	PIDS=""
	MOUNTS=""
}

# ---- the deterministic probe: backing file on an inner FUSE mount (stack depth 2) ----
SIZE_MIB=16
# innerfs on /dev/vdb is a fuseblk mount: another super block type than ptfs's "fuse",
# so lockdep does not take the nested sb_writers for recursive locking
INNERDEV=
[ -b /dev/vdb ] && [ -z "${FPIO_FLAVOR_OVERRIDE:-}" ] && INNERDEV=/dev/vdb
start_fs /tmp/inner innerfs /tmp/inner $SIZE_MIB $INNERDEV || exit 1
# --inner-ctl: ptfs flags GETXATTR/SETATTR/FALLOCATE arriving while a backing WRITE is
# in flight (the kernel sends those under the exclusive inode lock)
start_fs /tmp/pt ptfs --depth 2 --inner-ctl /tmp/inner/ctl /tmp/pt /tmp/inner/data || exit 1
# extending writes: this mount reports 8 MiB, so writes past 8 MiB extend the passthrough
# file but are still overwrites of innerfs's 16 MiB file (innerfs's own mount would
# serialize extending writes)
start_fs /tmp/pt-ext ptfs --depth 2 --report-size $((8 << 20)) /tmp/pt-ext /tmp/inner/data || exit 1
# no FUSE_HANDLE_KILLPRIV_V2: no SB_NOSEC, so never S_NOSEC: must stay exclusive
start_fs /tmp/pt-nokp ptfs --depth 2 --no-killpriv /tmp/pt-nokp /tmp/inner/data || exit 1
# the server does not ask for FOPEN_PARALLEL_DIRECT_WRITES: must stay exclusive
start_fs /tmp/pt-nopar ptfs --depth 2 --no-parallel /tmp/pt-nopar /tmp/inner/data || exit 1

CTL=/tmp/inner/ctl
probe() { # name file kind expect
	echo "# $1"
	fpio-probe overlap "$2" $CTL "$3" --expect "$4"
}
check "probe: O_DIRECT overwrites ($EXPECT_ODIRECT)" probe odirect /tmp/pt/data odirect $EXPECT_ODIRECT
check "probe: buffered overwrites stay serialized" probe buffered /tmp/pt/data buffered serialized
check "probe: O_APPEND writes stay serialized" probe append /tmp/pt/data append serialized
# the series has no EOF rule (its patch 4 says why): extending O_DIRECT writes take the
# shared lock like overwrites
check "probe: extending O_DIRECT writes ($EXPECT_ODIRECT)" probe extend /tmp/pt-ext/data extend $EXPECT_ODIRECT
check "probe: no KILLPRIV_V2 (no S_NOSEC) stays serialized" probe nokillpriv /tmp/pt-nokp/data odirect serialized
check "probe: no FOPEN_PARALLEL_DIRECT_WRITES stays serialized" probe noparallel /tmp/pt-nopar/data odirect serialized
# a stat() after a write refreshes the attributes and fuse clears S_NOSEC: the next
# writes must not take the shared lock until a write has run file_remove_privs() again
check "probe: O_DIRECT right after stat() (S_NOSEC cleared) stays serialized" probe odirect-stat /tmp/pt/data odirect-stat serialized
# fpio's effective-flags function must predict this kernel: the legacy rule (every
# released kernel) drops PARALLEL_DIRECT_WRITES from a passthrough open, the series
# rule (these patches) keeps it; kept <=> the probe saw overlap.
if [ -x /bin/fpio-rulecheck ]; then
	rule=legacy
	[ "$EXPECT_ODIRECT" = overlap ] && rule=series
	pred=$(fpio-rulecheck $rule)
	echo "# fpio prediction for the $FLAVOR kernel: $pred"
	want=dropped
	[ "$EXPECT_ODIRECT" = overlap ] && want=kept
	case $pred in
		*parallel_direct_writes=$want*) ok "fpio_effective_open_flags($rule) predicts this kernel ($want)" ;;
		*) notok "fpio_effective_open_flags($rule) predicts this kernel ($want)" ;;
	esac
fi
# the overlap is reproducible, not a one-off
check "probe: O_DIRECT overwrites again ($EXPECT_ODIRECT)" probe odirect-again /tmp/pt/data odirect $EXPECT_ODIRECT
# the asynchronous write paths take the same lock
check "probe: aio (io_submit) O_DIRECT overwrites ($EXPECT_ODIRECT)" probe aio /tmp/pt/data aio $EXPECT_ODIRECT
check "probe: io_uring O_DIRECT overwrites ($EXPECT_ODIRECT)" probe uring /tmp/pt/data uring $EXPECT_ODIRECT

# ---- race checks: each fails on a kernel that breaks one lock rule ----
PTCTL=/tmp/pt/ctl
# appends and buffered writes need the fuse inode lock exclusively: behind an O_DIRECT
# overwrite held in innerfs they wait for it, not inside the backing file system
for k in append rwf-append buffered; do
	echo "# waits $k"
	check "race: $k write waits for the fuse inode lock" fpio-probe waits /tmp/pt/data $CTL $k
done
# a write in flight under the shared lock excludes truncate, fallocate and chmod
for op in truncate fallocate chmod; do
	echo "# exclusive $op"
	check "race: $op waits for an O_DIRECT write in flight" fpio-probe exclusive /tmp/pt/data $CTL $PTCTL $op
done
# stat racing O_DIRECT writers (the S_NOSEC window: every refresh clears S_NOSEC and
# the next write's privilege removal asks the server): no GETXATTR while a write is
# in flight, data intact; then truncate/fallocate/chmod racing writers; then aio and
# io_uring writers racing stat
RACE_S=${FPIO_RACE_SECONDS:-4}
race() { # name args...
	n=$1
	shift
	echo "# race $n"
	check "race: $n" fpio-probe race /tmp/pt/data $PTCTL --seconds $RACE_S "$@"
}
race "stat vs 4 O_DIRECT writers" --stat --seconds $((RACE_S * 2))
race "truncate+fallocate vs 4 O_DIRECT writers" --truncate --fallocate
race "chmod+stat vs 4 O_DIRECT writers" --chmod --stat
race "stat vs 4 aio writers" --engine aio --stat
race "stat vs 4 io_uring writers" --engine uring --stat

# the same probe with fpio's example server as the passthrough server: an fpio server
# gets the parallel path on the patched kernel with no extra work
if [ -x /bin/fpio-passthrough ]; then
	# --killpriv-v2: without it the kernel has no S_NOSEC inodes and asks the server
	# (GETXATTR) before every write, under the exclusive lock
	start_fs /tmp/fpio-pt fpio-passthrough -f --killpriv-v2 /tmp/inner /tmp/fpio-pt || exit 1
	check "probe: fpio-passthrough O_DIRECT overwrites ($EXPECT_ODIRECT)" \
		probe fpio-odirect /tmp/fpio-pt/data odirect $EXPECT_ODIRECT
	check "probe: fpio-passthrough buffered overwrites stay serialized" \
		probe fpio-buffered /tmp/fpio-pt/data buffered serialized
	umount /tmp/fpio-pt
fi

echo "# integrity on the stacked mount"
check "integrity: 8 parallel O_DIRECT overwriters, backing on FUSE" \
	fpio-probe integrity /tmp/pt/data --writers 8 --blocks 64 --rounds 4
stop_all

# ---- ext4 ----
# only inside the VM (on a host, /dev/vda may well be the root disk)
if [ -z "${FPIO_FLAVOR_OVERRIDE:-}" ] && [ -b /dev/vda ] && ! grep -q '^/dev/vda ' /proc/mounts; then
	mkdir -p /mnt/ext4
	if mount -t ext4 /dev/vda /mnt/ext4; then
		ok "mount ext4 on /dev/vda"
		dd if=/dev/zero of=/mnt/ext4/pt.dat bs=1M count=16 2>/dev/null
		start_fs /tmp/pt4 ptfs --depth 1 /tmp/pt4 /mnt/ext4/pt.dat || exit 1
		check "integrity: 8 parallel O_DIRECT overwriters, backing on ext4" \
			fpio-probe integrity /tmp/pt4/data --writers 8 --blocks 128 --rounds 2
		check "integrity: 4 parallel aio O_DIRECT overwriters, backing on ext4" \
			fpio-probe integrity /tmp/pt4/data --writers 4 --blocks 64 --rounds 2 --engine aio
		check "integrity: 4 parallel io_uring O_DIRECT overwriters, backing on ext4" \
			fpio-probe integrity /tmp/pt4/data --writers 4 --blocks 32 --rounds 2 --engine uring
		stop_all
		# i_size after mixed extending and overwriting O_DIRECT writes
		dd if=/dev/zero of=/mnt/ext4/isize.dat bs=1M count=1 2>/dev/null
		start_fs /tmp/pt-isize ptfs --depth 1 /tmp/pt-isize /mnt/ext4/isize.dat || exit 1
		check "race: i_size after mixed extending and overwriting writes" \
			fpio-probe isize /tmp/pt-isize/data /mnt/ext4/isize.dat --writers 4 --extends 32
		stop_all
		# fcntl(F_SETFL) toggles of O_APPEND and O_DIRECT vs the backing file
		dd if=/dev/zero of=/mnt/ext4/setfl.dat bs=1M count=1 2>/dev/null
		start_fs /tmp/pt-setfl ptfs --depth 1 /tmp/pt-setfl /mnt/ext4/setfl.dat || exit 1
		check "setfl: O_APPEND/O_DIRECT toggles on the backing file ($SETFL)" \
			fpio-probe setfl /tmp/pt-setfl/data /mnt/ext4/setfl.dat --expect $SETFL
		stop_all
		# fpio's mount tests want a backing dir on ext4 under /var/tmp
		mkdir -p /mnt/ext4/vartmp /var/tmp
		chmod 1777 /mnt/ext4/vartmp
		mount --bind /mnt/ext4/vartmp /var/tmp && VARTMP_BOUND=1
	else
		notok "mount ext4 on /dev/vda"
	fi
else
	echo "# no /dev/vda: ext4 checks skipped"
fi

# ---- fpio's own tests (added by the tier driver when they exist) ----
if [ -d /test/extra.d ] && [ "$QUICK" != 1 ]; then
	for t in /test/extra.d/*; do
		[ -x "$t" ] || continue
		echo "# extra: $t"
		check "extra: $(basename "$t")" "$t"
	done
fi

stop_all
if [ -n "${VARTMP_BOUND:-}" ]; then
	umount /var/tmp || notok "umount /var/tmp"
fi
if grep -q " /mnt/ext4 " /proc/mounts; then
	umount /mnt/ext4 || notok "umount ext4"
fi

# ---- the debug kernel: was it watching, and did it see anything? ----
dmesg >/tmp/dmesg.txt
if grep -q "KernelAddressSanitizer initialized" /tmp/dmesg.txt &&
	grep -Eq "^ *debug_locks: +1$" /proc/lockdep_stats; then
	ok "debug kernel: KASAN initialized, lockdep still on (debug_locks 1)"
else
	notok "debug kernel: KASAN initialized, lockdep still on (debug_locks 1)"
	grep -E "debug_locks|KernelAddressSanitizer" /proc/lockdep_stats /tmp/dmesg.txt
fi
# the same patterns run-tier.sh scans the whole console for
PAT='WARNING:|BUG:|BUG |Oops|general protection|Call Trace:|INFO: task .* blocked|possible circular locking|inconsistent lock state|possible recursive locking|suspicious RCU usage|KASAN:|UBSAN:|DEBUG_LOCKS_WARN_ON|INFO: trying to register non-static key|kernel BUG'
nwarn=$(grep -Ec "$PAT" /tmp/dmesg.txt)
if [ "$nwarn" = 0 ]; then
	ok "kernel log: 0 warnings (WARNING, BUG, lockdep, KASAN, hung task)"
else
	notok "kernel log: $nwarn warning lines (WARNING, BUG, lockdep, KASAN, hung task)"
	grep -E -A 30 "$PAT" /tmp/dmesg.txt | head -n 150
fi
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
