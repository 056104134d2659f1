#!/usr/bin/env bash
# The fast suites (unit and component: no gateway process) in an ASan + UBSan build, build-asan/.
#   scripts/sanitize.sh            as scripts/test.sh runs it
#   scripts/sanitize.sh --suite X  meson test arguments replace the default suite list
# Only what those suites need is built: a whole sanitized tree would double the CI's compile time.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${ASAN_BUILD:-build-asan}
if [ ! -f "$BUILD/build.ninja" ]; then
  # -O1 -g1: what ASan recommends, with line tables for the reports; compiles 2.5x faster than -O2 -g.
  meson setup "$BUILD" -Db_sanitize=address,undefined -Db_lundef=false -Dbench=disabled \
    -Dbuildtype=plain -Dc_args='-O1 -g1' -Dcpp_args='-O1 -g1' >/dev/null
fi
# By suite, plus the unit tests of suites whose other tests start gateways (liveness, keying, log).
SUITES=(--suite esp --suite seqstate --suite flow --suite route --suite config --suite ctrl --suite dataplane --suite interop)
EXTRA=(liveness-unit keying service-hugepages log-unit)
if [ $# -gt 0 ]; then SUITES=("$@"); EXTRA=(); fi
# The targets those tests run: every build-tree file named on their command lines (meson's own list, so a test
# added to a suite is built here without an edit).
# An existing build dir is regenerated first, so its introspection knows tests added since it was configured.
ninja -C "$BUILD" build.ninja >/dev/null
mapfile -t TARGETS < <(/usr/bin/python3 scripts/suite_targets.py "$BUILD" "${SUITES[@]}" "${EXTRA[@]}")
ninja -C "$BUILD" "${TARGETS[@]}"
# halt_on_error: a UBSan report is a failure, not a line in a log nobody reads. detect_leaks=0: the EAL keeps
# its memory until exit by design.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
meson test -C "$BUILD" --no-rebuild --print-errorlogs --num-processes 2 "${SUITES[@]}"
if [ ${#EXTRA[@]} -gt 0 ]; then meson test -C "$BUILD" --no-rebuild --print-errorlogs "${EXTRA[@]}"; fi
