#!/usr/bin/env bash
# The C tests under sanitizers and valgrind, as root on a machine with
# /dev/fuse (a skipped mount test is a failure here: FPIO_REQUIRE_MOUNT=1):
#   asan      meson -Db_sanitize=address,undefined -Db_lundef=false: the unit and
#             mount suites, plus a few reliability tests that drive the server's
#             request paths hardest. The example server and the test programs are
#             instrumented; the Rust library is not (cargo builds it), but ASan's
#             allocator and LeakSanitizer see its mallocs. meson test sets
#             ASAN_OPTIONS/UBSAN_OPTIONS so that any report aborts the program.
#   valgrind  meson -Dvalgrind=true: the unit tests and the example server run
#             under memcheck (--error-exitcode=1 --leak-check=full, definite and
#             possible leaks count as errors): any error or leak makes the server
#             exit 1, which the mount harness turns into a failure.
#
#   rust-asan the Rust unit tests under AddressSanitizer (nightly -Zsanitizer=address),
#             or under valgrind's memcheck on a machine without a nightly toolchain
#
#   scripts/test-sanitizers.sh [asan|valgrind|rust-asan]...   (default: all three)
# Env: FPIO_SAN_BUILD_PREFIX (default ./build-san), FPIO_SAN_ASAN_TESTS and
# FPIO_SAN_VALGRIND_TESTS (meson test selections, separated by ";"; defaults below).
# Exits non-zero if any phase fails; ends with a summary table.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
phases=("$@")
[ ${#phases[@]} -gt 0 ] || phases=(asan valgrind rust-asan)
prefix=${FPIO_SAN_BUILD_PREFIX:-$root/build-san}

[ -x "$root/scripts/setup-deps.sh" ] && "$root/scripts/setup-deps.sh"
export PATH="$HOME/.cargo/bin:$PATH"
export FPIO_REQUIRE_MOUNT=1

# Under ASan: everything in the unit and mount suites, and from the reliability
# suite the tests whose I/O goes through the server (direct mode), reply faults
# and server death. (The 60 s stress and the full fio matrix add little here.)
asan_tests=${FPIO_SAN_ASAN_TESTS:-"--suite unit --suite mount; integrity-direct-buffered faults-reply server-death-direct"}
# Under valgrind: the unit tests, every mount test, and two reliability tests
# through the server's I/O and reply-undo paths. (Add new mount tests here by name.)
valgrind_tests=${FPIO_SAN_VALGRIND_TESTS:-"api session passthrough-live parallel-writers sharing
  mode-conflicts fallback-no-passthrough fallback-direct fallback-cached setuid-passthrough
  setuid-direct killpriv integrity-direct-buffered faults-reply"}

summary=()
status=0

# run_phase NAME BUILD_DIR "MESON_SETUP_ARGS" "TEST_SELECTION"
run_phase() {
  local name=$1 dir=$2 setup_args=$3 sel=$4 t0=$SECONDS rc=0 counts
  echo "=== $name: meson setup $setup_args ($dir)"
  rm -rf "$dir"
  # shellcheck disable=SC2086
  if ! meson setup "$dir" $setup_args >"$dir.setup.log" 2>&1; then
    cat "$dir.setup.log"
    summary+=("$(printf '%-9s setup failed (%s.setup.log)' "$name" "$dir")")
    status=1
    return
  fi
  # One meson test run per ';'-separated selection (meson intersects --suite
  # with test names given in the same run); their logs are concatenated.
  local sels one log=$dir/all-results.json
  : >"$log"
  IFS=';' read -r -a sels <<<"${sel//$'\n'/ }"
  for one in "${sels[@]}"; do
    # shellcheck disable=SC2086
    meson test -C "$dir" --print-errorlogs --num-processes 1 $one || rc=$?
    cat "$dir/meson-logs/testlog.json" >>"$log" 2>/dev/null || rc=1
  done
  counts=$(python3 - "$log" <<'EOF'
import json, sys
r = [json.loads(l)["result"] for l in open(sys.argv[1])]
ok = r.count("OK"); skip = r.count("SKIP"); bad = len(r) - ok - skip
print(f"{len(r)} tests: {ok} passed, {bad} failed, {skip} skipped")
EOF
  ) || counts="no test log"
  [[ $counts == *" 0 failed, 0 skipped" ]] || rc=1
  [ "$rc" = 0 ] || status=1
  summary+=("$(printf '%-9s %-4s %s, %d s' "$name" "$([ "$rc" = 0 ] && echo OK || echo FAIL)" \
    "$counts" $((SECONDS - t0)))")
}

# The Rust unit tests (the pure core: parsers, negotiation, registry, replies)
# under AddressSanitizer with a nightly toolchain where the machine has one (it
# stands in for miri, whose rustup component cannot be installed here), and
# under valgrind's memcheck where it has none: Debian's rustc ships no ASan
# runtime. Either way the phase runs and gives one result.
run_rust_memcheck() {
  local dir=$prefix-rust-asan t0=$SECONDS rc=0 res tool exe
  rm -rf "$dir" && mkdir -p "$dir"
  if cargo +nightly --version >/dev/null 2>&1; then
    tool="ASan (nightly)"
    echo "=== rust-asan: cargo +nightly test --lib -Zsanitizer=address ($dir)"
    RUSTFLAGS="-Zsanitizer=address" cargo +nightly test --locked --lib \
      --manifest-path "$root/Cargo.toml" --target x86_64-unknown-linux-gnu \
      --target-dir "$dir/target" || rc=$?
  else
    tool="valgrind (no nightly toolchain)"
    echo "=== rust-asan: no nightly toolchain; cargo test --lib under valgrind ($dir)"
    exe=$(cargo test --locked --lib --no-run --manifest-path "$root/Cargo.toml" \
      --target-dir "$dir/target" 2>&1 | sed -n 's/.*Executable unittests src\/lib\.rs (\(.*\))$/\1/p')
    if [ -x "$exe" ]; then
      valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
        "$exe" --test-threads=2 || rc=$?
    else
      echo "rust-asan: no unit test executable built" >&2
      rc=1
    fi
  fi
  res=$([ "$rc" = 0 ] && echo OK || echo FAIL)
  # One result line in meson's log format, so callers count it like the others.
  printf '{"name": "rust-asan", "result": "%s"}\n' "$res" >"$dir/all-results.json"
  [ "$rc" = 0 ] || status=1
  summary+=("$(printf '%-9s %-4s cargo test --lib under %s, %d s' rust-asan "$res" "$tool" $((SECONDS - t0)))")
}

for p in "${phases[@]}"; do
  case $p in
  rust-asan) run_rust_memcheck ;;
  asan)
    run_phase asan "$prefix-asan" "-Db_sanitize=address,undefined -Db_lundef=false" "$asan_tests"
    ;;
  valgrind)
    command -v valgrind >/dev/null || { echo "valgrind is not installed"; exit 1; }
    run_phase valgrind "$prefix-valgrind" "-Dvalgrind=true" "$valgrind_tests"
    ;;
  *)
    echo "usage: $0 [asan|valgrind|rust-asan]..." >&2
    exit 2
    ;;
  esac
done

echo "=== sanitizer summary (total ${SECONDS} s)"
printf '  %s\n' "${summary[@]}"
exit "$status"
