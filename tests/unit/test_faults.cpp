// Fault injection (CPU only): every fault costs a status code or a warning,
// never the process, and none leaves a partial or corrupt cache entry.
//   - disk full while writing an entry (RLIMIT_FSIZE in a child: write fails
//     with EFBIG): plans still work from memory, one warning, no file left;
//   - the cache directory removed, or replaced by a file, while running
//     (also concurrently with plan creation on several threads);
//   - NVRTC absent (LOWBIT_NVRTC_LIBRARY=/nonexistent, in a child): a miss
//     is NO_COMPILER, a hit works, prewarm reports per item;
//   - driver absent (LOWBIT_CUDA_LIBRARY=/nonexistent, in a child): device
//     contexts are NO_DEVICE, offline contexts still compile;
//   - an NVRTC compile error: COMPILE_FAILED with the log, counted, nothing
//     written, retried on the next request (also on several threads at once);
//   - CUDA_ERROR_OUT_OF_MEMORY maps to LOWBIT_OUT_OF_MEMORY (cu_check). The
//     device-side part (a module load with the GPU's memory exhausted) is in
//     tests/gpu/test_faults_gpu.cpp.
// Children are this binary re-executed with $LOWBIT_FAULTS_CHILD set (the
// library loads NVRTC and the driver once per process, so only a fresh
// process can lack them); they print key=value lines that the parent checks.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cache/disk_store.hpp"
#include "cache/kernel_cache.hpp"
#include "common/error.hpp"
#include "common/log.hpp"
#include "cuda/driver.hpp"
#include "jit/kernel_spec.hpp"
#include "jit/nvrtc.hpp"
#include "jit/target.hpp"
#include "lowbit/lowbit.h"
#include "support/test_support.hpp"

namespace {

namespace fs = std::filesystem;
using lowbit::test::TempDir;

constexpr const char* kChildVar = "LOWBIT_FAULTS_CHILD";

// ---------------------------------------------------------------------------
// Helpers

// A small quantize problem; (x, q) pick the kernel.
lowbit_quantize_desc desc_of(lowbit_dtype x, lowbit_dtype q) {
  lowbit_quantize_desc d;
  lowbit_quantize_desc_init(&d);
  d.x_dtype = x;
  d.q_dtype = q;
  d.rank = 1;
  d.dims[0] = 4096;
  return d;
}

struct WarnCounter {
  std::mutex mu;
  std::vector<std::string> warnings;
  static void callback(void* user, int32_t level, const char* message) {
    auto* self = static_cast<WarnCounter*>(user);
    if (level != LOWBIT_LOG_WARN && level != LOWBIT_LOG_ERROR) return;
    std::lock_guard<std::mutex> g(self->mu);
    self->warnings.emplace_back(message);
  }
  size_t count() {
    std::lock_guard<std::mutex> g(mu);
    return warnings.size();
  }
  std::string all() {
    std::lock_guard<std::mutex> g(mu);
    std::string s;
    for (const std::string& w : warnings) s += w + "\n";
    return s;
  }
};

lowbit_context* make_ctx(const std::string& dir, WarnCounter* warn = nullptr, int32_t mode = LOWBIT_CACHE_READ_WRITE) {
  lowbit_context_options o;
  lowbit_context_options_init(&o);
  o.cache_dir = dir.empty() ? nullptr : dir.c_str();
  o.cache_mode = mode;
  o.log_level = warn != nullptr ? LOWBIT_LOG_WARN : LOWBIT_LOG_ERROR;
  if (warn != nullptr) {
    o.log_callback = &WarnCounter::callback;
    o.log_user_data = warn;
  }
  lowbit_context* ctx = nullptr;
  const lowbit_status s = lowbit_context_create_offline("sm_90a", &o, &ctx);
  if (s != LOWBIT_OK) return nullptr;
  return ctx;
}

// Creates and destroys one plan; returns the status and (on success) where
// the kernel came from ("compiled", "disk", "memory").
lowbit_status plan_once(lowbit_context* ctx, const lowbit_quantize_desc& d, std::string* origin = nullptr) {
  lowbit_plan* plan = nullptr;
  const lowbit_status s = lowbit_quantize_plan_create(ctx, &d, &plan);
  if (s == LOWBIT_OK && origin != nullptr) {
    char buf[16384];
    lowbit_plan_describe(plan, buf, sizeof(buf), nullptr);
    const std::string text = buf;
    const size_t at = text.find("\"cache\":\"");
    *origin = at == std::string::npos ? "?" : text.substr(at + 9, text.find('"', at + 9) - at - 9);
  }
  lowbit_plan_destroy(plan);
  return s;
}

std::vector<std::string> temp_files(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    if (n.rfind(".tmp-", 0) == 0) out.push_back(n);
  }
  return out;
}

