// libFuzzer target: descriptor parsing and plan creation through the C API on
// an offline sm_90a context (memory-only cache: nothing touches the disk).
//
// Input layout (tests/fuzz/README.md):
//   byte 0      flags (kFlag* below)
//   [4 bytes]   a raw lowbit_op_family, only with kFlagRawFamily
//   rest        the descriptor's bytes, laid over the family's defaults
//               (short inputs keep the remaining defaults); with
//               kFlagStructured, bytes that pick each field from tables of
//               valid and edge values (Picker below)
//
// Properties checked (any violation aborts, which libFuzzer reports):
//   - no crash, leak, sanitizer report or exception across the C boundary;
//   - lowbit_plan_create returns exactly the status the internal validation
//     (create_op_plan) predicts; a validated descriptor must compile
//     (COMPILE_FAILED for it is a bug: validation let through a kernel the
//     templates cannot build);
//   - on a created plan: describe (query, truncated and full), workspace_size,
//     and run returning NO_DEVICE (offline);
//   - optionally lowbit_reference_run on host buffers sized exactly as the
//     header documents, for small problems (ASan catches any overrun).
//
// Compiles are expensive (NVRTC, ~1 s): each distinct kernel key compiles at
// most once per process (the memory cache), and at most
// $LOWBIT_FUZZ_MAX_COMPILES (default 24) distinct keys are compiled per
// process; past that, a descriptor needing a new kernel is validated and
// described internally but not compiled.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "jit/kernel_spec.hpp"
#include "jit/target.hpp"
#include "lowbit/lowbit.h"
#include "ops/op_plan.hpp"

