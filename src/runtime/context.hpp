// A lowbit context: one device (or offline target), its CUDA context, its
// kernel cache and logger. Shared by the plans made from it.
#pragma once

#include <cuda.h>

#include <memory>
#include <string>

#include "cache/disk_store.hpp"
#include "cache/kernel_cache.hpp"
#include "common/log.hpp"
#include "ops/op_plan.hpp"

namespace lowbit {

struct ContextConfig {
  std::string cache_dir;  // "" = default
  int32_t cache_mode = LOWBIT_CACHE_READ_WRITE;
  uint64_t cache_max_bytes = 0;
  lowbit_log_callback log_callback = nullptr;
  void* log_user_data = nullptr;
  int32_t log_level = LOWBIT_LOG_WARN;
};

class Context {
 public:
  // Device ordinal (primary context), the thread's current context, or an
  // offline target. Throw NO_DEVICE / INVALID_ARGUMENT / CUDA_ERROR.
  static std::shared_ptr<Context> on_device(int ordinal, const ContextConfig& config);
  static std::shared_ptr<Context> on_current(const ContextConfig& config);
  static std::shared_ptr<Context> offline(const std::string& arch, const ContextConfig& config);
  ~Context();

  const DeviceTraits& traits() const { return traits_; }
  bool offline() const { return traits_.offline; }
  CUcontext cu_context() const { return cu_context_; }
  KernelCache& kernels() { return *kernels_; }
  DiskStore* disk() { return disk_.get(); }
  const Logger& logger() const { return logger_; }
  const CacheCounters& counters() const { return counters_; }
  void fill_info(lowbit_device_info* info) const;

 private:
  Context(const ContextConfig& config);
  void init_cache(const ContextConfig& config);
  void init_device(CUdevice device);

  Logger logger_;
  DeviceTraits traits_;
  int ordinal_ = -1;
  CUdevice device_ = 0;
  CUcontext cu_context_ = nullptr;
  bool retained_primary_ = false;
  std::string device_name_;
  uint64_t global_memory_ = 0, l2_bytes_ = 0;
  CacheCounters counters_;
  std::unique_ptr<DiskStore> disk_;
  std::unique_ptr<KernelCache> kernels_;
};

}  // namespace lowbit
