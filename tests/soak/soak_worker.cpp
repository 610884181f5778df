// One soak process (tests/soak/soak.py starts several on one cache dir):
// THREADS threads create, describe, run and destroy plans of kernels drawn at
// random from a fixed pool, for SECONDS, through the public C API only.
//
//   soak_worker --cache-dir DIR [--threads 8] [--seconds 30] [--seed N]
//               [--pool 12] [--arch sm_90a | --device 0]
//
// Offline (--arch, the default): plans are created (compiled into DIR or
// loaded from it) and run must return NO_DEVICE. On a GPU (--device N): the
// plans run for real on device buffers (libcuda loaded with dlopen, as lowbit
// itself does), each run synchronized and checked.
//
// Most requests go through one context shared by the process's threads (its
// memory cache); one in PRIVATE (8) through a short-lived private context
// whose first plan must come from the disk or a compile, which exercises the
// cross-process key lock. Prints key=value lines: plans, failures, the
// summed cache counters of every context, and each kernel key seen.
#include <dlfcn.h>

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "lowbit/lowbit.h"

namespace {

struct Options {
  std::string cache_dir;
  std::string arch = "sm_90a";
  int device = -1;
  int threads = 8;
  double seconds = 30;
  uint64_t seed = 1;
  int pool = 12;
  int private_one_in = 8;
};

// The kernel pool: distinct (op, x, q, scope) combinations, small shapes.
std::vector<lowbit_quantize_desc> make_pool(int n) {
  std::vector<lowbit_quantize_desc> pool;
  const lowbit_dtype xs[] = {LOWBIT_DTYPE_F32, LOWBIT_DTYPE_F16, LOWBIT_DTYPE_BF16, LOWBIT_DTYPE_F64};
  const lowbit_dtype qs[] = {LOWBIT_DTYPE_S8, LOWBIT_DTYPE_U8, LOWBIT_DTYPE_S4};
  const lowbit_quantize_op ops[] = {LOWBIT_QOP_QUANTIZE, LOWBIT_QOP_DEQUANTIZE};
  for (lowbit_quantize_op op : ops)
    for (lowbit_dtype q : qs)
      for (lowbit_dtype x : xs) {
        if (int(pool.size()) >= n) return pool;
        lowbit_quantize_desc d;
        lowbit_quantize_desc_init(&d);
        d.op = op;
        d.x_dtype = x;
        d.q_dtype = q;
        d.rank = 2;
        d.dims[0] = 8;
        d.dims[1] = 1024;
        pool.push_back(d);
      }
  return pool;
}

// --- the driver API, for --device only -------------------------------------
struct Cuda {
  using CUresult = int;
  using CUdevice = int;
  using CUcontext = void*;
  using CUdeviceptr = unsigned long long;
  CUresult (*Init)(unsigned) = nullptr;
  CUresult (*DeviceGet)(CUdevice*, int) = nullptr;
  CUresult (*PrimaryCtxRetain)(CUcontext*, CUdevice) = nullptr;
  CUresult (*CtxSetCurrent)(CUcontext) = nullptr;
  CUresult (*MemAlloc)(CUdeviceptr*, size_t) = nullptr;
  CUresult (*MemFree)(CUdeviceptr) = nullptr;
  CUresult (*MemcpyHtoD)(CUdeviceptr, const void*, size_t) = nullptr;
  CUresult (*CtxSynchronize)() = nullptr;
  CUcontext primary = nullptr;

  bool load(int ordinal) {
    void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) return false;
    auto sym = [&](auto& fn, const char* name) { fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, name)); return fn != nullptr; };
    if (!sym(Init, "cuInit") || !sym(DeviceGet, "cuDeviceGet") || !sym(PrimaryCtxRetain, "cuDevicePrimaryCtxRetain") ||
        !sym(CtxSetCurrent, "cuCtxSetCurrent") || !sym(MemAlloc, "cuMemAlloc_v2") || !sym(MemFree, "cuMemFree_v2") ||
        !sym(MemcpyHtoD, "cuMemcpyHtoD_v2") || !sym(CtxSynchronize, "cuCtxSynchronize"))
      return false;
    CUdevice dev = 0;
    return Init(0) == 0 && DeviceGet(&dev, ordinal) == 0 && PrimaryCtxRetain(&primary, dev) == 0;
  }
};

