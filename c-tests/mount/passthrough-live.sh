#!/bin/bash
# Passthrough is live and carries the I/O: 64 MiB written and read back (after
# drop_caches) through the mount with zero READ or WRITE requests at the server.
source "$(dirname "$0")/../lib/mount.sh"
source "$(dirname "$0")/../lib/workloads.sh"

src=$FPIO_TMP/src
mkdir -m 755 "$src"
fpio_mount "$src" "$FPIO_TMP/mnt" --mode=passthrough
wl_bigfile_passthrough
fpio_log "info: server_getxattr = $(fpio_val server_getxattr), req_total = $(fpio_val req_total)"

fpio_unmount
fpio_expect server_read -eq 0
fpio_expect server_write -eq 0
fpio_expect backing_ids_live -eq 0
fpio_expect backing_closed -eq "$(fpio_val backing_opened)"
