// wq_layout.h - lowbit's native layout of quantized weights (family 2,
// LOWBIT_WQ_FORMAT_NATIVE). Included by the kernels (through NVRTC) and by the
// host (src/ops/wq.cpp, src/ref/wq.cpp), so the two can never disagree on
// where a byte lives.
//
// Why this layout. The decode kernel multiplies with tensor cores
// (mma.sync.m16n8k16, the weights as the 16 x 16 A operand, X^T as the
// 16 x 8 B operand: the M <= 8 rows of X fill the n = 8 side exactly). A
// thread's share of one A tile is 8 values: 2 rows of N (n0 and n0 + 8) times
// 4 values of K. The native layout stores each thread's shares of four
// consecutive k-tiles as one 16-byte vector, so:
//   - every load is 16 bytes wide and a warp's load is 512 contiguous bytes;
//   - the 8 nibbles of each 32-bit word sit where the LOP3 "magic number"
//     conversion wants them: (w & 0x000f000f) | 0x64006400 is two f16 values
//     1024 + q of the same row (the a0 register), (w & 0x00f000f0) | ... the
//     next register, and w >> 8 the other two, so a word becomes the four
//     A registers of one k-tile in ~9 integer and f16x2 instructions (bf16:
//     0x4300 magic, shifts by 0/4/8/12);
//   - each thread's 16 values of K are contiguous in X, so the B operand is
//     two 16-byte loads of X with no shuffling;
//   - each n-tile's K column is one contiguous stream (n-tile major), which
//     keeps DRAM pages open while a CTA sweeps K.
//
// Definitions. Np = round_up(N, 16), Kp = round_up(K, 64), NT = Np / 16 n-tiles,
// KC = Kp / 64 k-chunks, NG = K / group_size (1 for per-channel). Padding
// (n >= N or k >= K) holds q = 0, s = 0, z = 0. Sections start at multiples of
// 256 bytes:
//
// 1. Weights, 16-byte vectors, vector index
//        v = ((nt * KC + kc) * H + h) * 32 + lane        (H = 1 for 4-bit, 2 for 8-bit)
//    lane = 4 * r + t (r = 0..7, t = 0..3) covers rows n0 = 16 nt + r and n0 + 8
//    and the 16 values k0 = 64 kc + 16 t ... k0 + 15 (8-bit: h selects k0 + 8 h,
//    8 values each). Word j of the vector covers k = k0 + 4 j .. k + 3
//    (8-bit: words 2j' and 2j'+1 cover k = k0 + 8 h + 4 j').
//      4-bit, nibble p of word j (bits 4p):
//        p: 0        1          2          3            4          5            6          7
//           (k,n0)  (k,n0+8)  (k+2,n0)  (k+2,n0+8)  (k+1,n0)  (k+1,n0+8)  (k+3,n0)  (k+3,n0+8)
//      8-bit, bytes of word 2j' : (k,n0) (k+1,n0) (k,n0+8) (k+1,n0+8)
//                 of word 2j'+1: (k+2,n0) (k+3,n0) (k+2,n0+8) (k+3,n0+8)
//    q is unsigned (0..2^bits - 1); a symmetric source's signed q is stored
//    as q + 2^(bits-1) with z = 2^(bits-1).
// 2. Scales, scale_dtype elements, index ((g * NT + nt) * 8 + r) * 2 + e holds
//    s[g][16 nt + r + 8 e]: a thread's two rows are one 4-byte load.
// 3. Zeros (asymmetric only), z already decoded (GPTQ v1's +1 applied):
//    4-bit: bytes, index (g * NT + nt) * 8 + r = z[g][16nt+r] | z[g][16nt+r+8] << 4;
//    8-bit: uint16, same index, z[g][16nt+r] | z[g][16nt+r+8] << 8.
// 4. Permutation (act_order only): int32 [K]; native row i is the source's
//    input row perm[i] (rows sorted by g_idx, stable), so that native row i
//    belongs to group i / group_size. The matmul permutes X the same way.
#pragma once

namespace lowbit {

struct WqNativeLayout {
  int64_t np, kp, nt, kc, ngroups;
  int64_t weight_bytes;
  int64_t scale_offset, scale_bytes;
  int64_t zero_offset, zero_bytes;  // zero_bytes = 0 when symmetric
  int64_t perm_offset, perm_bytes;  // perm_bytes = 0 without act-order
  int64_t total_bytes;
};

inline int64_t wq_round_up(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

// group_size -1 means per-channel. scale_elem_bytes is 2 (f16 / bf16).
inline WqNativeLayout wq_native_layout(int64_t n, int64_t k, int bits, int64_t group_size, bool symmetric,
                                       bool act_order, int scale_elem_bytes) {
  WqNativeLayout l{};
  l.np = wq_round_up(n, 16);
  l.kp = wq_round_up(k, 64);
  l.nt = l.np / 16;
  l.kc = l.kp / 64;
  l.ngroups = group_size > 0 ? k / group_size : 1;
  l.weight_bytes = l.np * l.kp * bits / 8;
  l.scale_offset = wq_round_up(l.weight_bytes, 256);
  l.scale_bytes = l.ngroups * l.np * scale_elem_bytes;
  l.zero_offset = wq_round_up(l.scale_offset + l.scale_bytes, 256);
  l.zero_bytes = symmetric ? 0 : l.ngroups * l.np / 2 * (bits / 4);
  l.perm_offset = wq_round_up(l.zero_offset + l.zero_bytes, 256);
  l.perm_bytes = act_order ? k * 4 : 0;
  l.total_bytes = wq_round_up(l.perm_offset + l.perm_bytes, 256);
  return l;
}

}  // namespace lowbit
