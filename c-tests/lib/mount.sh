# shellcheck shell=bash
# Mount-test harness, sourced by c-tests/mount/*.sh (bash).
#
# Environment (set by c-tests/meson.build):
#   FPIO_SERVER          the example server (fpio-passthrough)
#   FPIO_PWRITERS, FPIO_OPENSTORM, FPIO_CONFLICTS   helper programs
#   FPIO_SERVER_WRAPPER  optional command prefix for the server (valgrind)
#   FPIO_SERVER_OPTS     optional extra options appended to every server start
#                        (e.g. "-o io_uring" with libfuse >= 3.18)
#   FPIO_REQUIRE_IO_URING=1  every mounted server must hold an io_uring (libfuse
#                        falls back to /dev/fuse silently when it cannot start one)
#   FPIO_REQUIRE_MOUNT=1 turns "cannot mount here" from a skip into a failure
#
# Discipline (after libfuse's test/): the server runs in the foreground with its
# own log; every wait polls against a deadline and checks the server is still
# alive (no fixed sleeps); unmount is fusermount3 -u and the server must then
# exit 0; an EXIT trap lazily unmounts whatever is left, kills only the server
# and helper PIDs this script started, removes the temp dir (every mount and
# file system image a test makes lives under it), and dumps the
# server logs when the test failed.

set -euo pipefail

# The script name plus its scenario argument, e.g. "fallback-direct".
FPIO_TEST_NAME=${FPIO_TEST_NAME:-$(basename "$0" .sh)${1:+-$1}}

fpio_log() { printf '%s: %s\n' "$FPIO_TEST_NAME" "$*" >&2; }
fail() {
  fpio_log "FAIL: $*"
  exit 1
}

# ---- skip only for "cannot mount here" ----
fpio_skip_reason=
if [ "$(id -u)" != 0 ]; then
  fpio_skip_reason="not root"
elif [ ! -c /dev/fuse ]; then
  fpio_skip_reason="/dev/fuse missing"
fi
if [ -n "$fpio_skip_reason" ]; then
  if [ "${FPIO_REQUIRE_MOUNT:-0}" = 1 ]; then
    fail "cannot mount ($fpio_skip_reason) and FPIO_REQUIRE_MOUNT=1"
  fi
  fpio_log "SKIP: $fpio_skip_reason"
  exit 77
fi

for fpio_var in FPIO_SERVER FPIO_PWRITERS FPIO_OPENSTORM FPIO_CONFLICTS; do
  [ -x "${!fpio_var:-}" ] || fail "$fpio_var is not set to an executable"
done

