# shellcheck shell=bash
# Shared by the reliability tests (sourced after c-tests/lib/mount.sh): the
# server's resource use, and the "nothing leaked" check every test ends with.

[ -x "${FPIO_RELSTORM:-}" ] || fail "FPIO_RELSTORM is not set to an executable"

# rel_fds: how many fds the server holds.
rel_fds() {
  local n=0 f
  for f in /proc/"$FPIO_DAEMON_PID"/fd/*; do n=$((n + 1)); done
  echo "$n"
}

# rel_rss_kib: the server's resident set (KiB).
rel_rss_kib() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$FPIO_DAEMON_PID/status"; }

rel_fds_at_most() { [ "$(rel_fds)" -le "$1" ]; }

# rel_settle_fds BASE: the server's fd count returns to BASE (taken right after
# mount). Its O_PATH inode fds live as long as the kernel remembers the inodes,
# so evict dentries and inodes: the kernel then sends FORGET for each.
rel_settle_fds() {
  local base=$1 i
  for ((i = 0; i < 40; i++)); do
    rel_fds_at_most "$base" && break
    sync
    echo 2 >/proc/sys/vm/drop_caches
    sleep 0.25
  done
  rel_fds_at_most "$base" ||
    fail "server holds $(rel_fds) fds, $base after mount:"$'\n'"$(ls -l /proc/"$FPIO_DAEMON_PID"/fd)"
  fpio_log "ok: server fd count back at baseline ($base)"
}

# rel_no_leaks BASE_FDS: after every application fd is closed, no backing id
# is live, every id opened was closed, no backing file is open in the server,
# and its fd count is back at BASE_FDS.
rel_no_leaks() {
  local leaked
  fpio_wait_counter backing_ids_live -eq 0
  fpio_expect backing_closed -eq "$(fpio_val backing_opened)"
  leaked=$(fpio_server_backing_fds "$FPIO_SOURCE")
  [ -z "$leaked" ] || fail "server still holds backing files open:"$'\n'"$leaked"
  rel_settle_fds "$1"
}

# rel_same_tree [WRAPPER...]: every regular file reads the same through the
# mount (after dropping caches) as on the backing dir; cmp runs under WRAPPER
# (e.g. a retry of interrupted opens).
rel_same_tree() {
  local f n=0
  fpio_drop_caches
  for f in "$FPIO_SOURCE"/*; do
    [ -f "$f" ] || continue
    "$@" cmp "$f" "$FPIO_MNT/${f##*/}" || fail "${f##*/} differs between mount and backing dir"
    n=$((n + 1))
  done
  fpio_log "ok: $n files identical through the mount and on the backing dir"
}
