#!/usr/bin/env bash
# Runs lowbit's test suites in a built Meson build directory and prints one
# closing line: "N passed, N failed, N skipped" (the sum over every suite).
#
#   tools/run_tests.sh [BUILD_DIR] [--bindings] [--checks] [SUITE...]
#
# SUITEs are Meson suites (default: the default setup = unit); --bindings also
# runs capi/run_binding_tests.sh, --checks tools/run_checks.sh (sanitizers,
# fuzzing, soak). Each runner appends "<name>: N passed, N failed, N skipped"
# to $LOWBIT_TEST_SUMMARY, which this script totals.
set -uo pipefail
build=build
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ] && [ -d "$1" ]; then build=$1; shift; fi
bindings=0; checks=0; suites=()
for a in "$@"; do
  case "$a" in
    --bindings) bindings=1 ;;
    --checks) checks=1 ;;
    *) suites+=("$a") ;;
  esac
done
here=$(cd "$(dirname "$0")/.." && pwd)
summary="$(cd "$build" && pwd)/test-summary.txt"
rm -f "$summary"
export LOWBIT_TEST_SUMMARY="$summary"
args=(--print-errorlogs --num-processes 1)
if [ ${#suites[@]} -gt 0 ]; then
  args+=(--setup all)
  for s in "${suites[@]}"; do args+=(--suite "$s"); done
fi
rc=0
meson test -C "$build" "${args[@]}" || rc=1
if [ $bindings = 1 ]; then "$here/capi/run_binding_tests.sh" "$build" || rc=1; fi
if [ $checks = 1 ] && [ -x "$here/tools/run_checks.sh" ]; then "$here/tools/run_checks.sh" "$build" || rc=1; fi
echo
echo "per suite:"
[ -f "$summary" ] && sed 's/^/  /' "$summary"
python3 - "$summary" "$rc" <<'PY'
import re, sys
path, rc = sys.argv[1], int(sys.argv[2])
p = f = s = 0
try:
    for line in open(path):
        m = re.search(r"(\d+) passed, (\d+) failed(?:, (\d+) skipped)?", line)
        if m:
            p += int(m.group(1)); f += int(m.group(2)); s += int(m.group(3) or 0)
except FileNotFoundError:
    pass
if rc != 0 and f == 0:
    f = 1  # a runner crashed or timed out before it could count itself
print(f"{p} passed, {f} failed, {s} skipped")
PY
exit $rc
