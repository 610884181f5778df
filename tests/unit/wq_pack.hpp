// Test helpers of the weight-only matmul family: random logical weights
// (q, z, s, g_idx) and their packing into each checkpoint format, written
// from the format definitions in lowbit.h (AutoAWQ's packer order, GPTQ's
// along-K packing and v1 zero convention, lowbit's PLAIN), independently of
// src/ref/wq.cpp. Shared by tests/unit/test_wq.cpp and tests/gpu/test_wq_gpu.cpp.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "lowbit/lowbit.h"
#include "ref/float16.hpp"

namespace lowbit::test::wq {

// The logical content of a quantized weight.
struct Logical {
  int64_t n = 0, k = 0, ng = 1, group = 128;
  int bits = 4;
  bool symmetric = false;
  std::vector<int32_t> q;      // [k][n] unsigned 0..2^bits-1 (symmetric: q - 2^(bits-1) is the signed value)
  std::vector<int32_t> z;      // [ng][n]
  std::vector<uint16_t> s;     // [ng][n] scale bits
  std::vector<int32_t> g_idx;  // [k] group of each row
};

// Random q, z in range, scales in [lo, hi) rounded to the scale type, and
// g_idx = k / G or (act_order) a random permutation giving every group G rows.
inline Logical random_logical(const lowbit_wq_matmul_desc& d, std::mt19937_64& rng, bool act_order, double lo = 0.002,
                              double hi = 0.02) {
  Logical l;
  l.n = d.n;
  l.k = d.k;
  l.bits = d.weight_bits;
  l.symmetric = d.symmetric != 0;
  l.group = d.group_size > 0 ? d.group_size : d.k;
  l.ng = d.group_size > 0 ? d.k / d.group_size : 1;
  const int qmax = (1 << d.weight_bits) - 1;
  std::uniform_int_distribution<int> qd(0, qmax);
  std::uniform_real_distribution<double> sd(lo, hi);
  l.q.resize(size_t(l.k * l.n));
  for (auto& v : l.q) v = qd(rng);
  l.z.resize(size_t(l.ng * l.n));
  for (auto& v : l.z) v = l.symmetric ? (1 << (d.weight_bits - 1)) : qd(rng);
  l.s.resize(size_t(l.ng * l.n));
  for (auto& v : l.s) {
    const float f = float(sd(rng));
    v = d.scale_dtype == LOWBIT_DTYPE_BF16 ? ref::f32_to_bf16(f) : ref::f32_to_f16(f);
  }
  l.g_idx.resize(size_t(l.k));
  if (act_order) {
    std::vector<int32_t> perm(size_t(l.k));
    for (int64_t i = 0; i < l.k; ++i) perm[size_t(i)] = int32_t(i);
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int64_t i = 0; i < l.k; ++i) l.g_idx[size_t(perm[size_t(i)])] = int32_t(i / l.group);
  } else {
    for (int64_t i = 0; i < l.k; ++i) l.g_idx[size_t(i)] = int32_t(i / l.group);
  }
  return l;
}

inline double scale_of(const Logical& l, lowbit_dtype st, int64_t g, int64_t n) {
  const uint16_t b = l.s[size_t(g * l.n + n)];
  return st == LOWBIT_DTYPE_BF16 ? ref::bf16_to_f32(b) : ref::f16_to_f32(b);
}

// w[k][n] = (q - z) * s from the logical content (the oracle of the oracle).
inline std::vector<double> logical_weights(const Logical& l, lowbit_dtype st) {
  std::vector<double> w(size_t(l.k * l.n));
  for (int64_t k = 0; k < l.k; ++k) {
    const int64_t g = l.g_idx[size_t(k)];
    for (int64_t n = 0; n < l.n; ++n)
      w[size_t(k * l.n + n)] = double(l.q[size_t(k * l.n + n)] - l.z[size_t(g * l.n + n)]) * scale_of(l, st, g, n);
  }
  return w;
}

// A packed checkpoint: W, W_SCALE, W_ZERO, G_IDX as bytes.
struct Packed {
  std::vector<uint8_t> w, scale, zero, g_idx;
};