// Every entry of `dir` verifies (header, checksum, name); returns the count.
size_t check_all_entries_valid(const std::string& dir) {
  lowbit::DiskStore::Options o;
  o.dir = dir;
  o.writable = false;
  lowbit::DiskStore store(o);
  const std::vector<lowbit::CacheEntryInfo> entries = store.list(true);
  for (const lowbit::CacheEntryInfo& e : entries) {
    CAPTURE(e.path);
    CAPTURE(e.problem);
    CHECK(e.valid);
  }
  CHECK(entries.size() == lowbit::test::list_files(dir, ".lbk").size());
  return entries.size();
}

void remove_tree(const std::string& dir) {
  // Retried: a concurrent writer may add a file between the unlinks and the
  // final rmdir.
  for (int i = 0; i < 20; ++i) {
    std::error_code ec;
    fs::remove_all(dir, ec);
    if (!fs::exists(dir, ec)) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

// ---------------------------------------------------------------------------
// Children (this binary re-executed)

int child_disk_full(const std::string& dir) {
  // Writes past 2 KiB fail with EFBIG instead of killing us with SIGXFSZ; a
  // cubin entry is larger than that, its lock file (empty) is not.
  ::signal(SIGXFSZ, SIG_IGN);
  const struct rlimit limit {2048, 2048};
  if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) {
    std::printf("setup=setrlimit failed\n");
    return 1;
  }
  WarnCounter warn;
  lowbit_context* ctx = make_ctx(dir, &warn);
  std::printf("context=%d\n", ctx != nullptr ? 1 : 0);
  if (ctx == nullptr) return 1;
  std::string origin;
  // A: cached by the parent (a disk hit); B and C: new (compiled, and their
  // stores fail); B again: a memory hit.
  lowbit_status s = plan_once(ctx, desc_of(LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S8), &origin);
  std::printf("a=%d\na_origin=%s\n", int(s), origin.c_str());
  s = plan_once(ctx, desc_of(LOWBIT_DTYPE_F16, LOWBIT_DTYPE_S8), &origin);
  std::printf("b=%d\nb_origin=%s\nb_message=%s\n", int(s), origin.c_str(),
              s == LOWBIT_OK ? "" : one_line(lowbit_last_error_message()).c_str());
  s = plan_once(ctx, desc_of(LOWBIT_DTYPE_BF16, LOWBIT_DTYPE_S8), &origin);
  std::printf("c=%d\nc_origin=%s\n", int(s), origin.c_str());
  s = plan_once(ctx, desc_of(LOWBIT_DTYPE_F16, LOWBIT_DTYPE_S8), &origin);
  std::printf("b2=%d\nb2_origin=%s\n", int(s), origin.c_str());
  lowbit_cache_stats st;
  st.struct_size = sizeof(st);
  lowbit_context_cache_stats(ctx, &st);
  std::printf("compiles=%llu\ndisk_entries=%llu\n", (unsigned long long)st.compiles,
              (unsigned long long)st.disk_entries);
  lowbit_context_destroy(ctx);
  std::printf("warnings=%zu\nwarning=%s\n", warn.count(), one_line(warn.all()).c_str());
  return 0;
}

int child_no_nvrtc(const std::string& dir) {
  lowbit_context* ctx = make_ctx(dir);
  std::printf("context=%d\n", ctx != nullptr ? 1 : 0);
  if (ctx == nullptr) return 1;
  lowbit_device_info info;
  info.struct_size = sizeof(info);
  std::printf("info=%d\nnvrtc_version=%d\n", int(lowbit_context_get_info(ctx, &info)), info.nvrtc_version);
  const lowbit_quantize_desc cached = desc_of(LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S8);
  const lowbit_quantize_desc missing = desc_of(LOWBIT_DTYPE_F16, LOWBIT_DTYPE_U8);
  std::string origin;
  lowbit_status s = plan_once(ctx, cached, &origin);
  std::printf("hit=%d\nhit_origin=%s\n", int(s), origin.c_str());
  lowbit_plan* plan = reinterpret_cast<lowbit_plan*>(0x1);
  s = lowbit_quantize_plan_create(ctx, &missing, &plan);
  std::printf("miss=%d\nmiss_plan_null=%d\nmiss_message=%s\n", int(s), plan == nullptr ? 1 : 0,
              one_line(lowbit_last_error_message()).c_str());
  // Prewarm reports each item.
  const lowbit_op_desc ops[2] = {{LOWBIT_FAMILY_QUANTIZE, 0, &cached}, {LOWBIT_FAMILY_QUANTIZE, 0, &missing}};
  lowbit_status results[2] = {-1, -1};
  s = lowbit_prewarm(ctx, ops, 2, 2, results);
  std::printf("prewarm=%d\nprewarm0=%d\nprewarm1=%d\nprewarm_message=%s\n", int(s), int(results[0]), int(results[1]),
              one_line(lowbit_last_error_message()).c_str());
  lowbit_cache_stats st;
  st.struct_size = sizeof(st);
  lowbit_context_cache_stats(ctx, &st);
  std::printf("compiles=%llu\ncompile_failures=%llu\n", (unsigned long long)st.compiles,
              (unsigned long long)st.compile_failures);
  lowbit_context_destroy(ctx);
  return 0;
}

int child_no_driver() {
  lowbit_context* c = reinterpret_cast<lowbit_context*>(0x1);
  lowbit_status s = lowbit_context_create_device(0, nullptr, &c);
  std::printf("device=%d\ndevice_null=%d\ndevice_message=%s\n", int(s), c == nullptr ? 1 : 0,
              one_line(lowbit_last_error_message()).c_str());
  c = reinterpret_cast<lowbit_context*>(0x1);
  s = lowbit_context_create_current(nullptr, &c);
  std::printf("current=%d\ncurrent_null=%d\n", int(s), c == nullptr ? 1 : 0);
  lowbit_context* ctx = make_ctx("", nullptr, LOWBIT_CACHE_MEMORY);
  std::printf("offline=%d\n", ctx != nullptr ? 1 : 0);
  if (ctx == nullptr) return 1;
  lowbit_device_info info;
  info.struct_size = sizeof(info);
  lowbit_context_get_info(ctx, &info);
  std::printf("driver_version=%d\n", info.driver_version);
  const lowbit_quantize_desc d = desc_of(LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S8);
  lowbit_plan* plan = nullptr;
  s = lowbit_quantize_plan_create(ctx, &d, &plan);
  std::printf("plan=%d\n", int(s));
  if (plan != nullptr) {
    s = lowbit_plan_run(plan, nullptr, 0, 0, 0, nullptr);
    std::printf("run=%d\n", int(s));
  }
  lowbit_plan_destroy(plan);
  lowbit_context_destroy(ctx);
  return 0;
}

int run_child_mode(const std::string& spec) {
  const size_t colon = spec.find(':');
  const std::string mode = spec.substr(0, colon);
  const std::string arg = colon == std::string::npos ? "" : spec.substr(colon + 1);
  std::printf("started=1\n");
  int rc = 2;
  if (mode == "disk_full") rc = child_disk_full(arg);
  else if (mode == "no_nvrtc") rc = child_no_nvrtc(arg);
  else if (mode == "no_driver") rc = child_no_driver();
  std::printf("done=1\n");
  return rc;
}

[[maybe_unused]] const bool g_faults_child_hook = [] {
  const char* spec = std::getenv(kChildVar);
  if (spec == nullptr || *spec == '\0') return false;
  std::fflush(stdout);
  const int rc = run_child_mode(spec);
  std::fflush(stdout);
  std::_Exit(rc);
}();

// Runs this binary again as a child in `mode` with extra environment
// variables; returns its key=value output and exit status.
std::map<std::string, std::string> run_child(const std::string& mode, const std::vector<std::string>& extra_env,
                                             int* exit_status) {
  std::vector<std::string> set = extra_env;
  set.push_back(std::string(kChildVar) + "=" + mode);
  lowbit::test::ChildRun r =
      lowbit::test::run_self(set, {kChildVar, "LOWBIT_CACHE_PATH", "LOWBIT_LOG", "LOWBIT_CACHE_DIR"});
  *exit_status = r.status;
  MESSAGE("child " << mode << " output:\n" << r.output);
  return r.values;
}

// Compiles the kernel of `d` into `dir` in this process.
void seed_cache(const std::string& dir, const lowbit_quantize_desc& d) {
  lowbit_context* ctx = make_ctx(dir);
  REQUIRE(ctx != nullptr);
  REQUIRE_MESSAGE(plan_once(ctx, d) == LOWBIT_OK, lowbit_last_error_message());
  lowbit_context_destroy(ctx);
}

bool nvrtc_missing(std::string* why) {
  if (lowbit::nvrtc().available) return false;
  *why = "NVRTC is not available: " + lowbit::nvrtc().problem;
  return true;
}

}  // namespace

