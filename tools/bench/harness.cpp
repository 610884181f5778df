#include "harness.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>

#include <fmt/format.h>

#include "common/error.hpp"
#include "common/json.hpp"
#include "cuda/driver.hpp"
#include "jit/compiler.hpp"
#include "jit/nvrtc.hpp"

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

int device_arch() {
  int major = 0, minor = 0;
  CUdevice d = 0;
  driver().CtxGetDevice(&d);
  driver().DeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, d);
  driver().DeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, d);
  return major * 10 + minor;
}

CUmodule load_module(const std::string& source, const std::string& name) {
  CompileOutput out = compile_with_nvrtc(source, name,
                                         {"-arch=sm_" + std::to_string(device_arch()), "-std=c++17", "-default-device"},
                                         false);
  CUmodule m = nullptr;
  cu_check(driver().ModuleLoadData(&m, out.payload.data()), "cuModuleLoadData(bench kernels)");
  return m;
}

CUmodule helper_module() {
  static CUmodule module = load_module(kHelperSource, "bench_helpers");
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

// Driver entry points that lowbit's table does not have (graphs).
void* libcuda_handle() {
  static void* h = [] {
    void* p = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
    if (p == nullptr) p = dlopen("libcuda.so.1", RTLD_NOW);
    return p;
  }();
  return h;
}

struct GraphApi {
  bool ok = false;
  CUresult (*BeginCapture)(CUstream, CUstreamCaptureMode) = nullptr;
  CUresult (*EndCapture)(CUstream, CUgraph*) = nullptr;
  CUresult (*Instantiate)(CUgraphExec*, CUgraph, unsigned long long) = nullptr;
  CUresult (*Launch)(CUgraphExec, CUstream) = nullptr;
  CUresult (*ExecDestroy)(CUgraphExec) = nullptr;
  CUresult (*Destroy)(CUgraph) = nullptr;
};

const GraphApi& graph_api() {
  static GraphApi g = [] {
    GraphApi a;
    void* h = libcuda_handle();
    if (h == nullptr) return a;
    a.BeginCapture = reinterpret_cast<decltype(a.BeginCapture)>(dlsym(h, "cuStreamBeginCapture_v2"));
    a.EndCapture = reinterpret_cast<decltype(a.EndCapture)>(dlsym(h, "cuStreamEndCapture"));
    a.Instantiate = reinterpret_cast<decltype(a.Instantiate)>(dlsym(h, "cuGraphInstantiateWithFlags"));
    a.Launch = reinterpret_cast<decltype(a.Launch)>(dlsym(h, "cuGraphLaunch"));
    a.ExecDestroy = reinterpret_cast<decltype(a.ExecDestroy)>(dlsym(h, "cuGraphExecDestroy"));
    a.Destroy = reinterpret_cast<decltype(a.Destroy)>(dlsym(h, "cuGraphDestroy"));
    a.ok = a.BeginCapture && a.EndCapture && a.Instantiate && a.Launch && a.ExecDestroy && a.Destroy;
    return a;
  }();
  return g;
}

double finite_or_zero(double v) { return std::isfinite(v) ? v : 0.0; }

}  // namespace

CUfunction compile_bench_kernel(const std::string& source, const std::string& name) {
  CUfunction f = nullptr;
  cu_check(driver().ModuleGetFunction(&f, load_module(source, "bench_" + name), name.c_str()), name.c_str());
  return f;
}

Device& device() {
  static Device d;
  return d;
}

// ---- shapes --------------------------------------------------------------------

std::vector<GemmShape> gemm_shapes(const Options& o) {
  static const GemmShape kAll[] = {
      {"8b", "qkv", 4096, 6144},      {"8b", "o", 4096, 4096},      {"8b", "gate_up", 4096, 28672},
      {"8b", "down", 14336, 4096},    {"70b", "qkv", 8192, 10240},  {"70b", "o", 8192, 8192},
      {"70b", "gate_up", 8192, 57344}, {"70b", "down", 28672, 8192},
  };
  std::vector<GemmShape> out;
  int per_model[2] = {0, 0};
  for (const GemmShape& s : kAll) {
    const bool is8 = std::strcmp(s.model, "8b") == 0;
    if (o.shapes != "all" && o.shapes != s.model) continue;
    if (o.quick && per_model[is8 ? 0 : 1]++ >= 2) continue;
    out.push_back(s);
  }
  return out;
}

