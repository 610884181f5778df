// Unit tests of the C API (include/lowbit/lowbit.h, capi/lowbit_capi.cpp) on
// a machine without a GPU: every status code that bad input can reach comes
// back with a message that says what was wrong; handles, struct sizes and
// enums are checked; offline contexts compile, describe, prewarm and count
// cache hits; the CPU reference runs on host memory.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/error.hpp"
#include "lowbit/lowbit.h"
#include "ops/op_plan.hpp"
#include "support/test_support.hpp"

namespace {

using lowbit::test::TempDir;

// Makes the thread's last error a known sentinel, so that a check of the
// next failure's message cannot pass on a stale one.
constexpr const char* kSentinel = "zz_sentinel_arch";
void reset_error() {
  lowbit_context* ctx = nullptr;
  REQUIRE(lowbit_context_create_offline(kSentinel, nullptr, &ctx) == LOWBIT_INVALID_ARGUMENT);
  REQUIRE(std::string(lowbit_last_error_message()).find(kSentinel) != std::string::npos);
}

std::string last_error() { return lowbit_last_error_message(); }

// `expr` must return `status`, with a fresh message that contains `needle`.
#define CHECK_FAILS(expr, status, needle)                                                                    \
  do {                                                                                                       \
    reset_error();                                                                                           \
    const lowbit_status got_ = (expr);                                                                       \
    const std::string msg_ = last_error();                                                                   \
    CHECK_MESSAGE(got_ == (status), #expr " returned " << got_ << " (expected " << (status) << "): " << msg_); \
    CHECK_MESSAGE(msg_.find(needle) != std::string::npos,                                                    \
                  #expr ": message \"" << msg_ << "\" does not mention \"" << needle << "\"");               \
    CHECK_MESSAGE(msg_.find(kSentinel) == std::string::npos, #expr ": the message was not updated");          \
    CHECK(lowbit_copy_last_error_message(nullptr, 0) == msg_.size());                                          \
  } while (0)

lowbit_quantize_desc qdesc(int64_t n = 1000, lowbit_dtype x = LOWBIT_DTYPE_F32, lowbit_dtype q = LOWBIT_DTYPE_S8) {
  lowbit_quantize_desc d;
  lowbit_quantize_desc_init(&d);
  d.x_dtype = x;
  d.q_dtype = q;
  d.rank = 1;
  d.dims[0] = n;
  return d;
}

lowbit_context_options options_for(const std::string& dir, int32_t mode = LOWBIT_CACHE_READ_WRITE) {
  lowbit_context_options o;
  lowbit_context_options_init(&o);
  o.cache_dir = dir.c_str();
  o.cache_mode = mode;
  o.log_level = LOWBIT_LOG_ERROR;
  return o;
}

// An offline sm_90a context (destroyed at scope end).
struct Ctx {
  lowbit_context* ctx = nullptr;
  explicit Ctx(const std::string& dir, int32_t mode = LOWBIT_CACHE_READ_WRITE, const char* arch = "sm_90a") {
    const lowbit_context_options o = options_for(dir, mode);
    REQUIRE_MESSAGE(lowbit_context_create_offline(arch, &o, &ctx) == LOWBIT_OK, last_error());
    REQUIRE(ctx != nullptr);
  }
  ~Ctx() { lowbit_context_destroy(ctx); }
  Ctx(const Ctx&) = delete;
  Ctx& operator=(const Ctx&) = delete;
  operator lowbit_context*() const { return ctx; }
};

struct Plan {
  lowbit_plan* plan = nullptr;
  Plan(lowbit_context* ctx, const lowbit_quantize_desc& d) {
    REQUIRE_MESSAGE(lowbit_quantize_plan_create(ctx, &d, &plan) == LOWBIT_OK, last_error());
    REQUIRE(plan != nullptr);
  }
  ~Plan() { lowbit_plan_destroy(plan); }
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  operator lowbit_plan*() const { return plan; }
};

// A cache directory shared by the tests of this file that need some compiled
// kernel but do not care whether it is fresh: compiled once per process.
const std::string& shared_cache() {
  static TempDir dir;
  static const std::string path = dir / "cache";
  return path;
}

lowbit_cache_stats stats_of(lowbit_context* ctx) {
  lowbit_cache_stats s;
  std::memset(&s, 0xff, sizeof(s));
  s.struct_size = sizeof(s);
  REQUIRE(lowbit_context_cache_stats(ctx, &s) == LOWBIT_OK);
  return s;
}

std::string describe(lowbit_plan* plan) {
  size_t len = 0;
  REQUIRE(lowbit_plan_describe(plan, nullptr, 0, &len) == LOWBIT_OK);
  std::string s(len + 1, '\0');
  size_t len2 = 0;
  REQUIRE(lowbit_plan_describe(plan, s.data(), s.size(), &len2) == LOWBIT_OK);
  CHECK(len2 == len);
  s.resize(len);
  return s;
}

uint64_t addr(const void* p) { return uint64_t(uintptr_t(p)); }

// The integer that follows the first `key` at or after `from`; -999 if none.
long long int_after(const std::string& json, const std::string& key, size_t from = 0) {
  const size_t p = json.find(key, from);
  if (p == std::string::npos) return -999;
  return std::strtoll(json.c_str() + p + key.size(), nullptr, 10);
}

}  // namespace

// ---------------------------------------------------------------------------
// Status strings, version, dtype names

TEST_CASE("capi: lowbit_status_string names every code, and unknown ones") {
  const struct {
    lowbit_status code;
    const char* name;
  } codes[] = {{LOWBIT_OK, "LOWBIT_OK"},
               {LOWBIT_MISALIGNED, "LOWBIT_MISALIGNED"},
               {LOWBIT_INVALID_PROBLEM, "LOWBIT_INVALID_PROBLEM"},
               {LOWBIT_UNSUPPORTED, "LOWBIT_UNSUPPORTED"},
               {LOWBIT_WORKSPACE_TOO_SMALL, "LOWBIT_WORKSPACE_TOO_SMALL"},
               {LOWBIT_INVALID_ARGUMENT, "LOWBIT_INVALID_ARGUMENT"},
               {LOWBIT_NO_DEVICE, "LOWBIT_NO_DEVICE"},
               {LOWBIT_NO_COMPILER, "LOWBIT_NO_COMPILER"},
               {LOWBIT_COMPILE_FAILED, "LOWBIT_COMPILE_FAILED"},
               {LOWBIT_CUDA_ERROR, "LOWBIT_CUDA_ERROR"},
               {LOWBIT_OUT_OF_MEMORY, "LOWBIT_OUT_OF_MEMORY"},
               {LOWBIT_CACHE_IO, "LOWBIT_CACHE_IO"},
               {LOWBIT_INTERNAL, "LOWBIT_INTERNAL"}};
  // The values are permanent (DESIGN.md section 3).
  for (size_t i = 0; i < std::size(codes); ++i) CHECK(codes[i].code == lowbit_status(i));
  for (const auto& c : codes) {
    CAPTURE(c.name);
    const char* s = lowbit_status_string(c.code);
    REQUIRE(s != nullptr);
    const std::string str = s;
    CHECK(str.rfind(std::string(c.name) + ": ", 0) == 0);
    CHECK(str.size() > std::strlen(c.name) + 5);  // with an explanation
    CHECK(lowbit_status_string(c.code) == s);      // static storage
  }
  for (lowbit_status unknown : {13, 14, 100, -1, std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max()}) {
    CAPTURE(unknown);
    REQUIRE(lowbit_status_string(unknown) != nullptr);
    CHECK(std::string(lowbit_status_string(unknown)) == "unknown lowbit status");
  }
}

TEST_CASE("capi: the version macros equal the library's version functions") {
  CHECK(lowbit_version_number() == uint32_t(LOWBIT_VERSION_NUMBER));
  CHECK(uint32_t(LOWBIT_VERSION_NUMBER) ==
        uint32_t(LOWBIT_VERSION_MAJOR * 10000 + LOWBIT_VERSION_MINOR * 100 + LOWBIT_VERSION_PATCH));
  REQUIRE(lowbit_version_string() != nullptr);
  CHECK(std::string(lowbit_version_string()) == LOWBIT_VERSION_STRING);
  char expected[64];
  std::snprintf(expected, sizeof(expected), "%d.%d.%d", LOWBIT_VERSION_MAJOR, LOWBIT_VERSION_MINOR,
                LOWBIT_VERSION_PATCH);
  CHECK(std::string(lowbit_version_string()) == expected);
}

TEST_CASE("capi: lowbit_dtype_name") {
  CHECK(std::string(lowbit_dtype_name(LOWBIT_DTYPE_F32)) == "f32");
  CHECK(std::string(lowbit_dtype_name(LOWBIT_DTYPE_F64)) == "f64");
  CHECK(std::string(lowbit_dtype_name(LOWBIT_DTYPE_F16)) == "f16");
  CHECK(std::string(lowbit_dtype_name(LOWBIT_DTYPE_BF16)) == "bf16");
  CHECK(std::string(lowbit_dtype_name(LOWBIT_DTYPE_S8)) == "s8");
  CHECK(std::string(lowbit_dtype_name(LOWBIT_DTYPE_U8)) == "u8");
  CHECK(std::string(lowbit_dtype_name(LOWBIT_DTYPE_S4)) == "s4");
  CHECK(std::string(lowbit_dtype_name(LOWBIT_DTYPE_U4)) == "u4");
  CHECK(std::string(lowbit_dtype_name(LOWBIT_DTYPE_S32)) == "s32");
  for (lowbit_dtype bad : {0, 10, -1, 1000}) CHECK(lowbit_dtype_name(bad) == nullptr);
}

// ---------------------------------------------------------------------------
// The last-error message

TEST_CASE("capi: last error message: per thread, copy variant truncates and reports the length") {
  lowbit_context* ctx = reinterpret_cast<lowbit_context*>(0x1);
  REQUIRE(lowbit_context_create_offline("banana", nullptr, &ctx) == LOWBIT_INVALID_ARGUMENT);
  CHECK(ctx == nullptr);  // out is cleared on failure
  const std::string msg = last_error();
  CAPTURE(msg);
  CHECK(msg.find("banana") != std::string::npos);
  CHECK(msg.find("lowbit_context_create_offline") != std::string::npos);  // names the call
  REQUIRE(msg.size() > 10);

  // Length query.
  CHECK(lowbit_copy_last_error_message(nullptr, 0) == msg.size());
  CHECK(lowbit_copy_last_error_message(nullptr, 100) == msg.size());
  // Truncation: always NUL-terminated, returns the full length.
  char buf[256];
  std::memset(buf, 'X', sizeof(buf));
  CHECK(lowbit_copy_last_error_message(buf, 8) == msg.size());
  CHECK(std::string(buf) == msg.substr(0, 7));
  CHECK(buf[8] == 'X');  // nothing written past capacity
  std::memset(buf, 'X', sizeof(buf));
  CHECK(lowbit_copy_last_error_message(buf, 1) == msg.size());
  CHECK(buf[0] == '\0');
  CHECK(buf[1] == 'X');
  std::memset(buf, 'X', sizeof(buf));
  CHECK(lowbit_copy_last_error_message(buf, 0) == msg.size());
  CHECK(buf[0] == 'X');  // capacity 0: untouched
  // Exactly enough room, and more than enough.
  std::vector<char> exact(msg.size() + 1, 'X');
  CHECK(lowbit_copy_last_error_message(exact.data(), exact.size()) == msg.size());
  CHECK(std::string(exact.data()) == msg);
  std::vector<char> one_short(msg.size(), 'X');
  CHECK(lowbit_copy_last_error_message(one_short.data(), one_short.size()) == msg.size());
  CHECK(std::string(one_short.data()) == msg.substr(0, msg.size() - 1));

  // Another thread has its own message: empty at first, and its failures do
  // not change this thread's.
  std::string other_initial, other_after;
  size_t other_len = 99;
  std::thread t([&] {
    other_initial = lowbit_last_error_message();
    other_len = lowbit_copy_last_error_message(nullptr, 0);
    lowbit_context* c = nullptr;
    lowbit_context_create_offline("sm_", nullptr, &c);
    other_after = lowbit_last_error_message();
  });
  t.join();
  CHECK(other_initial.empty());
  CHECK(other_len == 0);
  CHECK(other_after.find("sm_") != std::string::npos);
  CHECK(last_error() == msg);
}

// ---------------------------------------------------------------------------
// NULL pointers, handles and descriptors

TEST_CASE("capi: NULL out pointers are INVALID_ARGUMENT") {
  Ctx ctx(shared_cache());
  lowbit_quantize_desc d = qdesc();
  lowbit_op_desc op{LOWBIT_FAMILY_QUANTIZE, 0, &d};
  CHECK_FAILS(lowbit_context_create_device(0, nullptr, nullptr), LOWBIT_INVALID_ARGUMENT, "out is NULL");
  CHECK_FAILS(lowbit_context_create_current(nullptr, nullptr), LOWBIT_INVALID_ARGUMENT, "out is NULL");
  CHECK_FAILS(lowbit_context_create_offline("sm_90a", nullptr, nullptr), LOWBIT_INVALID_ARGUMENT, "out is NULL");
  CHECK_FAILS(lowbit_plan_create(ctx, &op, nullptr), LOWBIT_INVALID_ARGUMENT, "out is NULL");
  CHECK_FAILS(lowbit_quantize_plan_create(ctx, &d, nullptr), LOWBIT_INVALID_ARGUMENT, "out is NULL");
  CHECK_FAILS(lowbit_context_get_info(ctx, nullptr), LOWBIT_INVALID_ARGUMENT, "info is NULL");
  CHECK_FAILS(lowbit_context_cache_stats(ctx, nullptr), LOWBIT_INVALID_ARGUMENT, "stats is NULL");
  Plan plan(ctx, d);
  CHECK_FAILS(lowbit_plan_workspace_size(plan, nullptr), LOWBIT_INVALID_ARGUMENT, "bytes is NULL");
  // describe's buf and length are both optional.
  CHECK(lowbit_plan_describe(plan, nullptr, 0, nullptr) == LOWBIT_OK);
  size_t ws = 99;
  CHECK(lowbit_plan_workspace_size(plan, &ws) == LOWBIT_OK);
  CHECK(ws == 0);
}

TEST_CASE("capi: NULL handles are INVALID_ARGUMENT, destroy(NULL) is a no-op") {
  lowbit_context_destroy(nullptr);
  lowbit_plan_destroy(nullptr);
  lowbit_context_options_init(nullptr);  // documented as not allowed, but must not crash
  lowbit_quantize_desc_init(nullptr);

  lowbit_quantize_desc d = qdesc();
  lowbit_op_desc op{LOWBIT_FAMILY_QUANTIZE, 0, &d};
  lowbit_device_info info;
  info.struct_size = sizeof(info);
  lowbit_cache_stats stats;
  stats.struct_size = sizeof(stats);
  size_t bytes = 0;
  char buf[16];
  lowbit_plan* plan = reinterpret_cast<lowbit_plan*>(0x1);
  CHECK_FAILS(lowbit_context_get_info(nullptr, &info), LOWBIT_INVALID_ARGUMENT, "context is NULL");
  CHECK_FAILS(lowbit_context_cache_stats(nullptr, &stats), LOWBIT_INVALID_ARGUMENT, "context is NULL");
  CHECK_FAILS(lowbit_plan_create(nullptr, &op, &plan), LOWBIT_INVALID_ARGUMENT, "context is NULL");
  CHECK(plan == nullptr);
  plan = reinterpret_cast<lowbit_plan*>(0x1);
  CHECK_FAILS(lowbit_quantize_plan_create(nullptr, &d, &plan), LOWBIT_INVALID_ARGUMENT, "context is NULL");
  CHECK(plan == nullptr);
  CHECK_FAILS(lowbit_plan_workspace_size(nullptr, &bytes), LOWBIT_INVALID_ARGUMENT, "plan is NULL");
  CHECK_FAILS(lowbit_plan_run(nullptr, nullptr, 0, 0, 0, nullptr), LOWBIT_INVALID_ARGUMENT, "plan is NULL");
  CHECK_FAILS(lowbit_plan_describe(nullptr, buf, sizeof(buf), &bytes), LOWBIT_INVALID_ARGUMENT, "plan is NULL");
  CHECK_FAILS(lowbit_prewarm(nullptr, &op, 1, 1, nullptr), LOWBIT_INVALID_ARGUMENT, "context is NULL");
}

TEST_CASE("capi: NULL descriptors are INVALID_ARGUMENT") {
  Ctx ctx(shared_cache());
  lowbit_plan* plan = reinterpret_cast<lowbit_plan*>(0x1);
  CHECK_FAILS(lowbit_plan_create(ctx, nullptr, &plan), LOWBIT_INVALID_ARGUMENT, "op is NULL");
  CHECK(plan == nullptr);
  lowbit_op_desc op{LOWBIT_FAMILY_QUANTIZE, 0, nullptr};
  CHECK_FAILS(lowbit_plan_create(ctx, &op, &plan), LOWBIT_INVALID_ARGUMENT, "desc is NULL");
  CHECK_FAILS(lowbit_quantize_plan_create(ctx, nullptr, &plan), LOWBIT_INVALID_ARGUMENT, "NULL");
  CHECK(plan == nullptr);
  CHECK_FAILS(lowbit_reference_run(nullptr, nullptr, 0), LOWBIT_INVALID_ARGUMENT, "op is NULL");
  CHECK_FAILS(lowbit_reference_run(&op, nullptr, 0), LOWBIT_INVALID_ARGUMENT, "desc is NULL");
  lowbit_quantize_desc d = qdesc();
  lowbit_op_desc good{LOWBIT_FAMILY_QUANTIZE, 0, &d};
  CHECK_FAILS(lowbit_reference_run(&good, nullptr, 3), LOWBIT_INVALID_ARGUMENT, "args is NULL");
  CHECK_FAILS(lowbit_prewarm(ctx, nullptr, 2, 1, nullptr), LOWBIT_INVALID_ARGUMENT, "ops is NULL");
  CHECK(lowbit_prewarm(ctx, nullptr, 0, 1, nullptr) == LOWBIT_OK);  // nothing to do
}

// ---------------------------------------------------------------------------
// struct_size and enums

TEST_CASE("capi: a wrong struct_size is INVALID_ARGUMENT") {
  Ctx ctx(shared_cache());
  const uint32_t sizes_desc[] = {0, 3, uint32_t(sizeof(lowbit_quantize_desc) - 4), uint32_t(sizeof(lowbit_quantize_desc) + 4)};
  for (uint32_t size : sizes_desc) {
    CAPTURE(size);
    lowbit_quantize_desc d = qdesc();
    d.struct_size = size;
    lowbit_plan* plan = reinterpret_cast<lowbit_plan*>(0x1);
    CHECK_FAILS(lowbit_quantize_plan_create(ctx, &d, &plan), LOWBIT_INVALID_ARGUMENT, "struct_size");
    CHECK(plan == nullptr);
    lowbit_op_desc op{LOWBIT_FAMILY_QUANTIZE, 0, &d};
    CHECK_FAILS(lowbit_reference_run(&op, nullptr, 0), LOWBIT_INVALID_ARGUMENT, "struct_size");
    CHECK_FAILS(lowbit_prewarm(ctx, &op, 1, 1, nullptr), LOWBIT_INVALID_ARGUMENT, "struct_size");
  }
  for (uint32_t size : {0u, 3u, uint32_t(sizeof(lowbit_context_options) + 4)}) {
    CAPTURE(size);
    lowbit_context_options o;
    lowbit_context_options_init(&o);
    o.struct_size = size;
    lowbit_context* c = reinterpret_cast<lowbit_context*>(0x1);
    CHECK_FAILS(lowbit_context_create_offline("sm_90a", &o, &c), LOWBIT_INVALID_ARGUMENT, "struct_size");
    CHECK(c == nullptr);
    // The options are checked before the device is looked for.
    CHECK_FAILS(lowbit_context_create_device(0, &o, &c), LOWBIT_INVALID_ARGUMENT, "struct_size");
    CHECK_FAILS(lowbit_context_create_current(&o, &c), LOWBIT_INVALID_ARGUMENT, "struct_size");
  }
  for (uint32_t size : {0u, 3u, uint32_t(sizeof(lowbit_device_info) + 4)}) {
    lowbit_device_info info;
    std::memset(&info, 0, sizeof(info));
    info.struct_size = size;
    CHECK_FAILS(lowbit_context_get_info(ctx, &info), LOWBIT_INVALID_ARGUMENT, "struct_size");
  }
  for (uint32_t size : {0u, 3u, uint32_t(sizeof(lowbit_cache_stats) + 4)}) {
    lowbit_cache_stats st;
    std::memset(&st, 0, sizeof(st));
    st.struct_size = size;
    CHECK_FAILS(lowbit_context_cache_stats(ctx, &st), LOWBIT_INVALID_ARGUMENT, "struct_size");
  }
}

TEST_CASE("capi: unknown enum values are INVALID_ARGUMENT naming the field") {
  Ctx ctx(shared_cache());
  lowbit_plan* plan = nullptr;
  for (int32_t v : {0, 8, -1, 1000}) {
    CAPTURE(v);
    lowbit_quantize_desc d = qdesc();
    d.op = v;
    CHECK_FAILS(lowbit_quantize_plan_create(ctx, &d, &plan), LOWBIT_INVALID_ARGUMENT, "op");
    d = qdesc();
    d.scope = v == 8 ? 5 : v;
    CHECK_FAILS(lowbit_quantize_plan_create(ctx, &d, &plan), LOWBIT_INVALID_ARGUMENT, "scope");
  }
  for (int32_t v : {0, 10, -1, 77}) {
    CAPTURE(v);
    lowbit_quantize_desc d = qdesc();
    d.x_dtype = v;
    CHECK_FAILS(lowbit_quantize_plan_create(ctx, &d, &plan), LOWBIT_INVALID_ARGUMENT, "x_dtype");
    d = qdesc();
    d.q_dtype = v;
    CHECK_FAILS(lowbit_quantize_plan_create(ctx, &d, &plan), LOWBIT_INVALID_ARGUMENT, "q_dtype");
    d = qdesc();
    d.scale_dtype = v;
    CHECK_FAILS(lowbit_quantize_plan_create(ctx, &d, &plan), LOWBIT_INVALID_ARGUMENT, "scale_dtype");
  }
  for (int32_t v : {3, -1, 100}) {
    CAPTURE(v);
    lowbit_context_options o;
    lowbit_context_options_init(&o);
    o.cache_mode = v;
    lowbit_context* c = nullptr;
    CHECK_FAILS(lowbit_context_create_offline("sm_90a", &o, &c), LOWBIT_INVALID_ARGUMENT, "cache_mode");
    CHECK(c == nullptr);
  }
  for (int32_t v : {4, -1, 100}) {
    CAPTURE(v);
    lowbit_context_options o;
    lowbit_context_options_init(&o);
    o.log_level = v;
    lowbit_context* c = nullptr;
    CHECK_FAILS(lowbit_context_create_offline("sm_90a", &o, &c), LOWBIT_INVALID_ARGUMENT, "log_level");
    CHECK(c == nullptr);
  }
  for (int32_t v : {0, -1, 99, 1000}) {
    CAPTURE(v);
    lowbit_quantize_desc d = qdesc();
    lowbit_op_desc op{v, 0, &d};
    CHECK_FAILS(lowbit_plan_create(ctx, &op, &plan), LOWBIT_INVALID_ARGUMENT, "family");
    CHECK_FAILS(lowbit_reference_run(&op, nullptr, 0), LOWBIT_INVALID_ARGUMENT, "family");
    lowbit_status result = LOWBIT_OK;
    CHECK_FAILS(lowbit_prewarm(ctx, &op, 1, 1, &result), LOWBIT_INVALID_ARGUMENT, "family");
    CHECK(result == LOWBIT_INVALID_ARGUMENT);
  }
  CHECK(plan == nullptr);
}

// ---------------------------------------------------------------------------
// Problems

TEST_CASE("capi: ill-formed problems are INVALID_PROBLEM") {
  Ctx ctx(shared_cache());
  lowbit_plan* plan = nullptr;
  auto check_problem = [&](lowbit_quantize_desc d, const std::string& needle) {
    CAPTURE(needle);
    CHECK_FAILS(lowbit_quantize_plan_create(ctx, &d, &plan), LOWBIT_INVALID_PROBLEM, needle);
    CHECK(plan == nullptr);
    // The reference checks the same way.
    lowbit_op_desc op{LOWBIT_FAMILY_QUANTIZE, 0, &d};
    CHECK_FAILS(lowbit_reference_run(&op, nullptr, 0), LOWBIT_INVALID_PROBLEM, needle);
  };
  lowbit_quantize_desc d;
  // Ranks.
  d = qdesc(); d.rank = 0; check_problem(d, "rank");
  d = qdesc(); d.rank = 5; check_problem(d, "rank");
  d = qdesc(); d.rank = -1; check_problem(d, "rank");
  // Negative and overflowing dims.
  d = qdesc(); d.dims[0] = -1; check_problem(d, "dims[0]");
  d = qdesc(); d.rank = 3; d.dims[0] = 2; d.dims[1] = 3; d.dims[2] = -5; check_problem(d, "dims[2]");
  d = qdesc(); d.rank = 2; d.dims[0] = int64_t(1) << 40; d.dims[1] = int64_t(1) << 40; check_problem(d, "2^48");
  d = qdesc(); d.rank = 4; for (int i = 0; i < 4; ++i) d.dims[i] = int64_t(1) << 20; check_problem(d, "2^48");
  d = qdesc(); d.rank = 2; d.dims[0] = std::numeric_limits<int64_t>::max(); d.dims[1] = 2; check_problem(d, "2^48");
  d = qdesc(); d.rank = 1; d.dims[0] = std::numeric_limits<int64_t>::max(); check_problem(d, "2^48");
  // Row strides.
  d = qdesc(); d.rank = 2; d.dims[0] = 4; d.dims[1] = 8; d.x_row_stride = 7; check_problem(d, "x_row_stride");
  d = qdesc(); d.x_row_stride = -1; check_problem(d, "x_row_stride");
  // Clamp ranges.
  d = qdesc(); d.qmin = 10; d.qmax = 5; check_problem(d, "qmax");
  d = qdesc(); d.qmin = -129; d.qmax = 127; check_problem(d, "range");
  d = qdesc(); d.qmin = -128; d.qmax = 128; check_problem(d, "range");
  d = qdesc(1000, LOWBIT_DTYPE_F32, LOWBIT_DTYPE_U8); d.qmin = -1; d.qmax = 255; check_problem(d, "range");
  d = qdesc(1000, LOWBIT_DTYPE_F32, LOWBIT_DTYPE_U8); d.qmin = 0; d.qmax = 256; check_problem(d, "range");
  // Alignment below the element size.
  d = qdesc(); d.alignment = 2; check_problem(d, "alignment");
  d = qdesc(1000, LOWBIT_DTYPE_F64); d.scale_dtype = LOWBIT_DTYPE_F64; d.alignment = 4; check_problem(d, "alignment");
}

TEST_CASE("capi: bad alignment values are INVALID_ARGUMENT") {
  Ctx ctx(shared_cache());
  lowbit_plan* plan = nullptr;
  for (int32_t a : {0, 3, 5, 12, 32, 64, -16, -1}) {
    CAPTURE(a);
    lowbit_quantize_desc d = qdesc();
    d.alignment = a;
    CHECK_FAILS(lowbit_quantize_plan_create(ctx, &d, &plan), LOWBIT_INVALID_ARGUMENT, "alignment");
    CHECK(plan == nullptr);
  }
}

TEST_CASE("capi: unsupported type pairs are UNSUPPORTED") {
  Ctx ctx(shared_cache());
  lowbit_plan* plan = nullptr;
  lowbit_quantize_desc d;
  d = qdesc(); d.x_dtype = LOWBIT_DTYPE_S8;
  CHECK_FAILS(lowbit_quantize_plan_create(ctx, &d, &plan), LOWBIT_UNSUPPORTED, "x_dtype s8");
  d = qdesc(); d.x_dtype = LOWBIT_DTYPE_S32;
  CHECK_FAILS(lowbit_quantize_plan_create(ctx, &d, &plan), LOWBIT_UNSUPPORTED, "x_dtype s32");
  d = qdesc(); d.q_dtype = LOWBIT_DTYPE_F32;
  CHECK_FAILS(lowbit_quantize_plan_create(ctx, &d, &plan), LOWBIT_UNSUPPORTED, "q_dtype f32");
  d = qdesc(); d.q_dtype = LOWBIT_DTYPE_S32;
  CHECK_FAILS(lowbit_quantize_plan_create(ctx, &d, &plan), LOWBIT_UNSUPPORTED, "q_dtype s32");
  // The scale is f32 or the x type.
  d = qdesc(1000, LOWBIT_DTYPE_F16); d.scale_dtype = LOWBIT_DTYPE_BF16;
  CHECK_FAILS(lowbit_quantize_plan_create(ctx, &d, &plan), LOWBIT_UNSUPPORTED, "scale_dtype bf16");
  d = qdesc(1000, LOWBIT_DTYPE_F32); d.scale_dtype = LOWBIT_DTYPE_F64;
  CHECK_FAILS(lowbit_quantize_plan_create(ctx, &d, &plan), LOWBIT_UNSUPPORTED, "scale_dtype f64");
  d = qdesc(1000, LOWBIT_DTYPE_BF16); d.scale_dtype = LOWBIT_DTYPE_S8;
  CHECK_FAILS(lowbit_quantize_plan_create(ctx, &d, &plan), LOWBIT_UNSUPPORTED, "scale_dtype s8");
  CHECK(plan == nullptr);
}

// ---------------------------------------------------------------------------
// Contexts

TEST_CASE("capi: offline contexts reject bad architecture names") {
  lowbit_context* c = reinterpret_cast<lowbit_context*>(0x1);
  CHECK_FAILS(lowbit_context_create_offline(nullptr, nullptr, &c), LOWBIT_INVALID_ARGUMENT, "arch is NULL");
  CHECK(c == nullptr);
  for (const char* arch : {"", "sm_", "banana", "sm_9", "sm_90b", "sm_1000", "compute_90"}) {
    CAPTURE(arch);
    c = reinterpret_cast<lowbit_context*>(0x1);
    CHECK_FAILS(lowbit_context_create_offline(arch, nullptr, &c), LOWBIT_INVALID_ARGUMENT,
                std::string("\"") + arch + "\"");
    CHECK(c == nullptr);
  }
  // "a" (architecture-specific) targets exist from sm_90 on: refused at
  // creation, not left to fail at the first compile.
  for (const char* arch : {"sm_80a", "sm_86a", "sm_89a"}) {
    CAPTURE(arch);
    c = reinterpret_cast<lowbit_context*>(0x1);
    CHECK_FAILS(lowbit_context_create_offline(arch, nullptr, &c), LOWBIT_INVALID_ARGUMENT, "sm_90");
    CHECK(c == nullptr);
  }
  // Well-formed, but older than lowbit supports.
  for (const char* arch : {"sm_12", "sm_70", "sm_74"}) {
    CAPTURE(arch);
    c = reinterpret_cast<lowbit_context*>(0x1);
    CHECK_FAILS(lowbit_context_create_offline(arch, nullptr, &c), LOWBIT_UNSUPPORTED, "minimum");
    CHECK(c == nullptr);
  }
  TempDir tmp;
  const std::string dir = tmp / "cache";
  for (const char* arch : {"sm_75", "sm_80", "sm_90a", "90a", "sm_100a", "sm_120"}) {
    CAPTURE(arch);
    const lowbit_context_options o = options_for(dir, LOWBIT_CACHE_MEMORY);
    c = nullptr;
    CHECK(lowbit_context_create_offline(arch, &o, &c) == LOWBIT_OK);
    CHECK(c != nullptr);
    lowbit_context_destroy(c);
  }
}

TEST_CASE("capi: without a driver, device contexts are NO_DEVICE") {
  const std::string no_dir;
  const lowbit_context_options o = options_for(no_dir, LOWBIT_CACHE_MEMORY);
  lowbit_context* c = reinterpret_cast<lowbit_context*>(0x1);
  // Never a device with these ordinals, GPU or not.
  CHECK_FAILS(lowbit_context_create_device(9999, nullptr, &c), LOWBIT_NO_DEVICE, "");
  CHECK(c == nullptr);
  CHECK_FAILS(lowbit_context_create_device(-1, &o, &c), LOWBIT_NO_DEVICE, "");
  // A fresh thread has no current CUDA context.
  lowbit_status current = LOWBIT_OK;
  std::string current_msg;
  lowbit_context* cc = reinterpret_cast<lowbit_context*>(0x1);
  std::thread([&] {
    current = lowbit_context_create_current(&o, &cc);
    current_msg = lowbit_last_error_message();
  }).join();
  CHECK(current == LOWBIT_NO_DEVICE);
  CHECK(cc == nullptr);
  CHECK(current_msg.find("lowbit_context_create_current") != std::string::npos);

  if (lowbit::test::gpu_unavailable_reason().empty()) LOWBIT_SKIP("this machine has a GPU: device 0 exists");
  CHECK_FAILS(lowbit_context_create_device(0, nullptr, &c), LOWBIT_NO_DEVICE, "driver");
  CHECK(c == nullptr);
  CHECK_FAILS(lowbit_context_create_device(0, &o, &c), LOWBIT_NO_DEVICE, "driver");
  CHECK_FAILS(lowbit_context_create_current(&o, &c), LOWBIT_NO_DEVICE, "driver");
  CHECK(c == nullptr);
}

TEST_CASE("capi: context info of an offline context") {
  TempDir tmp;
  const std::string dir = tmp / "cache";
  {
    Ctx ctx(dir);
    lowbit_device_info info;
    std::memset(&info, 0x5a, sizeof(info));  // everything must be written
    info.struct_size = sizeof(info);
    REQUIRE(lowbit_context_get_info(ctx, &info) == LOWBIT_OK);
    CHECK(info.struct_size == sizeof(info));
    CHECK(info.offline == 1);
    CHECK(info.ordinal == -1);
    CHECK(std::string(info.name).empty());
    CHECK(std::string(info.arch) == "sm_90a");
    CHECK(info.compute_capability == 90);
    CHECK(info.sm_count == 0);
    CHECK(info.global_memory_bytes == 0);
    CHECK(info.l2_cache_bytes == 0);
    if (lowbit::test::gpu_unavailable_reason().empty()) {
      CHECK(info.driver_version > 0);
    } else {
      CHECK(info.driver_version == 0);
    }
    CHECK(info.nvrtc_version >= 12000);
    CHECK(std::string(info.cache_dir) == dir);
    struct stat st {};
    REQUIRE(::stat(dir.c_str(), &st) == 0);  // created
    CHECK((st.st_mode & 0777) == 0700);
  }
  {
    Ctx ctx(dir + "/", LOWBIT_CACHE_READ_WRITE, "sm_80");
    lowbit_device_info info;
    info.struct_size = sizeof(info);
    REQUIRE(lowbit_context_get_info(ctx, &info) == LOWBIT_OK);
    CHECK(std::string(info.arch) == "sm_80");
    CHECK(info.compute_capability == 80);
    CHECK(std::string(info.cache_dir) == dir);  // normalized
  }
  {
    Ctx ctx(tmp / "unused", LOWBIT_CACHE_MEMORY);
    lowbit_device_info info;
    info.struct_size = sizeof(info);
    REQUIRE(lowbit_context_get_info(ctx, &info) == LOWBIT_OK);
    CHECK(std::string(info.cache_dir).empty());  // memory only
    CHECK(std::string(info.arch) == "sm_90a");
  }
}

TEST_CASE("capi: lowbit_context_options_init and lowbit_quantize_desc_init fill the documented defaults") {
  lowbit_context_options o;
  std::memset(&o, 0x5a, sizeof(o));
  lowbit_context_options_init(&o);
  CHECK(o.struct_size == sizeof(o));
  CHECK(o.cache_dir == nullptr);
  CHECK(o.cache_mode == LOWBIT_CACHE_READ_WRITE);
  CHECK(o.cache_max_bytes == 0);
  const bool no_callback = o.log_callback == nullptr;
  CHECK(no_callback);
  CHECK(o.log_user_data == nullptr);
  CHECK(o.log_level == LOWBIT_LOG_WARN);

  lowbit_quantize_desc d;
  std::memset(&d, 0x5a, sizeof(d));
  lowbit_quantize_desc_init(&d);
  CHECK(d.struct_size == sizeof(d));
  CHECK(d.op == LOWBIT_QOP_QUANTIZE);
  CHECK(d.scope == LOWBIT_SCOPE_PER_TENSOR);
  CHECK(d.x_dtype == LOWBIT_DTYPE_F32);
  CHECK(d.q_dtype == LOWBIT_DTYPE_S8);
  CHECK(d.scale_dtype == LOWBIT_DTYPE_F32);
  CHECK(d.x_row_stride == 0);
  CHECK(d.axis == 0);
  CHECK(d.qmin == 0);
  CHECK(d.qmax == 0);
  CHECK(d.symmetric == 1);
  CHECK(d.alignment == 16);
  CHECK(d.rank >= 1);
  CHECK(d.rank <= 4);
}

// ---------------------------------------------------------------------------
// Plans

TEST_CASE("capi: running a plan of an offline context is NO_DEVICE") {
  Ctx ctx(shared_cache());
  Plan plan(ctx, qdesc());
  alignas(16) static float x[1000];
  alignas(16) static int8_t q[1000];
  static float scale = 1.0f;
  const lowbit_arg args[] = {{LOWBIT_ARG_X, 0, addr(x)}, {LOWBIT_ARG_Q, 0, addr(q)}, {LOWBIT_ARG_SCALE, 0, addr(&scale)}};
  CHECK_FAILS(lowbit_plan_run(plan, args, 3, 0, 0, nullptr), LOWBIT_NO_DEVICE, "offline");
  CHECK_FAILS(lowbit_plan_run(plan, nullptr, 0, 0, 0, nullptr), LOWBIT_NO_DEVICE, "sm_90a");
  // The offline check comes first, whatever else is wrong with the call.
  const lowbit_arg bad[] = {{LOWBIT_ARG_X, 7, 0x1001}};
  CHECK_FAILS(lowbit_plan_run(plan, bad, 1, 0, 0, nullptr), LOWBIT_NO_DEVICE, "offline");
}

TEST_CASE("capi: run-time argument checks (RunArgs and the quantize plan's run)") {
  alignas(16) static uint8_t mem[256];
  const uint64_t base = addr(mem);
  const lowbit_arg args[] = {{LOWBIT_ARG_X, 0, base},
                             {LOWBIT_ARG_Q, 0, base + 64},
                             {LOWBIT_ARG_SCALE, 0, base + 128},
                             {LOWBIT_ARG_ZERO_POINT, 0, 0},
                             {LOWBIT_ARG_DY, 0, base + 4}};
  const lowbit::RunArgs ra(args, 5);
  auto status_of = [](const auto& f) {
    try {
      f();
    } catch (const lowbit::Error& e) {
      return std::make_pair(e.status(), e.message());
    }
    return std::make_pair(lowbit_status(LOWBIT_OK), std::string());
  };
  CHECK(ra.get(LOWBIT_ARG_X, "input", true, 16) == base);
  CHECK(ra.get(LOWBIT_ARG_Q, "output", true, 16) == base + 64);
  // Absent and optional: 0. Present as 0 and optional: 0.
  CHECK(ra.get(LOWBIT_ARG_Y, "output", false, 16) == 0);
  CHECK(ra.get(LOWBIT_ARG_ZERO_POINT, "zp", false, 4) == 0);
  // Absent and required, or present as a NULL pointer and required.
  auto [s1, m1] = status_of([&] { ra.get(LOWBIT_ARG_DX, "gradient", true, 4); });
  CHECK(s1 == LOWBIT_INVALID_ARGUMENT);
  CHECK(m1.find("LOWBIT_ARG_DX") != std::string::npos);
  CHECK(m1.find("gradient") != std::string::npos);
  auto [s2, m2] = status_of([&] { ra.get(LOWBIT_ARG_ZERO_POINT, "zero point", true, 4); });
  CHECK(s2 == LOWBIT_INVALID_ARGUMENT);
  CHECK(m2.find("LOWBIT_ARG_ZERO_POINT") != std::string::npos);
  // Misaligned: names the role, the address and the alignment.
  auto [s3, m3] = status_of([&] { ra.get(LOWBIT_ARG_DY, "upstream gradient", true, 16); });
  CHECK(s3 == LOWBIT_MISALIGNED);
  CHECK(m3.find("LOWBIT_ARG_DY") != std::string::npos);
  CHECK(m3.find("16") != std::string::npos);
  char hex[32];
  std::snprintf(hex, sizeof(hex), "0x%llx", static_cast<unsigned long long>(base + 4));
  CHECK(m3.find(hex) != std::string::npos);
  CHECK(ra.get(LOWBIT_ARG_DY, "upstream gradient", true, 4) == base + 4);
  CHECK(ra.get(LOWBIT_ARG_DY, "upstream gradient", true, 1) == base + 4);
  // Empty argument lists.
  CHECK(status_of([&] { lowbit::RunArgs(nullptr, 0).get(LOWBIT_ARG_X, "x", true, 1); }).first ==
        LOWBIT_INVALID_ARGUMENT);
  CHECK(lowbit::RunArgs(nullptr, 0).get(LOWBIT_ARG_X, "x", false, 1) == 0);

  // The quantize plan asks for the right roles with the right alignments
  // before it launches anything (f32 x, alignment 16: 4-element vectors, so
  // x on 16 bytes, q on 4, scale on 4, zero point on 4).
  lowbit::DeviceTraits traits;
  traits.target.sm = 90;
  traits.target.arch_specific = true;
  traits.offline = true;
  lowbit_quantize_desc d = qdesc(1000);
  const lowbit_op_desc op{LOWBIT_FAMILY_QUANTIZE, 0, &d};
  const std::unique_ptr<lowbit::OpPlan> plan = lowbit::create_op_plan(op, traits);
  REQUIRE(plan->kernels().size() == 1);
  auto run_with = [&](std::vector<lowbit_arg> a) {
    return status_of([&] { plan->run(lowbit::RunArgs(a.data(), a.size()), 0, 0, nullptr, nullptr); });
  };
  const lowbit_arg X{LOWBIT_ARG_X, 0, base}, Q{LOWBIT_ARG_Q, 0, base + 64}, S{LOWBIT_ARG_SCALE, 0, base + 128};
  CHECK(run_with({Q, S}).first == LOWBIT_INVALID_ARGUMENT);
  CHECK(run_with({Q, S}).second.find("LOWBIT_ARG_X") != std::string::npos);
  CHECK(run_with({X, S}).second.find("LOWBIT_ARG_Q") != std::string::npos);
  CHECK(run_with({X, Q}).second.find("LOWBIT_ARG_SCALE") != std::string::npos);
  CHECK(run_with({{LOWBIT_ARG_X, 0, base + 8}, Q, S}).first == LOWBIT_MISALIGNED);
  CHECK(run_with({X, {LOWBIT_ARG_Q, 0, base + 66}, S}).first == LOWBIT_MISALIGNED);
  CHECK(run_with({X, Q, {LOWBIT_ARG_SCALE, 0, base + 130}}).first == LOWBIT_MISALIGNED);
  CHECK(run_with({X, Q, S, {LOWBIT_ARG_ZERO_POINT, 0, base + 2}}).first == LOWBIT_MISALIGNED);
  // A dequantize plan reads the same roles.
  lowbit_quantize_desc dd = qdesc(1000);
  dd.op = LOWBIT_QOP_DEQUANTIZE;
  const lowbit_op_desc dop{LOWBIT_FAMILY_QUANTIZE, 0, &dd};
  const std::unique_ptr<lowbit::OpPlan> dplan = lowbit::create_op_plan(dop, traits);
  const std::vector<lowbit_arg> no_q = {X, S};
  CHECK(status_of([&] { dplan->run(lowbit::RunArgs(no_q.data(), no_q.size()), 0, 0, nullptr, nullptr); }).first ==
        LOWBIT_INVALID_ARGUMENT);
  // A zero-size plan checks its arguments and launches nothing.
  lowbit_quantize_desc dz = qdesc(0);
  const lowbit_op_desc zop{LOWBIT_FAMILY_QUANTIZE, 0, &dz};
  const std::unique_ptr<lowbit::OpPlan> zplan = lowbit::create_op_plan(zop, traits);
  CHECK(zplan->kernels().empty());
  const std::vector<lowbit_arg> all = {X, Q, S};
  CHECK(status_of([&] { zplan->run(lowbit::RunArgs(all.data(), all.size()), 0, 0, nullptr, nullptr); }).first ==
        LOWBIT_OK);
}

TEST_CASE("capi: nonzero reserved fields are INVALID_ARGUMENT") {
  Ctx ctx(shared_cache());
  lowbit_quantize_desc d = qdesc(4);
  lowbit_op_desc op{LOWBIT_FAMILY_QUANTIZE, 1, &d};
  lowbit_plan* plan = reinterpret_cast<lowbit_plan*>(0x1);
  CHECK_FAILS(lowbit_plan_create(ctx, &op, &plan), LOWBIT_INVALID_ARGUMENT, "reserved");
  CHECK(plan == nullptr);
  CHECK_FAILS(lowbit_reference_run(&op, nullptr, 0), LOWBIT_INVALID_ARGUMENT, "reserved");
  lowbit_op_desc items[2] = {{LOWBIT_FAMILY_QUANTIZE, 0, &d}, {LOWBIT_FAMILY_QUANTIZE, -1, &d}};
  lowbit_status results[2] = {99, 99};
  CHECK_FAILS(lowbit_prewarm(ctx, items, 2, 1, results), LOWBIT_INVALID_ARGUMENT, "item 1");
  CHECK(results[0] == LOWBIT_OK);
  CHECK(results[1] == LOWBIT_INVALID_ARGUMENT);
  CHECK(last_error().find("reserved") != std::string::npos);
  // Arguments of the reference run.
  float x[4] = {1, 2, 3, 4};
  int8_t q[4] = {};
  float scale = 1.0f;
  lowbit_op_desc good{LOWBIT_FAMILY_QUANTIZE, 0, &d};
  const lowbit_arg args[] = {{LOWBIT_ARG_X, 0, addr(x)}, {LOWBIT_ARG_Q, 0, addr(q)}, {LOWBIT_ARG_SCALE, 5, addr(&scale)}};
  CHECK_FAILS(lowbit_reference_run(&good, args, 3), LOWBIT_INVALID_ARGUMENT, "args[2].reserved");
}

TEST_CASE("capi: a zero-size problem is a valid plan with no kernels") {
  TempDir tmp;
  Ctx ctx(tmp / "cache");
  struct Shape {
    int rank;
    int64_t dims[4];
  };
  const Shape shapes[] = {{1, {0}}, {2, {4, 0}}, {2, {0, 4}}, {3, {0, 0, 3}}, {4, {1, 2, 0, 5}}};
  for (const Shape& s : shapes) {
    for (lowbit_quantize_op qop : {LOWBIT_QOP_QUANTIZE, LOWBIT_QOP_DEQUANTIZE}) {
      lowbit_quantize_desc d = qdesc();
      d.op = qop;
      d.rank = s.rank;
      std::memcpy(d.dims, s.dims, sizeof(d.dims));
      Plan plan(ctx, d);
      const std::string json = describe(plan);
      CAPTURE(json);
      CHECK(json.find("\"kernels\":[]") != std::string::npos);
      size_t ws = 99;
      CHECK(lowbit_plan_workspace_size(plan, &ws) == LOWBIT_OK);
      CHECK(ws == 0);
      // The reference does nothing (and touches no pointer).
      lowbit_op_desc op{LOWBIT_FAMILY_QUANTIZE, 0, &d};
      const lowbit_arg args[] = {{LOWBIT_ARG_X, 0, 0x10}, {LOWBIT_ARG_Q, 0, 0x10}, {LOWBIT_ARG_SCALE, 0, 0x10}};
      CHECK(lowbit_reference_run(&op, args, 3) == LOWBIT_OK);
    }
  }
  const lowbit_cache_stats st = stats_of(ctx);
  CHECK(st.compiles == 0);
  CHECK(st.misses == 0);
  CHECK(st.memory_hits == 0);
  CHECK(st.disk_entries == 0);
}

TEST_CASE("capi: describe reports the kernel as JSON, with truncation and length query") {
  TempDir tmp;
  Ctx ctx(tmp / "cache");
  lowbit_quantize_desc d = qdesc(4096, LOWBIT_DTYPE_BF16, LOWBIT_DTYPE_U8);
  Plan plan(ctx, d);
  const std::string json = describe(plan);
  CAPTURE(json);
  REQUIRE(json.size() > 2);
  CHECK(json.front() == '{');
  CHECK(json.back() == '}');
  for (const char* field : {"\"family\":\"quantize\"", "\"arch\":\"sm_90a\"", "\"workspace_bytes\":0",
                            "\"problem\":{", "\"op\":\"quantize\"", "\"x_dtype\":\"bf16\"", "\"q_dtype\":\"u8\"",
                            "\"kernels\":[{", "\"template\":\"quantize.cuh\"", "\"name\":\"quantize<",
                            "\"key\":\"", "\"cache\":\"compiled\"", "\"registers\":", "\"spill_store_bytes\":",
                            "\"spill_load_bytes\":", "\"stack_frame_bytes\":", "\"compile\":{",
                            "\"compile_ms\":", "\"options\":\"-arch=sm_90a"}) {
    CAPTURE(std::string(field));
    CHECK(json.find(field) != std::string::npos);
  }
  // The ptxas report: registers reported, and the plan's figures are the
  // ones recorded at compile time (whether they are zero is test_jit's job).
  CHECK(int_after(json, "\"registers\":") > 0);
  CHECK(int_after(json, "\"spill_store_bytes\":") == int_after(json, "\"spill_stores\":"));
  CHECK(int_after(json, "\"spill_load_bytes\":") == int_after(json, "\"spill_loads\":"));
  CHECK(int_after(json, "\"stack_frame_bytes\":") == int_after(json, "\"stack_frame\":"));
  CHECK(int_after(json, "\"registers\":") == int_after(json, "\"registers\":", json.find("\"compile\":{")));
  // The key is the cache file's name.
  const size_t k = json.find("\"key\":\"");
  REQUIRE(k != std::string::npos);
  const std::string key = json.substr(k + 7, json.find('"', k + 7) - (k + 7));
  CHECK(key.size() > 65);
  const std::vector<std::string> files = lowbit::test::list_files(tmp / "cache", ".lbk");
  REQUIRE(files.size() == 1);
  CHECK(files[0] == tmp / "cache" + "/" + key + ".lbk");

  // Truncation: NUL-terminated prefix; full length reported.
  char small[10];
  std::memset(small, 'X', sizeof(small));
  size_t len = 0;
  CHECK(lowbit_plan_describe(plan, small, 5, &len) == LOWBIT_OK);
  CHECK(len == json.size());
  CHECK(std::string(small) == json.substr(0, 4));
  CHECK(small[5] == 'X');
  std::memset(small, 'X', sizeof(small));
  CHECK(lowbit_plan_describe(plan, small, 0, &len) == LOWBIT_OK);
  CHECK(small[0] == 'X');
  CHECK(lowbit_plan_describe(plan, small, 1, nullptr) == LOWBIT_OK);
  CHECK(small[0] == '\0');

  // A second plan of the same kernel comes from memory; a new context on the
  // same directory loads it from disk, with the same key.
  Plan again(ctx, d);
  CHECK(describe(again).find("\"cache\":\"memory\"") != std::string::npos);
  Ctx ctx2(tmp / "cache");
  Plan from_disk(ctx2, d);
  const std::string j2 = describe(from_disk);
  CHECK(j2.find("\"cache\":\"disk\"") != std::string::npos);
  CHECK(j2.find("\"key\":\"" + key + "\"") != std::string::npos);
  CHECK(j2.find("\"registers\":-1") == std::string::npos);  // kept in the cache metadata
}

TEST_CASE("capi: the plan keeps its context alive") {
  lowbit_context* ctx = nullptr;
  const lowbit_context_options o = options_for(shared_cache());
  REQUIRE(lowbit_context_create_offline("sm_90a", &o, &ctx) == LOWBIT_OK);
  lowbit_plan* plan = nullptr;
  lowbit_quantize_desc d = qdesc();
  REQUIRE(lowbit_quantize_plan_create(ctx, &d, &plan) == LOWBIT_OK);
  lowbit_context_destroy(ctx);
  CHECK(describe(plan).find("\"arch\":\"sm_90a\"") != std::string::npos);
  CHECK(lowbit_plan_run(plan, nullptr, 0, 0, 0, nullptr) == LOWBIT_NO_DEVICE);
  lowbit_plan_destroy(plan);
}

// ---------------------------------------------------------------------------
// Prewarm

TEST_CASE("capi: prewarm compiles every item, fills results and reports the first failure") {
  TempDir tmp;
  Ctx ctx(tmp / "cache");
  lowbit_quantize_desc good1 = qdesc(1000, LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S8);
  lowbit_quantize_desc bad_rank = qdesc();
  bad_rank.rank = 0;
  lowbit_quantize_desc bad_enum = qdesc();
  bad_enum.x_dtype = 42;
  lowbit_quantize_desc good2 = qdesc(1000, LOWBIT_DTYPE_F16, LOWBIT_DTYPE_U8);

  SUBCASE("one bad item among good ones, on several threads") {
    const lowbit_op_desc ops[] = {{LOWBIT_FAMILY_QUANTIZE, 0, &good1},
                                  {LOWBIT_FAMILY_QUANTIZE, 0, &bad_rank},
                                  {LOWBIT_FAMILY_QUANTIZE, 0, &good2},
                                  {LOWBIT_FAMILY_QUANTIZE, 0, &good1}};
    lowbit_status results[4] = {99, 99, 99, 99};
    CHECK_FAILS(lowbit_prewarm(ctx, ops, 4, 3, results), LOWBIT_INVALID_PROBLEM, "item 1");
    CHECK(last_error().find("rank") != std::string::npos);
    CHECK(results[0] == LOWBIT_OK);
    CHECK(results[1] == LOWBIT_INVALID_PROBLEM);
    CHECK(results[2] == LOWBIT_OK);
    CHECK(results[3] == LOWBIT_OK);
    // The good items are compiled and cached: two distinct kernels.
    const lowbit_cache_stats st = stats_of(ctx);
    CHECK(st.compiles == 2);
    CHECK(st.disk_entries == 2);
    Plan p(ctx, good2);
    CHECK(describe(p).find("\"cache\":\"memory\"") != std::string::npos);
  }
  SUBCASE("the first failing item wins, whatever the thread count") {
    const lowbit_op_desc ops[] = {{LOWBIT_FAMILY_QUANTIZE, 0, &good1},
                                  {LOWBIT_FAMILY_QUANTIZE, 0, &bad_enum},
                                  {LOWBIT_FAMILY_QUANTIZE, 0, &bad_rank}};
    for (uint32_t threads : {0u, 1u, 2u, 8u}) {
      CAPTURE(threads);
      lowbit_status results[3] = {99, 99, 99};
      CHECK_FAILS(lowbit_prewarm(ctx, ops, 3, threads, results), LOWBIT_INVALID_ARGUMENT, "item 1");
      CHECK(last_error().find("x_dtype") != std::string::npos);
      CHECK(results[0] == LOWBIT_OK);
      CHECK(results[1] == LOWBIT_INVALID_ARGUMENT);
      CHECK(results[2] == LOWBIT_INVALID_PROBLEM);
      // results may be NULL.
      CHECK_FAILS(lowbit_prewarm(ctx, ops, 3, threads, nullptr), LOWBIT_INVALID_ARGUMENT, "item 1");
    }
  }
  SUBCASE("all good") {
    const lowbit_op_desc ops[] = {{LOWBIT_FAMILY_QUANTIZE, 0, &good1}, {LOWBIT_FAMILY_QUANTIZE, 0, &good2}};
    lowbit_status results[2] = {99, 99};
    CHECK(lowbit_prewarm(ctx, ops, 2, 0, results) == LOWBIT_OK);
    CHECK(results[0] == LOWBIT_OK);
    CHECK(results[1] == LOWBIT_OK);
    CHECK(lowbit_prewarm(ctx, ops, 2, 1, nullptr) == LOWBIT_OK);
    const lowbit_cache_stats st = stats_of(ctx);
    CHECK(st.compiles == 2);
    CHECK(st.memory_hits == 2);  // the second round
  }
}

// ---------------------------------------------------------------------------
// CPU reference

TEST_CASE("capi: lowbit_reference_run on host data (hand-computed)") {
  // quantize f32 -> s8, scale 0.5, zero point -3:
  // x / 0.5 = -3 -1 1 3 5 600 -600 NaN; rint + (-3); clamp [-128, 127].
  const float x[8] = {-1.5f, -0.5f, 0.5f, 1.5f, 2.5f, 300.0f, -300.0f, std::nanf("")};
  int8_t q[8];
  std::memset(q, 0x55, sizeof(q));
  const float scale = 0.5f;
  const int32_t zp = -3;
  lowbit_quantize_desc d = qdesc(8);
  lowbit_op_desc op{LOWBIT_FAMILY_QUANTIZE, 0, &d};
  const lowbit_arg qargs[] = {{LOWBIT_ARG_X, 0, addr(x)},
                              {LOWBIT_ARG_Q, 0, addr(q)},
                              {LOWBIT_ARG_SCALE, 0, addr(&scale)},
                              {LOWBIT_ARG_ZERO_POINT, 0, addr(&zp)}};
  REQUIRE_MESSAGE(lowbit_reference_run(&op, qargs, 4) == LOWBIT_OK, last_error());
  const int8_t want_q[8] = {-6, -4, -2, 0, 2, 127, -128, -3};
  for (int i = 0; i < 8; ++i) CHECK(int(q[i]) == int(want_q[i]));

  // Arguments in any order; the zero point is optional (0).
  const lowbit_arg shuffled[] = {{LOWBIT_ARG_SCALE, 0, addr(&scale)}, {LOWBIT_ARG_Q, 0, addr(q)}, {LOWBIT_ARG_X, 0, addr(x)}};
  REQUIRE(lowbit_reference_run(&op, shuffled, 3) == LOWBIT_OK);
  const int8_t want_q0[8] = {-3, -1, 1, 3, 5, 127, -128, 0};
  for (int i = 0; i < 8; ++i) CHECK(int(q[i]) == int(want_q0[i]));

  // dequantize s8 -> f16: (q - (-3)) * 0.5 -> f16 bits.
  const int8_t dq[8] = {-6, -4, -2, 0, 2, 127, -128, -3};
  uint16_t xh[8];
  std::memset(xh, 0x55, sizeof(xh));
  lowbit_quantize_desc dd = qdesc(8, LOWBIT_DTYPE_F16, LOWBIT_DTYPE_S8);
  dd.op = LOWBIT_QOP_DEQUANTIZE;
  lowbit_op_desc dop{LOWBIT_FAMILY_QUANTIZE, 0, &dd};
  const lowbit_arg dargs[] = {{LOWBIT_ARG_Q, 0, addr(dq)},
                              {LOWBIT_ARG_X, 0, addr(xh)},
                              {LOWBIT_ARG_SCALE, 0, addr(&scale)},
                              {LOWBIT_ARG_ZERO_POINT, 0, addr(&zp)}};
  REQUIRE_MESSAGE(lowbit_reference_run(&dop, dargs, 4) == LOWBIT_OK, last_error());
  // -1.5 -0.5 0.5 1.5 2.5 65 -62.5 0
  const uint16_t want_x[8] = {0xbe00, 0xb800, 0x3800, 0x3e00, 0x4100, 0x5410, 0xd3d0, 0x0000};
  for (int i = 0; i < 8; ++i) CHECK(xh[i] == want_x[i]);

  // Missing roles.
  const lowbit_arg no_scale[] = {{LOWBIT_ARG_X, 0, addr(x)}, {LOWBIT_ARG_Q, 0, addr(q)}};
  CHECK_FAILS(lowbit_reference_run(&op, no_scale, 2), LOWBIT_INVALID_ARGUMENT, "LOWBIT_ARG_SCALE");
  const lowbit_arg no_q[] = {{LOWBIT_ARG_X, 0, addr(x)}, {LOWBIT_ARG_SCALE, 0, addr(&scale)}};
  CHECK_FAILS(lowbit_reference_run(&op, no_q, 2), LOWBIT_INVALID_ARGUMENT, "LOWBIT_ARG_Q");
  CHECK_FAILS(lowbit_reference_run(&op, nullptr, 0), LOWBIT_INVALID_ARGUMENT, "LOWBIT_ARG_");
}

// ---------------------------------------------------------------------------
// Cache statistics

TEST_CASE("capi: cache stats count compiles, memory hits and disk hits") {
  TempDir tmp;
  const std::string dir = tmp / "cache";
  lowbit_quantize_desc d = qdesc(512, LOWBIT_DTYPE_F64, LOWBIT_DTYPE_U8);
  d.scale_dtype = LOWBIT_DTYPE_F64;
  {
    Ctx ctx(dir);
    lowbit_cache_stats st = stats_of(ctx);
    CHECK(st.struct_size == sizeof(st));
    CHECK(st.memory_hits == 0);
    CHECK(st.disk_hits == 0);
    CHECK(st.misses == 0);
    CHECK(st.compiles == 0);
    CHECK(st.compile_failures == 0);
    CHECK(st.damaged_entries == 0);
    CHECK(st.compile_ms == 0.0);
    CHECK(st.disk_entries == 0);
    CHECK(st.disk_bytes == 0);
    {
      Plan p(ctx, d);
    }
    st = stats_of(ctx);
    CHECK(st.misses == 1);
    CHECK(st.compiles == 1);
    CHECK(st.memory_hits == 0);
    CHECK(st.disk_hits == 0);
    CHECK(st.compile_ms > 0.0);
    CHECK(st.disk_entries == 1);
    const std::vector<std::string> files = lowbit::test::list_files(dir, ".lbk");
    REQUIRE(files.size() == 1);
    struct stat fst {};
    REQUIRE(::stat(files[0].c_str(), &fst) == 0);
    CHECK(st.disk_bytes == uint64_t(fst.st_size));
    CHECK((fst.st_mode & 0777) == 0600);
    // The same kernel again in this context: a memory hit.
    {
      Plan p(ctx, d);
      Plan p2(ctx, d);
    }
    st = stats_of(ctx);
    CHECK(st.memory_hits == 2);
    CHECK(st.compiles == 1);
    CHECK(st.misses == 1);
    CHECK(st.disk_hits == 0);
  }
  {
    // A new context on the same directory: a disk hit, no compile.
    Ctx ctx(dir);
    {
      Plan p(ctx, d);
    }
    lowbit_cache_stats st = stats_of(ctx);
    CHECK(st.disk_hits == 1);
    CHECK(st.misses == 0);
    CHECK(st.compiles == 0);
    CHECK(st.memory_hits == 0);
    CHECK(st.compile_ms == 0.0);
    CHECK(st.disk_entries == 1);
    {
      Plan p(ctx, d);
    }
    st = stats_of(ctx);
    CHECK(st.disk_hits == 1);
    CHECK(st.memory_hits == 1);
  }
  {
    // Another architecture is another kernel.
    Ctx ctx(dir, LOWBIT_CACHE_READ_WRITE, "sm_80");
    {
      Plan p(ctx, d);
    }
    const lowbit_cache_stats st = stats_of(ctx);
    CHECK(st.compiles == 1);
    CHECK(st.disk_hits == 0);
    CHECK(st.disk_entries == 2);
  }
}
