// The in-process kernel cache of one context: key -> loaded module, with one
// compile per key at a time (single flight). Below it: the disk store, then
// NVRTC on a miss. No lock is held while compiling or loading.
#pragma once

#include <cuda.h>

#include <atomic>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "cache/disk_store.hpp"
#include "common/log.hpp"
#include "jit/compiler.hpp"
#include "jit/kernel_spec.hpp"
#include "jit/target.hpp"

namespace lowbit {

struct CacheCounters {
  std::atomic<uint64_t> memory_hits{0};
  std::atomic<uint64_t> disk_hits{0};
  std::atomic<uint64_t> misses{0};
  std::atomic<uint64_t> compiles{0};
  std::atomic<uint64_t> compile_failures{0};
  std::atomic<uint64_t> damaged{0};
  std::atomic<uint64_t> compile_us{0};
};

// Where a kernel came from for one request.
enum class KernelOrigin { Memory, Disk, Compiled };
const char* origin_name(KernelOrigin origin);

// A compiled kernel, loaded into the context's CUDA context (module and
// function are null on an offline context). Immutable once published.
struct LoadedKernel {
  std::string name;           // KernelSpec::name()
  std::string key;            // hex base key + "-" + NVRTC version
  std::string metadata;       // JSON recorded at compile time
  PtxasReport report;
  bool ptx_only = false;
  CUcontext context = nullptr;
  CUmodule module = nullptr;
  CUfunction function = nullptr;
  int registers = -1;         // from the driver when loaded, else from ptxas
  ~LoadedKernel();
};

class KernelCache {
 public:
  // `context` is null for offline targets; `disk` may be null (memory only).
  KernelCache(const Target& target, CUcontext context, DiskStore* disk, const Logger& logger,
              CacheCounters& counters);

  struct Result {
    std::shared_ptr<const LoadedKernel> kernel;
    KernelOrigin origin;
  };
  // Returns the kernel for `spec`, loading or compiling it as needed. Threads
  // asking for a key that is being built wait for that build.
  Result get(const KernelSpec& spec);

 private:
  struct Slot {
    std::mutex mutex;
    std::condition_variable ready;
    bool done = false;
    std::shared_ptr<const LoadedKernel> kernel;
    std::exception_ptr error;
  };
  Result build(const KernelSpec& spec);
  std::shared_ptr<LoadedKernel> load_entry(const CacheEntry& entry, const std::string& name, std::string* problem);

  Target target_;
  CUcontext context_;
  DiskStore* disk_;
  const Logger& logger_;
  CacheCounters& counters_;
  std::mutex mutex_;
  std::unordered_map<std::string, std::shared_ptr<Slot>> slots_;  // by KernelSpec::identity()
};

}  // namespace lowbit