const std::vector<int64_t>& design_m_values() {
  static const std::vector<int64_t> m = {1, 2, 4, 8, 16, 32, 64, 128, 512, 4096};
  return m;
}

std::vector<int64_t> m_values(const Options& o, const std::vector<int64_t>& defaults) {
  return o.m_values.empty() ? defaults : o.m_values;
}

// ---- buffers ---------------------------------------------------------------------

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
  if (n > 0) launch(helper("fill_floats"), unsigned(std::min<uint64_t>((n + 255) / 256, 65535)), args, nullptr);
  cu_check(driver().CtxSynchronize(), "fill_random_floats");
}
void Buffer::upload(const void* host, size_t bytes) { cu_check(driver().MemcpyHtoD(ptr_, host, bytes), "cuMemcpyHtoD"); }

// ---- timing ----------------------------------------------------------------------

Timing summarize(std::vector<double> us) {
  Timing t;
  if (us.empty()) return t;
  std::sort(us.begin(), us.end());
  t.runs = int(us.size());
  t.median_us = us.size() % 2 ? us[us.size() / 2] : 0.5 * (us[us.size() / 2 - 1] + us[us.size() / 2]);
  t.p10_us = us[us.size() / 10];
  t.p90_us = us[std::min(us.size() - 1, (us.size() * 9) / 10)];
  t.min_us = us.front();
  t.max_us = us.back();
  return t;
}

Timing time_kernel(const Options& o, CUstream stream, const std::function<void(int)>& fn, bool flush) {
  const DriverApi& api = driver();
  CUevent start = nullptr, stop = nullptr;
  cu_check(api.EventCreate(&start, CU_EVENT_DEFAULT), "cuEventCreate");
  cu_check(api.EventCreate(&stop, CU_EVENT_DEFAULT), "cuEventCreate");
  std::vector<double> us;
  try {
    for (int i = 0; i < o.warmup; ++i) fn(i);
    cu_check(api.StreamSynchronize(stream), "warm-up");
    double total_ms = 0;
    for (int i = 0; (int(us.size()) < o.min_runs || total_ms < o.min_ms) && i < 100000; ++i) {
      if (flush) flush_l2(stream);
      cu_check(api.EventRecord(start, stream), "cuEventRecord");
      fn(o.warmup + i);
      cu_check(api.EventRecord(stop, stream), "cuEventRecord");
      cu_check(api.EventSynchronize(stop), "cuEventSynchronize");
      float ms = 0;
      cu_check(api.EventElapsedTime(&ms, start, stop), "cuEventElapsedTime");
      us.push_back(ms * 1000.0);
      total_ms += ms;
      if (total_ms > 20 * o.min_ms && int(us.size()) >= 5) break;  // very slow points
    }
  } catch (...) {
    api.EventDestroy(start);
    api.EventDestroy(stop);
    throw;
  }
  api.EventDestroy(start);
  api.EventDestroy(stop);
  return summarize(std::move(us));
}

