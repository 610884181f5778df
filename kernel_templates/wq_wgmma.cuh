// wq_wgmma.cuh - weight-only quantized matmul, prefill path on Hopper
// (sm_90a): the same problem as wq_gemm.cuh with the warpgroup MMA.
//
//   Y[m, n] = sum_k X[m, k] * w[k, n]  (+ bias[n]),   w = round_AT((q - z) * s)
//
// "Swap AB" as in the other paths: the dequantized weights are the A operand
// of wgmma.m64nBMk16, taken from registers (each of a warpgroup's 4 warps
// holds one 16-row n-tile, the m16n8k16 A fragment layout), and X^T is the B
// operand, read by the tensor cores from shared memory (K-major, 128-byte
// swizzle: row r's 16-byte piece c sits at piece c ^ (r % 8), rows 1024 bytes
// per 8). One A fragment (4 registers, ~15 instructions to make) feeds a
// 64 x BM x 16 product, so dequantization is a few percent of the tensor
// time even at BM = 128.
//
// Standard k order. wgmma reads B in k order, so the A fragments must be in
// k order too (the decode kernel instead permutes X to the native layout's
// order). In k-step S of a 64-wide chunk, lane (r, t) needs k = 16 S + 2 t,
// + 1 (a0, a1) and 16 S + 8 + 2 t, + 1 (a2, a3): those sit in the native
// vector of lane (r, S), words t / 2 and 2 + t / 2 (4-bit; the pair at nibble
// offset 2 (t % 2), moved down by a shift), or word t of vectors h = 0 and 1
// (8-bit). The lanes read those words straight from the shared copy of the
// chunk, where lane L's vector is stored at slot L ^ ((L >> 3) & 3) so that
// the 8 vectors a k-step reads lie in 8 different bank groups.
//
// Pipeline: a kStages ring of cp.async stages (X tile first, 1024-aligned,
// then weights, scales, zeros) with kStages - 2 chunks of lookahead; per chunk
// each warp dequantizes its 4 k-steps into one of two register buffers, then
// the warpgroup issues 4 wgmma and waits for the previous chunk's (wait_group
// 1), so dequantization overlaps the tensor cores. Epilogue as wq_gemm.cuh
// (padded shared tile, 16-byte rows; f32 partials with split-K).
#pragma once

#include "wq_gemm.cuh"

namespace lowbit {
namespace wq {

LOWBIT_DEVICE void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
LOWBIT_DEVICE void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int kN>
LOWBIT_DEVICE void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(kN) : "memory");
}

// Shared-memory matrix descriptor: K-major, 128-byte swizzle, 8-row groups
// 1024 bytes apart (stride byte offset), start address in 16-byte units.
LOWBIT_DEVICE uint64_t smem_desc_sw128(uint32_t address) {
  uint64_t d = uint64_t((address & 0x3ffffu) >> 4);
  d |= uint64_t(1024 >> 4) << 32;  // stride byte offset
  d |= uint64_t(1) << 62;          // 128-byte swizzle
  return d;
}

// d[BM / 2] += A (registers) x B (descriptor); scale_d = 0 overwrites d.
template <typename AT, int kBM>
LOWBIT_DEVICE void wgmma(float (&d)[kBM / 2], const uint32_t (&a)[4], uint64_t desc, int scale_d) {
  if constexpr (kBM == 128 && !IsBf16<AT>::value) {
    asm volatile(
        "{ .reg .pred p; setp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
        "{%64, %65, %66, %67}, %68, p, 1, 1, 0; }"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(scale_d));
  } else if constexpr (kBM == 128) {
    asm volatile(
        "{ .reg .pred p; setp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
        "{%64, %65, %66, %67}, %68, p, 1, 1, 0; }"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(scale_d));
  } else if constexpr (!IsBf16<AT>::value) {
    asm volatile(
        "{ .reg .pred p; setp.ne.b32 p, %133, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, "
        "{%128, %129, %130, %131}, %132, p, 1, 1, 0; }"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(scale_d));
  } else {
    asm volatile(
        "{ .reg .pred p; setp.ne.b32 p, %133, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, "
        "{%128, %129, %130, %131}, %132, p, 1, 1, 0; }"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(scale_d));
  }
}

