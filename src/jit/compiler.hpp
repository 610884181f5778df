// Compiles one rendered kernel with NVRTC into a cubin (or PTX when the GPU is
// newer than NVRTC) and reads ptxas's resource report from the log.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lowbit {

struct PtxasReport {
  int registers = -1;  // -1: not reported
  int stack_frame_bytes = 0;
  int spill_store_bytes = 0;
  int spill_load_bytes = 0;
  int shared_bytes = 0;
  bool spills() const { return stack_frame_bytes > 0 || spill_store_bytes > 0 || spill_load_bytes > 0; }
};

// Parses the `-Xptxas=-v` lines of an NVRTC log.
PtxasReport parse_ptxas_report(const std::string& log);

struct CompileOutput {
  std::vector<uint8_t> payload;  // cubin, or PTX text when ptx_only
  bool ptx_only = false;
  std::string log;
  PtxasReport report;
  double milliseconds = 0;
};

// Throws NO_COMPILER (NVRTC missing) or COMPILE_FAILED (with the log and the
// source). `name` labels the program in NVRTC diagnostics. NVRTC programs are
// destroyed on every path.
CompileOutput compile_with_nvrtc(const std::string& source, const std::string& name,
                                 const std::vector<std::string>& options, bool ptx_only);

}  // namespace lowbit
