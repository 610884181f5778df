// CPU reference of the elementwise quantization family, written from the
// contract in lowbit.h (not from the kernels): the oracle of the GPU tests and
// lowbit_reference_run. Same arithmetic as the GPU: f32 for f32/f16/bf16
// inputs (widened exactly), f64 for f64; IEEE division; round half to even.
#pragma once

#include <cstddef>
#include <cstdint>

#include "lowbit/lowbit.h"

namespace lowbit::ref {

// Round half to even to int64 with the GPU's cvt.rni.s64 semantics:
// saturating, NaN -> 0.
int64_t rint_to_s64(double v);

// Quantizes one value: clamp(rint(x / scale) + zp, qmin, qmax).
int32_t quantize_value(float x, float scale, int32_t zp, int32_t qmin, int32_t qmax);
int32_t quantize_value(double x, double scale, int32_t zp, int32_t qmin, int32_t qmax);

// Runs `desc` on host pointers (roles as in lowbit_plan_run). The descriptor
// must already be validated (ops/quantize.cpp does that).
void quantize_reference(const lowbit_quantize_desc& desc, const lowbit_arg* args, size_t count);

}  // namespace lowbit::ref
