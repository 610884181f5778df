// The extern "C" implementation of lowbit.h: argument checks, C <-> C++
// conversion, and the one place where exceptions become status codes (plus
// the thread's last-error text). No exception ever leaves this file.
#include "lowbit/lowbit.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "common/dtype.hpp"
#include "common/error.hpp"
#include "ops/quantize.hpp"
#include "ops/wq.hpp"
#include "runtime/context.hpp"
#include "runtime/plan.hpp"

struct lowbit_context {
  std::shared_ptr<lowbit::Context> impl;
};

struct lowbit_plan {
  std::unique_ptr<lowbit::Plan> impl;
};

namespace {

thread_local std::string t_last_error;

lowbit_status set_error(lowbit_status status, std::string message) {
  try {
    t_last_error = std::move(message);
  } catch (...) {
    // Out of memory while recording the message: keep the status.
  }
  return status;
}

// Runs `body`, mapping every exception to a status and the thread's message.
template <typename Body>
lowbit_status guarded(const char* function, Body&& body) noexcept {
  try {
    body();
    return LOWBIT_OK;
  } catch (const lowbit::Error& e) {
    return set_error(e.status(), std::string(function) + ": " + e.message());
  } catch (const std::bad_alloc&) {
    return set_error(LOWBIT_OUT_OF_MEMORY, std::string(function) + ": out of host memory");
  } catch (const std::exception& e) {
    return set_error(LOWBIT_INTERNAL, std::string(function) + ": internal error: " + e.what());
  } catch (...) {
    return set_error(LOWBIT_INTERNAL, std::string(function) + ": internal error (unknown exception)");
  }
}

#define LOWBIT_REQUIRE(cond, ...) \
  do {                            \
    if (!(cond)) lowbit::fail(LOWBIT_INVALID_ARGUMENT, __VA_ARGS__); \
  } while (0)

lowbit::ContextConfig read_options(const lowbit_context_options* options) {
  lowbit_context_options o;
  lowbit_context_options_init(&o);
  if (options != nullptr) {
    if (options->struct_size < sizeof(lowbit_context_options) || options->struct_size > sizeof(lowbit_context_options))
      lowbit::fail(LOWBIT_INVALID_ARGUMENT,
                   "lowbit_context_options.struct_size is {} (expected {}): call lowbit_context_options_init() first",
                   options->struct_size, sizeof(lowbit_context_options));
    std::memcpy(&o, options, options->struct_size);
  }
  if (o.cache_mode < LOWBIT_CACHE_READ_WRITE || o.cache_mode > LOWBIT_CACHE_MEMORY)
    lowbit::fail(LOWBIT_INVALID_ARGUMENT, "cache_mode = {} is not a LOWBIT_CACHE_* value", o.cache_mode);
  if (o.log_level < LOWBIT_LOG_ERROR || o.log_level > LOWBIT_LOG_DEBUG)
    lowbit::fail(LOWBIT_INVALID_ARGUMENT, "log_level = {} is not a LOWBIT_LOG_* value", o.log_level);
  lowbit::ContextConfig c;
  if (o.cache_dir != nullptr) c.cache_dir = o.cache_dir;
  c.cache_mode = o.cache_mode;
  c.cache_max_bytes = o.cache_max_bytes;
  c.log_callback = o.log_callback;
  c.log_user_data = o.log_user_data;
  c.log_level = o.log_level;
  return c;
}

lowbit_context* wrap(std::shared_ptr<lowbit::Context> ctx) {
  auto* handle = new lowbit_context;
  handle->impl = std::move(ctx);
  return handle;
}

}  // namespace

