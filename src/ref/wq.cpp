#include "ref/wq.hpp"

#include <cstring>

#include "common/error.hpp"
#include "ref/float16.hpp"

// The layout header is shared with the kernels (plain C++ with fixed-width
// integer types).
#include <cstdint>
#include "wq_layout.h"

namespace lowbit::ref {

namespace {

// AWQ_ORDER (AutoAWQ's packer): nibble p of a word holds column kAwqOrder[p].
constexpr int kAwqOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};

int awq_nibble_of_column(int c) {
  for (int p = 0; p < 8; ++p)
    if (kAwqOrder[p] == c) return p;
  return 0;
}

double scale_value(const void* scale, lowbit_dtype t, int64_t i) {
  const uint16_t h = static_cast<const uint16_t*>(scale)[i];
  return t == LOWBIT_DTYPE_BF16 ? bf16_to_f32(h) : f16_to_f32(h);
}

uint32_t u32(const void* p, int64_t i) { return static_cast<const uint32_t*>(p)[i]; }

// Stored q of (k, n) for the source formats, as an unsigned 0..2^bits-1 (PLAIN
// symmetric: the signed value, returned as int through `signed_q`).
int32_t source_q(const lowbit_wq_matmul_desc& d, const void* w, int64_t k, int64_t n) {
  const int bits = d.weight_bits;
  const uint32_t mask = (1u << bits) - 1u;
  switch (d.format) {
    case LOWBIT_WQ_FORMAT_AWQ: {
      const uint32_t word = u32(w, k * (d.n / 8) + n / 8);
      return int32_t((word >> (4 * awq_nibble_of_column(int(n % 8)))) & 15u);
    }
    case LOWBIT_WQ_FORMAT_GPTQ:
    case LOWBIT_WQ_FORMAT_GPTQ_V1: {
      const int per = 32 / bits;
      const uint32_t word = u32(w, (k / per) * d.n + n);
      return int32_t((word >> (bits * (k % per))) & mask);
    }
    case LOWBIT_WQ_FORMAT_PLAIN: {
      const uint8_t* b = static_cast<const uint8_t*>(w);
      uint32_t q;
      if (bits == 4) {
        const uint8_t byte = b[n * (d.k / 2) + k / 2];
        q = (k % 2 == 0) ? (byte & 15u) : (byte >> 4);
      } else {
        q = b[n * d.k + k];
      }
      if (d.symmetric) {  // two's complement
        const int32_t half = 1 << (bits - 1);
        return int32_t(q) >= half ? int32_t(q) - (1 << bits) : int32_t(q);
      }
      return int32_t(q);
    }
    default: fail(LOWBIT_INTERNAL, "wq reference: not a source format {}", d.format);
  }
}

// Zero point of (g, n) for an asymmetric source format.
int32_t source_zero(const lowbit_wq_matmul_desc& d, const void* zero, int64_t g, int64_t n) {
  const int bits = d.weight_bits;
  const uint32_t mask = (1u << bits) - 1u;
  switch (d.format) {
    case LOWBIT_WQ_FORMAT_AWQ: {
      const uint32_t word = u32(zero, g * (d.n / 8) + n / 8);
      return int32_t((word >> (4 * awq_nibble_of_column(int(n % 8)))) & 15u);
    }
    case LOWBIT_WQ_FORMAT_GPTQ:
    case LOWBIT_WQ_FORMAT_GPTQ_V1: {
      const int per = 32 / bits;
      const uint32_t word = u32(zero, g * (d.n / per) + n / per);
      uint32_t z = (word >> (bits * (n % per))) & mask;
      if (d.format == LOWBIT_WQ_FORMAT_GPTQ_V1) z = (z + 1u) & mask;  // v1 stores z - 1
      return int32_t(z);
    }
    case LOWBIT_WQ_FORMAT_PLAIN: return static_cast<const int32_t*>(zero)[n * wq_groups(d) + g];
    default: fail(LOWBIT_INTERNAL, "wq reference: not a source format {}", d.format);
  }
}

double source_scale(const lowbit_wq_matmul_desc& d, const void* scale, int64_t g, int64_t n) {
  if (d.format == LOWBIT_WQ_FORMAT_PLAIN) return scale_value(scale, d.scale_dtype, n * wq_groups(d) + g);
  return scale_value(scale, d.scale_dtype, g * d.n + n);
}

int64_t group_of(const lowbit_wq_matmul_desc& d, const int32_t* g_idx, int64_t k) {
  if (d.group_size < 0) return 0;
  if (d.act_order) {
    const int64_t g = g_idx[k];
    if (g < 0 || g >= wq_groups(d))
      fail(LOWBIT_INVALID_PROBLEM, "g_idx[{}] = {} is outside [0, {})", k, g, wq_groups(d));
    return g;
  }
  return k / d.group_size;
}

// The stable sort of the rows by group; every group must have group_size rows.
std::vector<int32_t> act_order_perm(const lowbit_wq_matmul_desc& d, const int32_t* g_idx) {
  const int64_t ng = wq_groups(d);
  std::vector<int64_t> count(size_t(ng), 0);
  for (int64_t k = 0; k < d.k; ++k) ++count[size_t(group_of(d, g_idx, k))];
  for (int64_t g = 0; g < ng; ++g)
    if (count[size_t(g)] != d.group_size)
      fail(LOWBIT_INVALID_PROBLEM,
           "g_idx gives group {} {} rows; repacking needs exactly group_size = {} rows per group (as GPTQ act-order "
           "produces)",
           g, count[size_t(g)], d.group_size);
  std::vector<int32_t> perm(size_t(d.k));
  std::vector<int64_t> next(size_t(ng), 0);
  for (int64_t k = 0; k < d.k; ++k) {
    const int64_t g = g_idx[k];
    perm[size_t(g * d.group_size + next[size_t(g)]++)] = int32_t(k);
  }
  return perm;
}

const void* find(const lowbit_arg* args, size_t count, lowbit_arg_role role, const char* what, bool required) {
  for (size_t i = 0; i < count; ++i)
    if (args[i].role == role && args[i].ptr != 0) return reinterpret_cast<const void*>(args[i].ptr);
  if (required) fail(LOWBIT_INVALID_ARGUMENT, "reference: missing argument {}", what);
  return nullptr;
}

double load_act(const void* base, lowbit_dtype t, int64_t i) {
  const uint16_t h = static_cast<const uint16_t*>(base)[i];
  return t == LOWBIT_DTYPE_BF16 ? bf16_to_f32(h) : f16_to_f32(h);
}

void store_act(void* base, lowbit_dtype t, int64_t i, double v) {
  const float f = float(v);
  static_cast<uint16_t*>(base)[i] = t == LOWBIT_DTYPE_BF16 ? f32_to_bf16(f) : f32_to_f16(f);
}

}  // namespace