// ---------------------------------------------------------------------------
// Disk full

TEST_CASE("faults: disk full while writing an entry (RLIMIT_FSIZE): plans work from memory, one warning, no file left") {
  std::string why;
  if (nvrtc_missing(&why)) LOWBIT_SKIP(why);
  TempDir tmp;
  const std::string dir = tmp / "cache";
  seed_cache(dir, desc_of(LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S8));
  REQUIRE(lowbit::test::list_files(dir, ".lbk").size() == 1);
  const std::string seeded = lowbit::test::list_files(dir, ".lbk")[0];

  int status = 0;
  std::map<std::string, std::string> r = run_child("disk_full:" + dir, {}, &status);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  REQUIRE(r["started"] == "1");
  CHECK(r["done"] == "1");
  CHECK(r["context"] == "1");
  CHECK(r["a"] == "0");
  CHECK(r["a_origin"] == "disk");
  CAPTURE(r["b_message"]);
  CHECK(r["b"] == "0");
  CHECK(r["b_origin"] == "compiled");
  CHECK(r["c"] == "0");
  CHECK(r["c_origin"] == "compiled");
  CHECK(r["b2"] == "0");
  CHECK(r["b2_origin"] == "memory");
  CHECK(r["compiles"] == "2");
  CHECK(r["disk_entries"] == "1");
  // One warning for the whole store, naming the reason.
  CAPTURE(r["warning"]);
  CHECK(r["warnings"] == "1");
  CHECK(r["warning"].find("File too large") != std::string::npos);
  // Nothing partial: the seeded entry alone, intact, and no temp file.
  const std::vector<std::string> files = lowbit::test::list_files(dir, ".lbk");
  REQUIRE(files.size() == 1);
  CHECK(files[0] == seeded);
  CHECK(temp_files(dir).empty());
  CHECK(check_all_entries_valid(dir) == 1);
}

