// libFuzzer target: the CLI's prewarm manifest parser (tools/lowbit/manifest.hpp).
//
// The input is manifest text, as is. Properties checked (a violation aborts):
//   - parse_manifest never crashes or reads outside the text (the text lives
//     in an exactly sized heap block);
//   - on failure: *out untouched, a message starting "line N: " with N within
//     the text's line count;
//   - on success: every item formats to a canonical line that parses back to
//     the same descriptor, and formatting that is a fixed point;
//   - every parsed descriptor goes through the library's validation
//     (create_op_plan, no compile) without crashing.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/error.hpp"
#include "jit/target.hpp"
#include "lowbit/lowbit.h"
#include "manifest.hpp"
#include "ops/op_plan.hpp"

namespace {

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "fuzz_manifest: %s\n", what.c_str());
  std::abort();
}

bool same_desc(const lowbit_quantize_desc& a, const lowbit_quantize_desc& b) {
  if (a.struct_size != b.struct_size || a.op != b.op || a.scope != b.scope || a.x_dtype != b.x_dtype ||
      a.q_dtype != b.q_dtype || a.scale_dtype != b.scale_dtype || a.rank != b.rank ||
      a.x_row_stride != b.x_row_stride || a.axis != b.axis || a.group_size != b.group_size || a.qmin != b.qmin ||
      a.qmax != b.qmax || a.symmetric != b.symmetric || a.alignment != b.alignment)
    return false;
  for (int i = 0; i < 4; ++i)
    if (a.dims[i] != b.dims[i]) return false;
  return true;
}

bool same_item(const lowbit::cli::ManifestItem& a, const lowbit::cli::ManifestItem& b) {
  if (a.desc.index() != b.desc.index()) return false;
  if (const auto* qa = std::get_if<lowbit_quantize_desc>(&a.desc))
    return same_desc(*qa, std::get<lowbit_quantize_desc>(b.desc));
  return true;  // a family this target does not know field by field yet: format fixed point only
}

const lowbit::DeviceTraits& traits() {
  static const lowbit::DeviceTraits t = [] {
    lowbit::DeviceTraits d;
    lowbit::Target::parse("sm_90a", &d.target);
    d.offline = true;
    return d;
  }();
  return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::unique_ptr<char[]> exact(new char[size + (size == 0 ? 1 : 0)]);
  if (size > 0) std::memcpy(exact.get(), data, size);
  const std::string_view text(exact.get(), size);
  size_t lines = 1;
  for (char c : text) lines += c == '\n' ? 1 : 0;

  std::vector<lowbit::cli::ManifestItem> items;
  items.emplace_back();  // a sentinel: failures must leave *out unchanged
  std::string error;
  const bool ok = lowbit::cli::parse_manifest(text, &items, &error);
  if (!ok) {
    if (items.size() != 1) die("a failed parse changed *out");
    if (error.rfind("line ", 0) != 0) die("error without a line number: " + error);
    const size_t n = std::strtoul(error.c_str() + 5, nullptr, 10);
    if (n < 1 || n > lines) die("error names line " + std::to_string(n) + " of " + std::to_string(lines) + ": " + error);
    return 0;
  }
  items.erase(items.begin());
  for (const lowbit::cli::ManifestItem& item : items) {
    if (item.line < 1 || item.line > lines) die("item line number out of range");
    const std::string line = lowbit::cli::format_manifest_item(item);
    std::vector<lowbit::cli::ManifestItem> again;
    std::string why;
    if (!lowbit::cli::parse_manifest(line, &again, &why))
      die("the canonical line does not parse back: '" + line + "': " + why);
    if (again.size() != 1) die("the canonical line parses to " + std::to_string(again.size()) + " items: " + line);
    if (!same_item(item, again[0])) die("the canonical line parses to another descriptor: " + line);
    if (lowbit::cli::format_manifest_item(again[0]) != line) die("formatting is not a fixed point: " + line);
    (void)item.family_name();
    try {
      (void)lowbit::create_op_plan(item.op(), traits());
    } catch (const lowbit::Error&) {
      // A syntactically valid request may still be an invalid problem.
    }
  }
  return 0;
}
