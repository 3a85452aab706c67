#!/bin/bash
# An unprivileged user writes to a world-writable set-user-ID file (4777) and a
# set-group-ID file with group execute (2777) through the mount. The kernel
# rule for such writes: the bit goes. It must be gone on the backing file and
# in stat through the mount. Run in passthrough mode (the write never reaches
# the server) and in direct mode (the server does the write).
#   setuid.sh passthrough|direct
source "$(dirname "$0")/../lib/mount.sh"

mode=${1:-}
case $mode in passthrough | direct) ;; *) fail "usage: setuid.sh passthrough|direct" ;; esac
id nobody >/dev/null 2>&1 || fail "no user 'nobody'"
as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$@"; }

src=$FPIO_TMP/src
mkdir -m 755 "$src"
for f in suid sgid; do printf 'original contents\n' >"$src/$f"; done
chmod 4777 "$src/suid"
chmod 2777 "$src/sgid"

fpio_mount "$src" "$FPIO_TMP/mnt" --mode="$mode" -o allow_other
fpio_snapshot
[ "$mode" = direct ] || fpio_expect_status live
as_nobody test -w "$FPIO_MNT/suid" || fail "nobody cannot reach $FPIO_MNT/suid"

for f in suid sgid; do
  before=$(stat -c %a "$FPIO_MNT/$f")
  [ "$before" = "$(stat -c %a "$src/$f")" ] || fail "$f: mount shows mode $before"
  # conv=notrunc: a plain write, not a truncating open (which clears via SETATTR).
  as_nobody dd if=/dev/zero of="$FPIO_MNT/$f" bs=4096 count=1 conv=notrunc status=none ||
    fail "nobody could not write $f through the mount"
  cmp -n 4096 /dev/zero "$src/$f" || fail "$f: the write did not land on the backing file"
  backing=$(stat -c %a "$src/$f")
  mounted=$(stat -c %a "$FPIO_MNT/$f")
  fpio_log "$f: mode $before -> backing $backing, through the mount $mounted"
  [ "$backing" = 777 ] || fail "$f: backing file kept mode $backing after an unprivileged write"
  [ "$mounted" = 777 ] || fail "$f: stat through the mount shows $mounted after an unprivileged write"
done
fpio_snapshot
fpio_log "info: opens_passthrough=$(fpio_val opens_passthrough) server_write=$(fpio_val server_write)"

fpio_unmount
