/*
 * lowbit.hpp - a header-only C++ layer over the C API in lowbit.h.
 *
 * It is not part of the ABI: everything here is inline code that calls the
 * lowbit_* functions, so it can change between releases without breaking a
 * program linked against liblowbit.so. Needs C++17.
 *
 *  - Handles are std::unique_ptr with deleters (ContextPtr, PlanPtr), wrapped
 *    in the move-only classes Context and Plan.
 *  - Failures carry the status code and the thread's detailed message, either
 *    as an exception (lowbit::Error, thrown by the plain calls) or as a value
 *    (lowbit::Result<T>, returned by the try_* calls; expected-style:
 *    has_value(), value(), error()). Built with -fno-exceptions, use the try_*
 *    calls: value() on an error then prints the message and aborts.
 *  - Thread safety is the C API's: a Context may be used from many threads at
 *    once, a Plan may run concurrently on several streams.
 *
 *    lowbit::Context ctx = lowbit::Context::offline("sm_90a");
 *    lowbit::QuantizeDesc desc;           // lowbit_quantize_desc_init'ed
 *    desc.shape({4096});
 *    lowbit::Plan plan = ctx.quantize_plan(desc);
 *    std::string json = plan.describe();
 */
#ifndef LOWBIT_HPP
#define LOWBIT_HPP

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "lowbit/lowbit.h"

#if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND)
#  define LOWBIT_HPP_EXCEPTIONS 1
#else
#  define LOWBIT_HPP_EXCEPTIONS 0
#endif

namespace lowbit {

/* ---------------------------------------------------------------------- */
/* Errors                                                                  */
/* ---------------------------------------------------------------------- */

/* A failed call: its status (LOWBIT_*) and the detailed message that
 * lowbit_last_error_message() gave right after it. what() is
 * "LOWBIT_X: summary: detail". */
class Error : public std::runtime_error {
 public:
  Error(lowbit_status status, std::string message)
      : std::runtime_error(compose(status, message)), status_(status), message_(std::move(message)) {}

  /* Captures the calling thread's last error; call right after the failure. */
  static Error last(lowbit_status status) {
    std::string message;
    const size_t n = lowbit_copy_last_error_message(nullptr, 0);
    message.resize(n + 1);
    lowbit_copy_last_error_message(message.data(), message.size());
    message.resize(n);
    return Error(status, std::move(message));
  }

  lowbit_status status() const noexcept { return status_; }
  /* The detailed message (may be empty). */
  const std::string& message() const noexcept { return message_; }
  /* The static description of the status ("LOWBIT_MISALIGNED: ..."). */
  const char* status_string() const noexcept { return lowbit_status_string(status_); }

 private:
  static std::string compose(lowbit_status status, const std::string& message) {
    std::string s = lowbit_status_string(status);
    if (!message.empty()) {
      s += ": ";
      s += message;
    }
    return s;
  }

  lowbit_status status_;
  std::string message_;
};

namespace detail {
[[noreturn]] inline void raise(const Error& e) {
#if LOWBIT_HPP_EXCEPTIONS
  throw e;
#else
  std::fprintf(stderr, "lowbit: unhandled error: %s\n", e.what());
  std::abort();
#endif
}
}  // namespace detail

/* expected-style result: either a T or an Error. */
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  /* The value; throws the Error (or aborts without exceptions) if there is none. */
  T& value() & {
    if (!has_value()) detail::raise(std::get<1>(v_));
    return std::get<0>(v_);
  }
  const T& value() const& {
    if (!has_value()) detail::raise(std::get<1>(v_));
    return std::get<0>(v_);
  }
  T&& value() && {
    if (!has_value()) detail::raise(std::get<1>(v_));
    return std::get<0>(std::move(v_));
  }
  T& operator*() & { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }

  /* The error; only valid when !has_value(). */
  const Error& error() const { return std::get<1>(v_); }
  lowbit_status status() const noexcept { return has_value() ? LOWBIT_OK : std::get<1>(v_).status(); }