// Device buffers large enough for any pool kernel (8 x 1024 elements).
struct Buffers {
  unsigned long long x = 0, q = 0, scale = 0, zp = 0;
  bool make(Cuda& cu) {
    if (cu.CtxSetCurrent(cu.primary) != 0) return false;
    const size_t n = 8 * 1024;
    if (cu.MemAlloc(&x, n * 8) != 0 || cu.MemAlloc(&q, n) != 0 || cu.MemAlloc(&scale, 64) != 0 ||
        cu.MemAlloc(&zp, 64) != 0)
      return false;
    std::vector<uint8_t> zeros(n * 8, 0);
    const double s64 = 0.05;
    const float s32 = 0.05f;
    uint8_t sbuf[64] = {};
    std::memcpy(sbuf, &s32, 4);
    std::memcpy(sbuf + 8, &s64, 8);  // unused: every pool kernel has an f32 scale
    return cu.MemcpyHtoD(x, zeros.data(), zeros.size()) == 0 && cu.MemcpyHtoD(q, zeros.data(), n) == 0 &&
           cu.MemcpyHtoD(scale, sbuf, 64) == 0 && cu.MemcpyHtoD(zp, zeros.data(), 64) == 0;
  }
  void free(Cuda& cu) {
    for (unsigned long long p : {x, q, scale, zp})
      if (p != 0) cu.MemFree(p);
  }
};

struct Totals {
  std::mutex mu;
  uint64_t memory_hits = 0, disk_hits = 0, misses = 0, compiles = 0, compile_failures = 0, damaged = 0;
  std::set<std::string> keys;
  std::vector<std::string> failures;

  void add_stats(const lowbit_context* ctx) {
    lowbit_cache_stats s;
    s.struct_size = sizeof(s);
    if (lowbit_context_cache_stats(ctx, &s) != LOWBIT_OK) {
      fail("lowbit_context_cache_stats failed");
      return;
    }
    std::lock_guard<std::mutex> g(mu);
    memory_hits += s.memory_hits;
    disk_hits += s.disk_hits;
    misses += s.misses;
    compiles += s.compiles;
    compile_failures += s.compile_failures;
    damaged += s.damaged_entries;
  }
  void fail(const std::string& what) {
    std::lock_guard<std::mutex> g(mu);
    if (failures.size() < 20) failures.push_back(what);
    else failures.back() = "... (more)";
  }
};

lowbit_context* make_context(const Options& o) {
  lowbit_context_options co;
  lowbit_context_options_init(&co);
  co.cache_dir = o.cache_dir.c_str();
  co.log_level = LOWBIT_LOG_WARN;
  lowbit_context* ctx = nullptr;
  const lowbit_status s = o.device >= 0 ? lowbit_context_create_device(o.device, &co, &ctx)
                                        : lowbit_context_create_offline(o.arch.c_str(), &co, &ctx);
  return s == LOWBIT_OK ? ctx : nullptr;
}

