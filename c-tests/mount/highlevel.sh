#!/bin/bash
# A high-level (fuse.h) server adopted with fpio_fuse_init/_open/_release
# (examples/fpio-highlevel.c), in one libfuse loop or option per scenario:
#   mt            the default multi-threaded loop
#   single        -s, the single-threaded loop
#   clone-fd      -o clone_fd, a /dev/fuse clone per worker
#   kernel-cache  -o kernel_cache, and auto-cache: -o auto_cache (libfuse turns them into
#                 FOPEN_KEEP_CACHE after open() returned, which the kernel refuses next to
#                 passthrough; fpio takes them over)
#   splice        the default loop where libfuse can read requests with splice
#                 (fpio_allow_splice_reads): on libfuse 3.14 fpio must still read each OPEN
#                 itself to patch its reply, so it turns splice reads off where it is live
#   not-root      -o kernel_cache, run by an unprivileged user: no passthrough, and
#                 libfuse keeps applying the option itself (fpio leaves it alone); every
#                 open counted as not live
#   not-root-splice  the same where libfuse can splice requests (which it does for an
#                 unprivileged server whenever fs.pipe-max-size allows, and not over
#                 io_uring): the opens fpio does not see are still counted as not live,
#                 the reason they fall back
# Each scenario checks:
#   - passthrough live; 64 MiB written and read back with no READ or WRITE at the server
#     (not-root: status "server lacks CAP_SYS_ADMIN", the server carries it all);
#   - one backing id per file: a second open of a file and an open of a hard link to it,
#     all held at once, register nothing new; once all are closed no id is live;
#   - a declined file (--decline) is served by the server, and a reopen keeps its page
#     cache exactly where fpio says it does: with kernel_cache always; otherwise never
#     (auto_cache compares the file's mtime and size, which fpio cannot look at for an
#     open the server declined without an fd);
#   - unmount: the server exits 0, every id fpio opened is closed.
source "$(dirname "$0")/../lib/mount.sh"
source "$(dirname "$0")/../lib/workloads.sh"

scenario=${1:?usage: highlevel.sh mt|single|clone-fd|kernel-cache|auto-cache|splice|not-root|not-root-splice}
keep_on_reopen=0
case $scenario in
mt) opts=() ;;
single) opts=(-s) ;;
clone-fd) opts=(-o clone_fd) ;;
kernel-cache) opts=(-o kernel_cache) keep_on_reopen=1 ;;
auto-cache) opts=(-o auto_cache) ;;
not-root) opts=(-o kernel_cache) keep_on_reopen=1 ;;
not-root-splice) opts=(-o kernel_cache) keep_on_reopen=1 && fpio_allow_splice_reads ;;
splice) opts=() && fpio_allow_splice_reads ;;
*) fail "unknown scenario $scenario" ;;
esac
[ -x "${FPIO_HL_SERVER:-}" ] || fail "FPIO_HL_SERVER is not set to an executable"
FPIO_SERVER=$FPIO_HL_SERVER

src=$FPIO_TMP/src mnt=$FPIO_TMP/mnt
mkdir -m 755 "$src"
unprivileged=0
case $scenario in not-root*) unprivileged=1 ;; esac
if [ "$unprivileged" = 1 ]; then
  fpio_mount_unprivileged "$src" "$mnt" --decline=.served "${opts[@]}"
  fpio_snapshot
  fpio_expect_status server # "server lacks CAP_SYS_ADMIN"
  wl_bigfile
  fpio_snapshot
  fpio_expect opens_passthrough -eq 0
  fpio_expect fallback_not_live -ge 2
  fpio_expect fallback_request_unseen -eq 0
  fpio_expect server_write -gt 0
  if [ "$scenario" = not-root-splice ]; then
    # The premise: libfuse did splice, except over io_uring (FPIO_REQUIRE_IO_URING),
    # whose requests come in the ring and never through a pipe.
    if [ "${FPIO_REQUIRE_IO_URING:-0}" = 1 ]; then
      fpio_expect server_write_spliced -eq 0
    else
      fpio_expect server_write_spliced -gt 0
    fi
  fi
else
  fpio_mount "$src" "$mnt" --decline=.served "${opts[@]}"
  # ---- passthrough carries the io ----
  wl_bigfile_passthrough
  fpio_expect fallback_request_unseen -eq 0
fi

# ---- one backing id per file, hard links included ----
head -c 1048576 /dev/urandom >"$FPIO_TMP/one.ref"
chmod 644 "$FPIO_TMP/one.ref"
cp "$FPIO_TMP/one.ref" "$mnt/one"
ln "$mnt/one" "$mnt/one.link" || fail "link through the mount"
fpio_wait_counter backing_ids_live -eq 0
opened=$(fpio_val backing_opened)
exec 7<>"$mnt/one" 8<"$mnt/one" 9<"$mnt/one.link"
fpio_snapshot
if [ "$unprivileged" = 1 ]; then
  fpio_expect backing_ids_live -eq 0
  fpio_expect backing_opened -eq 0
else
  fpio_expect backing_ids_live -eq 1
  fpio_expect backing_opened -eq $((opened + 1))
fi
cmp "$FPIO_TMP/one.ref" - <&9 || fail "the hard link reads other bytes"
exec 7<&- 8<&- 9<&-
fpio_wait_counter backing_ids_live -eq 0

# ---- a declined file: the server's own io, the page cache as its options say ----
served_reads() { fpio_snapshot && fpio_val server_read; }
dd if="$FPIO_TMP/one.ref" of="$mnt/x.served" bs=64k status=none || fail "writing x.served"
cmp "$FPIO_TMP/one.ref" "$mnt/x.served" || fail "x.served reads other bytes"
r1=$(served_reads)
cmp "$FPIO_TMP/one.ref" "$mnt/x.served" || fail "x.served reads other bytes on reopen"
r2=$(served_reads)
fpio_expect server_write -ge 1
fpio_expect fallback_declined -ge 3
if [ "$keep_on_reopen" = 1 ]; then
  [ "$r2" -eq "$r1" ] || fail "reopen of an unchanged declined file read from the server ($r1 -> $r2): $scenario not honoured"
else
  [ "$r2" -gt "$r1" ] || fail "reopen of a declined file kept the page cache ($r1 -> $r2) under $scenario"
fi
fpio_log "ok: declined file reopened: server reads $r1 -> $r2 (keep cache: $keep_on_reopen)"

fpio_unmount
fpio_expect backing_ids_live -eq 0
fpio_expect backing_closed -eq "$(fpio_val backing_opened)"
