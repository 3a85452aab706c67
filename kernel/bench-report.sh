#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Turn the BENCH lines of a benchmark VM's console log into a markdown report (stdout).
#   bench-report.sh CONSOLE_LOG [CONFIG_NOTE]
# Per jobs count: median IOPS with min-max of each target, and the shared/exclusive and
# shared/ext4 ratios computed per repetition (the runs of one repetition are
# neighbours in time), reported as median and min-max: the effect next to its noise.
set -euo pipefail
LOG=$1
NOTE=${2:-}
python3 - "$LOG" "$NOTE" <<'PY'
import re, statistics, sys, datetime
log, note = sys.argv[1], sys.argv[2]
runs, info = {}, ""
for line in open(log, errors="replace"):
    m = re.search(r"BENCH flavor=(\S+) target=(\w+) jobs=(\d+) rep=(\d+) iops=([\d.]+)", line)
    if m:
        runs[(m[2], int(m[3]), int(m[4]))] = float(m[5])
    m = re.search(r"BENCH-INFO (.*)", line)
    if m:
        info = m[1].strip()
if not runs:
    sys.exit("no BENCH lines in " + log)
reps = sorted({k[2] for k in runs})
def stats(xs):
    return statistics.median(xs), min(xs), max(xs)
def fmt(t, digits=0):
    m, lo, hi = t
    return f"{m:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"
out = ["# Kernel tier benchmark: shared vs exclusive inode lock, same VM\n",
       f"Generated {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC by "
       "`kernel/run-tier.sh --bench`. " + info + (". " + note if note else "") + "\n",
       "fio 4 KiB random O_DIRECT overwrites (psync) of one preallocated 64 MiB file on ext4 "
       "(virtio-blk), qemu TCG `-cpu max -smp 2`. All three targets run in the same VM, "
       "interleaved (every repetition runs each target once per jobs count, the target order "
       "rotates): `shared` = ptfs passthrough with FOPEN_PARALLEL_DIRECT_WRITES (the patched "
       "kernel takes the inode lock shared), `exclusive` = the same server and file with "
       "`--no-parallel` (exclusive lock, as on every released kernel), `ext4` = the backing "
       "file without FUSE. IOPS: median (min-max) over the repetitions. Ratios are computed "
       "per repetition and reported as median (min-max), so the min-max of a ratio is its "
       "noise.\n",
       "| jobs | reps | shared IOPS | exclusive IOPS | ext4 IOPS | shared / exclusive | shared / ext4 | exclusive / ext4 |",
       "|---:|---:|---:|---:|---:|---:|---:|---:|"]
for jobs in (1, 2, 4):
    rs = [r for r in reps if all((t, jobs, r) in runs for t in ("shared", "exclusive", "ext4"))]
    if not rs:
        continue
    g = lambda t: [runs[(t, jobs, r)] for r in rs]
    sh, ex, e4 = g("shared"), g("exclusive"), g("ext4")
    out.append(f"| {jobs} | {len(rs)} | {fmt(stats(sh))} | {fmt(stats(ex))} | {fmt(stats(e4))} | "
               f"{fmt(stats([a/b for a, b in zip(sh, ex)]), 2)} | "
               f"{fmt(stats([a/b for a, b in zip(sh, e4)]), 2)} | "
               f"{fmt(stats([a/b for a, b in zip(ex, e4)]), 2)} |")
print("\n".join(out))
PY
