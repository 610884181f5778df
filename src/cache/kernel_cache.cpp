#include "cache/kernel_cache.hpp"

#include <ctime>

#include "common/error.hpp"
#include "common/json.hpp"
#include "cuda/driver.hpp"
#include "jit/nvrtc.hpp"

namespace lowbit {

const char* origin_name(KernelOrigin origin) {
  switch (origin) {
    case KernelOrigin::Memory: return "memory";
    case KernelOrigin::Disk: return "disk";
    case KernelOrigin::Compiled: return "compiled";
  }
  return "unknown";
}

LoadedKernel::~LoadedKernel() {
  if (module != nullptr && driver().available) {
    // Unloading needs the owning context current; ignore failures at
    // teardown (the context may already be gone with the process).
    CUcontext current = nullptr;
    driver().CtxGetCurrent(&current);
    bool pushed = current != context && driver().CtxPushCurrent(context) == CUDA_SUCCESS;
    driver().ModuleUnload(module);
    if (pushed) {
      CUcontext popped = nullptr;
      driver().CtxPopCurrent(&popped);
    }
  }
}

KernelCache::KernelCache(const Target& target, CUcontext context, DiskStore* disk, const Logger& logger,
                         CacheCounters& counters)
    : target_(target), context_(context), disk_(disk), logger_(logger), counters_(counters) {}

KernelCache::Result KernelCache::get(const KernelSpec& spec) {
  // In-process lookups go by the spec's identity: the source, options and key
  // are functions of it (the target and NVRTC are fixed for this cache), so a
  // memory hit never renders or hashes anything.
  const std::string identity = spec.identity();

  std::shared_ptr<Slot> slot;
  bool builder = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = slots_.find(identity);
    if (it == slots_.end()) {
      slot = std::make_shared<Slot>();
      slots_.emplace(identity, slot);
      builder = true;
    } else {
      slot = it->second;
    }
  }
  if (!builder) {
    std::unique_lock<std::mutex> lock(slot->mutex);
    slot->ready.wait(lock, [&] { return slot->done; });
    // The build we waited for failed: report the same error. The slot is
    // already gone from the map, so a later call tries again.
    if (slot->error) std::rethrow_exception(slot->error);
    counters_.memory_hits++;
    return {slot->kernel, KernelOrigin::Memory};
  }

  Result result;
  try {
    result = build(spec);
  } catch (...) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      slots_.erase(identity);
    }
    std::lock_guard<std::mutex> lock(slot->mutex);
    slot->error = std::current_exception();
    slot->done = true;
    slot->ready.notify_all();
    throw;
  }
  std::lock_guard<std::mutex> lock(slot->mutex);
  slot->kernel = result.kernel;
  slot->done = true;
  slot->ready.notify_all();
  return result;
}

std::shared_ptr<LoadedKernel> KernelCache::load_entry(const CacheEntry& entry, const std::string& name,
                                                      std::string* problem) {
  auto kernel = std::make_shared<LoadedKernel>();
  kernel->name = name;
  kernel->key = DiskStore::file_name(entry.base_key, entry.nvrtc_version);
  kernel->key.resize(kernel->key.size() - 4);  // drop ".lbk"
  kernel->metadata = entry.metadata;
  kernel->ptx_only = entry.kind == PayloadKind::Ptx;
  kernel->report.registers = int(json_get_int(entry.metadata, "registers").value_or(-1));
  kernel->report.spill_store_bytes = int(json_get_int(entry.metadata, "spill_stores").value_or(0));
  kernel->report.spill_load_bytes = int(json_get_int(entry.metadata, "spill_loads").value_or(0));
  kernel->report.stack_frame_bytes = int(json_get_int(entry.metadata, "stack_frame").value_or(0));
  kernel->report.shared_bytes = int(json_get_int(entry.metadata, "shared_bytes").value_or(0));
  kernel->registers = kernel->report.registers;
  if (context_ == nullptr) return kernel;  // offline: nothing to load

  const DriverApi& api = require_driver();
  ScopedContext scope(context_);
  std::vector<uint8_t> image = entry.payload;
  if (entry.kind == PayloadKind::Ptx && (image.empty() || image.back() != 0)) image.push_back(0);
  CUmodule module = nullptr;
  CUresult r = api.ModuleLoadData(&module, image.data());
  if (r != CUDA_SUCCESS) {
    if (r == CUDA_ERROR_OUT_OF_MEMORY) cu_check(r, "cuModuleLoadData");
    *problem = cu_result_text(r);
    return nullptr;
  }
  kernel->context = context_;
  kernel->module = module;
  r = api.ModuleGetFunction(&kernel->function, module, "lowbit_kernel");
  if (r != CUDA_SUCCESS) {
    *problem = "cuModuleGetFunction: " + cu_result_text(r);
    return nullptr;  // ~LoadedKernel unloads the module
  }
  int regs = 0;
  if (api.FuncGetAttribute(&regs, CU_FUNC_ATTRIBUTE_NUM_REGS, kernel->function) == CUDA_SUCCESS)
    kernel->registers = regs;
  return kernel;
}