 private:
  std::variant<T, Error> v_;
};

/* Result of a call with no value. */
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : e_(std::make_unique<Error>(std::move(error))) {}  // NOLINT
  bool has_value() const noexcept { return e_ == nullptr; }
  explicit operator bool() const noexcept { return has_value(); }
  void value() const {
    if (e_) detail::raise(*e_);
  }
  const Error& error() const { return *e_; }
  lowbit_status status() const noexcept { return e_ ? e_->status() : LOWBIT_OK; }

 private:
  std::shared_ptr<Error> e_;
};

/* Turns a status into a Result<void>, capturing the message on failure. */
inline Result<void> check(lowbit_status status) {
  if (status == LOWBIT_OK) return {};
  return Error::last(status);
}

/* ---------------------------------------------------------------------- */
/* Version and names                                                       */
/* ---------------------------------------------------------------------- */

/* The loaded library's version (the LOWBIT_VERSION_* macros are the header's). */
inline uint32_t version_number() noexcept { return lowbit_version_number(); }
inline std::string_view version_string() noexcept { return lowbit_version_string(); }
inline std::string_view status_string(lowbit_status status) noexcept { return lowbit_status_string(status); }
/* "bf16", "s8", ...; empty for an unknown value. */
inline std::string_view dtype_name(lowbit_dtype dtype) noexcept {
  const char* n = lowbit_dtype_name(dtype);
  return n != nullptr ? std::string_view(n) : std::string_view();
}

/* ---------------------------------------------------------------------- */
/* Handles                                                                 */
/* ---------------------------------------------------------------------- */

struct ContextDeleter {
  void operator()(lowbit_context* c) const noexcept { lowbit_context_destroy(c); }
};
struct PlanDeleter {
  void operator()(lowbit_plan* p) const noexcept { lowbit_plan_destroy(p); }
};
using ContextPtr = std::unique_ptr<lowbit_context, ContextDeleter>;
using PlanPtr = std::unique_ptr<lowbit_plan, PlanDeleter>;

/* lowbit_context_options with defaults filled in. The cache_dir string is
 * owned here (the C struct only borrows it until the context is created). */
class ContextOptions {
 public:
  ContextOptions() { lowbit_context_options_init(&raw_); }
  ContextOptions& cache_dir(std::string dir) {
    dir_ = std::move(dir);
    has_dir_ = true;
    return *this;
  }
  ContextOptions& cache_mode(int32_t mode) {
    raw_.cache_mode = mode;
    return *this;
  }
  ContextOptions& cache_max_bytes(uint64_t bytes) {
    raw_.cache_max_bytes = bytes;
    return *this;
  }
  ContextOptions& log_level(int32_t level) {
    raw_.log_level = level;
    return *this;
  }
  /* `callback` and `user_data` must stay valid while the context or any of
   * its plans exists. */
  ContextOptions& log_callback(lowbit_log_callback callback, void* user_data) {
    raw_.log_callback = callback;
    raw_.log_user_data = user_data;
    return *this;
  }
  /* The C struct, with cache_dir pointing into this object. */
  const lowbit_context_options* get() {
    raw_.cache_dir = has_dir_ ? dir_.c_str() : nullptr;
    return &raw_;
  }
  lowbit_context_options& raw() { return raw_; }

 private:
  lowbit_context_options raw_{};
  std::string dir_;
  bool has_dir_ = false;
};

/* lowbit_quantize_desc with defaults filled in; set fields through raw() or
 * the chaining setters. */
