#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Turn the BENCH lines of the VM console logs into a markdown table (stdout).
#   bench-report.sh RUN_DIR     (reads RUN_DIR/console-stock.log, console-patched.log)
set -euo pipefail
DIR=$1
python3 - "$DIR" <<'PY'
import re, statistics, sys, os, datetime
d = sys.argv[1]
rows = {}
for flavor in ("stock", "patched"):
    p = os.path.join(d, f"console-{flavor}.log")
    if not os.path.exists(p):
        continue
    for line in open(p, errors="replace"):
        m = re.search(r"BENCH flavor=(\w+) target=(\w+) jobs=(\d+) rep=(\d+) iops=([\d.]+) usr=([\d.]+)%? sys=([\d.]+)", line)
        if m:
            k = (m[1], m[2], int(m[3]))
            rows.setdefault(k, []).append((float(m[5]), float(m[6]), float(m[7])))
if not rows:
    sys.exit("no BENCH lines")
med = {k: statistics.median(v[0] for v in vs) for k, vs in rows.items()}
cpu = {k: statistics.median(v[1] + v[2] for v in vs) for k, vs in rows.items()}
n = {k: len(vs) for k, vs in rows.items()}
out = []
out.append("# Kernel tier benchmark (VM, emulated CPU)\n")
out.append(f"Generated {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC by kernel/run-tier.sh --bench.\n")
out.append("fio 4 KiB random O_DIRECT overwrites (psync, one preallocated 64 MiB file on ext4 "
           "on virtio-blk), qemu TCG `-cpu max -smp 2` (2 sockets). `passthrough` is the probe's raw "
           "passthrough server (ptfs, FOPEN_PASSTHROUGH|FOPEN_PARALLEL_DIRECT_WRITES, "
           "KILLPRIV_V2) with that ext4 file as backing file. Median IOPS of the repetitions; "
           "`fpio-passthrough` is fpio's example server mirroring the ext4 directory (it opens backing files without O_DIRECT, so on 6.12 its synchronous passthrough writes are buffered writes on ext4). CPU = fio usr+sys %. These are emulated-CPU figures: compare ratios, not absolutes.\n")
has_fpio = any(k[1] == "fpio" for k in med)
hdr = "| kernel | jobs | ext4 IOPS | ptfs IOPS | ptfs / ext4 |"
sep = "|---|---:|---:|---:|---:|"
if has_fpio:
    hdr += " fpio-passthrough IOPS | fpio / ext4 |"
    sep += "---:|---:|"
out.append(hdr + " reps | CPU% ext4 / ptfs |")
out.append(sep + "---:|---:|")
for flavor in ("stock", "patched"):
    for jobs in (1, 2, 4):
        e, p = med.get((flavor, "ext4", jobs)), med.get((flavor, "passthrough", jobs))
        if e is None or p is None:
            continue
        row = f"| {flavor} | {jobs} | {e:.0f} | {p:.0f} | {p/e:.2f} |"
        if has_fpio:
            f = med.get((flavor, "fpio", jobs))
            row += f" {f:.0f} | {f/e:.2f} |" if f else " - | - |"
        row += (f" {n[(flavor,'ext4',jobs)]} | "
                f"{cpu[(flavor,'ext4',jobs)]:.0f} / {cpu[(flavor,'passthrough',jobs)]:.0f} |")
        out.append(row)
out.append("")
out.append("| jobs | ptfs IOPS patched / stock | fpio-passthrough IOPS patched / stock |")
out.append("|---:|---:|---:|")
for jobs in (1, 2, 4):
    s, pa = med.get(("stock", "passthrough", jobs)), med.get(("patched", "passthrough", jobs))
    fs_, fp = med.get(("stock", "fpio", jobs)), med.get(("patched", "fpio", jobs))
    if s and pa:
        fr = f"{fp/fs_:.2f}" if fs_ and fp else "-"
        out.append(f"| {jobs} | {pa/s:.2f} | {fr} |")
print("\n".join(out))
PY