Timing time_kernel_graph(const Options& o, CUstream s, int reps, const std::function<void(int)>& fn) {
  reps = std::max(reps, 1);
  fn(0);  // lets libraries set up (cuBLAS allocates on first use) before the capture
  cu_check(driver().StreamSynchronize(s), "warm-up before capture");
  const GraphApi& g = graph_api();
  CUgraphExec exec = nullptr;
  CUgraph graph = nullptr;
  if (g.ok && g.BeginCapture(s, CU_STREAM_CAPTURE_MODE_RELAXED) == CUDA_SUCCESS) {
    bool fine = true;
    try {
      for (int i = 0; i < reps; ++i) fn(i);
    } catch (...) {
      fine = false;
    }
    const CUresult e = g.EndCapture(s, &graph);
    if (!fine || e != CUDA_SUCCESS || g.Instantiate(&exec, graph, 0) != CUDA_SUCCESS) {
      if (graph) g.Destroy(graph);
      graph = nullptr;
      exec = nullptr;
    }
  }
  Timing t;
  try {
    t = time_kernel(o, s, [&](int) {
      if (exec != nullptr) cu_check(g.Launch(exec, s), "cuGraphLaunch");
      else
        for (int i = 0; i < reps; ++i) fn(i);
    });
  } catch (...) {
    if (exec) g.ExecDestroy(exec);
    if (graph) g.Destroy(graph);
    throw;
  }
  if (exec) g.ExecDestroy(exec);
  if (graph) g.Destroy(graph);
  for (double* v : {&t.median_us, &t.p10_us, &t.p90_us, &t.min_us, &t.max_us}) *v /= reps;
  return t;
}

// ---- L2 --------------------------------------------------------------------------

Rotation rotation_for(size_t set_bytes, int max_sets) {
  const size_t l2 = device().l2_bytes ? device().l2_bytes : (size_t(64) << 20);
  Rotation r;
  const size_t want = 3 * l2;
  set_bytes = std::max<size_t>(set_bytes, 1);
  const size_t sets = (want + set_bytes - 1) / set_bytes;
  r.sets = int(std::clamp<size_t>(sets, 1, size_t(std::max(max_sets, 1))));
  r.flush = size_t(r.sets) * set_bytes < want;
  return r;
}

void flush_l2(CUstream stream) {
  static Buffer* buf = [] {
    const size_t l2 = device().l2_bytes ? device().l2_bytes : (size_t(64) << 20);
    auto* b = new Buffer(2 * l2);  // lives for the process
    b->fill_random(0xf1u);
    return b;
  }();
  static Buffer* out = new Buffer(16);
  uint64_t src = buf->ptr(), n16 = buf->bytes() / 16, o = out->ptr();
  void* args[] = {&src, &n16, &o};
  launch(helper("read16"), unsigned(std::max(device().sm_count, 1) * 8), args, stream);
}

// ---- ceilings ----------------------------------------------------------------------

const Ceilings& ceilings(const Options& o) {
  static Ceilings c = [&] {
    Ceilings r;
    Options ro = o;
    ro.min_runs = 10;
    ro.min_ms = 50;
    ro.warmup = 2;
    CUstream s = device().stream;
    std::string sizes;
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
      const double kernel_gbps = 2.0 * bytes / (tc.median_us * 1e3);
      const double memcpy_gbps = 2.0 * bytes / (tm.median_us * 1e3);
      const double copy_gbps = std::max(kernel_gbps, memcpy_gbps);
      const double read_gbps = double(bytes) / (tr.median_us * 1e3);
      std::printf("ceiling  %5zu MiB  copy %7.1f GB/s (kernel %.1f, memcpy %.1f)  read %7.1f GB/s\n", mib, copy_gbps,
                  kernel_gbps, memcpy_gbps, read_gbps);
      sizes += fmt::format("{}{{\"mib\":{},\"copy_kernel_gbps\":{:.1f},\"copy_memcpy_gbps\":{:.1f},\"read_gbps\":{:.1f}}}",
                           sizes.empty() ? "" : ",", mib, kernel_gbps, memcpy_gbps, read_gbps);
      r.copy_gbps = std::max(r.copy_gbps, copy_gbps);
      r.read_gbps = std::max(r.read_gbps, read_gbps);
    }
    std::printf("ceilings: copy %.1f GB/s (read+write), read %.1f GB/s (best of 256 MiB..2 GiB); L2 %.1f MiB\n",
                r.copy_gbps, r.read_gbps, device().l2_bytes / 1048576.0);
    r.json = fmt::format(
        "{{\"copy_gbps\":{:.1f},\"read_gbps\":{:.1f},"
        "\"copy\":\"device-to-device copy, bytes read + written per second, best of a copy kernel and "
        "cuMemcpyDtoDAsync over 256 MiB..2 GiB\","
        "\"read\":\"streaming read (an XOR reduction), bytes read per second, best over 256 MiB..2 GiB\","
        "\"cublas\":\"cublasGemmEx f16/bf16 on the same M, N, K (per record: cublas_us)\","
        "\"l2_bytes\":{},\"sizes\":[{}]}}",
        r.copy_gbps, r.read_gbps, device().l2_bytes, sizes);
    return r;
  }();
  return c;
}

