#include "harness.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>

#include <fmt/format.h>

#include "common/error.hpp"
#include "common/json.hpp"
#include "cuda/driver.hpp"
#include "jit/compiler.hpp"

namespace lowbit::bench {

namespace {

const char* kHelperSource = R"(
#include "prelude.cuh"
namespace {
__device__ __forceinline__ uint32_t mix(uint64_t x) {
  x ^= x >> 33; x *= 0xff51afd7ed558ccdull; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull; x ^= x >> 33;
  return uint32_t(x);
}
__device__ __forceinline__ float uniform(uint64_t i, uint32_t seed, float lo, float hi) {
  return lo + (hi - lo) * (float(mix(i * 0x9e3779b97f4a7c15ull + seed) >> 8) * (1.0f / 16777216.0f));
}
}
extern "C" __global__ void fill_bytes(uint32_t* p, uint64_t words, uint32_t seed) {
  for (uint64_t i = blockIdx.x * uint64_t(blockDim.x) + threadIdx.x; i < words; i += uint64_t(gridDim.x) * blockDim.x)
    p[i] = mix(i * 0x9e3779b97f4a7c15ull + seed) | 0x01010101u;
}
extern "C" __global__ void fill_floats(void* p, uint64_t n, int dtype, float lo, float hi, uint32_t seed) {
  for (uint64_t i = blockIdx.x * uint64_t(blockDim.x) + threadIdx.x; i < n; i += uint64_t(gridDim.x) * blockDim.x) {
    float v = uniform(i, seed, lo, hi);
    if (dtype == 1) static_cast<float*>(p)[i] = v;
    else if (dtype == 3) static_cast<lowbit::f16*>(p)[i] = lowbit::from_f32<lowbit::f16>(v);
    else static_cast<lowbit::bf16*>(p)[i] = lowbit::from_f32<lowbit::bf16>(v);
  }
}
struct alignas(16) U4 { uint32_t x, y, z, w; };
extern "C" __global__ void __launch_bounds__(256) copy16(const U4* __restrict__ src, U4* __restrict__ dst, uint64_t n) {
  for (uint64_t i = blockIdx.x * uint64_t(blockDim.x) + threadIdx.x; i < n; i += uint64_t(gridDim.x) * blockDim.x)
    dst[i] = src[i];
}
extern "C" __global__ void __launch_bounds__(256) read16(const U4* __restrict__ src, uint64_t n, uint32_t* out) {
  uint32_t acc = 0;
  uint64_t i = blockIdx.x * uint64_t(blockDim.x) + threadIdx.x;
  const uint64_t step = uint64_t(gridDim.x) * blockDim.x;
  for (; i + 3 * step < n; i += 4 * step) {
    U4 a = src[i], b = src[i + step], c = src[i + 2 * step], d = src[i + 3 * step];
    acc ^= a.x ^ a.y ^ a.z ^ a.w ^ b.x ^ b.y ^ b.z ^ b.w ^ c.x ^ c.y ^ c.z ^ c.w ^ d.x ^ d.y ^ d.z ^ d.w;
  }
  for (; i < n; i += step) { U4 a = src[i]; acc ^= a.x ^ a.y ^ a.z ^ a.w; }
  if (acc == 0x12345678u) *out = acc;  // keeps the loads alive; practically never stores
}
)";

CUmodule helper_module() {
  static CUmodule module = [] {
    CompileOutput out = compile_with_nvrtc(kHelperSource, "bench_helpers",
                                           {"-arch=sm_" + std::to_string([] {
                                              int major = 0, minor = 0;
                                              CUdevice d = 0;
                                              driver().CtxGetDevice(&d);
                                              driver().DeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, d);
                                              driver().DeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, d);
                                              return major * 10 + minor;
                                            }()),
                                            "-std=c++17", "-default-device"},
                                           false);
    CUmodule m = nullptr;
    cu_check(driver().ModuleLoadData(&m, out.payload.data()), "cuModuleLoadData(bench helpers)");
    return m;
  }();
  return module;
}

CUfunction helper(const char* name) {
  CUfunction f = nullptr;
  cu_check(driver().ModuleGetFunction(&f, helper_module(), name), name);
  return f;
}

void launch(CUfunction f, unsigned grid, void** args, CUstream s) {
  cu_check(driver().LaunchKernel(f, grid, 1, 1, 256, 1, 1, 0, s, args, nullptr), "cuLaunchKernel");
}

std::vector<Record>& records() {
  static std::vector<Record> r;
  return r;
}

}  // namespace

