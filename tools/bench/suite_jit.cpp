// Suite "jit": the cost of the JIT itself, in host microseconds (median, min,
// p10, p90 of repeated measurements):
//   - cold compile: plan creation that compiles a fresh kernel with NVRTC
//     (memory-only contexts, a distinct kernel each time) and loads it;
//   - plan creation on a disk hit in a fresh process (module load included),
//     timed inside child processes (`<bench> --jit-child DIR`);
//   - plan creation on an in-process (memory) hit;
//   - lowbit_plan_run host time against a raw cuLaunchKernel of the same
//     function with the same parameter struct, and their difference;
//   - `lowbit prewarm` of the default manifest with -j 1 and -j N (N = the
//     CPUs), each into a fresh temporary cache directory (whole process).
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
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

void check(lowbit_status s, const char* what) {
  if (s != LOWBIT_OK) throw Error(s, fmt::format("{}: {}", what, lowbit_last_error_message()));
}

// `of_kernel`: the figure is about the benchmark's quantize kernel (bf16 -> s8).
void record(const char* op, const Timing& t, double target_us, const std::string& config, std::string extra = "",
            bool of_kernel = true) {
  Record r;
  r.suite = "jit";
  r.op = op;
  r.format = of_kernel ? "s8" : "";
  r.dtype = of_kernel ? "bf16" : "";
  r.config = config;
  r.t = t;
  r.unit = "us_host";
  r.ceiling_name = "none";
  r.extra_json = target_us > 0 ? fmt::format("\"target_us\":{:.1f}", target_us) : "";
  if (!extra.empty()) r.extra_json += (r.extra_json.empty() ? "" : ",") + extra;
  emit(r);
}

std::string make_temp_dir(const char* what) {
  std::string tmpl = fmt::format("/tmp/lowbit-bench-{}-XXXXXX", what);
  if (mkdtemp(tmpl.data()) == nullptr) throw Error(LOWBIT_INTERNAL, "mkdtemp failed");
  return tmpl;
}

void remove_dir(const std::string& dir) {
  if (dir.rfind("/tmp/lowbit-bench-", 0) == 0) (void)!std::system(fmt::format("rm -rf '{}'", dir).c_str());
}

// `lowbit prewarm -j JOBS` of the default manifest into a fresh cache
// directory: wall microseconds of the whole process; the summary line in *line.
double time_prewarm(int jobs, std::string* line) {
  const std::string dir = make_temp_dir("prewarm");
  const std::string cmd =
      fmt::format("'{}' prewarm --quiet -j {} --cache-dir '{}' 2>&1", cli_executable(), jobs, dir);
  const auto t = Clock::now();
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  if (p != nullptr) {
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  }
  const int rc = p ? pclose(p) : -1;
  const double us = us_since(t);
  remove_dir(dir);
  if (rc != 0) throw Error(LOWBIT_INTERNAL, fmt::format("`{}` failed ({}): {}", cmd, rc, out));
  const size_t at = out.rfind("prewarm: ");
  *line = at == std::string::npos ? std::string() : out.substr(at, out.find('\n', at) - at);
  return us;
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
  if (plan) lowbit_plan_describe(plan, buf, sizeof(buf), nullptr);
  const bool disk = std::string(buf).find("\"cache\":\"disk\"") != std::string::npos;
  std::printf("%f %d\n", us, disk ? 1 : 0);
  lowbit_plan_destroy(plan);
  lowbit_context_destroy(ctx);
  return s == LOWBIT_OK ? 0 : 4;
}

