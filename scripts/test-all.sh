#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (as root) and runs every fpio test:
#   1. the meson suite (Rust unit, C unit, packaging, real mounts, reliability)
#      against the system libfuse 3.14;
#   2. the same suite, plus the libfuse 3.17-only scenarios, against libfuse
#      3.17.2 built from Debian 13's source package (scripts/libfuse-build.sh);
#   3. the same suite against libfuse 3.18.3 built from Debian sid's source
#      package with upstream defaults (custom io refused, io_uring compiled in);
#   4. the mount suite against 3.18.3 again, every server started with
#      `-o io_uring` (FPIO_SERVER_OPTS) and required to hold an io_uring
#      (FPIO_REQUIRE_IO_URING=1); the fuse module's enable_uring parameter is set
#      to 1 for this phase only and put back as it was on every way out;
#   5. the C tests under ASan+UBSan and under valgrind (scripts/test-sanitizers.sh);
#   6. the kernel tier: stock and patched Linux 7.3 kernels (lockdep, KASAN) in qemu (kernel/run-tier.sh);
#   7. the Debian packages: release tarball, .deb build offline, install, consumers
#      and the fuse-overlayfs adopter against them (scripts/test-packages.sh).
# A skipped test is a failure here (FPIO_REQUIRE_MOUNT=1). The last line is
# 'all suites: N passed, N failed' over every phase.
#   test-all.sh [--no-317] [--no-318] [--no-sanitizers] [--no-kernel]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
want_317=1 want_318=1 want_san=1 want_kernel=1
for a in "$@"; do
  case $a in
  --no-317) want_317=0 ;;
  --no-318) want_318=0 ;;
  --no-sanitizers) want_san=0 ;;
  --no-kernel) want_kernel=0 ;;
  *) echo "usage: $0 [--no-317] [--no-318] [--no-sanitizers] [--no-kernel]" >&2; exit 2 ;;
  esac
done

"$root/scripts/setup-deps.sh"
export PATH="$HOME/.cargo/bin:$PATH"
export FPIO_REQUIRE_MOUNT=1

total_ok=0 total_fail=0 status=0
summary=()
# tally LOG...: meson JSON test logs -> "N passed, N failed" added to the
# totals (in this shell, so call it directly, not in $(...)); non-zero on any
# non-OK result or none at all.
tally() {
  local ok bad
  read -r ok bad < <(python3 - "$@" <<'PY' || echo "0 1"
import json, sys
r = [json.loads(l)["result"] for f in sys.argv[1:] for l in open(f)]
ok = r.count("OK")
print(ok, len(r) - ok)
PY
  )
  total_ok=$((total_ok + ok)) total_fail=$((total_fail + bad))
  counts="$ok passed, $bad failed"
  [ "$bad" = 0 ] && [ "$ok" -gt 0 ]
}
phase_done() { # name, t0, rc, counts
  summary+=("$(printf '%-28s %-4s %s, %d s' "$1" "$([ "$3" = 0 ] && echo OK || echo FAIL)" "$4" $((SECONDS - $2)))")
  [ "$3" = 0 ] || status=1
}

run_suite() { # name, build dir, [PKG_CONFIG_PATH]
  local name=$1 dir=$2 pcp=${3:-} t0=$SECONDS rc=0 setup_log
  echo "=== fpio tests against $name ($dir)"
  rm -rf "$dir"
  setup_log=$(mktemp)
  if ! PKG_CONFIG_PATH="$pcp" meson setup "$dir" >"$setup_log" 2>&1; then
    cat "$setup_log"; rm -f "$setup_log"
    total_fail=$((total_fail + 1)); phase_done "$name" "$t0" 1 "setup failed"; return
  fi
  rm -f "$setup_log"
  meson test -C "$dir" --print-errorlogs --num-processes 1 || rc=$?
  tally "$dir/meson-logs/testlog.json" || rc=1
  phase_done "$name" "$t0" "$rc" "$counts"
}

