// Kernel parameters of the elementwise quantization family. Included by both
// the kernels (quantize*.cuh, through NVRTC) and the host (src/ops/quantize.cpp),
// so the two can never disagree on the layout. Fixed-width fields only,
// 8-byte ones first: identical layout on x86-64, aarch64 and the GPU.
#pragma once

namespace lowbit {

struct QuantizeParams {
  uint64_t x;           // LOWBIT_ARG_X (float tensor, rows strided by x_row_stride)
  uint64_t q;           // LOWBIT_ARG_Q (quantized, rows of q_row_bytes bytes, contiguous)
  uint64_t scale;       // LOWBIT_ARG_SCALE (array, see the scopes in lowbit.h)
  uint64_t zero_point;  // LOWBIT_ARG_ZERO_POINT (int32 array); 0 = all zero
  uint64_t dy;          // LOWBIT_ARG_DY (x layout)
  uint64_t dx;          // LOWBIT_ARG_DX (x layout)
  uint64_t y;           // LOWBIT_ARG_Y (x layout)
  uint64_t workspace;   // dynamic per-tensor: one (min, max) pair per partial
  int64_t rows;         // the problem seen as [rows, cols]
  int64_t cols;
  int64_t x_row_stride;    // elements between rows of x / dy / dx / y
  int64_t q_row_bytes;     // bytes between rows of q (cols, or ceil(cols / 2) packed)
  int64_t chunks_per_row;  // cols / kVec (whole vectors per row)
  // Per-channel with the axis before the last dim: channel = (row / ch_inner) % ch_count.
  int64_t ch_inner;
  int64_t ch_count;
  int64_t groups_per_row;  // per-group: cols / G
  // Segment kernel (dynamic per-token / per-group): segment = (row, group).
  int64_t segments;        // rows * seg_per_row
  int64_t seg_per_row;
  int64_t seg_len;         // elements per segment (cols or G)
  int64_t seg_vectors;     // seg_len / kVec
  int64_t num_partials;    // dynamic per-tensor: partials written by the reduce kernel
  // Staged kernel (quantize_staged.cuh): tiles of whole vectors of a row.
  int64_t tile_vectors;    // vectors per tile (a row's last tile may be shorter)
  int64_t tiles_per_row;
  int64_t stage_bytes;     // shared memory per stage (a multiple of 128)
};

}  // namespace lowbit
