// Op family 1: elementwise quantization (lowbit_quantize_desc).
#pragma once

#include <memory>

#include "ops/op_plan.hpp"

namespace lowbit::quantize {

// Fills the defaults documented in lowbit.h.
void init_desc(lowbit_quantize_desc* desc);

// Reads a caller's descriptor: checks struct_size and copies it over the
// defaults (fields an older caller lacks keep their defaults).
lowbit_quantize_desc read_desc(const void* desc);

std::unique_ptr<OpPlan> create(const void* desc, const DeviceTraits& device);
void reference(const void* desc, const lowbit_arg* args, size_t count);

}  // namespace lowbit::quantize