// ---- cuBLAS --------------------------------------------------------------------------

namespace {

// The few cuBLAS types and values used (cublas_api.h, library_types.h); not
// included, so the bench builds without the cuBLAS headers.
using cublas_handle = void*;
constexpr int kCublasOpN = 0, kCublasOpT = 1;
constexpr int kCudaR16F = 2, kCudaR16BF = 14;
constexpr int kCublasCompute32F = 68;
constexpr int kCublasGemmDefault = -1;

struct CublasApi {
  CublasInfo info;
  cublas_handle handle = nullptr;
  int (*Create)(cublas_handle*) = nullptr;
  int (*Destroy)(cublas_handle) = nullptr;
  int (*SetStream)(cublas_handle, CUstream) = nullptr;
  int (*SetWorkspace)(cublas_handle, void*, size_t) = nullptr;
  int (*GetVersion)(cublas_handle, int*) = nullptr;
  int (*GemmEx)(cublas_handle, int, int, int, int, int, const void*, const void*, int, int, const void*, int, int,
                const void*, void*, int, int, int, int) = nullptr;
  Buffer* workspace = nullptr;
};

CublasApi& cublas_api() {
  static CublasApi c = [] {
    CublasApi a;
    std::vector<std::string> names;
    if (const char* e = std::getenv("LOWBIT_CUBLAS"); e != nullptr && *e) names.push_back(e);
    // The CUDA toolkit's, else the pip wheels' (PyTorch's environment).
    for (const char* n : {"libcublas.so.13", "libcublas.so.12", "/usr/local/cuda/lib64/libcublas.so.13",
                          "/usr/local/cuda/lib64/libcublas.so.12",
                          "/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cu13/lib/libcublas.so.13",
                          "/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cublas/lib/libcublas.so.13",
                          "/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cublas/lib/libcublas.so.12"})
      names.push_back(n);
    void* h = nullptr;
    for (const std::string& n : names)
      if ((h = dlopen(n.c_str(), RTLD_NOW | RTLD_LOCAL)) != nullptr) {
        a.info.library = n;
        break;
      }
    if (h == nullptr) {
      a.info.problem = "libcublas.so.13 / .12 not found (set LOWBIT_CUBLAS to its path)";
      return a;
    }
    Dl_info dli{};
    if (void* sym = dlsym(h, "cublasCreate_v2"); sym != nullptr && dladdr(sym, &dli) && dli.dli_fname)
      a.info.library = dli.dli_fname;
    a.Create = reinterpret_cast<decltype(a.Create)>(dlsym(h, "cublasCreate_v2"));
    a.Destroy = reinterpret_cast<decltype(a.Destroy)>(dlsym(h, "cublasDestroy_v2"));
    a.SetStream = reinterpret_cast<decltype(a.SetStream)>(dlsym(h, "cublasSetStream_v2"));
    a.SetWorkspace = reinterpret_cast<decltype(a.SetWorkspace)>(dlsym(h, "cublasSetWorkspace_v2"));
    a.GetVersion = reinterpret_cast<decltype(a.GetVersion)>(dlsym(h, "cublasGetVersion_v2"));
    a.GemmEx = reinterpret_cast<decltype(a.GemmEx)>(dlsym(h, "cublasGemmEx"));
    if (!a.Create || !a.Destroy || !a.SetStream || !a.GemmEx) {
      a.info.problem = "a cuBLAS entry point is missing in " + a.info.library;
      return a;
    }
    if (int st = a.Create(&a.handle); st != 0) {
      a.info.problem = fmt::format("cublasCreate_v2 failed: status {}", st);
      return a;
    }
    a.SetStream(a.handle, device().stream);
    if (a.SetWorkspace) {  // an explicit workspace keeps graph capture free of allocations
      a.workspace = new Buffer(size_t(32) << 20);
      a.SetWorkspace(a.handle, reinterpret_cast<void*>(a.workspace->ptr()), a.workspace->bytes());
    }
    if (a.GetVersion) a.GetVersion(a.handle, &a.info.version);
    a.info.available = true;
    return a;
  }();
  return c;
}

}  // namespace

