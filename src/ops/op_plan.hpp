// What every op family implements (the CUTLASS-style can_implement /
// get_workspace_size / run split): a family's create function checks the
// descriptor and selects kernel specs; the plan then launches them with the
// caller's pointers. Families register in registry.cpp.
#pragma once

#include <cuda.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "jit/kernel_spec.hpp"
#include "jit/target.hpp"
#include "lowbit/lowbit.h"

namespace lowbit {

struct DeviceTraits {
  Target target;
  int sm_count = 132;  // offline contexts assume a large GPU (launch shape only)
  bool offline = false;
};

// The caller's role-tagged arguments for one run. Lookups are a scan of a
// handful of entries: cheaper than any map at this size.
class RunArgs {
 public:
  RunArgs(const lowbit_arg* args, size_t count) : args_(args), count_(count) {}
  // The pointer for `role`, 0 if absent. Throws INVALID_ARGUMENT if `required`
  // and absent or 0; MISALIGNED if not a multiple of `alignment`.
  uint64_t get(lowbit_arg_role role, const char* what, bool required, uint64_t alignment) const;

 private:
  const lowbit_arg* args_;
  size_t count_;
};

class OpPlan {
 public:
  virtual ~OpPlan() = default;
  // "quantize" etc.
  virtual const char* family() const = 0;
  // The kernels to load, in launch order; fixed at creation.
  virtual const std::vector<KernelSpec>& kernels() const = 0;
  virtual size_t workspace_size() const { return 0; }
  // Enqueues the op. `functions` holds the loaded kernels in kernels() order.
  // Must not allocate, compile or synchronize.
  virtual void run(const RunArgs& args, uint64_t workspace, size_t workspace_bytes, const CUfunction* functions,
                   CUstream stream) const = 0;
  // The problem and the chosen configuration as one JSON object, for
  // lowbit_plan_describe.
  virtual std::string describe() const = 0;
};

// Validates `op` and creates the family's plan. Throws Error with the status
// for bad descriptors (INVALID_ARGUMENT, INVALID_PROBLEM, UNSUPPORTED).
std::unique_ptr<OpPlan> create_op_plan(const lowbit_op_desc& op, const DeviceTraits& device);

// Runs the CPU reference of `op` on host pointers.
void run_reference(const lowbit_op_desc& op, const lowbit_arg* args, size_t count);

// cuLaunchKernel with error mapping; `params` points to the kernel's single
// parameter struct. `programmatic`: launched with programmatic stream
// serialization (sm_90+), so the kernel may start while the previous kernel
// in the stream is still running; it must execute griddepcontrol.wait before
// touching anything that kernel may write. `cluster_y` > 1: thread block
// clusters of 1 x cluster_y x 1 CTAs (sm_90+; grid_y a multiple of it).
void launch_kernel(CUfunction function, unsigned grid_x, unsigned grid_y, unsigned grid_z, unsigned block,
                   size_t shared_bytes, CUstream stream, void* params, bool programmatic = false,
                   unsigned cluster_y = 1);

// Developer knobs: the environment variable `variable` holding
// "key=int,key=int,..." (tuning sweeps and tests; read at plan creation).
// Calls f(key, value) for each item that has an '=', in order.
template <typename F>
void for_each_env_knob(const char* variable, F&& f) {
  const char* env = std::getenv(variable);
  if (env == nullptr) return;
  const std::string s(env);
  size_t pos = 0;
  while (pos < s.size()) {
    size_t end = s.find(',', pos);
    if (end == std::string::npos) end = s.size();
    const size_t eq = s.find('=', pos);
    if (eq < end) f(std::string_view(s).substr(pos, eq - pos), std::atoi(s.c_str() + eq + 1));
    pos = end + 1;
  }
}
// The first value given for `key` in `variable`'s knobs; 0 when absent.
int env_knob(const char* variable, const char* key);

// Shared memory a block may opt into on `sm` (the driver reports the same
// numbers; a table keeps offline prewarm and online plans equal). Plans also
// use it as the SM's budget when they count resident blocks.
int shared_memory_limit(int sm);

// Checks a descriptor's struct_size: at least the size of the first release
// of the struct (older callers), and not absurd.
void check_struct_size(uint32_t struct_size, size_t minimum, size_t current, const char* what);

}  // namespace lowbit
