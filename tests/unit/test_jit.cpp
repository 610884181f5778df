// Unit tests of the JIT layer (src/jit/): compile targets, the ptxas report
// parser, source rendering, compile options, cache keys, the embedded
// templates, and NVRTC itself: every kernel instantiation the library can
// produce must compile for every supported architecture without spills, a
// broken source must fail with the NVRTC log, and a process without NVRTC
// must still load cached kernels.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cache/kernel_cache.hpp"
#include "common/dtype.hpp"
#include "common/error.hpp"
#include "common/log.hpp"
#include "common/sha256.hpp"
#include "jit/compiler.hpp"
#include "jit/embedded.hpp"
#include "jit/kernel_spec.hpp"
#include "jit/nvrtc.hpp"
#include "jit/target.hpp"
#include "lowbit/lowbit.h"
#include "ops/op_plan.hpp"
#include "support/test_support.hpp"

namespace {

using lowbit::KernelSpec;
using lowbit::Target;

Target target(const char* name) {
  Target t;
  REQUIRE_MESSAGE(Target::parse(name, &t), name);
  return t;
}

// A small, valid spec shaped like the quantize family's.
KernelSpec sample_spec() {
  KernelSpec s;
  s.family = "quantize";
  s.header = "quantize.cuh";
  s.function = "lowbit::quantize_kernel";
  s.params_type = "lowbit::QuantizeParams";
  s.threads = 256;
  s.types = {{"XT", "float"}, {"QT", "int8_t"}, {"ST", "float"}};
  s.constants = {{"kOp", "1"}, {"kScope", "1"}, {"kVec", "4"}, {"kUnroll", "4"}, {"kQmin", "-128"}, {"kQmax", "127"}};
  s.options = {"-fmad=false"};
  return s;
}

std::string key_of(const KernelSpec& spec, const Target& t) {
  const std::string source = lowbit::render_source(spec);
  const std::vector<std::string> options = lowbit::compile_options(spec, t, nullptr);
  return lowbit::to_hex(lowbit::base_key(source, options, t));
}

lowbit::Error catch_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const lowbit::Error& e) {
    return e;
  }
  return lowbit::Error(LOWBIT_OK, "no exception");
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A sweep over quantize descriptors: every combination of these values that
// the family's own checks accept (the specs come from the family's plan
// selection, not from a copy of its rules).
struct Layout {
  int rank;
  int64_t d0, d1, stride;
};
struct Sweep {
  std::vector<int> ops, scopes;
  std::vector<lowbit_dtype> xs, qs;
  bool scale_as_x;  // also scale_dtype = x_dtype, not only f32
  std::vector<int> alignments;
  std::vector<Layout> layouts;
  int64_t group_size = 128;
};

// The distinct kernels (by source) the library produces for a sweep.
std::vector<KernelSpec> library_specs(const Target& t, const Sweep& sw, int* valid_descs = nullptr) {
  lowbit::DeviceTraits traits;
  traits.target = t;
  traits.offline = true;
  std::map<std::string, KernelSpec> by_source;
  int valid = 0;
  for (int op : sw.ops)
    for (int scope : sw.scopes)
      for (lowbit_dtype x : sw.xs)
        for (lowbit_dtype q : sw.qs)
          for (lowbit_dtype s : {LOWBIT_DTYPE_F32, x}) {
            if (s != LOWBIT_DTYPE_F32 && (!sw.scale_as_x || x == LOWBIT_DTYPE_F32)) continue;
            for (int align : sw.alignments)
              for (const Layout& l : sw.layouts) {
                lowbit_quantize_desc d;
                lowbit_quantize_desc_init(&d);
                d.op = op;
                d.scope = scope;
                d.x_dtype = x;
                d.q_dtype = q;
                d.scale_dtype = s;
                d.alignment = align;
                d.rank = l.rank;
                d.dims[0] = l.d0;
                d.dims[1] = l.d1;
                d.x_row_stride = l.stride;
                d.group_size = sw.group_size;
                lowbit_op_desc od{LOWBIT_FAMILY_QUANTIZE, 0, &d};
                try {
                  std::unique_ptr<lowbit::OpPlan> plan = lowbit::create_op_plan(od, traits);
                  ++valid;
                  for (const KernelSpec& spec : plan->kernels()) by_source.emplace(lowbit::render_source(spec), spec);
                } catch (const lowbit::Error&) {
                  // Not a valid (or not yet implemented) combination.
                }
              }
          }
  if (valid_descs != nullptr) *valid_descs = valid;
  std::vector<KernelSpec> out;
  for (auto& [src, spec] : by_source) out.push_back(spec);
  return out;
}

const std::vector<lowbit_dtype> kFloatTypes = {LOWBIT_DTYPE_F32, LOWBIT_DTYPE_F64, LOWBIT_DTYPE_F16, LOWBIT_DTYPE_BF16};