const CublasInfo& cublas_info() { return cublas_api().info; }

// Both weight layouts are timed and the faster kept (the baseline is the best
// cuBLAS does): "nn" (W row-major [K, N]) and "tn" (W row-major [N, K], the
// nn.Linear layout, transposed in the call).
Timing cublas_gemm_timing(const Options& o, int64_t m, int64_t n, int64_t k, lowbit_dtype dtype, std::string* layout) {
  CublasApi& c = cublas_api();
  if (!c.info.available) return {};
  const int dt = dtype == LOWBIT_DTYPE_BF16 ? kCudaR16BF : kCudaR16F;
  const size_t w_bytes = size_t(k) * size_t(n) * 2;
  const size_t set_bytes = w_bytes + size_t(m) * size_t(k) * 2;
  const Rotation rot = rotation_for(set_bytes, 16);
  std::vector<Buffer> ws, xs;
  for (int i = 0; i < rot.sets; ++i) {
    ws.emplace_back(w_bytes);
    ws.back().fill_random_floats(dtype, -1.0f, 1.0f, 7 + i);
    xs.emplace_back(size_t(m) * size_t(k) * 2);
    xs.back().fill_random_floats(dtype, -1.0f, 1.0f, 3 + i);
  }
  Buffer y(size_t(m) * size_t(n) * 2);
  const float alpha = 1.0f, beta = 0.0f;
  // A rough lower bound of one GEMM's time (H100-class figures): graphs of
  // many launches only where launches are short enough for gaps to matter.
  const double estimate_us = std::max(2.0 * m * n * k / 700e6, double(set_bytes) / 3.5e6);
  Timing best;
  for (int op : {kCublasOpN, kCublasOpT}) {
    // Column-major: Y^T [N, M] = op(W) [N, K] * X^T [K, M].
    auto run = [&](int i) {
      const int j = i % rot.sets;
      const int st = c.GemmEx(c.handle, op, kCublasOpN, int(n), int(m), int(k), &alpha,
                              reinterpret_cast<const void*>(ws[j].ptr()), dt, op == kCublasOpN ? int(n) : int(k),
                              reinterpret_cast<const void*>(xs[j].ptr()), dt, int(k), &beta,
                              reinterpret_cast<void*>(y.ptr()), dt, int(n), kCublasCompute32F, kCublasGemmDefault);
      if (st != 0) throw Error(LOWBIT_INTERNAL, fmt::format("cublasGemmEx failed: status {}", st));
    };
    Timing t = rot.flush || estimate_us > 200 ? time_kernel(o, device().stream, run, rot.flush)
                                               : time_kernel_graph(o, device().stream, std::max(rot.sets, 20), run);
    if (best.runs == 0 || t.median_us < best.median_us) {
      best = t;
      if (layout != nullptr) *layout = op == kCublasOpN ? "nn" : "tn";
    }
  }
  return best;
}

double cublas_gemm_us(const Options& o, int64_t m, int64_t n, int64_t k, lowbit_dtype dtype) {
  return cublas_gemm_timing(o, m, n, k, dtype).median_us;
}

// ---- records ------------------------------------------------------------------------