Device& device() {
  static Device d;
  return d;
}

Buffer::Buffer(size_t bytes) : bytes_(bytes) {
  CUdeviceptr p = 0;
  cu_check(driver().MemAlloc(&p, std::max<size_t>(bytes, 16)), "cuMemAlloc");
  ptr_ = p;
}
Buffer::~Buffer() {
  if (ptr_) driver().MemFree(ptr_);
}
Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    if (ptr_) driver().MemFree(ptr_);
    ptr_ = o.ptr_; bytes_ = o.bytes_;
    o.ptr_ = 0; o.bytes_ = 0;
  }
  return *this;
}
void Buffer::fill_random(uint32_t seed) {
  uint64_t words = bytes_ / 4;
  void* args[] = {&ptr_, &words, &seed};
  if (words > 0) launch(helper("fill_bytes"), unsigned(std::min<uint64_t>((words + 255) / 256, 65535)), args, nullptr);
  if (bytes_ % 4) cu_check(driver().MemsetD8(ptr_ + words * 4, 0x5a, bytes_ % 4), "cuMemsetD8");
  cu_check(driver().CtxSynchronize(), "fill_random");
}
void Buffer::fill_random_floats(lowbit_dtype dtype, float lo, float hi, uint32_t seed) {
  const int size = dtype == LOWBIT_DTYPE_F32 ? 4 : 2;
  uint64_t n = bytes_ / size;
  int dt = dtype;
  void* args[] = {&ptr_, &n, &dt, &lo, &hi, &seed};
  launch(helper("fill_floats"), unsigned(std::min<uint64_t>((n + 255) / 256, 65535)), args, nullptr);
  cu_check(driver().CtxSynchronize(), "fill_random_floats");
}
void Buffer::upload(const void* host, size_t bytes) { cu_check(driver().MemcpyHtoD(ptr_, host, bytes), "cuMemcpyHtoD"); }

Timing time_kernel(const Options& o, CUstream stream, const std::function<void(int)>& fn) {
  const DriverApi& api = driver();
  CUevent start = nullptr, stop = nullptr;
  cu_check(api.EventCreate(&start, CU_EVENT_DEFAULT), "cuEventCreate");
  cu_check(api.EventCreate(&stop, CU_EVENT_DEFAULT), "cuEventCreate");
  for (int i = 0; i < o.warmup; ++i) fn(i);
  cu_check(api.StreamSynchronize(stream), "warm-up");
  std::vector<double> us;
  double total_ms = 0;
  for (int i = 0; (int(us.size()) < o.min_runs || total_ms < o.min_ms) && i < 100000; ++i) {
    api.EventRecord(start, stream);
    fn(o.warmup + i);
    api.EventRecord(stop, stream);
    cu_check(api.EventSynchronize(stop), "cuEventSynchronize");
    float ms = 0;
    api.EventElapsedTime(&ms, start, stop);
    us.push_back(ms * 1000.0);
    total_ms += ms;
    if (total_ms > 20 * o.min_ms && int(us.size()) >= 5) break;  // very slow points
  }
  api.EventDestroy(start);
  api.EventDestroy(stop);
  std::sort(us.begin(), us.end());
  Timing t;
  t.runs = int(us.size());
  t.median_us = us[us.size() / 2];
  t.p10_us = us[us.size() / 10];
  t.p90_us = us[(us.size() * 9) / 10];
  return t;
}

const Ceilings& ceilings(const Options& o) {
  static Ceilings c = [&] {
    Ceilings r;
    Options ro = o;
    ro.min_runs = 10;
    ro.min_ms = 50;
    ro.warmup = 2;
    CUstream s = device().stream;
    for (size_t mib : {256, 512, 1024, 2048}) {
      const size_t bytes = mib << 20;
      Buffer a(bytes), b(bytes);
      a.fill_random(1);
      uint64_t n16 = bytes / 16;
      uint64_t src = a.ptr(), dst = b.ptr();
      unsigned grid = unsigned(device().sm_count * 8);
      CUfunction copy = helper("copy16"), read = helper("read16");
      Timing tc = time_kernel(ro, s, [&](int) {
        void* args[] = {&src, &dst, &n16};
        launch(copy, grid, args, s);
      });
      Timing tm = time_kernel(ro, s, [&](int) {
        cu_check(driver().MemcpyDtoDAsync(dst, src, bytes, s), "cuMemcpyDtoDAsync");
      });
      Buffer out(4);
      uint64_t outp = out.ptr();
      Timing tr = time_kernel(ro, s, [&](int) {
        void* args[] = {&src, &n16, &outp};
        launch(read, grid, args, s);
      });
      const double copy_gbps = 2.0 * bytes / (std::min(tc.median_us, tm.median_us) * 1e3);
      const double read_gbps = double(bytes) / (tr.median_us * 1e3);
      std::printf("ceiling  %5zu MiB  copy %7.1f GB/s (kernel %.1f, memcpy %.1f)  read %7.1f GB/s\n", mib, copy_gbps,
                  2.0 * bytes / (tc.median_us * 1e3), 2.0 * bytes / (tm.median_us * 1e3), read_gbps);
      r.copy_gbps = std::max(r.copy_gbps, copy_gbps);
      r.read_gbps = std::max(r.read_gbps, read_gbps);
    }
    std::printf("ceilings: copy %.1f GB/s (read+write), read %.1f GB/s (best of 256 MiB..2 GiB)\n", r.copy_gbps,
                r.read_gbps);
    return r;
  }();
  return c;
}

