#!/bin/bash
# fuse-overlayfs 1.14, unadopted and adopted (fpio.patch), side by side through the same checks.
#
# Builds both variants against the libfuse fpio was built with (FPIO_FUSE_PCDIR: its pkg-config
# dir), mounts each twice (default options, then -o threaded=1) on layers inside an ext4 image
# this script makes, and runs every check once per variant and mode:
#   roundtrip   64 MiB written, caches dropped, read back cold; the server's own read/write
#               traffic (/proc/<pid>/io rchar+wchar deltas) is measured
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
log() { printf 'ovl: %s\n' "$*" >&2; }
fail() {
  log "FAIL: $*"
  exit 1
}

# ---- skip only for "cannot mount here" ----
skip=
if [ "$(id -u)" != 0 ]; then
  skip="not root"
elif [ ! -c /dev/fuse ]; then
  skip="/dev/fuse missing"
fi
if [ -n "$skip" ]; then
  [ "${FPIO_REQUIRE_MOUNT:-0}" = 1 ] && fail "cannot mount ($skip) and FPIO_REQUIRE_MOUNT=1"
  log "SKIP: $skip"
  exit 77
fi

SRC_ROOT=${FPIO_SOURCE_ROOT:-$(cd "$here/../.." && pwd)}
INSTALLED=0
[ "${FPIO_OVL_FPIO:-}" = installed ] && INSTALLED=1
if [ "$INSTALLED" = 1 ]; then
  BUILD_ROOT=
  PCDIR=${FPIO_FUSE_PCDIR:-$(dirname "$(pkg-config --path fuse3)")}
  pkg-config --exists fpio || fail "FPIO_OVL_FPIO=installed, but pkg-config finds no fpio"
else
  BUILD_ROOT=${FPIO_BUILD_ROOT:?FPIO_BUILD_ROOT (the fpio build dir) is not set}
  PCDIR=${FPIO_FUSE_PCDIR:?FPIO_FUSE_PCDIR (pkg-config dir of fpio libfuse) is not set}
fi
CACHE=${FPIO_CACHE:-/var/cache/fpio}/adopters/$NAME
read -r -a VARIANTS <<<"${FPIO_OVL_VARIANTS:-unadopted adopted}"
read -r -a MODES <<<"${FPIO_OVL_MODES:-default threaded}"
PATCH=$here/fpio.patch
[ "$INSTALLED" = 1 ] || [ -f "$BUILD_ROOT/libfpio.so" ] || fail "no libfpio.so in $BUILD_ROOT"
[ -f "$PCDIR/fuse3.pc" ] || fail "no fuse3.pc in $PCDIR"

# ---- Debian packages the builds and checks need ----
need=(autoconf automake make gcc pkgconf patch xz-utils fio e2fsprogs util-linux fuse3
  python3 libfuse3-dev)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >/dev/null
fi

# ---- state, cleanup ----
T=
servers=()   # PIDs of servers this script started
cleanup() {
  local rc=$? m pid i
  set +e
  trap - EXIT
  if [ -n "$T" ]; then
    # shellcheck disable=SC2013 # mount points have no blanks here (mktemp names)
    for m in $(awk '{ print $5 }' /proc/self/mountinfo | sort -r); do
      case $m in "$T"/*)
        log "cleanup: lazily unmounting $m"
        fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m"
        ;;
      esac
    done
  fi
  for pid in "${servers[@]}"; do
    alive "$pid" || continue
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 100; i++)); do alive "$pid" || break; sleep 0.05; done
    alive "$pid" && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  if [ "$rc" != 0 ] && [ -n "$T" ]; then
    for m in "$T"/*.log; do
      [ -f "$m" ] || continue
      printf '\n===== %s (last 40 lines) =====\n' "${m##*/}" >&2
      tail -n 40 "$m" >&2
    done
  fi
  [ -n "$T" ] && rm -rf --one-file-system "$T"
  exit "$rc"
}
trap cleanup EXIT

