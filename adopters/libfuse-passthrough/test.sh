#!/bin/bash
# libfuse 3.14.0's example/passthrough.c (a high-level server), unadopted and adopted (fpio.patch),
# side by side through the same checks.
#
# Builds both variants against the libfuse fpio was built with (FPIO_FUSE_PCDIR: its pkg-config
# dir), each a single cc of example/passthrough.c. passthrough.c mirrors /, so the files live in
# an ext4 image this script makes (loop device) and are reached through a mount M as M/<image
# dir>/... . Each variant is mounted once per server mode (-f -o allow_other, plus):
#   mt            the default multi-threaded loop
#   st            -s, single-threaded
#   kernel_cache  -o kernel_cache (libfuse sets FOPEN_KEEP_CACHE on every open), multi-threaded
#   auto_cache    -s -o auto_cache (FOPEN_KEEP_CACHE while the mtime stays the same)
# and runs the checks of that mode once:
#   roundtrip     (all) 64 MiB written, caches dropped, read back cold; the server's own
#                 disk io meanwhile (/proc/<pid>/io read_bytes+write_bytes deltas) is measured
#   cache         (kernel_cache, auto_cache) a file read twice (warm), rewritten through the
#                 mount, read back: the new contents, no error
#   setuid        (mt, st) a 4777 file made through the mount, appended to by nobody; the modes
#                 of the backing file and through the mount are reported. The adopted server
#                 must clear S_ISUID (POSIX); the unadopted column is reported as it is
#   fio-buffered, fio-direct  (mt, st) 32 MiB crc32c write+verify, buffered and O_DIRECT.
#                 Unadopted, upstream passthrough.c does O_DIRECT io on its own fd from
#                 libfuse's buffers, which need not be aligned: that cell is reported, never
#                 decided (README); the adopted column must pass
#   dd-4K, dd-1M  (mt) 64 MiB write speed as a ratio to the same dd into the image dir natively
#                 (alternating, best of two each)
#   exit          (all) fusermount3 -u; the server must exit 0
#   requests      (all) the READ and WRITE requests that reached the adopted server over the
#                 whole mount, in fpio's count printed at exit (FPIO_LOG=1): where passthrough
#                 is live, 0 and 0 on libfuse 3.14 (fpio sees every request there) and n/a on
#                 3.17+ (it sees none; the roundtrip's server bytes decide there)
# then prints the table and decides: every correctness check passes in both columns; the adopted
# server printed `fpio: passthrough: live` (FPIO_LOG=1), and in every mode the unadopted server
# moved at least 64 MiB for the round trip (the measurement sees the traffic) and the adopted one
# less than 8 MiB. The only other status accepted is "kernel lacks FUSE passthrough" (a root
# server that asks for no writeback cache has no other reason to run without it); then the
# adopted dd speeds must be at least half the unadopted ones.
#
# Environment (set by adopters/meson.build):
#   FPIO_SOURCE_ROOT, FPIO_BUILD_ROOT   fpio's source tree and the build dir with libfpio.so
#   FPIO_PT_MODES        which server modes to check (default: "mt st kernel_cache auto_cache")
#   FPIO_PT_FPIO=installed   build the adopted variant against the fpio installed on the system
#                        (`pkg-config fpio`, no paths, no LD_LIBRARY_PATH) instead of
#                        FPIO_BUILD_ROOT
#   FPIO_FUSE_PCDIR      pkg-config dir of the libfuse fpio was built with
#   FPIO_CACHE           build cache root (default /var/cache/fpio)
#   FPIO_REQUIRE_MOUNT=1 "cannot mount here" is a failure instead of a skip (77)
#   FPIO_PT_VARIANTS     default "unadopted adopted"; one variant alone cannot pass (debugging)
set -euo pipefail

NAME="libfuse-passthrough"
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../lib/adopter.sh
. "$here/../lib/adopter.sh"
adopter_setup pt PT "mt st kernel_cache auto_cache"
for mode in "${MODES[@]}"; do
  case $mode in mt | st | kernel_cache | auto_cache) ;; *) fail "unknown mode '$mode'" ;; esac
done
need_packages gcc libc6-dev pkgconf patch xz-utils fio e2fsprogs util-linux fuse3 libfuse3-dev
make_tmpdir

# ---- build both variants (cached) ----
adopter_sources fuse.h fuse_common.h

