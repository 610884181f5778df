// Facts about lowbit_dtype values shared by every op family.
#pragma once

#include "lowbit/lowbit.h"

namespace lowbit {

// "bf16" etc.; nullptr for an unknown value.
inline const char* dtype_name(lowbit_dtype t) {
  switch (t) {
    case LOWBIT_DTYPE_F32: return "f32";
    case LOWBIT_DTYPE_F64: return "f64";
    case LOWBIT_DTYPE_F16: return "f16";
    case LOWBIT_DTYPE_BF16: return "bf16";
    case LOWBIT_DTYPE_S8: return "s8";
    case LOWBIT_DTYPE_U8: return "u8";
    case LOWBIT_DTYPE_S4: return "s4";
    case LOWBIT_DTYPE_U4: return "u4";
    case LOWBIT_DTYPE_S32: return "s32";
    default: return nullptr;
  }
}

// Bytes of one element (1 for the packed 4-bit types, whose pairs share a byte).
inline int dtype_bytes(lowbit_dtype t) {
  switch (t) {
    case LOWBIT_DTYPE_F64: return 8;
    case LOWBIT_DTYPE_F32: case LOWBIT_DTYPE_S32: return 4;
    case LOWBIT_DTYPE_F16: case LOWBIT_DTYPE_BF16: return 2;
    default: return 1;
  }
}

inline bool dtype_is_float(lowbit_dtype t) {
  return t == LOWBIT_DTYPE_F32 || t == LOWBIT_DTYPE_F64 || t == LOWBIT_DTYPE_F16 || t == LOWBIT_DTYPE_BF16;
}

}  // namespace lowbit
