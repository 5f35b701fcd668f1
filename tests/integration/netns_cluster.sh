#!/usr/bin/env bash
# A 3-worker cluster across network namespaces (one "host" per worker, joined by veth pairs
# and a bridge), kill -9 and restart of one worker, exact totals: runs scripts/netns-cluster.
# Needs root and `ip netns`; without them the script exits 77 and meson counts it skipped.
# KEEP=1 keeps the temporary directory, as for the other integration tests.
set -euo pipefail
BUILD=${ROO_BUILD:?ROO_BUILD must point at the meson build directory}
SRC=${ROO_SOURCE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
args=(--build "$BUILD")
[ "${KEEP:-0}" = 1 ] && args+=(--keep)
exec bash "$SRC/scripts/netns-cluster" "${args[@]}"
