#include "cuda/driver.hpp"

#include <dlfcn.h>

#include <cstdlib>

#include "common/error.hpp"

namespace lowbit {

namespace {

// Versioned names: cuda.h maps e.g. cuCtxPushCurrent to cuCtxPushCurrent_v2
// through macros, which do not apply to dlsym strings.
template <typename Fn>
bool bind(void* lib, Fn& fn, const char* name, std::string& problem) {
  fn = reinterpret_cast<Fn>(dlsym(lib, name));
  if (fn == nullptr && problem.empty()) problem = fmt::format("libcuda lacks symbol {}", name);
  return fn != nullptr;
}

DriverApi load_driver() {
  DriverApi api;
  const char* override_path = std::getenv("LOWBIT_CUDA_LIBRARY");
  const char* path = (override_path != nullptr && *override_path != '\0') ? override_path : "libcuda.so.1";
  void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    const char* err = dlerror();
    api.problem = fmt::format("the NVIDIA driver library {} could not be loaded ({}); is the NVIDIA driver installed?",
                              path, err != nullptr ? err : "unknown error");
    return api;
  }
  std::string& p = api.problem;
  bind(lib, api.Init, "cuInit", p);
  bind(lib, api.DriverGetVersion, "cuDriverGetVersion", p);
  bind(lib, api.GetErrorName, "cuGetErrorName", p);
  bind(lib, api.GetErrorString, "cuGetErrorString", p);
  bind(lib, api.DeviceGetCount, "cuDeviceGetCount", p);
  bind(lib, api.DeviceGet, "cuDeviceGet", p);
  bind(lib, api.DeviceGetName, "cuDeviceGetName", p);
  bind(lib, api.DeviceGetAttribute, "cuDeviceGetAttribute", p);
  bind(lib, api.DeviceTotalMem, "cuDeviceTotalMem_v2", p);
  bind(lib, api.DevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain", p);
  bind(lib, api.DevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2", p);
  bind(lib, api.CtxGetCurrent, "cuCtxGetCurrent", p);
  bind(lib, api.CtxSetCurrent, "cuCtxSetCurrent", p);
  bind(lib, api.CtxPushCurrent, "cuCtxPushCurrent_v2", p);
  bind(lib, api.CtxPopCurrent, "cuCtxPopCurrent_v2", p);
  bind(lib, api.CtxGetDevice, "cuCtxGetDevice", p);
  bind(lib, api.CtxSynchronize, "cuCtxSynchronize", p);
  bind(lib, api.ModuleLoadData, "cuModuleLoadData", p);
  bind(lib, api.ModuleUnload, "cuModuleUnload", p);
  bind(lib, api.ModuleGetFunction, "cuModuleGetFunction", p);
  bind(lib, api.FuncGetAttribute, "cuFuncGetAttribute", p);
  bind(lib, api.FuncSetAttribute, "cuFuncSetAttribute", p);
  bind(lib, api.LaunchKernel, "cuLaunchKernel", p);
  // Optional (drivers before CUDA 12 lack it): launches that asked for
  // programmatic serialization then run as ordinary launches.
  api.LaunchKernelEx = reinterpret_cast<decltype(api.LaunchKernelEx)>(dlsym(lib, "cuLaunchKernelEx"));
  bind(lib, api.MemAlloc, "cuMemAlloc_v2", p);
  bind(lib, api.MemFree, "cuMemFree_v2", p);
  bind(lib, api.MemcpyHtoD, "cuMemcpyHtoD_v2", p);
  bind(lib, api.MemcpyDtoH, "cuMemcpyDtoH_v2", p);
  bind(lib, api.MemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2", p);
  bind(lib, api.MemsetD8, "cuMemsetD8_v2", p);
  bind(lib, api.MemsetD8Async, "cuMemsetD8Async", p);
  bind(lib, api.StreamCreate, "cuStreamCreate", p);
  bind(lib, api.StreamDestroy, "cuStreamDestroy_v2", p);
  bind(lib, api.StreamSynchronize, "cuStreamSynchronize", p);
  bind(lib, api.EventCreate, "cuEventCreate", p);
  bind(lib, api.EventDestroy, "cuEventDestroy_v2", p);
  bind(lib, api.EventRecord, "cuEventRecord", p);
  bind(lib, api.EventSynchronize, "cuEventSynchronize", p);
  bind(lib, api.EventElapsedTime, "cuEventElapsedTime_v2", p);
  if (!p.empty()) return api;
  CUresult r = api.Init(0);
  if (r != CUDA_SUCCESS) {
    const char* name = nullptr;
    api.GetErrorName(r, &name);
    api.problem = fmt::format("cuInit failed: {} (no usable GPU?)", name != nullptr ? name : "unknown");
    return api;
  }
  api.DriverGetVersion(&api.version);
  api.available = true;
  // The library handle is kept for the life of the process on purpose: the
  // function pointers above must never dangle.
  return api;
}

}  // namespace

const DriverApi& driver() {
  static const DriverApi api = load_driver();
  return api;
}

const DriverApi& require_driver() {
  const DriverApi& api = driver();
  if (!api.available) throw Error(LOWBIT_NO_DEVICE, api.problem);
  return api;
}

std::string cu_result_text(CUresult r) {
  const DriverApi& api = driver();
  const char* name = nullptr;
  const char* text = nullptr;
  if (api.GetErrorName != nullptr) api.GetErrorName(r, &name);
  if (api.GetErrorString != nullptr) api.GetErrorString(r, &text);
  return fmt::format("{} ({})", name != nullptr ? name : fmt::format("CUresult {}", int(r)),
                     text != nullptr ? text : "no description");
}

void cu_check(CUresult r, const char* what) {
  if (r == CUDA_SUCCESS) return;
  lowbit_status status = LOWBIT_CUDA_ERROR;
  if (r == CUDA_ERROR_OUT_OF_MEMORY) status = LOWBIT_OUT_OF_MEMORY;
  if (r == CUDA_ERROR_NO_DEVICE || r == CUDA_ERROR_INVALID_DEVICE || r == CUDA_ERROR_NOT_INITIALIZED)
    status = LOWBIT_NO_DEVICE;
  throw Error(status, fmt::format("{} failed: {}", what, cu_result_text(r)));
}

ScopedContext::ScopedContext(CUcontext ctx) {
  const DriverApi& api = driver();
  CUcontext current = nullptr;
  api.CtxGetCurrent(&current);
  if (current != ctx) {
    cu_check(api.CtxPushCurrent(ctx), "cuCtxPushCurrent");
    pushed_ = true;
  }
}

ScopedContext::~ScopedContext() {
  if (pushed_) {
    CUcontext popped = nullptr;
    driver().CtxPopCurrent(&popped);
  }
}

}  // namespace lowbit
