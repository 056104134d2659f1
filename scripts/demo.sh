#!/usr/bin/env bash
# meshgate's main job on an embedded default (no NIC): the dual-redundancy gateway on DPDK virtual devices,
# one instance taken down for maintenance half way through with meshgatectl. See scripts/demo.py.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
BUILD=${BUILD:-build}
[ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" >/dev/null
ninja -C "$BUILD" >/dev/null
BUILD=$BUILD exec /usr/bin/python3 scripts/demo.py
