#!/usr/bin/python3
"""Side-by-side benchmark: native backing dir vs fpio-passthrough (3 modes) vs
libfuse 3.17.2's passthrough_hp (passthrough / nopassthrough), and on libfuse
3.18.3 fpio-passthrough next to 3.18.3's passthrough_hp, over /dev/fuse and over
io_uring.

Run through bench/run.sh, which installs what this needs and builds the helpers.
Every measurement of every configuration is taken in the same invocation,
alternating configurations within each round, so the ratios (not the absolute
figures, which drift on a shared VM) are what to read.

Mount discipline: one fresh mount per (round, workload, configuration); daemon in
the foreground with its own log; we poll /proc/self/mountinfo with a deadline;
unmount with fusermount3 -u and require the daemon to exit 0. On any failure the
mounts we made are lazily unmounted and only the daemon PIDs we started are killed.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def env_num(name, default, cast=float):
    v = os.environ.get(name)
    return cast(v) if v not in (None, "") else default


def log(msg):
    print(msg, flush=True)


class ConfigFailed(Exception):
    """A configuration misbehaved (daemon died, unmount failed, I/O error)."""


# ---------------------------------------------------------------- settings

def make_settings(quick):
    # Full-run defaults take ~15 min on the 2-core dev box with all 10 configurations; --quick is a smoke test.
    d = dict(rounds=3, seq_mb=1024, dd_mb=128, rand_mb=256, runtime=4.0,
             meta_seconds=2.0, nfiles=1000, rss_opens=100000, tmpfs_mb=4096)
    if quick:
        # fio alone costs ~0.4 s per invocation (its own startup/exit sleeps), so the
        # quick run is dominated by fixed costs; keep the variable part tiny.
        d.update(seq_mb=16, dd_mb=8, rand_mb=16, runtime=0.2, meta_seconds=0.1,
                 rss_opens=5000, tmpfs_mb=512)
    s = dict(
        rounds=env_num("BENCH_ROUNDS", d["rounds"], int),
        seq_mb=env_num("BENCH_SEQ_MB", d["seq_mb"], int),
        dd_mb=env_num("BENCH_DD_MB", d["dd_mb"], int),
        rand_mb=env_num("BENCH_RAND_MB", d["rand_mb"], int),
        runtime=env_num("BENCH_RUNTIME", d["runtime"]),
        meta_seconds=env_num("BENCH_META_SECONDS", d["meta_seconds"]),
        nfiles=env_num("BENCH_NFILES", d["nfiles"], int),
        rss_opens=env_num("BENCH_RSS_OPENS", d["rss_opens"], int),
        tmpfs_mb=env_num("BENCH_TMPFS_MB", d["tmpfs_mb"], int),
        open_flags=os.environ.get("BENCH_OPEN_FLAGS", "rdonly"),
        ext4_dir=os.environ.get("BENCH_EXT4_DIR", "/var/tmp/fpio-bench-ext4"),
        # Outside the repo: tools walking the source tree must not wander into our mounts.
        work=os.environ.get("BENCH_WORK", "/var/tmp/fpio-bench-work"),
        mount_timeout=env_num("BENCH_MOUNT_TIMEOUT", 15.0),
    )
    if s["rounds"] < 3:
        raise SystemExit("BENCH_ROUNDS must be >= 3 (medians of at least 3 runs)")
    # The tmpfs must hold the seq file, the dd file and the shared random file.
    need = s["seq_mb"] * 2 + s["dd_mb"] + s["rand_mb"] + 64
    s["tmpfs_mb"] = max(s["tmpfs_mb"], need)
    return s


# ---------------------------------------------------------------- mounts and daemons

def mountinfo():
    """{mountpoint: fstype} from /proc/self/mountinfo."""
    out = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            mp = left.split()[4].replace("\\040", " ")
            out[mp] = right.split()[0]
    return out


def is_fuse_mounted(mnt):
    return mountinfo().get(mnt, "").startswith("fuse")


class State:
    """What we created, so cleanup touches only that."""
    daemons = {}       # pid -> (Popen, mountpoint)
    tmpfs = None
    pidfile = None
    uring_saved = None  # enable_uring's value before we set it, while we hold it at 1
    uring_file = None   # ... also on disk, for run.sh's trap

    @classmethod
    def save(cls):
        # run.sh's trap reads this if we are killed too hard to clean up ourselves.
        if cls.pidfile:
            with open(cls.pidfile, "w") as f:
                for pid, (_, mnt) in cls.daemons.items():
                    f.write(f"{pid} {mnt}\n")


def tail(path, n=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return "(no log)"


def start_daemon(cmd, mnt, logpath, timeout):
    if is_fuse_mounted(mnt):
        # A mount left on our own private mountpoint (by a run killed with SIGKILL).
        log(f"WARNING: {mnt} was still mounted; lazily unmounting it")
        subprocess.run(["umount", "-l", mnt], capture_output=True)
    logf = open(logpath, "ab")
    logf.write(("\n$ " + " ".join(cmd) + "\n").encode())
    logf.flush()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                         start_new_session=True)
    logf.close()
    State.daemons[p.pid] = (p, mnt)
    State.save()
    deadline = time.monotonic() + timeout
    delay = 0.002
    while not is_fuse_mounted(mnt):
        rc = p.poll()
        if rc is not None:
            State.daemons.pop(p.pid, None)
            State.save()
            raise ConfigFailed(f"daemon exited with {rc} before mounting; log {logpath}:\n{tail(logpath)}")
        if time.monotonic() > deadline:
            kill_daemon(p.pid, p, mnt)
            State.daemons.pop(p.pid, None)
            State.save()
            raise ConfigFailed(f"no mount at {mnt} after {timeout}s; log {logpath}:\n{tail(logpath)}")
        time.sleep(delay)              # polling interval, not a fixed wait
        delay = min(delay * 2, 0.05)
    return p


def stop_daemon(p, mnt, logpath):
    # EBUSY can be transient (a benchmark child still exiting, or some other process on
    # the box walking into the mount): retry for a while, then say who holds it.
    deadline = time.monotonic() + 10
    while True:
        r = subprocess.run(["fusermount3", "-u", mnt], capture_output=True, text=True)
        if r.returncode == 0:
            break
        if time.monotonic() > deadline:
            holders = subprocess.run(["fuser", "-vm", mnt], capture_output=True, text=True)
            kill_daemon(p.pid, p, mnt)
            State.daemons.pop(p.pid, None)
            State.save()
            raise ConfigFailed(f"fusermount3 -u {mnt} failed: {r.stderr.strip()}\n"
                               f"holders: {holders.stdout.strip()} {holders.stderr.strip()}")
        time.sleep(0.1)
    try:
        rc = p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        kill_daemon(p.pid, p, mnt)
        State.daemons.pop(p.pid, None)
        State.save()
        raise ConfigFailed(f"daemon {p.pid} did not exit after unmount; log {logpath}")
    State.daemons.pop(p.pid, None)
    State.save()
    if rc != 0:
        raise ConfigFailed(f"daemon exited with status {rc} after unmount; log {logpath}:\n{tail(logpath)}")


def kill_daemon(pid, p, mnt):
    if is_fuse_mounted(mnt):
        subprocess.run(["umount", "-l", mnt], capture_output=True)
    if p.poll() is None:
        try:
            os.kill(pid, signal.SIGTERM)
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(pid, signal.SIGKILL)
            p.wait(timeout=5)
        except ProcessLookupError:
            pass


def uring_enable():
    """enable_uring=1 for the run; uring_restore() puts back what was there."""
    with open(URING_PARAM) as f:
        State.uring_saved = f.read().strip()
    with open(State.uring_file, "w") as f:
        f.write(State.uring_saved + "\n")
    with open(URING_PARAM, "w") as f:
        f.write("1\n")
    log(f"{URING_PARAM}: 1 for this run (was {State.uring_saved})")


def uring_restore():
    if State.uring_saved is None:
        return
    try:
        with open(URING_PARAM, "w") as f:
            f.write(State.uring_saved + "\n")
        log(f"{URING_PARAM}: restored to {State.uring_saved}")
        os.unlink(State.uring_file)
    except OSError as e:
        log(f"WARNING: could not restore {URING_PARAM} to {State.uring_saved}: {e}")
    State.uring_saved = None


def io_urings(pid):
    """How many io_uring instances PID has open."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[io_uring]"
        except OSError:
            pass
    return n