// Per-tensor quantize / dequantize x {f32, f64, f16, bf16} x {s8, u8} x
// {f32, x} scales x every vector width: alignments narrow the vectors, and so
// do row strides that are odd multiples of 1, 2, ... 32 elements (long rows,
// so that the rest of the launch shape stays the same).
Sweep elementwise_sweep() {
  Sweep sw;
  sw.ops = {LOWBIT_QOP_QUANTIZE, LOWBIT_QOP_DEQUANTIZE};
  sw.scopes = {LOWBIT_SCOPE_PER_TENSOR};
  sw.xs = kFloatTypes;
  sw.qs = {LOWBIT_DTYPE_S8, LOWBIT_DTYPE_U8};
  sw.scale_as_x = true;
  sw.alignments = {1, 2, 4, 8, 16};
  constexpr int64_t kCols = 16384;
  sw.layouts = {{1, 3 * kCols, 0, 0}};
  for (int64_t s : {1, 2, 4, 8, 16, 32}) sw.layouts.push_back({2, 3, kCols, kCols + s});
  return sw;
}

std::string constant(const KernelSpec& s, const std::string& name) {
  for (const auto& [k, v] : s.constants)
    if (k == name) return v;
  return "";
}
std::string type(const KernelSpec& s, const std::string& name) {
  for (const auto& [k, v] : s.types)
    if (k == name) return v;
  return "";
}

}  // namespace

// ---------------------------------------------------------------------------
// Targets

TEST_CASE("jit target: parse accepts target names and rejects the rest") {
  struct Good {
    const char* text;
    int sm;
    bool a;
    const char* name;
  };
  const Good good[] = {{"sm_80", 80, false, "sm_80"},   {"sm_86", 86, false, "sm_86"},
                       {"sm_89", 89, false, "sm_89"},   {"sm_90", 90, false, "sm_90"},
                       {"sm_90a", 90, true, "sm_90a"},  {"90a", 90, true, "sm_90a"},
                       {"80", 80, false, "sm_80"},      {"sm_100a", 100, true, "sm_100a"},
                       {"sm_120", 120, false, "sm_120"}, {"sm_12", 12, false, "sm_12"},
                       {"sm_75", 75, false, "sm_75"}};
  for (const Good& g : good) {
    CAPTURE(g.text);
    Target t;
    REQUIRE(Target::parse(g.text, &t));
    CHECK(t.sm == g.sm);
    CHECK(t.arch_specific == g.a);
    CHECK(t.name() == g.name);
    Target again;
    REQUIRE(Target::parse(t.name(), &again));  // name() parses back
    CHECK(again.sm == t.sm);
    CHECK(again.arch_specific == t.arch_specific);
  }
  const char* bad[] = {"",       "sm_",    "sm",     "banana", "sm_a",  "a",      "sm_9",    "sm_1000",
                       "sm_90b", "sm_-90", "sm_ 90", "SM_90",  "sm_9x", "sm_90aa", "compute_90", "sm_90 ",
                       "sm__90", "0",      "sm_0",   "sm_+90"};
  for (const char* b : bad) {
    CAPTURE(b);
    Target t;
    t.sm = 77;
    CHECK_FALSE(Target::parse(b, &t));
    CHECK(t.sm == 77);  // untouched on failure
  }
}

TEST_CASE("jit target: for_device picks the arch-specific variant where one exists") {
  CHECK(Target::for_device(8, 0).name() == "sm_80");
  CHECK(Target::for_device(8, 6).name() == "sm_86");
  CHECK(Target::for_device(8, 9).name() == "sm_89");
  CHECK(Target::for_device(9, 0).name() == "sm_90a");
  CHECK(Target::for_device(10, 0).name() == "sm_100a");
  CHECK(Target::for_device(12, 0).name() == "sm_120");
  CHECK(Target::for_device(7, 5).name() == "sm_75");
}

// ---------------------------------------------------------------------------
// ptxas report

