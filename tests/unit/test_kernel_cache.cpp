// Unit tests of the kernel cache through the public API (DESIGN.md section
// 5), with offline sm_90a contexts and temporary cache directories: single
// flight across threads and contexts, damaged entries, unusable and unsafe
// directories, the cache modes, and the logging of cold compiles.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "cache/disk_store.hpp"
#include "common/sha256.hpp"
#include "lowbit/lowbit.h"
#include "support/test_support.hpp"

namespace {

namespace fs = std::filesystem;
using lowbit::test::TempDir;

// Unsets environment variables that would change what these tests observe
// ($LOWBIT_LOG filters the log, $LOWBIT_CACHE_PATH adds read-only caches,
// $LOWBIT_CACHE_DIR is the default directory), restoring them at scope end.
class CleanEnv {
 public:
  CleanEnv() {
    for (const char* name : {"LOWBIT_LOG", "LOWBIT_CACHE_PATH", "LOWBIT_CACHE_DIR"}) {
      const char* v = std::getenv(name);
      saved_.emplace_back(name, v != nullptr ? std::optional<std::string>(v) : std::nullopt);
      ::unsetenv(name);
    }
  }
  ~CleanEnv() {
    for (const auto& [name, value] : saved_) {
      if (value)
        ::setenv(name.c_str(), value->c_str(), 1);
      else
        ::unsetenv(name.c_str());
    }
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

// Collects the lines delivered to a context's log callback.
struct LogCapture {
  std::mutex mu;
  std::vector<std::pair<int32_t, std::string>> lines;

  static void callback(void* user, int32_t level, const char* message) {
    auto* self = static_cast<LogCapture*>(user);
    std::lock_guard<std::mutex> g(self->mu);
    self->lines.emplace_back(level, message);
  }
  std::vector<std::string> at(int32_t level) {
    std::lock_guard<std::mutex> g(mu);
    std::vector<std::string> out;
    for (const auto& [l, m] : lines)
      if (l == level) out.push_back(m);
    return out;
  }
  std::string all() {
    std::lock_guard<std::mutex> g(mu);
    std::string s;
    for (const auto& [l, m] : lines) s += std::to_string(l) + ": " + m + "\n";
    return s;
  }
};

std::string last_error() { return lowbit_last_error_message(); }

lowbit_context* make_ctx(const std::string& dir, int32_t mode = LOWBIT_CACHE_READ_WRITE, LogCapture* log = nullptr,
                         int32_t level = LOWBIT_LOG_WARN) {
  lowbit_context_options o;
  lowbit_context_options_init(&o);
  o.cache_dir = dir.empty() ? nullptr : dir.c_str();
  o.cache_mode = mode;
  o.log_level = level;
  if (log != nullptr) {
    o.log_callback = &LogCapture::callback;
    o.log_user_data = log;
  } else {
    o.log_level = LOWBIT_LOG_ERROR;
  }
  lowbit_context* ctx = nullptr;
  REQUIRE_MESSAGE(lowbit_context_create_offline("sm_90a", &o, &ctx) == LOWBIT_OK, last_error());
  return ctx;
}

struct Ctx {
  lowbit_context* ctx;
  explicit Ctx(const std::string& dir, int32_t mode = LOWBIT_CACHE_READ_WRITE, LogCapture* log = nullptr,
               int32_t level = LOWBIT_LOG_WARN)
      : ctx(make_ctx(dir, mode, log, level)) {}
  ~Ctx() { lowbit_context_destroy(ctx); }
  Ctx(const Ctx&) = delete;
  Ctx& operator=(const Ctx&) = delete;
  operator lowbit_context*() const { return ctx; }
};

// Two kernels: A (f32 -> s8) and B (bf16 -> u8).
lowbit_quantize_desc kernel_a() {
  lowbit_quantize_desc d;
  lowbit_quantize_desc_init(&d);
  d.dims[0] = 1000;
  return d;
}
lowbit_quantize_desc kernel_b() {
  lowbit_quantize_desc d = kernel_a();
  d.x_dtype = LOWBIT_DTYPE_BF16;
  d.q_dtype = LOWBIT_DTYPE_U8;
  return d;
}

// Creates (and destroys) a plan; returns its describe() JSON.
std::string create_plan(lowbit_context* ctx, const lowbit_quantize_desc& d) {
  lowbit_plan* plan = nullptr;
  const lowbit_status s = lowbit_quantize_plan_create(ctx, &d, &plan);
  REQUIRE_MESSAGE(s == LOWBIT_OK, lowbit_status_string(s) << ": " << last_error());
  size_t len = 0;
  REQUIRE(lowbit_plan_describe(plan, nullptr, 0, &len) == LOWBIT_OK);
  std::string json(len + 1, '\0');
  REQUIRE(lowbit_plan_describe(plan, json.data(), json.size(), nullptr) == LOWBIT_OK);
  json.resize(len);
  lowbit_plan_destroy(plan);
  return json;
}

std::string json_field(const std::string& json, const std::string& key) {
  const std::string k = "\"" + key + "\":\"";
  const size_t p = json.find(k);
  if (p == std::string::npos) return "";
  return json.substr(p + k.size(), json.find('"', p + k.size()) - (p + k.size()));
}

lowbit_cache_stats stats_of(lowbit_context* ctx) {
  lowbit_cache_stats s;
  s.struct_size = sizeof(s);
  REQUIRE(lowbit_context_cache_stats(ctx, &s) == LOWBIT_OK);
  return s;
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  REQUIRE(fd >= 0);
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    REQUIRE(n > 0);
    done += size_t(n);
  }
  REQUIRE(::fchmod(fd, 0600) == 0);
  ::close(fd);
}

void make_dir(const std::string& path, mode_t mode) {
  REQUIRE(::mkdir(path.c_str(), 0700) == 0);
  REQUIRE(::chmod(path.c_str(), mode) == 0);
}

// Every file and directory under `dir`: relative path -> size, mtime and a
// digest of the contents.
std::map<std::string, std::string> snapshot(const std::string& dir) {
  std::map<std::string, std::string> out;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    struct stat st {};
    const std::string p = it->path().string();
    if (::lstat(p.c_str(), &st) != 0) continue;
    std::string v = std::to_string(st.st_mode) + "/" + std::to_string(st.st_size) + "/" +
                    std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
    if (S_ISREG(st.st_mode)) {
      const std::vector<uint8_t> b = read_bytes(p);
      v += "/" + lowbit::to_hex(lowbit::sha256(b.data(), b.size()));
    }
    out[p.substr(dir.size())] = v;
  }
  return out;
}

// Valid cache entries of kernels A and B for sm_90a, compiled once per process.
struct Golden {
  TempDir tmp;
  std::string a_name, b_name;  // file names
  std::vector<uint8_t> a_bytes, b_bytes;
  Golden() {
    for (int k = 0; k < 2; ++k) {
      const std::string dir = tmp / (k == 0 ? "a" : "b");
      Ctx ctx(dir);
      create_plan(ctx, k == 0 ? kernel_a() : kernel_b());
      const std::vector<std::string> files = lowbit::test::list_files(dir, ".lbk");
      REQUIRE(files.size() == 1);
      (k == 0 ? a_name : b_name) = fs::path(files[0]).filename().string();
      (k == 0 ? a_bytes : b_bytes) = read_bytes(files[0]);
    }
  }
};
const Golden& golden() {
  static const Golden g;
  return g;
}

// Checks that `path` holds a valid entry whose header matches its name.
void check_valid_entry(const std::string& path) {
  const std::vector<uint8_t> bytes = read_bytes(path);
  std::string problem;
  const std::optional<lowbit::CacheEntry> e = lowbit::DiskStore::parse(bytes.data(), bytes.size(), &problem);
  REQUIRE_MESSAGE(e.has_value(), path << ": " << problem);
  CHECK(lowbit::DiskStore::file_name(e->base_key, e->nvrtc_version) == fs::path(path).filename().string());
  CHECK(e->payload.size() > 4);
  CHECK(std::memcmp(e->payload.data(), "\x7f" "ELF", 4) == 0);
}

// Runs `fn(i)` on n threads released together (no sleeps: they wait for each
// other on an atomic counter).
template <typename Fn>
void on_threads_at_once(int n, Fn fn) {
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      ready.fetch_add(1);
      while (ready.load() < n) std::this_thread::yield();
      fn(i);
    });
  }
  for (std::thread& t : threads) t.join();
}

}  // namespace

