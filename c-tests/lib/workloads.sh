# shellcheck shell=bash
# The workloads the passthrough, parallel-writer and fallback tests share.
# Sourced after mount.sh; they act on the mounted server (FPIO_MNT/FPIO_SOURCE).

FPIO_BIG_MIB=64

# wl_bigfile: write 64 MiB through the mount, drop caches, read it back; the
# mount and the backing file must both hold exactly the bytes written.
wl_bigfile() {
  local ref=$FPIO_TMP/big.ref
  [ -f "$ref" ] || head -c $((FPIO_BIG_MIB << 20)) /dev/urandom >"$ref"
  dd if="$ref" of="$FPIO_MNT/big" bs=1M conv=fsync status=none ||
    fail "writing $FPIO_BIG_MIB MiB through the mount"
  fpio_drop_caches
  cmp "$ref" "$FPIO_MNT/big" || fail "read back through the mount differs"
  cmp "$ref" "$FPIO_SOURCE/big" || fail "backing file differs"
  fpio_log "ok: $FPIO_BIG_MIB MiB written, read back after drop_caches, backing identical"
  rm -f "$FPIO_MNT/big"
}

# wl_bigfile_passthrough: wl_bigfile on a mount where passthrough is live, and
# none of its data reached the server: no READ or WRITE served, the writer's and
# the reader's opens passed through.
wl_bigfile_passthrough() {
  fpio_snapshot
  fpio_expect_status live
  wl_bigfile
  fpio_snapshot
  fpio_expect server_read -eq 0
  fpio_expect server_write -eq 0
  fpio_expect opens_passthrough -ge 2
}

# wl_pwriters [--direct]: 8 threads pwrite disjoint chunks of one 64 MiB file
# through the mount (each its own O_WRONLY open); then every byte is verified
# through the mount and on the backing file.
wl_pwriters() {
  local size=$((FPIO_BIG_MIB << 20))
  "$FPIO_PWRITERS" --write-only --threads 8 --size "$size" "$@" "$FPIO_MNT/pw" ||
    fail "pwriters $* through the mount"
  # close() returns before the kernel's RELEASE reaches the server. A reader
  # opening now could still find the writers' write-only backing file registered
  # and share it as FOPEN_DIRECT_IO|FOPEN_PASSTHROUGH, which sends its reads to
  # the server; once every release is in, it registers a backing file of its
  # own. (Without passthrough no backing id is ever live and this returns at once.)
  fpio_wait_counter backing_ids_live -eq 0
  "$FPIO_PWRITERS" --verify-only --size "$size" "$@" "$FPIO_MNT/pw" ||
    fail "pwriters $*: read back through the mount differs"
  fpio_drop_caches
  "$FPIO_PWRITERS" --verify-only --size "$size" "$@" "$FPIO_SOURCE/pw" ||
    fail "pwriters $*: backing file differs"
  fpio_log "ok: 8 parallel writers${*:+ ($*)}, verified through the mount and on the backing file"
  rm -f "$FPIO_MNT/pw"
}