int64_t wq_groups(const lowbit_wq_matmul_desc& d) { return d.group_size > 0 ? d.k / d.group_size : 1; }

std::vector<double> wq_dequantize(const lowbit_wq_matmul_desc& d, const void* w, const void* scale, const void* zero,
                                  const int32_t* g_idx) {
  std::vector<double> out(size_t(d.k * d.n));
  const int32_t sym_zero = d.format == LOWBIT_WQ_FORMAT_PLAIN ? 0 : 1 << (d.weight_bits - 1);
  for (int64_t k = 0; k < d.k; ++k) {
    const int64_t g = group_of(d, g_idx, k);
    for (int64_t n = 0; n < d.n; ++n) {
      const int32_t q = source_q(d, w, k, n);
      const int32_t z = d.symmetric ? sym_zero : source_zero(d, zero, g, n);
      out[size_t(k * d.n + n)] = double(q - z) * source_scale(d, scale, g, n);
    }
  }
  return out;
}

std::vector<uint8_t> wq_repack(const lowbit_wq_matmul_desc& d, const void* w, const void* scale, const void* zero,
                               const int32_t* g_idx) {
  const bool act = d.act_order != 0;
  const WqNativeLayout l =
      wq_native_layout(d.n, d.k, d.weight_bits, d.group_size, d.symmetric != 0, act, 2);
  std::vector<uint8_t> out(size_t(l.total_bytes), 0);
  std::vector<int32_t> perm;
  if (act) perm = act_order_perm(d, g_idx);
  const int bits = d.weight_bits;
  const int32_t sym_offset = 1 << (bits - 1);
  // Native q (unsigned) of native row i, column n; 0 in the padding.
  auto q_at = [&](int64_t i, int64_t n) -> uint32_t {
    if (i >= d.k || n >= d.n) return 0;
    const int64_t k = act ? perm[size_t(i)] : i;
    int32_t q = source_q(d, w, k, n);
    if (d.format == LOWBIT_WQ_FORMAT_PLAIN && d.symmetric) q += sym_offset;  // signed -> unsigned, z = 2^(bits-1)
    return uint32_t(q);
  };
  // 1. weights
  for (int64_t nt = 0; nt < l.nt; ++nt)
    for (int64_t kc = 0; kc < l.kc; ++kc)
      for (int lane = 0; lane < 32; ++lane) {
        const int r = lane / 4, t = lane % 4;
        const int64_t n0 = 16 * nt + r;
        if (bits == 4) {
          const int64_t v = (nt * l.kc + kc) * 32 + lane;
          for (int j = 0; j < 4; ++j) {
            const int64_t k = 64 * kc + 16 * t + 4 * j;
            // nibble p: (k,n0) (k,n0+8) (k+2,n0) (k+2,n0+8) (k+1,n0) (k+1,n0+8) (k+3,n0) (k+3,n0+8)
            const uint32_t nib[8] = {q_at(k, n0),     q_at(k, n0 + 8),     q_at(k + 2, n0), q_at(k + 2, n0 + 8),
                                     q_at(k + 1, n0), q_at(k + 1, n0 + 8), q_at(k + 3, n0), q_at(k + 3, n0 + 8)};
            uint32_t word = 0;
            for (int p = 0; p < 8; ++p) word |= (nib[p] & 15u) << (4 * p);
            std::memcpy(&out[size_t(v * 16 + 4 * j)], &word, 4);
          }
        } else {
          for (int h = 0; h < 2; ++h) {
            const int64_t v = ((nt * l.kc + kc) * 2 + h) * 32 + lane;
            for (int jp = 0; jp < 2; ++jp) {
              const int64_t k = 64 * kc + 16 * t + 8 * h + 4 * jp;
              const uint8_t bytes[8] = {uint8_t(q_at(k, n0)),         uint8_t(q_at(k + 1, n0)),
                                        uint8_t(q_at(k, n0 + 8)),     uint8_t(q_at(k + 1, n0 + 8)),
                                        uint8_t(q_at(k + 2, n0)),     uint8_t(q_at(k + 3, n0)),
                                        uint8_t(q_at(k + 2, n0 + 8)), uint8_t(q_at(k + 3, n0 + 8))};
              std::memcpy(&out[size_t(v * 16 + 8 * jp)], bytes, 8);
            }
          }
        }
      }
  // 2. scales (bit copies), 3. zeros, 4. permutation
  const int64_t ng = l.ngroups;
  for (int64_t g = 0; g < ng; ++g)
    for (int64_t nt = 0; nt < l.nt; ++nt)
      for (int r = 0; r < 8; ++r)
        for (int e = 0; e < 2; ++e) {
          const int64_t n = 16 * nt + r + 8 * e;
          uint16_t bits16 = 0;
          if (n < d.n) {
            const int64_t src = d.format == LOWBIT_WQ_FORMAT_PLAIN ? n * ng + g : g * d.n + n;
            bits16 = static_cast<const uint16_t*>(scale)[src];
          }
          std::memcpy(&out[size_t(l.scale_offset + (((g * l.nt + nt) * 8 + r) * 2 + e) * 2)], &bits16, 2);
        }
  if (!d.symmetric) {
    const uint32_t mask = (1u << bits) - 1u;
    for (int64_t g = 0; g < ng; ++g)
      for (int64_t nt = 0; nt < l.nt; ++nt)
        for (int r = 0; r < 8; ++r) {
          const int64_t n0 = 16 * nt + r;
          const uint32_t z0 = n0 < d.n ? uint32_t(source_zero(d, zero, g, n0)) & mask : 0;
          const uint32_t z1 = n0 + 8 < d.n ? uint32_t(source_zero(d, zero, g, n0 + 8)) & mask : 0;
          const int64_t e = (g * l.nt + nt) * 8 + r;
          if (bits == 4) {
            out[size_t(l.zero_offset + e)] = uint8_t(z0 | z1 << 4);
          } else {
            const uint16_t v = uint16_t(z0 | z1 << 8);
            std::memcpy(&out[size_t(l.zero_offset + 2 * e)], &v, 2);
          }
        }
  }
  if (act) std::memcpy(&out[size_t(l.perm_offset)], perm.data(), perm.size() * 4);
  return out;
}

