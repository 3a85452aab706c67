#!/bin/bash
# The guards of removing the per-write GETXATTR round trip (FUSE_HANDLE_KILLPRIV_V2,
# which the example server asks for with --killpriv-v2), in passthrough mode:
#  1. where fpio sees every request (libfuse 3.14), 1,000 unprivileged 4 KiB
#     writes to an ordinary file cost at most a few GETXATTR requests (not one
#     per write), and the writes pass through; where it does not (libfuse 3.17+
#     negotiates natively), fpio does not negotiate KILLPRIV_V2, so the kernel
#     keeps asking (one GETXATTR per write) and keeps set-uid semantics itself;
#  2. chmod u+s (and g+s with group-exec) through the mount on a file that an
#     unprivileged writer holds open: its next write clears the bits, on the
#     backing file and in stat through the mount, at once;
#  3. xattrs still work: setfattr/getfattr round trip through the mount.
source "$(dirname "$0")/../lib/mount.sh"

id nobody >/dev/null 2>&1 || fail "no user 'nobody'"
nobody=(setpriv --reuid=nobody --regid=nogroup --clear-groups --)
as_nobody() { "${nobody[@]}" "$@"; }

src=$FPIO_TMP/src
mkdir -m 755 "$src"
for f in plain held; do printf 'original contents\n' >"$src/$f"; chmod 0777 "$src/$f"; done
fpio_mount "$src" "$FPIO_TMP/mnt" --mode=passthrough --killpriv-v2 -o allow_other
fpio_snapshot
fpio_expect_status live
x0=$(fpio_val server_getxattr)

# 1. No GETXATTR per write.
as_nobody dd if=/dev/zero of="$FPIO_MNT/plain" bs=4096 count=1000 conv=notrunc status=none ||
  fail "nobody could not write plain"
fpio_snapshot
fpio_expect server_write -eq 0
xattr_reqs=$(($(fpio_val server_getxattr) - x0))
fpio_log "1,000 passthrough writes cost $xattr_reqs GETXATTR (libfuse $FPIO_LIBFUSE)"
if [ "$FPIO_LIBFUSE" -lt 317 ]; then
  [ "$xattr_reqs" -le 4 ] || fail "$xattr_reqs GETXATTR for 1,000 writes: the per-write round trip is back"
else
  [ "$xattr_reqs" -ge 1000 ] || fail "$xattr_reqs GETXATTR for 1,000 writes: KILLPRIV_V2 negotiated natively"
fi

# 2. chmod while the writer holds the file open. The writer waits on a fifo
# between its writes so the chmod lands in between.
fifo=$FPIO_TMP/go
mkfifo -m 666 "$fifo"
for bits in 4777 2777; do
  printf 'original contents\n' >"$src/held"
  chmod 0777 "$src/held"
  # setpriv execs bash: the PID the cleanup trap kills is the writer itself.
  fpio_bg timeout 60 "${nobody[@]}" bash -c 'exec 3<>"$1" || exit 1
    printf first >&3 || exit 2            # the inode is S_NOSEC after this write
    read -r _ <"$2"                       # wait for the chmod
    printf second >&3 || exit 3' _ "$FPIO_MNT/held" "$fifo"
  writer=$FPIO_BG
  fpio_poll 10 "first write to held" grep -q first "$src/held"
  chmod "$bits" "$FPIO_MNT/held"
  [ "$(stat -c %a "$FPIO_MNT/held")" = "$bits" ] || fail "chmod $bits did not show through the mount"
  timeout 10 sh -c 'echo go >"$1"' _ "$fifo" || fail "the held writer is gone"
  wait "$writer" || fail "the held writer failed ($?)"
  grep -q second "$src/held" || fail "the second write did not land"
  backing=$(stat -c %a "$src/held") mounted=$(stat -c %a "$FPIO_MNT/held")
  fpio_log "chmod $bits while held open, then a write: backing $backing, through the mount $mounted"
  [ "$backing" = 777 ] || fail "backing file kept mode $backing after the write"
  [ "$mounted" = 777 ] || fail "stat through the mount shows $mounted after the write"
done

# 3. xattrs round trip, both ways.
setfattr -n user.fpio -v through-the-mount "$FPIO_MNT/plain" || fail "setfattr through the mount"
[ "$(getfattr --only-values -n user.fpio "$src/plain")" = through-the-mount ] ||
  fail "the xattr did not reach the backing file"
setfattr -n user.back -v on-the-backing-file "$src/plain"
[ "$(getfattr --only-values -n user.back "$FPIO_MNT/plain")" = on-the-backing-file ] ||
  fail "getfattr through the mount does not see the backing file's xattr"
grep -q '^user.fpio=' <(getfattr -d "$FPIO_MNT/plain") || fail "listxattr through the mount"
setfattr -x user.fpio "$FPIO_MNT/plain" || fail "removexattr through the mount"
getfattr -n user.fpio "$src/plain" >/dev/null 2>&1 && fail "removexattr did not reach the backing file"

fpio_unmount
fpio_expect backing_ids_live -eq 0