read -r -a fpio_wrapper <<<"${FPIO_SERVER_WRAPPER:-}"
read -r -a fpio_server_opts <<<"${FPIO_SERVER_OPTS:-}"
# valgrind makes the server ~20x slower to start and to exit.
if [ ${#fpio_wrapper[@]} -gt 0 ]; then fpio_slow=6; else fpio_slow=1; fi
FPIO_MOUNT_TIMEOUT=${FPIO_MOUNT_TIMEOUT:-$((10 * fpio_slow))}
FPIO_EXIT_TIMEOUT=${FPIO_EXIT_TIMEOUT:-$((20 * fpio_slow))}
FPIO_COUNTER_TIMEOUT=${FPIO_COUNTER_TIMEOUT:-$((10 * fpio_slow))}

FPIO_DAEMON_PID=       # the running server, if any
FPIO_MNT=              # its mountpoint
FPIO_SOURCE=           # its source dir
FPIO_COUNTERS=         # its --counters-file
FPIO_LOG=              # its log
FPIO_SNAP=             # latest counters snapshot (file)
fpio_nmount=0
fpio_logs=()
fpio_bg_pids=()        # helper processes started with fpio_bg

# True while PID runs (a zombie counts as exited: it only waits for `wait`).
fpio_pid_alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

fpio_is_mounted() {
  awk -v m="$1" '$5 == m { found = 1 } END { exit !found }' /proc/self/mountinfo
}

# fpio_poll SECONDS DESCRIPTION COMMAND...: retry COMMAND every 50 ms until it
# succeeds; fail at the deadline or as soon as the server dies.
fpio_poll() {
  local secs=$1 what=$2 i
  shift 2
  for ((i = 0; i < secs * 20; i++)); do
    if "$@"; then return 0; fi
    if [ -n "$FPIO_DAEMON_PID" ] && ! fpio_pid_alive "$FPIO_DAEMON_PID"; then
      "$@" && return 0 # it may have come true as the server exited
      fail "server (pid $FPIO_DAEMON_PID) died while waiting for: $what"
    fi
    sleep 0.05
  done
  fail "timed out after ${secs}s waiting for: $what"
}

fpio_exit_hooks=() # commands fpio_cleanup runs first (fpio_on_exit)
# fpio_on_exit COMMAND: run COMMAND (eval'd) when the test exits, however it exits,
# e.g. to restore a system setting the test changed.
fpio_on_exit() { fpio_exit_hooks+=("$1"); }

# fpio_allow_splice_reads: libfuse reads requests with splice only if its pipe can
# grow to hold its largest request (a page more than 1 MiB), which the default
# pipe-max-size (1 MiB) forbids: it then silently reads. Raised until the test exits.
fpio_allow_splice_reads() {
  local max
  max=$(cat /proc/sys/fs/pipe-max-size)
  fpio_on_exit "echo $max >/proc/sys/fs/pipe-max-size"
  echo $((8 << 20)) >/proc/sys/fs/pipe-max-size
}

fpio_cleanup() {
  local rc=$? pid m i
  set +e
  trap - EXIT
  for m in "${fpio_exit_hooks[@]}"; do
    eval "$m"
  done
  for pid in "${fpio_bg_pids[@]}"; do
    fpio_pid_alive "$pid" && kill -TERM "$pid" 2>/dev/null
  done
  # Every FUSE, tmpfs or ext4-image mount at or under FPIO_TMP, deepest first.
  for m in $(awk '{ print $5 }' /proc/self/mountinfo | sort -r); do
    case $m in "$FPIO_TMP" | "$FPIO_TMP"/*)
      fpio_log "cleanup: lazily unmounting $m"
      fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m"
      ;;
    esac
  done
  if [ -n "$FPIO_DAEMON_PID" ]; then
    kill -TERM "$FPIO_DAEMON_PID" 2>/dev/null
    for ((i = 0; i < 100; i++)); do
      fpio_pid_alive "$FPIO_DAEMON_PID" || break
      sleep 0.05
    done
    if fpio_pid_alive "$FPIO_DAEMON_PID"; then
      fpio_log "cleanup: server $FPIO_DAEMON_PID ignored SIGTERM, killing"
      kill -KILL "$FPIO_DAEMON_PID" 2>/dev/null
    fi
    wait "$FPIO_DAEMON_PID" 2>/dev/null
  fi
  for pid in "${fpio_bg_pids[@]}"; do
    fpio_pid_alive "$pid" && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then
    for m in "${fpio_logs[@]}"; do
      printf '\n===== %s =====\n' "$m" >&2
      cat "$m" >&2
    done
    if [ -n "$FPIO_SNAP" ] && [ -f "$FPIO_SNAP" ]; then
      printf '\n===== last counters snapshot =====\n' >&2
      cat "$FPIO_SNAP" >&2
    fi
  fi
  # --one-file-system: never descend into a mount that survived the above.
  rm -rf --one-file-system "$FPIO_TMP" "${fpio_ext4_dirs[@]}"
  exit "$rc"
}
trap fpio_cleanup EXIT

# World-traversable so an unprivileged user can reach mounts inside it.
FPIO_TMP=$(mktemp -d /tmp/fpio-mt.XXXXXX)
chmod 755 "$FPIO_TMP"

# fpio_tmpfs DIR: a private tmpfs under FPIO_TMP (unmounted by
# fpio_tmpfs_umount, or by the trap, which unmounts everything under FPIO_TMP).
fpio_tmpfs() {
  mkdir -p "$1"
  mount -t tmpfs -o size=1g,mode=755 fpio-test "$1"
}
fpio_tmpfs_umount() { umount "$1" || fail "umount $1"; }

# fpio_ext4 DIR [MiB]: a fresh ext4 file system (default 512 MiB) mounted at DIR,
# made on a sparse image file in FPIO_TMP and mounted through a loop device, for
# tests that need a block-device file system (O_DIRECT down to a disk, ext4's
# behaviour) whatever the host's /tmp or /var/tmp are. Unmounted by
# fpio_ext4_umount, or by the trap (lazily; the loop device goes with it); the
# image is removed with FPIO_TMP.
#   FPIO_EXT4_BASE (optional): an ext4 directory to use instead (a fresh subdirectory,
#   bind-mounted at DIR), where images cannot be loop-mounted (the kernel tier's VM).
fpio_nimg=0
fpio_ext4_dirs=()
fpio_ext4() {
  local dir=$1 mib=${2:-512} img
  fpio_nimg=$((fpio_nimg + 1))
  if [ -n "${FPIO_EXT4_BASE:-}" ]; then
    [ "$(stat -f -c %T "$FPIO_EXT4_BASE")" = ext2/ext3 ] || fail "FPIO_EXT4_BASE is not ext4"
    img=$(mktemp -d "$FPIO_EXT4_BASE/fpio-ext4.XXXXXX") || fail "mktemp in $FPIO_EXT4_BASE"
    fpio_ext4_dirs+=("$img")
    mkdir -p "$dir"
    mount --bind "$img" "$dir" || fail "bind-mounting $img at $dir"
    chmod 755 "$dir"
    return 0
  fi
  img=$FPIO_TMP/ext4.$fpio_nimg.img
  command -v mkfs.ext4 >/dev/null || fail "mkfs.ext4 is not installed (e2fsprogs)"
  mkdir -p "$dir"
  truncate -s "${mib}M" "$img" || fail "creating the image $img"
  # Inode tables and journal written now: no lazy-init thread writing behind the test.
  mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$img" ||
    fail "mkfs.ext4 $img"
  mount -t ext4 -o loop "$img" "$dir" || fail "mounting $img (loop) at $dir"
  chmod 755 "$dir"
  [ "$(stat -f -c %T "$dir")" = ext2/ext3 ] || fail "$dir is not ext4 after mounting $img"
}
fpio_ext4_umount() { umount "$1" || fail "umount $1"; }

# fpio_bg COMMAND...: start a helper in the background; its PID is in FPIO_BG.
fpio_bg() {
  "$@" &
  FPIO_BG=$!
  fpio_bg_pids+=("$FPIO_BG")
}

# fpio_bg_wait PID: its exit status must be 0 (no deadline: helpers bound
# their own waits).
fpio_bg_wait() {
  local rc=0
  wait "$1" || rc=$?
  [ "$rc" = 0 ] || fail "helper (pid $1) exited $rc"
}

# fpio_mount SOURCE MNT [server options...]: start the server in the
# foreground and return once the mount is up and INIT has been answered.
fpio_mount() {
  local src=$1 mnt=$2
  shift 2
  [ -z "$FPIO_DAEMON_PID" ] || fail "fpio_mount: a server is already running"
  fpio_nmount=$((fpio_nmount + 1))
  FPIO_LOG=$FPIO_TMP/server.$fpio_nmount.log
  FPIO_COUNTERS=$FPIO_TMP/counters.$fpio_nmount
  FPIO_SNAP=$FPIO_TMP/snapshot.$fpio_nmount
  fpio_logs+=("$FPIO_LOG")
  mkdir -p "$mnt"
  fpio_log "mount: ${fpio_wrapper[*]} $FPIO_SERVER -f --counters-file=$FPIO_COUNTERS $* ${fpio_server_opts[*]} $src $mnt"
  "${fpio_wrapper[@]}" "$FPIO_SERVER" -f --counters-file="$FPIO_COUNTERS" "$@" "${fpio_server_opts[@]}" \
    "$src" "$mnt" >"$FPIO_LOG" 2>&1 &
  FPIO_DAEMON_PID=$!
  FPIO_MNT=$mnt
  FPIO_SOURCE=$src
  fpio_poll "$FPIO_MOUNT_TIMEOUT" "mount at $mnt" fpio_is_mounted "$mnt"
  stat "$mnt" >/dev/null || fail "stat $mnt"  # waits for INIT
  # The server writes its counters once INIT is done; from then on a change
  # of the file can only come from our SIGUSR1.
  fpio_poll "$FPIO_COUNTER_TIMEOUT" "first counters file" test -s "$FPIO_COUNTERS"
  fpio_check_io_uring
}

# fpio_check_io_uring: with FPIO_REQUIRE_IO_URING=1, the server (INIT answered, by
# then libfuse has started its rings) must hold an io_uring.
fpio_check_io_uring() {
  [ "${FPIO_REQUIRE_IO_URING:-0}" = 1 ] || return 0
  [ "$(fpio_server_io_urings)" -gt 0 ] ||
    fail "server (pid $FPIO_DAEMON_PID) holds no io_uring: not served over io_uring"
  fpio_log "ok: server holds $(fpio_server_io_urings) io_uring fds"
}

# fpio_mount_unprivileged SOURCE MNT [server options...]: as fpio_mount, for a
# server without privileges, as in a container: root (the test) mounts with a
# /dev/fuse fd and hands it to the server running as nobody, which libfuse takes
# as /dev/fd/N. SOURCE and FPIO_TMP become nobody's. The server runs from a copy
# nobody can read: the build tree may sit under a directory only root can enter
# (a clone in /root, for example).
fpio_mount_unprivileged() {
  local src=$1 mnt=$2 devfd srvdir lib
  shift 2
  [ -z "$FPIO_DAEMON_PID" ] || fail "fpio_mount_unprivileged: a server is already running"
  id nobody >/dev/null 2>&1 || fail "no user 'nobody'"
  fpio_nmount=$((fpio_nmount + 1))
  FPIO_LOG=$FPIO_TMP/server.$fpio_nmount.log
  FPIO_COUNTERS=$FPIO_TMP/counters.$fpio_nmount
  FPIO_SNAP=$FPIO_TMP/snapshot.$fpio_nmount
  fpio_logs+=("$FPIO_LOG")
  chown -R nobody:nogroup "$src"
  chown nobody:nogroup "$FPIO_TMP"
  mkdir -p -m 755 "$mnt"
  exec {devfd}<>/dev/fuse
  mount -i -t fuse -o "fd=$devfd,rootmode=40000,user_id=65534,group_id=65534,allow_other" \
    fpio-test "$mnt" || fail "mount with a /dev/fuse fd"
  srvdir=$FPIO_TMP/server.$fpio_nmount
  mkdir -m 755 "$srvdir"
  cp "$FPIO_SERVER" "$srvdir/server"
  # What ldd prints, from the dynamic loader itself (a VM may have no ldd).
  lib=$(LD_TRACE_LOADED_OBJECTS=1 "$FPIO_SERVER" | awk '$1 == "libfpio.so.0" { print $3 }')
  [ -f "$lib" ] || fail "the loader finds no libfpio.so.0 for $FPIO_SERVER"
  cp -L "$lib" "$srvdir/libfpio.so.0"
  fpio_log "mount as nobody: $FPIO_SERVER -f --counters-file=$FPIO_COUNTERS $* ${fpio_server_opts[*]} $src /dev/fd/$devfd ($mnt)"
  setpriv --reuid=nobody --regid=nogroup --clear-groups -- \
    env LD_LIBRARY_PATH="$srvdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$srvdir/server" -f \
    --counters-file="$FPIO_COUNTERS" "$@" "${fpio_server_opts[@]}" "$src" "/dev/fd/$devfd" \
    >"$FPIO_LOG" 2>&1 &
  FPIO_DAEMON_PID=$! FPIO_MNT=$mnt FPIO_SOURCE=$src
  exec {devfd}>&-
  stat "$mnt" >/dev/null || fail "stat $mnt"
  fpio_poll "$FPIO_COUNTER_TIMEOUT" "first counters file" test -s "$FPIO_COUNTERS"
  grep -q "^Uid:.*65534" "/proc/$FPIO_DAEMON_PID/status" || fail "the server is not running as nobody"
  fpio_check_io_uring
}

# fpio_server_io_urings: how many io_uring instances the server has open.
fpio_server_io_urings() {
  local fd n=0
  for fd in /proc/"$FPIO_DAEMON_PID"/fd/*; do
    [ "$(readlink "$fd" 2>/dev/null)" = "anon_inode:[io_uring]" ] && n=$((n + 1))
  done
  echo "$n"
}

# fpio_unmount: fusermount3 -u, then the server must exit 0 within the deadline.
fpio_unmount() {
  local rc=0
  [ -n "$FPIO_DAEMON_PID" ] || fail "fpio_unmount: no server running"
  fusermount3 -u "$FPIO_MNT" || fail "fusermount3 -u $FPIO_MNT failed"
  fpio_poll "$FPIO_EXIT_TIMEOUT" "server exit after unmount" \
    eval '! fpio_pid_alive "$FPIO_DAEMON_PID"'
  wait "$FPIO_DAEMON_PID" || rc=$?
  FPIO_DAEMON_PID=
  [ "$rc" = 0 ] || fail "server exited $rc after unmount"
  grep -q '^fpio: passthrough: ' "$FPIO_LOG" ||
    fail "server did not print 'fpio: passthrough: <status>' at exit"
  # The exit-time counters are the final word; later fpio_val reads them.
  cp "$FPIO_COUNTERS" "$FPIO_SNAP"
  # Once fpio answered an open it knows the transport: io_uring when required.
  if [ "${FPIO_REQUIRE_IO_URING:-0}" = 1 ] && grep -q '^transport dev$' "$FPIO_SNAP"; then
    fail "fpio saw its opens arrive over /dev/fuse, not io_uring"
  fi
}

fpio_counters_stamp() { stat -c '%i %y' "$FPIO_COUNTERS" 2>/dev/null || echo none; }

# fpio_snapshot: make the server rewrite its counters (SIGUSR1), wait until the
# file is replaced (write to .tmp + rename: a new inode every time), keep a copy.
fpio_snapshot() {
  local before
  [ -n "$FPIO_DAEMON_PID" ] || fail "fpio_snapshot: no server running"
  before=$(fpio_counters_stamp)
  kill -USR1 "$FPIO_DAEMON_PID"
  fpio_poll "$FPIO_COUNTER_TIMEOUT" "counters rewrite after SIGUSR1" \
    eval '[ "$(fpio_counters_stamp)" != "$before" ]'
  cp "$FPIO_COUNTERS" "$FPIO_SNAP"
}

# fpio_val NAME: NAME's value in the latest snapshot (or the exit-time file).
fpio_val() {
  awk -v n="$1" '$1 == n { print $2; found = 1 } END { exit !found }' "$FPIO_SNAP" ||
    fail "no '$1' line in the counters file"
}

# fpio_counter NAME: a fresh value.
fpio_counter() {
  fpio_snapshot
  fpio_val "$1"
}

# fpio_expect NAME OP VALUE (OP: -eq -ne -gt -ge -lt -le) on the latest snapshot.
fpio_expect() {
  local v
  v=$(fpio_val "$1")
  test "$v" "$2" "$3" || fail "counter $1 = $v, expected $2 $3"
  fpio_log "ok: $1 = $v ($2 $3)"
}

# fpio_wait_counter NAME OP VALUE: poll fresh snapshots until it holds
# (releases reach the server asynchronously after close()).
fpio_wait_counter() {
  local i v=
  for ((i = 0; i < FPIO_COUNTER_TIMEOUT * 10; i++)); do
    fpio_snapshot
    v=$(fpio_val "$1")
    if test "$v" "$2" "$3"; then
      fpio_log "ok: $1 = $v ($2 $3)"
      return 0
    fi
    sleep 0.1
  done
  fail "counter $1 stayed at $v, expected $2 $3"
}

fpio_expect_status() {
  local s
  s=$(fpio_val status)
  [ "$s" = "$1" ] || fail "status is '$s', expected '$1'"
  fpio_log "ok: status $s"
}

fpio_drop_caches() {
  sync
  echo 3 >/proc/sys/vm/drop_caches
}

# fpio_server_backing_fds DIR: the server's open fds on files under DIR,
# except O_PATH ones (inode handles, which hold no open file), one per line.
fpio_server_backing_fds() {
  local dir=$1 fd target flags
  for fd in /proc/"$FPIO_DAEMON_PID"/fd/*; do
    target=$(readlink "$fd" 2>/dev/null) || continue
    case $target in "$dir"/*) ;; *) continue ;; esac
    [ -f "$target" ] || continue
    flags=$(awk '$1 == "flags:" { print $2 }' "/proc/$FPIO_DAEMON_PID/fdinfo/${fd##*/}" 2>/dev/null) ||
      continue
    # O_PATH is 010000000 (octal) on Linux
    (((8#$flags & 8#10000000) != 0)) && continue
    echo "${fd##*/} -> $target (flags $flags)"
  done
}