template <typename T>
inline std::vector<uint8_t> as_bytes(const std::vector<T>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(T));
  if (!b.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// AutoAWQ GEMM: nibble p of word (k, j) holds column 8j + AWQ_ORDER[p].
inline Packed pack_awq(const Logical& l) {
  static const int kOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};
  Packed p;
  std::vector<uint32_t> qw(size_t(l.k * l.n / 8), 0), qz(size_t(l.ng * l.n / 8), 0);
  for (int64_t k = 0; k < l.k; ++k)
    for (int64_t j = 0; j < l.n / 8; ++j)
      for (int pos = 0; pos < 8; ++pos)
        qw[size_t(k * (l.n / 8) + j)] |= uint32_t(l.q[size_t(k * l.n + 8 * j + kOrder[pos])]) << (4 * pos);
  for (int64_t g = 0; g < l.ng; ++g)
    for (int64_t j = 0; j < l.n / 8; ++j)
      for (int pos = 0; pos < 8; ++pos)
        qz[size_t(g * (l.n / 8) + j)] |= uint32_t(l.z[size_t(g * l.n + 8 * j + kOrder[pos])]) << (4 * pos);
  p.w = as_bytes(qw);
  p.zero = as_bytes(qz);
  p.scale = as_bytes(l.s);
  p.g_idx = as_bytes(l.g_idx);
  return p;
}

// GPTQ: 32/bits values of K per int32 (row k = per*i + j at bits*j), zeros
// packed along N; v1 stores z - 1 (mod 2^bits).
inline Packed pack_gptq(const Logical& l, bool v1) {
  Packed p;
  const int per = 32 / l.bits;
  const uint32_t mask = (1u << l.bits) - 1u;
  std::vector<uint32_t> qw(size_t(l.k / per * l.n), 0), qz(size_t(l.ng * l.n / per), 0);
  for (int64_t k = 0; k < l.k; ++k)
    for (int64_t n = 0; n < l.n; ++n)
      qw[size_t((k / per) * l.n + n)] |= uint32_t(l.q[size_t(k * l.n + n)]) << (l.bits * (k % per));
  for (int64_t g = 0; g < l.ng; ++g)
    for (int64_t n = 0; n < l.n; ++n) {
      const uint32_t z = v1 ? (uint32_t(l.z[size_t(g * l.n + n)]) - 1u) & mask : uint32_t(l.z[size_t(g * l.n + n)]);
      qz[size_t(g * (l.n / per) + n / per)] |= z << (l.bits * (n % per));
    }
  p.w = as_bytes(qw);
  p.zero = as_bytes(qz);
  p.scale = as_bytes(l.s);
  p.g_idx = as_bytes(l.g_idx);
  return p;
}

// PLAIN: q [N, K] (4-bit: two per byte, even k low), scales [N, NG], zeros
// int32 [N, NG]; symmetric stores signed q (two's complement).
inline Packed pack_plain(const Logical& l) {
  Packed p;
  const int32_t half = 1 << (l.bits - 1);
  if (l.bits == 4) {
    p.w.assign(size_t(l.n * l.k / 2), 0);
    for (int64_t n = 0; n < l.n; ++n)
      for (int64_t k = 0; k < l.k; ++k) {
        int32_t q = l.q[size_t(k * l.n + n)];
        if (l.symmetric) q = (q - half) & 15;
        p.w[size_t(n * (l.k / 2) + k / 2)] |= uint8_t(q << (4 * (k % 2)));
      }
  } else {
    p.w.assign(size_t(l.n * l.k), 0);
    for (int64_t n = 0; n < l.n; ++n)
      for (int64_t k = 0; k < l.k; ++k) {
        int32_t q = l.q[size_t(k * l.n + n)];
        if (l.symmetric) q = (q - half) & 255;
        p.w[size_t(n * l.k + k)] = uint8_t(q);
      }
  }
  std::vector<uint16_t> s(size_t(l.n * l.ng));
  std::vector<int32_t> z(size_t(l.n * l.ng));
  for (int64_t n = 0; n < l.n; ++n)
    for (int64_t g = 0; g < l.ng; ++g) {
      s[size_t(n * l.ng + g)] = l.s[size_t(g * l.n + n)];
      z[size_t(n * l.ng + g)] = l.z[size_t(g * l.n + n)];
    }
  p.scale = as_bytes(s);
  p.zero = as_bytes(z);
  p.g_idx = as_bytes(l.g_idx);
  return p;
}

inline Packed pack(const Logical& l, lowbit_wq_format f) {
  switch (f) {
    case LOWBIT_WQ_FORMAT_AWQ: return pack_awq(l);
    case LOWBIT_WQ_FORMAT_GPTQ: return pack_gptq(l, false);
    case LOWBIT_WQ_FORMAT_GPTQ_V1: return pack_gptq(l, true);
    default: return pack_plain(l);
  }
}

}  // namespace lowbit::test::wq
