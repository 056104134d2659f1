#!/usr/bin/env bash
# libFuzzer targets in a clang build with ASan + UBSan (tests/fuzz/README.md says what each checks):
#   fuzz_inbound   inbound ESP decap over eight SAs, every cipher and engine, exact-size buffers
#   fuzz_flow_key  the L3 parser, flow keys and the burst hash on exact-size buffers
#   fuzz_config    the gateway and pmd_config TOML loaders
#   fuzz_pcap      meshgate-esp's pcap frames, each through encrypt and decrypt
#   fuzz_sa_spec   meshgate-esp's --sa spec: parse_sa_spec, then Sa::create; no key in an error message
#   fuzz_ctrl      control-ring commands: validate() against the rules restated, and the ring's transport
#   fuzz_keying    keying-socket messages (lib/keying): validate() against the wire rules restated
#
#   scripts/fuzz.sh --smoke [TARGET...]        the seed corpus and a few seconds per target (scripts/test.sh)
#   scripts/fuzz.sh --long RUNS [TARGET...]    RUNS executions per target, one target at a time, nice -n 19;
#                                              the corpus grows in fuzz-corpus/<target>, the figures go to
#                                              fuzz-corpus/long-runs.txt (copy them into tests/fuzz/README.md);
#                                              FUZZ_JOBS=N splits the RUNS over N processes sharing that corpus
#   scripts/fuzz.sh [SECONDS] [TARGET...]      SECONDS per target (default 600), corpus in fuzz-corpus/
# A crash leaves crash-* in the current directory: add it to tests/fuzz/corpus/<target>/ once fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
ALL=(fuzz_inbound fuzz_flow_key fuzz_config fuzz_pcap fuzz_sa_spec fuzz_ctrl fuzz_keying)
MODE=time
SECS=600
RUNS=0
case "${1:-}" in
  --smoke) MODE=smoke; SECS=${FUZZ_SMOKE_SECONDS:-6}; shift ;;
  --long) MODE=long; RUNS=${2:?--long needs a number of runs}; shift 2 ;;
  ''|fuzz_*) ;;
  *) SECS=$1; shift ;;
esac
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then TARGETS=("${ALL[@]}"); fi

BUILD=${FUZZ_BUILD:-build-fuzz}
if [ ! -f "$BUILD/build.ninja" ]; then
  CC=clang CXX=clang++ meson setup "$BUILD" -Dfuzz=true -Dtests=disabled -Dbench=disabled \
    -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debugoptimized >/dev/null
fi
ninja -C "$BUILD" "${TARGETS[@]/#/tests/fuzz/}" >/dev/null

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}  # the EAL keeps its memory to exit
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
tmp=""
if [ "$MODE" = smoke ]; then tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT; fi
mkdir -p fuzz-corpus

for t in "${TARGETS[@]}"; do
  name=${t#fuzz_}
  seeds=tests/fuzz/corpus/$name
  corpus=fuzz-corpus/$name
  if [ -n "$tmp" ]; then corpus=$tmp/$name; fi
  mkdir -p "$corpus"
  # Long runs at nice 19 on a shared box can be starved of CPU for a minute (one such "timeout" replayed in 0.2 s):
  # a hang there has to be a real one.
  timeout=25
  if [ "$MODE" = long ]; then timeout=600; fi
  args=(-print_final_stats=1 -timeout="$timeout" -rss_limit_mb=2048)
  if [ -f "tests/fuzz/$name.dict" ]; then args+=(-dict="$PWD/tests/fuzz/$name.dict"); fi
  # Room beyond the seeds (libFuzzer would cap inputs at the largest seed): several packets, a pcap of several
  # frames, a long config.
  case $name in
    pcap|config) args+=(-max_len=16384) ;;
    *) args+=(-max_len=4096) ;;
  esac
  case "$MODE" in
    smoke) args+=(-max_total_time="$SECS") ;;
    long) args+=(-runs="$RUNS") ;;
    time) args+=(-max_total_time="$SECS") ;;
  esac
  log=$(mktemp)
  start=$(date +%s)
  rc=0
  jobs=${FUZZ_JOBS:-1}
  if [ "$MODE" = long ] && [ "$jobs" -gt 1 ]; then
    # libFuzzer's -jobs: each process does RUNS/N and writes fuzz-<job>.log in the working directory; they share
    # the corpus directory and pick up each other's finds. Their logs are joined for the figures below.
    jobdir=$(mktemp -d)
    args=("${args[@]/#-runs=*/-runs=$(( RUNS / jobs ))}")
    (cd "$jobdir" && nice -n 19 "$OLDPWD/$BUILD/tests/fuzz/$t" "${args[@]}" -jobs="$jobs" -workers="$jobs" \
       -artifact_prefix="$OLDPWD/" "$OLDPWD/$corpus" "$OLDPWD/$seeds" >"$log" 2>&1) || rc=$?
    for f in "$jobdir"/fuzz-*.log; do
      if ! grep -q '^Done [0-9]* runs in' "$f"; then rc=1; fi  # every job ran to its count
    done
    execs=0
    for f in "$jobdir"/fuzz-*.log; do
      n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$f"); execs=$(( execs + ${n:-0} ))
    done
    cat "$jobdir"/fuzz-*.log >>"$log"
    rm -rf "$jobdir"
    sed -i '/^stat::number_of_executed_units/d' "$log"
    echo "stat::number_of_executed_units: $execs" >>"$log"
  else
    # New inputs go to $corpus; the seeds in the tree are read only.
    nice -n 19 "$BUILD/tests/fuzz/$t" "${args[@]}" "$corpus" "$seeds" >"$log" 2>&1 || rc=$?
  fi
  secs=$(( $(date +%s) - start ))
  if [ $rc -ne 0 ]; then
    tail -n 60 "$log"
    rm -f "$log"
    echo "fuzz: $t FAILED (exit $rc)" >&2
    exit 1
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  # The last status line: edges covered (cov), features (ft) and corpus size.
  cov=$(grep -E '^#[0-9]+.* cov: ' "$log" | tail -n 1 |
        sed -E 's/.*cov: ([0-9]+).*ft: ([0-9]+).*corp: ([0-9]+).*/cov \1 ft \2 corpus \3/' || true)
  rm -f "$log"
  line="$t: $execs runs in ${secs}s, $cov, 0 crashes"
  echo "fuzz: $line"
  if [ "$MODE" = long ]; then echo "$(date -u +%FT%TZ) $(git rev-parse --short HEAD 2>/dev/null || echo -) $line" >> fuzz-corpus/long-runs.txt; fi
done