template <typename Cfg>
struct Wgmma {
  static constexpr int kBits = Cfg::kBits;
  static constexpr int kG = Cfg::kGroup;
  static constexpr bool kSym = Cfg::kSym;
  static constexpr int kWG = Cfg::kWarpgroups;  // 64 rows of N each
  static constexpr int kBM = Cfg::kTileM;       // rows of X: the wgmma N (128 or 256)
  static constexpr int kStages = Cfg::kStages;
  static constexpr int kThreads = Cfg::kThreads;
  static_assert(kThreads == 128 * kWG, "threads = 128 x warpgroups");
  static_assert(kBM == 128 || kBM == 256, "BM is 128 or 256");
  static_assert(kStages >= 3, "the ring needs 3 stages or more");
  static constexpr int kNT = 4 * kWG;
  static constexpr int kBN = 16 * kNT;
  static constexpr int kH = kBits / 4;
  static constexpr int kGPC = kG == 32 ? 2 : 1;
  static constexpr uint32_t kSymZero = kBits == 4 ? 8u : 128u;
  static constexpr int kZeroBytes = kBits / 4;
  static constexpr int kXBytes = kBM * 128;
  static constexpr int kWBytes = kNT * kH * 512;
  static constexpr int kSBytes = kGPC * kNT * 32;
  static constexpr int kZBytes = kSym ? 0 : ((kGPC * kNT * 8 * kZeroBytes + 15) / 16) * 16;
  static constexpr int kWOff = kXBytes, kSOff = kWOff + kWBytes, kZOff = kSOff + kSBytes;
  static constexpr int kStageBytes = ((kZOff + kZBytes + 1023) / 1024) * 1024;
  static constexpr int kYRow = kBN * 2 + 16;
  static constexpr int kYBytes = kBM * kYRow;
  // + 1024: the kernel aligns the ring to 1024 bytes itself.
  static constexpr int kSmemBytes = (kStages * kStageBytes > kYBytes ? kStages * kStageBytes : kYBytes) + 1024;
};

// Slot of lane L's vector in the shared copy of a chunk (see above).
LOWBIT_DEVICE uint32_t vec_slot(uint32_t lane) { return lane ^ ((lane >> 3) & 3u); }