TEST_CASE("jit ptxas: parse_ptxas_report reads registers, spills, stack and shared memory") {
  SUBCASE("a clean kernel (NVRTC 13 format)") {
    const std::string log =
        "ptxas info    : 0 bytes gmem\n"
        "ptxas info    : Compiling entry function 'lowbit_kernel' for 'sm_90a'\n"
        "ptxas info    : Function properties for lowbit_kernel\n"
        "ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
        "ptxas info    : Used 30 registers, used 0 barriers, 464 bytes cmem[0]\n"
        "ptxas info    : Compile time = 14.239 ms\n";
    const lowbit::PtxasReport r = lowbit::parse_ptxas_report(log);
    CHECK(r.registers == 30);
    CHECK(r.stack_frame_bytes == 0);
    CHECK(r.spill_store_bytes == 0);
    CHECK(r.spill_load_bytes == 0);
    CHECK(r.shared_bytes == 0);
    CHECK_FALSE(r.spills());
  }
  SUBCASE("spills, stack frame and shared memory") {
    const std::string log =
        "ptxas info    : Compiling entry function 'lowbit_kernel' for 'sm_80'\n"
        "ptxas info    : Function properties for lowbit_kernel\n"
        "ptxas         .     256 bytes stack frame, 24 bytes spill stores, 16 bytes spill loads\n"
        "ptxas info    : Used 255 registers, used 1 barriers, 256 bytes cumulative stack size, "
        "4096 bytes smem, 364 bytes cmem[0]\n";
    const lowbit::PtxasReport r = lowbit::parse_ptxas_report(log);
    CHECK(r.registers == 255);
    CHECK(r.stack_frame_bytes == 256);
    CHECK(r.spill_store_bytes == 24);
    CHECK(r.spill_load_bytes == 16);
    CHECK(r.shared_bytes == 4096);
    CHECK(r.spills());
  }
  SUBCASE("several functions: the largest value of each") {
    const std::string log =
        "ptxas info    : Function properties for helper\n"
        "ptxas         .     8 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
        "ptxas info    : Function properties for lowbit_kernel\n"
        "ptxas         .     0 bytes stack frame, 4 bytes spill stores, 0 bytes spill loads\n"
        "ptxas info    : Used 12 registers, used 0 barriers\n"
        "ptxas info    : Used 40 registers, used 0 barriers\n";
    const lowbit::PtxasReport r = lowbit::parse_ptxas_report(log);
    CHECK(r.registers == 40);
    CHECK(r.stack_frame_bytes == 8);
    CHECK(r.spill_store_bytes == 4);
    CHECK(r.spill_load_bytes == 0);
    CHECK(r.spills());
  }
  SUBCASE("a stack frame alone counts as spilling") {
    lowbit::PtxasReport r = lowbit::parse_ptxas_report("16 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads");
    CHECK(r.stack_frame_bytes == 16);
    CHECK(r.spills());
  }
  SUBCASE("an empty or unrelated log") {
    for (const char* log : {"", "nvrtc: warning: something\n", "registers", "Used registers, bytes spill stores"}) {
      CAPTURE(log);
      const lowbit::PtxasReport r = lowbit::parse_ptxas_report(log);
      CHECK(r.registers == -1);
      CHECK(r.stack_frame_bytes == 0);
      CHECK(r.spill_store_bytes == 0);
      CHECK(r.spill_load_bytes == 0);
      CHECK_FALSE(r.spills());
    }
  }
}

// ---------------------------------------------------------------------------
// Rendering, options, keys

TEST_CASE("jit render: the source instantiates the template with the spec's config") {
  KernelSpec s = sample_spec();
  const std::string src = lowbit::render_source(s);
  CAPTURE(src);
  CHECK(src.find("#include \"prelude.cuh\"") != std::string::npos);
  CHECK(src.find("#include \"quantize.cuh\"") != std::string::npos);
  CHECK(src.find("static constexpr int kThreads = 256;") != std::string::npos);
  CHECK(src.find("using XT = float;") != std::string::npos);
  CHECK(src.find("using QT = int8_t;") != std::string::npos);
  CHECK(src.find("using ST = float;") != std::string::npos);
  for (const auto& [k, v] : s.constants)
    CHECK(src.find("static constexpr auto " + k + " = " + v + ";") != std::string::npos);
  CHECK(src.find("extern \"C\" __global__ void __launch_bounds__(256) lowbit_kernel(const lowbit::QuantizeParams params)") !=
        std::string::npos);
  CHECK(src.find("lowbit::quantize_kernel<lowbit_config>(params);") != std::string::npos);
  CHECK(src.find(s.name()) != std::string::npos);  // the readable name in the banner
  // Never a toolkit header.
  CHECK(src.find("cuda_fp16") == std::string::npos);
  CHECK(src.find("<cuda") == std::string::npos);

  s.min_blocks_per_sm = 2;
  s.threads = 128;
  const std::string src2 = lowbit::render_source(s);
  CHECK(src2.find("__launch_bounds__(128, 2)") != std::string::npos);
  CHECK(src2.find("static constexpr int kThreads = 128;") != std::string::npos);

  CHECK(sample_spec().name() == "quantize<XT=float,QT=int8_t,ST=float,kOp=1,kScope=1,kVec=4,kUnroll=4,kQmin=-128,kQmax=127>");
  KernelSpec ns = sample_spec();
  ns.types[0].second = "lowbit::bf16";
  CHECK(ns.name().find("XT=bf16,") != std::string::npos);  // namespace dropped for readability
}

TEST_CASE("jit options: arch, language, ptxas report, then the spec's own options") {
  KernelSpec s = sample_spec();
  s.options = {"-fmad=false", "-DLOWBIT_X=1"};
  bool ptx_only = true;
  const std::vector<std::string> o = lowbit::compile_options(s, target("sm_90a"), &ptx_only);
  CHECK_FALSE(ptx_only);
  REQUIRE(o.size() >= 6);
  CHECK(o.front() == "-arch=sm_90a");
  CHECK(std::find(o.begin(), o.end(), "-std=c++17") != o.end());
  CHECK(std::find(o.begin(), o.end(), "-Xptxas=-v") != o.end());
  CHECK(o[o.size() - 2] == "-fmad=false");
  CHECK(o.back() == "-DLOWBIT_X=1");
  CHECK(lowbit::compile_options(s, target("sm_80"), nullptr).front() == "-arch=sm_80");

  // A GPU newer than this NVRTC knows: PTX for the newest arch it supports.
  const lowbit::NvrtcApi& api = lowbit::nvrtc();
  if (api.available && !api.archs.empty()) {
    const std::vector<std::string> o2 = lowbit::compile_options(s, target("sm_999"), &ptx_only);
    CHECK(ptx_only);
    CHECK(o2.front() == "-arch=compute_" + std::to_string(api.newest_arch()));
  }
}

