#!/bin/bash
# fuse-overlayfs 1.14, unadopted and adopted (fpio.patch), side by side through the same checks.
#
# Builds both variants against the libfuse fpio was built with (FPIO_FUSE_PCDIR: its pkg-config
# dir), mounts each twice (default options, then -o threaded=1) on layers inside an ext4 image
# this script makes, and runs every check once per variant and mode:
#   roundtrip   64 MiB written, caches dropped, read back cold; the server's own disk io
#               meanwhile (/proc/<pid>/io read_bytes+write_bytes deltas) is measured
#   copyup      a lower file held open by a reader is appended to (copy-up), read back, written
#               through a MAP_SHARED mmap of a new open; the lower file must stay byte-identical
#   setuid      a 4777 file in the upper layer written by nobody loses S_ISUID, on the upper file
#               and through the mount
#   fio         crc32c write+verify, buffered and O_DIRECT
#   dd          4 KiB and 1 MiB write speed as a ratio to the same dd into the upper dir natively
#               (alternating, best of three each)
# then prints the table and decides: every correctness check passes in both columns, the adopted
# server reports its fpio status, and where passthrough is live the 64 MiB round trip moves far
# less than 64 MiB through the adopted server; where it is not live, adopted dd speeds must be
# at least half the unadopted ones.
#
# Environment (set by adopters/meson.build):
#   FPIO_SOURCE_ROOT, FPIO_BUILD_ROOT   fpio's source tree and the build dir with libfpio.so
#   FPIO_OVL_MODES       which server modes to check (default: "default threaded")
#   FPIO_OVL_FPIO=installed   build the adopted variant against the fpio installed on the
#                        system (`pkg-config fpio`, no paths, no LD_LIBRARY_PATH) instead
#                        of FPIO_BUILD_ROOT (the Debian package test uses this)
#   FPIO_FUSE_PCDIR      pkg-config dir of the libfuse fpio was built with
#   FPIO_CACHE           build cache root (default /var/cache/fpio)
#   FPIO_REQUIRE_MOUNT=1 "cannot mount here" is a failure instead of a skip (77)
#   FPIO_OVL_VARIANTS    default "unadopted adopted"; one variant alone cannot pass (debugging)
set -euo pipefail

NAME=fuse-overlayfs
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../lib/adopter.sh
. "$here/../lib/adopter.sh"
adopter_setup ovl OVL "default threaded"
need_packages autoconf automake make gcc pkgconf patch xz-utils fio e2fsprogs util-linux fuse3 \
  python3 libfuse3-dev
make_tmpdir

# ---- build both variants (cached) ----
adopter_sources fuse_lowlevel.h fuse_common.h

# build_tree VARIANT: upstream's autotools, the library and the one binary.
build_tree() {
  autoreconf -fis
  if [ "$1" = adopted ] && [ "$INSTALLED" = 1 ]; then
    ./configure CPPFLAGS="$(pkg-config --cflags fpio)" LIBS="$(pkg-config --libs fpio)"
  elif [ "$1" = adopted ]; then
    ./configure CPPFLAGS="-I$SRC_ROOT/include" LDFLAGS="-L$BUILD_ROOT" LIBS="-lfpio"
  else
    ./configure
  fi
  nice make -j2 -C lib
  nice make -j2 "$NAME"
}
build_variants "$NAME"

# ---- the layers live in an ext4 image of our own ----
make_image 2G

checks_of() { echo fpio roundtrip copyup setuid fio-buffered fio-direct dd-4K dd-1M exit counters; }