// ---------------------------------------------------------------------------
// The cache directory disappears

TEST_CASE("faults: the cache directory removed between plan creations: plans still work, entries stay valid") {
  std::string why;
  if (nvrtc_missing(&why)) LOWBIT_SKIP(why);
  TempDir tmp;
  const std::string dir = tmp / "cache";
  WarnCounter warn;
  lowbit_context* ctx = make_ctx(dir, &warn);
  REQUIRE(ctx != nullptr);
  const lowbit_quantize_desc a = desc_of(LOWBIT_DTYPE_F32, LOWBIT_DTYPE_U8);
  const lowbit_quantize_desc b = desc_of(LOWBIT_DTYPE_BF16, LOWBIT_DTYPE_U8);
  std::string origin;
  REQUIRE(plan_once(ctx, a, &origin) == LOWBIT_OK);
  CHECK(origin == "compiled");
  REQUIRE(lowbit::test::list_files(dir, ".lbk").size() == 1);

  remove_tree(dir);
  REQUIRE(!fs::exists(dir));
  // A new kernel: compiled, and the store recreates the directory.
  CHECK_MESSAGE(plan_once(ctx, b, &origin) == LOWBIT_OK, lowbit_last_error_message());
  CHECK(origin == "compiled");
  CHECK(plan_once(ctx, a, &origin) == LOWBIT_OK);
  CHECK(origin == "memory");
  CHECK(fs::is_directory(dir));
  CHECK((fs::status(dir).permissions() & fs::perms::all) == fs::perms::owner_all);
  CHECK(lowbit::test::list_files(dir, ".lbk").size() == 1);
  CHECK(check_all_entries_valid(dir) == 1);
  CHECK(temp_files(dir).empty());
  CHECK_MESSAGE(warn.count() == 0, warn.all());  // recreated silently
  lowbit_context_destroy(ctx);

  // A fresh context on the recreated directory: b from disk, a recompiled.
  ctx = make_ctx(dir);
  REQUIRE(ctx != nullptr);
  CHECK(plan_once(ctx, b, &origin) == LOWBIT_OK);
  CHECK(origin == "disk");
  CHECK(plan_once(ctx, a, &origin) == LOWBIT_OK);
  CHECK(origin == "compiled");
  CHECK(check_all_entries_valid(dir) == 2);
  lowbit_context_destroy(ctx);
}

