#!/usr/bin/env bash
# The library's open-path cost in ns per open+release (see open_path.rs).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cargo bench --quiet --locked --manifest-path "$root/Cargo.toml" --bench open_path 2>/dev/null
