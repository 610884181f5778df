#include "ops/op_plan.hpp"

#include "common/error.hpp"
#include "cuda/driver.hpp"

namespace lowbit {

namespace {

const char* role_name(lowbit_arg_role role) {
  switch (role) {
    case LOWBIT_ARG_X: return "LOWBIT_ARG_X";
    case LOWBIT_ARG_Q: return "LOWBIT_ARG_Q";
    case LOWBIT_ARG_SCALE: return "LOWBIT_ARG_SCALE";
    case LOWBIT_ARG_ZERO_POINT: return "LOWBIT_ARG_ZERO_POINT";
    case LOWBIT_ARG_DY: return "LOWBIT_ARG_DY";
    case LOWBIT_ARG_DX: return "LOWBIT_ARG_DX";
    case LOWBIT_ARG_Y: return "LOWBIT_ARG_Y";
    case LOWBIT_ARG_W: return "LOWBIT_ARG_W";
    case LOWBIT_ARG_W_SCALE: return "LOWBIT_ARG_W_SCALE";
    case LOWBIT_ARG_W_ZERO: return "LOWBIT_ARG_W_ZERO";
    case LOWBIT_ARG_G_IDX: return "LOWBIT_ARG_G_IDX";
    case LOWBIT_ARG_BIAS: return "LOWBIT_ARG_BIAS";
    case LOWBIT_ARG_W_NATIVE: return "LOWBIT_ARG_W_NATIVE";
    case LOWBIT_ARG_ROWS: return "LOWBIT_ARG_ROWS";
    default: return "unknown role";
  }
}

}  // namespace

uint64_t RunArgs::get(lowbit_arg_role role, const char* what, bool required, uint64_t alignment) const {
  uint64_t value = 0;
  for (size_t i = 0; i < count_; ++i) {
    if (args_[i].role == role) {
      value = args_[i].ptr;
      break;
    }
  }
  if (value == 0) {
    if (required) fail(LOWBIT_INVALID_ARGUMENT, "missing argument {} ({}): pass its device pointer", role_name(role), what);
    return 0;
  }
  if (alignment > 1 && value % alignment != 0)
    fail(LOWBIT_MISALIGNED, "{} ({}) = 0x{:x} is not aligned to {} bytes as the plan requires (descriptor alignment)",
         role_name(role), what, value, alignment);
  return value;
}

void launch_kernel(CUfunction function, unsigned grid_x, unsigned grid_y, unsigned grid_z, unsigned block,
                   size_t shared_bytes, CUstream stream, void* params, bool programmatic, unsigned cluster_y) {
  void* kernel_params[] = {params};
  // Clusters exist only through cuLaunchKernelEx, which every driver that
  // runs sm_90 has (CUDA 12.0); a plan asks for them only on sm_90+.
  if (cluster_y > 1 && driver().LaunchKernelEx == nullptr)
    fail(LOWBIT_CUDA_ERROR, "this plan launches thread block clusters, which need cuLaunchKernelEx (a CUDA 12 driver)");
  // Without cuLaunchKernelEx an ordinary launch is the same computation: the
  // kernel's griddepcontrol.wait returns at once when nothing overlaps it.
  if ((!programmatic && cluster_y <= 1) || driver().LaunchKernelEx == nullptr) {
    cu_check(driver().LaunchKernel(function, grid_x, grid_y, grid_z, block, 1, 1, unsigned(shared_bytes), stream,
                                   kernel_params, nullptr),
             "cuLaunchKernel");
    return;
  }
  CUlaunchAttribute attributes[2]{};
  unsigned count = 0;
  if (programmatic) {
    attributes[count].id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attributes[count++].value.programmaticStreamSerializationAllowed = 1;
  }
  if (cluster_y > 1) {
    attributes[count].id = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
    attributes[count].value.clusterDim.x = 1;
    attributes[count].value.clusterDim.y = cluster_y;
    attributes[count++].value.clusterDim.z = 1;
  }
  CUlaunchConfig config{};
  config.gridDimX = grid_x;
  config.gridDimY = grid_y;
  config.gridDimZ = grid_z;
  config.blockDimX = block;
  config.blockDimY = 1;
  config.blockDimZ = 1;
  config.sharedMemBytes = unsigned(shared_bytes);
  config.hStream = stream;
  config.attrs = attributes;
  config.numAttrs = count;
  cu_check(driver().LaunchKernelEx(&config, function, kernel_params, nullptr),
           cluster_y > 1 ? "cuLaunchKernelEx (thread block clusters)" : "cuLaunchKernelEx (programmatic launch)");
}

void check_struct_size(uint32_t struct_size, size_t minimum, size_t current, const char* what) {
  // Smaller: a caller built against an older header (fields it lacks take
  // their defaults). Larger: built against a newer lowbit than this one,
  // whose extra fields this library cannot honour.
  if (struct_size < minimum || struct_size > current)
    fail(LOWBIT_INVALID_ARGUMENT, "{}.struct_size is {} (this lowbit expects {}..{}): call {}_init() first", what,
         struct_size, minimum, current, what);
}

int env_knob(const char* variable, const char* key) {
  int value = 0;
  bool found = false;
  for_each_env_knob(variable, [&](std::string_view k, int v) {
    if (!found && k == key) {
      value = v;
      found = true;
    }
  });
  return value;
}

int shared_memory_limit(int sm) {
  if (sm == 80 || sm == 87) return 163 * 1024;
  if (sm == 90 || sm == 100 || sm == 103) return 227 * 1024;
  return 99 * 1024;  // sm_86, 89, 110, 120, 121 and unknown
}

}  // namespace lowbit
