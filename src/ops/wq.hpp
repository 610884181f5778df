// Op family 2: weight-only quantized matmul, decode path, and the repack into
// the native layout (lowbit_wq_matmul_desc).
#pragma once

#include <memory>

#include "ops/op_plan.hpp"

namespace lowbit::wq {

// Fills the defaults documented in lowbit.h.
void init_desc(lowbit_wq_matmul_desc* desc);

// Reads a caller's descriptor: checks struct_size and copies it over the
// defaults.
lowbit_wq_matmul_desc read_desc(const void* desc);

// Validates the weight-shape fields (n, k, bits, group, symmetric, act_order,
// scale dtype) and returns the native buffer size (lowbit_wq_native_bytes).
uint64_t native_bytes(const lowbit_wq_matmul_desc& desc);

std::unique_ptr<OpPlan> create(const void* desc, const DeviceTraits& device);
void reference(const void* desc, const lowbit_arg* args, size_t count);

}  // namespace lowbit::wq