// One tile segment (see wq_gemm.cuh's for_each_segment); `smem` 1024-aligned.
template <typename Cfg>
LOWBIT_DEVICE void wgmma_segment(const WqMatmulParams& p, uint8_t* smem, int64_t mb, int64_t nb, int64_t chunk_begin,
                                 int64_t chunk_end, const TileEnd& end) {
  using G = Wgmma<Cfg>;
  using AT = typename Cfg::AT;
  using ST = typename Cfg::ST;
  constexpr int kNT = G::kNT, kBM = G::kBM, kH = G::kH, kBits = G::kBits;
  constexpr int kStages = G::kStages, kThreads = G::kThreads;
  constexpr int kAcc = kBM / 2;
  const uint32_t sbase = smem_u32(smem);

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int r = lane >> 2, t = lane & 3;

  const int64_t m0 = mb * kBM, nt0 = nb * kNT;
  const int chunks = int(chunk_end - chunk_begin);
  if constexpr (Cfg::kStreamK) __syncthreads();  // the previous segment's epilogue is done with shared memory

  // Loads of one stage, with every per-thread address computed once here:
  // the ring is refilled every chunk, so its issue cost is on the critical
  // path of the warps that also feed the tensor cores.
  // X: thread tid copies piece (tid % 8) of rows tid / 8 + j kThreads / 8.
  constexpr int kXPer = kBM * 8 / kThreads;  // pieces a thread copies per stage
  constexpr int kRowStep = kThreads / 8;     // a multiple of 8: the swizzle is the same for every j
  const int x_row0 = tid >> 3, x_piece = tid & 7;
  const int64_t rows_left = p.m - m0;
  const uint64_t x_src0 = p.x + (uint64_t(m0 + x_row0) * uint64_t(p.x_stride) + uint64_t(8 * x_piece)) * 2u;
  const uint64_t x_src_step = uint64_t(kRowStep) * uint64_t(p.x_stride) * 2u;
  const uint32_t x_dst0 = uint32_t(x_row0) * 128u + uint32_t(x_piece ^ (x_row0 & 7)) * 16u;
  // Weights: kNT x kH x 32 pieces; thread tid copies pieces tid + j kThreads.
  constexpr int kWPieces = kNT * kH * 32;
  constexpr int kWPer = (kWPieces + kThreads - 1) / kThreads;
  const uint64_t wcol = uint64_t(p.k_steps) * (kH * 512);
  uint64_t w_src0[kWPer];
  uint32_t w_dst[kWPer];
  bool w_ok[kWPer];
#pragma unroll
  for (int j = 0; j < kWPer; ++j) {
    const int i = tid + j * kThreads;
    const int jt = i / (kH * 32), rest = i % (kH * 32), h = rest >> 5, l = rest & 31;
    w_ok[j] = i < kWPieces && nt0 + jt < p.n_tiles;
    w_src0[j] = p.w + (w_ok[j] ? uint64_t(nt0 + jt) * wcol + uint64_t(rest) * 16u : 0);
    w_dst[j] = G::kWOff + uint32_t(jt * kH + h) * 512u + vec_slot(uint32_t(l)) * 16u;
  }
  // Scales and zeros: thread tid < kGPC kNT 2 copies one 16-byte half.
  const int sq = tid / (kNT * 2), sj = (tid / 2) % kNT, shalf = tid & 1;
  const bool s_thread = tid < G::kGPC * kNT * 2 && nt0 + sj < p.n_tiles;
  const uint64_t s_col = (uint64_t(nt0 + sj)) * 32u + uint64_t(shalf) * 16u;
  const uint64_t z_col = uint64_t(nt0 + sj) * (8u * G::kZeroBytes);
  auto load_stage = [&](int slot, int64_t c) {
    const uint32_t st = sbase + uint32_t(slot) * G::kStageBytes;
    const int64_t k0 = c * 64;
    const bool k_ok = k0 + 8 * x_piece < p.k;
#pragma unroll
    for (int j = 0; j < kXPer; ++j) {
      const bool ok = k_ok && x_row0 + j * kRowStep < rows_left;
      cp_async16(st + x_dst0 + uint32_t(j * kRowStep) * 128u, ok ? x_src0 + uint64_t(j) * x_src_step + uint64_t(k0) * 2u : p.x, ok);
    }
#pragma unroll
    for (int j = 0; j < kWPer; ++j)
      if (tid + j * kThreads < kWPieces)
        cp_async16(st + w_dst[j], w_ok[j] ? w_src0[j] + uint64_t(c) * (kH * 512) : p.w, w_ok[j]);
    if (tid < G::kGPC * kNT * 2)
      cp_async_scales<G::kG, G::kSym, G::kZeroBytes>(
          p, st + G::kSOff + uint32_t(sq * kNT + sj) * 32u + uint32_t(shalf) * 16u,
          st + G::kZOff + uint32_t(sq * kNT + sj) * (8u * G::kZeroBytes), chunk_group<G::kG>(c, sq), s_thread, s_col,
          z_col, shalf == 0);
  };

  float acc[kAcc];
#pragma unroll
  for (int i = 0; i < kAcc; ++i) acc[i] = 0.f;

  // This warp's n-tile within the CTA, and its reads inside a stage.
  const int ntl = warp;  // warpgroup g covers n-tiles 4g .. 4g + 3: warp index = n-tile
  const uint32_t w_tile = G::kWOff + uint32_t(ntl * kH) * 512u;
  const uint32_t s_row = G::kSOff + uint32_t(ntl) * 32u + uint32_t(r) * 4u;
  const uint32_t z_row = G::kZOff + uint32_t(ntl) * (8u * G::kZeroBytes) + uint32_t(r) * G::kZeroBytes;
  const uint32_t shift = 8u * uint32_t(t & 1);

  // Dequantizes the 4 k-steps of the chunk in `st` into a[4][4].
  auto dequant_chunk = [&](uint32_t st, uint32_t (&a)[4][4]) {
#pragma unroll
    for (int q = 0; q < G::kGPC; ++q) {
      const uint32_t sv = lds4(st + s_row + uint32_t(q * kNT) * 32u);
      uint32_t s_lo, s_hi;
      if constexpr (IsBf16<AT>::value == IsBf16<ST>::value) {
        s_lo = prmt(sv, sv, 0x1010u);
        s_hi = prmt(sv, sv, 0x3232u);
      } else {
        s_lo = (sv & 0xffffu) * 0x10001u;
        s_hi = (sv >> 16) * 0x10001u;
      }
      uint32_t z0 = G::kSymZero, z1 = G::kSymZero;
      if constexpr (!G::kSym) {
        if constexpr (kBits == 4) {
          const uint32_t zz = lds1(st + z_row + uint32_t(q * kNT) * 8u);
          z0 = zz & 15u;
          z1 = zz >> 4;
        } else {
          const uint32_t zz = lds2(st + z_row + uint32_t(q * kNT) * 16u);
          z0 = zz & 255u;
          z1 = zz >> 8;
        }
      }
      // k-steps of this group: all 4, or 2 per group when G = 32.
#pragma unroll
      for (int s2 = 0; s2 < 4 / G::kGPC; ++s2) {
        const int S = q * (4 / G::kGPC) + s2;
        const uint32_t vec = st + w_tile + vec_slot(uint32_t(4 * r + S)) * 16u;
        if constexpr (kBits == 4) {
          const Zc4 c0 = zero_consts4<AT>(z0), c1 = zero_consts4<AT>(z1);
          const uint32_t wa = lds4(vec + uint32_t(t >> 1) * 4u) >> shift;
          const uint32_t wb = lds4(vec + uint32_t(2 + (t >> 1)) * 4u) >> shift;
          const uint32_t wa8 = wa >> 8, wb8 = wb >> 8;
          a[S][0] = scale_pair<AT, ST>(deq4s<AT, 0>(wa, wa8, c0), s_lo);
          a[S][1] = scale_pair<AT, ST>(deq4s<AT, 1>(wa, wa8, c1), s_hi);
          a[S][2] = scale_pair<AT, ST>(deq4s<AT, 0>(wb, wb8, c0), s_lo);
          a[S][3] = scale_pair<AT, ST>(deq4s<AT, 1>(wb, wb8, c1), s_hi);
        } else {
          const uint32_t e0 = zero_const8<AT>(z0), e1 = zero_const8<AT>(z1);
          const uint32_t wa = lds4(vec + uint32_t(t) * 4u);
          const uint32_t wb = lds4(vec + 512u + uint32_t(t) * 4u);
          a[S][0] = scale_pair<AT, ST>(deq8<AT, 0>(wa, e0), s_lo);
          a[S][1] = scale_pair<AT, ST>(deq8<AT, 1>(wa, e1), s_hi);
          a[S][2] = scale_pair<AT, ST>(deq8<AT, 0>(wb, e0), s_lo);
          a[S][3] = scale_pair<AT, ST>(deq8<AT, 1>(wb, e1), s_hi);
        }
      }
    }
  };

  constexpr int kAhead = kStages - 2;  // chunks in flight beyond the one computed
#pragma unroll
  for (int s = 0; s < kAhead; ++s) {
    if (s < chunks) load_stage(s, chunk_begin + s);
    cp_async_commit();
  }
  uint32_t afrag[2][4][4];
  int slot = 0, load_slot = kAhead;
  // Two chunks per iteration so that the register buffer index is a constant.
  auto step = [&](int c, uint32_t (&a)[4][4]) {
    cp_async_wait<kAhead - 1>();
    // The tensor cores read shared memory through the async proxy: order this
    // thread's cp.async writes before them.
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    __syncthreads();  // stage c is visible; every warpgroup is done with chunk c - 2's stage
    if (c + kAhead < chunks) load_stage(load_slot, chunk_begin + c + kAhead);
    cp_async_commit();
    load_slot = load_slot + 1 == kStages ? 0 : load_slot + 1;
    const uint32_t st = sbase + uint32_t(slot) * G::kStageBytes;
    slot = slot + 1 == kStages ? 0 : slot + 1;
    dequant_chunk(st, a);
    wgmma_fence();
#pragma unroll
    for (int S = 0; S < 4; ++S) wgmma<AT, kBM>(acc, a[S], smem_desc_sw128(st + uint32_t(S) * 32u), 1);
    wgmma_commit();
    wgmma_wait<1>();  // chunk c - 1 is done: its registers and stage are free
  };
  int c = 0;
  for (; c + 1 < chunks; c += 2) {
    step(c, afrag[0]);
    step(c + 1, afrag[1]);
  }
  if (c < chunks) step(c, afrag[0]);
  wgmma_wait<0>();
  cp_async_wait<0>();

  // ---- Epilogue: acc[4 j + e] is Y[m = 8 j + 2 t + (e & 1)][n = 16 warp + r + 8 (e >> 1)] ----
  const int64_t n_cta = nt0 * 16;
  const int nl0 = warp * 16 + r;
  if (Cfg::kStreamK && end.kind == TileEnd::kPublish) {
    streamk_publish<kAcc, kThreads>(p, acc, end.slot);
    return;
  }
  if (end.kind == TileEnd::kCluster) {
    __syncthreads();  // both warpgroups are done with the stages: the f32 tile reuses them
    float* f = reinterpret_cast<float*>(smem);
    constexpr int kRow = ClusterTile<G::kBN>::kRowFloats;
#pragma unroll
    for (int j = 0; j < kBM / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) f[(8 * j + 2 * t + (e & 1)) * kRow + nl0 + (e >= 2 ? 8 : 0)] = acc[4 * j + e];
    cluster_reduce_store<AT, kBM, G::kBN, kThreads>(p, smem, m0, n_cta);
    return;
  }
  if (end.kind == TileEnd::kSplitPartial) {
    float* part = mut_ptr<float>(p.partial) + end.slot * p.m_plan * p.n;
#pragma unroll
    for (int j = 0; j < kBM / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t n = n_cta + nl0 + (e >= 2 ? 8 : 0), m = m0 + 8 * j + 2 * t + (e & 1);
        if (n < p.n && m < p.m) part[m * p.n + n] = acc[4 * j + e];
      }
    return;
  }
  if constexpr (Cfg::kStreamK) streamk_absorb<kAcc, kThreads>(p, acc, end.absorb_first, end.absorb_end);
  __syncthreads();
  float b0 = 0.f, b1 = 0.f;
  if (p.bias != 0) {
    const int64_t n = n_cta + nl0;
    if (n < p.n) b0 = to_f32(ptr<AT>(p.bias)[n]);
    if (n + 8 < p.n) b1 = to_f32(ptr<AT>(p.bias)[n + 8]);
  }
#pragma unroll
  for (int j = 0; j < kBM / 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int nl = nl0 + (e >= 2 ? 8 : 0), ml = 8 * j + 2 * t + (e & 1);
      mut_ptr<AT>(uint64_t(smem) + uint64_t(ml) * G::kYRow)[nl] = from_f32<AT>(acc[4 * j + e] + (e >= 2 ? b1 : b0));
    }
  __syncthreads();
  store_y_tile<AT, kBM, G::kBN, G::kYRow, kThreads>(p, smem, m0, n_cta);
}

}  // namespace wq

template <typename Cfg>
LOWBIT_DEVICE void wq_wgmma_kernel(const WqMatmulParams& p) {
  using G = wq::Wgmma<Cfg>;
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  const uint32_t raw = smem_u32(smem_raw);
  uint8_t* const smem = smem_raw + (((raw + 1023u) & ~1023u) - raw);
  wq::for_each_segment<Cfg::kGroupM, G::kBM, G::kNT, Cfg::kStreamK>(
      p, [&](int64_t mb, int64_t nb, int64_t chunk_begin, int64_t chunk_end, const wq::TileEnd& end) {
        wq::wgmma_segment<Cfg>(p, smem, mb, nb, chunk_begin, chunk_end, end);
      });
}

}  // namespace lowbit