def cleanup_all():
    uring_restore()
    for pid, (p, mnt) in list(State.daemons.items()):
        kill_daemon(pid, p, mnt)
        State.daemons.pop(pid, None)
    State.save()
    if State.tmpfs and mountinfo().get(State.tmpfs) == "tmpfs":
        r = subprocess.run(["umount", State.tmpfs], capture_output=True)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", State.tmpfs], capture_output=True)
    State.tmpfs = None


# ---------------------------------------------------------------- configurations

class Config:
    """peer: the passthrough_hp configuration on the same libfuse and transport
    (the ×peer column); uring: served over FUSE over io_uring."""

    def __init__(self, name, kind, argv=None, counters=False, skip=None, peer=None, uring=False):
        self.name, self.kind, self.argv = name, kind, argv or []
        self.counters, self.skip, self.failed = counters, skip, None
        self.peer, self.uring = peer, uring

    @property
    def native(self):
        return self.kind == "native"


def libfuse_of(binary):
    """The libfuse version BINARY loads (from the file name ldd resolves), or None."""
    r = subprocess.run(["ldd", binary], capture_output=True, text=True)
    m = re.search(r"libfuse3\.so\.\d+ => (\S+)", r.stdout)
    if not m:
        return None
    v = re.search(r"libfuse3\.so\.(\d+\.\d+\.\d+)$", os.path.realpath(m.group(1)))
    return v.group(1) if v else None


def binary_skip(path, what, hint, want_libfuse=None):
    if not (path and os.access(path, os.X_OK)):
        return f"{what} not found at {path} ({hint})"
    if want_libfuse and libfuse_of(path) != want_libfuse:
        return f"{path} loads libfuse {libfuse_of(path)}, not {want_libfuse}"
    return None


