// The weight-only matmul benchmarks' shared inputs: the W4 g128 descriptor
// they time, and sets of random weights in its format that the timed runs
// rotate through so that no run finds its weights in L2 (suites wq-decode
// and wq-prefill).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "harness.hpp"
#include "lowbit/lowbit.h"

namespace lowbit::bench {

// W4, group 128, act and scale type `at`, Y[m, n] = X[m, k] W.
inline lowbit_wq_matmul_desc wq_bench_desc(lowbit_wq_format f, lowbit_dtype at, int64_t m, int64_t n, int64_t k) {
  lowbit_wq_matmul_desc d;
  lowbit_wq_matmul_desc_init(&d);
  d.format = f;
  d.weight_bits = 4;
  d.group_size = 128;
  d.m = m;
  d.n = n;
  d.k = k;
  d.act_dtype = at;
  d.scale_dtype = at;
  return d;
}

class WqWeightSets {
 public:
  // Bytes of one set of `d`'s weights: the whole native buffer (weights,
  // scales, zeros), or the packed weights + scales + zeros of AWQ/GPTQ.
  static size_t set_bytes(const lowbit_wq_matmul_desc& d) {
    if (d.format == LOWBIT_WQ_FORMAT_NATIVE) {
      uint64_t b = 0;
      lowbit_wq_native_bytes(&d, &b);
      return size_t(b);
    }
    const size_t ng = size_t(d.k / d.group_size);
    return size_t(d.k * d.n) / 2 + ng * size_t(d.n) * 2 + ng * size_t(d.n) / 2;
  }
  // Sets enough to stream >= 180 MB (3 x the largest L2) per rotation, 2..32.
  static int rotating_count(const lowbit_wq_matmul_desc& d) {
    return int(std::clamp<size_t>((size_t(180) << 20) / set_bytes(d) + 1, 2, 32));
  }

  // `count` sets of random weights (scales in [0.001, 0.01) of the act type).
  WqWeightSets(const lowbit_wq_matmul_desc& d, int count) : native_(d.format == LOWBIT_WQ_FORMAT_NATIVE) {
    const size_t ng = size_t(d.k / d.group_size);
    const size_t w_bytes = native_ ? set_bytes(d) : size_t(d.k * d.n) / 2;
    for (int i = 0; i < count; ++i) {
      w_.emplace_back(w_bytes);
      w_.back().fill_random(11 + i);
      if (!native_) {
        s_.emplace_back(ng * size_t(d.n) * 2);
        s_.back().fill_random_floats(d.act_dtype, 0.001f, 0.01f, 31 + i);
        z_.emplace_back(ng * size_t(d.n) / 2);
        z_.back().fill_random(51 + i);
      }
    }
  }
  int count() const { return int(w_.size()); }
  // Appends the weight arguments of set i % count().
  void add_args(std::vector<lowbit_arg>& args, int i) const {
    const size_t j = size_t(i % count());
    if (native_) {
      args.push_back({LOWBIT_ARG_W_NATIVE, 0, w_[j].ptr()});
    } else {
      args.push_back({LOWBIT_ARG_W, 0, w_[j].ptr()});
      args.push_back({LOWBIT_ARG_W_SCALE, 0, s_[j].ptr()});
      args.push_back({LOWBIT_ARG_W_ZERO, 0, z_[j].ptr()});
    }
  }

 private:
  bool native_;
  std::vector<Buffer> w_, s_, z_;
};

}  // namespace lowbit::bench