void emit(const Record& r) {
  const double gbps = r.bytes / (r.t.median_us * 1e3);
  const double frac = r.ceiling_gbps > 0 ? gbps / r.ceiling_gbps : 0;
  std::string cublas = r.cublas_us > 0 ? fmt::format("{:6.2f}x", r.cublas_us / r.t.median_us) : std::string("     -");
  std::printf("%-10s %-22s %-6s %-5s g%-4lld M%-5lld N%-6lld K%-6lld %9.2f us  %7.1f GB/s  %5.1f%% %-5s  %s  %s\n",
              r.suite.c_str(), r.op.c_str(), r.format.c_str(), r.dtype.c_str(), (long long)r.group, (long long)r.m,
              (long long)r.n, (long long)r.k, r.t.median_us, gbps, 100 * frac, r.ceiling_name.c_str(), cublas.c_str(),
              r.config.c_str());
  std::fflush(stdout);
  records().push_back(r);
}

std::string records_json() {
  std::string out = "[";
  for (size_t i = 0; i < records().size(); ++i) {
    const Record& r = records()[i];
    const double gbps = r.bytes / (r.t.median_us * 1e3);
    JsonObject o;
    o.add("suite", r.suite).add("op", r.op).add("format", r.format).add("dtype", r.dtype).add("group", r.group)
        .add("m", r.m).add("n", r.n).add("k", r.k).add("config", r.config).add("median_us", r.t.median_us)
        .add("p10_us", r.t.p10_us).add("p90_us", r.t.p90_us).add("runs", int64_t(r.t.runs)).add("bytes", r.bytes)
        .add("gbps", gbps).add("tflops", r.flops > 0 ? r.flops / (r.t.median_us * 1e6) : 0.0)
        .add("ceiling", r.ceiling_name).add("ceiling_gbps", r.ceiling_gbps)
        .add("fraction_of_ceiling", r.ceiling_gbps > 0 ? gbps / r.ceiling_gbps : 0.0)
        .add("cublas_us", r.cublas_us).add("speedup_vs_cublas", r.cublas_us > 0 ? r.cublas_us / r.t.median_us : 0.0);
    std::string s = o.str();
    if (!r.extra_json.empty()) s = s.substr(0, s.size() - 1) + "," + r.extra_json + "}";
    out += (i ? ",\n" : "\n") + s;
  }
  return out + "\n]";
}

std::string environment_json() {
  const DriverApi& api = driver();
  CUdevice d = 0;
  api.CtxGetDevice(&d);
  int clock = 0, mem_clock = 0;
  api.DeviceGetAttribute(&clock, CU_DEVICE_ATTRIBUTE_CLOCK_RATE, d);
  api.DeviceGetAttribute(&mem_clock, CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE, d);
  return JsonObject()
      .add("gpu", device().name)
      .add("sm_count", int64_t(device().sm_count))
      .add("driver", int64_t(api.version))
      .add("max_sm_clock_khz", int64_t(clock))
      .add("max_mem_clock_khz", int64_t(mem_clock))
      .add("lowbit", lowbit_version_string())
      .str();
}

lowbit_context* lowbit_ctx() {
  static lowbit_context* ctx = [] {
    lowbit_context* c = nullptr;
    if (lowbit_context_create_current(nullptr, &c) != LOWBIT_OK)
      throw Error(LOWBIT_NO_DEVICE, lowbit_last_error_message());
    return c;
  }();
  return ctx;
}

}  // namespace lowbit::bench
