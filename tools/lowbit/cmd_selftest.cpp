// `lowbit selftest`: runs every case of selftest_cases.cpp on the GPU and
// compares the outputs bit for bit with lowbit_reference_run on host copies
// of the same inputs. Outputs are poisoned (0xA5) on both sides before the
// run, and followed by poisoned guard bytes that must stay untouched.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "commands.hpp"
#include "common/dtype.hpp"
#include "common/error.hpp"
#include "cuda/driver.hpp"
#include "ref/float16.hpp"
#include "selftest_cases.hpp"

namespace lowbit::cli {

namespace {

using selftest::Problem;
using selftest::Tensor;

constexpr uint8_t kPoison = 0xA5;
constexpr size_t kGuardBytes = 256;

// Device memory through lowbit's driver table; freed by the destructor.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    cu_check(driver().MemAlloc(&ptr_, bytes == 0 ? 1 : bytes), "cuMemAlloc");
  }
  ~DeviceBuffer() {
    if (ptr_ != 0) driver().MemFree(ptr_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  CUdeviceptr ptr() const { return ptr_; }

 private:
  CUdeviceptr ptr_ = 0;
  size_t bytes_;
};

struct Outcome {
  bool passed = false;
  std::string result;        // "ok", "MISMATCH", "ERROR"
  std::string max_mismatch;  // "0", "3", "0.0625", "nan/inf", "-"
  std::string detail;        // printed under the table for failures
};

double element_value(const uint8_t* p, lowbit_dtype dtype) {
  switch (dtype) {
    case LOWBIT_DTYPE_F32: {
      float f;
      std::memcpy(&f, p, 4);
      return f;
    }
    case LOWBIT_DTYPE_F64: {
      double d;
      std::memcpy(&d, p, 8);
      return d;
    }
    case LOWBIT_DTYPE_F16: {
      uint16_t h;
      std::memcpy(&h, p, 2);
      return ref::f16_to_f32(h);
    }
    case LOWBIT_DTYPE_BF16: {
      uint16_t h;
      std::memcpy(&h, p, 2);
      return ref::bf16_to_f32(h);
    }
    case LOWBIT_DTYPE_S8: return int8_t(*p);
    case LOWBIT_DTYPE_S32: {
      int32_t v;
      std::memcpy(&v, p, 4);
      return v;
    }
    default: return *p;  // u8, and the packed 4-bit types byte by byte
  }
}

std::string hex_bytes(const uint8_t* p, size_t n) {
  std::string s = "0x";
  for (size_t i = n; i-- > 0;) s += fmt::format("{:02x}", p[i]);  // little-endian: most significant first
  return s;
}

// Compares output tensor `ti` of `p` (plus its guard bytes); adds to the outcome.
void compare(const Problem& p, size_t ti, const std::vector<uint8_t>& gpu, const std::vector<uint8_t>& ref,
             int64_t* mismatches, double* max_diff, std::string* detail) {
  const Tensor& t = p.tensors[ti];
  const size_t es = (t.dtype == LOWBIT_DTYPE_S4 || t.dtype == LOWBIT_DTYPE_U4) ? 1 : size_t(dtype_bytes(t.dtype));
  const size_t bytes = t.bytes();
  for (size_t off = 0; off + es <= bytes; off += es) {
    if (std::memcmp(gpu.data() + off, ref.data() + off, es) == 0) continue;
    const double a = element_value(gpu.data() + off, t.dtype), b = element_value(ref.data() + off, t.dtype);
    const double diff = (std::isnan(a) || std::isnan(b) || std::isinf(a) || std::isinf(b))
                            ? std::numeric_limits<double>::infinity()
                            : std::fabs(a - b);
    if (*mismatches == 0) {
      *detail += fmt::format("first mismatch in {} at element {}: gpu {} ({:g}), reference {} ({:g})",
                             dtype_name(t.dtype), off / es, hex_bytes(gpu.data() + off, es), a,
                             hex_bytes(ref.data() + off, es), b);
      const std::string inputs = p.explain ? p.explain(p, ti, int64_t(off / es)) : std::string();
      *detail += inputs.empty() ? ". " : " from " + inputs + ". ";
    }
    ++*mismatches;
    if (diff > *max_diff) *max_diff = diff;
  }
  size_t guard = 0;
  for (size_t i = bytes; i < gpu.size(); ++i) guard += gpu[i] != kPoison;
  if (guard > 0) {
    *detail += fmt::format("{} of the {} bytes after the {} output were overwritten. ", guard, kGuardBytes,
                           dtype_name(t.dtype));
    *mismatches += int64_t(guard);
    *max_diff = std::numeric_limits<double>::infinity();
  }
}

Outcome error_outcome(std::string message) {
  Outcome o;
  o.result = "ERROR";
  o.max_mismatch = "-";
  o.detail = std::move(message);
  return o;
}

Outcome run_problem(lowbit_context* ctx, const Problem& p) {
  const DriverApi& api = driver();
  const lowbit_op_desc op = p.op();
  lowbit_plan* plan = nullptr;
  lowbit_status s = lowbit_plan_create(ctx, &op, &plan);
  if (s != LOWBIT_OK) return error_outcome("plan: " + last_error(s));
  struct PlanGuard {
    lowbit_plan* p;
    ~PlanGuard() { lowbit_plan_destroy(p); }
  } plan_guard{plan};
  size_t workspace_bytes = 0;
  s = lowbit_plan_workspace_size(plan, &workspace_bytes);
  if (s != LOWBIT_OK) return error_outcome("workspace size: " + last_error(s));

  // Device side: inputs uploaded, outputs (and their guards) poisoned.
  std::vector<std::unique_ptr<DeviceBuffer>> buffers;
  std::vector<lowbit_arg> dev_args;
  for (const Tensor& t : p.tensors) {
    const size_t size = t.bytes() + (t.output ? kGuardBytes : 0);
    buffers.push_back(std::make_unique<DeviceBuffer>(size));
    const CUdeviceptr d = buffers.back()->ptr();
    if (t.output) cu_check(api.MemsetD8(d, kPoison, size), "cuMemsetD8");
    else if (size > 0) cu_check(api.MemcpyHtoD(d, t.data.data(), size), "cuMemcpyHtoD");
    dev_args.push_back({t.role, 0, uint64_t(d)});
  }
  std::unique_ptr<DeviceBuffer> workspace;
  if (workspace_bytes > 0) workspace = std::make_unique<DeviceBuffer>(workspace_bytes);
  s = lowbit_plan_run(plan, dev_args.data(), dev_args.size(), workspace ? uint64_t(workspace->ptr()) : 0,
                      workspace_bytes, nullptr);
  if (s != LOWBIT_OK) return error_outcome("run: " + last_error(s));
  cu_check(api.CtxSynchronize(), "cuCtxSynchronize after the kernel");

  // Host side: the reference on copies of the same inputs, outputs poisoned alike.
  std::vector<std::vector<uint8_t>> ref_out(p.tensors.size()), gpu_out(p.tensors.size());
  std::vector<lowbit_arg> host_args;
  for (size_t i = 0; i < p.tensors.size(); ++i) {
    const Tensor& t = p.tensors[i];
    if (t.output) {
      ref_out[i].assign(t.bytes() + kGuardBytes, kPoison);
      gpu_out[i].assign(t.bytes() + kGuardBytes, 0);
      cu_check(api.MemcpyDtoH(gpu_out[i].data(), buffers[i]->ptr(), gpu_out[i].size()), "cuMemcpyDtoH");
      host_args.push_back({t.role, 0, uint64_t(reinterpret_cast<uintptr_t>(ref_out[i].data()))});
    } else {
      host_args.push_back({t.role, 0, uint64_t(reinterpret_cast<uintptr_t>(t.data.data()))});
    }
  }
  s = lowbit_reference_run(&op, host_args.data(), host_args.size());
  if (s != LOWBIT_OK) return error_outcome("reference: " + last_error(s));

  int64_t mismatches = 0;
  double max_diff = 0;
  Outcome o;
  for (size_t i = 0; i < p.tensors.size(); ++i)
    if (p.tensors[i].output) compare(p, i, gpu_out[i], ref_out[i], &mismatches, &max_diff, &o.detail);
  o.passed = mismatches == 0;
  o.result = o.passed ? "ok" : fmt::format("MISMATCH ({})", mismatches);
  o.max_mismatch = std::isinf(max_diff) ? "nan/inf" : fmt::format("{:g}", max_diff);
  return o;
}

int run_selftest(Args& args) {
  std::string cache_dir, seed_text, device_text;
  bool allow_no_gpu = false;
  while (!args.done()) {
    if (args.flag("--allow-no-gpu")) allow_no_gpu = true;
    else if (args.option("--cache-dir", &cache_dir)) {}
    else if (args.option("--seed", &seed_text)) {}
    else if (args.option("--device", &device_text)) {}
    else if (args.at_option()) return usage_error(kSelftestCommand, "unknown option " + args.current());
    else return usage_error(kSelftestCommand, "unexpected argument " + args.current());
  }
  if (!args.error().empty()) return usage_error(kSelftestCommand, args.error());
  uint64_t seed = uint64_t(std::chrono::system_clock::now().time_since_epoch().count());
  if (!seed_text.empty() && !parse_uint(seed_text, 0, UINT64_MAX, &seed))
    return usage_error(kSelftestCommand, "--seed " + seed_text + ": expected an unsigned integer");
  uint64_t device = 0;
  if (!device_text.empty() && !parse_uint(device_text, 0, 1023, &device))
    return usage_error(kSelftestCommand, "--device " + device_text + ": expected a device ordinal");

  lowbit_context_options o;
  lowbit_context_options_init(&o);
  o.cache_dir = cache_dir.empty() ? nullptr : cache_dir.c_str();
  lowbit_context* ctx = nullptr;
  lowbit_status s = lowbit_context_create_device(int32_t(device), &o, &ctx);
  if (s == LOWBIT_NO_DEVICE) {
    std::printf("selftest: skipped: no CUDA GPU (%s)\n", lowbit_last_error_message());
    return allow_no_gpu ? kExitOk : kExitUsage;
  }
  if (s != LOWBIT_OK) {
    print_error(kSelftestCommand, "cannot use GPU " + std::to_string(device) + ": " + last_error(s));
    return kExitFailed;
  }
  struct ContextGuard {
    lowbit_context* c;
    ~ContextGuard() { lowbit_context_destroy(c); }
  } context_guard{ctx};
  lowbit_device_info info{};
  info.struct_size = sizeof(info);
  lowbit_context_get_info(ctx, &info);

  // Our own allocations go to the same (primary) context the plans run in.
  const DriverApi& api = driver();
  CUdevice dev = 0;
  CUcontext primary = nullptr;
  try {
    cu_check(api.DeviceGet(&dev, int(device)), "cuDeviceGet");
    cu_check(api.DevicePrimaryCtxRetain(&primary, dev), "cuDevicePrimaryCtxRetain");
    cu_check(api.CtxSetCurrent(primary), "cuCtxSetCurrent");
  } catch (const Error& e) {
    print_error(kSelftestCommand, e.message());
    return kExitFailed;
  }
  struct PrimaryGuard {
    CUdevice d;
    ~PrimaryGuard() { driver().DevicePrimaryCtxRelease(d); }
  } primary_guard{dev};

  std::printf("selftest: %s (%s), seed %llu\n", info.name, info.arch, static_cast<unsigned long long>(seed));
  std::printf("%-12s %-14s %-12s %-16s %s\n", "OP", "DTYPES", "SIZE", "RESULT", "MAX MISMATCH");
  std::fflush(stdout);
  std::mt19937_64 rng(seed);
  size_t runs = 0, failed = 0;
  std::vector<std::string> failures;
  for (const selftest::Case& c : selftest::all_cases()) {
    const std::vector<selftest::Shape>& shapes = selftest::shapes();
    for (size_t i = 0; i < shapes.size(); ++i) {
      Outcome out;
      try {
        const Problem p = c.make(shapes[i], i, rng);
        out = run_problem(ctx, p);
      } catch (const Error& e) {
        out = error_outcome(e.message());
      } catch (const std::exception& e) {
        out = error_outcome(e.what());
      }
      ++runs;
      std::printf("%-12s %-14s %-12s %-16s %s\n", c.op.c_str(), c.dtypes.c_str(), shapes[i].label().c_str(),
                  out.result.c_str(), out.max_mismatch.c_str());
      std::fflush(stdout);
      if (!out.passed) {
        ++failed;
        failures.push_back(fmt::format("{} {} size {}: {}", c.op, c.dtypes, shapes[i].label(), out.detail));
      }
    }
  }
  for (const std::string& f : failures) std::printf("failed: %s\n", f.c_str());
  std::printf("selftest: %zu runs: %zu passed, %zu failed (seed %llu)\n", runs, runs - failed, failed,
              static_cast<unsigned long long>(seed));
  return failed > 0 ? kExitFailed : kExitOk;
}

}  // namespace

const Command kSelftestCommand = {
    "selftest",
    "check every GPU kernel bit-exactly against the CPU reference",
    "usage: lowbit selftest [--cache-dir DIR] [--device N] [--seed N] [--allow-no-gpu]\n"
    "\n"
    "Runs every implemented op and type combination on the GPU with fresh random\n"
    "inputs (values near rounding ties, beyond the clamp range, special values) at\n"
    "odd sizes, with poisoned outputs, and compares bit for bit with the CPU\n"
    "reference (lowbit_reference_run). Prints one row per run; exit 1 on any\n"
    "mismatch.\n"
    "\n"
    "  --cache-dir DIR  the kernel cache directory (default: as for prewarm)\n"
    "  --device N       the GPU to test (default 0)\n"
    "  --seed N         replay the inputs of an earlier run (its seed is printed)\n"
    "  --allow-no-gpu   without a GPU, print why and exit 0 (default: exit 2)\n",
    &run_selftest,
};

}  // namespace lowbit::cli