# What the #ifdef HAVE_* of passthrough.c need (libfuse's own build defines them from its
# config.h on glibc), the same for both variants.
CFLAGS_PT=(-O2 -Wall -DHAVE_SETXATTR -DHAVE_POSIX_FALLOCATE -DHAVE_UTIMENSAT -DHAVE_COPY_FILE_RANGE)

# build_tree VARIANT: one cc of example/passthrough.c.
build_tree() {
  # shellcheck disable=SC2046 # pkg-config output is a list of words
  if [ "$1" = adopted ] && [ "$INSTALLED" = 1 ]; then
    cc "${CFLAGS_PT[@]}" example/passthrough.c -o passthrough \
      $(pkg-config --cflags fuse3 fpio) $(pkg-config --libs fuse3 fpio)
  elif [ "$1" = adopted ]; then
    cc "${CFLAGS_PT[@]}" -I"$SRC_ROOT/include" example/passthrough.c -o passthrough \
      $(pkg-config --cflags fuse3) -L"$BUILD_ROOT" -lfpio $(pkg-config --libs fuse3)
  else
    cc "${CFLAGS_PT[@]}" example/passthrough.c -o passthrough \
      $(pkg-config --cflags fuse3) $(pkg-config --libs fuse3)
  fi
}
build_variants passthrough "cc $(cc -dumpfullversion) flags ${CFLAGS_PT[*]}"

# ---- the backing files live in an ext4 image of our own ----
make_image 1G

# The checks of each mode (the table's rows, in order).
checks_of() {
  case $1 in
  mt) echo fpio roundtrip setuid fio-buffered fio-direct dd-4K dd-1M exit requests ;;
  st) echo fpio roundtrip setuid fio-buffered fio-direct exit requests ;;
  kernel_cache | auto_cache) echo fpio roundtrip cache exit requests ;;
  esac
}
mode_opts() {
  case $1 in
  mt) ;;
  st) echo -s ;;
  kernel_cache) echo -o kernel_cache ;;
  auto_cache) echo -s -o auto_cache ;;
  esac
}

mode_of() { stat -c %a "$1" 2>/dev/null || echo '?'; }
suid_set() { [ $((0$1 & 04000)) != 0 ]; }

