#!/usr/bin/env bash
# lowbit set-up: installs what the build needs (Debian/Ubuntu packages),
# configures and builds into ./build, then runs one of two jobs:
#
#   tools/setup.sh main   prewarm the default model manifest into the kernel
#                         cache (for sm_90a, or $LOWBIT_ARCH, when there is no
#                         GPU), and on a GPU also run `lowbit selftest`
#   tools/setup.sh test   run the test suites (unit + bindings; gpu too when a
#                         GPU is present) and the reliability checks of
#                         tools/run_checks.sh (ASan+UBSan, TSan, libFuzzer,
#                         soak, leaks), and print "N passed, N failed, N skipped"
set -euo pipefail
job=${1:-main}
case "$job" in main|test) ;; *) echo "usage: tools/setup.sh [main|test]" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."

# --- the CUDA toolkit (headers and NVRTC) -----------------------------------
cuda_home=""
for c in "${CUDA_HOME:-}" "${CUDA_PATH:-}" /usr/local/cuda; do
  if [ -n "$c" ] && [ -f "$c/include/cuda.h" ] && [ -f "$c/include/nvrtc.h" ]; then cuda_home=$c; break; fi
done
if [ -z "$cuda_home" ]; then
  cat >&2 <<'MSG'
lowbit: the CUDA toolkit was not found (looked in $CUDA_HOME, $CUDA_PATH and /usr/local/cuda).
lowbit needs its headers (cuda.h, nvrtc.h) to build and libnvrtc to compile kernels at run time.
Install it from NVIDIA's repository (e.g. `apt-get install cuda-toolkit-13-0`), then set CUDA_HOME
if it is not in /usr/local/cuda, and run this script again.
MSG
  exit 1
fi
export CUDA_HOME=$cuda_home

# --- packages ------------------------------------------------------------------
packages=(meson ninja-build g++ pkg-config python3 libfmt-dev doctest-dev)
if [ "$job" = test ]; then
  # Bindings (Go via cgo) and the reliability checks: clang for the
  # ASan+UBSan build and the libFuzzer targets (gcc's TSan runtime comes
  # with g++).
  packages+=(golang-go clang)
fi
# Rust's cargo: rustup's if present, else Debian's.
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
if [ "$job" = test ] && ! command -v cargo >/dev/null 2>&1; then packages+=(cargo); fi
sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
apt_updated=0
apt_install() {
  echo "lowbit: installing $*"
  if [ $apt_updated -eq 0 ]; then $sudo apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi

# libFuzzer and clang's sanitizer runtimes: Debian 12+ and Ubuntu 23.04+ ship
# them in libclang-rt-N-dev (N = clang's major version; libclang-rt-dev is
# the same for the default clang), which the clang package does not pull in;
# older releases have them in libclang-common-N-dev, a dependency of clang.
if [ "$job" = test ]; then
  fuzzer_runtime() { ls "$(clang++ -print-resource-dir 2>/dev/null)"/lib/*/libclang_rt.fuzzer*.a >/dev/null 2>&1; }
  if ! fuzzer_runtime; then
    clang_major=$(clang++ -dumpversion 2>/dev/null | cut -d. -f1 || true)
    apt_install "libclang-rt-${clang_major}-dev" || true
    fuzzer_runtime || echo "lowbit: libFuzzer (libclang_rt.fuzzer) not found for clang++ $clang_major: the fuzz checks will fail" >&2
  fi
fi

# The benchmark plots (tools/plot_bench.py) and their CPU test use matplotlib.
if [ "$job" = test ] && ! python3 -c "import matplotlib" >/dev/null 2>&1; then
  python3 -m pip install -q matplotlib || echo "lowbit: matplotlib not installed: the plot test will be skipped"
fi

# --- build ---------------------------------------------------------------------
if [ ! -f build/build.ninja ]; then
  meson setup build --buildtype=release
fi
ninja -C build

has_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }

if [ "$job" = main ]; then
  if has_gpu; then
    build/tools/lowbit prewarm
    build/tools/lowbit selftest
  else
    arch=${LOWBIT_ARCH:-sm_90a}
    echo "lowbit: no GPU here: prewarming for $arch (set LOWBIT_ARCH to choose another target)"
    build/tools/lowbit prewarm --arch "$arch"
  fi
else
  suites=()
  has_gpu && suites=(unit gpu)
  # --checks: tools/run_checks.sh build (asan tsan fuzz soak leak; each
  # libFuzzer target for $LOWBIT_FUZZ_SECONDS, default 60); its build dirs
  # (build-asan, build-tsan, build-fuzz, build-checks) sit next to build/.
  # Any failure of a suite or a check makes this exit non-zero.
  tools/run_tests.sh build --bindings --checks "${suites[@]}"
fi