TEST_CASE("faults: the cache directory replaced by a file while running: one warning, plans work from memory") {
  std::string why;
  if (nvrtc_missing(&why)) LOWBIT_SKIP(why);
  TempDir tmp;
  const std::string dir = tmp / "cache";
  WarnCounter warn;
  lowbit_context* ctx = make_ctx(dir, &warn);
  REQUIRE(ctx != nullptr);
  remove_tree(dir);
  { std::FILE* f = std::fopen(dir.c_str(), "w"); REQUIRE(f != nullptr); std::fclose(f); }
  std::string origin;
  CHECK_MESSAGE(plan_once(ctx, desc_of(LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S4), &origin) == LOWBIT_OK,
                lowbit_last_error_message());
  CHECK(origin == "compiled");
  CHECK_MESSAGE(plan_once(ctx, desc_of(LOWBIT_DTYPE_F32, LOWBIT_DTYPE_U4), &origin) == LOWBIT_OK,
                lowbit_last_error_message());
  CHECK(origin == "compiled");
  CHECK(plan_once(ctx, desc_of(LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S4), &origin) == LOWBIT_OK);
  CHECK(origin == "memory");
  CAPTURE(warn.all());
  CHECK(warn.count() == 1);
  CHECK(fs::is_regular_file(dir));
  CHECK(fs::file_size(dir) == 0);  // untouched
  lowbit_cache_stats st;
  st.struct_size = sizeof(st);
  CHECK(lowbit_context_cache_stats(ctx, &st) == LOWBIT_OK);  // usage() of a non-directory: 0 entries
  CHECK(st.disk_entries == 0);
  lowbit_context_destroy(ctx);
}

TEST_CASE("faults: the cache directory removed concurrently with plan creation on several threads") {
  std::string why;
  if (nvrtc_missing(&why)) LOWBIT_SKIP(why);
  TempDir tmp;
  const std::string dir = tmp / "cache";
  const lowbit_quantize_desc kernels[2] = {desc_of(LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S8),
                                           desc_of(LOWBIT_DTYPE_F64, LOWBIT_DTYPE_S8)};
  constexpr int kThreads = 3, kRounds = 4;
  std::atomic<int> failures{0};
  std::atomic<bool> done{false};
  std::mutex msg_mu;
  std::string first_failure;
  std::vector<std::thread> pool;
  for (int t = 0; t < kThreads; ++t) {
    pool.emplace_back([&, t] {
      for (int round = 0; round < kRounds; ++round) {
        // A fresh context each round: its cache opens the directory anew,
        // and its first plans go to the disk.
        lowbit_context* ctx = make_ctx(dir);
        if (ctx == nullptr) {
          failures++;
          continue;
        }
        for (int k = 0; k < 2; ++k) {
          const lowbit_status s = plan_once(ctx, kernels[(t + round + k) % 2]);
          if (s != LOWBIT_OK) {
            failures++;
            std::lock_guard<std::mutex> g(msg_mu);
            if (first_failure.empty()) first_failure = lowbit_last_error_message();
          }
        }
        lowbit_context_destroy(ctx);
      }
    });
  }
  std::thread remover([&] {
    for (int i = 0; i < 6 && !done; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(150));
      remove_tree(dir);
    }
  });
  for (std::thread& th : pool) th.join();
  done = true;
  remover.join();
  CAPTURE(first_failure);
  CHECK(failures == 0);
  if (fs::exists(dir)) {
    check_all_entries_valid(dir);
    CHECK(temp_files(dir).empty());
  }
}

// ---------------------------------------------------------------------------
// NVRTC or the driver absent

