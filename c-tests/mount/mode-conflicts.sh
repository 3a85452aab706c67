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
# fd of the same file (the example server opens the backing file with the open's
# access mode), and the kernel opens the backing file anew for each open with
# that open's own flags, so:
#   - the first open of an inode registers its fd: plain passthrough;
#   - every later open shares that id as plain passthrough too: its own fd is
#     the same file and grants the access it asks for, whatever the first fd's
#     access mode was (a writer after a reader, a reader after a writer);
#   - no open is ever shared direct-io, a direct or cached fallback, or refused.
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
  for n in opens_passthrough opens_shared_direct opens_direct opens_cached server_read server_write; do
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
    busy_refused stale_refused reply_failed; do
    fpio_expect "$n" -eq 0
  done
  expect_delta opens_direct -eq 0
  expect_delta opens_cached -eq 0
  expect_delta opens_shared_direct -eq 0
}

# (a) The O_RDONLY open registers a read-only backing fd; the O_RDWR and O_WRONLY
# opens that follow while it is held bring their own writable fds of the same
# file: all three pass through, and no read or write reaches the server.
scenario=ro-then-rw
save_counters
"$FPIO_CONFLICTS" ro-then-rw "$FPIO_MNT/a" || fail "ro-then-rw through the mount"
"$FPIO_CONFLICTS" check "$src/a" || fail "ro-then-rw: backing file lacks the writes"
fpio_snapshot
expect_delta opens_passthrough -eq 3
expect_delta server_write -eq 0
expect_delta server_read -eq 0
expect_no_fallback
fpio_wait_counter backing_ids_live -eq 0

# (b) 4 writers and 4 readers, 100 opens each, then one O_RDWR|O_TRUNC open: 801
# opens, every one plain passthrough whichever access mode registered the id.
scenario=trunc-storm
save_counters
"$FPIO_CONFLICTS" trunc-storm --procs 4 --iters 100 "$FPIO_MNT/b" ||
  fail "trunc-storm through the mount"
"$FPIO_CONFLICTS" check "$src/b" || fail "trunc-storm: backing file lacks the final record"
fpio_snapshot
expect_delta opens_passthrough -eq 801
expect_delta server_write -eq 0
expect_delta server_read -eq 0
expect_no_fallback

fpio_wait_counter backing_ids_live -eq 0
fpio_unmount
fpio_expect backing_closed -eq "$(fpio_val backing_opened)"