class QuantizeDesc {
 public:
  QuantizeDesc() { lowbit_quantize_desc_init(&raw_); }
  QuantizeDesc& op(lowbit_quantize_op v) { raw_.op = v; return *this; }
  QuantizeDesc& scope(lowbit_quantize_scope v) { raw_.scope = v; return *this; }
  QuantizeDesc& x_dtype(lowbit_dtype v) { raw_.x_dtype = v; return *this; }
  QuantizeDesc& q_dtype(lowbit_dtype v) { raw_.q_dtype = v; return *this; }
  QuantizeDesc& scale_dtype(lowbit_dtype v) { raw_.scale_dtype = v; return *this; }
  /* Sets rank and dims (at most 4 dims; more is reported by plan creation as
   * INVALID_PROBLEM through rank = 5). */
  QuantizeDesc& shape(std::initializer_list<int64_t> dims) {
    raw_.rank = int32_t(dims.size());
    int i = 0;
    for (int64_t d : dims) {
      if (i < 4) raw_.dims[i] = d;
      ++i;
    }
    return *this;
  }
  QuantizeDesc& x_row_stride(int64_t v) { raw_.x_row_stride = v; return *this; }
  QuantizeDesc& axis(int32_t v) { raw_.axis = v; return *this; }
  QuantizeDesc& group_size(int64_t v) { raw_.group_size = v; return *this; }
  QuantizeDesc& range(int32_t qmin, int32_t qmax) { raw_.qmin = qmin; raw_.qmax = qmax; return *this; }
  QuantizeDesc& symmetric(bool v) { raw_.symmetric = v ? 1 : 0; return *this; }
  QuantizeDesc& alignment(int32_t v) { raw_.alignment = v; return *this; }

  const lowbit_quantize_desc* get() const { return &raw_; }
  lowbit_quantize_desc& raw() { return raw_; }
  /* The family-tagged descriptor (borrows this object). */
  lowbit_op_desc op_desc() const { return lowbit_op_desc{LOWBIT_FAMILY_QUANTIZE, 0, &raw_}; }

 private:
  lowbit_quantize_desc raw_{};
};

/* One role-tagged device pointer for Plan::run. */
inline lowbit_arg arg(lowbit_arg_role role, uint64_t ptr) { return lowbit_arg{role, 0, ptr}; }

/* A plan: immutable, may run from many threads at once. Move-only. */
class Plan {
 public:
  Plan() = default;
  explicit Plan(PlanPtr p) : p_(std::move(p)) {}

  lowbit_plan* get() const noexcept { return p_.get(); }
  lowbit_plan* release() noexcept { return p_.release(); }
  explicit operator bool() const noexcept { return p_ != nullptr; }

  Result<size_t> try_workspace_size() const {
    size_t bytes = 0;
    if (lowbit_status s = lowbit_plan_workspace_size(p_.get(), &bytes); s != LOWBIT_OK) return Error::last(s);
    return bytes;
  }
  size_t workspace_size() const { return try_workspace_size().value(); }

  /* The plan as JSON text. */
  Result<std::string> try_describe() const {
    size_t length = 0;
    if (lowbit_status s = lowbit_plan_describe(p_.get(), nullptr, 0, &length); s != LOWBIT_OK)
      return Error::last(s);
    std::string text(length + 1, '\0');
    if (lowbit_status s = lowbit_plan_describe(p_.get(), text.data(), text.size(), &length); s != LOWBIT_OK)
      return Error::last(s);
    text.resize(std::min(length, text.size() - 1));
    return text;
  }
  std::string describe() const { return try_describe().value(); }

  /* Enqueues the plan on `stream` (a CUstream / cudaStream_t; nullptr for the
   * default stream). Asynchronous. */
  Result<void> try_run(const std::vector<lowbit_arg>& args, void* stream = nullptr, uint64_t workspace = 0,
                       size_t workspace_bytes = 0) const {
    return check(lowbit_plan_run(p_.get(), args.data(), args.size(), workspace, workspace_bytes, stream));
  }
  void run(const std::vector<lowbit_arg>& args, void* stream = nullptr, uint64_t workspace = 0,
           size_t workspace_bytes = 0) const {
    try_run(args, stream, workspace, workspace_bytes).value();
  }

 private:
  PlanPtr p_;
};

/* A context: shareable between threads. Move-only. */
class Context {
 public:
  Context() = default;
  explicit Context(ContextPtr c) : c_(std::move(c)) {}