TEST_CASE("faults: without NVRTC (LOWBIT_NVRTC_LIBRARY=/nonexistent) a miss is NO_COMPILER and a hit works") {
  std::string why;
  if (nvrtc_missing(&why)) LOWBIT_SKIP(why);
  TempDir tmp;
  const std::string dir = tmp / "cache";
  seed_cache(dir, desc_of(LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S8));
  int status = 0;
  std::map<std::string, std::string> r =
      run_child("no_nvrtc:" + dir, {"LOWBIT_NVRTC_LIBRARY=/nonexistent/libnvrtc.so"}, &status);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  REQUIRE(r["started"] == "1");
  CHECK(r["done"] == "1");
  CHECK(r["context"] == "1");
  CHECK(r["nvrtc_version"] == "0");
  CHECK(r["hit"] == "0");
  CHECK(r["hit_origin"] == "disk");
  CAPTURE(r["miss_message"]);
  CHECK(r["miss"] == std::to_string(LOWBIT_NO_COMPILER));
  CHECK(r["miss_plan_null"] == "1");
  CHECK(r["miss_message"].find("/nonexistent/libnvrtc.so") != std::string::npos);
  CAPTURE(r["prewarm_message"]);
  CHECK(r["prewarm"] == std::to_string(LOWBIT_NO_COMPILER));
  CHECK(r["prewarm0"] == "0");
  CHECK(r["prewarm1"] == std::to_string(LOWBIT_NO_COMPILER));
  CHECK(r["prewarm_message"].find("item 1") != std::string::npos);
  CHECK(r["compiles"] == "0");
  CHECK(r["compile_failures"] == "0");
  // Nothing was written: the seeded entry alone, valid, no temp files.
  CHECK(check_all_entries_valid(dir) == 1);
  CHECK(temp_files(dir).empty());
}

TEST_CASE("faults: without a driver (LOWBIT_CUDA_LIBRARY=/nonexistent) device contexts are NO_DEVICE, offline works") {
  std::string why;
  if (nvrtc_missing(&why)) LOWBIT_SKIP(why);
  int status = 0;
  std::map<std::string, std::string> r =
      run_child("no_driver", {"LOWBIT_CUDA_LIBRARY=/nonexistent/libcuda.so.1"}, &status);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  REQUIRE(r["started"] == "1");
  CHECK(r["done"] == "1");
  CAPTURE(r["device_message"]);
  CHECK(r["device"] == std::to_string(LOWBIT_NO_DEVICE));
  CHECK(r["device_null"] == "1");
  CHECK(r["device_message"].find("/nonexistent/libcuda.so.1") != std::string::npos);
  CHECK(r["current"] == std::to_string(LOWBIT_NO_DEVICE));
  CHECK(r["current_null"] == "1");
  CHECK(r["offline"] == "1");
  CHECK(r["driver_version"] == "0");
  CHECK(r["plan"] == "0");
  CHECK(r["run"] == std::to_string(LOWBIT_NO_DEVICE));
}

// ---------------------------------------------------------------------------
// NVRTC compile errors

namespace {

// A spec NVRTC must reject: the template function does not exist.
lowbit::KernelSpec broken_spec(const std::string& function) {
  lowbit::KernelSpec s;
  s.family = "faults";
  s.header = "quantize.cuh";
  s.function = function;
  s.params_type = "lowbit::QuantizeParams";
  s.constants = {{"kBroken", "1"}};
  return s;
}

lowbit::Target sm90a() {
  lowbit::Target t;
  REQUIRE(lowbit::Target::parse("sm_90a", &t));
  return t;
}

}  // namespace

TEST_CASE("faults: an NVRTC compile error is COMPILE_FAILED with the log, counted, and writes no cache entry") {
  std::string why;
  if (nvrtc_missing(&why)) LOWBIT_SKIP(why);
  TempDir tmp;
  const std::string dir = tmp / "cache";
  lowbit::Logger logger(nullptr, nullptr, LOWBIT_LOG_ERROR);
  lowbit::DiskStore::Options o;
  o.dir = dir;
  o.logger = &logger;
  lowbit::DiskStore disk(o);
  REQUIRE(disk.writable());
  lowbit::CacheCounters counters;
  lowbit::KernelCache cache(sm90a(), nullptr, &disk, logger, counters);
  const lowbit::KernelSpec spec = broken_spec("lowbit::no_such_kernel_template");
  for (int attempt = 1; attempt <= 2; ++attempt) {
    CAPTURE(attempt);
    lowbit_status status = LOWBIT_OK;
    std::string message;
    try {
      cache.get(spec);
    } catch (const lowbit::Error& e) {
      status = e.status();
      message = e.message();
    }
    CHECK(status == LOWBIT_COMPILE_FAILED);
    CAPTURE(message);
    CHECK(message.find("no_such_kernel_template") != std::string::npos);  // the NVRTC log names it
    CHECK(message.find("--- log ---") != std::string::npos);
    CHECK(message.find("faults<") != std::string::npos);  // the kernel's name
    // A failure is not remembered as a kernel: the next request compiles again.
    CHECK(counters.compile_failures.load() == uint64_t(attempt));
    CHECK(counters.compiles.load() == 0);
    CHECK(lowbit::test::list_files(dir, ".lbk").empty());
    CHECK(temp_files(dir).empty());
  }

  // Through the C API, the same status and message reach the caller: a plan
  // whose kernel fails cannot be made from the public API (validation keeps
  // broken kernels out), so this checks the boundary's mapping instead.
  CHECK(std::string(lowbit_status_string(LOWBIT_COMPILE_FAILED)).find("COMPILE_FAILED") != std::string::npos);
}

