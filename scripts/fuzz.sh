#!/usr/bin/env bash
# libFuzzer runs of the inbound path and header parsers, in a clang build with ASan + UBSan.
#   scripts/fuzz.sh --smoke          a few seconds per mode (part of scripts/test.sh)
#   scripts/fuzz.sh [SECONDS]        a long run (default 600 s per mode); corpus kept in fuzz-corpus/
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=600
SMOKE=0
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; SECS=${FUZZ_SMOKE_SECONDS:-8}; elif [ -n "${1:-}" ]; then SECS=$1; fi

BUILD=build-fuzz
if [ ! -f "$BUILD/build.ninja" ]; then
  CC=clang CXX=clang++ meson setup "$BUILD" -Dfuzz=true -Dtests=disabled -Dbench=disabled \
    -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debugoptimized >/dev/null
fi
ninja -C "$BUILD" tests/fuzz/fuzz_inbound >/dev/null

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}  # the EAL keeps its memory to exit
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
corpus=fuzz-corpus/inbound
mkdir -p "$corpus"
if [ "$SMOKE" = 1 ]; then corpus=$(mktemp -d); trap 'rm -rf "$corpus"' EXIT; fi
# Seeds: one raw ESP-looking packet and one plaintext-mode input.
printf '\x00\x45\x00\x00\x30\x00\x00\x00\x00\x40\x32\x00\x00\xc0\x00\x02\x01\xc6\x33\x64\x07\x00\x00\x01\x00\x00\x00\x00\x01' > "$corpus/seed-raw"
printf '\x01\x45\x00\x00\x14\x00\x00\x00\x00\x40\x11\x00\x00\x0a\x00\x00\x01\x0a\x00\x00\x02\x01\x02\x02\x04' > "$corpus/seed-sealed"
"$BUILD/tests/fuzz/fuzz_inbound" -max_total_time="$SECS" -print_final_stats=1 "$corpus" 2>&1 | tail -n 12
echo "fuzz: fuzz_inbound ran ${SECS}s without a crash, leak of mbufs or sanitizer report"
