# shellcheck shell=bash
# What every adopter test does the same way, sourced by adopters/<server>/test.sh: the skip
# rules, the environment, the cleanup, the cached builds of both variants against the libfuse fpio
# was built with, the ext4 image, starting and stopping a server, the checks every adopter runs
# (roundtrip, fio, dd, exit, what fpio said), the side-by-side table and the decision.
#
# The test sets NAME (its cache dir below $FPIO_CACHE/adopters) and `here` (its own dir), sources
# this file and calls adopter_setup first. It defines
#   checks_of MODE       the rows of MODE in the table, in order
#   build_tree VARIANT   the build commands, run with set -e inside the unpacked (adopted:
#                        patched) tarball, their output in the build log
#   run VARIANT MODE     one mount and the mode's checks (start_server ... stop_server)
#   not_live_accepted STATUS   true where the adopted server may run without passthrough for
#                        the reason STATUS (then only the speed floor is decided)
# and may define decide_extra MODE (more decisions once both columns ran; false fails).
# Every server log lives at $T/<variant>-<mode>.log (dumped on failure).

LOG_TAG=adopter
log() { printf '%s: %s\n' "$LOG_TAG" "$*" >&2; }
fail() {
  log "FAIL: $*"
  exit 1
}

# adopter_setup TAG ENV DEFAULT_MODES: TAG prefixes the log lines and the temp dir, ENV names
# the variables FPIO_<ENV>_FPIO, FPIO_<ENV>_VARIANTS and FPIO_<ENV>_MODES.
adopter_setup() {
  LOG_TAG=$1
  local modes=$3 skip="" fpio_var=FPIO_${2}_FPIO variants_var=FPIO_${2}_VARIANTS
  local modes_var=FPIO_${2}_MODES

  # ---- skip only for "cannot mount here" ----
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
  [ "${!fpio_var:-}" = installed ] && INSTALLED=1
  if [ "$INSTALLED" = 1 ]; then
    BUILD_ROOT=
    PCDIR=${FPIO_FUSE_PCDIR:-$(dirname "$(pkg-config --path fuse3)")}
    pkg-config --exists fpio || fail "$fpio_var=installed, but pkg-config finds no fpio"
  else
    BUILD_ROOT=${FPIO_BUILD_ROOT:?FPIO_BUILD_ROOT (the fpio build dir) is not set}
    PCDIR=${FPIO_FUSE_PCDIR:?FPIO_FUSE_PCDIR (pkg-config dir of fpio libfuse) is not set}
  fi
  # shellcheck disable=SC2153 # NAME is the test's
  CACHE=${FPIO_CACHE:-/var/cache/fpio}/adopters/$NAME
  read -r -a VARIANTS <<<"${!variants_var:-unadopted adopted}"
  read -r -a MODES <<<"${!modes_var:-$modes}"
  PATCH=$here/fpio.patch
  [ "$INSTALLED" = 1 ] || [ -f "$BUILD_ROOT/libfpio.so" ] || fail "no libfpio.so in $BUILD_ROOT"
  [ -f "$PCDIR/fuse3.pc" ] || fail "no fuse3.pc in $PCDIR"
}

# need_packages PACKAGE...: installs the Debian packages among them that are missing.
need_packages() {
  local p missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
      >/dev/null
  fi
}

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

# make_tmpdir: T, the temp dir everything of this run lives in (removed by cleanup).
make_tmpdir() {
  T=$(mktemp -d "/tmp/fpio-$LOG_TAG.XXXXXX")
  chmod 755 "$T" # nobody must reach the mounts (and the image) inside
}

