// `lowbit info`: what lowbit sees on this machine: library, driver, GPU,
// NVRTC, and the cache. Creates no cache directory (contexts here are
// memory-only; the cache is inspected read-only).
#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include <fmt/format.h>

#include "cache/disk_store.hpp"
#include "commands.hpp"
#include "common/json.hpp"
#include "cuda/driver.hpp"
#include "jit/nvrtc.hpp"

namespace lowbit::cli {

namespace {

struct GpuInfo {
  bool available = false;
  std::string problem;  // why not
  int count = 0;
  lowbit_device_info device{};
};

struct CacheInfo {
  std::string dir;
  bool exists = false;
  bool writable = false;
  std::string problem;  // why lowbit would not use it
  DiskUsage usage;
};

struct TargetInfo {
  std::string arch;  // "" if none (no GPU and no --arch)
  bool offline = false;
};

lowbit_context_options memory_only_options() {
  lowbit_context_options o;
  lowbit_context_options_init(&o);
  o.cache_mode = LOWBIT_CACHE_MEMORY;
  o.log_level = LOWBIT_LOG_ERROR;
  return o;
}

GpuInfo probe_gpu() {
  GpuInfo g;
  const DriverApi& api = driver();
  if (!api.available) {
    g.problem = api.problem;
    return g;
  }
  if (api.DeviceGetCount(&g.count) != CUDA_SUCCESS || g.count == 0) {
    g.problem = "the CUDA driver reports no device";
    return g;
  }
  const lowbit_context_options o = memory_only_options();
  lowbit_context* ctx = nullptr;
  lowbit_status s = lowbit_context_create_device(0, &o, &ctx);
  if (s != LOWBIT_OK) {
    g.problem = last_error(s);
    return g;
  }
  g.device.struct_size = sizeof(g.device);
  s = lowbit_context_get_info(ctx, &g.device);
  if (s == LOWBIT_OK) g.available = true;
  else g.problem = last_error(s);
  lowbit_context_destroy(ctx);
  return g;
}

CacheInfo probe_cache(const std::string& option) {
  CacheInfo c;
  c.dir = resolve_cache_dir(option);
  if (c.dir.empty()) {
    c.problem = "no cache directory (set LOWBIT_CACHE_DIR or HOME, or pass --cache-dir)";
    return c;
  }
  struct stat st {};
  c.exists = ::stat(c.dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
  if (!c.exists) return c;
  c.writable = ::access(c.dir.c_str(), W_OK | X_OK) == 0;
  if (st.st_uid != ::geteuid()) c.problem = fmt::format("owned by uid {}, not by this user", st.st_uid);
  else if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) c.problem = "writable by group or others";
  else if (!c.writable) c.problem = "not writable";
  DiskStore::Options o;
  o.dir = c.dir;
  o.writable = false;  // inspect only: never create or modify
  c.usage = DiskStore(std::move(o)).usage();
  return c;
}

// The file NVRTC was loaded from (dlopen was given a bare soname).
std::string nvrtc_file(const NvrtcApi& rtc) {
  Dl_info where{};
  if (rtc.Version != nullptr && ::dladdr(reinterpret_cast<void*>(rtc.Version), &where) != 0 &&
      where.dli_fname != nullptr)
    return where.dli_fname;
  return rtc.path;
}

std::string archs_text(const std::vector<int>& archs) {
  if (archs.empty()) return "";
  return fmt::format("sm_{}..sm_{}", archs.front(), archs.back());
}

void print_text(const GpuInfo& gpu, const TargetInfo& target, const CacheInfo& cache) {
  const DriverApi& api = driver();
  const NvrtcApi& rtc = nvrtc();
  std::printf("lowbit:  %s\n", lowbit_version_string());
  if (api.available) std::printf("driver:  CUDA %s (%d)\n", format_cuda_version(api.version).c_str(), api.version);
  else std::printf("driver:  not available: %s\n", api.problem.c_str());
  if (gpu.available) {
    const lowbit_device_info& d = gpu.device;
    std::printf("gpu:     %s (device 0 of %d): %s, %d SMs, %s memory, %s L2\n", d.name, gpu.count, d.arch,
                d.sm_count, format_bytes(d.global_memory_bytes).c_str(), format_bytes(d.l2_cache_bytes).c_str());
  } else if (!api.available) {
    std::printf("gpu:     no GPU: no usable CUDA driver (above)\n");
  } else {
    std::printf("gpu:     no GPU: %s\n", gpu.problem.c_str());
  }
  if (!target.arch.empty())
    std::printf("target:  %s%s\n", target.arch.c_str(), target.offline ? " (offline, from --arch)" : "");
  else
    std::printf("target:  none (no GPU; pass --arch sm_XX for an offline target)\n");
  if (rtc.available)
    std::printf("nvrtc:   %s (%s), targets %s\n", format_cuda_version(rtc.version).c_str(), nvrtc_file(rtc).c_str(),
                archs_text(rtc.archs).c_str());
  else
    std::printf("nvrtc:   not available: %s (cached kernels still load; new ones cannot be compiled)\n",
                rtc.problem.c_str());
  if (cache.dir.empty()) {
    std::printf("cache:   %s\n", cache.problem.c_str());
    return;
  }
  std::printf("cache:   %s\n", cache.dir.c_str());
  if (!cache.exists) std::printf("         does not exist yet (created by the first compile)\n");
  else
    std::printf("         %llu entries, %s%s%s\n", static_cast<unsigned long long>(cache.usage.entries),
                format_bytes(cache.usage.bytes).c_str(), cache.problem.empty() ? "" : "; unusable: ",
                cache.problem.c_str());
}

void print_json(const GpuInfo& gpu, const TargetInfo& target, const CacheInfo& cache) {
  const DriverApi& api = driver();
  const NvrtcApi& rtc = nvrtc();
  std::string archs = "[";
  for (size_t i = 0; i < rtc.archs.size(); ++i) archs += fmt::format("{}\"sm_{}\"", i ? "," : "", rtc.archs[i]);
  archs += "]";
  JsonObject g;
  g.add("available", gpu.available).add("problem", gpu.problem).add("count", int64_t(gpu.count));
  if (gpu.available) {
    const lowbit_device_info& d = gpu.device;
    g.add("name", d.name)
        .add("arch", d.arch)
        .add("compute_capability", d.compute_capability)
        .add("sm_count", d.sm_count)
        .add("memory_bytes", d.global_memory_bytes)
        .add("l2_bytes", d.l2_cache_bytes);
  }
  const std::string out =
      JsonObject()
          .add("version", lowbit_version_string())
          .add("version_number", int64_t(lowbit_version_number()))
          .raw("driver", JsonObject()
                             .add("available", api.available)
                             .add("version", int64_t(api.version))
                             .add("problem", api.problem)
                             .str())
          .raw("gpu", g.str())
          .raw("target", target.arch.empty() ? std::string("null")
                                             : JsonObject()
                                                   .add("arch", target.arch)
                                                   .add("offline", target.offline)
                                                   .str())
          .raw("nvrtc", JsonObject()
                            .add("available", rtc.available)
                            .add("version", int64_t(rtc.version))
                            .add("path", nvrtc_file(rtc))
                            .add("problem", rtc.problem)
                            .raw("archs", archs)
                            .str())
          .raw("cache", JsonObject()
                            .add("dir", cache.dir)
                            .add("exists", cache.exists)
                            .add("writable", cache.writable)
                            .add("problem", cache.problem)
                            .add("entries", cache.usage.entries)
                            .add("bytes", cache.usage.bytes)
                            .str())
          .str();
  std::printf("%s\n", out.c_str());
}

int run_info(Args& args) {
  std::string arch, cache_dir;
  bool json = false;
  while (!args.done()) {
    if (args.flag("--json")) json = true;
    else if (args.option("--arch", &arch)) {}
    else if (args.option("--cache-dir", &cache_dir)) {}
    else if (args.at_option()) return usage_error(kInfoCommand, "unknown option " + args.current());
    else return usage_error(kInfoCommand, "unexpected argument " + args.current());
  }
  if (!args.error().empty()) return usage_error(kInfoCommand, args.error());

  const GpuInfo gpu = probe_gpu();
  TargetInfo target;
  if (!arch.empty()) {
    const lowbit_context_options o = memory_only_options();
    lowbit_context* ctx = nullptr;
    const lowbit_status s = lowbit_context_create_offline(arch.c_str(), &o, &ctx);
    if (s != LOWBIT_OK) {
      print_error(kInfoCommand, fmt::format("--arch {}: {}", arch, last_error(s)));
      return s == LOWBIT_INVALID_ARGUMENT || s == LOWBIT_UNSUPPORTED ? kExitUsage : kExitFailed;
    }
    lowbit_device_info d{};
    d.struct_size = sizeof(d);
    if (lowbit_context_get_info(ctx, &d) == LOWBIT_OK) target.arch = d.arch;
    target.offline = true;
    lowbit_context_destroy(ctx);
  } else if (gpu.available) {
    target.arch = gpu.device.arch;
  }
  const CacheInfo cache = probe_cache(cache_dir);
  if (json) print_json(gpu, target, cache);
  else print_text(gpu, target, cache);
  return kExitOk;
}

}  // namespace

const Command kInfoCommand = {
    "info",
    "library, driver, GPU, NVRTC and cache in use",
    "usage: lowbit info [--arch sm_XX] [--cache-dir DIR] [--json]\n"
    "\n"
    "Prints the library version, the CUDA driver and GPU (or why there is none), the\n"
    "NVRTC library, and the kernel cache directory with its size.\n"
    "\n"
    "  --arch sm_XX     also report an offline compile target (e.g. sm_90a)\n"
    "  --cache-dir DIR  the cache directory to report (default: $LOWBIT_CACHE_DIR,\n"
    "                   else $XDG_CACHE_HOME/lowbit, else ~/.cache/lowbit)\n"
    "  --json           one JSON object instead of text\n",
    &run_info,
};

}  // namespace lowbit::cli