extern "C" {

const char* lowbit_status_string(lowbit_status status) {
  switch (status) {
    case LOWBIT_OK: return "LOWBIT_OK: success";
    case LOWBIT_MISALIGNED: return "LOWBIT_MISALIGNED: a pointer or stride breaks the plan's alignment";
    case LOWBIT_INVALID_PROBLEM: return "LOWBIT_INVALID_PROBLEM: the problem is ill-formed";
    case LOWBIT_UNSUPPORTED: return "LOWBIT_UNSUPPORTED: this combination is not implemented";
    case LOWBIT_WORKSPACE_TOO_SMALL: return "LOWBIT_WORKSPACE_TOO_SMALL: the workspace is smaller than required";
    case LOWBIT_INVALID_ARGUMENT: return "LOWBIT_INVALID_ARGUMENT: a NULL, out-of-range or malformed argument";
    case LOWBIT_NO_DEVICE: return "LOWBIT_NO_DEVICE: no CUDA driver or GPU (or an offline context)";
    case LOWBIT_NO_COMPILER: return "LOWBIT_NO_COMPILER: the kernel is not cached and NVRTC is unavailable";
    case LOWBIT_COMPILE_FAILED: return "LOWBIT_COMPILE_FAILED: NVRTC could not compile a kernel";
    case LOWBIT_CUDA_ERROR: return "LOWBIT_CUDA_ERROR: a CUDA driver call failed";
    case LOWBIT_OUT_OF_MEMORY: return "LOWBIT_OUT_OF_MEMORY: host or device memory is exhausted";
    case LOWBIT_CACHE_IO: return "LOWBIT_CACHE_IO: the kernel cache could not be read or written";
    case LOWBIT_INTERNAL: return "LOWBIT_INTERNAL: an internal error (a bug in lowbit)";
    default: return "unknown lowbit status";
  }
}

const char* lowbit_last_error_message(void) { return t_last_error.c_str(); }

size_t lowbit_copy_last_error_message(char* buf, size_t capacity) {
  const std::string& m = t_last_error;
  if (buf != nullptr && capacity > 0) {
    const size_t n = std::min(capacity - 1, m.size());
    std::memcpy(buf, m.data(), n);
    buf[n] = '\0';
  }
  return m.size();
}

uint32_t lowbit_version_number(void) { return LOWBIT_VERSION_NUMBER; }
const char* lowbit_version_string(void) { return LOWBIT_VERSION_STRING; }

const char* lowbit_dtype_name(lowbit_dtype dtype) { return lowbit::dtype_name(dtype); }

void lowbit_context_options_init(lowbit_context_options* options) {
  if (options == nullptr) return;
  std::memset(options, 0, sizeof(*options));
  options->struct_size = sizeof(*options);
  options->cache_mode = LOWBIT_CACHE_READ_WRITE;
  options->log_level = LOWBIT_LOG_WARN;
}

lowbit_status lowbit_context_create_device(int32_t ordinal, const lowbit_context_options* options,
                                           lowbit_context** out) {
  return guarded(__func__, [&] {
    LOWBIT_REQUIRE(out != nullptr, "out is NULL");
    *out = nullptr;
    *out = wrap(lowbit::Context::on_device(ordinal, read_options(options)));
  });
}

lowbit_status lowbit_context_create_current(const lowbit_context_options* options, lowbit_context** out) {
  return guarded(__func__, [&] {
    LOWBIT_REQUIRE(out != nullptr, "out is NULL");
    *out = nullptr;
    *out = wrap(lowbit::Context::on_current(read_options(options)));
  });
}

lowbit_status lowbit_context_create_offline(const char* arch, const lowbit_context_options* options,
                                            lowbit_context** out) {
  return guarded(__func__, [&] {
    LOWBIT_REQUIRE(out != nullptr, "out is NULL");
    *out = nullptr;
    LOWBIT_REQUIRE(arch != nullptr, "arch is NULL (expected e.g. \"sm_90a\")");
    *out = wrap(lowbit::Context::offline(arch, read_options(options)));
  });
}

void lowbit_context_destroy(lowbit_context* context) { delete context; }

lowbit_status lowbit_context_get_info(const lowbit_context* context, lowbit_device_info* info) {
  return guarded(__func__, [&] {
    LOWBIT_REQUIRE(context != nullptr, "context is NULL");
    LOWBIT_REQUIRE(info != nullptr, "info is NULL");
    LOWBIT_REQUIRE(info->struct_size == sizeof(lowbit_device_info),
                   "info->struct_size is {} (expected sizeof(lowbit_device_info) = {})", info->struct_size,
                   sizeof(lowbit_device_info));
    std::memset(reinterpret_cast<char*>(info) + sizeof(uint32_t), 0, sizeof(*info) - sizeof(uint32_t));
    context->impl->fill_info(info);
  });
}

lowbit_status lowbit_context_cache_stats(const lowbit_context* context, lowbit_cache_stats* stats) {
  return guarded(__func__, [&] {
    LOWBIT_REQUIRE(context != nullptr, "context is NULL");
    LOWBIT_REQUIRE(stats != nullptr, "stats is NULL");
    LOWBIT_REQUIRE(stats->struct_size == sizeof(lowbit_cache_stats),
                   "stats->struct_size is {} (expected sizeof(lowbit_cache_stats) = {})", stats->struct_size,
                   sizeof(lowbit_cache_stats));
    const lowbit::CacheCounters& c = context->impl->counters();
    stats->memory_hits = c.memory_hits.load();
    stats->disk_hits = c.disk_hits.load();
    stats->misses = c.misses.load();
    stats->compiles = c.compiles.load();
    stats->compile_failures = c.compile_failures.load();
    lowbit::DiskStore* disk = context->impl->disk();
    stats->damaged_entries = c.damaged.load() + (disk != nullptr ? disk->damaged_count() : 0);
    stats->compile_ms = double(c.compile_us.load()) / 1000.0;
    stats->disk_entries = 0;
    stats->disk_bytes = 0;
    if (disk != nullptr && disk->writable()) {
      const lowbit::DiskUsage u = disk->usage();
      stats->disk_entries = u.entries;
      stats->disk_bytes = u.bytes;
    }
  });
}

lowbit_status lowbit_plan_create(lowbit_context* context, const lowbit_op_desc* op, lowbit_plan** out) {
  return guarded(__func__, [&] {
    LOWBIT_REQUIRE(out != nullptr, "out is NULL");
    *out = nullptr;
    LOWBIT_REQUIRE(context != nullptr, "context is NULL");
    LOWBIT_REQUIRE(op != nullptr, "op is NULL");
    LOWBIT_REQUIRE(op->reserved == 0, "op->reserved must be 0");
    auto plan = std::make_unique<lowbit::Plan>(context->impl, *op);
    auto* handle = new lowbit_plan;
    handle->impl = std::move(plan);
    *out = handle;
  });
}

void lowbit_plan_destroy(lowbit_plan* plan) { delete plan; }

lowbit_status lowbit_plan_workspace_size(const lowbit_plan* plan, size_t* bytes) {
  return guarded(__func__, [&] {
    LOWBIT_REQUIRE(plan != nullptr, "plan is NULL");
    LOWBIT_REQUIRE(bytes != nullptr, "bytes is NULL");
    *bytes = plan->impl->workspace_size();
  });
}

lowbit_status lowbit_plan_run(const lowbit_plan* plan, const lowbit_arg* args, size_t num_args, uint64_t workspace,
                              size_t workspace_bytes, void* stream) {
  if (plan == nullptr) return set_error(LOWBIT_INVALID_ARGUMENT, "lowbit_plan_run: plan is NULL");
  return guarded(__func__, [&] {
    plan->impl->run(args, num_args, workspace, workspace_bytes, static_cast<CUstream>(stream));
  });
}

lowbit_status lowbit_plan_describe(const lowbit_plan* plan, char* buf, size_t capacity, size_t* length) {
  return guarded(__func__, [&] {
    LOWBIT_REQUIRE(plan != nullptr, "plan is NULL");
    const std::string text = plan->impl->describe();
    if (length != nullptr) *length = text.size();
    if (buf != nullptr && capacity > 0) {
      const size_t n = std::min(capacity - 1, text.size());
      std::memcpy(buf, text.data(), n);
      buf[n] = '\0';
    }
  });
}

lowbit_status lowbit_prewarm(lowbit_context* context, const lowbit_op_desc* ops, size_t count, uint32_t threads,
                             lowbit_status* results) {
  std::vector<lowbit_status> statuses;
  std::vector<std::string> messages;
  lowbit_status overall = guarded(__func__, [&] {
    LOWBIT_REQUIRE(context != nullptr, "context is NULL");
    LOWBIT_REQUIRE(ops != nullptr || count == 0, "ops is NULL but count = {}", count);
    statuses.assign(count, LOWBIT_OK);
    messages.assign(count, std::string());
    unsigned n = threads != 0 ? threads : std::max(1u, std::thread::hardware_concurrency());
    n = unsigned(std::min<size_t>(n, std::max<size_t>(count, 1)));
    std::atomic<size_t> next{0};
    auto worker = [&] {
      for (size_t i = next++; i < count; i = next++) {
        statuses[i] = guarded("lowbit_prewarm", [&] {
          if (ops[i].reserved != 0) lowbit::fail(LOWBIT_INVALID_ARGUMENT, "ops[{}].reserved must be 0", i);
          lowbit::Plan plan(context->impl, ops[i]);
        });
        if (statuses[i] != LOWBIT_OK) messages[i] = t_last_error;
      }
    };
    std::vector<std::thread> pool;
    for (unsigned t = 1; t < n; ++t) pool.emplace_back(worker);
    worker();
    for (std::thread& t : pool) t.join();
  });
  if (overall != LOWBIT_OK) return overall;
  for (size_t i = 0; i < count; ++i) {
    if (results != nullptr) results[i] = statuses[i];
  }
  for (size_t i = 0; i < count; ++i)
    if (statuses[i] != LOWBIT_OK) return set_error(statuses[i], "item " + std::to_string(i) + ": " + messages[i]);
  return LOWBIT_OK;
}

void lowbit_quantize_desc_init(lowbit_quantize_desc* desc) {
  if (desc != nullptr) lowbit::quantize::init_desc(desc);
}

lowbit_status lowbit_quantize_plan_create(lowbit_context* context, const lowbit_quantize_desc* desc,
                                          lowbit_plan** out) {
  lowbit_op_desc op{LOWBIT_FAMILY_QUANTIZE, 0, desc};
  return lowbit_plan_create(context, &op, out);
}

void lowbit_wq_matmul_desc_init(lowbit_wq_matmul_desc* desc) {
  if (desc != nullptr) lowbit::wq::init_desc(desc);
}

lowbit_status lowbit_wq_matmul_plan_create(lowbit_context* context, const lowbit_wq_matmul_desc* desc,
                                           lowbit_plan** out) {
  lowbit_op_desc op{LOWBIT_FAMILY_WEIGHT_MATMUL, 0, desc};
  return lowbit_plan_create(context, &op, out);
}

lowbit_status lowbit_wq_native_bytes(const lowbit_wq_matmul_desc* desc, uint64_t* bytes) {
  return guarded(__func__, [&] {
    LOWBIT_REQUIRE(bytes != nullptr, "bytes is NULL");
    *bytes = lowbit::wq::native_bytes(lowbit::wq::read_desc(desc));
  });
}

lowbit_status lowbit_reference_run(const lowbit_op_desc* op, const lowbit_arg* args, size_t num_args) {
  return guarded(__func__, [&] {
    LOWBIT_REQUIRE(op != nullptr, "op is NULL");
    LOWBIT_REQUIRE(op->reserved == 0, "op->reserved must be 0");
    lowbit::run_reference(*op, args, num_args);
  });
}

}  // extern "C"