namespace {

double gbps_of(const Record& r) { return r.t.median_us > 0 ? r.bytes / (r.t.median_us * 1e3) : 0.0; }
double tflops_of(const Record& r) { return r.t.median_us > 0 && r.flops > 0 ? r.flops / (r.t.median_us * 1e6) : 0.0; }
double fraction_of(const Record& r) {
  if (r.ceiling_name == "cublas") return r.cublas_us > 0 && r.t.median_us > 0 ? r.cublas_us / r.t.median_us : 0.0;
  return r.ceiling_gbps > 0 ? gbps_of(r) / r.ceiling_gbps : 0.0;
}
std::string shape_text(const Record& r) {
  if (r.k > 0) return fmt::format("{}x{}x{}", r.m, r.n, r.k);
  if (r.m > 0 || r.n > 0) return fmt::format("{}x{}", r.m, r.n);
  return "-";
}

}  // namespace

void emit(const Record& r) {
  if (r.unit == "us_host" || r.ceiling_name == "none") {
    std::printf("%-10s %-44s %12.1f us (min %.1f, p10 %.1f, p90 %.1f, %d runs)  %s\n", r.suite.c_str(), r.op.c_str(),
                r.t.median_us, r.t.min_us, r.t.p10_us, r.t.p90_us, r.t.runs, r.config.c_str());
  } else {
    const double gbps = gbps_of(r);
    std::string cublas = r.cublas_us > 0 ? fmt::format("{:6.2f}x", r.cublas_us / r.t.median_us) : std::string("     -");
    std::printf("%-10s %-22s %-6s %-5s g%-4lld M%-5lld N%-6lld K%-6lld %9.2f us  %7.1f GB/s  %5.1f%% %-6s  %s  %s\n",
                r.suite.c_str(), r.op.c_str(), r.format.c_str(), r.dtype.c_str(), (long long)r.group, (long long)r.m,
                (long long)r.n, (long long)r.k, r.t.median_us, gbps, 100 * fraction_of(r), r.ceiling_name.c_str(),
                cublas.c_str(), r.config.c_str());
  }
  std::fflush(stdout);
  records().push_back(r);
}

size_t record_count() { return records().size(); }

void print_table(const std::string& suite) {
  std::vector<const Record*> rs;
  for (const Record& r : records())
    if (r.suite == suite) rs.push_back(&r);
  if (rs.empty()) {
    std::printf("\n[%s: no records]\n", suite.c_str());
    return;
  }
  std::printf("\n== %s: %zu points ==\n", suite.c_str(), rs.size());
  bool host = true;
  for (const Record* r : rs) host = host && (r->unit == "us_host" || r->ceiling_name == "none");
  if (host) {
    std::printf("%-52s %12s %12s %12s %12s %6s\n", "what", "median us", "min us", "p10 us", "p90 us", "runs");
    for (const Record* r : rs)
      std::printf("%-52s %12.1f %12.1f %12.1f %12.1f %6d\n", r->op.c_str(), r->t.median_us, r->t.min_us, r->t.p10_us,
                  r->t.p90_us, r->t.runs);
  } else {
    std::printf("%-24s %-7s %-5s %5s %-17s %10s %17s %8s %7s %16s %8s\n", "op", "format", "dtype", "group", "MxNxK",
                "median us", "p10..p90 us", "GB/s", "TFLOP/s", "of ceiling", "vs cuBLAS");
    for (const Record* r : rs) {
      const std::string cub = r->cublas_us > 0 ? fmt::format("{:.2f}x", r->cublas_us / r->t.median_us) : "-";
      const std::string frac = r->ceiling_name == "none"
                                   ? std::string("-")
                                   : fmt::format("{:5.1f}% {}", 100 * fraction_of(*r), r->ceiling_name);
      std::printf("%-24s %-7s %-5s %5lld %-17s %10.2f %8.2f..%-8.2f %8.1f %7.2f %16s %8s\n", r->op.c_str(),
                  r->format.c_str(), r->dtype.c_str(), (long long)r->group, shape_text(*r).c_str(), r->t.median_us,
                  r->t.p10_us, r->t.p90_us, gbps_of(*r), tflops_of(*r), frac.c_str(), cub.c_str());
    }
  }
  std::fflush(stdout);
}

