#!/usr/bin/env bash
# Reliability checks of lowbit: sanitizers, fuzzing, a concurrency soak and a
# leak check. Each check prints "<name>: N passed, N failed, N skipped" and
# appends it to $LOWBIT_TEST_SUMMARY when that is set (the file
# tools/run_tests.sh totals), so CI can add these lines to its count.
#
#   tools/run_checks.sh [BUILD_DIR | BUILD_ROOT] [CHECK...]
#
# Given a Meson build directory (tools/run_tests.sh --checks passes its own,
# e.g. `build`), that is the release build used by the soak and the leak
# check, and the build directories below are made next to it (in its parent).
# Given any other directory (BUILD_ROOT, default: the repository root), they
# are made inside it and the release build is BUILD_ROOT/build (configured
# and built here if missing); $LOWBIT_RELEASE_BUILD overrides either.
# $LOWBIT_CHECKS_RELEASE_BUILD names a release build made elsewhere and
# carried over (e.g. to a GPU machine without fmt or doctest): it is used as
# it is, never configured or rebuilt, and a pre-built build-checks/soak_worker
# is used as it is too (see `prepare-gpu` below).
# The build directories this script creates and reuses (ninja rebuilds only
# what changed):
#   build-asan    clang, -Db_sanitize=address,undefined with the libFuzzer
#                 coverage instrumentation (-fsanitize=fuzzer-no-link): one
#                 build for three checks: the unit suite (asan), the core
#                 library of the fuzz targets (fuzz) and of the leak
#                 checker's ASan binary (leak)
#   build-tsan    gcc, -Db_sanitize=thread: the threaded cache tests
#   build-fuzz    the libFuzzer targets of tests/fuzz/ (build-fuzz/targets),
#                 their seeds, the corpus they grow and crashes/
#   build-checks  the soak worker and leak checkers (on the release and ASan
#                 core libraries), and logs/
# The sanitizer builds are -O1 -g1 (buildtype plain, assertions on) and
# build only the targets their check runs.
#
# CHECKs (default: all, in this order):
#   asan   unit suite under AddressSanitizer + UndefinedBehaviorSanitizer
#          (+ LeakSanitizer); any report is fatal          -> asan-unit
#   tsan   the threaded unit tests under ThreadSanitizer    -> tsan-threads
#   fuzz   each libFuzzer target for $LOWBIT_FUZZ_SECONDS (default 60)
#                                                           -> fuzz-<target>
#   soak   $LOWBIT_SOAK_PROCS (8) processes x $LOWBIT_SOAK_THREADS (8)
#          threads on one cache dir for $LOWBIT_SOAK_SECONDS (30) -> soak
#   leak   $LOWBIT_LEAK_CYCLES (10000) plan create/destroy cycles etc.,
#          under LSan (ASan build) and with heap/RSS growth checked
#          (release build)                                  -> leak-asan, leak-release
#   gpu    only when named, on a GPU machine: the gpu suite under
#          compute-sanitizer memcheck and racecheck (every test case, no
#          launch cap), the out-of-memory test,
#          and the soak running plans for real     -> gpu-sanitizers, gpu-soak
#          Without a GPU or compute-sanitizer both are counted as skipped.
#   prepare-gpu  only when named: builds (without running anything) what the
#          gpu check needs besides the release build, build-checks/soak_worker,
#          against $LOWBIT_CHECKS_RELEASE_BUILD (or the release build), so
#          that both can be carried to a machine that cannot build them:
#            LOWBIT_CHECKS_RELEASE_BUILD=$PWD/build-gpu-carry tools/run_checks.sh . prepare-gpu
#          then there, with build-checks/soak_worker and the build carried:
#            LOWBIT_CHECKS_RELEASE_BUILD=$PWD/build-gpu-carry tools/run_checks.sh . gpu
#
# Exit status: 0 when every check passed, 1 otherwise. Needs: meson, ninja,
# g++, clang++ with its sanitizer runtimes and libFuzzer (Debian: clang and
# libclang-rt-dev; tools/setup.sh test installs them), python3, doctest,
# fmt, the CUDA toolkit headers.
set -uo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
arg=$(realpath -m "${1:-$repo}")
[ $# -gt 0 ] && shift
if [ -f "$arg/build.ninja" ]; then
  build_root=$(dirname "$arg"); default_release=$arg
else
  build_root=$arg; default_release=$arg/build
fi
checks=("$@")
[ ${#checks[@]} -eq 0 ] && checks=(asan tsan fuzz soak leak)
for c in "${checks[@]}"; do
  case "$c" in asan|tsan|fuzz|soak|leak|gpu|prepare-gpu) ;;
    *) echo "run_checks: unknown check '$c' (asan tsan fuzz soak leak gpu prepare-gpu)" >&2; exit 2 ;; esac
done

fuzz_seconds=${LOWBIT_FUZZ_SECONDS:-60}
soak_seconds=${LOWBIT_SOAK_SECONDS:-30}
soak_procs=${LOWBIT_SOAK_PROCS:-8}
soak_threads=${LOWBIT_SOAK_THREADS:-8}
leak_cycles=${LOWBIT_LEAK_CYCLES:-10000}
release=$(realpath -m "${LOWBIT_RELEASE_BUILD:-$default_release}")
prebuilt=0
if [ -n "${LOWBIT_CHECKS_RELEASE_BUILD:-}" ]; then release=$(realpath -m "$LOWBIT_CHECKS_RELEASE_BUILD"); prebuilt=1; fi

cuda_home=""
for c in "${CUDA_HOME:-}" "${CUDA_PATH:-}" /usr/local/cuda; do
  if [ -n "$c" ] && [ -f "$c/include/cuda.h" ]; then cuda_home=$c; break; fi
done
if [ -z "$cuda_home" ]; then echo "run_checks: the CUDA toolkit headers were not found (set CUDA_HOME)" >&2; exit 2; fi
export CUDA_HOME=$cuda_home

mkdir -p "$build_root"
logs="$build_root/build-checks/logs"
mkdir -p "$logs"
overall=0
started=$(date +%s)
declare -a timings=()

# record NAME RC LOG: prints and appends "NAME: N passed, N failed, N skipped",
# taken from the log when the check printed it, else derived from RC. A
# non-zero RC with no failure counted (a crash, a sanitizer report at exit,
# a timeout) counts as one failure.
record() {
  local name=$1 rc=$2 log=$3 line p f s
  line=$(grep -E "^$name: [0-9]+ passed, [0-9]+ failed" "$log" 2>/dev/null | tail -1)
  if [ -n "$line" ]; then
    p=$(sed -E 's/.*: ([0-9]+) passed.*/\1/' <<<"$line")
    f=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")
    s=$(sed -nE 's/.* ([0-9]+) skipped.*/\1/p' <<<"$line"); s=${s:-0}
  elif [ "$rc" -eq 0 ]; then p=1; f=0; s=0
  else p=0; f=0; s=0
  fi
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  line="$name: $p passed, $f failed, $s skipped"
  echo "$line"
  if [ -n "${LOWBIT_TEST_SUMMARY:-}" ]; then echo "$line" >>"$LOWBIT_TEST_SUMMARY"; fi
  if [ "$f" -ne 0 ]; then overall=1; fi
}

# timed LABEL CMD...: runs CMD, notes its duration.
timed() {
  local label=$1 t0 rc
  shift
  t0=$(date +%s)
  "$@"
  rc=$?
  timings+=("$label $(( $(date +%s) - t0 ))s")
  return $rc
}

# meson_build DIR TARGETS... -- SETUP_ARGS...: configures DIR once, then
# builds only the named targets (ninja rebuilds what changed). A check's own
# build dir (not the release build) configured with other arguments or
# compilers, e.g. by an older version of this script, is configured afresh.
meson_build() {
  local dir=$1 targets=() setup=() wipe=() stamp want
  shift
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do targets+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  setup=("$@")
  stamp="$dir/run_checks-setup.txt"
  want="CC=${CC:-} CXX=${CXX:-} ${setup[*]}"
  if [ -f "$dir/build.ninja" ] && [ "$dir" != "$release" ] && [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "run_checks: $dir was configured with other arguments; configuring it afresh"
    wipe=(--wipe)
  fi
  if [ ! -f "$dir/build.ninja" ] || [ ${#wipe[@]} -gt 0 ]; then
    echo "run_checks: meson setup $dir ${setup[*]}"
    meson setup "${wipe[@]}" "$dir" "$repo" "${setup[@]}" >"$logs/setup-$(basename "$dir").log" 2>&1 || {
      cat "$logs/setup-$(basename "$dir").log"; return 1; }
    [ "$dir" != "$release" ] && echo "$want" >"$stamp"
  fi
  ninja -C "$dir" "${targets[@]}" >"$logs/ninja-$(basename "$dir").log" 2>&1 || {
    tail -50 "$logs/ninja-$(basename "$dir").log"; return 1; }
}

core_includes=(-I"$repo/src" -I"$repo/include" -I"$repo/kernel_templates" -I"$repo/tools/lowbit"
               -isystem "$cuda_home/include" -DFMT_HEADER_ONLY=1)

# The sanitizer builds use -O1 -g1 (line tables are enough for the reports'
# stack traces) and keep assertions on. Build time is most of these checks'
# cost: gcc compiles ASan+UBSan code at debugoptimized's -O2 -g about 4x
# slower than at -O1 -g1 (10 minutes for the unit suite on 2 cores), and
# clang at -O1 -g1 a third faster again; the coverage instrumentation that
# lets the fuzz targets link the same core library costs nothing measurable.
asan_setup=(-Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=plain -Db_ndebug=false
            "-Dcpp_args=-O1 -g1 -fsanitize=fuzzer-no-link -fno-sanitize-recover=all")
tsan_setup=(-Db_sanitize=thread -Db_lundef=false -Dbuildtype=plain -Db_ndebug=false "-Dcpp_args=-O1 -g1")
# asan_build TARGETS...: builds TARGETS of build-asan (clang).
asan_build() {
  if ! command -v clang++ >/dev/null 2>&1; then
    echo "run_checks: clang++ not found (Debian: apt-get install clang libclang-rt-dev; tools/setup.sh test does)"
    return 1
  fi
  CC=clang CXX=clang++ meson_build "$build_root/build-asan" "$@" -- "${asan_setup[@]}"
}

# The non-Meson binaries of the checks, built by a generated ninja file so
# that header changes are tracked (depfiles) and nothing is rebuilt needlessly.
# ninja_begin FILE, then `edge` per binary, then ninja_end TARGETS: one link rule (compile+link in one step).
ninja_file=""
ninja_begin() {
  ninja_file=$1
  mkdir -p "$(dirname "$ninja_file")"
  {
    echo "# generated by tools/run_checks.sh; do not edit"
    echo "rule link"
    echo "  command = \$cxx \$flags -MD -MF \$out.d \$in \$libs -o \$out"
    echo "  depfile = \$out.d"
    echo "  deps = gcc"
    echo "  description = LINK \$out"
  } >"$ninja_file.new"
}
# edge OUT CXX "FLAGS" "LIBS" SOURCES...: a binary compiled and linked in one step.
edge() {
  local out=$1 cxx=$2 flags=$3 libs=$4
  shift 4
  local implicit=""
  for l in $libs; do case "$l" in /*.a) implicit+=" $l" ;; esac; done
  {
    echo "build $out: link $* |$implicit"
    echo "  cxx = $cxx"
    echo "  flags = $flags"
    echo "  libs = $libs"
  } >>"$ninja_file.new"
}
ninja_end() {
  # Keep the file (and ninja's state) when unchanged.
  if ! cmp -s "$ninja_file.new" "$ninja_file"; then mv "$ninja_file.new" "$ninja_file"; else rm -f "$ninja_file.new"; fi
  ninja -f "$(basename "$ninja_file")" -C "$(dirname "$ninja_file")" "$@"
}

# ---------------------------------------------------------------------------
# (a) ASan + UBSan: the unit suite (as in CI: the exhaustive NVRTC test runs
# only with LOWBIT_EXHAUSTIVE=1).
check_asan() {
  local b="$build_root/build-asan" log="$logs/asan-unit.log" rc
  echo "== asan: unit suite under ASan + UBSan ($b)"
  timed asan-build asan_build tests/unit/test_unit || {
    echo "asan-unit: build failed" >"$log"; record asan-unit 1 "$log"; return; }
  local t0
  t0=$(date +%s)
  (
    cd "$b/tests/unit" &&
    ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:print_stacktrace=1:check_initialization_order=1:detect_stack_use_after_return=1" \
    LSAN_OPTIONS="suppressions=$repo/tests/sanitizers/lsan.supp:print_suppressions=0" \
    UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$repo/tests/sanitizers/ubsan.supp" \
    LOWBIT_TEST_SUITE_NAME=asan-unit LOWBIT_TEST_SUMMARY= \
    LOWBIT_BUILD_DIR="$b" LOWBIT_SOURCE_DIR="$repo" \
    timeout 2400 ./test_unit
  ) >"$log" 2>&1
  rc=$?
  timings+=("asan-run $(( $(date +%s) - t0 ))s")
  grep -E "ERROR: (Address|Leak)Sanitizer|runtime error:|SUMMARY: " "$log" | head -20
  record asan-unit $rc "$log"
}

# ---------------------------------------------------------------------------
# (b) TSan: the threaded tests. doctest filters by name: these patterns pick
# every test case that runs lowbit on several threads at once (listed in the
# log), in tests/unit/test_kernel_cache.cpp, test_disk_store.cpp,
# test_capi.cpp and test_faults.cpp.
tsan_filter='*16 threads*,*16 contexts*,*concurrent*,*several threads*,*per thread*,*prewarm compiles*'
check_tsan() {
  local b="$build_root/build-tsan" log="$logs/tsan-threads.log" rc
  echo "== tsan: threaded tests under ThreadSanitizer ($b)"
  timed tsan-build meson_build "$b" tests/unit/test_unit -- "${tsan_setup[@]}" || {
    echo "tsan-threads: build failed" >"$log"; record tsan-threads 1 "$log"; return; }
  local t0
  t0=$(date +%s)
  (
    cd "$b/tests/unit" &&
    echo "test cases selected by -tc=\"$tsan_filter\":" &&
    { ./test_unit -ltc -tc="$tsan_filter" | grep -v -E "^(\[doctest\]|=+$)" | sed 's/^/  /'; true; } &&
    TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:ignore_noninstrumented_modules=1:suppressions=$repo/tests/sanitizers/tsan.supp" \
    LOWBIT_TEST_SUITE_NAME=tsan-threads LOWBIT_TEST_SUMMARY= \
    LOWBIT_BUILD_DIR="$b" LOWBIT_SOURCE_DIR="$repo" \
    timeout 1800 ./test_unit -tc="$tsan_filter"
  ) >"$log" 2>&1
  rc=$?
  timings+=("tsan-run $(( $(date +%s) - t0 ))s")
  sed -n '/^test cases selected/,/^\[doctest\] doctest version/p' "$log" | grep -v "doctest version"
  grep -E "WARNING: ThreadSanitizer|SUMMARY: " "$log" | head -20
  # A renamed test must not silently drop out of the filter: fewer than 5
  # selected cases is a failure of this check.
  local selected
  selected=$(sed -n '/^test cases selected/,/^\[doctest\] doctest version/p' "$log" | grep -c "^  ")
  if [ "$selected" -lt 5 ]; then
    echo "tsan-threads: only $selected test cases match the filter; update tsan_filter in tools/run_checks.sh"
    [ $rc -eq 0 ] && rc=1
  fi
  record tsan-threads $rc "$log"
}

# ---------------------------------------------------------------------------
# (c) libFuzzer targets
fuzz_targets=(plan_create cache_entry manifest)
check_fuzz() {
  local b="$build_root/build-fuzz" t
  echo "== fuzz: libFuzzer targets, ${fuzz_seconds}s each ($b, on the core library of build-asan)"
  if ! timed fuzz-build-core asan_build src/liblowbit_core.a >"$logs/fuzz.log" 2>&1; then
    cat "$logs/fuzz.log"
    for t in "${fuzz_targets[@]}"; do record "fuzz-$t" 1 "$logs/fuzz.log"; done
    return
  fi
  local san="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
  local core="$build_root/build-asan/src/liblowbit_core.a"
  local flags="-std=c++20 -g1 -O1 $san ${core_includes[*]} -I$build_root/build-asan/include"
  local manifest_srcs="$repo/tools/lowbit/manifest.cpp $repo/tools/lowbit/default_manifest.cpp"
  ninja_begin "$b/targets/build.ninja"
  for t in "${fuzz_targets[@]}"; do
    local extra=""
    [ "$t" = manifest ] && extra=$manifest_srcs
    edge "fuzz_$t" clang++ "$flags -fsanitize=fuzzer" "$core -ldl -lpthread" "$repo/tests/fuzz/fuzz_$t.cpp" $extra
  done
  edge make_corpus clang++ "$flags -fsanitize=fuzzer-no-link" "$core -ldl -lpthread" \
    "$repo/tests/fuzz/make_corpus.cpp" $manifest_srcs
  if ! timed fuzz-build-targets ninja_end >"$logs/ninja-fuzz-targets.log" 2>&1; then
    tail -40 "$logs/ninja-fuzz-targets.log"
    for t in "${fuzz_targets[@]}"; do record "fuzz-$t" 1 "$logs/ninja-fuzz-targets.log"; done
    return
  fi
  # Fresh seeds matching today's struct layouts, plus the checked-in corpus
  # (seeds and the inputs of past crashes), plus what earlier runs found.
  rm -rf "$b/seeds"
  if ! ASAN_OPTIONS=detect_leaks=0 "$b/targets/make_corpus" "$b/seeds" >"$logs/fuzz-make_corpus.log" 2>&1; then
    cat "$logs/fuzz-make_corpus.log"
    echo "fuzz: make_corpus failed (tests/fuzz/make_corpus.cpp)"
    for t in "${fuzz_targets[@]}"; do record "fuzz-$t" 1 "$logs/fuzz-make_corpus.log"; done
    return
  fi
  for t in "${fuzz_targets[@]}"; do
    local log="$logs/fuzz-$t.log" work="$b/corpus/$t" crashes="$b/crashes/$t" rc max_len=4096
    [ "$t" = plan_create ] && max_len=512
    mkdir -p "$work" "$crashes"
    local dirs=("$work" "$b/seeds/$t")
    [ -d "$repo/tests/fuzz/corpus/$t" ] && dirs+=("$repo/tests/fuzz/corpus/$t")
    (
      cd "$b" &&
      ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:print_stacktrace=1" \
      UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
      LOWBIT_CACHE_PATH= LOWBIT_LOG= \
      timeout $((fuzz_seconds + 300)) "$b/targets/fuzz_$t" -max_total_time="$fuzz_seconds" -timeout=60 \
        -rss_limit_mb=6144 -max_len=$max_len -print_final_stats=1 -artifact_prefix="$crashes/" "${dirs[@]}"
    ) >"$log" 2>&1
    rc=$?
    local execs cov
    execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -1)
    cov=$(grep -E "^#[0-9]+.*(DONE|cov:)" "$log" | tail -1 | sed -nE 's/.*cov: ([0-9]+) ft: ([0-9]+) corp: ([0-9]+).*/cov \1, ft \2, corpus \3/p')
    echo "fuzz-$t: ${execs:-?} executions in ${fuzz_seconds}s (${cov:-no stats})"
    if [ $rc -ne 0 ]; then
      echo "fuzz-$t: FAILED (exit $rc); reproducer(s) in $crashes:"
      ls -1 "$crashes" | sed 's/^/  /'
      grep -E "ERROR:|runtime error:|SUMMARY:|fuzz_[a-z_]+: " "$log" | head -10
    fi
    record "fuzz-$t" $rc "$log"
  done
}

# ---------------------------------------------------------------------------
# The release build and the plain binaries of the soak and leak checks.
# With $LOWBIT_CHECKS_RELEASE_BUILD the release build is used as it is.
release_build() {
  if [ $prebuilt -eq 1 ]; then
    if [ ! -f "$release/src/liblowbit.so" ]; then
      echo "run_checks: LOWBIT_CHECKS_RELEASE_BUILD=$release is not a built lowbit build directory (no src/liblowbit.so)"
      return 1
    fi
    return 0
  fi
  meson_build "$release" -- --buildtype=release
}
# The CLI's path in the release build.
release_cli() {
  if [ -f "$release/tools/lowbit" ] && [ -x "$release/tools/lowbit" ]; then echo "$release/tools/lowbit"
  else echo "$release/tools/lowbit/lowbit"; fi
}

# checks_ninja TARGETS...: the soak worker (public API, liblowbit.so) and the
# leak checker (internal API, static core: release and, when built, ASan).
checks_ninja() {
  local c="$build_root/build-checks" asan="$build_root/build-asan"
  ninja_begin "$c/build.ninja"
  edge soak_worker g++ "-std=c++20 -O2 -pthread -I$repo/include -I$release/include" \
    "-L$release/src -llowbit -Wl,-rpath,$release/src -ldl" "$repo/tests/soak/soak_worker.cpp"
  edge leak_check_release g++ "-std=c++20 -O2 -pthread ${core_includes[*]} -I$release/include" \
    "$release/src/liblowbit_core.a -ldl" "$repo/tests/soak/leak_check.cpp"
  if [ -f "$asan/src/liblowbit_core.a" ]; then
    edge leak_check_asan clang++ "-std=c++20 -O1 -g1 -pthread -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer ${core_includes[*]} -I$asan/include" \
      "$asan/src/liblowbit_core.a -ldl" "$repo/tests/soak/leak_check.cpp"
  fi
  ninja_end "$@"
}

# soak_worker: builds build-checks/soak_worker, or with a pre-built release
# build ($LOWBIT_CHECKS_RELEASE_BUILD) uses the one there if any (carried
# over with it: its library is found through LD_LIBRARY_PATH, see soak_env).
soak_worker() {
  local w="$build_root/build-checks/soak_worker"
  if [ $prebuilt -eq 1 ] && [ -x "$w" ]; then
    echo "run_checks: using the pre-built $w"
    return 0
  fi
  checks_ninja soak_worker
}
# soak_env CMD...: runs CMD with the release build's liblowbit.so first on
# the library path (the worker's RUNPATH names where it was built).
soak_env() {
  LD_LIBRARY_PATH="$release/src${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$@"
}

# ---------------------------------------------------------------------------
# (d) concurrency soak
check_soak() {
  local log="$logs/soak.log" rc
  echo "== soak: ${soak_procs} processes x ${soak_threads} threads, ${soak_seconds}s ($release)"
  if ! timed soak-build release_build; then echo "soak: release build failed" >"$log"; record soak 1 "$log"; return; fi
  local c="$build_root/build-checks"
  if ! soak_worker >"$logs/ninja-checks.log" 2>&1; then
    cat "$logs/ninja-checks.log"; record soak 1 "$logs/ninja-checks.log"; return
  fi
  timed soak-run soak_env env LOWBIT_TEST_SUMMARY= python3 "$repo/tests/soak/soak.py" --worker "$c/soak_worker" \
    --cli "$(release_cli)" --procs "$soak_procs" --threads "$soak_threads" \
    --seconds "$soak_seconds" --name soak >"$log" 2>&1
  rc=$?
  grep -E "^soak: " "$log" | grep -v -E "passed, [0-9]+ failed"
  record soak $rc "$log"
}

# ---------------------------------------------------------------------------
# (e) leaks: LSan on the ASan build, heap/RSS growth on the release build
check_leak() {
  local c="$build_root/build-checks" asan="$build_root/build-asan" rc
  echo "== leak: ${leak_cycles} plan create/destroy cycles (LSan + heap/RSS growth)"
  if ! timed leak-build-release release_build; then
    echo "leak: release build failed" >"$logs/leak.log"; record leak-release 1 "$logs/leak.log"; return
  fi
  local have_asan=0
  if timed leak-build-asan asan_build src/liblowbit_core.a >>"$logs/ninja-checks.log" 2>&1; then have_asan=1
  else tail -20 "$logs/ninja-checks.log"; fi
  local targets=(leak_check_release)
  [ $have_asan -eq 1 ] && targets+=(leak_check_asan)
  if ! checks_ninja "${targets[@]}" >"$logs/ninja-checks.log" 2>&1; then
    cat "$logs/ninja-checks.log"; record leak-release 1 "$logs/ninja-checks.log"; return
  fi
  if [ $have_asan -eq 1 ]; then
    ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:print_stacktrace=1" \
    LSAN_OPTIONS="suppressions=$repo/tests/sanitizers/lsan.supp:print_suppressions=0" \
    UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" LOWBIT_TEST_SUMMARY= LOWBIT_CACHE_PATH= \
      timed leak-asan-run "$c/leak_check_asan" --cycles "$leak_cycles" --name leak-asan >"$logs/leak-asan.log" 2>&1
    rc=$?
    grep -E "^leak-asan: " "$logs/leak-asan.log" | grep -v -E "passed, [0-9]+ failed"
    grep -E "ERROR: (Address|Leak)Sanitizer|runtime error:|SUMMARY: " "$logs/leak-asan.log" | head
    record leak-asan $rc "$logs/leak-asan.log"
  else
    echo "leak-asan: ASan build failed" >"$logs/leak-asan.log"; record leak-asan 1 "$logs/leak-asan.log"
  fi
  LOWBIT_TEST_SUMMARY= LOWBIT_CACHE_PATH= timed leak-release-run "$c/leak_check_release" --cycles "$leak_cycles" \
    --name leak-release >"$logs/leak-release.log" 2>&1
  rc=$?
  grep -E "^leak-release: " "$logs/leak-release.log" | grep -v -E "passed, [0-9]+ failed"
  record leak-release $rc "$logs/leak-release.log"
}

# ---------------------------------------------------------------------------
# (f) gpu (only when named): the gpu suite under compute-sanitizer on the
# release build's tests/gpu/test_gpu, and the soak with real runs. Skipped
# (counted as such) without a GPU or compute-sanitizer. Every test case runs
# under memcheck (with the leak check) and under racecheck, with no launch
# cap: one sanitizer process per test case, $LOWBIT_CS_JOBS (default: the
# CPU count) at a time on the one GPU, sharing one kernel cache (sanitizer
# time is mostly host-side, so the cases overlap well: racecheck of the whole
# suite takes ~4.5 min on an H100 this way, ~25 min one case after another).
# The out-of-memory test runs outside the sanitizer (its failing cuMemAlloc
# calls are API errors to it). A case passes when its process exits 0, its
# doctest line shows no failure and the sanitizer summary shows 0 errors /
# 0 hazards; each case's log is kept in build-checks/logs/gpu-cases/.
# $LOWBIT_CS_TOOLS (default "memcheck racecheck") names the tools to run, so
# that the two can go to separate calls of a machine with a time limit.
check_gpu() {
  local log="$logs/gpu.log" cs rc=0 t="$release/tests/gpu/test_gpu" jobs=${LOWBIT_CS_JOBS:-$(nproc)}
  echo "== gpu: the gpu suite under compute-sanitizer ($t), then the soak on the device"
  cs=$(command -v compute-sanitizer || ls "$cuda_home/bin/compute-sanitizer" 2>/dev/null || true)
  local why=""
  if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then why="no GPU here (nvidia-smi -L fails)"
  elif [ -z "$cs" ]; then why="no compute-sanitizer (looked on PATH and in $cuda_home/bin)"
  fi
  if [ -n "$why" ]; then
    echo "gpu: $why: gpu-sanitizers and gpu-soak skipped"
    echo "gpu-sanitizers: 0 passed, 0 failed, 1 skipped" >"$log"
    record gpu-sanitizers 0 "$log"
    echo "gpu-soak: 0 passed, 0 failed, 1 skipped" >"$logs/gpu-soak.log"
    record gpu-soak 0 "$logs/gpu-soak.log"
    return
  fi
  if ! timed gpu-build release_build >"$log" 2>&1; then
    cat "$log"; echo "gpu: release build failed" >>"$log"; record gpu-sanitizers 1 "$log"; record gpu-soak 1 "$log"; return
  fi
  if [ ! -x "$t" ] || { [ ! -x "$release/tools/lowbit" ] && [ ! -x "$release/tools/lowbit/lowbit" ]; }; then
    echo "gpu: $release has no tests/gpu/test_gpu or tools/lowbit (a release build with tests=true is needed)" | tee "$log"
    record gpu-sanitizers 1 "$log"; record gpu-soak 1 "$log"; return
  fi
  local cache cases_dir="$logs/gpu-cases"
  cache=$(mktemp -d /tmp/lowbit-gpu-checks-XXXXXX)
  rm -rf "$cases_dir"; mkdir -p "$cases_dir"
  {
    export LOWBIT_CACHE_DIR=$cache
    local p=0 f=0 out
    # case_passes LOG RC: the verdict on one sanitizer process.
    case_passes() {
      [ "$2" -eq 0 ] && grep -qE "(ERROR|RACECHECK) SUMMARY: 0 " "$1" &&
        ! grep -qE "ERROR SUMMARY: [1-9]|RACECHECK SUMMARY: [1-9]|test_gpu: [0-9]+ passed, [1-9]" "$1"
    }
    out=$("$t" -tc='*exhausted*' 2>&1)
    if [ $? -eq 0 ]; then p=$((p + 1)); echo "out-of-memory (no sanitizer): passed"
    else f=$((f + 1)); echo "out-of-memory (no sanitizer): FAILED"; echo "$out" | tail -30; fi
    # doctest -tc splits at commas and globs * and ?: each case is named by its
    # name up to the first comma, then *.
    local names=() name i
    mapfile -t names < <("$t" -ltc 2>/dev/null | grep -E "^gpu" | grep -v "exhausted")
    if [ ${#names[@]} -eq 0 ]; then echo "gpu: test_gpu -ltc listed no test cases"; f=$((f + 1)); fi
    for tool in ${LOWBIT_CS_TOOLS:-memcheck racecheck}; do
      local extra=()
      [ "$tool" = memcheck ] && extra=(--leak-check full)
      local t0; t0=$(date +%s)
      i=0
      for name in "${names[@]}"; do
        i=$((i + 1))
        while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
        ( "$cs" --tool "$tool" "${extra[@]}" --error-exitcode 99 "$t" -tc="${name%%,*}*" \
            >"$cases_dir/$tool-$i.log" 2>&1
          echo $? >"$cases_dir/$tool-$i.rc" ) &
      done
      wait
      i=0
      for name in "${names[@]}"; do
        i=$((i + 1))
        local crc; crc=$(cat "$cases_dir/$tool-$i.rc" 2>/dev/null || echo 1)
        local summary; summary=$(grep -hE "(ERROR|RACECHECK) SUMMARY" "$cases_dir/$tool-$i.log" | tr -s ' ' | sed 's/^=* //' | paste -sd ';' -)
        if case_passes "$cases_dir/$tool-$i.log" "$crc"; then p=$((p + 1)); echo "$tool: passed: $name [$summary]"
        else f=$((f + 1)); echo "$tool: FAILED (exit $crc): $name [$summary]"; tail -30 "$cases_dir/$tool-$i.log"; fi
      done
      echo "$tool: ${#names[@]} test cases in $(( $(date +%s) - t0 )) s, $jobs processes at a time"
    done
    echo "gpu-sanitizers: $p passed, $f failed, 0 skipped"
  } >>"$log" 2>&1
  rc=$?
  rm -rf "$cache"
  grep -E "^(memcheck|racecheck|out-of-memory)" "$log"
  record gpu-sanitizers $rc "$log"
  if soak_worker >>"$logs/ninja-checks.log" 2>&1; then
    LOWBIT_TEST_SUMMARY= timed gpu-soak-run soak_env python3 "$repo/tests/soak/soak.py" \
      --worker "$build_root/build-checks/soak_worker" \
      --cli "$(release_cli)" --device 0 --procs 4 --threads 4 --seconds "$soak_seconds" --name gpu-soak \
      >"$logs/gpu-soak.log" 2>&1
    rc=$?
    grep -E "^gpu-soak: " "$logs/gpu-soak.log" | grep -v -E "passed, [0-9]+ failed"
    record gpu-soak $rc "$logs/gpu-soak.log"
  else
    tail -20 "$logs/ninja-checks.log"
    record gpu-soak 1 "$logs/ninja-checks.log"
  fi
}

# ---------------------------------------------------------------------------
# prepare-gpu (only when named): builds build-checks/soak_worker against the
# release build (or $LOWBIT_CHECKS_RELEASE_BUILD, not rebuilt) and runs
# nothing, so both can be carried to a machine that cannot build them.
check_prepare-gpu() {
  echo "== prepare-gpu: build-checks/soak_worker against $release"
  if ! release_build; then echo "prepare-gpu: no usable release build"; overall=1; return; fi
  if ! checks_ninja soak_worker >"$logs/ninja-checks.log" 2>&1; then
    cat "$logs/ninja-checks.log"; echo "prepare-gpu: failed"; overall=1; return
  fi
  echo "prepare-gpu: built $build_root/build-checks/soak_worker (uses $release/src/liblowbit.so)"
}

for c in "${checks[@]}"; do "check_$c"; done

echo "run_checks: logs in $logs"
echo "run_checks: timings: ${timings[*]}"
echo "run_checks: total $(( $(date +%s) - started ))s"
exit $overall
