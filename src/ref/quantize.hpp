// CPU reference of the elementwise quantization family, written from the
// contract in lowbit.h (not from the kernels): the oracle of the GPU tests and
// lowbit_reference_run. Same arithmetic as the GPU: f32 for f32/f16/bf16
// inputs (widened exactly), f64 for f64; IEEE division; round half to even;
// zero points clamped into [-2^21, 2^21]; NaN quantizes to the (clamped) zero
// point, +-inf to qmax / qmin; NaN float results are the canonical NaN.
#pragma once

#include <cstddef>
#include <cstdint>

#include "lowbit/lowbit.h"

namespace lowbit::ref {

// Zero points are clamped into [-kZeroPointLimit, kZeroPointLimit] before use.
constexpr int32_t kZeroPointLimit = 1 << 21;
int32_t clamp_zero_point(int32_t zp);

// Round half to even to int64, saturating, NaN -> 0.
int64_t rint_to_s64(double v);

// Quantizes one value: clamp(rint(x / scale) + zp, qmin, qmax) with x / scale
// an IEEE division in the argument type; NaN -> clamp(zp), +-inf -> qmax / qmin.
int32_t quantize_value(float x, float scale, int32_t zp, int32_t qmin, int32_t qmax);
int32_t quantize_value(double x, double scale, int32_t zp, int32_t qmin, int32_t qmax);

// Runs `desc` on host pointers (roles as in lowbit_plan_run). The descriptor
// must already be validated (ops/quantize.cpp does that).
void quantize_reference(const lowbit_quantize_desc& desc, const lowbit_arg* args, size_t count);

}  // namespace lowbit::ref