std::string records_json() {
  std::string out = "[";
  for (size_t i = 0; i < records().size(); ++i) {
    const Record& r = records()[i];
    JsonObject o;
    o.add("suite", r.suite).add("op", r.op).add("format", r.format).add("dtype", r.dtype).add("group", r.group)
        .add("m", r.m).add("n", r.n).add("k", r.k).add("config", r.config).add("unit", r.unit)
        .add("median_us", finite_or_zero(r.t.median_us)).add("p10_us", finite_or_zero(r.t.p10_us))
        .add("p90_us", finite_or_zero(r.t.p90_us)).add("min_us", finite_or_zero(r.t.min_us))
        .add("max_us", finite_or_zero(r.t.max_us)).add("runs", int64_t(r.t.runs)).add("bytes", r.bytes)
        .add("gbps", finite_or_zero(gbps_of(r))).add("flops", r.flops).add("tflops", finite_or_zero(tflops_of(r)))
        .add("ceiling", r.ceiling_name).add("ceiling_gbps", r.ceiling_gbps)
        .add("fraction_of_ceiling", finite_or_zero(fraction_of(r)));
    if (r.cublas_us > 0 && r.t.median_us > 0)
      o.add("cublas_us", r.cublas_us).add("speedup_vs_cublas", finite_or_zero(r.cublas_us / r.t.median_us));
    else
      o.raw("cublas_us", "null").raw("speedup_vs_cublas", "null");
    std::string s = o.str();
    if (!r.extra_json.empty()) s = s.substr(0, s.size() - 1) + "," + r.extra_json + "}";
    out += (i ? ",\n" : "\n") + s;
  }
  return out + "\n]";
}

// ---- environment ------------------------------------------------------------------------

namespace {

// NVML, dlopen'ed (no nvidia-smi): driver version string and clocks as read.
struct Nvml {
  bool ok = false;
  void* dev = nullptr;
  int (*GetClockInfo)(void*, int, unsigned*) = nullptr;
  int (*GetMaxClockInfo)(void*, int, unsigned*) = nullptr;
  int (*GetApplicationsClock)(void*, int, unsigned*) = nullptr;
  int (*GetPowerLimit)(void*, unsigned*) = nullptr;
  int (*GetTemperature)(void*, int, unsigned*) = nullptr;
  std::string driver_version;
};

Nvml& nvml() {
  static Nvml n = [] {
    Nvml a;
    void* h = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) return a;
    auto init = reinterpret_cast<int (*)()>(dlsym(h, "nvmlInit_v2"));
    auto by_pci = reinterpret_cast<int (*)(const char*, void**)>(dlsym(h, "nvmlDeviceGetHandleByPciBusId_v2"));
    auto drv = reinterpret_cast<int (*)(char*, unsigned)>(dlsym(h, "nvmlSystemGetDriverVersion"));
    a.GetClockInfo = reinterpret_cast<decltype(a.GetClockInfo)>(dlsym(h, "nvmlDeviceGetClockInfo"));
    a.GetMaxClockInfo = reinterpret_cast<decltype(a.GetMaxClockInfo)>(dlsym(h, "nvmlDeviceGetMaxClockInfo"));
    a.GetApplicationsClock =
        reinterpret_cast<decltype(a.GetApplicationsClock)>(dlsym(h, "nvmlDeviceGetApplicationsClock"));
    a.GetPowerLimit = reinterpret_cast<decltype(a.GetPowerLimit)>(dlsym(h, "nvmlDeviceGetPowerManagementLimit"));
    a.GetTemperature = reinterpret_cast<decltype(a.GetTemperature)>(dlsym(h, "nvmlDeviceGetTemperature"));
    if (!init || !by_pci || init() != 0) return a;
    int domain = 0, bus = 0, dev = 0;
    driver().DeviceGetAttribute(&domain, CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID, device().device);
    driver().DeviceGetAttribute(&bus, CU_DEVICE_ATTRIBUTE_PCI_BUS_ID, device().device);
    driver().DeviceGetAttribute(&dev, CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID, device().device);
    const std::string pci = fmt::format("{:08x}:{:02x}:{:02x}.0", domain, bus, dev);
    if (by_pci(pci.c_str(), &a.dev) != 0) return a;
    char v[96] = {};
    if (drv && drv(v, sizeof(v)) == 0) a.driver_version = v;
    a.ok = a.GetClockInfo != nullptr;
    return a;
  }();
  return n;
}

