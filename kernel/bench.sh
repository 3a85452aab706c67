#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Benchmark, run INSIDE the VM by vm-suite.sh when fpio.bench=1 is on the command line.
#   bench.sh EXT4_MOUNTPOINT
# fio 4 KiB random O_DIRECT overwrites (psync) of one preallocated 64 MiB ext4 file,
# numjobs 1/2/4, through three targets in the SAME VM (same kernel, same disk, same
# emulated CPU), so that the comparison does not carry the VM-to-VM noise:
#   shared     ptfs passthrough, FOPEN_PARALLEL_DIRECT_WRITES: the patched kernel takes
#              the inode lock shared for these writes
#   exclusive  ptfs passthrough with --no-parallel: the same kernel takes it exclusively
#              (what every released kernel does for every passthrough write)
#   ext4       the ext4 file itself, no FUSE
# Runs are interleaved: each repetition runs every (jobs, target) once, and the order
# of the targets rotates from one repetition to the next. One line per run:
#   BENCH flavor=F target=T jobs=N rep=R iops=X usr=U sys=S
M=$1
REPS=$(sed -n 's/.*fpio\.bench_reps=\([0-9]*\).*/\1/p' /proc/cmdline)
REPS=${REPS:-${FPIO_BENCH_REPS:-5}}
RUNTIME=$(sed -n 's/.*fpio\.bench_runtime=\([0-9]*\).*/\1/p' /proc/cmdline)
RUNTIME=${RUNTIME:-5}
FLAVOR=${FPIO_FLAVOR:-unknown}
F=$M/bench.dat
dd if=/dev/zero of=$F bs=1M count=64 conv=fsync 2>/dev/null || exit 1
mount_pt() { # mountpoint ptfs-options...
	mnt=$1
	shift
	mkdir -p "$mnt"
	ptfs --depth 1 "$@" "$mnt" $F &
	i=0
	while ! grep -q " $mnt fuse" /proc/mounts; do
		i=$((i + 1)); [ $i -gt 100 ] && exit 1; sleep 0.1
	done
}
mount_pt /tmp/b-shared
mount_pt /tmp/b-excl --no-parallel
echo "BENCH-INFO flavor=$FLAVOR reps=$REPS runtime=${RUNTIME}s kernel=$(uname -r) cpus=$(grep -c ^processor /proc/cpuinfo)"
rc=0
rep=1
while [ $rep -le "$REPS" ]; do
	case $((rep % 3)) in
		0) order="shared exclusive ext4" ;;
		1) order="exclusive ext4 shared" ;;
		2) order="ext4 shared exclusive" ;;
	esac
	for jobs in 1 2 4; do
		for target in $order; do
			case $target in
				shared) file=/tmp/b-shared/data ;;
				exclusive) file=/tmp/b-excl/data ;;
				ext4) file=$F ;;
			esac
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
umount /tmp/b-shared /tmp/b-excl || rc=1
wait
rm -f $F
exit $rc
