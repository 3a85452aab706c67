#!/usr/bin/env bash
# The fpio demo: sets up a fresh Debian 12 machine (as root), builds fpio,
# mounts the example server over a temp dir in passthrough mode, runs
# parallel writers (fio, several jobs on ONE file) and readers through the
# mount and on the backing dir itself, and prints passthrough status, the
# READ/WRITE requests that reached the server, and the throughput side by side.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[ "${1:-}" = --no-setup ] || "$root/scripts/setup-deps.sh"
export PATH="$HOME/.cargo/bin:$PATH"

build="$root/build-demo"
[ -f "$build/build.ninja" ] || meson setup "$build" "$root" >/dev/null
ninja -C "$build" >/dev/null
server="$build/examples/fpio-passthrough"

JOBS=${DEMO_JOBS:-4}
SIZE_MB=${DEMO_SIZE_MB:-256}
work=$(mktemp -d /var/tmp/fpio-demo.XXXXXX)
src="$work/backing" mnt="$work/mnt" native="$work/native"
mkdir -p "$src" "$mnt" "$native"
pid=""
cleanup() {
  if mountpoint -q "$mnt"; then fusermount3 -u "$mnt" 2>/dev/null || umount -l "$mnt"; fi
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill "$pid"; fi
  rm -rf "$work"
}
trap cleanup EXIT

# --killpriv-v2: the example server clears set-uid itself (fpio tells it when), which
# saves the GETXATTR round trip the kernel otherwise makes before every passthrough write.
"$server" -f --threads=4 --killpriv-v2 --counters-file="$work/counters" "$src" "$mnt" \
  >"$work/server.log" 2>&1 &
pid=$!
deadline=$((SECONDS + 10))
until mountpoint -q "$mnt"; do
  kill -0 "$pid" 2>/dev/null || { cat "$work/server.log"; echo "demo: server died" >&2; exit 1; }
  [ $SECONDS -lt $deadline ] || { echo "demo: mount did not appear in 10 s" >&2; exit 1; }
  sleep 0.05
done

# fio: JOBS writers, each its own 1/JOBS of one file, then JOBS readers.
per_job=$((SIZE_MB / JOBS))
fio_mbs() { # dir rw bs -> MB/s
  fio --name=demo --directory="$1" --filename=shared.dat --rw="$2" --bs="$3" \
      --size="${per_job}M" --offset_increment="${per_job}M" --numjobs="$JOBS" \
      --ioengine=psync --end_fsync=1 --group_reporting --output-format=json 2>/dev/null |
    python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; k="write" if j["write"]["io_bytes"] else "read"; print(round(j[k]["bw_bytes"]/1e6))'
}
declare -A res
for round in 1 2 3; do
  for where in native fpio; do
    dir=$native; [ $where = fpio ] && dir=$mnt
    rm -f "$dir/shared.dat"
    res[$where,write,$round]=$(fio_mbs "$dir" write 1M)
    echo 3 > /proc/sys/vm/drop_caches
    res[$where,read,$round]=$(fio_mbs "$dir" read 1M)
    res[$where,rw4k,$round]=$(fio_mbs "$dir" randwrite 4k)
  done
done
cmp "$mnt/shared.dat" "$src/shared.dat"

kill -USR1 "$pid"
for _ in $(seq 100); do [ -s "$work/counters" ] && break; sleep 0.05; done
counter() { awk -v k="$1" '$1 == k {print $2}' "$work/counters"; }
status=$(sed -n 's/^status //p' "$work/counters")
median() { printf '%s\n' "$@" | sort -n | sed -n 2p; }

echo
echo "fpio demo: libfuse $(pkg-config --modversion fuse3), kernel $(uname -r)"
echo "passthrough: $status (example server with --killpriv-v2: no GETXATTR per write)"
echo "server-side requests: READ $(counter server_read), WRITE $(counter server_write), GETXATTR $(counter server_getxattr)"
echo "opens: passthrough $(counter opens_passthrough), direct $(counter opens_direct), cached $(counter opens_cached); backing ids registered $(counter backing_opened), live $(counter backing_ids_live)"
echo
printf '%-36s %12s %12s %8s\n' "workload ($JOBS jobs on one ${SIZE_MB} MiB file)" "native MB/s" "fpio MB/s" "ratio"
for w in write read rw4k; do
  n=$(median "${res[native,$w,1]}" "${res[native,$w,2]}" "${res[native,$w,3]}")
  f=$(median "${res[fpio,$w,1]}" "${res[fpio,$w,2]}" "${res[fpio,$w,3]}")
  case $w in write) label="sequential 1 MiB writes";; read) label="sequential 1 MiB reads (cold)";; rw4k) label="random 4 KiB writes";; esac
  printf '%-36s %12s %12s %8s\n' "$label" "$n" "$f" "$(python3 -c "print(f'{$f/$n:.2f}x')")"
done
echo "(medians of 3 alternating runs; backing dir: $(df --output=fstype "$src" | tail -1) under /var/tmp)"

fusermount3 -u "$mnt"
wait "$pid" || { echo "demo: server exited with $?" >&2; exit 1; }
pid=""