URING_PARAM = "/sys/module/fuse/parameters/enable_uring"


def make_configs(args):
    fpio, fpio318 = args.fpio, args.fpio318
    fpio_skip = binary_skip(fpio, "fpio-passthrough binary", "build fpio, or pass --fpio PATH")
    fpio318_skip = binary_skip(fpio318, "fpio-passthrough binary for libfuse 3.18.3",
                               "bench/run.sh builds it, or pass --fpio318 PATH", "3.18.3")
    hp, hp318 = args.passthrough_hp, args.passthrough_hp_318
    hp_skip = binary_skip(hp, "passthrough_hp", "scripts/libfuse-build.sh 3.17.2 builds it")
    hp318_skip = binary_skip(hp318, "passthrough_hp 3.18.3", "scripts/libfuse-build.sh 3.18.3 builds it",
                             "3.18.3")
    # FUSE over io_uring needs the kernel's support (main() turns it on for the run).
    uring_skip = None if os.path.exists(URING_PARAM) else f"kernel has no FUSE over io_uring ({URING_PARAM})"
    # Match passthrough_hp's defaults (libfuse's 10 max worker threads, 86400 s entry/attr
    # timeouts) so the comparison measures the I/O and open paths, not cache settings.
    extra_fpio = [f"--threads={os.environ.get('BENCH_FPIO_THREADS', '10')}",
                  f"--timeout={os.environ.get('BENCH_FPIO_TIMEOUT', '86400')}"]
    extra_fpio += os.environ.get("BENCH_FPIO_ARGS", "").split()
    extra_hp = os.environ.get("BENCH_HP_ARGS", "").split()
    cfgs = [Config("native", "native")]
    for mode in ("passthrough", "direct", "cached"):
        cfgs.append(Config(f"fpio-{mode}", "fpio", [fpio, "-f", f"--mode={mode}"] + extra_fpio,
                           counters=True, skip=fpio_skip, peer=PEER))
    # passthrough_hp daemonizes unless told --foreground.
    cfgs.append(Config("hp-passthrough", "hp", [hp, "--foreground"] + extra_hp, skip=hp_skip, peer=PEER))
    cfgs.append(Config("hp-nopassthrough", "hp", [hp, "--foreground", "--nopassthrough"] + extra_hp,
                       skip=hp_skip, peer=PEER))
    # libfuse 3.18.3: fpio's example server and passthrough_hp, same libfuse, same transport.
    for suffix, opts, uring in (("passthrough", [], False), ("uring", ["-o", "io_uring"], True)):
        peer = f"hp318-{suffix}"
        cfgs.append(Config(f"fpio318-{suffix}", "fpio",
                           [fpio318, "-f", "--mode=passthrough"] + extra_fpio + opts, counters=True,
                           skip=fpio318_skip or (uring_skip if uring else None), peer=peer, uring=uring))
        cfgs.append(Config(peer, "hp", [hp318, "--foreground"] + extra_hp + opts,
                           skip=hp318_skip or (uring_skip if uring else None), peer=peer, uring=uring))
    if args.configs:
        want = set(args.configs.split(","))
        unknown = want - {c.name for c in cfgs}
        if unknown:
            raise SystemExit(f"unknown configs: {', '.join(sorted(unknown))}")
        cfgs = [c for c in cfgs if c.name in want or c.name == "native"]
    return cfgs


# The peer of the fpio-* configurations (fpio built against the system libfuse).
PEER = "hp-passthrough"


# ---------------------------------------------------------------- workload primitives

def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def run_cmd(cmd, what):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise ConfigFailed(f"{what} failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr.strip()[-2000:]}")
    return r


def fio(target_dir, name, extra):
    cmd = ["fio", "--output-format=json", f"--name={name}", f"--directory={target_dir}",
           "--ioengine=psync", "--fallocate=none", "--group_reporting", "--disk_util=0"] + extra
    r = run_cmd(cmd, "fio")
    out = r.stdout
    data = json.loads(out[out.index("{"):])
    job = data["jobs"][0]
    if job.get("error"):
        raise ConfigFailed(f"fio job error {job['error']}")
    rw = "read" if job["read"]["io_bytes"] > 0 else "write"
    return job[rw]["bw_bytes"] / 1e6


def dd_write(path, mb):
    r = run_cmd(["dd", "if=/dev/zero", f"of={path}", "bs=4k", f"count={mb * 256}"], "dd")
    # "268435456 bytes (268 MB, 256 MiB) copied, 0.27 s, 981 MB/s": recompute from bytes/s.
    m = re.search(r"^(\d+) bytes .* copied, ([0-9.e+-]+) s", r.stderr, re.M)
    if not m:
        raise ConfigFailed(f"cannot parse dd output: {r.stderr}")
    return int(m.group(1)) / float(m.group(2)) / 1e6


def make_file(path, mb):
    # Real data, not a sparse file: random writes must not allocate on the fly.
    with open(path, "wb") as f:
        chunk = b"\xa5" * (1 << 20)
        for _ in range(mb):
            f.write(chunk)


def remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# ---------------------------------------------------------------- workloads

class Workload:
    """prepare(backing) once before all rounds; before(backing) ahead of each run
    while nothing is mounted; run(dir, ctx) returns the figure."""
    unit = "MB/s"
    native_ok = True
    ratios = True

    def prepare(self, b, s):
        pass

    def before(self, b, s):
        pass


class SeqWrite(Workload):
    name, label, fs = "seqwrite-1M", "sequential write, 1 MiB", "tmpfs"

    def before(self, b, s):
        remove(os.path.join(b, "seqw.dat"))

    def run(self, d, s, ctx):
        return fio(d, "seqw", ["--rw=write", "--bs=1M", f"--size={s['seq_mb']}M",
                               "--filename=seqw.dat"])


class SeqRead(Workload):
    name, label, fs = "seqread-1M", "sequential read, 1 MiB, caches dropped", "tmpfs"

    def prepare(self, b, s):
        make_file(os.path.join(b, "seqr.dat"), s["seq_mb"])

    def run(self, d, s, ctx):
        drop_caches()
        return fio(d, "seqr", ["--rw=read", "--bs=1M", f"--size={s['seq_mb']}M",
                               "--filename=seqr.dat"])


class DD4k(Workload):
    name, label, fs = "dd-4k-write", "dd bs=4k write, 1 job", "tmpfs"

    def before(self, b, s):
        remove(os.path.join(b, "dd4k.dat"))

    def run(self, d, s, ctx):
        return dd_write(os.path.join(d, "dd4k.dat"), s["dd_mb"])


class RandShared(Workload):
    def __init__(self, name, label, fs, direct):
        self.name, self.label, self.fs, self.direct = name, label, fs, direct

    def prepare(self, b, s):
        make_file(os.path.join(b, "shared.dat"), s["rand_mb"])

    def run(self, d, s, ctx):
        # One pre-sized file: no write extends EOF, so only the inode lock can serialize.
        extra = ["--rw=randwrite", "--bs=4k", "--numjobs=4", "--filename=shared.dat",
                 f"--size={s['rand_mb']}M", "--time_based", f"--runtime={int(s['runtime'] * 1000)}ms",  # fio truncates "0.5s" to 0
                 "--norandommap", "--randrepeat=0"]
        if self.direct:
            extra.append("--direct=1")
        return fio(d, self.name, extra)


class OpenClose(Workload):
    unit = "ops/s"

    def __init__(self, threads, fs="tmpfs"):
        self.threads, self.fs = threads, fs
        self.name = f"open-close-{threads}t"
        self.label = f"open+close of existing files, {threads} thread{'s' if threads > 1 else ''}"

    def prepare(self, b, s):
        prepare_tree(b, s)

    def run(self, d, s, ctx):
        return openbench(["open", os.path.join(d, "tree"), str(s["nfiles"]), str(self.threads),
                          str(s["meta_seconds"]), s["open_flags"]])


class Stat(Workload):
    name, label, fs, unit = "stat", "stat() of existing files, 1 thread", "tmpfs", "ops/s"

    def prepare(self, b, s):
        prepare_tree(b, s)

    def run(self, d, s, ctx):
        return openbench(["stat", os.path.join(d, "tree"), str(s["nfiles"]), "1",
                          str(s["meta_seconds"])])


class RssOpens(Workload):
    """Daemon RSS growth across many opens: the server must not grow per open."""
    name, fs, unit = "rss-opens", "tmpfs", "KiB"
    native_ok, ratios = False, False

    @property
    def label(self):
        return "server RSS growth across N opens (4 threads)"

    def prepare(self, b, s):
        prepare_tree(b, s)

    def run(self, d, s, ctx):
        tree = os.path.join(d, "tree")
        pid = ctx["pid"]
        # Warm-up: first opens of every inode allocate the server's per-inode state.
        openbench(["open", tree, str(s["nfiles"]), "4", "60", s["open_flags"], str(s["nfiles"] * 2)])
        before = rss_kib(pid)
        openbench(["open", tree, str(s["nfiles"]), "4", "120", s["open_flags"], str(s["rss_opens"])])
        return rss_kib(pid) - before


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise ConfigFailed(f"no VmRSS for pid {pid}")


OPENBENCH = None


def openbench(argv):
    r = run_cmd([OPENBENCH] + argv, "openbench")
    return float(r.stdout.split()[2])


def prepare_tree(b, s):
    tree = os.path.join(b, "tree")
    marker = os.path.join(tree, f".n{s['nfiles']}")
    if os.path.exists(marker):
        return
    os.makedirs(tree, exist_ok=True)
    run_cmd([OPENBENCH, "create", tree, str(s["nfiles"])], "openbench create")
    open(marker, "w").close()


