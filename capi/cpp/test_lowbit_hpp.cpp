// Tests of include/lowbit/lowbit.hpp (the header-only C++ layer) against the
// real liblowbit.so. CPU-only machines run everything except the GPU case,
// which prints SKIPPED. Prints "N passed, N failed, N skipped" last and
// appends "bindings-cpp: ..." to $LOWBIT_TEST_SUMMARY if set.
#include "lowbit/lowbit.hpp"

#include <dlfcn.h>
#include <stdlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

int g_passed = 0, g_failed = 0, g_skipped = 0;
bool g_case_failed = false;

struct Skip {
  std::string why;
};

#define CHECK(cond)                                                                  \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      std::cerr << __FILE__ << ":" << __LINE__ << ": CHECK failed: " #cond << "\n"; \
      g_case_failed = true;                                                          \
    }                                                                                \
  } while (0)

void run_case(const char* name, const std::function<void()>& body) {
  g_case_failed = false;
  try {
    body();
  } catch (const Skip& s) {
    std::cout << "SKIPPED " << name << ": " << s.why << "\n";
    ++g_skipped;
    return;
  } catch (const std::exception& e) {
    std::cerr << name << ": unexpected exception: " << e.what() << "\n";
    g_case_failed = true;
  }
  std::cout << (g_case_failed ? "FAILED  " : "ok      ") << name << "\n";
  (g_case_failed ? g_failed : g_passed)++;
}

