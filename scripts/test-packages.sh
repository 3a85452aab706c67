#!/usr/bin/env bash
# The packaging phase, on Debian 12/13 as root:
#   1. meson dist: fpio-<version>.tar.xz with every crate in vendor/;
#   2. the Debian packages built from that tarball with Debian's Rust and no
#      network at all (a fresh network namespace), its dh_auto_test included;
#   3. lintian: no errors;
#   4. the packages installed with apt, a consumer built with plain
#      `pkg-config fpio` (scripts/check-consumer.sh --installed) and the
#      installed example server mounting a directory;
#   5. the fuse-overlayfs adopter built against the installed packages, and its checks;
#   6. the packages removed again.
# Ends with one 'N passed, N failed' line; non-zero when anything failed.
#   test-packages.sh [--keep] [--results FILE]
#     --keep          leave the work dir for inspection
#     --results FILE  one JSON line per step, {"name": ..., "result": "OK"|"FAIL"}
#                     (what test-all.sh's tally reads from meson's testlog.json)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
keep=0 results=/dev/null
while [ $# -gt 0 ]; do
  case $1 in
  --keep) keep=1 ;;
  --results) results=$2; shift ;;
  *) echo "usage: $0 [--keep] [--results FILE]" >&2; exit 2 ;;
  esac
  shift
done
: >"$results"
export DEBIAN_FRONTEND=noninteractive
pkgs=(libfpio0 libfpio-dev fpio-examples)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
work=$(mktemp -d /var/tmp/fpio-packages.XXXXXX)
passed=0 failed=0 t_start=$SECONDS
mnt=$work/srv-mnt