TEST_CASE("jit key: base_key is stable and changes with every input") {
  const std::string source = lowbit::render_source(sample_spec());
  const std::vector<std::string> options = {"-arch=sm_90a", "-std=c++17", "-default-device", "-Xptxas=-v",
                                            "-fmad=false"};
  const Target t90a = target("sm_90a");
  const lowbit::Digest k = lowbit::base_key(source, options, t90a);
  // Identical input, identical key (also across fresh copies of the input).
  CHECK(lowbit::base_key(std::string(source), std::vector<std::string>(options), target("sm_90a")) == k);

  std::set<std::string> seen{lowbit::to_hex(k)};
  auto distinct = [&](const lowbit::Digest& d, const char* what) {
    CAPTURE(what);
    CHECK(d != k);
    CHECK(seen.insert(lowbit::to_hex(d)).second);  // and different from every other variant
  };
  // Source text: one character anywhere.
  distinct(lowbit::base_key(source + " ", options, t90a), "trailing space");
  std::string edited = source;
  edited[edited.size() / 2] ^= 1;
  distinct(lowbit::base_key(edited, options, t90a), "one bit in the middle");
  // Each option: changed, removed, and the order.
  for (size_t i = 0; i < options.size(); ++i) {
    std::vector<std::string> o = options;
    o[i] += "x";
    distinct(lowbit::base_key(source, o, t90a), ("option changed: " + options[i]).c_str());
    o = options;
    o.erase(o.begin() + long(i));
    distinct(lowbit::base_key(source, o, t90a), ("option removed: " + options[i]).c_str());
  }
  std::vector<std::string> swapped = options;
  std::swap(swapped[1], swapped[2]);
  distinct(lowbit::base_key(source, swapped, t90a), "options reordered");
  std::vector<std::string> added = options;
  added.push_back("-lineinfo");
  distinct(lowbit::base_key(source, added, t90a), "option added");
  // Field boundaries are part of the hash: "-a","b" is not "-ab".
  std::vector<std::string> merged = options;
  merged[3] += merged[4];
  merged.pop_back();
  distinct(lowbit::base_key(source, merged, t90a), "two options merged");
  // Target.
  distinct(lowbit::base_key(source, options, target("sm_90")), "sm_90 vs sm_90a");
  distinct(lowbit::base_key(source, options, target("sm_89")), "sm_89");
  distinct(lowbit::base_key(source, options, target("sm_80")), "sm_80");
}

TEST_CASE("jit key: the embedded templates digest is part of every key") {
  // The key is exactly SHA-256 over (tag, format version, templates digest,
  // source, options, target), so editing a template changes every key.
  const std::string source = lowbit::render_source(sample_spec());
  const Target t = target("sm_90a");
  const std::vector<std::string> options = lowbit::compile_options(sample_spec(), t, nullptr);
  auto recompute = [&](const std::string& digest) {
    lowbit::Sha256 h;
    h.update_field("lowbit-kernel");
    h.update_field(std::to_string(lowbit::kCacheFormatVersion));
    h.update_field(digest);
    h.update_field(source);
    for (const std::string& o : options) h.update_field(o);
    h.update_field(t.name());
    return h.finish();
  };
  const std::string& digest = lowbit::embedded_templates_digest();
  REQUIRE(digest.size() == 64);
  CHECK(lowbit::base_key(source, options, t) == recompute(digest));
  std::string other = digest;
  other[0] = other[0] == '0' ? '1' : '0';
  CHECK(lowbit::base_key(source, options, t) != recompute(other));

  // The digest covers every embedded file's name and bytes: recomputed here,
  // and it changes when any single byte of any template changes.
  auto digest_of = [](const std::vector<std::pair<std::string, std::string>>& files) {
    lowbit::Sha256 h;
    for (const auto& [name, data] : files) {
      h.update_field(name);
      h.update_field(data);
    }
    return lowbit::to_hex(h.finish());
  };
  std::vector<std::pair<std::string, std::string>> files;
  for (const lowbit::EmbeddedFile& f : lowbit::embedded_templates()) files.emplace_back(f.name, std::string(f.data, f.size));
  CHECK(digest_of(files) == digest);
  for (size_t i = 0; i < files.size(); ++i) {
    auto changed = files;
    changed[i].second.back() ^= 0x20;
    CHECK(digest_of(changed) != digest);
  }
  // The digest is computed once and stays the same.
  CHECK(&lowbit::embedded_templates_digest() == &digest);
}

