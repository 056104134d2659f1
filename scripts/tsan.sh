#!/usr/bin/env bash
# ThreadSanitizer run of the several-writer replay window tests (tests/esp/test_replay_mt.cpp): a build of its own
# with -fsanitize=thread on everything the test links (net, crypto and esp libraries, the test), then the test.
#   scripts/tsan.sh                 build (once) in build-tsan and run; exit status = the test's
#   BUILD=dir scripts/tsan.sh       another build directory
# DPDK and IPsec-MB are not instrumented: the test makes every mbuf before its threads start and frees them after
# they joined, so the only memory the threads share is the SA and its window.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build-tsan}
if [ ! -f "$BUILD/build.ninja" ]; then
  meson setup "$BUILD" -Db_sanitize=thread -Db_lundef=false -Dbuildtype=debugoptimized -Dbench=disabled >/dev/null
fi
ninja -C "$BUILD" tests/esp/esp_mt_tests >/dev/null
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
exec "$BUILD/tests/esp/esp_mt_tests" "$@"