void suite_jit(const Options& o) {
  const std::string kernel = "quantize.per_tensor bf16->s8";
  const std::string dir = make_temp_dir("jit");
  try {
    // 1. Cold compile: fresh kernels in memory-only contexts.
    std::vector<double> cold, nvrtc_ms;
    const int cold_n = o.quick ? 3 : 7;
    for (int i = 0; i < cold_n; ++i) {
      lowbit_context_options opt;
      lowbit_context_options_init(&opt);
      opt.cache_mode = LOWBIT_CACHE_MEMORY;
      lowbit_context* ctx = nullptr;
      check(lowbit_context_create_device(0, &opt, &ctx), "lowbit_context_create_device");
      lowbit_quantize_desc d = jit_desc(10 + i);
      lowbit_plan* plan = nullptr;
      const auto t = Clock::now();
      const lowbit_status s = lowbit_quantize_plan_create(ctx, &d, &plan);
      const double us = us_since(t);
      lowbit_cache_stats st{};
      st.struct_size = sizeof(st);
      lowbit_context_cache_stats(ctx, &st);
      lowbit_plan_destroy(plan);
      lowbit_context_destroy(ctx);
      check(s, "lowbit_quantize_plan_create (cold)");
      cold.push_back(us);
      nvrtc_ms.push_back(st.compile_ms);
    }
    const Timing tn = summarize(nvrtc_ms);
    record("cold_compile", summarize(cold), 150000, kernel + ", NVRTC compile + load, memory-only contexts",
           fmt::format("\"nvrtc_compile_ms_median\":{:.1f}", tn.median_us));

    // 2. Disk hit in a fresh process: prime the cache, then time children.
    {
      lowbit_context_options opt;
      lowbit_context_options_init(&opt);
      opt.cache_dir = dir.c_str();
      lowbit_context* ctx = nullptr;
      check(lowbit_context_create_device(0, &opt, &ctx), "lowbit_context_create_device");
      lowbit_quantize_desc d = jit_desc(0);
      lowbit_plan* plan = nullptr;
      const lowbit_status s = lowbit_quantize_plan_create(ctx, &d, &plan);
      lowbit_plan_destroy(plan);
      lowbit_context_destroy(ctx);
      check(s, "lowbit_quantize_plan_create (priming the disk cache)");
    }
    std::vector<double> disk;
    int disk_confirmed = 0;
    const int children = o.quick ? 5 : 11;
    for (int i = 0; i < children; ++i) {
      const std::string cmd = fmt::format("{} --jit-child '{}'", self_command(), dir);
      FILE* p = popen(cmd.c_str(), "r");
      double us = 0;
      int was_disk = 0;
      const bool read = p != nullptr && std::fscanf(p, "%lf %d", &us, &was_disk) == 2;
      const int rc = p ? pclose(p) : -1;
      if (read && rc == 0) {
        disk.push_back(us);
        disk_confirmed += was_disk;
      }
    }
    if (disk.empty()) throw Error(LOWBIT_INTERNAL, "every --jit-child process failed");
    record("plan_create.disk_hit_fresh_process", summarize(disk), 1000,
           fmt::format("{}, {}/{} were disk hits", kernel, disk_confirmed, disk.size()),
           fmt::format("\"disk_hits\":{}", disk_confirmed));

    // 3. In-process hit.
    std::vector<double> mem;
    lowbit_quantize_desc d = jit_desc(0);
    for (int i = 0; i < 2000; ++i) {
      lowbit_plan* plan = nullptr;
      const auto t = Clock::now();
      const lowbit_status s = lowbit_quantize_plan_create(lowbit_ctx(), &d, &plan);
      mem.push_back(us_since(t));
      lowbit_plan_destroy(plan);
      check(s, "lowbit_quantize_plan_create (memory hit)");
    }
    record("plan_create.memory_hit", summarize(mem), 10, kernel);

    // 4. Run overhead: lowbit_plan_run vs cuLaunchKernel of the same function
    //    with the parameter struct the plan would build (one element).
    lowbit_plan* plan = nullptr;
    check(lowbit_quantize_plan_create(lowbit_ctx(), &d, &plan), "lowbit_quantize_plan_create");
    auto internal_ctx = Context::on_current(ContextConfig{});
    lowbit_op_desc op{LOWBIT_FAMILY_QUANTIZE, 0, &d};
    auto op_plan = create_op_plan(op, internal_ctx->traits());
    CUfunction fn = internal_ctx->kernels().get(op_plan->kernels()[0]).kernel->function;
    Buffer x(64), q(64), scale(16);
    x.fill_random_floats(LOWBIT_DTYPE_BF16, -1.0f, 1.0f, 3);
    float sv = 0.5f;
    scale.upload(&sv, 4);
    CUstream s = device().stream;
    lowbit_arg args[] = {{LOWBIT_ARG_X, 0, x.ptr()}, {LOWBIT_ARG_Q, 0, q.ptr()}, {LOWBIT_ARG_SCALE, 0, scale.ptr()}};
    check(lowbit_plan_run(plan, args, 3, 0, 0, s), "lowbit_plan_run");
    QuantizeParams k{};
    k.x = x.ptr(); k.q = q.ptr(); k.scale = scale.ptr();
    k.rows = 1; k.cols = 1; k.x_row_stride = 1; k.q_row_bytes = 1; k.chunks_per_row = 0;
    k.ch_inner = 1; k.ch_count = 1; k.groups_per_row = 1;
    void* kargs[] = {&k};
    cu_check(driver().LaunchKernel(fn, 1, 1, 1, 256, 1, 1, 0, s, kargs, nullptr), "cuLaunchKernel");
    cu_check(driver().StreamSynchronize(s), "jit warm-up");
    constexpr int kBatch = 256;
    std::vector<double> lowbit_us, raw_us, diff_us;
    for (int rep = 0; rep < 100; ++rep) {
      auto t = Clock::now();
      for (int i = 0; i < kBatch; ++i) lowbit_plan_run(plan, args, 3, 0, 0, s);
      lowbit_us.push_back(us_since(t) / kBatch);
      cu_check(driver().StreamSynchronize(s), "jit plan_run batch");
      t = Clock::now();
      for (int i = 0; i < kBatch; ++i) driver().LaunchKernel(fn, 1, 1, 1, 256, 1, 1, 0, s, kargs, nullptr);
      raw_us.push_back(us_since(t) / kBatch);
      cu_check(driver().StreamSynchronize(s), "jit cuLaunchKernel batch");
      diff_us.push_back(lowbit_us.back() - raw_us.back());
    }
    lowbit_plan_destroy(plan);
    const std::string per = fmt::format("{}, host time per launch, batches of {}", kernel, kBatch);
    record("plan_run.host", summarize(lowbit_us), 0, per);
    record("launch.cuLaunchKernel.host", summarize(raw_us), 0, per);
    record("plan_run.overhead_vs_cuLaunchKernel", summarize(diff_us), 1,
           per + ", paired difference per batch");

    // 5. Prewarm of the default manifest, -j 1 and -j N, fresh caches.
    if (cli_executable().empty()) {
      std::printf("jit        prewarm: the lowbit CLI was not found next to this executable (set LOWBIT_CLI): "
                  "not measured\n");
    } else {
      const int n = int(std::max(2u, std::thread::hardware_concurrency()));
      for (int jobs : {1, n}) {
        std::string line;
        const double us = time_prewarm(jobs, &line);
        record(jobs == 1 ? "prewarm.default_manifest.j1" : "prewarm.default_manifest.jN", summarize({us}), 0,
               fmt::format("lowbit prewarm -j {} (default manifest, fresh cache dir): {}", jobs, line),
               fmt::format("\"jobs\":{}", jobs), false);
      }
    }
  } catch (...) {
    remove_dir(dir);
    throw;
  }
  remove_dir(dir);
}

}  // namespace lowbit::bench
