// A kernel specialization: which template to instantiate and with which
// compile-time configuration. The generated source is a few lines rendered
// from it (render.cpp); everything the kernel is specialized on lives here.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "common/sha256.hpp"
#include "jit/target.hpp"

namespace lowbit {

struct KernelSpec {
  std::string family;       // "quantize": names logs and cache metadata
  std::string header;       // kernel template to include, e.g. "quantize.cuh"
  std::string function;     // device function template the entry calls, e.g. "lowbit::quantize_kernel"
  std::string params_type;  // the entry's single by-value argument, e.g. "lowbit::QuantizeParams"
  int threads = 256;        // block size, also the __launch_bounds__
  int min_blocks_per_sm = 0;
  // Dynamic shared memory per block (bytes) the launches pass; above 48 KiB
  // the plan raises the function's limit once after loading. Derived from
  // the constants, so not part of the identity.
  int dynamic_shared_bytes = 0;
  // The config struct: `using NAME = VALUE;` lines, then `static constexpr
  // auto NAME = VALUE;` lines.
  std::vector<std::pair<std::string, std::string>> types;
  std::vector<std::pair<std::string, std::string>> constants;
  std::vector<std::string> options;  // extra NVRTC options (e.g. "-fmad=false")
  // Whether ptxas may report spills or a stack frame for this kernel without
  // it being a bug (checked by the unit tests).
  bool spills_expected = false;

  // "quantize<XT=bf16,kOp=1,...>": a readable one-line name.
  std::string name() const;
  // Every field that reaches the generated source or the compile options,
  // joined: equal identities give equal kernels (for a given target).
  std::string identity() const;
};

// The complete source NVRTC compiles for `spec`.
std::string render_source(const KernelSpec& spec);

// Every NVRTC option used for `spec` on `target` (arch, language, ptxas
// report, the spec's own), in order. Part of the cache key.
std::vector<std::string> compile_options(const KernelSpec& spec, const Target& target, bool* ptx_only);

// The base cache key: SHA-256 over the cache format version, the embedded
// templates digest, the source, the options and the target. The NVRTC
// version completes the key outside this hash (see disk_store.hpp).
Digest base_key(const std::string& source, const std::vector<std::string>& options, const Target& target);

}  // namespace lowbit
