#!/bin/bash
# A server adopted as the README shows must never behave worse than the same
# server without fpio, in the environments adopters run in. One scenario per
# run (argument), each on the example server:
#   splice          init() asks for splice without checking capable: it mounts,
#                   passthrough is live, server-side io (direct) works with splice
#   clone-fd        multi-threaded loop with -o clone_fd: passthrough live
#   daemonize       the server forks into the background (no -f), fpio attached
#                   before and after fuse_daemonize(): live both times
#   writeback       init() asks for the writeback cache: dropped where passthrough
#                   is live, kept where it is not (--no-passthrough)
#   not-root        run by an unprivileged user: mounts, no CAP_SYS_ADMIN, keeps
#                   writeback, io through the server works
#   mmap            opens without passthrough (direct io) can be MAP_SHARED
#   second-opener   a writer opening a file a reader holds shares the backing id
#                   and its writes never reach the server
#   setuid          truncate, O_TRUNC open and write by an unprivileged user leave
#                   set-uid/set-gid exactly as the server without fpio does, with
#                   no set-uid code for fpio in the server
#   without-fpio    no fpio session (NULL): every fpio call is plain libfuse
#   log             FPIO_LOG=1 in the environment: status, fallback reason and
#                   counters on stderr, with no server code
source "$(dirname "$0")/../lib/mount.sh"

scenario=${1:?usage: adoption.sh SCENARIO}
src=$FPIO_TMP/src
mkdir -m 755 "$src"
printf 'hello\n' >"$src/small"
head -c 1048576 /dev/urandom >"$src/data"

id nobody >/dev/null 2>&1 || fail "no user 'nobody'"
as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$@"; }

# roundtrip FILE: 1 MiB written and read back through the mount, byte-exact.
roundtrip() {
  local f=$FPIO_MNT/$1
  head -c 1048576 /dev/urandom >"$FPIO_TMP/expect"
  cp "$FPIO_TMP/expect" "$f" || fail "write $f"
  fpio_drop_caches
  cmp -s "$FPIO_TMP/expect" "$f" || fail "read back $f differs"
  cmp -s "$FPIO_TMP/expect" "$FPIO_SOURCE/$1" || fail "backing file $1 differs"
}

# server_says TEXT: the server's log has a line containing TEXT.
server_says() { grep -qF -- "$1" "$FPIO_LOG" || fail "server log lacks '$1'"; }

case $scenario in
splice)
  fpio_allow_splice_reads
  fpio_mount "$src" "$FPIO_TMP/mnt" --splice --threads=4
  server_says "splice read on"
  fpio_snapshot
  fpio_expect_status live
  roundtrip f1
  fpio_snapshot
  fpio_expect server_write -eq 0
  # Requests really were spliced (past fpio's io wrapper, where there is one).
  [ "$(fpio_val req_total)" = n/a ] || fail "req_total = $(fpio_val req_total): no request was spliced"
  fpio_unmount
  # Server-side io with splice: every open direct, data through the server.
  fpio_mount "$src" "$FPIO_TMP/mnt" --splice --mode=direct
  roundtrip f2
  fpio_snapshot
  fpio_expect server_write -gt 0
  fpio_expect server_read -gt 0
  fpio_unmount
  ;;
clone-fd)
  fpio_mount "$src" "$FPIO_TMP/mnt" --threads=4 -o clone_fd
  fpio_snapshot
  fpio_expect_status live
  roundtrip f1
  fpio_snapshot
  fpio_expect opens_passthrough -ge 2
  fpio_expect server_write -eq 0
  fpio_expect server_read -eq 0
  fpio_unmount
  ;;
daemonize)
  for order in "" --fpio-after-daemonize; do
    mnt=$FPIO_TMP/mnt${order:+-late}
    counters=$FPIO_TMP/counters${order:+-late}
    mkdir -p "$mnt"
    # No -f: the server forks and the parent exits 0 once mounted.
    "$FPIO_SERVER" --counters-file="$counters" $order "${fpio_server_opts[@]}" "$src" "$mnt" ||
      fail "daemonizing server ${order:-(fpio before fuse_daemonize)} failed to start"
    fpio_poll 10 "mount at $mnt" fpio_is_mounted "$mnt"
    stat "$mnt" >/dev/null
    fpio_poll 10 "counters file" test -s "$counters"
    cp "$mnt/data" "$FPIO_TMP/copy" && cmp -s "$src/data" "$FPIO_TMP/copy" || fail "read through $mnt"
    # The daemon is this test's child's child: find it by its unique mountpoint.
    pid=$(pgrep -f -- "--counters-file=$counters ") || fail "daemon for $mnt not found"
    kill -USR1 "$pid"
    fpio_poll 10 "counters rewritten" grep -q '^opens_passthrough 1$' "$counters"
    grep -q '^status live$' "$counters" || fail "not live ${order:-(fpio before fuse_daemonize)}"
    grep -q '^server_read 0$' "$counters" || fail "reads reached the daemonized server"
    fusermount3 -u "$mnt" || fail "unmount $mnt"
    fpio_poll 20 "daemon exit" eval '! fpio_pid_alive "$pid"'
    fpio_log "ok: daemonized, fpio attached ${order:-before fuse_daemonize}: live"
  done
  ;;
