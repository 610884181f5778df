// NVRTC, loaded at run time (never linked): $LOWBIT_NVRTC_LIBRARY, else
// libnvrtc.so.13, libnvrtc.so.12, then the same names under $CUDA_HOME,
// $CUDA_PATH and /usr/local/cuda. Without it, cache hits still work and
// misses fail with NO_COMPILER.
#pragma once

#include <nvrtc.h>

#include <string>
#include <vector>

namespace lowbit {

struct NvrtcApi {
  bool available = false;
  std::string problem;     // why not available
  std::string path;        // the library that was loaded
  int version = 0;         // major * 1000 + minor * 10 (13000 for 13.0)
  std::vector<int> archs;  // supported sm numbers, ascending

  decltype(&::nvrtcVersion) Version = nullptr;
  decltype(&::nvrtcGetErrorString) GetErrorString = nullptr;
  decltype(&::nvrtcGetNumSupportedArchs) GetNumSupportedArchs = nullptr;
  decltype(&::nvrtcGetSupportedArchs) GetSupportedArchs = nullptr;
  decltype(&::nvrtcCreateProgram) CreateProgram = nullptr;
  decltype(&::nvrtcDestroyProgram) DestroyProgram = nullptr;
  decltype(&::nvrtcCompileProgram) CompileProgram = nullptr;
  decltype(&::nvrtcGetProgramLogSize) GetProgramLogSize = nullptr;
  decltype(&::nvrtcGetProgramLog) GetProgramLog = nullptr;
  decltype(&::nvrtcGetCUBINSize) GetCUBINSize = nullptr;
  decltype(&::nvrtcGetCUBIN) GetCUBIN = nullptr;
  decltype(&::nvrtcGetPTXSize) GetPTXSize = nullptr;
  decltype(&::nvrtcGetPTX) GetPTX = nullptr;

  bool supports(int sm) const;
  int newest_arch() const { return archs.empty() ? 0 : archs.back(); }
};

// Loaded once per process (thread-safe); never throws: check `available`.
const NvrtcApi& nvrtc();

// Throws Error(NO_COMPILER) with the reason when NVRTC is unavailable.
const NvrtcApi& require_nvrtc();

}  // namespace lowbit