# True while PID runs (a zombie counts as exited).
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}
mounted() { awk -v m="$1" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo; }
SERVER=
# poll SECONDS WHAT COMMAND...: every 50 ms until COMMAND succeeds; fail at the deadline or as
# soon as the running server dies.
poll() {
  local secs=$1 what=$2 i
  shift 2
  for ((i = 0; i < secs * 20; i++)); do
    "$@" && return 0
    if [ -n "$SERVER" ] && ! alive "$SERVER"; then
      "$@" && return 0
      fail "server (pid $SERVER) died while waiting for: $what"
    fi
    sleep 0.05
  done
  fail "timed out after ${secs}s waiting for: $what"
}
drop_caches() {
  sync
  echo 3 >/proc/sys/vm/drop_caches
}
sha() { sha256sum "$@" | awk '{ print $1 }'; }

T=$(mktemp -d /tmp/fpio-ovl.XXXXXX)
chmod 755 "$T" # nobody must reach the mounts inside

# ---- build both variants (cached) ----
export PKG_CONFIG_PATH=$PCDIR${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
fuse_version=$(pkg-config --modversion fuse3)
fuse_libdir=$(pkg-config --variable=libdir fuse3)
fuse_incdir=$(pkg-config --variable=includedir fuse3)
fuse_id=$(printf '%s\n' "$fuse_version" "$(realpath "$PCDIR")" \
  "$(sha "$PCDIR/fuse3.pc" "$fuse_incdir/fuse3/fuse_lowlevel.h" "$fuse_incdir/fuse3/fuse_common.h")" |
  sha256sum | cut -c1-12)
mkdir -p "$CACHE"
tarball=$("$here/fetch.sh" "$CACHE" | tail -n 1)
log "libfuse $fuse_version ($PCDIR); patch: $(grep -c '^[+-][^+-]' "$PATCH") changed lines"

# build VARIANT: prints the path of the cached binary.
build() {
  local v=$1 key dir tmp
  key="src $(sha "$tarball") fuse $fuse_id"
  if [ "$v" = adopted ]; then
    # The header is part of the ABI the binary was compiled against.
    if [ "$INSTALLED" = 1 ]; then
      key="$key patch $(sha "$PATCH") installed fpio.h $(sha "$(pkg-config --variable=includedir fpio)/fpio.h")"
    else
      key="$key patch $(sha "$PATCH") fpio.h $(sha "$SRC_ROOT/include/fpio.h")"
    fi
  fi
  dir=$CACHE/$v-fuse$fuse_version-$(printf '%s' "$key" | sha256sum | cut -c1-16)
  if [ -x "$dir/$NAME" ] && [ "$(cat "$dir/key" 2>/dev/null)" = "$key" ]; then
    log "$v: cached build $dir"
    echo "$dir/$NAME"
    return 0
  fi
  log "$v: building in $dir (log: $dir.log)"
  tmp=$(mktemp -d "$CACHE/build.XXXXXX")
  (
    set -e
    exec >"$tmp.log" 2>&1
    tar -xf "$tarball" -C "$tmp" --strip-components=1
    cd "$tmp"
    if [ "$v" = adopted ]; then patch -p1 --fuzz=0 <"$PATCH"; fi
    autoreconf -fis
    if [ "$v" = adopted ] && [ "$INSTALLED" = 1 ]; then
      ./configure CPPFLAGS="$(pkg-config --cflags fpio)" LIBS="$(pkg-config --libs fpio)"
    elif [ "$v" = adopted ]; then
      ./configure CPPFLAGS="-I$SRC_ROOT/include" LDFLAGS="-L$BUILD_ROOT" LIBS="-lfpio"
    else
      ./configure
    fi
    nice make -j2 -C lib
    nice make -j2 "$NAME"
  ) || {
    mv "$tmp.log" "$dir.log"
    rm -rf "$tmp"
    tail -n 30 "$dir.log" >&2
    fail "$v: build failed (log: $dir.log)"
  }
  rm -rf "$dir"
  mkdir -p "$dir"
  install -m 0755 "$tmp/$NAME" "$dir/$NAME"
  mv "$tmp.log" "$dir.log"
  rm -rf "$tmp"
  printf '%s\n' "$key" >"$dir/key"
  echo "$dir/$NAME"
}
declare -A BIN
for v in "${VARIANTS[@]}"; do
  BIN[$v]=$(build "$v")
done
if [ "$INSTALLED" = 1 ] && [ -n "${BIN[adopted]:-}" ]; then
  lib=$(env -u LD_LIBRARY_PATH ldd "${BIN[adopted]}" | awk '$1 == "libfpio.so.0" { print $3 }')
  lib=$(realpath -e "$lib" 2>/dev/null) || fail "adopted: does not load libfpio.so.0"
  case $lib in /usr/lib/*) log "adopted: loads the installed $lib" ;;
  *) fail "adopted: loads libfpio.so.0 from '$lib', not the installed package" ;; esac
fi

# ---- the layers live in an ext4 image of our own ----
truncate -s 2G "$T/ext4.img"
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$T/ext4.img"
mkdir -p "$T/fs"
mount -o loop "$T/ext4.img" "$T/fs"
chmod 755 "$T/fs"
head -c 64M /dev/urandom >"$T/fs/rt.src"
rt_sha=$(sha "$T/fs/rt.src")

declare -A R   # R[variant,mode,check] = cell text
declare -A OK  # OK[variant,mode,check] = 1 pass / 0 fail (correctness checks only)
declare -A NUM # numbers for the decision
set_cell() { R[$1,$2,$3]=$4; }
pass() { OK[$1,$2,$3]=1; R[$1,$2,$3]="ok${4:+ ($4)}"; }
flunk() {
  OK[$1,$2,$3]=0
  R[$1,$2,$3]="FAIL: $4"
  log "$1/$2: $3 FAILED: $4"
}

io_bytes() { awk '$1 == "rchar:" || $1 == "wchar:" { s += $2 } END { print s }' "/proc/$1/io"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1048576 }'; }

# dd_rate FILE BS COUNT: MB/s of one dd, the file removed afterwards.
dd_rate() {
  local f=$1 bs=$2 n=$3 t0 t1
  rm -f "$f"
  t0=$(date +%s%N)
  if ! dd if=/dev/zero of="$f" bs="$bs" count="$n" status=none; then
    rm -f "$f"
    echo 0 # shows as 0.00x in the table
    return
  fi
  t1=$(date +%s%N)
  rm -f "$f"
  awk -v b="$(numfmt --from=iec "$bs")" -v n="$n" -v ns=$((t1 - t0)) \
    'BEGIN { printf "%.0f", b * n / (ns / 1e9) / 1e6 }'
}

# run VARIANT MODE: one mount, every check, clean unmount.
run() {
  local v=$1 mode=$2 d=$T/fs/$1-$2 L U W M slog opts rc pid libfuse
  L=$d/lower U=$d/upper W=$d/work M=$T/mnt-$v-$mode slog=$T/$v-$mode.log
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
  if [ "$INSTALLED" = 1 ]; then
    FPIO_LOG=1 env -u LD_LIBRARY_PATH "${BIN[$v]}" -f -o "$opts" "$M" >"$slog" 2>&1 &
  else
    FPIO_LOG=1 LD_LIBRARY_PATH=$BUILD_ROOT:$fuse_libdir "${BIN[$v]}" -f -o "$opts" "$M" >"$slog" 2>&1 &
  fi
  SERVER=$!
  servers+=("$SERVER")
  poll 10 "mount at $M" mounted "$M"
  stat "$M" >/dev/null || fail "$v/$mode: stat $M"
  libfuse=$(awk '$6 ~ /libfuse3\.so/ { print $6; exit }' "/proc/$SERVER/maps")
  case $libfuse in "$(realpath "$fuse_libdir")"/* | "$fuse_libdir"/*) ;;
    *) fail "$v/$mode: server loaded $libfuse, not the libfuse in $fuse_libdir" ;;
  esac
  if [ "$v" = adopted ]; then
    grep -q "$(realpath "$BUILD_ROOT")/libfpio.so\|$BUILD_ROOT/libfpio.so" "/proc/$SERVER/maps" ||
      fail "$v/$mode: server did not load $BUILD_ROOT/libfpio.so"
  fi

  # -- roundtrip: 64 MiB written and read back cold; the server's own traffic --
  local b0 b1 got
  b0=$(io_bytes "$SERVER")
  if dd if="$T/fs/rt.src" of="$M/rt" bs=1M status=none 2>"$T/err" && drop_caches && got=$(sha "$M/rt" 2>>"$T/err"); then
    b1=$(io_bytes "$SERVER")
    NUM[$v,$mode,rt_bytes]=$((b1 - b0))
    if [ "$got" = "$rt_sha" ]; then
      pass "$v" "$mode" roundtrip "server $(mib $((b1 - b0))) MiB"
    else
      flunk "$v" "$mode" roundtrip "read-back differs (server $(mib $((b1 - b0))) MiB)"
    fi
  else
    flunk "$v" "$mode" roundtrip "$(head -c 200 "$T/err")"
  fi
  rm -f "$M/rt"

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

  # -- fio crc32c verify, buffered and O_DIRECT --
  local direct name
  for direct in 0 1; do
    name=fio-buffered
    [ "$direct" = 1 ] && name=fio-direct
    if fio --name=verify --filename="$M/$name" --size=32m --bs=64k --rw=write --ioengine=psync \
      --direct="$direct" --verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 \
      --output="$T/$v-$mode-$name.fio" >/dev/null 2>&1 &&
      grep -q 'err= 0' "$T/$v-$mode-$name.fio"; then
      pass "$v" "$mode" "$name" "crc32c verified"
    else
      flunk "$v" "$mode" "$name" "$(grep -m1 -i 'err\|error' "$T/$v-$mode-$name.fio" | head -c 200)"
    fi
    rm -f "$M/$name"
  done

  # -- dd write speed as a ratio to native (the upper dir itself) --
  # Native and mount runs alternate (the machine is shared): best of three each.
  local bs n nat fu r i
  for bs in 4K 1M; do
    n=$((64 * 1048576 / $(numfmt --from=iec "$bs")))
    nat=0 fu=0
    for i in 1 2 3; do
      r=$(dd_rate "$U/native-dd" "$bs" "$n")
      [ "$r" -gt "$nat" ] && nat=$r
      r=$(dd_rate "$M/dd" "$bs" "$n")
      [ "$r" -gt "$fu" ] && fu=$r
    done
    NUM[$v,$mode,dd$bs]=$fu
    set_cell "$v" "$mode" "dd-$bs" \
      "$(awk -v a="$fu" -v b="$nat" 'BEGIN { printf "%.2fx (%d/%d MB/s)", a / b, a, b }')"
  done

  # -- unmount: fusermount3 -u, the server must exit 0 --
  pid=$SERVER
  fusermount3 -u "$M" || fail "$v/$mode: fusermount3 -u $M"
  # shellcheck disable=SC2016 # expanded at each poll
  poll 20 "server exit after unmount" eval '! alive "$pid"'
  rc=0
  wait "$pid" || rc=$?
  SERVER=
  if [ "$rc" = 0 ]; then pass "$v" "$mode" exit "exit 0"; else flunk "$v" "$mode" exit "exit $rc"; fi

  # -- what fpio said (FPIO_LOG=1) --
  if [ "$v" = adopted ]; then
    local st c counters=
    st=$(sed -n 's/^fpio: passthrough: //p' "$slog" | tail -n 1)
    NUM[$v,$mode,status]=$st
    set_cell "$v" "$mode" fpio "${st:-NO STATUS LINE}"
    for c in opens_passthrough opens_cached opens_direct opens_shared_direct stale_refused \
      busy_refused fallback_cached_opens fallback_access req_read req_write req_getxattr; do
      counters="$counters $c=$(awk -v n="$c" '$1 == "fpio:" && $2 == n { v = $3 } END { print v }' "$slog")"
    done
    set_cell "$v" "$mode" counters "${counters# }"
    grep '^fpio: ' "$slog" | sed "s/^/ovl: $v\/$mode: /" >&2 || true
  else
    set_cell "$v" "$mode" fpio "-"
    set_cell "$v" "$mode" counters "-"
  fi
}

for mode in "${MODES[@]}"; do
  for v in "${VARIANTS[@]}"; do
    run "$v" "$mode"
  done
done

umount "$T/fs"

# ---- the table ----
checks=(fpio roundtrip copyup setuid fio-buffered fio-direct dd-4K dd-1M exit counters)
{
  printf '\nfuse-overlayfs 1.14 on libfuse %s, kernel %s, fpio %s\n' "$fuse_version" "$(uname -r)" \
    "$(git -C "$SRC_ROOT" log -1 --format='%h %s' 2>/dev/null | cut -c1-60 || echo '?')"
  printf '| %-22s | %-34s | %-34s |\n' check unadopted adopted
  printf '|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..24})" "$(printf -- '-%.0s' {1..36})" \
    "$(printf -- '-%.0s' {1..36})"
  for mode in "${MODES[@]}"; do
    for c in "${checks[@]}"; do
      printf '| %-22s | %-34s | %-34s |\n' "$mode: $c" "${R[unadopted,$mode,$c]:-not run}" \
        "${R[adopted,$mode,$c]:-not run}"
    done
  done
  echo
} | tee "$CACHE/latest-table.txt"

# ---- decide ----
bad=0
for v in unadopted adopted; do
  [[ " ${VARIANTS[*]} " == *" $v "* ]] || { log "FAIL: the $v column was not run"; bad=1; }
done
for mode in "${MODES[@]}"; do
  for c in exit roundtrip copyup setuid fio-buffered fio-direct; do
    for v in "${VARIANTS[@]}"; do
      if [ "${OK[$v,$mode,$c]:-0}" != 1 ]; then
        log "FAIL: $v/$mode: $c: ${R[$v,$mode,$c]:-not run}"
        bad=1
      fi
    done
  done
  [[ " ${VARIANTS[*]} " == *" adopted "* ]] || continue
  if [[ " ${VARIANTS[*]} " == *" unadopted "* ]] &&
    [ "${NUM[adopted,$mode,suid]:-}" != "${NUM[unadopted,$mode,suid]:-}" ]; then
    log "FAIL: $mode: set-uid modes differ: adopted ${NUM[adopted,$mode,suid]:-?}, unadopted ${NUM[unadopted,$mode,suid]:-?}"
    bad=1
  fi
  st=${NUM[adopted,$mode,status]:-}
  if [ -z "$st" ]; then
    log "FAIL: $mode: the adopted server printed no 'fpio: passthrough: <status>' line (FPIO_LOG=1)"
    bad=1
  elif [ "$st" = live ]; then
    # The proof: the data went around the server. Unadopted must have moved >= 64 MiB through
    # its own reads/writes, so the measurement itself is shown to see this traffic.
    ab=${NUM[adopted,$mode,rt_bytes]:-999999999999}
    ub=${NUM[unadopted,$mode,rt_bytes]:-0}
    if [ "$ub" -lt $((64 * 1048576)) ]; then
      log "FAIL: $mode: unadopted server moved only $(mib "$ub") MiB for the 64 MiB round trip: the measurement does not see the traffic"
      bad=1
    fi
    if [ "$ab" -ge $((8 * 1048576)) ]; then
      log "FAIL: $mode: passthrough live but the adopted server moved $(mib "$ab") MiB (>= 8 MiB) for the 64 MiB round trip"
      bad=1
    else
      log "ok: $mode: passthrough live; adopted server moved $(mib "$ab") MiB, unadopted $(mib "$ub") MiB"
    fi
  else
    log "$mode: passthrough not live ($st): speed floor only"
    for bs in 4K 1M; do
      a=${NUM[adopted,$mode,dd$bs]:-0} u=${NUM[unadopted,$mode,dd$bs]:-0}
      if [ $((a * 2)) -lt "$u" ]; then
        log "FAIL: $mode: dd $bs: adopted $a MB/s < half of unadopted $u MB/s"
        bad=1
      fi
    done
  fi
done
[ "$bad" = 0 ] || fail "see above"
log "PASS"
