#!/usr/bin/env bash
# Runs lowbit's test suites in an existing Meson build directory and prints
# one closing line: "N passed, N failed, N skipped" (the sum over suites).
#   tools/run_tests.sh [BUILD_DIR] [SUITE...]   (default: build, the default setup)
set -uo pipefail
build=${1:-build}
shift || true
summary="$(cd "$build" && pwd)/test-summary.txt"
rm -f "$summary"
export LOWBIT_TEST_SUMMARY="$summary"
args=(--print-errorlogs --num-processes 1)
if [ $# -gt 0 ]; then
  args+=(--setup all)
  for s in "$@"; do args+=(--suite "$s"); done
fi
meson test -C "$build" "${args[@]}"
rc=$?
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
    f = 1  # a suite crashed or timed out before it could count itself
print(f"{p} passed, {f} failed, {s} skipped")
PY
exit $rc
