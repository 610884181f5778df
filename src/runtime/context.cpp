#include "runtime/context.hpp"

#include <cstring>

#include "common/error.hpp"
#include "cuda/driver.hpp"
#include "jit/nvrtc.hpp"

namespace lowbit {

namespace {

constexpr uint64_t kDefaultCacheBytes = 4ull << 30;

void copy_string(char* dst, size_t cap, const std::string& src) {
  const size_t n = std::min(cap - 1, src.size());
  std::memcpy(dst, src.data(), n);
  dst[n] = '\0';
}

}  // namespace

Context::Context(const ContextConfig& config)
    : logger_(config.log_callback, config.log_user_data, config.log_level) {}

Context::~Context() {
  kernels_.reset();  // unload modules while the CUDA context is still retained
  if (retained_primary_ && driver().available) driver().DevicePrimaryCtxRelease(device_);
}

void Context::init_cache(const ContextConfig& config) {
  // Load NVRTC now (its version is part of every cache key) so that the
  // first plan creation does not pay for the dlopen.
  (void)nvrtc();
  if (config.cache_mode != LOWBIT_CACHE_MEMORY) {
    DiskStore::Options o;
    o.dir = config.cache_dir.empty() ? default_cache_dir() : config.cache_dir;
    o.readonly_dirs = readonly_cache_dirs_from_env();
    o.writable = config.cache_mode == LOWBIT_CACHE_READ_WRITE;
    o.max_bytes = config.cache_max_bytes != 0 ? config.cache_max_bytes : kDefaultCacheBytes;
    o.logger = &logger_;
    if (o.dir.empty()) logger_.warn("no cache directory (set LOWBIT_CACHE_DIR or HOME): kernels stay in memory");
    disk_ = std::make_unique<DiskStore>(std::move(o));
  }
  kernels_ = std::make_unique<KernelCache>(traits_.target, cu_context_, disk_.get(), logger_, counters_);
}

void Context::init_device(CUdevice device) {
  const DriverApi& api = driver();
  device_ = device;
  int major = 0, minor = 0, sms = 0, l2 = 0;
  cu_check(api.DeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device), "cuDeviceGetAttribute");
  cu_check(api.DeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device), "cuDeviceGetAttribute");
  cu_check(api.DeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, device), "cuDeviceGetAttribute");
  cu_check(api.DeviceGetAttribute(&l2, CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, device), "cuDeviceGetAttribute");
  char name[256] = {};
  cu_check(api.DeviceGetName(name, sizeof(name) - 1, device), "cuDeviceGetName");
  size_t mem = 0;
  cu_check(api.DeviceTotalMem(&mem, device), "cuDeviceTotalMem");
  device_name_ = name;
  global_memory_ = mem;
  l2_bytes_ = uint64_t(l2);
  traits_.target = Target::for_device(major, minor);
  traits_.sm_count = sms;
  traits_.offline = false;
  if (traits_.target.sm < kMinSm)
    fail(LOWBIT_UNSUPPORTED, "{} is sm_{}{}; lowbit needs sm_{} or newer", device_name_, major, minor, kMinSm);
}

std::shared_ptr<Context> Context::on_device(int ordinal, const ContextConfig& config) {
  const DriverApi& api = require_driver();
  int count = 0;
  cu_check(api.DeviceGetCount(&count), "cuDeviceGetCount");
  if (ordinal < 0 || ordinal >= count)
    fail(LOWBIT_NO_DEVICE, "no CUDA device {} (this machine has {})", ordinal, count);
  CUdevice device = 0;
  cu_check(api.DeviceGet(&device, ordinal), "cuDeviceGet");
  std::shared_ptr<Context> ctx(new Context(config));
  ctx->ordinal_ = ordinal;
  ctx->init_device(device);
  cu_check(api.DevicePrimaryCtxRetain(&ctx->cu_context_, device), "cuDevicePrimaryCtxRetain");
  ctx->retained_primary_ = true;
  ctx->init_cache(config);
  return ctx;
}

std::shared_ptr<Context> Context::on_current(const ContextConfig& config) {
  const DriverApi& api = require_driver();
  CUcontext current = nullptr;
  cu_check(api.CtxGetCurrent(&current), "cuCtxGetCurrent");
  if (current == nullptr)
    fail(LOWBIT_NO_DEVICE, "the calling thread has no current CUDA context (create one first, or use "
                           "lowbit_context_create_device)");
  CUdevice device = 0;
  cu_check(api.CtxGetDevice(&device), "cuCtxGetDevice");
  std::shared_ptr<Context> ctx(new Context(config));
  ctx->init_device(device);
  int count = 0;
  api.DeviceGetCount(&count);
  for (int i = 0; i < count; ++i) {
    CUdevice d = 0;
    if (api.DeviceGet(&d, i) == CUDA_SUCCESS && d == device) ctx->ordinal_ = i;
  }
  ctx->cu_context_ = current;  // borrowed: the caller keeps it alive
  ctx->init_cache(config);
  return ctx;
}

std::shared_ptr<Context> Context::offline(const std::string& arch, const ContextConfig& config) {
  Target target;
  if (!Target::parse(arch, &target))
    fail(LOWBIT_INVALID_ARGUMENT, "arch \"{}\" is not a target name like sm_80, sm_89 or sm_90a", arch);
  if (target.sm < kMinSm) fail(LOWBIT_UNSUPPORTED, "arch {} is older than lowbit's minimum sm_{}", arch, kMinSm);
  // Architecture-specific ("a") targets start with Hopper; "sm_80a" would
  // only fail later, at the first compile, as COMPILE_FAILED.
  if (target.arch_specific && target.sm < 90)
    fail(LOWBIT_INVALID_ARGUMENT, "arch \"{}\": there is no architecture-specific (\"a\") target below sm_90", arch);
  std::shared_ptr<Context> ctx(new Context(config));
  ctx->traits_.target = target;
  ctx->traits_.offline = true;
  ctx->init_cache(config);
  return ctx;
}

void Context::fill_info(lowbit_device_info* info) const {
  info->offline = traits_.offline ? 1 : 0;
  info->ordinal = ordinal_;
  copy_string(info->name, sizeof(info->name), device_name_);
  copy_string(info->arch, sizeof(info->arch), traits_.target.name());
  info->compute_capability = traits_.target.sm;
  info->sm_count = traits_.offline ? 0 : traits_.sm_count;
  info->driver_version = driver().available ? driver().version : 0;
  info->nvrtc_version = nvrtc().available ? nvrtc().version : 0;
  info->global_memory_bytes = global_memory_;
  info->l2_cache_bytes = l2_bytes_;
  copy_string(info->cache_dir, sizeof(info->cache_dir), disk_ && disk_->writable() ? disk_->dir() : std::string());
}

}  // namespace lowbit
