// `lowbit bench`: the benchmark suites (tools/bench/, the same code as the
// standalone lowbit-bench), with its own option parsing.
#include <string>
#include <vector>

#include "commands.hpp"

namespace lowbit::bench {
int bench_main(int argc, char** argv, bool from_cli);
}

namespace lowbit::cli {

namespace {

int run_bench(Args& args) {
  std::vector<std::string> words = {"lowbit bench"};
  while (!args.done()) words.push_back(args.take());
  std::vector<char*> argv;
  for (std::string& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  return lowbit::bench::bench_main(int(words.size()), argv.data(), true);
}

}  // namespace

const Command kBenchCommand = {
    "bench",
    "benchmark the kernels on this GPU against the copy, read and cuBLAS ceilings",
    "usage: lowbit bench [--suite NAME]... [--shapes 8b|70b|all] [--m 1,2,4,...] [--json FILE]\n"
    "                    [--quick] [--min-runs N] [--min-ms MS] [--list]\n"
    "\n"
    "Runs benchmark suites on GPU 0 and prints a table per suite; --json writes every point\n"
    "(op, format, dtype, group, M, N, K, config, median / p10 / p90 / min microseconds, bytes,\n"
    "GB/s, TFLOP/s, the bounding ceiling and the fraction of it, the ratio to cuBLAS) with the\n"
    "environment (GPU, driver, clocks as read) and the ceilings measured in the same run: a\n"
    "device-to-device copy, a streaming read, cuBLAS GEMM (libcublas dlopen'ed by the bench only).\n"
    "\n"
    "  --suite NAME    quantize, wq-decode, wq-prefill (absent for now), cublas, jit; repeatable\n"
    "                  or comma-separated (default: every suite present; --list)\n"
    "  --shapes WHICH  GEMM shapes: 8b (Llama-3-8B), 70b (Llama-3-70B), all (default)\n"
    "  --m LIST        M values, comma-separated (default: the suite's)\n"
    "  --json FILE     write the JSON document (rewritten after each suite)\n"
    "  --quick         fewer shapes and runs (a smoke run)\n"
    "  --min-runs N    timed runs per point, at least (default 50; --quick 20)\n"
    "  --min-ms MS     timed milliseconds per point, at least (default 200; --quick 50)\n"
    "  --list          list the suites\n"
    "\n"
    "tools/plot_bench.py draws the JSON (fraction of ceiling vs M, speed-up over cuBLAS).\n"
    "Exit status: 0 every suite ran, 1 a suite failed (the others still run), 2 bad usage or no GPU.\n",
    &run_bench,
};

}  // namespace lowbit::cli
