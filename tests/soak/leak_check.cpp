// Leak check: long create/destroy loops on an offline context must not grow
// the heap. Built twice by tools/run_checks.sh: against the ASan build (then
// LeakSanitizer reports unreachable blocks at exit and the live heap is read
// with __sanitizer_get_current_allocated_bytes) and against the release build
// (live heap from mallinfo2, plus the resident set from /proc/self/statm).
//
//   leak_check [--cycles 10000] [--name leak] [--cache-dir DIR]
//
// Loops, each after a warm-up, with the live heap measured before and after:
//   plans     CYCLES x (plan create from the memory cache, describe, run ->
//             NO_DEVICE, destroy)
//   errors    CYCLES x a rejected descriptor (the error path and its message)
//   contexts  CYCLES/10 x (context create on a disk cache dir, plan from the
//             disk, destroy both)
//   compile-failures  20 x an NVRTC compile that fails (KernelCache::get on a
//             broken spec): the NVRTC program is destroyed on that path too
// Prints one line per loop and "<name>: N passed, N failed, 0 skipped".
#include <malloc.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>

#include "cache/disk_store.hpp"
#include "cache/kernel_cache.hpp"
#include "common/error.hpp"
#include "common/log.hpp"
#include "jit/kernel_spec.hpp"
#include "jit/nvrtc.hpp"
#include "jit/target.hpp"
#include "lowbit/lowbit.h"

#if defined(__SANITIZE_ADDRESS__)
#define LOWBIT_LEAK_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LOWBIT_LEAK_ASAN 1
#endif
#endif
#ifdef LOWBIT_LEAK_ASAN
// From <sanitizer/allocator_interface.h> (clang's; gcc's libasan has the
// function but ships no header).
extern "C" size_t __sanitizer_get_current_allocated_bytes(void);
#endif

namespace {

uint64_t live_heap_bytes() {
#ifdef LOWBIT_LEAK_ASAN
  return __sanitizer_get_current_allocated_bytes();
#else
  const struct mallinfo2 mi = mallinfo2();
  return uint64_t(mi.uordblks) + uint64_t(mi.hblkhd);
#endif
}

uint64_t rss_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long long size = 0, resident = 0;
  const int n = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  return n == 2 ? resident * uint64_t(::sysconf(_SC_PAGESIZE)) : 0;
}

int g_passed = 0, g_failed = 0;
std::string g_name = "leak";

// Runs `body` `warmup` times, then `cycles` times between two measurements.
void loop(const char* what, int warmup, int cycles, uint64_t heap_slack, uint64_t rss_slack,
          const std::function<bool()>& body) {
  for (int i = 0; i < warmup; ++i)
    if (!body()) {
      std::printf("%s: %s: FAILED during warm-up: %s\n", g_name.c_str(), what, lowbit_last_error_message());
      ++g_failed;
      return;
    }
  const uint64_t heap0 = live_heap_bytes(), rss0 = rss_bytes();
  for (int i = 0; i < cycles; ++i)
    if (!body()) {
      std::printf("%s: %s: FAILED at cycle %d: %s\n", g_name.c_str(), what, i, lowbit_last_error_message());
      ++g_failed;
      return;
    }
  const uint64_t heap1 = live_heap_bytes(), rss1 = rss_bytes();
  const int64_t dheap = int64_t(heap1) - int64_t(heap0), drss = int64_t(rss1) - int64_t(rss0);
#ifdef LOWBIT_LEAK_ASAN
  // ASan's quarantine holds freed blocks (RSS grows by design): the live
  // heap and LeakSanitizer are the measure here.
  (void)rss_slack;
  const bool ok = dheap <= int64_t(heap_slack);
#else
  const bool ok = dheap <= int64_t(heap_slack) && drss <= int64_t(rss_slack);
#endif
  std::printf("%s: %-16s %6d cycles: live heap %llu -> %llu bytes (%+.1f bytes/cycle), RSS %llu -> %llu KiB (%s)\n",
              g_name.c_str(), what, cycles, (unsigned long long)heap0, (unsigned long long)heap1,
              double(dheap) / cycles, (unsigned long long)(rss0 / 1024), (unsigned long long)(rss1 / 1024),
              ok ? "ok" : "GROWTH");
  (ok ? g_passed : g_failed)++;
}

lowbit_quantize_desc small_desc() {
  lowbit_quantize_desc d;
  lowbit_quantize_desc_init(&d);
  d.rank = 2;
  d.dims[0] = 16;
  d.dims[1] = 4096;
  return d;
}

}  // namespace

