// Suite "jit": the cost of the JIT itself. Cold NVRTC compile of one kernel,
// plan creation on a disk hit in a fresh process (module load included), on
// an in-process hit, and the host overhead of lowbit_plan_run over a raw
// cuLaunchKernel of the same function.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "common/error.hpp"
#include "cuda/driver.hpp"
#include "harness.hpp"
#include "ops/op_plan.hpp"
#include "runtime/context.hpp"

#include <cstdint>
#include "quantize_params.h"

namespace lowbit::bench {

namespace {

using Clock = std::chrono::steady_clock;

double us_since(Clock::time_point t) { return std::chrono::duration<double, std::micro>(Clock::now() - t).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

lowbit_quantize_desc jit_desc(int variant) {
  lowbit_quantize_desc d;
  lowbit_quantize_desc_init(&d);
  d.x_dtype = LOWBIT_DTYPE_BF16;
  d.q_dtype = LOWBIT_DTYPE_S8;
  d.dims[0] = 1;
  // Distinct clamp ranges give distinct kernels (fresh compiles).
  d.qmin = -127 + variant;
  d.qmax = 127;
  return d;
}

void print_row(const char* what, double value_us, const char* target) {
  std::printf("jit        %-58s %10.1f us   (target %s)\n", what, value_us, target);
}

}  // namespace

// Child mode: time one plan creation (disk hit) in this fresh process.
int jit_child_disk_hit(const char* cache_dir) {
  lowbit_context_options o;
  lowbit_context_options_init(&o);
  o.cache_dir = cache_dir;
  lowbit_context* ctx = nullptr;
  if (lowbit_context_create_device(0, &o, &ctx) != LOWBIT_OK) return 3;
  lowbit_quantize_desc d = jit_desc(0);
  lowbit_plan* plan = nullptr;
  const auto t = Clock::now();
  lowbit_status s = lowbit_quantize_plan_create(ctx, &d, &plan);
  const double us = us_since(t);
  char buf[4096] = {};
  lowbit_plan_describe(plan, buf, sizeof(buf), nullptr);
  const bool disk = std::string(buf).find("\"cache\":\"disk\"") != std::string::npos;
  std::printf("%f %d\n", us, disk ? 1 : 0);
  lowbit_plan_destroy(plan);
  lowbit_context_destroy(ctx);
  return s == LOWBIT_OK ? 0 : 4;
}

void suite_jit(const Options& o) {
  char tmpl[] = "/tmp/lowbit-bench-jit-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  // 1. Cold compile: fresh kernels in memory-only contexts.
  std::vector<double> cold;
  for (int i = 0; i < 7; ++i) {
    lowbit_context_options opt;
    lowbit_context_options_init(&opt);
    opt.cache_mode = LOWBIT_CACHE_MEMORY;
    lowbit_context* ctx = nullptr;
    lowbit_context_create_device(0, &opt, &ctx);
    lowbit_quantize_desc d = jit_desc(10 + i);
    lowbit_plan* plan = nullptr;
    const auto t = Clock::now();
    if (lowbit_quantize_plan_create(ctx, &d, &plan) != LOWBIT_OK) throw Error(LOWBIT_INTERNAL, lowbit_last_error_message());
    cold.push_back(us_since(t));
    lowbit_cache_stats st{sizeof(st)};
    lowbit_context_cache_stats(ctx, &st);
    if (i == 0) std::printf("jit        (cold compile reported by NVRTC timing: %.1f ms)\n", st.compile_ms);
    lowbit_plan_destroy(plan);
    lowbit_context_destroy(ctx);
  }
  print_row("cold compile + load of one quantize kernel (median of 7)", median(cold), "<= 150000 us");

  // 2. Disk hit in a fresh process: prime the cache, then time children.
  {
    lowbit_context_options opt;
    lowbit_context_options_init(&opt);
    opt.cache_dir = dir.c_str();
    lowbit_context* ctx = nullptr;
    lowbit_context_create_device(0, &opt, &ctx);
    lowbit_quantize_desc d = jit_desc(0);
    lowbit_plan* plan = nullptr;
    lowbit_quantize_plan_create(ctx, &d, &plan);
    lowbit_plan_destroy(plan);
    lowbit_context_destroy(ctx);
  }
  std::vector<double> disk;
  int disk_confirmed = 0;
  for (int i = 0; i < 9; ++i) {
    std::string cmd = fmt::format("/proc/{}/exe --jit-child {}", getpid(), dir);
    FILE* p = popen(cmd.c_str(), "r");
    double us = 0;
    int was_disk = 0;
    if (p != nullptr && std::fscanf(p, "%lf %d", &us, &was_disk) == 2) {
      disk.push_back(us);
      disk_confirmed += was_disk;
    }
    if (p) pclose(p);
  }
  print_row(fmt::format("plan create, disk hit, fresh process ({}/{} were disk hits)", disk_confirmed, disk.size()).c_str(),
            median(disk), "<= 1000 us");

  // 3. In-process hit.
  std::vector<double> mem;
  lowbit_quantize_desc d = jit_desc(0);
  for (int i = 0; i < 2000; ++i) {
    lowbit_plan* plan = nullptr;
    const auto t = Clock::now();
    lowbit_quantize_plan_create(lowbit_ctx(), &d, &plan);
    mem.push_back(us_since(t));
    lowbit_plan_destroy(plan);
  }
  print_row("plan create, in-process hit (median of 2000)", median(mem), "<= 10 us");

  // 4. Run overhead: lowbit_plan_run vs cuLaunchKernel of the same function.
  lowbit_plan* plan = nullptr;
  lowbit_quantize_plan_create(lowbit_ctx(), &d, &plan);
  auto internal_ctx = Context::on_current(ContextConfig{});
  lowbit_op_desc op{LOWBIT_FAMILY_QUANTIZE, 0, &d};
  auto op_plan = create_op_plan(op, internal_ctx->traits());
  CUfunction fn = internal_ctx->kernels().get(op_plan->kernels()[0]).kernel->function;
  Buffer x(64), q(64), scale(4);
  float sv = 0.5f;
  scale.upload(&sv, 4);
  CUstream s = device().stream;
  lowbit_arg args[] = {{LOWBIT_ARG_X, 0, x.ptr()}, {LOWBIT_ARG_Q, 0, q.ptr()}, {LOWBIT_ARG_SCALE, 0, scale.ptr()}};
  QuantizeParams k{};
  k.x = x.ptr(); k.q = q.ptr(); k.scale = scale.ptr(); k.rows = 1; k.cols = 1; k.x_row_stride = 1; k.chunks_per_row = 0;
  void* kargs[] = {&k};
  constexpr int kBatch = 256;
  std::vector<double> lowbit_us, raw_us;
  for (int rep = 0; rep < 60; ++rep) {
    auto t = Clock::now();
    for (int i = 0; i < kBatch; ++i) lowbit_plan_run(plan, args, 3, 0, 0, s);
    lowbit_us.push_back(us_since(t) / kBatch);
    driver().StreamSynchronize(s);
    t = Clock::now();
    for (int i = 0; i < kBatch; ++i) driver().LaunchKernel(fn, 1, 1, 1, 256, 1, 1, 0, s, kargs, nullptr);
    raw_us.push_back(us_since(t) / kBatch);
    driver().StreamSynchronize(s);
  }
  const double ml = median(lowbit_us), mr = median(raw_us);
  std::printf("jit        lowbit_plan_run %.3f us vs cuLaunchKernel %.3f us per launch (host)\n", ml, mr);
  print_row("host overhead of lowbit_plan_run over cuLaunchKernel", ml - mr, "<= 1 us");
  lowbit_plan_destroy(plan);
  std::system(fmt::format("rm -rf '{}'", dir).c_str());
  (void)o;
}

}  // namespace lowbit::bench