std::string key_of(const std::string& json) {
  const size_t at = json.find("\"key\":\"");
  if (at == std::string::npos) return "";
  return json.substr(at + 7, json.find('"', at + 7) - at - 7);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "soak_worker: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--cache-dir") o.cache_dir = next();
    else if (a == "--arch") o.arch = next();
    else if (a == "--device") o.device = std::atoi(next().c_str());
    else if (a == "--threads") o.threads = std::atoi(next().c_str());
    else if (a == "--seconds") o.seconds = std::atof(next().c_str());
    else if (a == "--seed") o.seed = std::strtoull(next().c_str(), nullptr, 10);
    else if (a == "--pool") o.pool = std::atoi(next().c_str());
    else if (a == "--private") o.private_one_in = std::atoi(next().c_str());
    else {
      std::fprintf(stderr, "soak_worker: unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  if (o.cache_dir.empty() || o.threads < 1 || o.pool < 1 || o.private_one_in < 1) {
    std::fprintf(stderr, "usage: soak_worker --cache-dir DIR [--threads N] [--seconds S] [--seed N] [--pool N] "
                         "[--arch sm_XX | --device N]\n");
    return 2;
  }
  const std::vector<lowbit_quantize_desc> pool = make_pool(o.pool);
  Cuda cuda;
  if (o.device >= 0 && !cuda.load(o.device)) {
    std::fprintf(stderr, "soak_worker: no usable CUDA driver for --device %d\n", o.device);
    return 2;
  }

  Totals totals;
  lowbit_context* shared = make_context(o);
  if (shared == nullptr) {
    std::fprintf(stderr, "soak_worker: cannot create the context: %s\n", lowbit_last_error_message());
    return 1;
  }
  std::atomic<uint64_t> plans{0}, runs{0};
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(o.seconds);

  auto worker = [&](int t) {
    std::mt19937_64 rng(o.seed * 1000003u + uint64_t(t));
    Buffers buf;
    if (o.device >= 0 && !buf.make(cuda)) {
      totals.fail("device buffers could not be made");
      return;
    }
    std::string json(1 << 14, '\0');
    do {
      const size_t k = size_t(rng() % pool.size());
      const bool priv = rng() % uint64_t(o.private_one_in) == 0;
      lowbit_context* ctx = priv ? make_context(o) : shared;
      if (ctx == nullptr) {
        totals.fail(std::string("private context: ") + lowbit_last_error_message());
        continue;
      }
      lowbit_plan* plan = nullptr;
      lowbit_status s = lowbit_quantize_plan_create(ctx, &pool[k], &plan);
      if (s != LOWBIT_OK) {
        totals.fail("plan " + std::to_string(k) + ": " + lowbit_last_error_message());
      } else {
        plans++;
        size_t len = 0;
        s = lowbit_plan_describe(plan, json.data(), json.size(), &len);
        const std::string key = s == LOWBIT_OK ? key_of(json.c_str()) : "";
        if (key.empty()) totals.fail("describe gave no key");
        else {
          std::lock_guard<std::mutex> g(totals.mu);
          totals.keys.insert(key);
        }
        const lowbit_arg args[] = {
            {LOWBIT_ARG_X, 0, buf.x}, {LOWBIT_ARG_Q, 0, buf.q}, {LOWBIT_ARG_SCALE, 0, buf.scale},
            {LOWBIT_ARG_ZERO_POINT, 0, buf.zp}};
        s = lowbit_plan_run(plan, args, 4, 0, 0, nullptr);
        if (o.device < 0) {
          if (s != LOWBIT_NO_DEVICE) totals.fail("offline run returned " + std::to_string(s));
        } else if (s != LOWBIT_OK) {
          totals.fail(std::string("run: ") + lowbit_last_error_message());
        } else if (cuda.CtxSynchronize() != 0) {
          totals.fail("cuCtxSynchronize failed after a run");
        } else {
          runs++;
        }
      }
      lowbit_plan_destroy(plan);
      if (priv) {
        totals.add_stats(ctx);
        lowbit_context_destroy(ctx);
      }
    } while (std::chrono::steady_clock::now() < deadline);
    if (o.device >= 0) buf.free(cuda);
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < o.threads; ++t) threads.emplace_back(worker, t);
  for (std::thread& th : threads) th.join();
  totals.add_stats(shared);
  lowbit_context_destroy(shared);

  std::printf("plans=%" PRIu64 "\nruns=%" PRIu64 "\nfailures=%zu\n", plans.load(), runs.load(), totals.failures.size());
  std::printf("memory_hits=%" PRIu64 "\ndisk_hits=%" PRIu64 "\nmisses=%" PRIu64 "\ncompiles=%" PRIu64
              "\ncompile_failures=%" PRIu64 "\ndamaged=%" PRIu64 "\n",
              totals.memory_hits, totals.disk_hits, totals.misses, totals.compiles, totals.compile_failures,
              totals.damaged);
  for (const std::string& k : totals.keys) std::printf("key=%s\n", k.c_str());
  for (const std::string& f : totals.failures) std::printf("failure=%s\n", f.c_str());
  return totals.failures.empty() ? 0 : 1;
}