int main(int argc, char** argv) {
  int cycles = 10000;
  std::string cache_dir;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--cycles") cycles = std::atoi(argv[i + 1]);
    else if (a == "--name") g_name = argv[i + 1];
    else if (a == "--cache-dir") cache_dir = argv[i + 1];
  }
  if (cache_dir.empty()) {
    char templ[] = "/tmp/lowbit-leak-XXXXXX";
    if (::mkdtemp(templ) == nullptr) return 2;
    cache_dir = std::string(templ) + "/cache";
  }
  // The process's one-time state (NVRTC loaded, thread-local message buffer)
  // is made before any measurement.
  (void)lowbit::nvrtc();
  const lowbit_quantize_desc desc = small_desc();

  // 1. Plans from the memory cache of one context.
  lowbit_context_options mem;
  lowbit_context_options_init(&mem);
  mem.cache_mode = LOWBIT_CACHE_MEMORY;
  mem.log_level = LOWBIT_LOG_ERROR;
  lowbit_context* ctx = nullptr;
  if (lowbit_context_create_offline("sm_90a", &mem, &ctx) != LOWBIT_OK) {
    std::printf("%s: cannot create a context: %s\n", g_name.c_str(), lowbit_last_error_message());
    return 1;
  }
  char json[16384];
  loop("plans", 200, cycles, 16 << 10, 2 << 20, [&] {
    lowbit_plan* plan = nullptr;
    if (lowbit_quantize_plan_create(ctx, &desc, &plan) != LOWBIT_OK) return false;
    bool ok = lowbit_plan_describe(plan, json, sizeof(json), nullptr) == LOWBIT_OK &&
              lowbit_plan_run(plan, nullptr, 0, 0, 0, nullptr) == LOWBIT_NO_DEVICE;
    lowbit_plan_destroy(plan);
    return ok;
  });

  // 2. Rejected descriptors: exceptions, messages, the thread's error text.
  lowbit_quantize_desc bad = desc;
  bad.qmin = 5;
  bad.qmax = -5;
  loop("errors", 200, cycles, 16 << 10, 2 << 20, [&] {
    lowbit_plan* plan = nullptr;
    return lowbit_quantize_plan_create(ctx, &bad, &plan) == LOWBIT_INVALID_PROBLEM && plan == nullptr;
  });
  lowbit_context_destroy(ctx);

  // 3. Whole contexts on a disk cache: store, lock, load, parse each time.
  lowbit_context_options disk;
  lowbit_context_options_init(&disk);
  disk.cache_dir = cache_dir.c_str();
  disk.log_level = LOWBIT_LOG_ERROR;
  loop("contexts", 20, std::max(cycles / 10, 1), 16 << 10, 2 << 20, [&] {
    lowbit_context* c = nullptr;
    if (lowbit_context_create_offline("sm_90a", &disk, &c) != LOWBIT_OK) return false;
    lowbit_plan* plan = nullptr;
    const bool ok = lowbit_quantize_plan_create(c, &desc, &plan) == LOWBIT_OK;
    lowbit_plan_destroy(plan);
    lowbit_context_destroy(c);
    return ok;
  });

  // 4. Failing NVRTC compiles (the error path of compile_with_nvrtc).
  if (lowbit::nvrtc().available) {
    lowbit::Logger logger(nullptr, nullptr, LOWBIT_LOG_ERROR);
    lowbit::CacheCounters counters;
    lowbit::Target target;
    lowbit::Target::parse("sm_90a", &target);
    lowbit::KernelCache cache(target, nullptr, nullptr, logger, counters);
    lowbit::KernelSpec broken;
    broken.family = "leak";
    broken.header = "quantize.cuh";
    broken.function = "lowbit::not_a_kernel";
    broken.params_type = "lowbit::QuantizeParams";
    // NVRTC keeps some per-process state after its first compiles: a few
    // warm-up rounds, then a loose bound (a leaked program is megabytes).
    loop("compile-failures", 3, 20, 256 << 10, 8 << 20, [&] {
      try {
        cache.get(broken);
      } catch (const lowbit::Error& e) {
        return e.status() == LOWBIT_COMPILE_FAILED;
      }
      return false;
    });
    // Each cycle really ran NVRTC (a failure is not remembered).
    std::printf("%s: compile-failures: %llu failed compiles in all\n", g_name.c_str(),
                (unsigned long long)counters.compile_failures.load());
    (counters.compile_failures.load() == 23 ? g_passed : g_failed)++;
  } else {
    std::printf("%s: compile-failures: skipped (no NVRTC)\n", g_name.c_str());
  }

  std::string rm = "rm -rf '" + cache_dir.substr(0, cache_dir.rfind('/')) + "'";
  if (cache_dir.find("/lowbit-leak-") != std::string::npos && std::system(rm.c_str()) != 0) {
  }
  const std::string line =
      g_name + ": " + std::to_string(g_passed) + " passed, " + std::to_string(g_failed) + " failed, 0 skipped";
  std::printf("%s\n", line.c_str());
  if (const char* path = std::getenv("LOWBIT_TEST_SUMMARY"); path != nullptr && *path != '\0') {
    if (std::FILE* f = std::fopen(path, "a")) {
      std::fprintf(f, "%s\n", line.c_str());
      std::fclose(f);
    }
  }
  return g_failed == 0 ? 0 : 1;
}
