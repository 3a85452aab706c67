#!/bin/bash
# One command for the side-by-side benchmark:
#   bench/run.sh [--quick] [--configs a,b] [--workloads x,y] [--fpio PATH] [--fpio318 PATH]
# Installs what it needs (fio, python3-matplotlib), builds libfuse 3.17.2's and
# 3.18.3's passthrough_hp with scripts/libfuse-build.sh, builds fpio's example
# server from this checkout against the system libfuse and against 3.18.3, builds
# the openbench helper, then runs bench/bench.py. Results:
# bench/results/<date>-<time>.{md,png,json}; bench/results/latest names the newest
# complete run.
# Sizes: BENCH_ROUNDS BENCH_SEQ_MB BENCH_DD_MB BENCH_RAND_MB BENCH_RUNTIME
#        BENCH_META_SECONDS BENCH_NFILES BENCH_RSS_OPENS BENCH_EXT4_DIR (see bench/README.md).
# fpio server: $FPIO_PASSTHROUGH, else $FPIO_BUILDDIR/examples/fpio-passthrough,
#              else built here in <repo>/build-bench; on 3.18.3 likewise
#              $FPIO318_PASSTHROUGH, $FPIO318_BUILDDIR, else <repo>/build-bench-318.
# passthrough_hp: $PASSTHROUGH_HP (3.17.2), $PASSTHROUGH_HP_318, else built here.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
# Mounts live outside the repo so that tools walking the tree never enter them.
work=${BENCH_WORK:-/var/tmp/fpio-bench-work}
export BENCH_WORK=$work

if [ "$(id -u)" != 0 ]; then
  echo "bench/run.sh: must run as root (mounts, drop_caches, FUSE passthrough needs CAP_SYS_ADMIN)" >&2
  exit 1
fi

# Backstop if bench.py dies too hard to clean up itself: lazily unmount only the
# mounts under our work dir and kill only the daemon PIDs bench.py recorded.
cleanup() {
  local rc=$?
  if [ -f "$work/daemons.pids" ]; then
    while read -r pid mnt; do
      [ -n "$pid" ] || continue
      if mountpoint -q "$mnt" 2>/dev/null; then umount -l "$mnt" || true; fi
      # Only if the PID still runs a command naming our mountpoint (guards against PID reuse).
      if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$mnt"; then
        kill "$pid" 2>/dev/null || true
      fi
    done < "$work/daemons.pids"
  fi
  for m in "$work/mnt" "$work/tmpfs"; do
    if mountpoint -q "$m" 2>/dev/null; then umount -l "$m" || true; fi
  done
  # bench.py sets the fuse module's enable_uring to 1 for io_uring configurations
  # and keeps the value it found in this file until it has put it back.
  if [ -f "$work/enable_uring.saved" ]; then
    cat "$work/enable_uring.saved" >/sys/module/fuse/parameters/enable_uring && rm -f "$work/enable_uring.saved"
  fi
  exit $rc
}
trap cleanup EXIT

need_pkgs=""
command -v fio >/dev/null || need_pkgs="$need_pkgs fio"
command -v gcc >/dev/null || need_pkgs="$need_pkgs gcc libc6-dev"
command -v fusermount3 >/dev/null || need_pkgs="$need_pkgs fuse3"
# Debian's python3 (not a pyenv one) so that Debian's matplotlib is importable.
PY=/usr/bin/python3
[ -x $PY ] || need_pkgs="$need_pkgs python3"
[ -x $PY ] && $PY -c 'import matplotlib' 2>/dev/null || need_pkgs="$need_pkgs python3-matplotlib"
if [ -n "$need_pkgs" ]; then
  echo "bench: installing$need_pkgs"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends $need_pkgs >/dev/null \
    || { apt-get update -q >/dev/null; apt-get install -y -q --no-install-recommends $need_pkgs >/dev/null; }
fi

if [ -z "${PASSTHROUGH_HP:-}" ]; then
  echo "bench: libfuse 3.17.2 (scripts/libfuse-build.sh 3.17.2)"
  pcdir=$("$repo/scripts/libfuse-build.sh" 3.17.2 | tail -1)
  PASSTHROUGH_HP=$(PKG_CONFIG_PATH=$pcdir pkg-config --variable=prefix fuse3)/bin/passthrough_hp
  export PASSTHROUGH_HP
fi
echo "bench: libfuse 3.18.3 (scripts/libfuse-build.sh 3.18.3)"
pcdir318=$("$repo/scripts/libfuse-build.sh" 3.18.3 | tail -1)
if [ -z "${PASSTHROUGH_HP_318:-}" ]; then
  PASSTHROUGH_HP_318=$(PKG_CONFIG_PATH=$pcdir318 pkg-config --variable=prefix fuse3)/bin/passthrough_hp
  export PASSTHROUGH_HP_318
fi

# fpio itself: the example server from a release build of this checkout, against
# the system libfuse and against 3.18.3, unless the caller points at one.
build_fpio() { # builddir, PKG_CONFIG_PATH
  "$repo/scripts/setup-deps.sh" >/dev/null
  export PATH="$HOME/.cargo/bin:$PATH"
  [ -f "$1/build.ninja" ] ||
    PKG_CONFIG_PATH=$2 meson setup "$1" "$repo" --buildtype=release >/dev/null
  echo "bench: building fpio ($1)"
  ninja -C "$1" examples/fpio-passthrough >/dev/null
}
if [ -z "${FPIO_PASSTHROUGH:-}" ] && [ -z "${FPIO_BUILDDIR:-}" ] && [[ " $* " != *" --fpio "* ]]; then
  FPIO_BUILDDIR="$repo/build-bench"
  build_fpio "$FPIO_BUILDDIR" "${PKG_CONFIG_PATH:-}"
  export FPIO_BUILDDIR
fi
if [ -z "${FPIO318_PASSTHROUGH:-}" ] && [ -z "${FPIO318_BUILDDIR:-}" ] && [[ " $* " != *" --fpio318 "* ]]; then
  FPIO318_BUILDDIR="$repo/build-bench-318"
  build_fpio "$FPIO318_BUILDDIR" "$pcdir318"
  export FPIO318_BUILDDIR
fi

mkdir -p "$work"
if [ ! -x "$work/openbench" ] || [ "$here/openbench.c" -nt "$work/openbench" ]; then
  gcc -O2 -Wall -Wextra -Werror -pthread -o "$work/openbench" "$here/openbench.c"
fi

# bench.py runs in the background so a signal to this script reaches it at once
# (bash defers traps while a foreground child runs); it then cleans up and exits.
$PY "$here/bench.py" --openbench "$work/openbench" "$@" &
py=$!
trap 'kill -TERM "$py" 2>/dev/null || true' INT TERM HUP
set +e
wait "$py"; rc=$?
while kill -0 "$py" 2>/dev/null; do wait "$py"; rc=$?; done
set -e
exit "$rc"