writeback)
  fpio_mount "$src" "$FPIO_TMP/mnt" --writeback
  server_says "init: passthrough expected, writeback cache off"
  fpio_snapshot
  fpio_expect_status live
  roundtrip f1
  fpio_unmount
  fpio_mount "$src" "$FPIO_TMP/mnt" --writeback --no-passthrough --mode=cached
  server_says "init: passthrough not expected, writeback cache on"
  roundtrip f2
  fpio_snapshot
  fpio_expect_status disabled
  fpio_unmount
  ;;
not-root)
  fpio_mount_unprivileged "$src" "$FPIO_TMP/mnt" --writeback --mode=cached
  server_says "init: passthrough not expected, writeback cache on"
  fpio_snapshot
  fpio_expect_status server # "server lacks CAP_SYS_ADMIN"
  roundtrip f1
  fpio_snapshot
  fpio_expect opens_cached -ge 1
  fpio_expect opens_passthrough -eq 0
  fpio_expect fallback_not_live -ge 1
  fpio_expect server_write -gt 0
  fpio_unmount
  ;;
mmap)
  for opts in "--mode=direct" "--no-passthrough"; do
    fpio_mount "$src" "$FPIO_TMP/mnt" $opts
    python3 - "$FPIO_MNT/data" <<'PY' || fail "MAP_SHARED write with $opts"
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
m = mmap.mmap(fd, 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
m[0:6] = b"mapped"
m.flush()
m.close()
os.close(fd)
PY
    fpio_unmount
    [ "$(head -c 6 "$src/data")" = mapped ] || fail "mapped write did not reach the backing file ($opts)"
    fpio_expect opens_passthrough -eq 0
    fpio_log "ok: MAP_SHARED on a direct-io open ($opts)"
    head -c 1048576 /dev/urandom >"$src/data"
  done
  ;;
second-opener)
  fpio_mount "$src" "$FPIO_TMP/mnt" --threads=4
  exec 7<"$FPIO_MNT/data" # the reader: the server registers its read-only fd
  dd if=/dev/zero of="$FPIO_MNT/data" bs=4096 count=256 conv=notrunc status=none ||
    fail "the second opener could not write"
  exec 7<&-
  fpio_wait_counter backing_ids_live -eq 0
  fpio_expect opens_passthrough -eq 2
  fpio_expect opens_shared_direct -eq 0
  fpio_expect server_write -eq 0
  fpio_expect backing_opened -eq 1
  cmp -s -n 1048576 "$src/data" /dev/zero || fail "the writer's zeros are not in the backing file"
  fpio_unmount
  ;;
setuid)
  # Each operation by nobody on a fresh 4777/2777 file, without and with fpio.
  results=()
  for variant in --no-fpio ""; do
    fpio_mount "$src" "$FPIO_TMP/mnt" $variant -o allow_other
    r=
    for op in write truncate otrunc; do
      for bits in 4777 2777; do
        # Set up through the mount, so that the kernel's cached mode is the
        # file's: what it decides for nobody must not depend on whether the
        # attribute timeout ran out since the previous round.
        printf 'original contents\n' >"$FPIO_MNT/s"
        chmod "$bits" "$FPIO_MNT/s"
        case $op in
        write) as_nobody dd if=/dev/zero of="$FPIO_MNT/s" bs=4 count=1 conv=notrunc status=none ;;
        truncate) as_nobody truncate -s 3 "$FPIO_MNT/s" ;;
        otrunc) as_nobody sh -c ': >"$1"' _ "$FPIO_MNT/s" ;;
        esac || fail "nobody: $op on a $bits file (${variant:-fpio})"
        r+="$op/$bits:$(stat -c %a "$src/s")/$(stat -c %a "$FPIO_MNT/s") "
      done
    done
    fpio_unmount
    fpio_log "set-uid ${variant:-with fpio}: $r"
    results+=("$r")
  done
  [ "${results[0]}" = "${results[1]}" ] ||
    fail "set-uid differs: without fpio '${results[0]}', with fpio '${results[1]}'"
  for must in write/4777:777/777 write/2777:777/777 truncate/4777:777/777 truncate/2777:777/777; do
    case " ${results[1]}" in *" $must "*) ;; *) fail "expected $must in '${results[1]}'" ;; esac
  done
  ;;
without-fpio)
  fpio_mount "$src" "$FPIO_TMP/mnt" --no-fpio --threads=4
  roundtrip f1
  fpio_snapshot
  fpio_expect server_write -gt 0
  grep -q '^opens_passthrough' "$FPIO_SNAP" && fail "counters without a session"
  fpio_unmount
  server_says "fpio: passthrough: not attached"
  ;;
log)
  fpio_wrapper=(env FPIO_LOG=1)
  fpio_mount "$src" "$FPIO_TMP/mnt" --no-passthrough
  roundtrip f1
  fpio_unmount
  server_says "fpio: attached (libfuse "
  server_says "fpio: passthrough: disabled by the server"
  server_says "fpio: open without passthrough: fallback_not_live"
  server_says "fpio: session freed"
  server_says "fpio:   opens_direct "
  # Off by default: not one line.
  fpio_wrapper=()
  fpio_mount "$src" "$FPIO_TMP/mnt" --no-passthrough
  fpio_unmount
  grep -q '^fpio: attached' "$FPIO_LOG" && fail "fpio logged without FPIO_LOG"
  ;;
*)
  fail "unknown scenario $scenario"
  ;;
esac
fpio_log "PASS: $scenario"