  static Result<Context> try_device(int32_t ordinal, ContextOptions options = {}) {
    lowbit_context* c = nullptr;
    if (lowbit_status s = lowbit_context_create_device(ordinal, options.get(), &c); s != LOWBIT_OK)
      return Error::last(s);
    return Context(ContextPtr(c));
  }
  static Result<Context> try_current(ContextOptions options = {}) {
    lowbit_context* c = nullptr;
    if (lowbit_status s = lowbit_context_create_current(options.get(), &c); s != LOWBIT_OK) return Error::last(s);
    return Context(ContextPtr(c));
  }
  static Result<Context> try_offline(const std::string& arch, ContextOptions options = {}) {
    lowbit_context* c = nullptr;
    if (lowbit_status s = lowbit_context_create_offline(arch.c_str(), options.get(), &c); s != LOWBIT_OK)
      return Error::last(s);
    return Context(ContextPtr(c));
  }
  static Context device(int32_t ordinal, ContextOptions options = {}) {
    return try_device(ordinal, std::move(options)).value();
  }
  static Context current(ContextOptions options = {}) { return try_current(std::move(options)).value(); }
  static Context offline(const std::string& arch, ContextOptions options = {}) {
    return try_offline(arch, std::move(options)).value();
  }

  lowbit_context* get() const noexcept { return c_.get(); }
  lowbit_context* release() noexcept { return c_.release(); }
  explicit operator bool() const noexcept { return c_ != nullptr; }

  Result<lowbit_device_info> try_info() const {
    lowbit_device_info info{};
    info.struct_size = sizeof(info);
    if (lowbit_status s = lowbit_context_get_info(c_.get(), &info); s != LOWBIT_OK) return Error::last(s);
    return info;
  }
  lowbit_device_info info() const { return try_info().value(); }

  Result<lowbit_cache_stats> try_cache_stats() const {
    lowbit_cache_stats stats{};
    stats.struct_size = sizeof(stats);
    if (lowbit_status s = lowbit_context_cache_stats(c_.get(), &stats); s != LOWBIT_OK) return Error::last(s);
    return stats;
  }
  lowbit_cache_stats cache_stats() const { return try_cache_stats().value(); }

  Result<Plan> try_plan(const lowbit_op_desc& op) const {
    lowbit_plan* p = nullptr;
    if (lowbit_status s = lowbit_plan_create(c_.get(), &op, &p); s != LOWBIT_OK) return Error::last(s);
    return Plan(PlanPtr(p));
  }
  Result<Plan> try_quantize_plan(const QuantizeDesc& desc) const { return try_plan(desc.op_desc()); }
  Plan plan(const lowbit_op_desc& op) const { return try_plan(op).value(); }
  Plan quantize_plan(const QuantizeDesc& desc) const { return try_quantize_plan(desc).value(); }

  /* Compiles (and caches) the plans of all descriptors on up to `threads`
   * threads (0 = all CPUs). `results`, if given, receives one status per item. */
  Result<void> try_prewarm(const std::vector<lowbit_op_desc>& ops, uint32_t threads = 0,
                           std::vector<lowbit_status>* results = nullptr) const {
    if (results != nullptr) results->assign(ops.size(), LOWBIT_OK);
    return check(lowbit_prewarm(c_.get(), ops.data(), ops.size(), threads,
                                results != nullptr ? results->data() : nullptr));
  }
  void prewarm(const std::vector<lowbit_op_desc>& ops, uint32_t threads = 0,
               std::vector<lowbit_status>* results = nullptr) const {
    try_prewarm(ops, threads, results).value();
  }

 private:
  ContextPtr c_;
};

/* Runs the CPU reference of `op` on host memory (args hold host addresses). */
inline Result<void> try_reference_run(const lowbit_op_desc& op, const std::vector<lowbit_arg>& args) {
  return check(lowbit_reference_run(&op, args.data(), args.size()));
}
inline void reference_run(const lowbit_op_desc& op, const std::vector<lowbit_arg>& args) {
  try_reference_run(op, args).value();
}

}  // namespace lowbit

#endif /* LOWBIT_HPP */