// ---------------------------------------------------------------------------
// Single flight

TEST_CASE("kernel cache: 16 threads asking for one new kernel compile it once") {
  CleanEnv env;
  TempDir tmp;
  const std::string dir = tmp / "cache";
  Ctx ctx(dir);
  constexpr int kThreads = 16;
  std::vector<lowbit_status> statuses(kThreads, -1);
  std::vector<std::string> keys(kThreads), origins(kThreads);
  on_threads_at_once(kThreads, [&](int i) {
    lowbit_quantize_desc d = kernel_a();
    lowbit_plan* plan = nullptr;
    statuses[i] = lowbit_quantize_plan_create(ctx, &d, &plan);
    if (plan != nullptr) {
      char buf[8192];
      lowbit_plan_describe(plan, buf, sizeof(buf), nullptr);
      keys[i] = json_field(buf, "key");
      origins[i] = json_field(buf, "cache");
    }
    lowbit_plan_destroy(plan);
  });
  int compiled = 0;
  for (int i = 0; i < kThreads; ++i) {
    CAPTURE(i);
    CHECK(statuses[i] == LOWBIT_OK);
    CHECK(!keys[i].empty());
    CHECK(keys[i] == keys[0]);
    compiled += origins[i] == "compiled" ? 1 : 0;
  }
  CHECK(compiled == 1);
  const lowbit_cache_stats st = stats_of(ctx);
  CHECK(st.compiles == 1);
  CHECK(st.misses == 1);
  CHECK(st.memory_hits + st.disk_hits == kThreads - 1);
  CHECK(st.compile_failures == 0);
  CHECK(lowbit::test::list_files(dir, ".lbk").size() == 1);
}

