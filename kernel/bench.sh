#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Benchmark, run INSIDE the VM by vm-suite.sh when fpio.bench=1 is on the command line.
#   bench.sh EXT4_MOUNTPOINT
# fio 4 KiB random O_DIRECT overwrites (psync) of one preallocated 64 MiB file,
# numjobs 1/2/4, on plain ext4, through a passthrough FUSE mount (ptfs) whose
# backing file is that ext4 file, and through fpio's example server (fpio-passthrough,
# mirroring the ext4 directory) when it is in the initramfs. Repeated REPS times, interleaved. One line each:
#   BENCH flavor=F target=ext4|passthrough|fpio jobs=N rep=R iops=X usr=U sys=S
# (usr/sys: fio's CPU percentages; figures are from an emulated CPU, TCG).
M=$1
REPS=$(sed -n 's/.*fpio\.bench_reps=\([0-9]*\).*/\1/p' /proc/cmdline)
REPS=${REPS:-${FPIO_BENCH_REPS:-3}}
RUNTIME=${FPIO_BENCH_RUNTIME:-5}
FLAVOR=${FPIO_FLAVOR:-unknown}
F=$M/bench.dat
dd if=/dev/zero of=$F bs=1M count=64 conv=fsync 2>/dev/null || exit 1
mkdir -p /tmp/bpt
ptfs --depth 1 /tmp/bpt $F &
PT=$!
i=0
while ! grep -q " /tmp/bpt fuse" /proc/mounts; do
	i=$((i + 1)); [ $i -gt 100 ] && exit 1; sleep 0.1
done
targets="ext4 passthrough"
# fpio's example server mirroring the ext4 directory, when it is in the initramfs
if [ -x /bin/fpio-passthrough ]; then
	mkdir -p /tmp/bfp
	fpio-passthrough -f "$M" /tmp/bfp &
	FP=$!
	i=0
	while ! grep -q " /tmp/bfp fuse" /proc/mounts; do
		i=$((i + 1)); [ $i -gt 100 ] && exit 1; sleep 0.1
	done
	targets="$targets fpio"
fi
rc=0
rep=1
while [ $rep -le "$REPS" ]; do
	for jobs in 1 2 4; do
		for target in $targets; do
			file=$F
			[ $target = passthrough ] && file=/tmp/bpt/data
			[ $target = fpio ] && file=/tmp/bfp/bench.dat
			line=$(fio --name=b --filename=$file --rw=randwrite --bs=4k --direct=1 \
				--ioengine=psync --numjobs=$jobs --thread --size=64M \
				--runtime=$RUNTIME --time_based --group_reporting --minimal 2>/dev/null)
			iops=$(echo "$line" | cut -d';' -f49)
			usr=$(echo "$line" | cut -d';' -f88)
			sys=$(echo "$line" | cut -d';' -f89)
			if [ -z "$iops" ]; then
				echo "BENCH-ERROR flavor=$FLAVOR target=$target jobs=$jobs rep=$rep"
				rc=1
				continue
			fi
			echo "BENCH flavor=$FLAVOR target=$target jobs=$jobs rep=$rep iops=$iops usr=$usr sys=$sys"
		done
	done
	rep=$((rep + 1))
done
umount /tmp/bpt
wait $PT
if [ -n "${FP:-}" ]; then
	umount /tmp/bfp
	wait $FP
fi
rm -f $F
exit $rc
