#include "jit/compiler.hpp"

#include <chrono>
#include <cstdlib>
#include <memory>

#include "common/error.hpp"
#include "jit/embedded.hpp"
#include "jit/nvrtc.hpp"

namespace lowbit {

namespace {

// Reads the integer just before `suffix` at each occurrence and keeps the maximum.
int max_number_before(const std::string& log, const std::string& suffix) {
  int best = -1;
  for (size_t pos = log.find(suffix); pos != std::string::npos; pos = log.find(suffix, pos + 1)) {
    size_t end = pos;
    while (end > 0 && log[end - 1] == ' ') --end;
    size_t begin = end;
    while (begin > 0 && log[begin - 1] >= '0' && log[begin - 1] <= '9') --begin;
    if (begin == end) continue;
    best = std::max(best, std::atoi(log.substr(begin, end - begin).c_str()));
  }
  return best;
}

struct ProgramDeleter {
  void operator()(nvrtcProgram* p) const {
    nvrtc().DestroyProgram(p);
    delete p;
  }
};

}  // namespace

PtxasReport parse_ptxas_report(const std::string& log) {
  PtxasReport r;
  r.registers = max_number_before(log, "registers");
  r.stack_frame_bytes = std::max(0, max_number_before(log, "bytes stack frame"));
  r.spill_store_bytes = std::max(0, max_number_before(log, "bytes spill stores"));
  r.spill_load_bytes = std::max(0, max_number_before(log, "bytes spill loads"));
  r.shared_bytes = std::max(0, max_number_before(log, "bytes smem"));
  return r;
}

CompileOutput compile_with_nvrtc(const std::string& source, const std::string& name,
                                 const std::vector<std::string>& options, bool ptx_only) {
  const NvrtcApi& api = require_nvrtc();
  const auto start = std::chrono::steady_clock::now();

  std::vector<const char*> header_names, header_sources;
  for (const EmbeddedFile& f : embedded_templates()) {
    header_names.push_back(f.name);
    header_sources.push_back(f.data);
  }
  std::unique_ptr<nvrtcProgram, ProgramDeleter> program(new nvrtcProgram(nullptr));
  nvrtcResult r = api.CreateProgram(program.get(), source.c_str(), (name + ".cu").c_str(), int(header_names.size()),
                                    header_sources.data(), header_names.data());
  if (r != NVRTC_SUCCESS) {
    *program = nullptr;  // nothing to destroy
    fail(r == NVRTC_ERROR_OUT_OF_MEMORY ? LOWBIT_OUT_OF_MEMORY : LOWBIT_INTERNAL, "nvrtcCreateProgram failed: {}",
         api.GetErrorString(r));
  }
  std::vector<const char*> option_ptrs;
  for (const std::string& o : options) option_ptrs.push_back(o.c_str());
  // -minimal (NVRTC >= 12.4) skips the implicit runtime-API declarations that
  // lowbit's kernels never use, saving front-end time. It changes no output,
  // so it is added here, outside the cache key: a process without NVRTC must
  // compute the same key as the one that compiled the kernel.
  if (api.version >= 12040) option_ptrs.push_back("-minimal");
  const nvrtcResult compiled = api.CompileProgram(*program, int(option_ptrs.size()), option_ptrs.data());

  CompileOutput out;
  size_t log_size = 0;
  if (api.GetProgramLogSize(*program, &log_size) == NVRTC_SUCCESS && log_size > 1) {
    out.log.resize(log_size);
    api.GetProgramLog(*program, out.log.data());
    out.log.resize(log_size - 1);
  }
  if (compiled != NVRTC_SUCCESS) {
    std::string opts;
    for (const std::string& o : options) opts += " " + o;
    fail(LOWBIT_COMPILE_FAILED, "NVRTC failed to compile {} ({}), options:{}\n--- log ---\n{}\n--- source ---\n{}", name,
         api.GetErrorString(compiled), opts, out.log, source);
  }
  size_t size = 0;
  if (ptx_only) {
    api.GetPTXSize(*program, &size);
    out.payload.resize(size);
    if (size > 0) api.GetPTX(*program, reinterpret_cast<char*>(out.payload.data()));
  } else {
    api.GetCUBINSize(*program, &size);
    out.payload.resize(size);
    if (size > 0) api.GetCUBIN(*program, reinterpret_cast<char*>(out.payload.data()));
  }
  if (out.payload.empty()) fail(LOWBIT_INTERNAL, "NVRTC produced an empty {} for {}", ptx_only ? "PTX" : "cubin", name);
  out.ptx_only = ptx_only;
  out.report = parse_ptxas_report(out.log);
  out.milliseconds = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return out;
}

}  // namespace lowbit
