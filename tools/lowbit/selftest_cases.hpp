// The selftest's table of cases: every implemented op with every type
// combination, each able to build a problem of a given shape with fresh
// random inputs. cmd_selftest.cpp runs them on the GPU and compares with
// lowbit_reference_run.
//
// A new op family adds one add_<family>_cases function in selftest_cases.cpp
// and calls it from all_cases().
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <variant>
#include <vector>

#include "lowbit/lowbit.h"

namespace lowbit::cli::selftest {

// One tensor argument. Inputs carry their host data; outputs are poisoned by
// the runner (device and host alike) and compared byte for byte.
struct Tensor {
  lowbit_arg_role role = 0;
  lowbit_dtype dtype = 0;
  int64_t elements = 0;
  bool output = false;
  std::vector<uint8_t> data;  // inputs only: bytes() bytes
  size_t bytes() const;
};

struct Problem {
  std::variant<lowbit_quantize_desc> desc;
  std::vector<Tensor> tensors;
  // Names the inputs that produced element `index` of output tensor
  // `tensor` ("x = nan (0x7fc00000), scale = 0.25, zero point = -3"), for
  // mismatch reports. May be empty.
  std::function<std::string(const Problem& self, size_t tensor, int64_t index)> explain;
  // Points into this problem: valid while it is neither moved nor destroyed.
  lowbit_op_desc op() const;
};

// A problem size: `rows` rows of `cols` elements, `stride` elements apart in
// the floating-point tensor (stride == cols: contiguous).
struct Shape {
  int64_t rows = 1, cols = 1, stride = 1;
  std::string label() const;  // "4099", "3x4099/4104"
};

struct Case {
  std::string op;      // "quantize"
  std::string dtypes;  // "x=bf16 q=s8"
  // Builds the problem for `shape` (the `index`-th shape of the run, which
  // varies the scale) with inputs drawn from `rng`.
  std::function<Problem(const Shape& shape, size_t index, std::mt19937_64& rng)> make;
};

// The odd sizes every case runs at.
const std::vector<Shape>& shapes();

// Every case of every implemented op family.
std::vector<Case> all_cases();

}  // namespace lowbit::cli::selftest