def make_workloads(args):
    wls = [SeqWrite(), SeqRead(), DD4k(),
           RandShared("randwrite-4k-4j-buffered", "4 KiB random writes, 4 jobs, one file, buffered",
                      "tmpfs", False),
           RandShared("randwrite-4k-4j-odirect", "4 KiB random writes, 4 jobs, one file, O_DIRECT",
                      "ext4", True),
           OpenClose(1), OpenClose(4), Stat(), RssOpens()]
    if args.workloads:
        want = set(args.workloads.split(","))
        unknown = want - {w.name for w in wls}
        if unknown:
            raise SystemExit(f"unknown workloads: {', '.join(sorted(unknown))}")
        wls = [w for w in wls if w.name in want]
    return wls


# ---------------------------------------------------------------- fpio counters

def read_counters(path):
    out = {}
    try:
        with open(path) as f:
            for line in f:
                # "name value"; a status may have words after it ("pending: INIT not answered yet").
                parts = line.split(None, 1)
                if len(parts) == 2:
                    v = parts[1].strip()
                    out[parts[0]] = int(v) if v.isdigit() else v
    except OSError:
        return None
    return out


# ---------------------------------------------------------------- one measurement

def measure(cfg, wl, s, backing, round_no):
    if cfg.native:
        wl.before(backing, s)
        return wl.run(backing, s, {}), None
    work = s["work"]
    mnt = os.path.join(work, "mnt")
    os.makedirs(mnt, exist_ok=True)
    logpath = os.path.join(work, "logs", f"{cfg.name}.log")
    cmd = list(cfg.argv)
    counters_path = None
    if cfg.counters:
        counters_path = os.path.join(work, "logs", f"{cfg.name}.{wl.name}.r{round_no}.counters")
        remove(counters_path)
        cmd.append(f"--counters-file={counters_path}")
    cmd += [backing, mnt]
    wl.before(backing, s)
    p = start_daemon(cmd, mnt, logpath, s["mount_timeout"])
    try:
        if cfg.uring:
            # libfuse starts its rings while answering INIT, which stat() waits for; it
            # falls back to /dev/fuse silently when it cannot start them.
            os.stat(mnt)
            if io_urings(p.pid) == 0:
                raise ConfigFailed(f"{cfg.name}: the server holds no io_uring: not served over io_uring; "
                                   f"log {logpath}:\n{tail(logpath)}")
        value = wl.run(mnt, s, {"pid": p.pid})
    except BaseException:
        kill_daemon(p.pid, p, mnt)
        State.daemons.pop(p.pid, None)
        State.save()
        raise
    stop_daemon(p, mnt, logpath)
    counters = read_counters(counters_path) if counters_path else None
    if counters_path and counters is None and not Warned.counters:
        Warned.counters = True
        log(f"WARNING: {cfg.name} wrote no counters file ({counters_path}); server-side counts will be blank")
    return value, counters


class Warned:
    counters = False


# ---------------------------------------------------------------- report

def fmt(v, unit):
    if v is None:
        return "—"
    if unit == "KiB":
        return f"{v:+.0f}"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.1f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def summarize(results, cfgs, wls):
    """results[(wl, cfg)] = list of (value, counters) -> table rows."""
    rows = []
    for wl in wls:
        med = {}
        for c in cfgs:
            vals = [v for v, _ in results.get((wl.name, c.name), [])]
            med[c.name] = statistics.median(vals) if vals else None
        for c in cfgs:
            runs = results.get((wl.name, c.name), [])
            vals = [v for v, _ in runs]
            row = dict(workload=wl.name, label=wl.label, config=c.name, unit=wl.unit, fs=wl.fs,
                       n=len(vals), median=med[c.name],
                       min=min(vals) if vals else None, max=max(vals) if vals else None,
                       x_native=ratio(med[c.name], med.get("native")) if wl.ratios else None,
                       x_peer=ratio(med[c.name], med.get(c.peer)) if wl.ratios and c.peer else None,
                       status=("skipped: " + c.skip) if c.skip else
                              ("failed: " + brief(c.failed)) if c.failed and not vals else
                              ("n/a" if c.native and not wl.native_ok else "ok"))
            cs = [k for _, k in runs if k]
            for key in ("req_read", "req_write", "req_getxattr", "opens_passthrough",
                        "opens_direct", "opens_cached"):
                nums = [k.get(key) for k in cs if isinstance(k.get(key), int)]
                row[key] = int(statistics.median(nums)) if nums else None
                if not nums and any(k.get(key) == "n/a" for k in cs):
                    row[key] = "n/a"   # fpio does not see the requests (no custom io on this libfuse)
            sts = sorted({str(k.get("status")) for k in cs if "status" in k})
            row["fpio_status"] = ",".join(sts) if sts else None
            trs = sorted({str(k.get("transport")) for k in cs if "transport" in k})
            row["fpio_transport"] = ",".join(trs) if trs else None
            rows.append(row)
    return rows


def brief(msg):
    """A failure's first line, and its last (the end of the daemon's log) if it has more."""
    lines = [x.strip() for x in msg.splitlines() if x.strip()]
    return lines[0] + (f" … {lines[-1]}" if len(lines) > 1 else "")