TEST_CASE("faults: a compile error seen by several threads at once fails them all and is retried later") {
  std::string why;
  if (nvrtc_missing(&why)) LOWBIT_SKIP(why);
  TempDir tmp;
  const std::string dir = tmp / "cache";
  lowbit::Logger logger(nullptr, nullptr, LOWBIT_LOG_ERROR);
  lowbit::DiskStore::Options o;
  o.dir = dir;
  o.logger = &logger;
  lowbit::DiskStore disk(o);
  lowbit::CacheCounters counters;
  lowbit::KernelCache cache(sm90a(), nullptr, &disk, logger, counters);
  const lowbit::KernelSpec spec = broken_spec("lowbit::also_not_a_kernel");
  constexpr int kThreads = 4;
  std::vector<lowbit_status> statuses(kThreads, LOWBIT_OK);
  std::vector<std::thread> pool;
  for (int i = 0; i < kThreads; ++i) {
    pool.emplace_back([&, i] {
      try {
        cache.get(spec);
      } catch (const lowbit::Error& e) {
        statuses[size_t(i)] = e.status();
      } catch (...) {
        statuses[size_t(i)] = LOWBIT_INTERNAL;
      }
    });
  }
  for (std::thread& t : pool) t.join();
  for (int i = 0; i < kThreads; ++i) CHECK(statuses[size_t(i)] == LOWBIT_COMPILE_FAILED);
  CHECK(counters.compile_failures.load() >= 1);
  CHECK(counters.compile_failures.load() <= uint64_t(kThreads));
  CHECK(counters.compiles.load() == 0);
  CHECK(lowbit::test::list_files(dir, ".lbk").empty());
  CHECK(temp_files(dir).empty());
}

// ---------------------------------------------------------------------------
// Driver error mapping

TEST_CASE("faults: CUDA_ERROR_OUT_OF_MEMORY maps to LOWBIT_OUT_OF_MEMORY, other results to their statuses") {
  auto status_of = [](CUresult r) {
    try {
      lowbit::cu_check(r, "cuMemAlloc");
    } catch (const lowbit::Error& e) {
      CHECK(e.message().find("cuMemAlloc") != std::string::npos);
      return e.status();
    }
    return lowbit_status(LOWBIT_OK);
  };
  CHECK(status_of(CUDA_SUCCESS) == LOWBIT_OK);
  CHECK(status_of(CUDA_ERROR_OUT_OF_MEMORY) == LOWBIT_OUT_OF_MEMORY);
  CHECK(status_of(CUDA_ERROR_NO_DEVICE) == LOWBIT_NO_DEVICE);
  CHECK(status_of(CUDA_ERROR_INVALID_DEVICE) == LOWBIT_NO_DEVICE);
  CHECK(status_of(CUDA_ERROR_NOT_INITIALIZED) == LOWBIT_NO_DEVICE);
  CHECK(status_of(CUDA_ERROR_LAUNCH_FAILED) == LOWBIT_CUDA_ERROR);
  CHECK(status_of(CUDA_ERROR_ILLEGAL_ADDRESS) == LOWBIT_CUDA_ERROR);
  // Unknown values too. CUresult's enumerators span 0..999, so only values up
  // to 1023 are valid CUresults in C++ (UBSan's -fsanitize=enum checks).
  const CUresult unknown = CUresult(1000);
  CHECK(status_of(unknown) == LOWBIT_CUDA_ERROR);
  // The text names the result even without a driver to ask.
  CHECK(!lowbit::cu_result_text(CUDA_ERROR_OUT_OF_MEMORY).empty());
  CHECK(!lowbit::cu_result_text(unknown).empty());
}