TEST_CASE("jit key: every KernelSpec field reaches the key") {
  const Target t = target("sm_90a");
  const std::string k = key_of(sample_spec(), t);
  CHECK(key_of(sample_spec(), t) == k);
  std::set<std::string> seen{k};
  auto distinct = [&](const KernelSpec& s, const char* what) {
    CAPTURE(what);
    const std::string v = key_of(s, t);
    CHECK(v != k);
    CHECK(seen.insert(v).second);
  };
  KernelSpec s;
  s = sample_spec(); s.header = "quantize2.cuh"; distinct(s, "header");
  s = sample_spec(); s.function = "lowbit::other_kernel"; distinct(s, "function");
  s = sample_spec(); s.params_type = "lowbit::OtherParams"; distinct(s, "params_type");
  s = sample_spec(); s.threads = 128; distinct(s, "threads");
  s = sample_spec(); s.min_blocks_per_sm = 2; distinct(s, "min_blocks_per_sm");
  s = sample_spec(); s.options.push_back("-G"); distinct(s, "options");
  s = sample_spec(); s.options.clear(); distinct(s, "no options");
  for (size_t i = 0; i < sample_spec().types.size(); ++i) {
    s = sample_spec(); s.types[i].second = "double"; distinct(s, ("type " + s.types[i].first).c_str());
  }
  for (size_t i = 0; i < sample_spec().constants.size(); ++i) {
    s = sample_spec(); s.constants[i].second += "0"; distinct(s, ("constant " + s.constants[i].first).c_str());
  }
  CHECK(key_of(sample_spec(), target("sm_90")) != k);
  // family and spills_expected label a spec but do not change the code, so
  // they do not need to be in the key; the name is in the source banner.
}

// ---------------------------------------------------------------------------
// Embedded templates

TEST_CASE("jit embedded: the library carries the current kernel templates") {
  std::map<std::string, std::string> embedded;
  for (const lowbit::EmbeddedFile& f : lowbit::embedded_templates()) {
    CHECK(std::strlen(f.data) == f.size);  // NUL-terminated, no embedded NUL
    CHECK(f.size > 0);
    embedded.emplace(f.name, std::string(f.data, f.size));
  }
  for (const char* name : {"prelude.cuh", "quantize.cuh", "quantize_params.h"}) {
    CAPTURE(name);
    REQUIRE(embedded.count(name) == 1);
    const std::string on_disk = read_text(std::string(LOWBIT_TEST_SOURCE_DIR) + "/kernel_templates/" + name);
    REQUIRE_FALSE(on_disk.empty());
    CHECK(embedded[name] == on_disk);  // a stale build would compile old kernels under new keys
  }
}

// ---------------------------------------------------------------------------
// NVRTC

namespace {

// Compiles every spec for every target (in parallel) and returns one line
// per problem: a compile error, an empty or non-ELF cubin, a missing ptxas
// report, or spills / a stack frame where the spec does not expect them.
std::vector<std::string> compile_all(const std::vector<std::pair<KernelSpec, Target>>& jobs) {
  std::vector<std::string> failures(jobs.size());
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i = next++; i < jobs.size(); i = next++) {
      const KernelSpec& spec = jobs[i].first;
      const Target& t = jobs[i].second;
      const std::string what = spec.name() + " for " + t.name();
      try {
        bool ptx_only = true;
        const std::vector<std::string> options = lowbit::compile_options(spec, t, &ptx_only);
        if (ptx_only) {
          failures[i] = what + ": this NVRTC does not know the arch (PTX only)";
          continue;
        }
        const lowbit::CompileOutput out =
            lowbit::compile_with_nvrtc(lowbit::render_source(spec), spec.name(), options, false);
        if (out.payload.size() < 4 || std::memcmp(out.payload.data(), "\x7f" "ELF", 4) != 0)
          failures[i] = what + ": the cubin is empty or not an ELF image";
        else if (out.report.registers <= 0)
          failures[i] = what + ": no ptxas register report in the log:\n" + out.log;
        else if (out.report.spills() && !spec.spills_expected)
          failures[i] = what + ": ptxas reports spills or a stack frame:\n" + out.log;
      } catch (const lowbit::Error& e) {
        failures[i] = what + ": " + lowbit_status_string(e.status()) + "\n" + e.message();
      }
    }
  };
  std::vector<std::thread> pool;
  const unsigned n = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));
  for (unsigned i = 1; i < n; ++i) pool.emplace_back(worker);
  worker();
  for (std::thread& th : pool) th.join();
  std::vector<std::string> out;
  for (std::string& f : failures)
    if (!f.empty()) out.push_back(std::move(f));
  return out;
}