# run VARIANT MODE: one mount, the mode's checks, clean unmount.
run() {
  local v=$1 mode=$2 D=$T/fs/$1-$2 M=$T/mnt-$1-$2 MD
  local -a opts
  MD=$M$D # the backing dir D seen through the mount (passthrough.c mirrors /)
  mkdir -p "$D" "$M"
  chmod 755 "$D" "$M"
  read -r -a opts <<<"$(mode_opts "$mode")"

  log "$v/$mode: mount (${opts[*]:-default})"
  start_server "$v" "$mode" "$M" -f -o allow_other "${opts[@]}" "$M"
  [ -d "$MD" ] || fail "$v/$mode: $MD is not reachable through the mount"

  check_roundtrip "$v" "$mode" "$MD"

  # -- cache: read twice (the second one warm), rewrite through the mount, read back --
  if has "$mode" cache; then
    local step=
    head -c 1M /dev/urandom >"$D/cache.a"
    head -c 1M /dev/urandom >"$D/cache.b"
    if ! cp "$D/cache.a" "$MD/cache" 2>"$T/err"; then
      step="first write: $(head -c 200 "$T/err")"
    elif ! cmp "$D/cache.a" "$MD/cache" >"$T/err" 2>&1; then
      step="first read: $(head -c 200 "$T/err")"
    elif ! cmp "$D/cache.a" "$MD/cache" >"$T/err" 2>&1; then
      step="second (warm) read: $(head -c 200 "$T/err")"
    elif ! cp "$D/cache.b" "$MD/cache" 2>"$T/err"; then
      step="rewrite: $(head -c 200 "$T/err")"
    elif ! cmp "$D/cache.b" "$MD/cache" >"$T/err" 2>&1; then
      step="read after the rewrite: $(head -c 200 "$T/err")"
    elif ! cmp -s "$D/cache.b" "$D/cache"; then
      step="backing file after the rewrite"
    fi
    if [ -z "$step" ]; then
      pass "$v" "$mode" cache "new contents read back"
    else
      flunk "$v" "$mode" cache "$step"
    fi
    rm -f "$MD/cache" "$D/cache.a" "$D/cache.b"
  fi

  # -- setuid: a 4777 file made through the mount, appended to by nobody --
  if has "$mode" setuid; then
    local before mb mm content
    # shellcheck disable=SC2016 # $1 is the inner shell's
    if ! { printf 'original\n' >"$MD/suid" && chmod 4777 "$MD/suid"; } 2>"$T/err"; then
      flunk "$v" "$mode" setuid "making the 4777 file through the mount: $(head -c 200 "$T/err")"
    elif before=$(mode_of "$MD/suid") && [ "$before" != 4777 ]; then
      flunk "$v" "$mode" setuid "mode through the mount is $before before the write, not 4777"
    elif ! setpriv --reuid=nobody --regid=nogroup --clear-groups -- \
      sh -c 'printf "by nobody\n" >>"$1"' sh "$MD/suid" 2>"$T/err"; then
      flunk "$v" "$mode" setuid "nobody's append failed: $(head -c 200 "$T/err")"
    else
      sync
      # passthrough.c sets attr_timeout = 0: every stat through the mount asks the server.
      mb=$(mode_of "$D/suid") mm=$(mode_of "$MD/suid")
      content=$(cat "$D/suid")
      NUM[$v,$mode,suid]="$mb/$mm"
      if [ "$content" != "$(printf 'original\nby nobody')" ]; then
        flunk "$v" "$mode" setuid "backing $mb, mount $mm, content: $(head -c 40 "$D/suid" | tr '\n' ' ')"
      elif [ "$v" = adopted ] && { suid_set "$mb" || suid_set "$mm"; }; then
        flunk "$v" "$mode" setuid "S_ISUID kept after nobody's write: backing $mb, mount $mm (777 expected)"
      elif suid_set "$mb" || suid_set "$mm"; then
        # The unadopted column is reported as it is.
        pass "$v" "$mode" setuid "S_ISUID KEPT: backing $mb, mount $mm"
      else
        pass "$v" "$mode" setuid "backing $mb, mount $mm"
      fi
    fi
    rm -f "$MD/suid"
  fi

  # -- fio crc32c verify, buffered and O_DIRECT --
  local name out err
  for name in fio-buffered fio-direct; do
    has "$mode" "$name" || continue
    if [ "$v" = unadopted ] && [ "$name" = fio-direct ]; then
      # Upstream passthrough.c opens its own fd with the caller's O_DIRECT and preads/pwrites
      # it with libfuse's buffers, which need not be 512-byte aligned: whether it gets EINVAL
      # depends on where the heap puts them (README). That cell is reported, never decided;
      # the adopted column must pass.
      out=$T/$v-$mode-$name.fio
      fio_verify "$MD/$name" 1 "$out" || true
      err=$(fio_err "$out")
      OK[$v,$mode,$name]=1
      R[$v,$mode,$name]="${err:-fio failed} (upstream's own O_DIRECT io; reported)"
      rm -f "$MD/$name"
    else
      check_fio "$v" "$mode" "$name" "$MD/$name"
    fi
  done

  # dd write speed against the image dir itself, best of two
  check_dd "$v" "$mode" "$D" "$MD" 2
  stop_server "$v" "$mode" "$M"
  record_fpio "$v" "$mode"

  # -- READ and WRITE requests that reached the adopted server over the whole mount, in
  # fpio's own count (FPIO_LOG=1, at exit): every open here passes through, so none. fpio sees
  # requests where it wraps the io (libfuse 3.14); on 3.17+ it does not and says n/a. --
  if [ "$v" = adopted ]; then
    local rr rw want=0/0
    rr=$(fpio_counter_of "$v" "$mode" req_read) rw=$(fpio_counter_of "$v" "$mode" req_write)
    case $fuse_version in 3.1[4-6].*) ;; *) want=n/a/n/a ;; esac
    if [ "${NUM[$v,$mode,status]:-}" != live ]; then
      # Without passthrough the server serves the io; the status row decides.
      OK[$v,$mode,requests]=1
      set_cell "$v" "$mode" requests "READ ${rr:-?}, WRITE ${rw:-?} (not live)"
    elif [ "$rr/$rw" = "$want" ]; then
      pass "$v" "$mode" requests "READ $rr, WRITE $rw"
    else
      flunk "$v" "$mode" requests "READ ${rr:-?}, WRITE ${rw:-?} (expected $want)"
    fi
  else
    OK[$v,$mode,requests]=1
    set_cell "$v" "$mode" requests "-"
  fi
}
run_all
print_table "libfuse 3.14.0 example/passthrough.c" 23 41 "$CACHE/latest-table-fuse$fuse_version.txt"

# The one reason a root server without writeback cache may run without passthrough; any other
# status fails.
not_live_accepted() { [ "$1" = "kernel lacks FUSE passthrough" ]; }
decide