def not_live(rows, cfgs):
    """{config: statuses} for the fpio passthrough configurations whose server did
    not report passthrough live in every run that ran."""
    out = {}
    for c in cfgs:
        if c.kind != "fpio" or c.skip or c.failed or "--mode=passthrough" not in c.argv:
            continue
        # A run that opened no file (stat) may end before fpio settled its status: "pending...".
        sts = {x for r in rows if r["config"] == c.name and r["status"] == "ok" and r["fpio_status"]
               for x in r["fpio_status"].split(",") if not x.startswith("pending")}
        if sts != {"live"}:
            out[c.name] = ",".join(sorted(str(x) for x in sts if x)) or None
    return out


def write_markdown(path, rows, cfgs, wls, s, meta):
    L = []
    L.append("# fpio benchmark results\n")
    L.append(f"Run {meta['date']} on {meta['host']}; kernel {meta['kernel']}; {meta['cpus']} CPUs "
             f"({meta['cpu']}); load average {meta['load']}; run time {meta['wall']}; fpio {meta['git']}. "
             f"libfuse each server loads: {meta['libfuse']}. "
             f"`-uring` configurations are served over FUSE over io_uring (`-o io_uring`, the server "
             f"checked to hold io_urings, enable_uring=1 for the run); the others over /dev/fuse.\n")
    L.append(f"Medians of {s['rounds']} runs per cell, configurations alternated within each round, "
             f"a fresh mount per run. Sizes: seq {s['seq_mb']} MiB, dd {s['dd_mb']} MiB, shared "
             f"random-write file {s['rand_mb']} MiB for {s['runtime']} s, {s['nfiles']} files for "
             f"{s['meta_seconds']} s, {s['rss_opens']} opens for RSS. "
             f"Backing dirs: tmpfs ({meta['tmpfs']}) and ext4 ({s['ext4_dir']}). "
             f"MB/s = 10^6 bytes/s. ×native and ×peer are ratios of medians; the peer is passthrough_hp "
             f"on the same libfuse and transport ({PEER} for fpio-*, hp318-passthrough for "
             f"fpio318-passthrough, hp318-uring for fpio318-uring). "
             f"READ/WRITE/GETXATTR = requests that reached the fpio server in one run (median); n/a where fpio runs without custom io and cannot count them.\n")
    if meta.get("quick"):
        L.append("**--quick run: smoke-test sizes, figures are not meaningful.**\n")
    for c in cfgs:
        if c.skip:
            L.append(f"- **{c.name} skipped**: {c.skip}")
        elif c.failed:
            L.append(f"- **{c.name} FAILED**: {brief(c.failed)}")
    for name, sts in not_live(rows, cfgs).items():
        L.append(f"- **{name}: fpio not live** (status {sts or 'unknown'}): its figures are not "
                 f"fpio passthrough")
    L.append("")
    # Compact matrix first: one line per workload, ×native per config.
    active = [c for c in cfgs if not c.skip]
    L.append("## Ratio to native (median / native median)\n")
    L.append("| workload | " + " | ".join(c.name for c in active if not c.native) + " |")
    L.append("|---|" + "---:|" * len([c for c in active if not c.native]))
    byk = {(r["workload"], r["config"]): r for r in rows}
    for wl in wls:
        if not wl.ratios:
            continue
        cells = []
        for c in active:
            if c.native:
                continue
            x = byk[(wl.name, c.name)]["x_native"]
            cells.append(f"{x:.2f}×" if x is not None else "—")
        L.append(f"| {wl.name} | " + " | ".join(cells) + " |")
    L.append("")
    L.append("## All figures\n")
    L.append("| workload | backing | config | median | unit | min–max | ×native | ×peer | READ | WRITE | GETXATTR | note |")
    L.append("|---|---|---|---:|---|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        if r["status"] != "ok":
            if r["status"] == "n/a" or r["status"].startswith("skipped"):
                continue   # skipped configs are listed once above the tables
            L.append(f"| {r['workload']} | {r['fs']} | {r['config']} | — | {r['unit']} | | | | | | | {r['status']} |")
            continue
        def cnt(k):
            return r[k] if isinstance(r[k], str) else f"{r[k]:,}" if r[k] is not None else ""
        note = f"fpio status {r['fpio_status']}" if r["fpio_status"] else ""
        if r.get("fpio_transport"):
            note += f", transport {r['fpio_transport']}"
        L.append("| {w} | {fs} | {c} | {m} | {u} | {lo}–{hi} | {xn} | {xp} | {rd} | {wr} | {gx} | {note} |".format(
            w=r["workload"], fs=r["fs"], c=r["config"], m=fmt(r["median"], r["unit"]), u=r["unit"],
            lo=fmt(r["min"], r["unit"]), hi=fmt(r["max"], r["unit"]),
            xn=f"{r['x_native']:.2f}" if r["x_native"] is not None else "—",
            xp=f"{r['x_peer']:.2f}" if r["x_peer"] is not None else "—",
            rd=cnt("req_read"), wr=cnt("req_write"), gx=cnt("req_getxattr"), note=note))
    L.append("")
    L.append("## Library open-path microbenchmark\n")
    L.extend(meta["micro"])
    L.append("")
    L.append("Workloads:\n")
    for wl in wls:
        L.append(f"- `{wl.name}`: {wl.label} ({wl.fs} backing)")
    L.append("")
    with open(path, "w") as f:
        f.write("\n".join(L))


def write_chart(path, rows, cfgs, wls, meta):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("WARNING: matplotlib not available; no chart written")
        return False
    active = [c for c in cfgs if not c.native and not c.skip]
    wlr = [w for w in wls if w.ratios]
    byk = {(r["workload"], r["config"]): r for r in rows}
    fig, ax = plt.subplots(figsize=(max(8, 1.5 * len(wlr) + 2), 5.5))
    width = 0.8 / max(1, len(active))
    for i, c in enumerate(active):
        xs, ys = [], []
        for j, w in enumerate(wlr):
            x = byk[(w.name, c.name)]["x_native"]
            xs.append(j + (i - (len(active) - 1) / 2) * width)
            ys.append(x if x is not None else 0)
        ax.bar(xs, ys, width, label=c.name)
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(wlr)))
    ax.set_xticklabels([w.name for w in wlr], rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("median / native median")
    ax.set_title(f"fpio vs passthrough_hp, ratio to native ({meta['date']}, {meta['kernel']})"
                 + (" [QUICK]" if meta.get("quick") else ""), fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def run_micro():
    """Hook for the library's own open-path microbenchmark (bench/micro/run.sh)."""
    if os.environ.get("BENCH_MICRO", "1") == "0":
        log("SKIP micro: BENCH_MICRO=0")
        return ["_skipped (BENCH_MICRO=0)_"]
    runner = os.path.join(HERE, "micro", "run.sh")
    if not os.access(runner, os.X_OK):
        msg = ("no executable bench/micro/run.sh (fpio's open-path cost, ns per open: "
               "see bench/micro/README.md)")
        log("SKIP micro: " + msg)
        return ["_" + msg + "_"]
    log("micro: running bench/micro/run.sh")
    r = subprocess.run([runner], capture_output=True, text=True)
    if r.returncode != 0:
        log("micro FAILED:\n" + r.stderr[-2000:])
        return [f"_bench/micro/run.sh failed with status {r.returncode}_"]
    lines = ["| benchmark | ns per op |", "|---|---:|"]
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            lines.append(f"| {parts[0]} | {parts[1]} |")
    return lines


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke-test sizes (~4 min with all configurations)")
    ap.add_argument("--fpio", default=os.environ.get(
        "FPIO_PASSTHROUGH", os.path.join(os.environ.get("FPIO_BUILDDIR", os.path.join(REPO, "build")),
                                         "examples", "fpio-passthrough")))
    ap.add_argument("--fpio318", default=os.environ.get(
        "FPIO318_PASSTHROUGH", os.path.join(os.environ.get("FPIO318_BUILDDIR", os.path.join(REPO, "build-318")),
                                            "examples", "fpio-passthrough")),
                    help="fpio's example server built against libfuse 3.18.3")
    ap.add_argument("--passthrough-hp", default=os.environ.get("PASSTHROUGH_HP"),
                    help="libfuse 3.17.2's passthrough_hp")
    ap.add_argument("--passthrough-hp-318", default=os.environ.get("PASSTHROUGH_HP_318"),
                    help="libfuse 3.18.3's passthrough_hp")
    ap.add_argument("--openbench", required=True)
    ap.add_argument("--configs", help="comma list (native is always included)")
    ap.add_argument("--workloads", help="comma list")
    ap.add_argument("--results", default=os.path.join(HERE, "results"))
    args = ap.parse_args()
    global OPENBENCH
    OPENBENCH = args.openbench
    if os.geteuid() != 0:
        raise SystemExit("bench must run as root (mounts, drop_caches, passthrough needs CAP_SYS_ADMIN)")

    s = make_settings(args.quick)
    cfgs = make_configs(args)
    wls = make_workloads(args)
    for c in cfgs:
        if c.skip:
            log(f"SKIP {c.name}: {c.skip}")
    active = [c for c in cfgs if not c.skip]

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    work = s["work"]
    os.makedirs(os.path.join(work, "logs"), exist_ok=True)
    for f in os.listdir(os.path.join(work, "logs")):
        os.unlink(os.path.join(work, "logs", f))
    State.pidfile = os.path.join(work, "daemons.pids")
    State.uring_file = os.path.join(work, "enable_uring.saved")
    State.save()
    results = {}
    load_start = os.getloadavg()[0]
    t_start = time.monotonic()
    try:
        if any(c.uring for c in active):
            uring_enable()
        tmpfs = os.path.join(work, "tmpfs")
        os.makedirs(tmpfs, exist_ok=True)
        if mountinfo().get(tmpfs) == "tmpfs":
            subprocess.run(["umount", tmpfs], check=True)   # leftover of a killed run
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={s['tmpfs_mb']}m,mode=0755", "fpio-bench", tmpfs],
                       check=True)
        State.tmpfs = tmpfs
        ext4 = s["ext4_dir"]
        shutil.rmtree(ext4, ignore_errors=True)
        os.makedirs(ext4)
        fstype = subprocess.run(["findmnt", "-no", "FSTYPE", "-T", ext4], capture_output=True, text=True).stdout.strip()
        if fstype != "ext4":
            log(f"WARNING: {ext4} is on {fstype}, not ext4 (set BENCH_EXT4_DIR)")
        backing = {"tmpfs": os.path.join(tmpfs, "b"), "ext4": os.path.join(ext4, "b")}
        for b in backing.values():
            os.makedirs(b, exist_ok=True)
        log(f"preparing backing files (tmpfs {s['tmpfs_mb']} MiB at {tmpfs}, ext4 at {ext4})")
        for wl in wls:
            wl.prepare(backing[wl.fs], s)

        plan = []
        for rnd in range(s["rounds"]):
            for wl in wls:
                # Rotate the config order each round so no config always runs first.
                order = active[rnd % len(active):] + active[:rnd % len(active)]
                for c in order:
                    if c.native and not wl.native_ok:
                        continue
                    plan.append((rnd, wl, c))
        total = len(plan)
        for i, (rnd, wl, c) in enumerate(plan, 1):
            if c.failed:
                continue
            t0 = time.monotonic()
            try:
                value, counters = measure(c, wl, s, backing[wl.fs], rnd + 1)
            except ConfigFailed as e:
                c.failed = str(e)
                log(f"[{i:3}/{total}] round {rnd + 1} {wl.name:26} {c.name:19} FAILED: {e}")
                log(f"  {c.name}: no further runs of this configuration")
                continue
            results.setdefault((wl.name, c.name), []).append((value, counters))
            el = time.monotonic() - t_start
            eta = el / i * (total - i)
            extra = ""
            if counters:
                extra = " (server READ {} WRITE {} GETXATTR {})".format(
                    counters.get("req_read", "?"), counters.get("req_write", "?"),
                    counters.get("req_getxattr", "?"))
            log(f"[{i:3}/{total}] round {rnd + 1} {wl.name:26} {c.name:19} "
                f"{fmt(value, wl.unit):>10} {wl.unit:5} {time.monotonic() - t0:5.1f}s  "
                f"elapsed {el:4.0f}s eta {eta:4.0f}s{extra}")
    finally:
        cleanup_all()
        shutil.rmtree(s["ext4_dir"], ignore_errors=True)

    micro = run_micro()
    meta = dict(date=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
                host=platform.node(), kernel=platform.release(), cpus=os.cpu_count(),
                cpu=cpu_model(), git=git_rev(), libfuse=libfuse_summary(active),
                tmpfs=f"{s['tmpfs_mb']} MiB", quick=args.quick, micro=micro,
                # Other jobs on the box skew absolute figures; say how busy it was.
                load=f"{load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end",
                wall=f"{time.monotonic() - t_start:.0f} s")
    rows = summarize(results, cfgs, wls)
    os.makedirs(args.results, exist_ok=True)
    # Every run gets its own dated files; bench/results/latest names the newest run
    # that can stand as a result: full sizes, every configuration and workload, none
    # failed or skipped, and every fpio passthrough configuration live.
    final = not (args.quick or args.configs or args.workloads or any(c.failed or c.skip for c in cfgs)
                 or not_live(rows, cfgs))
    run_name = datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + \
        ("" if final else "-quick" if args.quick else "-partial")
    md = os.path.join(args.results, f"{run_name}.md")
    png = os.path.join(args.results, f"{run_name}.png")
    write_markdown(md, rows, cfgs, wls, s, meta)
    have_png = write_chart(png, rows, cfgs, wls, meta)
    with open(os.path.join(args.results, f"{run_name}.json"), "w") as f:
        json.dump(dict(meta=meta, settings=s, rows=rows,
                       raw={f"{k[0]}|{k[1]}": v for k, v in results.items()}), f, indent=1)
    if final:
        with open(os.path.join(args.results, "latest"), "w") as f:
            f.write(run_name + "\n")
    log(f"done in {time.monotonic() - t_start:.0f}s: {md}" + (f", {png}" if have_png else "")
        + ("; bench/results/latest now names it" if final else
           "; not a complete run, bench/results/latest left as it was"))
    print()
    with open(md) as f:
        print(f.read())
    failed = [c for c in cfgs if c.failed]
    if failed:
        log("FAILED configurations: " + ", ".join(c.name for c in failed))
        return 1
    return 0


def libfuse_summary(cfgs):
    by = {}
    for c in cfgs:
        if not c.native:
            by.setdefault(libfuse_of(c.argv[0]) or "unknown", []).append(c.name)
    return "; ".join(f"{v} ({', '.join(names)})" for v, names in sorted(by.items()))


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def git_rev():
    r = subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"], capture_output=True, text=True)
    return r.stdout.strip() or "unknown"


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as e:
        cleanup_all()
        log(f"interrupted ({e}); mounts and daemons cleaned up")
        sys.exit(130)