std::vector<double> wq_dequantize_native(const lowbit_wq_matmul_desc& d, const uint8_t* native,
                                         std::vector<int32_t>* perm) {
  const bool act = d.act_order != 0;
  const WqNativeLayout l =
      wq_native_layout(d.n, d.k, d.weight_bits, d.group_size, d.symmetric != 0, act, 2);
  const int bits = d.weight_bits;
  std::vector<double> out(size_t(d.k * d.n));
  for (int64_t i = 0; i < d.k; ++i) {
    // Where native row i's values live: chunk, lane quad t, word j, offset dk.
    const int64_t kc = i / 64, t = (i % 64) / 16, within = i % 16;
    const int64_t g = d.group_size > 0 ? i / d.group_size : 0;
    for (int64_t n = 0; n < d.n; ++n) {
      const int64_t nt = n / 16, r = n % 8, upper = (n % 16) / 8;
      const int64_t lane = 4 * r + t;
      uint32_t q;
      if (bits == 4) {
        const int64_t j = within / 4, dk = within % 4;
        const int64_t v = (nt * l.kc + kc) * 32 + lane;
        uint32_t word;
        std::memcpy(&word, native + v * 16 + 4 * j, 4);
        // nibble p = (dk & 1) * 4 + (dk >> 1) * 2 + upper
        const int p = int((dk & 1) * 4 + (dk >> 1) * 2 + upper);
        q = (word >> (4 * p)) & 15u;
      } else {
        const int64_t h = within / 8, jp = (within % 8) / 4, dk = within % 4;
        const int64_t v = ((nt * l.kc + kc) * 2 + h) * 32 + lane;
        // bytes of word 2jp: (k,n0) (k+1,n0) (k,n0+8) (k+1,n0+8); word 2jp+1: k+2, k+3
        const int64_t byte = 8 * jp + 4 * (dk >> 1) + 2 * upper + (dk & 1);
        q = native[v * 16 + byte];
      }
      uint16_t sbits;
      std::memcpy(&sbits, native + l.scale_offset + (((g * l.nt + nt) * 8 + r) * 2 + upper) * 2, 2);
      const double s = d.scale_dtype == LOWBIT_DTYPE_BF16 ? bf16_to_f32(sbits) : f16_to_f32(sbits);
      int32_t z;
      if (d.symmetric) {
        z = 1 << (bits - 1);
      } else if (bits == 4) {
        const uint8_t zz = native[l.zero_offset + (g * l.nt + nt) * 8 + r];
        z = upper ? zz >> 4 : zz & 15;
      } else {
        uint16_t zz;
        std::memcpy(&zz, native + l.zero_offset + ((g * l.nt + nt) * 8 + r) * 2, 2);
        z = upper ? zz >> 8 : zz & 255;
      }
      out[size_t(i * d.n + n)] = double(int32_t(q) - z) * s;
    }
  }
  if (perm != nullptr) {
    perm->resize(size_t(d.k));
    if (act) {
      std::memcpy(perm->data(), native + l.perm_offset, size_t(d.k) * 4);
    } else {
      for (int64_t i = 0; i < d.k; ++i) (*perm)[size_t(i)] = int32_t(i);
    }
  }
  return out;
}