// The first failures in full (with the ptxas log), then one line for each.
void report(const std::vector<std::string>& failures) {
  for (size_t i = 0; i < failures.size() && i < 3; ++i) FAIL_CHECK(failures[i]);
  if (failures.size() > 3) {
    std::string all;
    for (const std::string& f : failures) all += "  " + f.substr(0, f.find(':')) + "\n";
    FAIL_CHECK(failures.size() << " kernels failed:\n" << all);
  }
  CHECK(failures.size() == 0);
}

}  // namespace

TEST_CASE("jit nvrtc: every per-tensor quantize / dequantize kernel compiles for sm_80, sm_89 and sm_90a without spills") {
  if (!lowbit::nvrtc().available) LOWBIT_SKIP("NVRTC is not available: " + lowbit::nvrtc().problem);
  std::vector<std::pair<KernelSpec, Target>> jobs;
  for (const char* arch : {"sm_80", "sm_89", "sm_90a"}) {
    const Target t = target(arch);
    int valid = 0;
    const std::vector<KernelSpec> specs = library_specs(t, elementwise_sweep(), &valid);
    CAPTURE(arch);
    REQUIRE(valid > 0);

    // The sweep reaches every op / x / q / scale type combination (the
    // vector widths a plan may pick come from the same plan selection).
    std::map<std::string, std::set<int>> widths;
    for (const KernelSpec& s : specs)
      widths[constant(s, "kOp") + "/" + type(s, "XT") + "/" + type(s, "QT") + "/" + type(s, "ST")].insert(
          std::stoi(constant(s, "kVec")));
    for (const char* op : {"1", "2"})
      for (const char* x : {"float", "double", "lowbit::f16", "lowbit::bf16"})
        for (const char* q : {"int8_t", "uint8_t"})
          for (const char* st : {"float", x}) {
            const std::string k = std::string(op) + "/" + x + "/" + q + "/" + st;
            CAPTURE(k);
            CHECK_FALSE(widths[k].empty());
          }
    MESSAGE(specs.size() << " per-tensor quantize / dequantize kernels for " << t.name());
    for (const KernelSpec& s : specs) jobs.emplace_back(s, t);
  }
  report(compile_all(jobs));
}

TEST_CASE("jit nvrtc: every op and scope of the quantize family compiles for sm_90a without spills") {
  if (!lowbit::nvrtc().available) LOWBIT_SKIP("NVRTC is not available: " + lowbit::nvrtc().problem);
  // One representative shape per op / scope, for a 32-bit and a 16-bit x and
  // an 8-bit and a packed 4-bit q (the per-tensor vector widths of every type
  // are covered above, on three architectures). LOWBIT_TEST_ALL_KERNELS=1
  // sweeps every x and q type too (slower: several hundred compiles).
  const char* all = std::getenv("LOWBIT_TEST_ALL_KERNELS");
  const bool everything = all != nullptr && std::string(all) == "1";
  Sweep sw;
  for (int op = LOWBIT_QOP_QUANTIZE; op <= LOWBIT_QOP_DYNAMIC_QUANTIZE; ++op) sw.ops.push_back(op);
  for (int scope = LOWBIT_SCOPE_PER_TENSOR; scope <= LOWBIT_SCOPE_PER_GROUP; ++scope) sw.scopes.push_back(scope);
  sw.xs = everything ? kFloatTypes : std::vector<lowbit_dtype>{LOWBIT_DTYPE_F32, LOWBIT_DTYPE_BF16};
  sw.qs = everything ? std::vector<lowbit_dtype>{LOWBIT_DTYPE_S8, LOWBIT_DTYPE_U8, LOWBIT_DTYPE_S4, LOWBIT_DTYPE_U4}
                     : std::vector<lowbit_dtype>{LOWBIT_DTYPE_S8, LOWBIT_DTYPE_U4};
  sw.scale_as_x = false;
  sw.alignments = {16};
  sw.layouts = {{2, 64, 4096, 0}};
  const Target t = target("sm_90a");
  const std::vector<KernelSpec> specs = library_specs(t, sw);
  // Never fewer than the per-tensor quantize / dequantize kernels alone.
  CHECK(specs.size() >= 2 * sw.xs.size() * sw.qs.size());
  MESSAGE(specs.size() << " quantize-family kernels for sm_90a");
  std::vector<std::pair<KernelSpec, Target>> jobs;
  for (const KernelSpec& s : specs) jobs.emplace_back(s, t);
  report(compile_all(jobs));
}