std::string clocks_now_json() {
  Nvml& n = nvml();
  if (!n.ok) return "null";
  JsonObject o;
  unsigned v = 0;
  constexpr int kGraphics = 0, kSm = 1, kMem = 2;
  if (n.GetClockInfo(n.dev, kSm, &v) == 0) o.add("sm_mhz", int64_t(v));
  if (n.GetClockInfo(n.dev, kMem, &v) == 0) o.add("mem_mhz", int64_t(v));
  if (n.GetClockInfo(n.dev, kGraphics, &v) == 0) o.add("graphics_mhz", int64_t(v));
  if (n.GetMaxClockInfo && n.GetMaxClockInfo(n.dev, kSm, &v) == 0) o.add("max_sm_mhz", int64_t(v));
  if (n.GetMaxClockInfo && n.GetMaxClockInfo(n.dev, kMem, &v) == 0) o.add("max_mem_mhz", int64_t(v));
  if (n.GetApplicationsClock && n.GetApplicationsClock(n.dev, kSm, &v) == 0) o.add("applications_sm_mhz", int64_t(v));
  if (n.GetApplicationsClock && n.GetApplicationsClock(n.dev, kMem, &v) == 0) o.add("applications_mem_mhz", int64_t(v));
  if (n.GetPowerLimit && n.GetPowerLimit(n.dev, &v) == 0) o.add("power_limit_w", int64_t(v / 1000));
  if (n.GetTemperature && n.GetTemperature(n.dev, 0, &v) == 0) o.add("temperature_c", int64_t(v));
  return o.str();
}

std::string& start_clocks() {
  static std::string s = clocks_now_json();
  return s;
}

std::string& start_date() {
  static std::string s = [] {
    char buf[64] = {};
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return std::string(buf);
  }();
  return s;
}

}  // namespace

// Called by bench_main when the device is set up: the date and the clocks
// before any work.
void note_start() {
  start_date();
  start_clocks();
}

std::string environment_json() {
  const DriverApi& api = driver();
  const CUdevice d = device().device;
  auto attr = [&](CUdevice_attribute a) {
    int v = 0;
    api.DeviceGetAttribute(&v, a, d);
    return int64_t(v);
  };
  size_t total = 0;
  api.DeviceTotalMem(&total, d);
  const NvrtcApi& rtc = nvrtc();
  const CublasInfo& cb = cublas_info();
  JsonObject o;
  o.add("gpu", device().name)
      .add("compute_capability", fmt::format("{}.{}", attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
                                             attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)))
      .add("sm_count", int64_t(device().sm_count))
      .add("memory_bytes", uint64_t(total))
      .add("l2_bytes", uint64_t(device().l2_bytes))
      .add("memory_bus_bits", attr(CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH))
      .add("driver_cuda_version", int64_t(api.version))
      .add("driver", nvml().driver_version.empty() ? fmt::format("CUDA {}.{}", api.version / 1000, (api.version % 1000) / 10)
                                                   : nvml().driver_version)
      .add("nvrtc_version", int64_t(rtc.version))
      .add("max_sm_clock_khz", attr(CU_DEVICE_ATTRIBUTE_CLOCK_RATE))
      .add("max_mem_clock_khz", attr(CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE))
      .raw("clocks_at_start", start_clocks())
      .raw("clocks_at_end", clocks_now_json())
      .add("clocks_note", "as found: the bench neither locks nor changes clocks")
      .add("cublas", cb.available ? fmt::format("{} (version {})", cb.library, cb.version) : "unavailable: " + cb.problem)
      .add("lowbit", lowbit_version_string())
      .add("date", start_date());
  return o.str();
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
