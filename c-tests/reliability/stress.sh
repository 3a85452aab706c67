#!/bin/bash
# Stress: 16 threads for 60 s (FPIO_STRESS_SECONDS) of random open/close/read/
# write/ftruncate/truncate/unlink/rename/chmod/fsync on 32 names through a
# passthrough mount. No unexpected error (ENOENT after a concurrent unlink or
# rename is expected; EIO never); afterwards no backing id is live, the server's
# fd count is back at baseline, its RSS grew less than 16 MiB after warm-up,
# and every surviving file reads the same through the mount as on the backing dir.
source "$(dirname "$0")/../lib/mount.sh"
source "$(dirname "$0")/lib/rel.sh"

secs=${FPIO_STRESS_SECONDS:-60} threads=16 nfiles=32 rss_limit_kib=$((16 << 10))
src=$FPIO_TMP/src
mkdir -m 755 "$src"
for ((i = 0; i < nfiles; i++)); do head -c 65536 /dev/urandom >"$src/f$i"; done

fpio_mount "$src" "$FPIO_TMP/mnt" --mode=passthrough --threads=8
fpio_snapshot
fpio_expect_status live
base_fds=$(rel_fds) rss0=$(rel_rss_kib)

fpio_bg "$FPIO_RELSTORM" stress --threads $threads --seconds "$secs" --files $nfiles \
  "$FPIO_MNT" >"$FPIO_TMP/relstorm.out"
storm=$FPIO_BG
# Sample the server while the storm runs: RSS after 10 s of warm-up (threads and
# their buffers exist by then) and the peak.
start=$SECONDS rss_warm= rss_peak=$rss0
while fpio_pid_alive "$storm"; do
  fpio_pid_alive "$FPIO_DAEMON_PID" || fail "server died during the stress"
  rss=$(rel_rss_kib)
  ((rss > rss_peak)) && rss_peak=$rss
  [ -z "$rss_warm" ] && ((SECONDS - start >= 10)) && rss_warm=$rss
  ((SECONDS - start <= secs + 60)) || fail "relstorm still running after $((secs + 60)) s"
  sleep 1
done
rc=0
wait "$storm" || rc=$?
cat "$FPIO_TMP/relstorm.out" >&2
[ "$rc" = 0 ] || fail "relstorm exited $rc (unexpected errors above)"
grep -q ' unexpected=0$' "$FPIO_TMP/relstorm.out" || fail "relstorm printed no clean summary"

fpio_snapshot
fpio_expect busy_refused -eq 0
fpio_expect reply_failed -eq 0
fpio_expect fallback_register_failed -eq 0
fpio_expect opens_passthrough -gt 0
rel_no_leaks "$base_fds"
rss_end=$(rel_rss_kib)
: "${rss_warm:=$rss0}"
fpio_log "info: server RSS KiB: after mount $rss0, after 10 s $rss_warm, peak $rss_peak, end $rss_end"
if [ ${#fpio_wrapper[@]} -gt 0 ]; then
  # valgrind's own memory grows with the work done: no bound to check.
  fpio_log "info: server under ${fpio_wrapper[0]##*/}: RSS bound not checked"
else
  ((rss_end - rss_warm < rss_limit_kib)) ||
    fail "server RSS grew by $((rss_end - rss_warm)) KiB after warm-up (limit $rss_limit_kib)"
  fpio_log "ok: server RSS growth after warm-up $((rss_end - rss_warm)) KiB (< $rss_limit_kib)"
fi
rel_same_tree
fpio_unmount
fpio_expect backing_ids_live -eq 0
fpio_expect backing_closed -eq "$(fpio_val backing_opened)"