TEST_CASE("jit nvrtc: a broken source fails with COMPILE_FAILED and the NVRTC log") {
  if (!lowbit::nvrtc().available) LOWBIT_SKIP("NVRTC is not available: " + lowbit::nvrtc().problem);
  const Target t = target("sm_90a");
  const std::vector<std::string> options = lowbit::compile_options(sample_spec(), t, nullptr);

  SUBCASE("a syntax error in the source") {
    const lowbit::Error e = catch_error([&] {
      lowbit::compile_with_nvrtc("extern \"C\" __global__ void k() { this is not cuda; }\n", "broken_kernel", options,
                                 false);
    });
    CHECK(e.status() == LOWBIT_COMPILE_FAILED);
    CAPTURE(e.message());
    CHECK(e.message().find("broken_kernel") != std::string::npos);  // names the kernel
    CHECK(e.message().find("error") != std::string::npos);          // NVRTC's diagnostic
    CHECK(e.message().find("broken_kernel.cu(1)") != std::string::npos);  // with its location
    CHECK(e.message().find("this is not cuda") != std::string::npos);     // and the source
  }
  SUBCASE("a spec naming a type that does not exist, through the kernel cache") {
    KernelSpec s = sample_spec();
    s.types[0].second = "no_such_type";
    lowbit::CacheCounters counters;
    lowbit::Logger logger(nullptr, nullptr, LOWBIT_LOG_ERROR);
    lowbit::KernelCache cache(t, nullptr, nullptr, logger, counters);
    const lowbit::Error e = catch_error([&] { cache.get(s); });
    CHECK(e.status() == LOWBIT_COMPILE_FAILED);
    CHECK(e.message().find("no_such_type") != std::string::npos);
    CHECK(counters.compile_failures == 1);
    CHECK(counters.compiles == 0);
    // A failed build is not cached: the next request compiles (and fails) again.
    CHECK(catch_error([&] { cache.get(s); }).status() == LOWBIT_COMPILE_FAILED);
    CHECK(counters.compile_failures == 2);
    CHECK(counters.memory_hits == 0);
  }
  SUBCASE("an invalid option") {
    const lowbit::Error e = catch_error([&] {
      lowbit::compile_with_nvrtc(lowbit::render_source(sample_spec()), "bad_option", {"-arch=sm_90a", "--no-such-option"},
                                 false);
    });
    CHECK(e.status() == LOWBIT_COMPILE_FAILED);
    CHECK(e.message().find("--no-such-option") != std::string::npos);
  }
}

// ---------------------------------------------------------------------------
// A process without NVRTC. NVRTC is loaded once per process, and this process
// loaded it long ago, so the check runs in a forked child that re-executes
// this binary with LOWBIT_NVRTC_LIBRARY=/nonexistent (set before anything in
// it loads NVRTC): the hook below runs the scenario as doctest starts and
// exits, printing key=value lines on stdout.

namespace {

constexpr const char* kChildVar = "LOWBIT_TEST_CHILD_NO_NVRTC";

lowbit_quantize_desc child_desc(lowbit_dtype x, lowbit_dtype q) {
  lowbit_quantize_desc d;
  lowbit_quantize_desc_init(&d);
  d.x_dtype = x;
  d.q_dtype = q;
  d.dims[0] = 1000;
  return d;
}

std::string one_line(std::string s) {
  std::replace(s.begin(), s.end(), '\n', ' ');
  return s;
}

// The NVRTC options and base key of the kernel(s) a descriptor selects, as
// this process computes them (the key must not depend on NVRTC being there).
std::string options_and_key(const lowbit_quantize_desc& d) {
  lowbit::DeviceTraits traits;
  Target::parse("sm_90a", &traits.target);
  traits.offline = true;
  const lowbit_op_desc op{LOWBIT_FAMILY_QUANTIZE, 0, &d};
  std::string out;
  const std::unique_ptr<lowbit::OpPlan> plan = lowbit::create_op_plan(op, traits);
  for (const KernelSpec& spec : plan->kernels()) {
    const std::vector<std::string> options = lowbit::compile_options(spec, traits.target, nullptr);
    for (const std::string& o : options) out += o + " ";
    out += "key " + lowbit::to_hex(lowbit::base_key(lowbit::render_source(spec), options, traits.target)) + "; ";
  }
  return out;
}

int run_no_nvrtc_child(const char* cache_dir) {
  std::printf("started=1\n");
  lowbit_context_options o;
  lowbit_context_options_init(&o);
  o.cache_dir = cache_dir;
  o.log_level = LOWBIT_LOG_ERROR;
  lowbit_context* ctx = nullptr;
  lowbit_status s = lowbit_context_create_offline("sm_90a", &o, &ctx);
  std::printf("context=%d\n", int(s));
  if (s != LOWBIT_OK) return 0;
  lowbit_device_info info;
  info.struct_size = sizeof(info);
  std::printf("info=%d\nnvrtc_version=%d\n", int(lowbit_context_get_info(ctx, &info)), int(info.nvrtc_version));
  // Cached by the parent: loads without a compiler.
  lowbit_quantize_desc cached = child_desc(LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S8);
  std::printf("cached_key=%s\n", options_and_key(cached).c_str());
  lowbit_plan* plan = nullptr;
  s = lowbit_quantize_plan_create(ctx, &cached, &plan);
  std::printf("cached=%d\ncached_message=%s\n", int(s), one_line(lowbit_last_error_message()).c_str());
  if (plan != nullptr) {
    char buf[8192];
    size_t len = 0;
    lowbit_plan_describe(plan, buf, sizeof(buf), &len);
    std::printf("cached_describe=%s\n", one_line(buf).c_str());
  }
  lowbit_plan_destroy(plan);
  // Not cached: needs NVRTC.
  lowbit_quantize_desc missing = child_desc(LOWBIT_DTYPE_BF16, LOWBIT_DTYPE_U8);
  plan = reinterpret_cast<lowbit_plan*>(0x1);
  s = lowbit_quantize_plan_create(ctx, &missing, &plan);
  std::printf("missing=%d\nmissing_plan_null=%d\nmissing_message=%s\n", int(s), plan == nullptr ? 1 : 0,
              one_line(lowbit_last_error_message()).c_str());
  lowbit_cache_stats st;
  st.struct_size = sizeof(st);
  lowbit_context_cache_stats(ctx, &st);
  std::printf("disk_hits=%llu\nmisses=%llu\ncompiles=%llu\n", (unsigned long long)st.disk_hits,
              (unsigned long long)st.misses, (unsigned long long)st.compiles);
  lowbit_context_destroy(ctx);
  std::printf("done=1\n");
  std::fflush(stdout);
  return 0;
}

// In the re-executed child, runs the scenario when doctest starts (after
// every static object exists, unlike a static initializer) and exits.
struct NoNvrtcChildHook : doctest::IReporter {
  explicit NoNvrtcChildHook(const doctest::ContextOptions&) {}
  void test_run_start() override {
    const char* dir = std::getenv(kChildVar);
    if (dir == nullptr || *dir == '\0') return;
    std::fflush(stdout);
    const int rc = run_no_nvrtc_child(dir);
    std::fflush(stdout);
    std::_Exit(rc);
  }
  void report_query(const doctest::QueryData&) override {}
  void test_run_end(const doctest::TestRunStats&) override {}
  void test_case_start(const doctest::TestCaseData&) override {}
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override {}
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};
REGISTER_LISTENER("lowbit_no_nvrtc_child", 100, NoNvrtcChildHook);

// Runs this binary again as a child without NVRTC; returns its key=value output.
std::map<std::string, std::string> run_child_without_nvrtc(const std::string& cache_dir, int* exit_status) {
  lowbit::test::ChildRun r = lowbit::test::run_self(
      {"LOWBIT_NVRTC_LIBRARY=/nonexistent/libnvrtc.so.13", std::string(kChildVar) + "=" + cache_dir},
      {kChildVar, "LOWBIT_CACHE_PATH", "LOWBIT_LOG"});
  *exit_status = r.status;
  return r.values;
}

}  // namespace

