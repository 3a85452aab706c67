#!/bin/bash
# One command for the side-by-side benchmark (the backing dir itself, libfuse
# 3.17.2's passthrough_hp and fpio's example server; see bench/README.md):
#   bench/run.sh [--quick] [--configs a,b] [--workloads x,y] [--fpio PATH]
# Installs what it needs (fio, python3-matplotlib), builds libfuse 3.17.2's
# passthrough_hp with scripts/libfuse317.sh, builds the openbench helper, then
# runs bench/bench.py. Results: bench/results/latest.{md,png,json} + a timestamped copy.
# Sizes: BENCH_ROUNDS BENCH_SEQ_MB BENCH_DD_MB BENCH_RAND_MB BENCH_RUNTIME
#        BENCH_META_SECONDS BENCH_NFILES BENCH_RSS_OPENS BENCH_EXT4_DIR (see bench/README.md).
# fpio server: $FPIO_PASSTHROUGH, else $FPIO_BUILDDIR/examples/fpio-passthrough,
#              else <repo>/build/examples/fpio-passthrough.
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
  echo "bench: libfuse 3.17.2 (scripts/libfuse317.sh)"
  pcdir=$("$repo/scripts/libfuse317.sh" | tail -1)
  PASSTHROUGH_HP=$(PKG_CONFIG_PATH=$pcdir pkg-config --variable=prefix fuse3)/bin/passthrough_hp
  export PASSTHROUGH_HP
fi

# fpio itself: the example server from a release build of this checkout,
# unless the caller points at one (FPIO_PASSTHROUGH / FPIO_BUILDDIR / --fpio).
if [ -z "${FPIO_PASSTHROUGH:-}" ] && [ -z "${FPIO_BUILDDIR:-}" ] && [[ " $* " != *" --fpio "* ]]; then
  "$repo/scripts/setup-deps.sh" >/dev/null
  export PATH="$HOME/.cargo/bin:$PATH"
  FPIO_BUILDDIR="$repo/build-bench"
  [ -f "$FPIO_BUILDDIR/build.ninja" ] || meson setup "$FPIO_BUILDDIR" "$repo" --buildtype=release >/dev/null
  echo "bench: building fpio ($FPIO_BUILDDIR)"
  ninja -C "$FPIO_BUILDDIR" examples/fpio-passthrough >/dev/null
  export FPIO_BUILDDIR
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
