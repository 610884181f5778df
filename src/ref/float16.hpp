// IEEE binary16 and bfloat16 conversions for the CPU reference, written from
// the formats' definitions: widening is exact, narrowing rounds to nearest
// even, overflow gives infinity, NaN gives the canonical NaN 0x7fff (what the
// GPU's cvt.rn.f16.f32 / cvt.rn.bf16.f32 produce).
#pragma once

#include <cstdint>
#include <cstring>

namespace lowbit::ref {

inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float f32_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline float bf16_to_f32(uint16_t h) { return f32_from_bits(uint32_t(h) << 16); }

inline uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fff;
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000u | (mant << 13));
  if (exp != 0) return f32_from_bits(sign | ((exp + 112) << 23) | (mant << 13));
  // Subnormal or zero: value = mant * 2^-24, exact in f32.
  float v = float(mant) * (1.0f / 16777216.0f);
  return sign ? -v : v;
}

inline uint16_t f32_to_f16(float f) {
  const uint32_t u = f32_bits(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return 0x7fff;                 // NaN (canonical)
  if (abs >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to >= 65520: infinity
  const int exp = int(abs >> 23) - 127;
  if (exp >= -14) {
    // Normal half: keep 10 mantissa bits, round the 13 dropped to nearest even.
    uint32_t mant = abs & 0x7fffffu;
    uint32_t half = uint32_t(exp + 15) << 10 | (mant >> 13);
    const uint32_t rest = mant & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;  // may carry into the exponent: correct
    return uint16_t(sign | half);
  }
  // Subnormal half (or zero): value / 2^-24 rounded to nearest even integer.
  if (exp < -25) return sign;  // below half of the smallest subnormal
  const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;  // 24 significant bits, value = mant * 2^(exp-23)
  const int shift = -exp - 1;  // value * 2^24 = mant * 2^(exp+1) = mant >> (-exp-1)
  uint32_t q = mant >> shift;
  const uint32_t rest = mant & ((1u << shift) - 1u);
  const uint32_t halfway = 1u << (shift - 1);
  if (rest > halfway || (rest == halfway && (q & 1u))) ++q;
  return uint16_t(sign | q);
}

}  // namespace lowbit::ref
