#!/bin/bash
# libfuse 3.17.2 from Debian 13's source package: scripts/libfuse-build.sh 3.17.2
# (this name is kept for callers that still use it).
exec "$(dirname "$0")/libfuse-build.sh" 3.17.2 "$@"
