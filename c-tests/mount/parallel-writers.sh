#!/bin/bash
# 8 threads pwrite disjoint ranges of ONE file through a passthrough mount:
# buffered on a tmpfs backing dir, then O_DIRECT on a backing dir on an ext4
# image of the test's own. Every byte is verified, and neither a WRITE nor a
# READ reaches the server: the creating open, the 8 writers and the verifying
# reader are all plain passthrough.
source "$(dirname "$0")/../lib/mount.sh"
source "$(dirname "$0")/../lib/workloads.sh"

# run_case SOURCE [pwriters options]
run_case() {
  local src=$1
  shift
  fpio_mount "$src" "$FPIO_TMP/mnt" --mode=passthrough --threads=4
  fpio_snapshot
  fpio_expect_status live
  wl_pwriters "$@"
  fpio_snapshot
  fpio_expect server_write -eq 0
  fpio_expect server_read -eq 0
  # O_CREAT|O_TRUNC open, 8 writers, 1 verifying reader (after the writers'
  # releases: see wl_pwriters)
  fpio_expect opens_passthrough -eq 10
  fpio_expect opens_shared_direct -eq 0
  fpio_expect opens_direct -eq 0
  fpio_expect opens_cached -eq 0
  fpio_unmount
  fpio_expect backing_ids_live -eq 0
  fpio_expect backing_closed -eq "$(fpio_val backing_opened)"
}

fpio_tmpfs "$FPIO_TMP/tmpfs"
run_case "$FPIO_TMP/tmpfs"
fpio_tmpfs_umount "$FPIO_TMP/tmpfs"

fpio_ext4 "$FPIO_TMP/ext4"
run_case "$FPIO_TMP/ext4" --direct
fpio_ext4_umount "$FPIO_TMP/ext4"
