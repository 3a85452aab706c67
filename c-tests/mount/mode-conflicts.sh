#!/bin/bash
# Opens of one inode whose needs differ: (a) O_RDWR and O_WRONLY opens while an
# O_RDONLY open (which decided the inode's backing fd) is still open; (b) writers
# with O_WRONLY|O_TRUNC and readers with O_RDONLY interleaved from several
# processes. The application never sees EIO and the data lands.
source "$(dirname "$0")/../lib/mount.sh"

src=$FPIO_TMP/src
mkdir -m 755 "$src"
: >"$src/a"
: >"$src/b"
fpio_mount "$src" "$FPIO_TMP/mnt" --mode=passthrough --threads=4
fpio_snapshot
fpio_expect_status live
pt0=$(fpio_val opens_passthrough)
shared0=$(($(fpio_val opens_shared_direct) + $(fpio_val fallback_access)))

# (a)
"$FPIO_CONFLICTS" ro-then-rw "$FPIO_MNT/a" || fail "ro-then-rw through the mount"
"$FPIO_CONFLICTS" check "$src/a" || fail "ro-then-rw: backing file lacks the writes"
fpio_snapshot
pt=$(($(fpio_val opens_passthrough) - pt0))
shared=$(($(fpio_val opens_shared_direct) + $(fpio_val fallback_access) - shared0))
# Either the later opens shared the id as DIRECT_IO|PASSTHROUGH (their write
# access is not covered by a read-only backing fd), or the server gave every
# open a backing fd that covers writing and all three are plain passthrough.
if [ "$shared" -ge 1 ]; then
  fpio_log "ok: writers on a read-only backing got the shared direct path ($shared)"
elif [ "$pt" -eq 3 ]; then
  fpio_log "ok: all three opens plain passthrough (backing fd covers writing)"
else
  fail "ro-then-rw: $pt passthrough and $shared shared-direct/access-fallback opens"
fi
fpio_expect busy_refused -eq 0
fpio_expect reply_failed -eq 0

# (b)
"$FPIO_CONFLICTS" trunc-storm --procs 4 --iters 100 "$FPIO_MNT/b" ||
  fail "trunc-storm through the mount"
"$FPIO_CONFLICTS" check "$src/b" || fail "trunc-storm: backing file lacks the final record"
fpio_snapshot
fpio_expect busy_refused -eq 0
fpio_expect reply_failed -eq 0
fpio_log "info: opens_passthrough=$(fpio_val opens_passthrough)" \
  "opens_shared_direct=$(fpio_val opens_shared_direct)" \
  "fallback_access=$(fpio_val fallback_access)" \
  "fallback_cached_opens=$(fpio_val fallback_cached_opens)"

fpio_wait_counter backing_ids_live -eq 0
fpio_unmount
fpio_expect backing_closed -eq "$(fpio_val backing_opened)"
