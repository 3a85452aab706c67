#!/bin/bash
# The passthrough workloads (64 MiB write/read-back, 8 parallel writers buffered
# on tmpfs and O_DIRECT on an ext4 image) also pass when passthrough is not used:
#   fallback.sh no-passthrough   --mode=passthrough --no-passthrough (refused)
#   fallback.sh direct           --mode=direct
#   fallback.sh cached           --mode=cached
# and the counters show the I/O went through the server.
source "$(dirname "$0")/../lib/mount.sh"
source "$(dirname "$0")/../lib/workloads.sh"

case ${1:-} in
no-passthrough) opts=(--mode=passthrough --no-passthrough) ;;
direct) opts=(--mode=direct) ;;
cached) opts=(--mode=cached) ;;
*) fail "usage: fallback.sh no-passthrough|direct|cached" ;;
esac
scenario=$1

check_counters() {
  fpio_snapshot
  fpio_expect opens_passthrough -eq 0
  fpio_expect backing_ids_live -eq 0
  fpio_expect server_write -gt 0
  fpio_expect server_read -gt 0
  case $scenario in
  no-passthrough)
    fpio_expect_status disabled
    fpio_expect fallback_not_live -gt 0
    ;;
  direct)
    fpio_expect opens_direct -gt 0
    ;;
  cached)
    fpio_expect opens_cached -gt 0
    ;;
  esac
}

fpio_tmpfs "$FPIO_TMP/tmpfs"
fpio_mount "$FPIO_TMP/tmpfs" "$FPIO_TMP/mnt" "${opts[@]}" --threads=4
wl_bigfile
wl_pwriters
check_counters
fpio_unmount
fpio_tmpfs_umount "$FPIO_TMP/tmpfs"

fpio_ext4 "$FPIO_TMP/ext4"
fpio_mount "$FPIO_TMP/ext4" "$FPIO_TMP/mnt" "${opts[@]}" --threads=4
wl_pwriters --direct
check_counters
fpio_unmount
fpio_ext4_umount "$FPIO_TMP/ext4"
