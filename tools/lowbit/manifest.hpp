// Prewarm manifests: the kernel requests `lowbit prewarm` compiles.
//
// Format (UTF-8 or plain ASCII text):
//   - one kernel request per line; lines end with "\n" (a "\r" before it is
//     ignored);
//   - "#" starts a comment that runs to the end of the line; blank lines and
//     comment-only lines are ignored;
//   - a request is a family name followed by key=value tokens, separated by
//     spaces or tabs, e.g.
//       quantize op=quantize scope=per_tensor x=bf16 q=s8 scale=f32 dims=4096x4096
//     Each key may appear once; omitted keys keep the family's descriptor
//     defaults (for quantize: lowbit_quantize_desc_init).
//
// Family "quantize" (lowbit_quantize_desc), keys (long aliases in brackets):
//   op         quantize | dequantize | quantize_backward | dequantize_backward |
//              fake_quantize | fake_quantize_backward | dynamic_quantize
//   scope      per_tensor | per_channel | per_token | per_group
//   x [x_dtype], q [q_dtype], scale [scale_dtype]
//              f32 | f64 | f16 | bf16 | s8 | u8 | s4 | u4 | s32
//   dims       1 to 4 sizes joined by "x", e.g. 4096x14336 (sets rank too)
//   stride [x_row_stride]   int64      axis               int32
//   group  [group_size]     int64      qmin, qmax         int32
//   align  [alignment]      int32      symmetric          0 | 1
// The parser checks syntax and that every value fits its field; whether the
// problem makes sense (qmin <= qmax, a supported combination...) is left to
// the library, which reports it when the plan is created.
//
// The parser never crashes on arbitrary bytes (it is fuzzed): malformed input
// gives false and a message naming the line number and the offending token.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "lowbit/lowbit.h"

namespace lowbit::cli {

// One parsed request. Owns its family's descriptor.
struct ManifestItem {
  size_t line = 0;   // 1-based line number in the manifest text
  std::string text;  // the request as written (comment and outer spaces removed)
  std::variant<lowbit_quantize_desc> desc;

  // The descriptor as a lowbit_op_desc. It points into this item: valid while
  // the item is neither moved nor destroyed.
  lowbit_op_desc op() const;
  // Family name ("quantize").
  const char* family_name() const;
};

// Parses a whole manifest. On success, appends the items to *out and returns
// true. On the first malformed line, returns false with *error set to e.g.
// "line 3: token 'x=bf17': unknown dtype 'bf17' (expected f32, ...)"; *out is
// left unchanged then. `out` and `error` may not be null.
bool parse_manifest(std::string_view text, std::vector<ManifestItem>* out, std::string* error);

// Writes an item back as one canonical manifest line (every key spelled out).
std::string format_manifest_item(const ManifestItem& item);

// The built-in default manifest (default_manifest.cpp), as manifest text.
std::string default_manifest_text();

}  // namespace lowbit::cli
