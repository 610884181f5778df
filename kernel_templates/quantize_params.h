// Kernel parameters of the elementwise quantization family. Included by both
// the kernels (quantize.cuh, through NVRTC) and the host (src/ops/quantize.cpp),
// so the two can never disagree on the layout. Fixed-width fields only,
// 8-byte ones first: identical layout on x86-64, aarch64 and the GPU.
#pragma once

namespace lowbit {

struct QuantizeParams {
  uint64_t x;           // LOWBIT_ARG_X (float tensor, rows strided by x_row_stride)
  uint64_t q;           // LOWBIT_ARG_Q (quantized, contiguous)
  uint64_t scale;       // LOWBIT_ARG_SCALE
  uint64_t zero_point;  // LOWBIT_ARG_ZERO_POINT (int32); 0 = all zero
  uint64_t dy;          // LOWBIT_ARG_DY
  uint64_t dx;          // LOWBIT_ARG_DX
  uint64_t y;           // LOWBIT_ARG_Y
  int64_t rows;         // the problem seen as [rows, cols]
  int64_t cols;
  int64_t x_row_stride;    // elements between rows of x / dy / dx / y
  int64_t chunks_per_row;  // cols / kVec (whole vectors per row)
};

}  // namespace lowbit
