#!/bin/bash
# Data integrity under load: fio with crc32c verify, 8 jobs, rw=randrw, block
# sizes 4 KiB-1 MiB, on one shared file (each job its own 8 MiB region of it:
# overlapping writers would break fio's verify) and on 8 per-job files.
#   integrity.sh passthrough|direct|cached buffered|odirect
# Each job set writes and verifies through the mount, is verified again through
# the mount after drop_caches (now read from the backing files), and once more
# on the backing dir itself. Then nothing may have leaked.
FPIO_TEST_NAME=integrity-${1:-}-${2:-}
source "$(dirname "$0")/../lib/mount.sh"
source "$(dirname "$0")/lib/rel.sh"

mode=${1:-} io=${2:-}
case $mode in passthrough | direct | cached) ;; *) fail "usage: integrity.sh MODE IO" ;; esac
case $io in buffered) odirect=0 ;; odirect) odirect=1 ;; *) fail "usage: integrity.sh MODE IO" ;; esac
command -v fio >/dev/null || fail "fio is not installed"

jobs=8 per_job_mib=8
src=$FPIO_TMP/src
# The backing dir is an ext4 image of the test's own, whatever the host's /tmp
# is: O_DIRECT goes down to a block device (the loop device) as on a real disk.
fpio_ext4 "$src"
fpio_mount "$src" "$FPIO_TMP/mnt" --mode="$mode" --threads=8
fpio_snapshot
base_fds=$(rel_fds)

# fio_run NAME DIR EXTRA...: one fio run; exit status and every job's error
# field must be 0 (fio reports a verify mismatch as error 84, EILSEQ).
fio_run() {
  local name=$1 dir=$2 out=$FPIO_TMP/$1.json rc=0 errs n
  shift 2
  fio --output-format=json --output="$out" --directory="$dir" \
    --ioengine=psync --rw=randrw --rwmixread=50 --bsrange=4k-1m --direct="$odirect" \
    --verify=crc32c --verify_fatal=1 --verify_dump=0 --verify_state_save=0 \
    --randrepeat=1 --fallocate=none --numjobs=$jobs --size=${per_job_mib}m "$@" >&2 || rc=$?
  # fio may print warnings ahead of the JSON; the error fields are enough.
  errs=$(grep -o '"error" : [0-9]*' "$out" | awk '{ print $3 }' | sort | uniq -c | tr -s ' ')
  n=$(grep -c '"error" : 0' "$out" || true)
  [ "$rc" = 0 ] && [ "$n" = "$jobs" ] ||
    { cat "$out" >&2; fail "fio $name: exit $rc, job errors (count value): $errs"; }
  # io_bytes comes in read, write, trim order in each job.
  fpio_log "ok: fio $name: $jobs jobs, exit 0, every job error 0," \
    "$(grep -o '"io_bytes" : [0-9]*' "$out" |
      awk '{ b[NR % 3] += $3 } END { printf "%d MiB read, %d MiB written", b[1] / 1048576, b[2] / 1048576 }')"
}

# The two job sets: --name must come after the options it uses on the command line.
shared=(--filename=shared --offset_increment=${per_job_mib}m --name=shared)
perjob=(--name=perjob)
for set in shared perjob; do
  declare -n args=$set
  fio_run "$set" "$FPIO_MNT" "${args[@]}"
  fpio_drop_caches
  fio_run "$set-reverify-mount" "$FPIO_MNT" --verify_only "${args[@]}"
  fio_run "$set-reverify-backing" "$src" --verify_only --direct=0 "${args[@]}"
  unset -n args
done

fpio_snapshot
case $mode in
passthrough)
  fpio_expect_status live
  fpio_expect opens_passthrough -gt 0
  fpio_expect server_read -eq 0
  fpio_expect server_write -eq 0
  ;;
direct)
  fpio_expect opens_direct -gt 0
  fpio_expect server_write -gt 0
  ;;
cached)
  fpio_expect opens_cached -gt 0
  fpio_expect server_write -gt 0
  ;;
esac
fpio_expect reply_failed -eq 0
rel_no_leaks "$base_fds"
fpio_unmount
fpio_expect backing_ids_live -eq 0
fpio_ext4_umount "$src"
