#!/usr/bin/env bash
# Installs what is missing, builds meshgate and runs every test (unit, component, interop, fuzz smoke).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

BUILD=${BUILD:-build}
if [ ! -f "$BUILD/build.ninja" ]; then
  meson setup "$BUILD" >/dev/null
fi
ninja -C "$BUILD"
meson test -C "$BUILD" --print-errorlogs --num-processes 2

# libFuzzer smoke run: a clang build of the fuzz targets, a few seconds each.
scripts/fuzz.sh --smoke