bool wq_rounds_weights(const lowbit_wq_matmul_desc& d) { return d.op == LOWBIT_WQ_OP_MATMUL && d.m >= 9; }

void wq_reference(const lowbit_wq_matmul_desc& d, const lowbit_arg* args, size_t count) {
  if (d.op == LOWBIT_WQ_OP_REPACK) {
    const void* w = find(args, count, LOWBIT_ARG_W, "LOWBIT_ARG_W", true);
    const void* s = find(args, count, LOWBIT_ARG_W_SCALE, "LOWBIT_ARG_W_SCALE", true);
    const void* z = d.symmetric ? nullptr : find(args, count, LOWBIT_ARG_W_ZERO, "LOWBIT_ARG_W_ZERO", true);
    const auto* gi = static_cast<const int32_t*>(d.act_order ? find(args, count, LOWBIT_ARG_G_IDX, "LOWBIT_ARG_G_IDX", true)
                                                              : nullptr);
    void* out = const_cast<void*>(find(args, count, LOWBIT_ARG_W_NATIVE, "LOWBIT_ARG_W_NATIVE", true));
    const std::vector<uint8_t> native = wq_repack(d, w, s, z, gi);
    std::memcpy(out, native.data(), native.size());
    return;
  }
  // Matmul.
  int64_t rows = d.m;
  for (size_t i = 0; i < count; ++i)
    if (args[i].role == LOWBIT_ARG_ROWS && args[i].ptr != 0) rows = int64_t(args[i].ptr);
  if (rows < 1 || rows > d.m) fail(LOWBIT_INVALID_ARGUMENT, "LOWBIT_ARG_ROWS = {} is outside 1..{}", rows, d.m);
  const void* x = find(args, count, LOWBIT_ARG_X, "LOWBIT_ARG_X", true);
  void* y = const_cast<void*>(find(args, count, LOWBIT_ARG_Y, "LOWBIT_ARG_Y", true));
  const void* bias = d.has_bias ? find(args, count, LOWBIT_ARG_BIAS, "LOWBIT_ARG_BIAS", true) : nullptr;
  std::vector<double> w;
  std::vector<int32_t> perm;
  if (d.format == LOWBIT_WQ_FORMAT_NATIVE) {
    const auto* native = static_cast<const uint8_t*>(find(args, count, LOWBIT_ARG_W_NATIVE, "LOWBIT_ARG_W_NATIVE", true));
    w = wq_dequantize_native(d, native, &perm);
    for (int32_t& p : perm)
      if (p < 0 || p >= d.k) fail(LOWBIT_INVALID_PROBLEM, "the native buffer's permutation holds {} (K = {})", p, d.k);
  } else {
    const void* wq = find(args, count, LOWBIT_ARG_W, "LOWBIT_ARG_W", true);
    const void* s = find(args, count, LOWBIT_ARG_W_SCALE, "LOWBIT_ARG_W_SCALE", true);
    const void* z = d.symmetric ? nullptr : find(args, count, LOWBIT_ARG_W_ZERO, "LOWBIT_ARG_W_ZERO", true);
    const auto* gi = static_cast<const int32_t*>(d.act_order ? find(args, count, LOWBIT_ARG_G_IDX, "LOWBIT_ARG_G_IDX", true)
                                                              : nullptr);
    w = wq_dequantize(d, wq, s, z, gi);
    perm.resize(size_t(d.k));
    for (int64_t i = 0; i < d.k; ++i) perm[size_t(i)] = int32_t(i);
  }
  // The prefill path (m >= 9) rounds each weight to the activation type (the
  // product (q - z) * s is exact in f32, so this is one rounding).
  if (wq_rounds_weights(d))
    for (double& v : w) {
      const float f = float(v);
      v = d.act_dtype == LOWBIT_DTYPE_BF16 ? bf16_to_f32(f32_to_bf16(f)) : f16_to_f32(f32_to_f16(f));
    }
  const int64_t xs = d.x_row_stride != 0 ? d.x_row_stride : d.k;
  const int64_t ys = d.y_row_stride != 0 ? d.y_row_stride : d.n;
  std::vector<double> acc(size_t(d.n));
  std::vector<double> xrow(size_t(d.k));
  for (int64_t m = 0; m < rows; ++m) {
    for (int64_t i = 0; i < d.k; ++i) xrow[size_t(i)] = load_act(x, d.act_dtype, m * xs + perm[size_t(i)]);
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int64_t i = 0; i < d.k; ++i) {
      const double xv = xrow[size_t(i)];
      if (xv == 0.0) continue;
      const double* wr = &w[size_t(i * d.n)];
      for (int64_t n = 0; n < d.n; ++n) acc[size_t(n)] += xv * wr[n];
    }
    for (int64_t n = 0; n < d.n; ++n) {
      double v = acc[size_t(n)];
      if (bias != nullptr) v += load_act(bias, d.act_dtype, n);
      store_act(y, d.act_dtype, m * ys + n, v);
    }
  }
}

}  // namespace lowbit::ref
