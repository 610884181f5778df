// Internals of family 2 shared by the decode path and repack (wq.cpp) and the
// prefill GEMM path (wq_gemm.cpp): the validated problem, kernel-spec and
// launch helpers, the occupancy model and the developer tuning knob.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/json.hpp"
#include "ops/op_plan.hpp"

// The kernels' parameter structs and the native layout, shared with the
// templates (plain C++ over fixed-width integers).
#include "wq_layout.h"
#include "wq_params.h"

namespace lowbit::wq {

// A checked descriptor with its derived sizes.
struct Problem {
  lowbit_wq_matmul_desc d;
  int64_t ngroups = 1;
  int64_t x_stride = 0, y_stride = 0;
};

// Validates a descriptor (status codes as documented in lowbit.h).
Problem check(const lowbit_wq_matmul_desc& d);

const char* format_name(lowbit_wq_format f);
// "lowbit::f16" / "lowbit::bf16": the device type of an f16/bf16 dtype.
const char* device_type(lowbit_dtype t);
int64_t ceil_div(int64_t a, int64_t b);
int floor_pow2(int v);
uint64_t align256(uint64_t v);

// Estimated fraction of the machine a grid of `ctas` equal CTAs uses when
// `slots` of them fit on one of `sms` multiprocessors (wave quantization and
// imbalance in one number).
double grid_score(int64_t ctas, int slots, int sms);

// A KernelSpec of family "wq" with the given template, entry and block size.
KernelSpec base_spec(const char* header, const char* function, const char* params, int threads);

// The repack kernels (permutation first with act-order, then the repack) and
// their launch: source pointers -> native buffer `out`.
struct RepackSources {
  uint64_t w = 0, scale = 0, zero = 0, g_idx = 0;
};
std::vector<KernelSpec> repack_specs(const Problem& p);
RepackSources repack_sources(const RunArgs& args, const lowbit_wq_matmul_desc& d);
void launch_repack(const Problem& p, const WqNativeLayout& layout, const RepackSources& src, uint64_t out,
                   const CUfunction* functions, int sm_count, CUstream stream);

// Shared by both matmul plans' run(): the row count of this run (ROWS or
// desc.m), the permutation of X into `xp` (act-order), and the split-K
// reduction of `partial` into Y (+ bias).
int64_t run_rows(const RunArgs& args, const lowbit_wq_matmul_desc& d);
void launch_permute(const Problem& p, uint64_t x, uint64_t xp, uint64_t perm, int64_t rows, CUfunction function,
                    int sm_count, CUstream stream);
void launch_reduce(const Problem& p, uint64_t partial, uint64_t y, uint64_t bias, int64_t rows, int64_t splits,
                   CUfunction function, int sm_count, CUstream stream);
// The problem fields of a matmul plan's describe(); callers add the path,
// the weight exactness and their config.
JsonObject matmul_problem_json(const Problem& p);

// Developer knob for tuning sweeps: LOWBIT_WQ_CONFIG="key=value,...". Returns
// the value of `key`, 0 when absent. Read at plan creation only.
int config_knob(const char* key);

// Whether a matmul plan takes the prefill (tensor-core GEMM) path: desc.m >= 9,
// unless LOWBIT_WQ_CONFIG forces path=1 (decode) or path=2 (GEMM).
bool uses_gemm(const lowbit_wq_matmul_desc& d);

// The prefill path's plan (wq_gemm.cpp).
std::unique_ptr<OpPlan> create_gemm_plan(const Problem& p, const DeviceTraits& device);

}  // namespace lowbit::wq
