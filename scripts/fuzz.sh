#!/usr/bin/env bash
# Fuzzes every parser and reply patcher with cargo-fuzz (libFuzzer), each for
# SECONDS (default 150, so the four targets take 10 minutes). Installs
# cargo-fuzz if missing; needs the nightly toolchain that rustup has here.
# Usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-150}
export PATH="$HOME/.cargo/bin:$PATH"
command -v cargo-fuzz >/dev/null || cargo install --quiet --locked cargo-fuzz
cd "$root/fuzz"
for t in init_request init_reply open_reply bookkeeping; do
  echo "=== fuzz $t for ${secs}s"
  mkdir -p "corpus/$t"
  log="$root/fuzz/$t.log"
  if ! cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz $t: CRASH (artifact under fuzz/artifacts/$t)" >&2
    exit 1
  fi
  grep -E '^stat::number_of_executed_units|^Done [0-9]+ runs' "$log" || tail -3 "$log"
done
echo "fuzzing done: no crash"
