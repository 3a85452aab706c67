#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (as root) and runs every fpio test, mount
# tests included, against each libfuse: the system's 3.14 and, unless
# --system-only, libfuse 3.17.2 built from Debian 13's source package.
# A skipped test is a failure here (FPIO_REQUIRE_MOUNT=1).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
only_system=0
[ "${1:-}" = --system-only ] && only_system=1

"$root/scripts/setup-deps.sh"
export PATH="$HOME/.cargo/bin:$PATH"
export FPIO_REQUIRE_MOUNT=1

total_ok=0 total_fail=0
run_suite() { # name, build dir, [PKG_CONFIG_PATH]
  local name=$1 dir=$2 pcp=${3:-}
  echo "=== fpio tests against $name ($dir)"
  rm -rf "$dir"
  PKG_CONFIG_PATH="$pcp" meson setup "$dir" >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log"; return 1; }
  local rc=0
  meson test -C "$dir" --print-errorlogs --num-processes 1 || rc=$?
  local log="$dir/meson-logs/testlog.json"
  local ok fail skip
  ok=$(python3 -c 'import json,sys; print(sum(1 for l in open(sys.argv[1]) if json.loads(l)["result"]=="OK"))' "$log")
  fail=$(python3 -c 'import json,sys; print(sum(1 for l in open(sys.argv[1]) if json.loads(l)["result"] not in ("OK","SKIP")))' "$log")
  skip=$(python3 -c 'import json,sys; print(sum(1 for l in open(sys.argv[1]) if json.loads(l)["result"]=="SKIP"))' "$log")
  echo "=== $name: $ok passed, $fail failed, $skip skipped"
  total_ok=$((total_ok + ok)); total_fail=$((total_fail + fail + skip))
  [ "$rc" = 0 ] && [ "$skip" = 0 ]
}

status=0
run_suite "system libfuse $(pkg-config --modversion fuse3)" build-test-system || status=1
if [ "$only_system" = 0 ] && [ -x "$root/scripts/libfuse317.sh" ]; then
  pcdir=$("$root/scripts/libfuse317.sh" | tail -1)
  run_suite "libfuse 3.17.2" build-test-317 "$pcdir" || status=1
fi
echo "all suites: $total_ok passed, $total_fail failed"
exit "$status"
