#!/usr/bin/env bash
# libFuzzer runs in a clang build with ASan + UBSan:
#   fuzz_inbound  the inbound path and header parsers
#   fuzz_ctrl     control-ring commands: validate() against the rules restated, and the ring's transport
#   scripts/fuzz.sh --smoke          a few seconds per target (part of scripts/test.sh)
#   scripts/fuzz.sh [SECONDS]        a long run (default 600 s per target); corpora kept in fuzz-corpus/
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
ninja -C "$BUILD" tests/fuzz/fuzz_inbound tests/fuzz/fuzz_ctrl >/dev/null

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}  # the EAL keeps its memory to exit
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
tmp=""
if [ "$SMOKE" = 1 ]; then tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT; fi
corpus_dir() {  # $1: target name
  local d=fuzz-corpus/$1
  if [ -n "$tmp" ]; then d=$tmp/$1; fi
  mkdir -p "$d"
  echo "$d"
}

# fuzz_inbound seeds: one raw ESP-looking packet and one plaintext-mode input.
corpus=$(corpus_dir inbound)
printf '\x00\x45\x00\x00\x30\x00\x00\x00\x00\x40\x32\x00\x00\xc0\x00\x02\x01\xc6\x33\x64\x07\x00\x00\x01\x00\x00\x00\x00\x01' > "$corpus/seed-raw"
printf '\x01\x45\x00\x00\x14\x00\x00\x00\x00\x40\x11\x00\x00\x0a\x00\x00\x01\x0a\x00\x00\x02\x01\x02\x02\x04' > "$corpus/seed-sealed"
"$BUILD/tests/fuzz/fuzz_inbound" -max_total_time="$SECS" -print_final_stats=1 "$corpus" 2>&1 | tail -n 12
echo "fuzz: fuzz_inbound ran ${SECS}s without a crash, leak of mbufs or sanitizer report"

# fuzz_ctrl seeds: limits (4 tunnels, 2 instances) + a valid drain with a deadline, and a valid weight change.
corpus=$(corpus_dir ctrl)
cmd_head='\x04\x00\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00\x40\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00'
zeros32=$(printf '\\x00%.0s' $(seq 32))
printf "${cmd_head}"'\x01\x00\x00\x00\x03\x00\x00\x00\x01\x00\x00\x00\x30\x75\x00\x00'"${zeros32}" > "$corpus/seed-drain"
printf "${cmd_head}"'\x02\x00\x00\x00\x01\x00\x00\x00\xfa\x00\x00\x00\x00\x00\x00\x00'"${zeros32}" > "$corpus/seed-weight"
"$BUILD/tests/fuzz/fuzz_ctrl" -max_total_time="$SECS" -print_final_stats=1 "$corpus" 2>&1 | tail -n 12
echo "fuzz: fuzz_ctrl ran ${SECS}s without a crash, a rule disagreement or a sanitizer report"
