// The benchmark harness shared by every suite: device buffers, CUDA-event
// timing (warm-up, median and spread of many runs, inputs rotated so L2 cannot
// hold them), the bandwidth ceilings measured in the same run, and JSON
// records. Suites live in suite_*.cpp and register in bench_main.cpp.
#pragma once

#include <cuda.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "lowbit/lowbit.h"

namespace lowbit::bench {

struct Options {
  int min_runs = 50;
  double min_ms = 200.0;  // keep timing until both min_runs and min_ms are reached
  int warmup = 5;
  std::vector<int64_t> m_values;  // empty: the suite's defaults
  bool quick = false;             // fewer shapes (smoke runs)
};

// Device memory in the bench's context (freed by the destructor).
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(size_t bytes);
  ~Buffer();
  Buffer(Buffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) { o.ptr_ = 0; o.bytes_ = 0; }
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  uint64_t ptr() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  void fill_random(uint32_t seed);  // random bytes, never all zero
  void fill_random_floats(lowbit_dtype dtype, float lo, float hi, uint32_t seed);
  void upload(const void* host, size_t bytes);

 private:
  uint64_t ptr_ = 0;
  size_t bytes_ = 0;
};

struct Timing {
  double median_us = 0, p10_us = 0, p90_us = 0;
  int runs = 0;
};

// Times `launch(i)` (i = run index, for rotating input sets) with CUDA events
// around each launch on `stream`.
Timing time_kernel(const Options& o, CUstream stream, const std::function<void(int)>& launch);

// Ceilings, measured once per process and cached.
struct Ceilings {
  double copy_gbps = 0;  // device-to-device copy: bytes read + written per second (best over 256 MiB..2 GiB)
  double read_gbps = 0;  // streaming read (a reduction): bytes read per second (best over 256 MiB..2 GiB)
};
const Ceilings& ceilings(const Options& o);

// A NVRTC-compiled helper kernel for the bench itself (not through the cache).
CUfunction compile_bench_kernel(const std::string& source, const std::string& name);

// One result record; printed as a table row and collected as JSON.
struct Record {
  std::string suite, op, format, dtype, config, ceiling_name;
  int64_t group = 0, m = 0, n = 0, k = 0;
  Timing t;
  double bytes = 0, flops = 0;
  double ceiling_gbps = 0;   // the bandwidth ceiling that bounds this point
  double cublas_us = 0;      // 0 if not measured
  std::string extra_json;    // additional members, already JSON ("\"a\":1,...")
};

void emit(const Record& r);                 // prints a table row
std::string records_json();                 // every emitted record, as a JSON array
std::string environment_json();             // GPU, driver, clocks as read

// The bench's own CUDA context (device 0, primary) and a stream; initialized
// by bench_main.
struct Device {
  CUcontext context = nullptr;
  CUstream stream = nullptr;
  int sm_count = 0;
  std::string name;
};
Device& device();

lowbit_context* lowbit_ctx();  // a device context for plans

}  // namespace lowbit::bench
