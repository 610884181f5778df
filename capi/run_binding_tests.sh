#!/usr/bin/env bash
# Runs every language binding's tests against the real liblowbit.so of a
# Meson build directory, the way a user gets it: `meson install --destdir`
# into BUILD_DIR/bindings-test/dest, then pkg-config (a relocated copy of the
# installed lowbit.pc), the installed headers and library.
#
#   capi/run_binding_tests.sh BUILD_DIR [c] [cpp] [rust] [go] [python] [docs]
#
# BUILD_DIR must be built already (ninja -C BUILD_DIR): it is installed as is,
# with --no-rebuild.
#
# "docs" checks that README.md shows the snippets the tests run.
# For each language it prints "bindings-<lang>: N passed, N failed, N skipped"
# (and appends that line to $LOWBIT_TEST_SUMMARY if set); each runs with
# LOWBIT_CACHE_DIR set to a fresh directory. Exits non-zero if anything failed.
# A missing toolchain (cc, c++, cargo, go, python3) counts as a failure unless
# LOWBIT_BINDINGS_ALLOW_MISSING=1, which reports it as skipped.
# On a machine with a GPU the end-to-end tests run; without one they report
# SKIPPED.
set -uo pipefail

if [ $# -lt 1 ]; then
  echo "usage: $0 BUILD_DIR [c|cpp|rust|go|python|docs]..." >&2
  exit 2
fi
build=$(cd "$1" && pwd) || exit 2
shift
langs=("$@")
[ ${#langs[@]} -eq 0 ] && langs=(c cpp rust go python docs)
src=$(cd "$(dirname "$0")/.." && pwd)
summary_file=${LOWBIT_TEST_SUMMARY:-}
unset LOWBIT_TEST_SUMMARY  # the runners below must not write it themselves

work="$build/bindings-test"  # stable paths, so cargo and go can reuse their caches
rm -rf "$work"
mkdir -p "$work"
dest="$work/dest"

# --- install --------------------------------------------------------------
echo "== installing $build into $dest"
if ! meson install -C "$build" --no-rebuild --destdir "$dest" --quiet >"$work/install.log" 2>&1; then
  cat "$work/install.log"
  echo "bindings: meson install failed"
  line="bindings-install: 0 passed, 1 failed, 0 skipped"
  echo "$line"
  [ -n "$summary_file" ] && echo "$line" >>"$summary_file"
  exit 1
fi
pc=$(find "$dest" -name lowbit.pc -path '*pkgconfig*' | head -n 1)
lib=$(find "$dest" -name 'liblowbit.so.*' -type f | head -n 1)
if [ -z "$pc" ] || [ -z "$lib" ]; then
  echo "bindings: the install has no lowbit.pc or liblowbit.so (pc='$pc' lib='$lib')"
  exit 1
fi
libdir=$(dirname "$lib")
# Relocate the .pc: every absolute path it defines moves under $dest.
mkdir -p "$work/pkgconfig"
sed -E "s|^([A-Za-z_]+)=/|\1=$dest/|" "$pc" >"$work/pkgconfig/lowbit.pc"
export PKG_CONFIG_PATH="$work/pkgconfig"
unset PKG_CONFIG_LIBDIR PKG_CONFIG_SYSROOT_DIR LOWBIT_LIB_DIR
export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LOWBIT_LIBRARY="$libdir/liblowbit.so.0"
[ -e "$LOWBIT_LIBRARY" ] || LOWBIT_LIBRARY="$lib"
echo "   pkg-config lowbit: $(pkg-config --modversion lowbit) $(pkg-config --cflags --libs lowbit)"
echo "   library: $LOWBIT_LIBRARY"

# --- helpers --------------------------------------------------------------
overall=0

report() {  # lang passed failed skipped
  local line="bindings-$1: $2 passed, $3 failed, $4 skipped"
  echo "$line"
  [ -n "$summary_file" ] && echo "$line" >>"$summary_file"
  [ "$3" -ne 0 ] && overall=1
  return 0
}

need() {  # lang tool
  if command -v "$2" >/dev/null 2>&1; then return 0; fi
  echo "bindings-$1: '$2' not found"
  if [ "${LOWBIT_BINDINGS_ALLOW_MISSING:-0}" = 1 ]; then report "$1" 0 0 1; else report "$1" 0 1 0; fi
  return 1
}

fresh_cache() {  # lang -> a new, empty LOWBIT_CACHE_DIR
  local d="$work/cache-$1"
  rm -rf "$d"
  mkdir -p "$d"
  echo "$d"
}

# Counts from a runner's closing "N passed, N failed, N skipped" line; a runner
# that failed without one counts as one failure.
report_from_line() {  # lang rc log
  local line
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped' "$3" | tail -n 1)
  if [ -n "$line" ]; then
    read -r p _ f _ s _ <<<"${line//,/}"
    [ "$2" -ne 0 ] && [ "$f" -eq 0 ] && f=1
    report "$1" "$p" "$f" "$s"
  else
    report "$1" 0 1 0
  fi
}

show_failure() {  # rc log
  if [ "$1" -ne 0 ]; then
    echo "---- last lines of $2 ----"
    tail -n 60 "$2"
    echo "----"
  fi
}

CC=${CC:-cc}
CXX=${CXX:-c++}

run_c() {
  need c "$CC" || return
  local log="$work/c.log" rc
  echo "== c: dlopen example"
  # Only the header is needed at build time: the library is dlopen'ed by path.
  # shellcheck disable=SC2046
  if "$CC" -std=c11 -Wall -Wextra -Werror $(pkg-config --cflags lowbit) "$src/capi/c/dlopen_example.c" -ldl \
      -o "$work/dlopen_example" >"$log" 2>&1; then
    LOWBIT_CACHE_DIR=$(fresh_cache c) timeout 300 "$work/dlopen_example" "$libdir/liblowbit.so" >>"$log" 2>&1
    rc=$?
  else
    rc=1
  fi
  show_failure "$rc" "$log"
  grep '^SKIPPED' "$log" | sed 's/^/   /'
  report_from_line c "$rc" "$log"
}

run_cpp() {
  need cpp "$CXX" || return
  local log="$work/cpp.log" rc
  echo "== cpp: lowbit.hpp test (installed header)"
  # shellcheck disable=SC2046
  if "$CXX" -std=c++17 -Wall -Wextra -Werror $(pkg-config --cflags lowbit) "$src/capi/cpp/test_lowbit_hpp.cpp" \
      $(pkg-config --libs lowbit) -ldl -o "$work/test_lowbit_hpp" >"$log" 2>&1; then
    LOWBIT_CACHE_DIR=$(fresh_cache cpp) timeout 300 "$work/test_lowbit_hpp" >>"$log" 2>&1
    rc=$?
  else
    rc=1
  fi
  show_failure "$rc" "$log"
  grep '^SKIPPED' "$log" | sed 's/^/   /'
  report_from_line cpp "$rc" "$log"
}

run_rust() {
  need rust cargo || return
  local log="$work/rust.log" rc
  echo "== rust: cargo test (lowbit-sys, lowbit)"
  (
    cd "$src/capi/rust" &&
      CARGO_NET_OFFLINE=true CARGO_TARGET_DIR="$build/capi-cargo-target" LOWBIT_CACHE_DIR=$(fresh_cache rust) \
        timeout 600 cargo test --workspace --locked --no-fail-fast -- --nocapture
  ) >"$log" 2>&1
  rc=$?
  show_failure "$rc" "$log"
  # cargo's harness has no run-time skip: tests print "lowbit-test: SKIPPED ..."
  # and pass; those count as skipped here (and #[ignore]d ones too).
  local p=0 f=0 s=0 skips
  while read -r line; do
    read -r a b c <<<"$(sed -E 's/.* ([0-9]+) passed; ([0-9]+) failed; ([0-9]+) ignored.*/\1 \2 \3/' <<<"$line")"
    p=$((p + a)); f=$((f + b)); s=$((s + c))
  done < <(grep -E '^test result: ' "$log")
  skips=$(grep -c 'lowbit-test: SKIPPED' "$log")
  grep 'lowbit-test: SKIPPED' "$log" | sed 's/^/   /'
  p=$((p - skips)); s=$((s + skips))
  [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
  report rust "$p" "$f" "$s"
}

run_go() {
  need go go || return
  local log="$work/go.log" rc
  echo "== go: go test ./..."
  (
    cd "$src/capi/go" &&
      GOFLAGS=-mod=mod GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=1 LOWBIT_CACHE_DIR=$(fresh_cache go) \
        timeout 600 go test -count=1 -v ./...
  ) >"$log" 2>&1
  rc=$?
  show_failure "$rc" "$log"
  local p f s
  p=$(grep -cE '^\s*--- PASS:' "$log")
  f=$(grep -cE '^\s*--- FAIL:' "$log")
  s=$(grep -cE '^\s*--- SKIP:' "$log")
  grep -E '^\s*--- SKIP:|SKIPPED' "$log" | sed -E 's/^\s*/   /'
  [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
  report go "$p" "$f" "$s"
}

run_python() {
  need python python3 || return
  local log="$work/python.log" rc
  echo "== python: unittest"
  LOWBIT_CACHE_DIR=$(fresh_cache python) timeout 600 python3 "$src/capi/python/run_tests.py" >"$log" 2>&1
  rc=$?
  show_failure "$rc" "$log"
  grep '^SKIPPED' "$log" | sed 's/^/   /'
  report_from_line python "$rc" "$log"
}

run_docs() {
  need docs python3 || return
  local log="$work/docs.log" rc
  echo "== docs: README.md snippets are the tested ones"
  python3 "$src/capi/check_snippets.py" >"$log" 2>&1
  rc=$?
  show_failure "$rc" "$log"
  report_from_line docs "$rc" "$log"
}

for lang in "${langs[@]}"; do
  case "$lang" in
    c) run_c ;;
    cpp | c++) run_cpp ;;
    rust) run_rust ;;
    go) run_go ;;
    python) run_python ;;
    docs) run_docs ;;
    *) echo "unknown language '$lang' (c, cpp, rust, go, python, docs)"; overall=1 ;;
  esac
done
exit $overall