# FUSE over io_uring needs the fuse module's enable_uring=1, off by default: on
# only while the io_uring phase runs, and restored on every exit path.
uring_param=/sys/module/fuse/parameters/enable_uring
uring_saved=
restore_uring() {
  [ -n "$uring_saved" ] || return 0
  if echo "$uring_saved" >"$uring_param"; then
    echo "test-all: $uring_param restored to $uring_saved"
  else
    echo "test-all: WARNING: could not restore $uring_param to $uring_saved" >&2
  fi
  uring_saved=
}
uring_tests=   # the meson test run of that phase, while it runs
# shellcheck disable=SC2317 # reached from the traps below
on_signal() {
  if [ -n "$uring_tests" ]; then
    kill -TERM "$uring_tests" 2>/dev/null || true
    wait "$uring_tests" 2>/dev/null || true # its failure must not end us before the restore
  fi
  restore_uring
  exit "$1"
}
trap restore_uring EXIT
trap 'on_signal 129' HUP
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

run_mount_io_uring() { # name, build dir (set up by run_suite)
  local name=$1 dir=$2 t0=$SECONDS rc=0
  echo "=== fpio mount suite over io_uring against $name ($dir)"
  if [ ! -f "$dir/build.ninja" ]; then
    total_fail=$((total_fail + 1)); phase_done "$name, io_uring" "$t0" 1 "no build in $dir"; return
  fi
  if [ ! -w "$uring_param" ]; then
    echo "test-all: $uring_param missing: this kernel has no FUSE over io_uring" >&2
    total_fail=$((total_fail + 1)); phase_done "$name, io_uring" "$t0" 1 "no enable_uring"; return
  fi
  uring_saved=$(cat "$uring_param")
  echo 1 >"$uring_param"
  # In the background so that a signal's trap runs at once, not after the suite.
  FPIO_SERVER_OPTS="-o io_uring" FPIO_REQUIRE_IO_URING=1 \
    meson test -C "$dir" --suite mount --print-errorlogs --num-processes 1 \
    --logbase testlog-io-uring &
  uring_tests=$!
  wait "$uring_tests" || rc=$?
  uring_tests=
  restore_uring
  tally "$dir/meson-logs/testlog-io-uring.json" || rc=1
  phase_done "$name, io_uring" "$t0" "$rc" "$counts"
}

# A libfuse that cannot be built fails its phase; the other phases still run.
run_libfuse_suite() { # version, build dir
  local version=$1 dir=$2 t0=$SECONDS pcdir
  if ! pcdir=$("$root/scripts/libfuse-build.sh" "$version" | tail -1); then
    rm -rf "$dir"
    total_fail=$((total_fail + 1)); phase_done "libfuse $version" "$t0" 1 "libfuse build failed"; return
  fi
  run_suite "libfuse $version" "$dir" "$pcdir"
}

run_suite "libfuse $(pkg-config --modversion fuse3) (system)" build-test-system
if [ "$want_317" = 1 ]; then
  run_libfuse_suite 3.17.2 build-test-317
fi
if [ "$want_318" = 1 ]; then
  run_libfuse_suite 3.18.3 build-test-318
  run_mount_io_uring "libfuse 3.18.3" build-test-318
fi
if [ "$want_san" = 1 ]; then
  t0=$SECONDS rc=0
  FPIO_SAN_BUILD_PREFIX="$root/build-test-san" "$root/scripts/test-sanitizers.sh" || rc=$?
  tally "$root"/build-test-san-*/all-results.json || rc=1
  phase_done "sanitizers (ASan+UBSan, valgrind)" "$t0" "$rc" "$counts"
fi
if [ "$want_kernel" = 1 ]; then
  t0=$SECONDS rc=0
  log=$(mktemp)
  FPIO_BUILD_DIR="$root/build-test-system" "$root/kernel/run-tier.sh" 2>&1 | tee "$log" || rc=$?
  line=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$log" | tail -1 | grep -oE '[0-9]+ passed, [0-9]+ failed' || true)
  rm -f "$log"
  if [ -n "$line" ]; then
    total_ok=$((total_ok + ${line%% *})); nf=${line#*, }; total_fail=$((total_fail + ${nf%% *}))
  else
    total_fail=$((total_fail + 1)); line="no result line"; rc=1
  fi
  phase_done "kernel tier (stock + patched 7.3 VM)" "$t0" "$rc" "$line"
fi

t0=$SECONDS rc=0 res=$(mktemp)
"$root/scripts/test-packages.sh" --results "$res" || rc=$?
tally "$res" || rc=1
rm -f "$res"
phase_done "Debian packages (tarball, .deb, install, adopter)" "$t0" "$rc" "$counts"

echo "=== summary"
printf '  %s\n' "${summary[@]}"
echo "all suites: $total_ok passed, $total_fail failed"
exit "$status"