cleanup() {
  if mountpoint -q "$mnt" 2>/dev/null; then fusermount3 -u "$mnt" 2>/dev/null || umount -l "$mnt"; fi
  local pid
  pid=$(cat "$work/server.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill "$pid"; fi
  # Never leave our packages behind, whatever failed.
  local installed=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" && installed+=("$p")
  done
  [ "${#installed[@]}" = 0 ] || apt-get purge -y -qq "${installed[@]}" >/dev/null 2>&1 || true
  if [ "$keep" = 1 ]; then echo "test-packages: work dir kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

ok() { passed=$((passed + 1)); echo "test-packages: ok: $*"; }
bad() { failed=$((failed + 1)); echo "test-packages: FAIL: $*" >&2; }
record() { printf '{"name": "packages/%s", "result": "%s"}\n' "$1" "$2" >>"$results"; }
# step NAME CMD...: runs CMD with its output in $work/NAME.log, counts it,
# times it, and leaves its exit code in step_rc. CMD runs as an asynchronous
# subshell so that set -e holds inside it and the first failing command fails
# the step: bash would ignore -e in a function called from an if, || or &&
# list, so call step only as a plain command. CMD's variables stay in it.
step_rc=0
step() {
  local name=$1 t0=$SECONDS
  shift
  step_rc=0
  "$@" >"$work/$name.log" 2>&1 &
  wait $! || step_rc=$?
  if [ "$step_rc" = 0 ]; then
    ok "$name ($((SECONDS - t0)) s)"
    record "$name" OK
  else
    record "$name" FAIL
    tail -40 "$work/$name.log" >&2
    bad "$name (exit $step_rc, $((SECONDS - t0)) s; log above)"
  fi
}
# A step the rest depends on: stop here when it failed.
must() { [ "$step_rc" = 0 ] || { echo "packages: $passed passed, $failed failed"; exit 1; }; }

for p in "${pkgs[@]}"; do
  if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    echo "test-packages: $p is installed already; this test installs and removes its own build" >&2
    exit 2
  fi
done

# Tools of this phase (the build's own Build-Depends come from debian/control below).
# lintian checks the packages; fakeroot is what dpkg-buildpackage uses without root.
need=(debhelper dpkg-dev fakeroot lintian util-linux)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ---- 1. the release tarball
dist() {
  meson setup "$work/build-dist" "$root" >/dev/null
  # --allow-dirty: meson dist packs the committed HEAD; uncommitted edits are not in it.
  meson dist -C "$work/build-dist" --no-tests --formats xztar --allow-dirty
  tar tf "$work/build-dist/meson-dist/fpio-$version.tar.xz" >"$work/dist-files.txt"
  grep -qx "fpio-$version/.cargo/config.toml" "$work/dist-files.txt"
  grep -q "^fpio-$version/vendor/libc-[0-9.]*/Cargo.toml$" "$work/dist-files.txt"
  grep -qx "fpio-$version/debian/control" "$work/dist-files.txt"
  if grep -q "^fpio-$version/\.git/" "$work/dist-files.txt"; then echo ".git in the tarball"; return 1; fi
}
step meson-dist dist
must
tarball=$work/build-dist/meson-dist/fpio-$version.tar.xz
echo "test-packages: $(du -h "$tarball" | cut -f1) $(basename "$tarball")"

# ---- 2. the packages, offline, with Debian's Rust
debbuild() {
  mkdir "$work/deb"
  cp "$tarball" "$work/deb/fpio_$version.orig.tar.xz"
  tar xf "$tarball" -C "$work/deb"
  cd "$work/deb/fpio-$version"
  apt-get build-dep -y -qq . >/dev/null
  # Debian's cargo/rustc (in /usr/bin) build the packages, even where rustup's
  # come first in PATH; no network namespace but loopback: cargo must not need one.
  unshare --net env PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    dpkg-buildpackage -us -uc -b
  echo "built with $(/usr/bin/rustc --version)"
}
step package-build debbuild
must
grep -E '^ *[0-9]+/[0-9]+ fpio:' "$work/package-build.log" | sed 's/^/test-packages:   dh_auto_test /' || true
grep '^built with' "$work/package-build.log" | sed 's/^/test-packages: /' || true
debs=()
for p in "${pkgs[@]}"; do debs+=("$work/deb/${p}_${version}-1_$(dpkg --print-architecture).deb"); done

# ---- 3. lintian
lint() {
  lintian --tag-display-limit 0 "$work"/deb/fpio_"$version"-1_*.changes >"$work/lintian.txt" 2>&1 || true
  cat "$work/lintian.txt"
  if grep -q '^E:' "$work/lintian.txt"; then return 1; fi
}
step lintian lint
echo "test-packages: lintian: $(grep -c '^E:' "$work/lintian.txt" || true) errors, $(grep -c '^W:' "$work/lintian.txt" || true) warnings"
grep '^[EW]:' "$work/lintian.txt" | sed 's/^/test-packages:   /' || true

# ---- 4. install and use
# loads_installed_libfpio ELF: the dynamic loader alone resolves ELF's
# libfpio.so.0 to the packaged file (real paths: merged /usr has /lib too).
loads_installed_libfpio() {
  local loaded want
  want=$(readlink -f "/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)/libfpio.so.0")
  loaded=$(env -u LD_LIBRARY_PATH ldd "$1" | sed -n 's/^\s*libfpio\.so\.0 => \(\S*\) .*/\1/p')
  if [ -z "$loaded" ] || [ "$(readlink -f "$loaded")" != "$want" ]; then
    echo "$1 loads libfpio.so.0 from '${loaded:-nowhere}', not the packaged $want"
    return 1
  fi
}
step install apt-get install -y -qq --no-install-recommends "${debs[@]}"
must
installed_files() {
  local multiarch
  multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
  test -f "/usr/lib/$multiarch/libfpio.so.$version"
  test "$(readlink "/usr/lib/$multiarch/libfpio.so.0")" = "libfpio.so.$version"
  test -f /usr/include/fpio.h
  test "$(pkg-config --modversion fpio)" = "$version"
  test "$(pkg-config --variable=libdir fpio)" = "/usr/lib/$multiarch"
  test -x /usr/bin/fpio-passthrough
}
step installed-files installed_files
step consumer env -u PKG_CONFIG_PATH FPIO_SOURCE_ROOT="$root" "$root/scripts/check-consumer.sh" --installed

# The installed example server mounts a directory: a file written through the
# mount is the same on the backing side, and the server exits 0 on unmount.
server_mount() {
  [ -e /dev/fuse ] || { echo "no /dev/fuse"; return 1; }
  local src=$work/srv-src rc=0 server_pid
  mkdir -p "$src" "$mnt"
  head -c 1048576 /dev/urandom >"$work/payload"
  /usr/bin/fpio-passthrough -f --threads=2 --counters-file="$work/counters" "$src" "$mnt" >"$work/server.log" 2>&1 &
  server_pid=$!
  echo "$server_pid" >"$work/server.pid"
  local deadline=$((SECONDS + 20))
  until mountpoint -q "$mnt"; do
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log"; return 1; }
    [ "$SECONDS" -lt "$deadline" ] || { echo "no mount after 20 s"; return 1; }
    sleep 0.1
  done
  cp "$work/payload" "$mnt/payload"
  cmp "$work/payload" "$src/payload"
  cmp "$work/payload" "$mnt/payload"
  fusermount3 -u "$mnt"
  wait "$server_pid" || rc=$?
  rm -f "$work/server.pid"
  [ "$rc" = 0 ] || { echo "server exited $rc"; cat "$work/server.log"; return 1; }
  grep '^status ' "$work/counters"
  loads_installed_libfpio /usr/bin/fpio-passthrough
}
step example-server server_mount
sed -n 's/^status /test-packages:   example server passthrough status: /p' "$work/counters" 2>/dev/null || true

# ---- 5. the fuse-overlayfs adopter against the INSTALLED libfpio-dev: its patch
# applied, built with the system's `pkg-config fpio` (no PKG_CONFIG_PATH, no
# LD_LIBRARY_PATH, no rpath), and its side-by-side checks run on real mounts (the
# default mode only: the meson suites check both modes against the build tree).
adopter_fuse_overlayfs() {
  env -u PKG_CONFIG_PATH -u LD_LIBRARY_PATH FPIO_OVL_FPIO=installed FPIO_OVL_MODES=default \
    FPIO_REQUIRE_MOUNT=1 \
    FPIO_SOURCE_ROOT="$root" bash "$root/adopters/fuse-overlayfs/test.sh"
}
step adopter-fuse-overlayfs adopter_fuse_overlayfs
# ---- end of HOOK

# ---- 6. remove
remove() {
  apt-get purge -y -qq "${pkgs[@]}"
  for p in "${pkgs[@]}"; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then echo "$p still installed"; return 1; fi
  done
  if pkg-config --exists fpio; then echo "fpio.pc still found"; return 1; fi
  if grep -q 'libfpio\.so\.0 ' <(ldconfig -p); then echo "libfpio.so.0 still in the loader cache"; return 1; fi
}
step remove remove

echo "test-packages: $((SECONDS - t_start)) s in all"
echo "packages: $passed passed, $failed failed"
[ "$failed" = 0 ]