KernelCache::Result KernelCache::build(const KernelSpec& spec) {
  const std::string source = render_source(spec);
  bool ptx_only = false;
  const std::vector<std::string> options = compile_options(spec, target_, &ptx_only);
  const Digest key = base_key(source, options, target_);
  const std::string name = spec.name();
  const int nvrtc_version = nvrtc().available ? nvrtc().version : 0;

  auto try_disk = [&]() -> std::shared_ptr<LoadedKernel> {
    if (disk_ == nullptr) return nullptr;
    std::optional<CacheEntry> entry = disk_->load(key, nvrtc_version);
    if (!entry) return nullptr;
    std::string problem;
    std::shared_ptr<LoadedKernel> kernel = load_entry(*entry, name, &problem);
    if (kernel) return kernel;
    // Damage is a miss: a cubin the driver rejects is removed and rebuilt.
    logger_.warn("cache entry for {} rejected by the driver ({}); removing and recompiling", name, problem);
    disk_->remove(key, entry->nvrtc_version);
    counters_.damaged++;
    return nullptr;
  };

  if (auto kernel = try_disk()) {
    counters_.disk_hits++;
    return {kernel, KernelOrigin::Disk};
  }
  counters_.misses++;
  if (!nvrtc().available) {
    fail(LOWBIT_NO_COMPILER, "kernel {} is not in the cache and cannot be compiled: {}", name, nvrtc().problem);
  }
  // Another process may be compiling the same kernel: wait for its lock, then
  // look again before compiling ourselves.
  DiskStore::KeyLock lock;
  if (disk_ != nullptr) {
    lock = disk_->lock(key);
    if (auto kernel = try_disk()) {
      counters_.disk_hits++;
      return {kernel, KernelOrigin::Disk};
    }
  }
  logger_.info("compiling {} for {}", name, target_.name());
  CompileOutput out;
  try {
    out = compile_with_nvrtc(source, name, options, ptx_only);
  } catch (const Error&) {
    counters_.compile_failures++;
    throw;
  }
  counters_.compiles++;
  counters_.compile_us += uint64_t(out.milliseconds * 1000.0);
  logger_.info("compiled {} for {} in {:.1f} ms ({} registers)", name, target_.name(), out.milliseconds,
               out.report.registers);

  std::string opts;
  for (const std::string& o : options) opts += (opts.empty() ? "" : " ") + o;
  CacheEntry entry;
  entry.base_key = key;
  entry.nvrtc_version = nvrtc_version;
  entry.kind = out.ptx_only ? PayloadKind::Ptx : PayloadKind::Cubin;
  entry.payload = std::move(out.payload);
  entry.metadata = JsonObject()
                       .add("kernel", name)
                       .add("family", spec.family)
                       .add("arch", target_.name())
                       .add("nvrtc", int64_t(nvrtc_version))
                       .add("options", opts)
                       .add("compile_ms", out.milliseconds)
                       .add("registers", int64_t(out.report.registers))
                       .add("spill_stores", int64_t(out.report.spill_store_bytes))
                       .add("spill_loads", int64_t(out.report.spill_load_bytes))
                       .add("stack_frame", int64_t(out.report.stack_frame_bytes))
                       .add("shared_bytes", int64_t(out.report.shared_bytes))
                       .add("created", int64_t(std::time(nullptr)))
                       .str();
  if (disk_ != nullptr) disk_->store(entry);
  std::string problem;
  std::shared_ptr<LoadedKernel> kernel = load_entry(entry, name, &problem);
  if (!kernel) fail(LOWBIT_CUDA_ERROR, "the driver rejected the freshly compiled {}: {}", name, problem);
  kernel->report = out.report;
  return {kernel, KernelOrigin::Compiled};
}

}  // namespace lowbit
