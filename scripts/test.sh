#!/usr/bin/env bash
# Installs what is missing, builds meshgate and runs every test (unit, component, interop), then the fast suites
# again in an ASan + UBSan build, then a libFuzzer smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

BUILD=${BUILD:-build}
if [ ! -f "$BUILD/build.ninja" ]; then
  meson setup "$BUILD" >/dev/null
fi
ninja -C "$BUILD"
meson test -C "$BUILD" --print-errorlogs --num-processes 2

# Sanitizer build: the suites that start no gateway process (those are slow, and sanitized DPDK ports add
# nothing the unit and component suites do not cover), under ASan + UBSan; any report fails the test.
scripts/sanitize.sh

# libFuzzer smoke run: a clang build of the fuzz targets, the seed corpus and a few seconds each.
scripts/fuzz.sh --smoke