TEST_CASE("kernel cache: 16 contexts on one directory compile a new kernel once (the key lock)") {
  CleanEnv env;
  TempDir tmp;
  const std::string dir = tmp / "cache";
  constexpr int kThreads = 16;
  std::vector<lowbit_context*> contexts;
  for (int i = 0; i < kThreads; ++i) contexts.push_back(make_ctx(dir));
  std::vector<lowbit_status> statuses(kThreads, -1);
  on_threads_at_once(kThreads, [&](int i) {
    lowbit_quantize_desc d = kernel_b();
    lowbit_plan* plan = nullptr;
    statuses[i] = lowbit_quantize_plan_create(contexts[i], &d, &plan);
    lowbit_plan_destroy(plan);
  });
  uint64_t compiles = 0, disk_hits = 0, memory_hits = 0;
  for (int i = 0; i < kThreads; ++i) {
    CHECK(statuses[i] == LOWBIT_OK);
    const lowbit_cache_stats st = stats_of(contexts[i]);
    compiles += st.compiles;
    disk_hits += st.disk_hits;
    memory_hits += st.memory_hits;
    lowbit_context_destroy(contexts[i]);
  }
  CHECK(compiles == 1);
  CHECK(disk_hits + memory_hits == kThreads - 1);
  const std::vector<std::string> files = lowbit::test::list_files(dir, ".lbk");
  REQUIRE(files.size() == 1);
  check_valid_entry(files[0]);
}

// ---------------------------------------------------------------------------
// Damage

