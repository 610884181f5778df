#include "jit/nvrtc.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>

#include "common/error.hpp"

namespace lowbit {

namespace {

std::vector<std::string> candidate_paths() {
  std::vector<std::string> paths;
  if (const char* p = std::getenv("LOWBIT_NVRTC_LIBRARY"); p != nullptr && *p != '\0') {
    // An explicit choice is the only candidate: tests rely on it to simulate
    // a machine without NVRTC.
    paths.emplace_back(p);
    return paths;
  }
  for (const char* name : {"libnvrtc.so.13", "libnvrtc.so.12"}) paths.emplace_back(name);
  for (const char* var : {"CUDA_HOME", "CUDA_PATH"}) {
    if (const char* root = std::getenv(var); root != nullptr && *root != '\0') {
      for (const char* name : {"libnvrtc.so.13", "libnvrtc.so.12"})
        paths.push_back(std::string(root) + "/lib64/" + name);
    }
  }
  for (const char* name : {"libnvrtc.so.13", "libnvrtc.so.12"})
    paths.push_back(std::string("/usr/local/cuda/lib64/") + name);
  return paths;
}

template <typename Fn>
void bind(void* lib, Fn& fn, const char* name, std::string& problem) {
  fn = reinterpret_cast<Fn>(dlsym(lib, name));
  if (fn == nullptr && problem.empty()) problem = fmt::format("NVRTC lacks symbol {}", name);
}

NvrtcApi load_nvrtc() {
  NvrtcApi api;
  void* lib = nullptr;
  std::string tried;
  for (const std::string& path : candidate_paths()) {
    lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib != nullptr) {
      api.path = path;
      break;
    }
    if (!tried.empty()) tried += ", ";
    tried += path;
  }
  if (lib == nullptr) {
    api.problem = fmt::format(
        "NVRTC could not be loaded (tried {}); install the CUDA NVRTC runtime (e.g. cuda-nvrtc-13-0) "
        "or set LOWBIT_NVRTC_LIBRARY",
        tried);
    return api;
  }
  std::string& p = api.problem;
  bind(lib, api.Version, "nvrtcVersion", p);
  bind(lib, api.GetErrorString, "nvrtcGetErrorString", p);
  bind(lib, api.GetNumSupportedArchs, "nvrtcGetNumSupportedArchs", p);
  bind(lib, api.GetSupportedArchs, "nvrtcGetSupportedArchs", p);
  bind(lib, api.CreateProgram, "nvrtcCreateProgram", p);
  bind(lib, api.DestroyProgram, "nvrtcDestroyProgram", p);
  bind(lib, api.CompileProgram, "nvrtcCompileProgram", p);
  bind(lib, api.GetProgramLogSize, "nvrtcGetProgramLogSize", p);
  bind(lib, api.GetProgramLog, "nvrtcGetProgramLog", p);
  bind(lib, api.GetCUBINSize, "nvrtcGetCUBINSize", p);
  bind(lib, api.GetCUBIN, "nvrtcGetCUBIN", p);
  bind(lib, api.GetPTXSize, "nvrtcGetPTXSize", p);
  bind(lib, api.GetPTX, "nvrtcGetPTX", p);
  if (!p.empty()) return api;
  int major = 0, minor = 0;
  if (api.Version(&major, &minor) != NVRTC_SUCCESS) {
    api.problem = "nvrtcVersion failed";
    return api;
  }
  api.version = major * 1000 + minor * 10;
  int count = 0;
  if (api.GetNumSupportedArchs(&count) == NVRTC_SUCCESS && count > 0) {
    api.archs.resize(size_t(count));
    if (api.GetSupportedArchs(api.archs.data()) != NVRTC_SUCCESS) api.archs.clear();
    std::sort(api.archs.begin(), api.archs.end());
  }
  api.available = true;
  return api;
}

}  // namespace

bool NvrtcApi::supports(int sm) const { return std::find(archs.begin(), archs.end(), sm) != archs.end(); }

const NvrtcApi& nvrtc() {
  static const NvrtcApi api = load_nvrtc();
  return api;
}

const NvrtcApi& require_nvrtc() {
  const NvrtcApi& api = nvrtc();
  if (!api.available) throw Error(LOWBIT_NO_COMPILER, api.problem);
  return api;
}

}  // namespace lowbit
