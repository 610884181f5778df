// CPU reference of the weight-only matmul family (lowbit_wq_matmul_desc),
// written from the format definitions in lowbit.h and the native layout in
// kernel_templates/wq_layout.h, not from the kernels: the oracle of the GPU
// tests and lowbit_reference_run.
//
// Arithmetic: every weight is dequantized exactly, w = (q - z) * s in double
// (s widened exactly from f16/bf16) and, for plans of m >= 9 (the prefill
// path), rounded once to the activation type; Y = X * W (+ bias) is summed in
// double and rounded once to the activation type (through f32, nearest even).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "lowbit/lowbit.h"

namespace lowbit::ref {

// Number of groups along K (1 for per-channel).
int64_t wq_groups(const lowbit_wq_matmul_desc& d);

// The exact weights w[k * n + col] (K x N, input-row order) of a source
// format (AWQ, GPTQ, GPTQ_V1, PLAIN); g_idx is read for GPTQ act-order.
// Throws INVALID_PROBLEM if a g_idx value is outside [0, NG).
std::vector<double> wq_dequantize(const lowbit_wq_matmul_desc& d, const void* w, const void* scale, const void* zero,
                                  const int32_t* g_idx);

// The native buffer (wq_native_layout bytes) for a source format. With
// act-order, g_idx must give every group exactly group_size rows
// (INVALID_PROBLEM otherwise).
std::vector<uint8_t> wq_repack(const lowbit_wq_matmul_desc& d, const void* w, const void* scale, const void* zero,
                               const int32_t* g_idx);

// The exact weights of a native buffer in native row order, w[i * n + col],
// and its row permutation (identity without act-order): native row i is
// input row perm[i].
std::vector<double> wq_dequantize_native(const lowbit_wq_matmul_desc& d, const uint8_t* native,
                                         std::vector<int32_t>* perm);

// Whether the matmul of `d` rounds its weights to the activation type (the
// prefill path: m >= 9), as lowbit.h documents.
bool wq_rounds_weights(const lowbit_wq_matmul_desc& d);

// Runs either op of a validated descriptor on host pointers (roles as in
// lowbit_plan_run; ROWS is honoured).
void wq_reference(const lowbit_wq_matmul_desc& d, const lowbit_arg* args, size_t count);

}  // namespace lowbit::ref