TEST_CASE("jit nvrtc: without NVRTC a cache miss is NO_COMPILER and a cached kernel still loads") {
  if (!lowbit::nvrtc().available) LOWBIT_SKIP("NVRTC is not available: " + lowbit::nvrtc().problem);
  lowbit::test::TempDir tmp;
  const std::string cache = tmp / "cache";
  {
    // Prepare the cache in this process (which has NVRTC).
    lowbit_context_options o;
    lowbit_context_options_init(&o);
    o.cache_dir = cache.c_str();
    lowbit_context* ctx = nullptr;
    REQUIRE(lowbit_context_create_offline("sm_90a", &o, &ctx) == LOWBIT_OK);
    lowbit_quantize_desc d = child_desc(LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S8);
    lowbit_plan* plan = nullptr;
    REQUIRE(lowbit_quantize_plan_create(ctx, &d, &plan) == LOWBIT_OK);
    lowbit_plan_destroy(plan);
    lowbit_context_destroy(ctx);
    REQUIRE(lowbit::test::list_files(cache, ".lbk").size() == 1);
  }
  int status = 0;
  std::map<std::string, std::string> r = run_child_without_nvrtc(cache, &status);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  REQUIRE(r["started"] == "1");
  CHECK(r["done"] == "1");
  CHECK(r["context"] == "0");
  CHECK(r["info"] == "0");
  CHECK(r["nvrtc_version"] == "0");  // the child really has no NVRTC
  // Same options and base key with and without NVRTC (else nothing cached
  // can ever be found by a process without a compiler).
  CHECK(r["cached_key"] == options_and_key(child_desc(LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S8)));
  CAPTURE(r["cached_message"]);
  CHECK(r["cached"] == std::to_string(LOWBIT_OK));
  CHECK(r["cached_describe"].find("\"cache\":\"disk\"") != std::string::npos);
  CHECK(r["missing"] == std::to_string(LOWBIT_NO_COMPILER));
  CHECK(r["missing_plan_null"] == "1");
  CAPTURE(r["missing_message"]);
  CHECK(r["missing_message"].find("NVRTC") != std::string::npos);
  CHECK(r["missing_message"].find("/nonexistent/libnvrtc.so.13") != std::string::npos);  // what it tried
  CHECK(r["missing_message"].find("quantize<") != std::string::npos);                     // which kernel
  CHECK(r["disk_hits"] == "1");
  CHECK(r["misses"] == "1");
  CHECK(r["compiles"] == "0");
  // The child neither compiled nor wrote anything.
  CHECK(lowbit::test::list_files(cache, ".lbk").size() == 1);
}
