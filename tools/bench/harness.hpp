// The benchmark harness shared by every suite: device buffers, CUDA-event
// timing (warm-up, median and spread of many runs), keeping inputs out of L2
// (rotated input sets, or an L2 flush between runs), the bandwidth ceilings
// and the cuBLAS GEMM baseline measured in the same run, the model shapes of
// DESIGN.md section 8, and the records (a table per suite, and JSON).
// Suites live in suite_*.cpp and register in bench_main.cpp (one line each).
#pragma once

#include <cuda.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "lowbit/lowbit.h"

namespace lowbit::bench {

// ---- options ----------------------------------------------------------------

struct Options {
  int min_runs = 50;
  double min_ms = 200.0;  // keep timing until both min_runs and min_ms are reached
  int warmup = 5;
  std::vector<int64_t> m_values;  // --m; empty: the suite's defaults
  std::string shapes = "all";     // --shapes: "8b", "70b" or "all"
  bool quick = false;             // --quick: fewer shapes and runs (smoke runs)
};

// The entry point of both `lowbit-bench` and `lowbit bench`. argv[1..] are
// the options; `from_cli`: argv[0] is the `lowbit` CLI (children are spawned
// as "<exe> bench ...", and the CLI's prewarm is the executable itself).
int bench_main(int argc, char** argv, bool from_cli = false);

// ---- model shapes (DESIGN.md section 8) -------------------------------------

// A linear layer: activations [M, K] times weights [K, N].
struct GemmShape {
  const char* model;  // "8b" | "70b"
  const char* layer;  // "qkv", "o", "gate_up", "down"
  int64_t k, n;
};
// The shapes selected by --shapes (Llama-3-8B and/or Llama-3-70B); with
// --quick, the first two of each model.
std::vector<GemmShape> gemm_shapes(const Options& o);
// DESIGN.md's M values: 1, 2, 4, 8, 16, 32, 64, 128, 512, 4096.
const std::vector<int64_t>& design_m_values();
// --m if given, else `defaults`.
std::vector<int64_t> m_values(const Options& o, const std::vector<int64_t>& defaults);

// ---- device ------------------------------------------------------------------

// The bench's own CUDA context (device 0, primary) and a stream; initialized
// by bench_main.
struct Device {
  CUcontext context = nullptr;
  CUstream stream = nullptr;
  CUdevice device = 0;
  int sm_count = 0;
  size_t l2_bytes = 0;  // CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE
  std::string name;
};
Device& device();

lowbit_context* lowbit_ctx();  // a device context for plans

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

// A NVRTC-compiled helper kernel for the bench itself (not through the cache).
CUfunction compile_bench_kernel(const std::string& source, const std::string& name);

// ---- timing --------------------------------------------------------------------

struct Timing {
  double median_us = 0, p10_us = 0, p90_us = 0, min_us = 0, max_us = 0;
  int runs = 0;
};
// Median, p10, p90, min and max of samples (microseconds).
Timing summarize(std::vector<double> samples_us);

// Times `launch(i)` (i = run index, for rotating input sets) with CUDA events
// around each launch on `stream`: o.warmup runs first, then at least
// o.min_runs runs and o.min_ms milliseconds. With `flush_l2`, flush_l2() runs
// before every timed launch, outside the events.
Timing time_kernel(const Options& o, CUstream stream, const std::function<void(int)>& launch, bool flush_l2 = false);

// Times `reps` back-to-back launches launch(0..reps-1) per run, captured in a
// CUDA graph (plain launches if capture fails), events around each graph
// launch; the result is per launch (divided by reps). For kernels of a few
// microseconds, where the gap between separately timed launches would count.
Timing time_kernel_graph(const Options& o, CUstream stream, int reps, const std::function<void(int)>& launch);

// ---- keeping inputs out of L2 --------------------------------------------------

// How a suite rotates its inputs: `sets` copies of the input set of
// `set_bytes`, used in turn, so that sets * set_bytes >= 3 x L2 (no run finds
// its inputs in L2); where that would need more than `max_sets` copies
// (small inputs), `flush` is set and the caller passes it to time_kernel,
// which then flushes L2 between runs.
struct Rotation {
  int sets = 1;
  bool flush = false;
};
Rotation rotation_for(size_t set_bytes, int max_sets = 64);
// Evicts L2 (reads a 2 x L2 buffer) on `stream`. Read, not written: no dirty
// lines are left to be written back during the next timed run.
void flush_l2(CUstream stream);

// ---- ceilings --------------------------------------------------------------------

// Measured once per process (best over buffers of 256 MiB .. 2 GiB) and cached.
struct Ceilings {
  double copy_gbps = 0;  // device-to-device copy: bytes read + written per second
  double read_gbps = 0;  // streaming read (a reduction): bytes read per second
  std::string json;      // the per-size figures, for the JSON document
};
const Ceilings& ceilings(const Options& o);

// ---- cuBLAS (dlopen'ed here only; the library never depends on it) --------------

struct CublasInfo {
  bool available = false;
  std::string library;  // the file it was loaded from
  int version = 0;      // cublasGetVersion_v2
  std::string problem;  // why not available
};
const CublasInfo& cublas_info();
// cublasGemmEx Y[M, N] = X[M, K] W (row-major; dtype f16 or bf16 in and out,
// f32 compute, default algorithm) on device().stream, with W stored both ways
// and the faster kept (*layout: "nn" W is [K, N]; "tn" W is [N, K], the
// nn.Linear layout): weight sets rotated past L2, short GEMMs timed with
// time_kernel_graph, long ones with time_kernel. Zero Timing (runs == 0) if
// cuBLAS is not available.
Timing cublas_gemm_timing(const Options& o, int64_t m, int64_t n, int64_t k, lowbit_dtype dtype,
                          std::string* layout = nullptr);
double cublas_gemm_us(const Options& o, int64_t m, int64_t n, int64_t k, lowbit_dtype dtype);

// ---- records -----------------------------------------------------------------------

// One result record; printed as a row and collected for the table and JSON.
struct Record {
  std::string suite, op, format, dtype, config;
  std::string ceiling_name = "none";  // "copy" | "read" | "cublas" | "none"
  int64_t group = 0, m = 0, n = 0, k = 0;
  Timing t;
  double bytes = 0, flops = 0;
  double ceiling_gbps = 0;  // the bandwidth ceiling that bounds this point (0: none)
  double cublas_us = 0;     // 0 if not measured
  std::string unit = "us";  // what the times are: "us" (GPU, CUDA events) or "us_host"
  std::string extra_json;   // additional members, already JSON ("\"a\":1,...")
};

void emit(const Record& r);  // prints a progress row and keeps the record
// The table of one suite's records (called after each suite).
void print_table(const std::string& suite);
std::string records_json();      // every emitted record, as a JSON array
std::string environment_json();  // GPU, driver, clocks as read, versions, date
void note_start();               // the date and the clocks before any work (bench_main)
size_t record_count();

// The command that re-runs this process's bench in a child ("<exe>" or
// "<exe> bench"), and the `lowbit` CLI executable ("" if not found).
const std::string& self_command();
const std::string& cli_executable();

}  // namespace lowbit::bench