// A fresh directory under $LOWBIT_CACHE_DIR (or the system temp dir).
struct TempDir {
  fs::path path;
  TempDir() {
    const char* base = std::getenv("LOWBIT_CACHE_DIR");
    fs::path root = base != nullptr && *base != '\0' ? fs::path(base) : fs::temp_directory_path();
    fs::create_directories(root);
    std::string tmpl = (root / "lowbit-hpp-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

lowbit::QuantizeDesc small_desc() {
  lowbit::QuantizeDesc d;
  d.shape({4096}).x_dtype(LOWBIT_DTYPE_F32).q_dtype(LOWBIT_DTYPE_S8);
  return d;
}

void test_version() {
  CHECK(lowbit::version_number() == LOWBIT_VERSION_NUMBER);
  CHECK(lowbit::version_string() == LOWBIT_VERSION_STRING);
}

void test_status_strings() {
  CHECK(lowbit::status_string(LOWBIT_OK).substr(0, 9) == "LOWBIT_OK");
  CHECK(lowbit::status_string(LOWBIT_MISALIGNED).substr(0, 17) == "LOWBIT_MISALIGNED");
  CHECK(lowbit::status_string(LOWBIT_NO_DEVICE).substr(0, 16) == "LOWBIT_NO_DEVICE");
  CHECK(lowbit::status_string(9999) == "unknown lowbit status");
  CHECK(lowbit::dtype_name(LOWBIT_DTYPE_BF16) == "bf16");
  CHECK(lowbit::dtype_name(12345).empty());
}

void test_offline_context_plan_prewarm() {
  TempDir dir;
  lowbit::Context ctx = lowbit::Context::offline("sm_90a", lowbit::ContextOptions().cache_dir(dir.path.string()));
  lowbit_device_info info = ctx.info();
  CHECK(info.offline == 1);
  CHECK(std::string(info.arch) == "sm_90a");
  CHECK(info.compute_capability == 90);
  CHECK(fs::equivalent(fs::path(info.cache_dir), dir.path));

  lowbit::QuantizeDesc desc = small_desc();
  lowbit::Plan plan = ctx.quantize_plan(desc);
  CHECK(plan);
  CHECK(plan.workspace_size() == 0);
  std::string json = plan.describe();
  CHECK(json.find("\"family\":\"quantize\"") != std::string::npos);
  CHECK(json.find("sm_90a") != std::string::npos);
  lowbit_cache_stats stats = ctx.cache_stats();
  CHECK(stats.compiles == 1);
  CHECK(stats.disk_entries >= 1);

  // A second context on the same directory loads it from disk.
  lowbit::Context again = lowbit::Context::offline("sm_90a", lowbit::ContextOptions().cache_dir(dir.path.string()));
  lowbit::Plan cached = again.quantize_plan(desc);
  CHECK(again.cache_stats().disk_hits == 1);
  CHECK(again.cache_stats().compiles == 0);

  // Prewarm: the cached descriptor plus a bad one; per-item statuses.
  lowbit::QuantizeDesc bad = small_desc();
  bad.raw().rank = 0;
  std::vector<lowbit_status> results;
  auto r = again.try_prewarm({desc.op_desc(), bad.op_desc()}, 2, &results);
  CHECK(!r);
  CHECK(r.status() == LOWBIT_INVALID_PROBLEM);
  CHECK(r.error().message().find("item 1") != std::string::npos);
  CHECK(results.size() == 2 && results[0] == LOWBIT_OK && results[1] == LOWBIT_INVALID_PROBLEM);
  again.prewarm({desc.op_desc()});

  // Running needs a device.
  auto run = plan.try_run({lowbit::arg(LOWBIT_ARG_X, 256), lowbit::arg(LOWBIT_ARG_Q, 512),
                           lowbit::arg(LOWBIT_ARG_SCALE, 1024)});
  CHECK(run.status() == LOWBIT_NO_DEVICE);
  CHECK(!run.error().message().empty());
}

void test_errors() {
  // Exceptions carry the status and the message.
  bool threw = false;
  try {
    lowbit::Context::offline("sm_1");
  } catch (const lowbit::Error& e) {
    threw = true;
    CHECK(e.status() == LOWBIT_INVALID_ARGUMENT);
    CHECK(e.message().find("sm_1") != std::string::npos);
    CHECK(std::string(e.what()).rfind("LOWBIT_INVALID_ARGUMENT", 0) == 0);
  }
  CHECK(threw);

  // Expected-style results do too.
  TempDir dir;
  auto ctx = lowbit::Context::try_offline("sm_90a", lowbit::ContextOptions().cache_dir(dir.path.string()));
  CHECK(ctx.has_value());
  lowbit::QuantizeDesc d = small_desc();
  d.raw().rank = 0;
  auto p = ctx->try_quantize_plan(d);
  CHECK(!p && p.status() == LOWBIT_INVALID_PROBLEM);
  CHECK(p.error().message().find("rank") != std::string::npos);
  d = small_desc();
  d.x_dtype(LOWBIT_DTYPE_S8);  // well-formed but not a float input: UNSUPPORTED by design
  CHECK(ctx->try_quantize_plan(d).status() == LOWBIT_UNSUPPORTED);
  d = small_desc();
  d.x_dtype(77);
  CHECK(ctx->try_quantize_plan(d).status() == LOWBIT_INVALID_ARGUMENT);
  d = small_desc();
  d.raw().struct_size = 3;
  CHECK(ctx->try_quantize_plan(d).status() == LOWBIT_INVALID_ARGUMENT);
  lowbit::ContextOptions bad_mode;
  bad_mode.cache_mode(42);
  CHECK(lowbit::Context::try_offline("sm_90a", bad_mode).status() == LOWBIT_INVALID_ARGUMENT);

  // value() on an error throws that error.
  threw = false;
  try {
    (void)ctx->try_quantize_plan(lowbit::QuantizeDesc().shape({})).value();
  } catch (const lowbit::Error& e) {
    threw = e.status() == LOWBIT_INVALID_PROBLEM;
  }
  CHECK(threw);
}

void test_no_device() {
  auto ctx = lowbit::Context::try_device(0);
  if (ctx) throw Skip{"a GPU is present (NO_DEVICE is checked on CPU-only machines)"};
  CHECK(ctx.status() == LOWBIT_NO_DEVICE);
  CHECK(!ctx.error().message().empty());
  CHECK(lowbit::Context::try_current().status() == LOWBIT_NO_DEVICE);
}

void test_handles() {
  lowbit::ContextPtr null_ctx;  // deleter on NULL is a no-op
  lowbit::PlanPtr null_plan;
  lowbit::Context moved;
  CHECK(!moved);
  TempDir dir;
  lowbit::Context a = lowbit::Context::offline("sm_90a", lowbit::ContextOptions().cache_dir(dir.path.string()));
  lowbit_context* raw = a.get();
  lowbit::Context b = std::move(a);
  CHECK(b.get() == raw && !a);  // NOLINT(bugprone-use-after-move)
}

void test_reference() {
  lowbit::QuantizeDesc d;
  d.shape({6});
  float x[6] = {1.0f, 0.25f, 0.75f, -100.0f, 100.0f, -0.25f};
  float scale = 0.5f;
  int32_t zp = 0;
  int8_t q[6] = {};
  lowbit::reference_run(d.op_desc(), {lowbit::arg(LOWBIT_ARG_X, uint64_t(uintptr_t(x))),
                                      lowbit::arg(LOWBIT_ARG_Q, uint64_t(uintptr_t(q))),
                                      lowbit::arg(LOWBIT_ARG_SCALE, uint64_t(uintptr_t(&scale))),
                                      lowbit::arg(LOWBIT_ARG_ZERO_POINT, uint64_t(uintptr_t(&zp)))});
  const int8_t want[6] = {2, 0, 2, -128, 127, 0};  // round half to even, clamp
  CHECK(std::memcmp(q, want, 6) == 0);
  auto missing = lowbit::try_reference_run(d.op_desc(), {lowbit::arg(LOWBIT_ARG_X, uint64_t(uintptr_t(x)))});
  CHECK(missing.status() == LOWBIT_INVALID_ARGUMENT);
}

// The C++ snippet of README.md.
void test_readme_snippet() {
  TempDir dir;
  const std::string cache_dir = dir.path.string();
  // --- snippet begin ---
  // An offline context compiles kernels for sm_90a without a GPU.
  lowbit::Context ctx = lowbit::Context::offline("sm_90a", lowbit::ContextOptions().cache_dir(cache_dir));
  lowbit::QuantizeDesc desc;
  desc.x_dtype(LOWBIT_DTYPE_BF16).q_dtype(LOWBIT_DTYPE_S8).shape({64, 4096});
  lowbit::Plan plan = ctx.quantize_plan(desc);  // compiled with NVRTC, stored in the cache
  std::cout << "lowbit " << lowbit::version_string() << ": " << plan.describe() << "\n";

  // Errors: exceptions (lowbit::Error) or expected-style results, with status and message.
  lowbit::Result<lowbit::Plan> bad = ctx.try_quantize_plan(lowbit::QuantizeDesc().shape({}));
  if (!bad) std::cout << "rejected: " << bad.error().status() << " " << bad.error().message() << "\n";

  // On a GPU: lowbit::Context::device(0), then with CUdeviceptr values and a CUstream:
  //   plan.run({lowbit::arg(LOWBIT_ARG_X, x), lowbit::arg(LOWBIT_ARG_Q, q),
  //             lowbit::arg(LOWBIT_ARG_SCALE, scale)}, stream);
  // --- snippet end ---
  CHECK(bad.status() == LOWBIT_INVALID_PROBLEM);
}

// The GPU end-to-end case: libcuda through dlopen, a per-tensor quantize plan,
// compared bit-exactly with lowbit_reference_run.
struct Cuda {
  void* lib = nullptr;
  int (*cuInit)(unsigned) = nullptr;
  int (*cuDeviceGet)(int*, int) = nullptr;
  int (*cuDevicePrimaryCtxRetain)(void**, int) = nullptr;
  int (*cuDevicePrimaryCtxRelease)(int) = nullptr;
  int (*cuCtxSetCurrent)(void*) = nullptr;
  int (*cuMemAlloc)(uint64_t*, size_t) = nullptr;
  int (*cuMemFree)(uint64_t) = nullptr;
  int (*cuMemcpyHtoD)(uint64_t, const void*, size_t) = nullptr;
  int (*cuMemcpyDtoH)(void*, uint64_t, size_t) = nullptr;
  int (*cuCtxSynchronize)() = nullptr;
  template <typename F>
  void sym(F& f, const char* name) {
    f = reinterpret_cast<F>(dlsym(lib, name));
    if (f == nullptr) throw std::runtime_error(std::string("libcuda lacks ") + name);
  }
  bool load() {
    lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) return false;
    sym(cuInit, "cuInit");
    sym(cuDeviceGet, "cuDeviceGet");
    sym(cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
    sym(cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2");
    sym(cuCtxSetCurrent, "cuCtxSetCurrent");
    sym(cuMemAlloc, "cuMemAlloc_v2");
    sym(cuMemFree, "cuMemFree_v2");
    sym(cuMemcpyHtoD, "cuMemcpyHtoD_v2");
    sym(cuMemcpyDtoH, "cuMemcpyDtoH_v2");
    sym(cuCtxSynchronize, "cuCtxSynchronize");
    return true;
  }
};

#define CU(call)                                                                   \
  do {                                                                             \
    int cu_rc = (call);                                                            \
    if (cu_rc != 0) throw std::runtime_error(#call " failed: CUresult " + std::to_string(cu_rc)); \
  } while (0)

void test_gpu_quantize_end_to_end() {
  TempDir dir;
  auto ctx = lowbit::Context::try_device(0, lowbit::ContextOptions().cache_dir(dir.path.string()));
  if (!ctx) throw Skip{"no GPU: " + ctx.error().message()};
  Cuda cu;
  if (!cu.load()) throw Skip{"libcuda.so.1 cannot be loaded"};
  const size_t n = 1 << 20;
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) x[i] = 4.0f * std::sin(0.001f * float(i)) + 0.37f * float(i % 7);
  const float scale = 0.037f;
  const int32_t zp = 3;
  lowbit::QuantizeDesc desc;
  desc.shape({int64_t(n)});
  lowbit::Plan plan = ctx->quantize_plan(desc);

  CU(cu.cuInit(0));
  int dev = 0;
  void* pctx = nullptr;
  CU(cu.cuDeviceGet(&dev, 0));
  CU(cu.cuDevicePrimaryCtxRetain(&pctx, dev));
  CU(cu.cuCtxSetCurrent(pctx));
  uint64_t dx = 0, dq = 0, ds = 0, dz = 0;
  CU(cu.cuMemAlloc(&dx, n * 4));
  CU(cu.cuMemAlloc(&dq, n));
  CU(cu.cuMemAlloc(&ds, 4));
  CU(cu.cuMemAlloc(&dz, 4));
  CU(cu.cuMemcpyHtoD(dx, x.data(), n * 4));
  CU(cu.cuMemcpyHtoD(ds, &scale, 4));
  CU(cu.cuMemcpyHtoD(dz, &zp, 4));
  plan.run({lowbit::arg(LOWBIT_ARG_X, dx), lowbit::arg(LOWBIT_ARG_Q, dq), lowbit::arg(LOWBIT_ARG_SCALE, ds),
            lowbit::arg(LOWBIT_ARG_ZERO_POINT, dz)});
  CU(cu.cuCtxSynchronize());
  std::vector<int8_t> got(n), want(n);
  CU(cu.cuMemcpyDtoH(got.data(), dq, n));
  for (uint64_t p : {dx, dq, ds, dz}) cu.cuMemFree(p);
  cu.cuDevicePrimaryCtxRelease(dev);

  lowbit::reference_run(desc.op_desc(), {lowbit::arg(LOWBIT_ARG_X, uint64_t(uintptr_t(x.data()))),
                                         lowbit::arg(LOWBIT_ARG_Q, uint64_t(uintptr_t(want.data()))),
                                         lowbit::arg(LOWBIT_ARG_SCALE, uint64_t(uintptr_t(&scale))),
                                         lowbit::arg(LOWBIT_ARG_ZERO_POINT, uint64_t(uintptr_t(&zp)))});
  size_t mismatches = 0;
  for (size_t i = 0; i < n; ++i) mismatches += got[i] != want[i];
  if (mismatches != 0) std::cerr << "gpu: " << mismatches << " of " << n << " elements differ\n";
  CHECK(mismatches == 0);
}

}  // namespace

int main() {
  run_case("version", test_version);
  run_case("status_strings", test_status_strings);
  run_case("offline_context_plan_prewarm", test_offline_context_plan_prewarm);
  run_case("errors", test_errors);
  run_case("no_device", test_no_device);
  run_case("handles", test_handles);
  run_case("reference", test_reference);
  run_case("readme_snippet", test_readme_snippet);
  run_case("gpu_quantize_end_to_end", test_gpu_quantize_end_to_end);
  const std::string line = std::to_string(g_passed) + " passed, " + std::to_string(g_failed) + " failed, " +
                           std::to_string(g_skipped) + " skipped";
  std::cout << line << "\n";
  if (const char* path = std::getenv("LOWBIT_TEST_SUMMARY"); path != nullptr && *path != '\0') {
    std::ofstream(path, std::ios::app) << "bindings-cpp: " << line << "\n";
  }
  return g_failed == 0 ? 0 : 1;
}