TEST_CASE("kernel cache: damaged entries are detected, removed and recompiled") {
  CleanEnv env;
  const Golden& g = golden();
  REQUIRE(g.a_bytes.size() > 200);
  struct Damage {
    const char* name;
    std::vector<uint8_t> bytes;
  };
  std::vector<uint8_t> flipped = g.a_bytes;
  flipped.back() ^= 0x10;  // the payload's last byte
  std::vector<uint8_t> flipped_header = g.a_bytes;
  flipped_header[40] ^= 0x01;  // inside the key field
  std::vector<uint8_t> garbage(g.a_bytes.size());
  for (uint8_t& b : garbage) b = uint8_t(lowbit::test::rng()());
  const std::vector<Damage> damages = {
      {"truncated to half", std::vector<uint8_t>(g.a_bytes.begin(), g.a_bytes.begin() + long(g.a_bytes.size() / 2))},
      {"truncated by one byte", std::vector<uint8_t>(g.a_bytes.begin(), g.a_bytes.end() - 1)},
      {"one payload bit flipped", flipped},
      {"one key bit flipped", flipped_header},
      {"zero length", {}},
      {"garbage", garbage},
      {"a valid entry of another key under this key's name", g.b_bytes},
  };
  for (const Damage& dmg : damages) {
    CAPTURE(dmg.name);
    TempDir tmp;
    const std::string dir = tmp / "cache";
    make_dir(dir, 0700);
    const std::string path = dir + "/" + g.a_name;
    write_bytes(path, dmg.bytes);

    LogCapture log;
    {
      Ctx ctx(dir, LOWBIT_CACHE_READ_WRITE, &log);
      const std::string json = create_plan(ctx, kernel_a());
      CHECK(json_field(json, "cache") == "compiled");
      const lowbit_cache_stats st = stats_of(ctx);
      CHECK(st.compiles == 1);
      CHECK(st.disk_hits == 0);
      CHECK(st.damaged_entries >= 1);
      CHECK(st.disk_entries == 1);
    }
    // One warning names the damaged file.
    const std::vector<std::string> warnings = log.at(LOWBIT_LOG_WARN);
    CAPTURE(log.all());
    CHECK(warnings.size() >= 1);
    bool named = false;
    for (const std::string& w : warnings) named = named || w.find(g.a_name) != std::string::npos;
    CHECK(named);
    // The file was replaced by a valid entry, which the next context loads.
    const std::vector<std::string> files = lowbit::test::list_files(dir, ".lbk");
    REQUIRE(files.size() == 1);
    CHECK(files[0] == path);
    check_valid_entry(path);
    CHECK(read_bytes(path) != dmg.bytes);
    Ctx again(dir);
    CHECK(json_field(create_plan(again, kernel_a()), "cache") == "disk");
    const lowbit_cache_stats st = stats_of(again);
    CHECK(st.compiles == 0);
    CHECK(st.damaged_entries == 0);
  }
}

TEST_CASE("kernel cache: a valid entry copied into a fresh directory is a disk hit (control)") {
  // The damage test above relies on copying entries between directories;
  // an undamaged copy must load.
  CleanEnv env;
  const Golden& g = golden();
  TempDir tmp;
  const std::string dir = tmp / "cache";
  make_dir(dir, 0700);
  write_bytes(dir + "/" + g.a_name, g.a_bytes);
  Ctx ctx(dir);
  CHECK(json_field(create_plan(ctx, kernel_a()), "cache") == "disk");
  const lowbit_cache_stats st = stats_of(ctx);
  CHECK(st.compiles == 0);
  CHECK(st.damaged_entries == 0);
  CHECK(read_bytes(dir + "/" + g.a_name) == g.a_bytes);
}

// ---------------------------------------------------------------------------
// Unusable or unsafe directories

TEST_CASE("kernel cache: an unwritable cache directory falls back to memory with one warning") {
  CleanEnv env;
  TempDir tmp;
  // A path under a regular file cannot be created, even by root.
  write_bytes(tmp / "file", {'x'});
  const std::string dir = tmp / "file" + "/cache";
  LogCapture log;
  {
    Ctx ctx(dir, LOWBIT_CACHE_READ_WRITE, &log);
    lowbit_device_info info;
    info.struct_size = sizeof(info);
    REQUIRE(lowbit_context_get_info(ctx, &info) == LOWBIT_OK);
    CHECK(std::string(info.cache_dir).empty());
    CHECK(json_field(create_plan(ctx, kernel_a()), "cache") == "compiled");
    CHECK(json_field(create_plan(ctx, kernel_a()), "cache") == "memory");
    CHECK(json_field(create_plan(ctx, kernel_b()), "cache") == "compiled");
    const lowbit_cache_stats st = stats_of(ctx);
    CHECK(st.compiles == 2);
    CHECK(st.memory_hits == 1);
    CHECK(st.disk_entries == 0);
    CHECK(st.disk_bytes == 0);
  }
  CAPTURE(log.all());
  const std::vector<std::string> warnings = log.at(LOWBIT_LOG_WARN);
  REQUIRE(warnings.size() == 1);
  CHECK(warnings[0].find(dir) != std::string::npos);
  CHECK(warnings[0].find("memory") != std::string::npos);
  CHECK(log.at(LOWBIT_LOG_ERROR).empty());
}

