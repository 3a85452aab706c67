#!/bin/bash
# Hundreds of concurrent opens and releases of the same four inodes (16 threads,
# mixed O_RDONLY/O_RDWR). While opens are held each inode has exactly one backing
# id; with an anchor open per inode a whole storm registers nothing new; once
# everything is closed no id is live, every id opened was closed, and the server
# holds no fd on a backing file.
source "$(dirname "$0")/../lib/mount.sh"

threads=16 iters=200 nfiles=4
src=$FPIO_TMP/src sync=$FPIO_TMP/sync
mkdir -m 755 "$src" "$sync"
files=()
for i in $(seq 1 $nfiles); do
  head -c 10000 /dev/urandom >"$src/f$i"
  files+=("$FPIO_TMP/mnt/f$i")
done

fpio_mount "$src" "$FPIO_TMP/mnt" --mode=passthrough --threads=8
fpio_snapshot
fpio_expect_status live
opens() {
  echo $(($(fpio_val opens_passthrough) + $(fpio_val opens_shared_direct) +
    $(fpio_val opens_direct) + $(fpio_val opens_cached)))
}
opens0=$(opens)

fpio_bg "$FPIO_OPENSTORM" --threads $threads --iters $iters --sync "$sync" "${files[@]}"
storm=$FPIO_BG

# phase_ready NAME: wait for the helper to reach a phase (it must stay alive).
storm_at() {
  [ -e "$sync/$1.ready" ] && return 0
  fpio_pid_alive "$storm" || fail "openstorm exited before phase $1"
  return 1
}
phase_ready() { fpio_poll 60 "openstorm phase $1" storm_at "$1"; }

phase_ready held
fpio_snapshot
# 64 opens of 4 inodes are open right now: one backing id per inode.
fpio_expect backing_ids_live -eq $nfiles
opened_held=$(fpio_val backing_opened)
touch "$sync/held.go"

phase_ready anchored
fpio_snapshot
# An anchor was open on every inode for the whole storm: all 3200 opens shared
# the anchors' ids. (The anchors were opened while the held fds were still
# open, so no inode was without an open after 'held'.)
fpio_expect backing_ids_live -eq $nfiles
fpio_expect backing_opened -eq "$opened_held"
touch "$sync/anchored.go"

fpio_bg_wait $storm

# Releases reach the server asynchronously after close().
fpio_wait_counter backing_ids_live -eq 0
fpio_expect backing_closed -eq "$(fpio_val backing_opened)"
fpio_expect busy_refused -eq 0
fpio_expect reply_failed -eq 0
fpio_expect fallback_register_failed -eq 0
fpio_expect opens_direct -eq 0
fpio_expect opens_cached -eq 0
want=$((opens0 + nfiles + threads * nfiles + nfiles + 2 * threads * iters))
[ "$(opens)" -eq "$want" ] || fail "$(opens) opens counted, expected $want"
fpio_log "ok: $want opens counted ($(fpio_val opens_passthrough) passthrough," \
  "$(fpio_val opens_shared_direct) shared direct), $(fpio_val backing_opened) backing ids opened"

leaked=$(fpio_server_backing_fds "$src")
[ -z "$leaked" ] || fail "server still holds backing files open:"$'\n'"$leaked"
fpio_log "ok: the server holds no fd on a backing file"

fpio_unmount
fpio_expect backing_ids_live -eq 0
fpio_expect backing_closed -eq "$(fpio_val backing_opened)"
