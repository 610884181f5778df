// Write-heavy traffic: can the bulk copy engine (cp.async.bulk) or deeper ILP beat plain st.global?
#include <cstdio>
#include <cstdint>
#include <cuda_runtime.h>
#include <vector>
#include <algorithm>

__device__ __forceinline__ uint4 xform(uint32_t v) { return make_uint4(v & 0x0f0f0f0f, v >> 4, v ^ 0x0f0f0f0f, v >> 12); }
__device__ __forceinline__ uint4 xform(uint2 v) { return make_uint4(v.x & 0xff00ff, v.x >> 8, v.y & 0xff00ff, v.y >> 8); }
__device__ __forceinline__ uint4 xform(uint4 v) { return v; }

template <typename In>
__global__ void plain(const In* __restrict__ x, uint4* __restrict__ y, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) y[i] = xform(x[i]);
}
__device__ __forceinline__ void st_cs(uint4* p, uint4 v) { asm volatile("st.global.cs.v4.u32 [%0], {%1,%2,%3,%4};" :: "l"(p), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w) : "memory"); }
__device__ __forceinline__ void st_na(uint4* p, uint4 v) { asm volatile("st.global.L1::no_allocate.v4.u32 [%0], {%1,%2,%3,%4};" :: "l"(p), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w) : "memory"); }
// U independent units per thread per step; store kind 0 plain, 1 .cs, 2 L1::no_allocate
template <typename In, int U, int SK>
__global__ void unrolled(const In* __restrict__ x, uint4* __restrict__ y, size_t n) {
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += stride * U) {
    In v[U];
#pragma unroll
    for (int u = 0; u < U; ++u) if (i + u * stride < n) v[u] = x[i + u * stride];
#pragma unroll
    for (int u = 0; u < U; ++u) if (i + u * stride < n) {
      if (SK == 0) y[i + u * stride] = xform(v[u]);
      else if (SK == 1) st_cs(y + i + u * stride, xform(v[u]));
      else st_na(y + i + u * stride, xform(v[u]));
    }
  }
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) { return uint32_t(__cvta_generic_to_shared(p)); }
__device__ __forceinline__ void mbar_init(uint64_t* b, int n) { asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" :: "r"(smem_addr(b)), "r"(n)); }
__device__ __forceinline__ void mbar_expect(uint64_t* b, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" :: "r"(smem_addr(b)), "r"(bytes) : "memory"); }
__device__ __forceinline__ void mbar_wait(uint64_t* b, uint32_t phase) {
  asm volatile("{\n .reg .pred p;\n W: mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n @!p bra W;\n}" :: "r"(smem_addr(b)), "r"(phase) : "memory"); }
__device__ __forceinline__ void bulk_load(void* dst, const void* src, uint32_t bytes, uint64_t* b) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
               :: "r"(smem_addr(dst)), "l"(src), "r"(bytes), "r"(smem_addr(b)) : "memory"); }
__device__ __forceinline__ void bulk_store(void* dst, const void* src, uint32_t bytes) {
  asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;" :: "l"(dst), "r"(smem_addr(src)), "r"(bytes) : "memory");
  asm volatile("cp.async.bulk.commit_group;" ::: "memory"); }
template <int N> __device__ __forceinline__ void bulk_wait_read() { asm volatile("cp.async.bulk.wait_group.read %0;" :: "n"(N) : "memory"); }
__device__ __forceinline__ void bulk_wait_all() { asm volatile("cp.async.bulk.wait_group 0;" ::: "memory"); }
__device__ __forceinline__ void fence_async() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }

// Tiles of 256 threads x U units: input by bulk copy (LD=1) or registers (LD=0), output by bulk store (ST=1) or st.global (ST=0).
template <typename In, int U, int S, int LD, int ST>
__global__ void __launch_bounds__(256) bulk(const In* __restrict__ x, uint4* __restrict__ y, size_t ntiles) {
  constexpr int kUnits = 256 * U;
  constexpr uint32_t kIn = kUnits * sizeof(In), kOut = kUnits * 16;
  extern __shared__ __align__(128) uint8_t sm[];
  In* in_s = reinterpret_cast<In*>(sm);                       // S x kIn
  uint4* out_s = reinterpret_cast<uint4*>(sm + S * kIn);     // 2 x kOut
  uint64_t* bar = reinterpret_cast<uint64_t*>(sm + S * kIn + 2 * kOut);
  const int tid = threadIdx.x;
  if (LD && tid == 0) { for (int s = 0; s < S; ++s) mbar_init(bar + s, 1); asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory"); }
  __syncthreads();
  const size_t t0 = blockIdx.x, ts = gridDim.x;
  if (LD && tid == 0)
    for (int s = 0; s < S; ++s) { size_t t = t0 + s * ts; if (t < ntiles) { mbar_expect(bar + s, kIn); bulk_load(in_s + s * kUnits, x + t * kUnits, kIn, bar + s); } }
  int i = 0;
  for (size_t t = t0; t < ntiles; t += ts, ++i) {
    const int s = i % S, ob = i & 1;
    In v[U];
    if (LD) { mbar_wait(bar + s, (i / S) & 1);
#pragma unroll
      for (int u = 0; u < U; ++u) v[u] = in_s[s * kUnits + u * 256 + tid];
    } else {
#pragma unroll
      for (int u = 0; u < U; ++u) v[u] = x[t * kUnits + u * 256 + tid];
    }
    if (ST) {
      if (tid == 0) bulk_wait_read<1>();
      __syncthreads();
#pragma unroll
      for (int u = 0; u < U; ++u) out_s[ob * kUnits + u * 256 + tid] = xform(v[u]);
      fence_async();
      __syncthreads();
      if (tid == 0) bulk_store(y + t * kUnits, out_s + ob * kUnits, kOut);
    } else {
#pragma unroll
      for (int u = 0; u < U; ++u) y[t * kUnits + u * 256 + tid] = xform(v[u]);
      if (LD) __syncthreads();
    }
    if (LD && tid == 0) { size_t tn = t + S * ts; if (tn < ntiles) { mbar_expect(bar + s, kIn); bulk_load(in_s + s * kUnits, x + tn * kUnits, kIn, bar + s); } }
  }
  if (ST && tid == 0) bulk_wait_all();
}

int main() {
  int sms; cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  const size_t ybytes = size_t(1) << 30;
  void *a, *b; cudaMalloc(&a, ybytes); cudaMalloc(&b, ybytes);
  cudaMemset(a, 1, ybytes); cudaMemset(b, 2, ybytes);
  cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
  auto timeit = [&](const char* name, double bytes, auto fn) {
    fn(); cudaError_t err = cudaDeviceSynchronize();
    if (err != cudaSuccess) { printf("%-48s ERROR %s\n", name, cudaGetErrorString(err)); exit(1); }
    std::vector<float> ts;
    for (int r = 0; r < 20; ++r) { cudaEventRecord(e0); fn(); cudaEventRecord(e1); cudaEventSynchronize(e1); float ms; cudaEventElapsedTime(&ms, e0, e1); ts.push_back(ms); }
    std::sort(ts.begin(), ts.end());
    printf("%-48s %8.1f GB/s (median %.3f ms)\n", name, bytes / (ts[ts.size()/2] * 1e-3) / 1e9, ts[ts.size()/2]);
  };
  const size_t n16 = ybytes / 16;  // output units of 16 B
  timeit("memcpy DtoD 512MiB (r+w)", double(ybytes), [&] { cudaMemcpyAsync(b, a, ybytes / 2, cudaMemcpyDeviceToDevice); });
  // correctness of the bulk path: widen4 bulk vs plain
  char name[96];
  auto family = [&](const char* tag, auto in_tag, double rw) {
    using In = decltype(in_tag);
    const size_t n = std::is_same<In, uint4>::value ? n16 / 2 : n16;  // copy: 512 MiB out
    const double bytes = double(n) * (16 + sizeof(In));
    for (int bpsm : {4, 8}) { snprintf(name, 96, "%s plain bpsm%d", tag, bpsm);
      timeit(name, bytes, [&] { plain<In><<<sms * bpsm, 256>>>((const In*)a, (uint4*)b, n); }); }
    for (int bpsm : {4, 8}) {
      snprintf(name, 96, "%s unroll4 st bpsm%d", tag, bpsm); timeit(name, bytes, [&] { unrolled<In, 4, 0><<<sms * bpsm, 256>>>((const In*)a, (uint4*)b, n); });
      snprintf(name, 96, "%s unroll4 st.cs bpsm%d", tag, bpsm); timeit(name, bytes, [&] { unrolled<In, 4, 1><<<sms * bpsm, 256>>>((const In*)a, (uint4*)b, n); });
      snprintf(name, 96, "%s unroll4 st.na bpsm%d", tag, bpsm); timeit(name, bytes, [&] { unrolled<In, 4, 2><<<sms * bpsm, 256>>>((const In*)a, (uint4*)b, n); });
    }
    auto runb = [&](auto kern, int U, int S, const char* what) {
      const size_t units = 256 * U; const size_t ntiles = n / units;
      const int smem = S * units * sizeof(In) + 2 * units * 16 + 64;
      cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
      for (int bpsm : {1, 2, 4}) {
        if (smem * bpsm > 220 * 1024) continue;
        snprintf(name, 96, "%s %s U%d S%d bpsm%d", tag, what, U, S, bpsm);
        timeit(name, double(ntiles * units) * (16 + sizeof(In)), [&] { kern<<<sms * bpsm, 256, smem>>>((const In*)a, (uint4*)b, ntiles); });
      }
    };
    runb(bulk<In, 4, 4, 1, 1>, 4, 4, "bulk ld+st");
    runb(bulk<In, 8, 3, 1, 1>, 8, 3, "bulk ld+st");
    runb(bulk<In, 4, 4, 0, 1>, 4, 4, "reg ld, bulk st");
    runb(bulk<In, 8, 1, 0, 1>, 8, 1, "reg ld, bulk st");
    runb(bulk<In, 4, 4, 1, 0>, 4, 4, "bulk ld, reg st");
  };
  // check: bulk widen4 output == plain output on a slice
  {
    const size_t n = 256 * 4 * 1000;
    plain<uint32_t><<<sms * 4, 256>>>((const uint32_t*)a, (uint4*)b, n);
    std::vector<uint4> r1(n), r2(n);
    cudaMemcpy(r1.data(), b, n * 16, cudaMemcpyDeviceToHost);
    cudaMemset(b, 0, n * 16);
    auto k = bulk<uint32_t, 4, 4, 1, 1>; const int smem = 4 * 4096 + 2 * 16384 + 64;
    cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    k<<<sms, 256, smem>>>((const uint32_t*)a, (uint4*)b, 1000);
    cudaMemcpy(r2.data(), b, n * 16, cudaMemcpyDeviceToHost);
    printf("bulk check: %s\n", memcmp(r1.data(), r2.data(), n * 16) == 0 ? "same bytes" : "DIFFERENT");
  }
  family("widen4 r4/w16", uint32_t{}, 1.25);
  family("widen2 r8/w16", uint2{}, 1.5);
  family("copy r16/w16", uint4{}, 2.0);
  return 0;
}