TEST_CASE("kernel cache: a cache directory writable by others is refused, and plans still work") {
  CleanEnv env;
  TempDir tmp;
  const std::string dir = tmp / "cache";
  make_dir(dir, 0777);
  const auto before = snapshot(dir);
  LogCapture log;
  {
    Ctx ctx(dir, LOWBIT_CACHE_READ_WRITE, &log);
    lowbit_device_info info;
    info.struct_size = sizeof(info);
    REQUIRE(lowbit_context_get_info(ctx, &info) == LOWBIT_OK);
    CHECK(std::string(info.cache_dir).empty());
    CHECK(json_field(create_plan(ctx, kernel_a()), "cache") == "compiled");
    CHECK(stats_of(ctx).compiles == 1);
  }
  CAPTURE(log.all());
  const std::vector<std::string> warnings = log.at(LOWBIT_LOG_WARN);
  REQUIRE(warnings.size() == 1);
  CHECK(warnings[0].find(dir) != std::string::npos);
  CHECK(warnings[0].find("writable by group or others") != std::string::npos);
  CHECK(snapshot(dir) == before);  // nothing written into it
  struct stat st {};
  REQUIRE(::stat(dir.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0777);  // and not "fixed" behind the user's back

  // A planted entry in such a directory is not loaded either.
  write_bytes(dir + "/" + golden().a_name, golden().a_bytes);
  Ctx ctx2(dir, LOWBIT_CACHE_READ_WRITE, &log);
  CHECK(json_field(create_plan(ctx2, kernel_a()), "cache") == "compiled");
}

// ---------------------------------------------------------------------------
// Cache modes

TEST_CASE("kernel cache: LOWBIT_CACHE_MEMORY writes nothing") {
  CleanEnv env;
  TempDir tmp;
  const std::string dir = tmp / "cache";
  const std::string env_dir = tmp / "env-cache";
  ::setenv("LOWBIT_CACHE_DIR", env_dir.c_str(), 1);  // restored by CleanEnv
  {
    Ctx ctx(dir, LOWBIT_CACHE_MEMORY);
    CHECK(json_field(create_plan(ctx, kernel_a()), "cache") == "compiled");
    CHECK(json_field(create_plan(ctx, kernel_a()), "cache") == "memory");
    const lowbit_cache_stats st = stats_of(ctx);
    CHECK(st.compiles == 1);
    CHECK(st.disk_entries == 0);
    lowbit_device_info info;
    info.struct_size = sizeof(info);
    REQUIRE(lowbit_context_get_info(ctx, &info) == LOWBIT_OK);
    CHECK(std::string(info.cache_dir).empty());
  }
  {
    Ctx ctx("", LOWBIT_CACHE_MEMORY);  // default directory: not used either
    CHECK(json_field(create_plan(ctx, kernel_a()), "cache") == "compiled");
  }
  CHECK_FALSE(fs::exists(dir));
  CHECK_FALSE(fs::exists(env_dir));
  // A directory that holds the kernel is not read in memory mode.
  make_dir(dir, 0700);
  write_bytes(dir + "/" + golden().a_name, golden().a_bytes);
  const auto before = snapshot(dir);
  {
    Ctx ctx(dir, LOWBIT_CACHE_MEMORY);
    CHECK(json_field(create_plan(ctx, kernel_a()), "cache") == "compiled");
  }
  CHECK(snapshot(dir) == before);
}

TEST_CASE("kernel cache: LOWBIT_CACHE_READ_ONLY reads but never writes") {
  CleanEnv env;
  const Golden& g = golden();
  TempDir tmp;
  SUBCASE("a missing directory is not created") {
    const std::string dir = tmp / "missing";
    Ctx ctx(dir, LOWBIT_CACHE_READ_ONLY);
    CHECK(json_field(create_plan(ctx, kernel_a()), "cache") == "compiled");
    CHECK_FALSE(fs::exists(dir));
  }
  SUBCASE("an empty directory stays empty") {
    const std::string dir = tmp / "cache";
    make_dir(dir, 0700);
    const auto before = snapshot(dir);
    Ctx ctx(dir, LOWBIT_CACHE_READ_ONLY);
    CHECK(json_field(create_plan(ctx, kernel_a()), "cache") == "compiled");
    CHECK(stats_of(ctx).compiles == 1);
    CHECK(snapshot(dir) == before);  // no entry, temp file or lock file
  }
  SUBCASE("a cached kernel loads without touching the file") {
    const std::string dir = tmp / "cache";
    make_dir(dir, 0700);
    const std::string path = dir + "/" + g.a_name;
    write_bytes(path, g.a_bytes);
    // An old mtime: a writable cache would refresh it on a hit (LRU).
    const struct timespec old[2] = {{1000000000, 0}, {1000000000, 0}};
    REQUIRE(::utimensat(AT_FDCWD, path.c_str(), old, 0) == 0);
    const auto before = snapshot(dir);
    Ctx ctx(dir, LOWBIT_CACHE_READ_ONLY);
    CHECK(json_field(create_plan(ctx, kernel_a()), "cache") == "disk");
    CHECK(json_field(create_plan(ctx, kernel_b()), "cache") == "compiled");  // not stored
    const lowbit_cache_stats st = stats_of(ctx);
    CHECK(st.disk_hits == 1);
    CHECK(st.compiles == 1);
    CHECK(snapshot(dir) == before);
  }
  SUBCASE("a damaged entry is ignored, not removed") {
    const std::string dir = tmp / "cache";
    make_dir(dir, 0700);
    std::vector<uint8_t> bad = g.a_bytes;
    bad[bad.size() / 2] ^= 0xff;
    write_bytes(dir + "/" + g.a_name, bad);
    const auto before = snapshot(dir);
    Ctx ctx(dir, LOWBIT_CACHE_READ_ONLY);
    CHECK(json_field(create_plan(ctx, kernel_a()), "cache") == "compiled");
    CHECK(snapshot(dir) == before);
  }
}

// ---------------------------------------------------------------------------
// Logging

TEST_CASE("kernel cache: a cold compile is logged at INFO with the kernel name and milliseconds") {
  CleanEnv env;
  TempDir tmp;
  const std::string dir = tmp / "cache";
  LogCapture log;
  std::string name;
  {
    Ctx ctx(dir, LOWBIT_CACHE_READ_WRITE, &log, LOWBIT_LOG_INFO);
    const std::string json = create_plan(ctx, kernel_a());
    name = json_field(json, "name");
    REQUIRE(name.rfind("quantize<", 0) == 0);
    CAPTURE(log.all());
    const std::vector<std::string> info = log.at(LOWBIT_LOG_INFO);
    const std::regex compiled("compiled (.+) for sm_90a in ([0-9]+(\\.[0-9]+)?) ms");
    int compiled_lines = 0, compiling_index = -1, compiled_index = -1;
    for (size_t i = 0; i < info.size(); ++i) {
      CHECK(info[i].find('\n') == std::string::npos);  // one line, no trailing newline
      std::smatch m;
      if (std::regex_search(info[i], m, compiled)) {
        ++compiled_lines;
        compiled_index = int(i);
        CHECK(m[1].str() == name);
        CHECK(std::stod(m[2].str()) > 0.0);
      } else if (info[i].find("compiling " + name) != std::string::npos) {
        compiling_index = int(i);
      }
    }
    CHECK(compiled_lines == 1);
    // Announced before it starts, so that a long compile does not look like a hang.
    CHECK(compiling_index >= 0);
    CHECK(compiling_index < compiled_index);
    CHECK(log.at(LOWBIT_LOG_WARN).empty());
    // A memory hit logs no compile.
    const size_t lines = log.lines.size();
    create_plan(ctx, kernel_a());
    CHECK(log.lines.size() == lines);
  }
  {
    // Nor does a disk hit.
    LogCapture log2;
    Ctx ctx(dir, LOWBIT_CACHE_READ_WRITE, &log2, LOWBIT_LOG_DEBUG);
    CHECK(json_field(create_plan(ctx, kernel_a()), "cache") == "disk");
    for (const std::string& m : log2.at(LOWBIT_LOG_INFO)) CHECK(m.find("compiled") == std::string::npos);
  }
  {
    // At the default level (WARN) the callback gets no INFO line...
    LogCapture quiet;
    TempDir tmp2;
    Ctx ctx(tmp2 / "cache", LOWBIT_CACHE_READ_WRITE, &quiet, LOWBIT_LOG_WARN);
    create_plan(ctx, kernel_a());
    CAPTURE(quiet.all());
    CHECK(quiet.lines.empty());
  }
  {
    // ...unless $LOWBIT_LOG asks for it (restored by CleanEnv).
    ::setenv("LOWBIT_LOG", "info", 1);
    LogCapture loud;
    TempDir tmp3;
    Ctx ctx(tmp3 / "cache", LOWBIT_CACHE_READ_WRITE, &loud, LOWBIT_LOG_ERROR);
    ::unsetenv("LOWBIT_LOG");
    create_plan(ctx, kernel_a());
    bool found = false;
    for (const std::string& m : loud.at(LOWBIT_LOG_INFO)) found = found || m.find("compiled " + name) != std::string::npos;
    CHECK(found);
  }
}