namespace {

constexpr uint8_t kFlagRawFamily = 1u << 0;    // family id from the next 4 bytes
constexpr uint8_t kFlagWq = 1u << 1;           // (without raw) the weight-matmul family, else quantize
constexpr uint8_t kFlagKeepSize = 1u << 2;     // keep the fuzzed struct_size (else sizeof)
constexpr uint8_t kFlagReserved = 1u << 3;     // lowbit_op_desc.reserved = 1
constexpr uint8_t kFlagNullDesc = 1u << 4;     // lowbit_op_desc.desc = NULL
constexpr uint8_t kFlagReference = 1u << 5;    // also run the CPU reference (small problems)
constexpr uint8_t kFlagShorthand = 1u << 6;    // lowbit_quantize_plan_create instead of lowbit_plan_create
constexpr uint8_t kFlagStructured = 1u << 7;   // the body picks each field from a table of edge values

[[noreturn]] void die(const char* what, int status, int expected) {
  std::fprintf(stderr, "fuzz_plan_create: %s: status %d, expected %d; last error: %s\n", what, status, expected,
               lowbit_last_error_message());
  std::abort();
}

// Structured mode: each field from one or a few input bytes, mostly drawn
// from tables of valid and edge values, so that mutations explore
// combinations (a zero dim before huge ones, extreme strides, group sizes
// that barely divide) instead of dying on the first enum check.
class Picker {
 public:
  Picker(const uint8_t* data, size_t size) : p_(data), end_(data + size) {}
  uint8_t byte() { return p_ < end_ ? *p_++ : 0; }
  int32_t i32() {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t(byte()) << (8 * i);
    return int32_t(v);
  }
  int64_t i64() {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t(byte()) << (8 * i);
    return int64_t(v);
  }
  // An enum: 1..n mostly, sometimes 0, -1 or a raw value.
  int32_t enum_value(int32_t n) {
    const uint8_t b = byte();
    if (b < 240) return 1 + int32_t(b % uint8_t(n));
    if (b < 248) return b & 1 ? 0 : -1;
    return i32();
  }
  int64_t size_value() {
    static constexpr int64_t kSizes[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 100, 127, 128,
                                         255, 256, 1000, 1024, 4096, 4097, 11008, 65535, 65536, int64_t(1) << 24,
                                         int64_t(1) << 31, int64_t(1) << 32, int64_t(1) << 40, int64_t(1) << 47,
                                         int64_t(1) << 48, (int64_t(1) << 48) + 1, INT64_MAX, -1, INT64_MIN};
    const uint8_t b = byte();
    constexpr size_t n = sizeof(kSizes) / sizeof(kSizes[0]);
    if (b < 4 * n) return kSizes[b % n];
    if (b < 250) return int64_t(b - 4 * n);
    return i64();
  }
  int32_t small_int() {
    static constexpr int32_t kInts[] = {0, 1, -1, 2, 4, 7, 8, 15, 16, -8, -127, -128, 127, 255, 256, INT32_MAX, INT32_MIN};
    const uint8_t b = byte();
    constexpr size_t n = sizeof(kInts) / sizeof(kInts[0]);
    if (b < 8 * n) return kInts[b % n];
    return b < 250 ? int32_t(b) - 180 : i32();
  }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
};

void structured_quantize(Picker& in, lowbit_quantize_desc* d) {
  d->op = in.enum_value(7);
  d->scope = in.enum_value(4);
  d->x_dtype = in.enum_value(9);
  d->q_dtype = in.enum_value(9);
  d->scale_dtype = in.byte() < 200 ? LOWBIT_DTYPE_F32 : in.enum_value(9);
  d->rank = in.byte() < 250 ? 1 + int32_t(in.byte() % 4) : in.small_int();
  for (int i = 0; i < 4; ++i) d->dims[i] = in.size_value();
  d->x_row_stride = in.byte() < 160 ? 0 : in.size_value();
  d->axis = in.small_int();
  d->group_size = in.size_value();
  const uint8_t range = in.byte();
  d->qmin = range < 128 ? 0 : in.small_int();
  d->qmax = range < 128 ? 0 : in.small_int();
  d->symmetric = in.byte() < 250 ? in.byte() & 1 : in.small_int();
  static constexpr int32_t kAlign[] = {16, 8, 4, 2, 1, 0, 3, 32};
  d->alignment = kAlign[in.byte() % 8];
}

void structured_wq(Picker& in, lowbit_wq_matmul_desc* d) {
  d->op = in.enum_value(2);
  d->format = in.enum_value(5);
  static constexpr int32_t kBits[] = {4, 8, 4, 8, 0, 2, 3, 16};
  d->weight_bits = kBits[in.byte() % 8];
  d->symmetric = in.byte() & 1;
  d->act_order = in.byte() & 1;
  static constexpr int64_t kGroups[] = {128, 32, 64, 256, -1, 0, 16, 48, 512, -2};
  const uint8_t g = in.byte();
  d->group_size = g < 250 ? kGroups[g % 10] : in.size_value();
  d->m = in.size_value();
  d->n = in.size_value();
  d->k = in.size_value();
  d->act_dtype = in.enum_value(9);
  d->scale_dtype = in.enum_value(9);
  d->has_bias = in.byte() < 250 ? in.byte() & 1 : in.small_int();
  static constexpr int32_t kAlign[] = {16, 8, 4, 2, 1, 0, 3, 32};
  d->alignment = kAlign[in.byte() % 8];
  d->x_row_stride = in.byte() < 160 ? 0 : in.size_value();
  d->y_row_stride = in.byte() < 160 ? 0 : in.size_value();
}

// LOWBIT_FUZZ_PRINT=1: prints the descriptor an input decodes to (turning a
// crash file into a readable regression test).
void print_desc(lowbit_op_family family, const uint8_t* bytes) {
  if (family == LOWBIT_FAMILY_WEIGHT_MATMUL) {
    lowbit_wq_matmul_desc d;
    std::memcpy(&d, bytes, sizeof(d));
    std::fprintf(stderr,
                 "wq_matmul_desc{struct_size=%u op=%d format=%d weight_bits=%d symmetric=%d act_order=%d "
                 "group_size=%lld m=%lld n=%lld k=%lld act_dtype=%d scale_dtype=%d has_bias=%d alignment=%d "
                 "x_row_stride=%lld y_row_stride=%lld}\n",
                 d.struct_size, d.op, d.format, d.weight_bits, d.symmetric, d.act_order, (long long)d.group_size,
                 (long long)d.m, (long long)d.n, (long long)d.k, d.act_dtype, d.scale_dtype, d.has_bias, d.alignment,
                 (long long)d.x_row_stride, (long long)d.y_row_stride);
    return;
  }
  lowbit_quantize_desc d;
  std::memcpy(&d, bytes, sizeof(d));
  std::fprintf(stderr,
               "quantize_desc{struct_size=%u op=%d scope=%d x_dtype=%d q_dtype=%d scale_dtype=%d rank=%d "
               "dims={%lld,%lld,%lld,%lld} x_row_stride=%lld axis=%d group_size=%lld qmin=%d qmax=%d symmetric=%d "
               "alignment=%d}\n",
               d.struct_size, d.op, d.scope, d.x_dtype, d.q_dtype, d.scale_dtype, d.rank, (long long)d.dims[0],
               (long long)d.dims[1], (long long)d.dims[2], (long long)d.dims[3], (long long)d.x_row_stride, d.axis,
               (long long)d.group_size, d.qmin, d.qmax, d.symmetric, d.alignment);
}

// lowbit.h's defaults of lowbit_wq_matmul_desc, and a valid shape (n and k
// have no default), for the input's bytes to be laid over.
lowbit_wq_matmul_desc wq_defaults() {
  lowbit_wq_matmul_desc d;
  lowbit_wq_matmul_desc_init(&d);
  d.n = 4096;
  d.k = 4096;
  return d;
}

struct State {
  lowbit_context* ctx = nullptr;
  lowbit::DeviceTraits traits;
  std::set<std::string> known_keys;  // kernels compiled (or tried) in this process
  size_t max_compiles = 24;
};

State& state() {
  static State* s = [] {
    auto* st = new State;
    lowbit_context_options o;
    lowbit_context_options_init(&o);
    o.cache_mode = LOWBIT_CACHE_MEMORY;
    o.log_level = LOWBIT_LOG_ERROR;
    if (lowbit_context_create_offline("sm_90a", &o, &st->ctx) != LOWBIT_OK) {
      std::fprintf(stderr, "fuzz_plan_create: cannot create the offline context: %s\n", lowbit_last_error_message());
      std::abort();
    }
    // The same traits as an offline context (runtime/context.cpp).
    lowbit::Target::parse("sm_90a", &st->traits.target);
    st->traits.offline = true;
    if (const char* m = std::getenv("LOWBIT_FUZZ_MAX_COMPILES")) st->max_compiles = size_t(std::strtoul(m, nullptr, 10));
    return st;
  }();
  return *s;
}

// Host buffers for lowbit_reference_run of a quantize descriptor that the
// library validated, each exactly as large as lowbit.h documents. Problems
// too large to run here are skipped.
void reference_quantize(const lowbit_quantize_desc& d, const uint8_t* data, size_t size) {
  if (d.rank < 1 || d.rank > 4) return;
  int64_t rows = 1;
  for (int i = 0; i + 1 < d.rank; ++i) rows *= d.dims[i];
  const int64_t cols = d.dims[d.rank - 1];
  const int64_t stride = d.x_row_stride != 0 ? d.x_row_stride : cols;
  constexpr int64_t kMaxElems = 1 << 14;
  if (rows <= 0 || cols <= 0 || rows > kMaxElems || cols > kMaxElems || rows * stride > 4 * kMaxElems) return;
  const int64_t x_elems = (rows - 1) * stride + cols;
  const bool packed = d.q_dtype == LOWBIT_DTYPE_S4 || d.q_dtype == LOWBIT_DTYPE_U4;
  const int64_t q_bytes = rows * (packed ? (cols + 1) / 2 : cols);
  int64_t num_scales = 1;
  switch (d.scope) {
    case LOWBIT_SCOPE_PER_CHANNEL: num_scales = d.dims[d.axis < 0 ? d.axis + d.rank : d.axis]; break;
    case LOWBIT_SCOPE_PER_TOKEN: num_scales = rows; break;
    case LOWBIT_SCOPE_PER_GROUP: num_scales = rows * (cols / d.group_size); break;
    default: break;
  }
  auto bytes_of = [](lowbit_dtype t) -> int64_t {
    return t == LOWBIT_DTYPE_F64 ? 8 : (t == LOWBIT_DTYPE_F16 || t == LOWBIT_DTYPE_BF16) ? 2 : 4;
  };
  const int64_t xb = bytes_of(d.x_dtype), sb = bytes_of(d.scale_dtype);
  // Fresh, exactly sized heap blocks (ASan: any overrun is reported), filled
  // with bytes derived from the input so NaN, inf and huge values appear.
  std::seed_seq seed(data, data + size);
  std::mt19937_64 gen(seed);
  auto block = [&](int64_t bytes) {
    std::unique_ptr<uint8_t[]> p(new uint8_t[size_t(std::max<int64_t>(bytes, 1))]);
    for (int64_t i = 0; i < bytes; ++i) p[size_t(i)] = uint8_t(gen());
    return p;
  };
  auto x = block(x_elems * xb), dy = block(x_elems * xb), dx = block(x_elems * xb), y = block(x_elems * xb);
  auto q = block(q_bytes), scale = block(num_scales * sb), zp = block(num_scales * 4);
  const lowbit_arg args[] = {
      {LOWBIT_ARG_X, 0, uint64_t(uintptr_t(x.get()))},          {LOWBIT_ARG_Q, 0, uint64_t(uintptr_t(q.get()))},
      {LOWBIT_ARG_SCALE, 0, uint64_t(uintptr_t(scale.get()))},  {LOWBIT_ARG_ZERO_POINT, 0, uint64_t(uintptr_t(zp.get()))},
      {LOWBIT_ARG_DY, 0, uint64_t(uintptr_t(dy.get()))},        {LOWBIT_ARG_DX, 0, uint64_t(uintptr_t(dx.get()))},
      {LOWBIT_ARG_Y, 0, uint64_t(uintptr_t(y.get()))},
  };
  const lowbit_op_desc op{LOWBIT_FAMILY_QUANTIZE, 0, &d};
  const lowbit_status s = lowbit_reference_run(&op, args, sizeof(args) / sizeof(args[0]));
  if (s != LOWBIT_OK) die("lowbit_reference_run of a validated descriptor", s, LOWBIT_OK);
}

void exercise_plan(lowbit_plan* plan) {
  size_t length = 0;
  lowbit_status s = lowbit_plan_describe(plan, nullptr, 0, &length);
  if (s != LOWBIT_OK) die("describe (length query)", s, LOWBIT_OK);
  std::vector<char> buf(length + 1);
  size_t again = 0;
  s = lowbit_plan_describe(plan, buf.data(), buf.size(), &again);
  if (s != LOWBIT_OK || again != length || std::strlen(buf.data()) != length) die("describe", s, LOWBIT_OK);
  char small[7];
  s = lowbit_plan_describe(plan, small, sizeof(small), nullptr);
  if (s != LOWBIT_OK || std::strlen(small) != std::min<size_t>(length, sizeof(small) - 1)) die("describe (truncated)", s, LOWBIT_OK);
  size_t ws = 0;
  s = lowbit_plan_workspace_size(plan, &ws);
  if (s != LOWBIT_OK) die("workspace_size", s, LOWBIT_OK);
  s = lowbit_plan_run(plan, nullptr, 0, 0, 0, nullptr);
  if (s != LOWBIT_NO_DEVICE) die("run on an offline context", s, LOWBIT_NO_DEVICE);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  State& st = state();
  if (size < 1) return 0;
  const uint8_t flags = data[0];
  size_t pos = 1;

  lowbit_op_family family;
  if (flags & kFlagRawFamily) {
    if (size < pos + 4) return 0;
    std::memcpy(&family, data + pos, 4);
    pos += 4;
  } else {
    family = (flags & kFlagWq) ? LOWBIT_FAMILY_WEIGHT_MATMUL : LOWBIT_FAMILY_QUANTIZE;
  }

  // The descriptor: the family's defaults, overlaid with the input's bytes.
  union {
    lowbit_quantize_desc q;
    lowbit_wq_matmul_desc wq;
    uint8_t bytes[256];
  } base;
  std::memset(&base, 0, sizeof(base));
  size_t current = sizeof(base.bytes);
  if (family == LOWBIT_FAMILY_WEIGHT_MATMUL) {
    base.wq = wq_defaults();
    current = sizeof(base.wq);
  } else {
    lowbit_quantize_desc_init(&base.q);
    if (family == LOWBIT_FAMILY_QUANTIZE) current = sizeof(base.q);
  }
  if (flags & kFlagStructured) {
    Picker in(data + pos, size - pos);
    if (family == LOWBIT_FAMILY_WEIGHT_MATMUL) structured_wq(in, &base.wq);
    else structured_quantize(in, &base.q);
  } else {
    const size_t body = std::min(size - pos, sizeof(base.bytes));
    std::memcpy(base.bytes, data + pos, body);
  }
  if (std::getenv("LOWBIT_FUZZ_PRINT") != nullptr) print_desc(family, base.bytes);
  uint32_t claimed = uint32_t(current);
  if (flags & kFlagKeepSize) std::memcpy(&claimed, base.bytes, 4);
  else std::memcpy(base.bytes, &claimed, 4);
  // The caller's block is exactly as large as it claims (at least the
  // struct_size field, at most 256 bytes): reads past it are ASan reports.
  const size_t block_size = std::max<size_t>(4, std::min<size_t>(claimed, sizeof(base.bytes)));
  std::unique_ptr<uint8_t[]> block(new uint8_t[block_size]);
  std::memcpy(block.get(), base.bytes, block_size);

  lowbit_op_desc op{family, (flags & kFlagReserved) ? 1 : 0, (flags & kFlagNullDesc) ? nullptr : block.get()};

  // What the library's own validation says, without compiling anything.
  lowbit_status expected = LOWBIT_OK;
  std::unique_ptr<lowbit::OpPlan> internal;
  std::vector<std::string> keys;
  if (op.reserved != 0) {
    expected = LOWBIT_INVALID_ARGUMENT;
  } else {
    try {
      internal = lowbit::create_op_plan(op, st.traits);
      for (const lowbit::KernelSpec& spec : internal->kernels()) {
        bool ptx_only = false;
        const std::vector<std::string> options = lowbit::compile_options(spec, st.traits.target, &ptx_only);
        keys.push_back(lowbit::to_hex(lowbit::base_key(lowbit::render_source(spec), options, st.traits.target)));
      }
      (void)internal->describe();
      (void)internal->workspace_size();
    } catch (const lowbit::Error& e) {
      expected = e.status();
    }
  }
  size_t new_keys = 0;
  for (const std::string& k : keys) new_keys += st.known_keys.count(k) == 0 ? 1 : 0;
  const bool may_compile = new_keys == 0 || st.known_keys.size() + new_keys <= st.max_compiles;

  if (expected != LOWBIT_OK || may_compile) {
    for (const std::string& k : keys) st.known_keys.insert(k);
    lowbit_plan* plan = reinterpret_cast<lowbit_plan*>(uintptr_t(0x1));  // must be reset
    lowbit_status s;
    if ((flags & kFlagShorthand) && family == LOWBIT_FAMILY_QUANTIZE && op.reserved == 0 && op.desc != nullptr)
      s = lowbit_quantize_plan_create(st.ctx, static_cast<const lowbit_quantize_desc*>(op.desc), &plan);
    else
      s = lowbit_plan_create(st.ctx, &op, &plan);
    if (s != expected) die("lowbit_plan_create", s, expected);
    if (s == LOWBIT_OK) {
      if (plan == nullptr) die("lowbit_plan_create gave OK and a NULL plan", s, expected);
      exercise_plan(plan);
    } else if (plan != nullptr) {
      die("lowbit_plan_create failed but left *out non-NULL", s, expected);
    }
    lowbit_plan_destroy(plan);
    // Every failure carries a message.
    if (s != LOWBIT_OK && lowbit_last_error_message()[0] == '\0') die("failure without a message", s, expected);
  }

  if (expected == LOWBIT_OK && (flags & kFlagReference) && family == LOWBIT_FAMILY_QUANTIZE)
    reference_quantize(*reinterpret_cast<const lowbit_quantize_desc*>(base.bytes), data, size);
  return 0;
}
