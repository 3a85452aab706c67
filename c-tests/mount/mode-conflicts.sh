#!/bin/bash
# Opens of one inode whose needs differ: (a) O_RDWR and O_WRONLY opens while an
# O_RDONLY open (which decided the inode's backing fd) is still open; (b) writers
# with O_WRONLY|O_TRUNC and readers with O_RDONLY interleaved from several
# processes. The application never sees EIO, the data lands, and every open gets
# the one answer fpio's rules allow.
#
# The kernel keeps one io mode per inode: while an inode has a backing file, only
# passthrough opens are accepted (a plain direct or cached reply fails the open),
# and a passthrough open while cached opens exist fails with ETXTBSY. fpio turns
# each conflict into an answer the kernel takes. Here every open offers its own
# fd (the example server opens the backing file with the open's access mode), so:
#   - the first open of an inode registers that fd: plain passthrough;
#   - a later open whose access the registered fd does not cover (a writer on a
#     read-only fd, a reader on a write-only one) shares the id as
#     FOPEN_DIRECT_IO|FOPEN_PASSTHROUGH (opens_shared_direct): its reads and
#     writes go to the server, the inode stays in passthrough mode;
#   - no open is ever a direct or cached fallback (there are no cached or direct
#     opens to conflict with, and the fd always matches its own open).
source "$(dirname "$0")/../lib/mount.sh"

src=$FPIO_TMP/src
mkdir -m 755 "$src"
: >"$src/a"
: >"$src/b"
fpio_mount "$src" "$FPIO_TMP/mnt" --mode=passthrough --threads=4
fpio_snapshot
fpio_expect_status live

# delta NAME: NAME's growth since the values saved by save_counters.
declare -A before
save_counters() {
  local n
  for n in opens_passthrough opens_shared_direct opens_direct opens_cached req_read req_write; do
    before[$n]=$(fpio_val "$n")
  done
}
delta() { echo $(($(fpio_val "$1") - ${before[$1]})); }
expect_delta() {
  local d
  d=$(delta "$1")
  test "$d" "$2" "$3" || fail "$scenario: $1 grew by $d, expected $2 $3"
  fpio_log "ok: $scenario: $1 +$d ($2 $3)"
}
# No open of either scenario may fall back: every fallback counter stays 0.
expect_no_fallback() {
  local n
  for n in fallback_not_live fallback_declined fallback_bad_fd fallback_not_regular \
    fallback_access fallback_cached_opens fallback_direct_opens fallback_register_failed \
    busy_refused reply_failed; do
    fpio_expect "$n" -eq 0
  done
  expect_delta opens_direct -eq 0
  expect_delta opens_cached -eq 0
}

# (a) The O_RDONLY open registers a read-only backing fd; the O_RDWR and O_WRONLY
# opens that follow while it is held need write access it does not give: both
# share the id as direct-io, and their writes and the O_RDWR read-back reach the
# server. The first fd's read-back stays passthrough.
scenario=ro-then-rw
save_counters
"$FPIO_CONFLICTS" ro-then-rw "$FPIO_MNT/a" || fail "ro-then-rw through the mount"
"$FPIO_CONFLICTS" check "$src/a" || fail "ro-then-rw: backing file lacks the writes"
fpio_snapshot
expect_delta opens_passthrough -eq 1
expect_delta opens_shared_direct -eq 2
expect_delta req_write -ge 2
expect_delta req_read -ge 1
expect_no_fallback
fpio_wait_counter backing_ids_live -eq 0

# (b) 4 writers and 4 readers, 100 opens each, then one O_RDWR|O_TRUNC open: 801
# opens. Which access mode registers the backing fd depends on who opens first
# after the inode's last release, so the split between plain passthrough and
# shared direct-io varies from run to run; their sum does not, and nothing else
# may happen.
scenario=trunc-storm
save_counters
"$FPIO_CONFLICTS" trunc-storm --procs 4 --iters 100 "$FPIO_MNT/b" ||
  fail "trunc-storm through the mount"
"$FPIO_CONFLICTS" check "$src/b" || fail "trunc-storm: backing file lacks the final record"
fpio_snapshot
pt=$(delta opens_passthrough)
sd=$(delta opens_shared_direct)
((pt + sd == 801)) || fail "trunc-storm: $pt passthrough + $sd shared direct-io opens, expected 801"
((pt >= 1)) || fail "trunc-storm: no open registered a backing file"
fpio_log "ok: trunc-storm: 801 opens, $pt passthrough and $sd shared direct-io"
expect_no_fallback

fpio_wait_counter backing_ids_live -eq 0
fpio_unmount
fpio_expect backing_closed -eq "$(fpio_val backing_opened)"