# adopter_sources HEADER...: the libfuse identity (version, pkg-config dir, fuse3.pc and the
# given headers of include/fuse3, those the server compiles against) and the upstream tarball
# (fetch.sh, into CACHE).
adopter_sources() {
  local h hdrs=()
  export PKG_CONFIG_PATH=$PCDIR${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
  fuse_version=$(pkg-config --modversion fuse3)
  fuse_libdir=$(pkg-config --variable=libdir fuse3)
  fuse_incdir=$(pkg-config --variable=includedir fuse3)
  for h in "$@"; do hdrs+=("$fuse_incdir/fuse3/$h"); done
  fuse_id=$(printf '%s\n' "$fuse_version" "$(realpath "$PCDIR")" \
    "$(sha "$PCDIR/fuse3.pc" "${hdrs[@]}")" | sha256sum | cut -c1-12)
  mkdir -p "$CACHE"
  tarball=$("$here/fetch.sh" "$CACHE" | tail -n 1)
  log "libfuse $fuse_version ($PCDIR); patch: $(grep -c '^[+-][^+-]' "$PATCH") changed lines"
}

# cached_build VARIANT BINARY [KEY]: prints the path of the cached binary, built by build_tree
# VARIANT when the cache has none for the key (the tarball, the libfuse, KEY and, adopted, the
# patch and fpio.h).
cached_build() {
  local v=$1 bin=$2 key dir tmp
  key="src $(sha "$tarball") fuse $fuse_id${3:+ $3}"
  if [ "$v" = adopted ]; then
    # The header is part of the ABI the binary was compiled against.
    if [ "$INSTALLED" = 1 ]; then
      key="$key patch $(sha "$PATCH") installed fpio.h $(sha "$(pkg-config --variable=includedir fpio)/fpio.h")"
    else
      key="$key patch $(sha "$PATCH") fpio.h $(sha "$SRC_ROOT/include/fpio.h")"
    fi
  fi
  dir=$CACHE/$v-fuse$fuse_version-$(printf '%s' "$key" | sha256sum | cut -c1-16)
  if [ -x "$dir/$bin" ] && [ "$(cat "$dir/key" 2>/dev/null)" = "$key" ]; then
    log "$v: cached build $dir"
    echo "$dir/$bin"
    return 0
  fi
  log "$v: building in $dir (log: $dir.log)"
  tmp=$(mktemp -d "$CACHE/build.XXXXXX")
  (
    set -e
    exec >"$tmp.log" 2>&1
    set -x
    tar -xf "$tarball" -C "$tmp" --strip-components=1
    cd "$tmp"
    if [ "$v" = adopted ]; then patch -p1 --fuzz=0 <"$PATCH"; fi
    build_tree "$v"
  ) || {
    mv "$tmp.log" "$dir.log"
    rm -rf "$tmp"
    tail -n 30 "$dir.log" >&2
    fail "$v: build failed (log: $dir.log)"
  }
  rm -rf "$dir"
  mkdir -p "$dir"
  install -m 0755 "$tmp/$bin" "$dir/$bin"
  mv "$tmp.log" "$dir.log"
  rm -rf "$tmp"
  printf '%s\n' "$key" >"$dir/key"
  echo "$dir/$bin"
}

# build_variants BINARY [KEY]: BIN[variant] for every variant; an adopted build against the
# installed fpio must load the installed library.
declare -A BIN
build_variants() {
  local v lib
  for v in "${VARIANTS[@]}"; do
    BIN[$v]=$(cached_build "$v" "$@")
  done
  if [ "$INSTALLED" = 1 ] && [ -n "${BIN[adopted]:-}" ]; then
    lib=$(env -u LD_LIBRARY_PATH ldd "${BIN[adopted]}" | awk '$1 == "libfpio.so.0" { print $3 }')
    lib=$(realpath -e "$lib" 2>/dev/null) || fail "adopted: does not load libfpio.so.0"
    case $lib in /usr/lib/*) log "adopted: loads the installed $lib" ;;
    *) fail "adopted: loads libfpio.so.0 from '$lib', not the installed package" ;; esac
  fi
}

# make_image SIZE: an ext4 image of our own on a loop device at $T/fs (never the host's file
# systems), with the round trip's 64 MiB source file.
make_image() {
  truncate -s "$1" "$T/ext4.img"
  mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$T/ext4.img"
  mkdir -p "$T/fs"
  mount -o loop "$T/ext4.img" "$T/fs"
  chmod 755 "$T/fs"
  head -c 64M /dev/urandom >"$T/fs/rt.src"
  rt_sha=$(sha "$T/fs/rt.src")
}

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
has() { [[ " $(checks_of "$1") " == *" $2 "* ]]; }

# disk_bytes PID: what PID's own reads and writes moved to and from block storage
# (read_bytes + write_bytes of /proc/PID/io). The backing files live on the ext4 image, so this
# is the server's share of the file data, however it moves it: rchar/wchar would miss splice,
# which libfuse uses for servers that ask for it wherever its pipe may grow (CAP_SYS_RESOURCE,
# or a raised fs.pipe-max-size). Passthrough io is the application's, not the server's.
disk_bytes() {
  awk '$1 == "read_bytes:" || $1 == "write_bytes:" { s += $2 } END { print s }' "/proc/$1/io"
}
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

# start_server VARIANT MODE M ARG...: BIN[VARIANT] ARG... in the background with FPIO_LOG=1 and
# its own log, until M is mounted; it must run on the libfuse fpio was built with and, adopted
# from a build dir, on that build's libfpio.so.
start_server() {
  local v=$1 mode=$2 M=$3 slog=$T/$1-$2.log libfuse
  shift 3
  if [ "$INSTALLED" = 1 ]; then
    FPIO_LOG=1 env -u LD_LIBRARY_PATH "${BIN[$v]}" "$@" >"$slog" 2>&1 &
  else
    FPIO_LOG=1 LD_LIBRARY_PATH=$BUILD_ROOT:$fuse_libdir "${BIN[$v]}" "$@" >"$slog" 2>&1 &
  fi
  SERVER=$!
  servers+=("$SERVER")
  poll 10 "mount at $M" mounted "$M"
  libfuse=$(awk '$6 ~ /libfuse3\.so/ { print $6; exit }' "/proc/$SERVER/maps")
  case $libfuse in "$(realpath "$fuse_libdir")"/* | "$fuse_libdir"/*) ;;
    *) fail "$v/$mode: server loaded $libfuse, not the libfuse in $fuse_libdir" ;;
  esac
  if [ "$v" = adopted ] && [ "$INSTALLED" = 0 ]; then
    grep -q "$(realpath "$BUILD_ROOT")/libfpio.so\|$BUILD_ROOT/libfpio.so" "/proc/$SERVER/maps" ||
      fail "$v/$mode: server did not load $BUILD_ROOT/libfpio.so"
  fi
}

# stop_server VARIANT MODE M: fusermount3 -u, the server must exit 0.
stop_server() {
  local v=$1 mode=$2 M=$3 pid=$SERVER rc=0
  fusermount3 -u "$M" || fail "$v/$mode: fusermount3 -u $M"
  # shellcheck disable=SC2016 # expanded at each poll
  poll 20 "server exit after unmount" eval '! alive "$pid"'
  wait "$pid" || rc=$?
  SERVER=
  if [ "$rc" = 0 ]; then pass "$v" "$mode" exit "exit 0"; else flunk "$v" "$mode" exit "exit $rc"; fi
}

# check_roundtrip VARIANT MODE DIR: 64 MiB written to DIR (in the mount) and read back cold; the
# server's own disk io meanwhile (disk_bytes): 128 MiB when the data passes through the server.
check_roundtrip() {
  local v=$1 mode=$2 f=$3/rt b0 b1 got
  b0=$(disk_bytes "$SERVER")
  if dd if="$T/fs/rt.src" of="$f" bs=1M status=none 2>"$T/err" && drop_caches &&
    got=$(sha "$f" 2>>"$T/err"); then
    b1=$(disk_bytes "$SERVER")
    NUM[$v,$mode,rt_bytes]=$((b1 - b0))
    if [ "$got" = "$rt_sha" ]; then
      pass "$v" "$mode" roundtrip "server $(mib $((b1 - b0))) MiB"
    else
      flunk "$v" "$mode" roundtrip "read-back differs (server $(mib $((b1 - b0))) MiB)"
    fi
  else
    flunk "$v" "$mode" roundtrip "$(head -c 200 "$T/err")"
  fi
  rm -f "$f"
}

# fio_verify FILE DIRECT OUT: 32 MiB crc32c write+verify, fio's report in OUT.
fio_verify() {
  fio --name=verify --filename="$1" --size=32m --bs=64k --rw=write --ioengine=psync \
    --direct="$2" --verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 \
    --output="$3" >/dev/null 2>&1 && grep -q 'err= 0' "$3"
}
# fio_err OUT: fio's error code in OUT ("err=5"), empty if it printed none.
fio_err() { grep -o -m1 'err=[ 0-9]*' "$1" | tr -d ' '; }

# check_fio VARIANT MODE NAME FILE: the fio-buffered or fio-direct check on FILE in the mount.
check_fio() {
  local v=$1 mode=$2 name=$3 f=$4 out=$T/$1-$2-$3.fio direct=0 err
  [ "$name" = fio-direct ] && direct=1
  if fio_verify "$f" "$direct" "$out"; then
    pass "$v" "$mode" "$name" "crc32c verified"
  else
    err=$(fio_err "$out")
    flunk "$v" "$mode" "$name" \
      "fio ${err:-failed} ($(grep -o -m1 'error=[^)]*' "$out" | cut -c7- | head -c 120))"
  fi
  rm -f "$f"
}

# check_dd VARIANT MODE NATIVE_DIR DIR TRIES: dd write speed into DIR (in the mount) as a ratio
# to the same dd into NATIVE_DIR, for the dd-4K and dd-1M rows the mode has. Native and mount
# runs alternate (the machine is shared): best of TRIES each.
check_dd() {
  local v=$1 mode=$2 native=$3 dir=$4 tries=$5 bs n nat fu r i
  for bs in 4K 1M; do
    has "$mode" "dd-$bs" || continue
    n=$((64 * 1048576 / $(numfmt --from=iec "$bs")))
    nat=0 fu=0
    for ((i = 0; i < tries; i++)); do
      r=$(dd_rate "$native/native-dd" "$bs" "$n")
      [ "$r" -gt "$nat" ] && nat=$r
      r=$(dd_rate "$dir/dd" "$bs" "$n")
      [ "$r" -gt "$fu" ] && fu=$r
    done
    NUM[$v,$mode,dd$bs]=$fu
    set_cell "$v" "$mode" "dd-$bs" \
      "$(awk -v a="$fu" -v b="$nat" 'BEGIN { printf "%.2fx (%d/%d MB/s)", a / b, a, b }')"
  done
}

# record_fpio VARIANT MODE: what fpio said (FPIO_LOG=1) after the server exited: the status for
# the fpio row and the decision, fpio's lines into this log.
record_fpio() {
  local v=$1 mode=$2 st
  if [ "$v" = adopted ]; then
    st=$(sed -n 's/^fpio: passthrough: //p' "$T/$v-$mode.log" | tail -n 1)
    NUM[$v,$mode,status]=$st
    set_cell "$v" "$mode" fpio "${st:-NO STATUS LINE}"
    grep '^fpio: ' "$T/$v-$mode.log" | sed "s/^/$LOG_TAG: $v\/$mode: /" >&2 || true
  else
    set_cell "$v" "$mode" fpio "-"
  fi
}

# fpio_counter_of VARIANT MODE NAME: the value of counter NAME that fpio printed (FPIO_LOG=1)
# when the server's session ended: a number, n/a, or nothing if it printed none.
fpio_counter_of() {
  awk -v n="$3" '$1 == "fpio:" && $2 == n { v = $3 } END { print v }' "$T/$1-$2.log"
}

# run_all: every mode, both variants in turn, then the image is unmounted.
run_all() {
  local mode v
  for mode in "${MODES[@]}"; do
    for v in "${VARIANTS[@]}"; do
      run "$v" "$mode"
    done
  done
  umount "$T/fs"
}

# print_table TITLE WIDTH1 WIDTH2 FILE: the side-by-side table, also into FILE.
print_table() {
  local w1=$2 w2=$3 mode c
  {
    printf '\n%s on libfuse %s, kernel %s, fpio %s\n' "$1" "$fuse_version" "$(uname -r)" \
      "$(git -C "$SRC_ROOT" log -1 --format='%h %s' 2>/dev/null | cut -c1-60 || echo '?')"
    printf "| %-${w1}s | %-${w2}s | %-${w2}s |\n" check unadopted adopted
    # shellcheck disable=SC2046 # seq prints numbers only
    printf '|%s|%s|%s|\n' "$(printf -- '-%.0s' $(seq $((w1 + 2))))" \
      "$(printf -- '-%.0s' $(seq $((w2 + 2))))" "$(printf -- '-%.0s' $(seq $((w2 + 2))))"
    for mode in "${MODES[@]}"; do
      for c in $(checks_of "$mode"); do
        printf "| %-${w1}s | %-${w2}s | %-${w2}s |\n" "$mode: $c" \
          "${R[unadopted,$mode,$c]:-not run}" "${R[adopted,$mode,$c]:-not run}"
      done
    done
    echo
  } | tee "$4"
}

# decide: every correctness check passes in both columns; the adopted server printed its fpio
# status. Where passthrough is live, the 64 MiB round trip moved far less than 64 MiB through
# the adopted server; where it is not live for a reason not_live_accepted takes, adopted dd
# speeds must be at least half the unadopted ones.
decide() {
  local bad=0 v mode c st ab ub bs a u
  for v in unadopted adopted; do
    [[ " ${VARIANTS[*]} " == *" $v "* ]] || { log "FAIL: the $v column was not run"; bad=1; }
  done
  for mode in "${MODES[@]}"; do
    for c in $(checks_of "$mode"); do
      case $c in fpio | counters | dd-*) continue ;; esac # reported, not decided
      for v in "${VARIANTS[@]}"; do
        if [ "${OK[$v,$mode,$c]:-0}" != 1 ]; then
          log "FAIL: $v/$mode: $c: ${R[$v,$mode,$c]:-not run}"
          bad=1
        fi
      done
    done
    [[ " ${VARIANTS[*]} " == *" adopted "* ]] || continue
    if declare -F decide_extra >/dev/null; then decide_extra "$mode" || bad=1; fi
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
    elif not_live_accepted "$st"; then
      log "$mode: passthrough not live ($st): speed floor only"
      for bs in 4K 1M; do
        has "$mode" "dd-$bs" || continue
        a=${NUM[adopted,$mode,dd$bs]:-0} u=${NUM[unadopted,$mode,dd$bs]:-0}
        if [ $((a * 2)) -lt "$u" ]; then
          log "FAIL: $mode: dd $bs: adopted $a MB/s < half of unadopted $u MB/s"
          bad=1
        fi
      done
    else
      log "FAIL: $mode: the adopted server's fpio status is '$st', not live"
      bad=1
    fi
  done
  [ "$bad" = 0 ] || fail "see above"
  log "PASS"
}
