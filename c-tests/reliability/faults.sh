#!/bin/bash
# Fault injection (FPIO_TEST_FAULTS, read by the server's fpio_session_new):
#   faults.sh EPERM|ENOMEM|EMFILE|ELOOP   30% of backing registrations fail
#                                         with that errno: those opens fall back
#   faults.sh reply                       10% of open replies fail: fpio answers
#                                         the open with EINTR and undoes it
#   faults.sh mixed                       both (EMFILE)
# Workloads: a 10 s open storm (16 threads, content checked), a 10 s stress mix
# and the 64 MiB write/read-back. Every open succeeds, or fails with EINTR where
# reply faults are on; nothing leaks; the data is intact.
source "$(dirname "$0")/../lib/mount.sh"
source "$(dirname "$0")/lib/rel.sh"

secs=${FPIO_FAULT_SECONDS:-10}
case ${1:-} in
EPERM | ENOMEM | EMFILE | ELOOP) spec="register=$1:30" reg=$1 reply=0 ;;
reply) spec="reply=ENOENT:10" reg= reply=1 ;;
mixed) spec="register=EMFILE:30,reply=ENOENT:10" reg=EMFILE reply=1 ;;
*) fail "usage: faults.sh EPERM|ENOMEM|EMFILE|ELOOP|reply|mixed" ;;
esac
storm_args=()
((reply)) && storm_args=(--allow-eintr)
declare -A errno_of=([EPERM]=1 [ENOMEM]=12 [EMFILE]=24 [ELOOP]=40)

src=$FPIO_TMP/src
mkdir -m 755 "$src"
for ((i = 0; i < 8; i++)); do head -c 10000 /dev/urandom >"$src/f$i"; done

# Only the server gets the faults.
export FPIO_TEST_FAULTS="$spec,seed=$RANDOM"
fpio_log "FPIO_TEST_FAULTS=$FPIO_TEST_FAULTS"
fpio_mount "$src" "$FPIO_TMP/mnt" --mode=passthrough --threads=8
unset FPIO_TEST_FAULTS
fpio_snapshot
fpio_expect_status live # the probe at INIT is no backing registration of a file
base_fds=$(rel_fds)

# relstorm MODE: run it through the mount; it must end without unexpected errors.
relstorm() {
  local out=$FPIO_TMP/relstorm.$1.out
  "$FPIO_RELSTORM" "$1" --threads 16 --seconds "$secs" --files "${2:-8}" "${storm_args[@]}" \
    "$FPIO_MNT" >"$out" || { cat "$out" >&2; fail "relstorm $1 under faults"; }
  cat "$out" >&2
  eintr=$(sed -n 's/.* eintr=\([0-9]*\) .*/\1/p' "$out")
}

# eintr_retry COMMAND...: with reply faults an open may fail with EINTR, as an
# interrupted open does; a program then retries. Anything else fails.
eintr_retry() {
  local i err=$FPIO_TMP/retry.err
  for ((i = 0; i < 30; i++)); do
    "$@" 2>"$err" && return 0
    grep -q 'Interrupted system call' "$err" && ((reply)) || { cat "$err" >&2; return 1; }
    retries=$((retries + 1))
  done
  return 1
}

relstorm opens
opens_eintr=$eintr
relstorm stress 32
stress_eintr=$eintr

# The 64 MiB write/read-back, with retries of interrupted opens.
retries=0
ref=$FPIO_TMP/big.ref
head -c $((64 << 20)) /dev/urandom >"$ref"
eintr_retry dd if="$ref" of="$FPIO_MNT/big" bs=1M conv=fsync status=none || fail "writing 64 MiB"
fpio_drop_caches
eintr_retry cmp "$ref" "$FPIO_MNT/big" || fail "64 MiB read back through the mount differs"
cmp "$ref" "$src/big" || fail "64 MiB backing file differs"
fpio_log "ok: 64 MiB written and read back intact ($retries interrupted opens retried)"

fpio_snapshot
fpio_log "info: opens passthrough $(fpio_val opens_passthrough), direct $(fpio_val opens_direct)," \
  "shared direct $(fpio_val opens_shared_direct); fallback_register_failed" \
  "$(fpio_val fallback_register_failed); reply_failed $(fpio_val reply_failed);" \
  "EINTR seen: open storm $opens_eintr, stress $stress_eintr"
fpio_expect opens_passthrough -gt 0
fpio_expect busy_refused -eq 0
if [ -n "$reg" ]; then
  fpio_expect fallback_register_failed -gt 0
  fpio_expect opens_direct -gt 0
  fpio_expect register_errno -eq "${errno_of[$reg]}"
else
  fpio_expect fallback_register_failed -eq 0
fi
if ((reply)); then
  fpio_expect reply_failed -gt 0
  ((opens_eintr > 0)) || fail "reply faults on, but the open storm saw no EINTR"
else
  fpio_expect reply_failed -eq 0
  ((opens_eintr + stress_eintr == 0)) || fail "EINTR without reply faults"
fi
rel_no_leaks "$base_fds"
rel_same_tree eintr_retry
fpio_unmount
fpio_expect backing_ids_live -eq 0
fpio_expect backing_closed -eq "$(fpio_val backing_opened)"
