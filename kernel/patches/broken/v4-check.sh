#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# For /test/extra.d/ of the VM suite: needs ptfs and v4-check in PATH; uses
# /mnt/ext4 when mounted (direct io there needs alignment), else /tmp.
# v4 checks: F_SETFL propagation, stat() racing O_DIRECT writers, no kernel warnings
mkdir -p /tmp/kpx
B=/tmp/kp.dat
grep -q " /mnt/ext4 " /proc/mounts && B=/mnt/ext4/kp.dat
echo "# v4-check: backing $B"
dd if=/dev/zero of=$B bs=1M count=4 2>/dev/null
ptfs --depth 1 /tmp/kpx $B &
P=$!
i=0
while ! grep -q " /tmp/kpx fuse" /proc/mounts; do
	i=$((i + 1)); [ $i -gt 100 ] && { echo "kpx did not mount"; exit 1; }
	sleep 0.1
done
v4-check $B /tmp/kpx/data
rc=$?
umount /tmp/kpx
wait $P
if dmesg | grep -E "WARNING:|BUG:|circular locking|inconsistent lock state|recursive locking|suspicious RCU|INFO: task"; then
	echo "not ok - kernel log has warnings"
	rc=1
else
	echo "ok - kernel log has no warnings (lockdep: $(grep -c . /proc/lockdep 2>/dev/null || echo n/a) entries)"
fi
exit $rc
