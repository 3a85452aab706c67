#!/bin/bash
# Server death: kill -9 the server while an application writes through the
# mount; the mount then reports ENOTCONN; tear it down lazily; a new server over
# the same mountpoint mounts cleanly, and the 32 MiB written before the last
# fsync are intact through the mount and on the backing file.
#   server-death.sh passthrough|direct
# (passthrough: the writer's open file keeps writing to its backing file after
# the death, until told to stop; direct: its writes fail with ENOTCONN.)
source "$(dirname "$0")/../lib/mount.sh"
source "$(dirname "$0")/../lib/workloads.sh"
source "$(dirname "$0")/lib/rel.sh"

mode=${1:-}
case $mode in passthrough | direct) ;; *) fail "usage: server-death.sh passthrough|direct" ;; esac
synced_mib=32
src=$FPIO_TMP/src mnt=$FPIO_TMP/mnt sync=$FPIO_TMP/sync
mkdir -m 755 "$src" "$sync"

fpio_mount "$src" "$mnt" --mode="$mode" --threads=4
fpio_bg "$FPIO_RELSTORM" deathwrite --synced-mib $synced_mib --marker "$sync/synced" \
  --stop "$sync/stop" --seconds 60 "$mnt/data" >"$FPIO_TMP/writer.out"
writer=$FPIO_BG

writer_at() {
  fpio_pid_alive "$writer" || fail "the writer exited before the kill: $(cat "$FPIO_TMP/writer.out")"
  [ -e "$sync/synced" ] && (($(stat -c %s "$src/data") >= (synced_mib + 4) << 20))
}
# Past the fsync, and 4 MiB of unsynced writes on top: the kill lands mid-write.
fpio_poll 60 "writer past its fsync" writer_at
dead=$FPIO_DAEMON_PID
kill -KILL "$dead"
rc=0
wait "$dead" || rc=$?
FPIO_DAEMON_PID=
[ "$rc" = 137 ] || fail "server exit status $rc after SIGKILL, expected 137"
fpio_log "ok: server (pid $dead) killed with SIGKILL during writes"

# The connection is aborted once the dead server's /dev/fuse fds are closed.
enotconn() { ! stat "$mnt" 2>"$FPIO_TMP/stat.err" && grep -q 'not connected' "$FPIO_TMP/stat.err"; }
fpio_poll 10 "ENOTCONN from the dead mount" enotconn
fpio_log "ok: the mount reports: $(cat "$FPIO_TMP/stat.err")"
# A name the kernel has not cached needs the server: ENOTCONN, not ENOENT.
out=$(stat "$mnt/never-looked-up" 2>&1) && fail "a lookup on the dead mount succeeded"
[[ $out == *"not connected"* ]] || fail "a lookup on the dead mount gave: $out"

# direct: the writer's next write fails (ENOTCONN, or ECONNABORTED when in flight).
# passthrough: it writes to the backing file and must be told to stop.
[ "$mode" = passthrough ] && touch "$sync/stop"
fpio_poll 30 "writer end" eval '! fpio_pid_alive "$writer"'
cat "$FPIO_TMP/writer.out" >&2
fpio_bg_wait "$writer"
if [ "$mode" = direct ]; then
  grep -Eq 'ended by (Transport endpoint is not connected|Software caused connection abort)' \
    "$FPIO_TMP/writer.out" || fail "direct-io writes did not fail with ENOTCONN/ECONNABORTED"
fi

# Tear down the dead mount and mount again over the same dir.
fusermount3 -u -z "$mnt" 2>/dev/null || umount -l "$mnt" || fail "cannot detach the dead mount"
fpio_is_mounted "$mnt" && fail "$mnt still mounted after lazy unmount"
fpio_log "ok: dead mount detached"
fpio_mount "$src" "$mnt" --mode="$mode" --threads=4
fpio_snapshot
[ "$mode" = passthrough ] && fpio_expect_status live
base_fds=$(rel_fds)
fpio_drop_caches
"$FPIO_RELSTORM" verify --synced-mib $synced_mib "$mnt/data" >&2 ||
  fail "data synced before the kill differs through the new mount"
"$FPIO_RELSTORM" verify --synced-mib $synced_mib "$src/data" >&2 ||
  fail "data synced before the kill differs on the backing file"
wl_bigfile # the new mount works
fpio_snapshot
fpio_expect reply_failed -eq 0
rel_no_leaks "$base_fds"
fpio_unmount
fpio_expect backing_ids_live -eq 0