# run VARIANT MODE: one mount, every check, clean unmount.
run() {
  local v=$1 mode=$2 d=$T/fs/$1-$2 L U W M opts
  L=$d/lower U=$d/upper W=$d/work M=$T/mnt-$v-$mode
  mkdir -p "$L" "$U" "$W" "$M"
  chmod 755 "$d" "$L" "$U" "$M"
  # lower file for copy-up, setuid file already in the upper layer
  head -c 1M /dev/urandom >"$L/cu"
  cp "$L/cu" "$d/cu.orig"
  printf 'original\n' >"$U/suid"
  chmod 4777 "$U/suid"
  opts=lowerdir=$L,upperdir=$U,workdir=$W
  [ "$mode" = threaded ] && opts=$opts,threaded=1

  log "$v/$mode: mount"
  start_server "$v" "$mode" "$M" -f -o "$opts" "$M"
  stat "$M" >/dev/null || fail "$v/$mode: stat $M"

  check_roundtrip "$v" "$mode" "$M"

  # -- copyup: reader holds the lower file; append, read back, mmap write via a new open --
  local rfd step=
  { cat "$d/cu.orig"; printf 'APPENDED'; } >"$d/cu.want1"
  python3 -c 'import sys; b = bytearray(open(sys.argv[1], "rb").read()); b[100:108] = b"MMAPWRIT"
open(sys.argv[2], "wb").write(b)' "$d/cu.want1" "$d/cu.want2"
  if ! { exec {rfd}<"$M/cu"; } 2>"$T/err"; then
    step="reader open: $(head -c 200 "$T/err")"
  elif ! head -c 4096 <&"$rfd" >/dev/null; then
    step="reader read"
  elif ! (printf 'APPENDED' >>"$M/cu") 2>"$T/err"; then
    step="append (copy-up) while the reader holds the file: $(head -c 200 "$T/err")"
  elif ! cmp -s "$d/cu.want1" "$M/cu"; then
    step="read-back after append"
  elif ! python3 - "$M/cu" 2>"$T/err" <<'EOF'
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
m = mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
m[100:108] = b"MMAPWRIT"
m.flush()
m.close()
os.close(fd)
EOF
  then
    step="MAP_SHARED write through a new open: $(tail -n 1 "$T/err" | head -c 200)"
  elif ! cmp -s "$d/cu.want2" "$M/cu"; then
    step="read-back after the mmap write"
  fi
  [ -n "${rfd:-}" ] && exec {rfd}<&-
  if [ -z "$step" ]; then
    drop_caches
    if ! cmp -s "$d/cu.want2" "$M/cu"; then
      step="cold read-back through the mount"
    elif ! cmp -s "$d/cu.want2" "$U/cu"; then
      step="upper file content"
    fi
  fi
  # Whatever happened above, the lower layer must be untouched.
  if ! cmp -s "$d/cu.orig" "$L/cu"; then step="LOWER FILE CHANGED${step:+; $step}"; fi
  if [ -z "$step" ]; then
    pass "$v" "$mode" copyup "lower unchanged"
  else
    flunk "$v" "$mode" copyup "$step"
  fi

  # -- setuid: nobody writes a 4777 file of the upper layer --
  local before mu mm
  before=$(stat -c %a "$M/suid")
  # shellcheck disable=SC2016 # $1 is the inner shell's
  if [ "$before" != 4777 ]; then
    flunk "$v" "$mode" setuid "mode through the mount is $before before the write, not 4777"
  elif ! setpriv --reuid=65534 --regid=65534 --clear-groups -- \
    sh -c 'printf "by nobody\n" >>"$1"' sh "$M/suid" 2>"$T/err"; then
    flunk "$v" "$mode" setuid "nobody's write failed: $(head -c 200 "$T/err")"
  else
    sync
    mu=$(stat -c %a "$U/suid") mm=$(stat -c %a "$M/suid")
    NUM[$v,$mode,suid]="$mu/$mm"
    if [ "$mu" = 777 ] && [ "$mm" = 777 ] &&
      [ "$(cat "$U/suid")" = "$(printf 'original\nby nobody')" ]; then
      pass "$v" "$mode" setuid "upper $mu, mount $mm"
    else
      flunk "$v" "$mode" setuid "upper $mu, mount $mm (4777 -> 777 expected), content: $(head -c 40 "$U/suid" | tr '\n' ' ')"
    fi
  fi

  check_fio "$v" "$mode" fio-buffered "$M/fio-buffered"
  check_fio "$v" "$mode" fio-direct "$M/fio-direct"
  # dd write speed against the upper dir itself, best of three
  check_dd "$v" "$mode" "$U" "$M" 3
  stop_server "$v" "$mode" "$M"

  # -- what fpio said (FPIO_LOG=1), with its counters --
  record_fpio "$v" "$mode"
  if [ "$v" = adopted ]; then
    local c counters=
    for c in opens_passthrough opens_cached opens_direct opens_shared_direct stale_refused \
      busy_refused fallback_cached_opens fallback_access req_read req_write req_getxattr; do
      counters="$counters $c=$(fpio_counter_of "$v" "$mode" "$c")"
    done
    set_cell "$v" "$mode" counters "${counters# }"
  else
    set_cell "$v" "$mode" counters "-"
  fi
}
run_all
print_table "fuse-overlayfs 1.14" 22 34 "$CACHE/latest-table.txt"

# Without live passthrough (whatever the reason), only the speed floor is decided.
not_live_accepted() { true; }
# Both columns must end with the same set-uid modes.
decide_extra() {
  [[ " ${VARIANTS[*]} " == *" unadopted "* ]] || return 0
  [ "${NUM[adopted,$1,suid]:-}" = "${NUM[unadopted,$1,suid]:-}" ] && return 0
  log "FAIL: $1: set-uid modes differ: adopted ${NUM[adopted,$1,suid]:-?}, unadopted ${NUM[unadopted,$1,suid]:-?}"
  return 1
}
decide
