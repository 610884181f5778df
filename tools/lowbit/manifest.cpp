#include "manifest.hpp"

#include <charconv>
#include <cstdint>
#include <limits>
#include <system_error>

#include <fmt/format.h>

namespace lowbit::cli {

namespace {

// ---------------------------------------------------------------------------
// Text helpers. Everything works on string_views into the caller's text with
// explicit bounds: no byte sequence can read outside it.

// A token as it may be shown in a message: printable ASCII kept, other bytes
// escaped, long tokens cut.
std::string show(std::string_view token) {
  constexpr size_t kMaxShown = 60;
  std::string out;
  for (size_t i = 0; i < token.size() && i < kMaxShown; ++i) {
    const unsigned char c = static_cast<unsigned char>(token[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') out += char(c);
    else if (c == '\\') out += "\\\\";
    else out += fmt::format("\\x{:02x}", c);
  }
  if (token.size() > kMaxShown) out += "...";
  return out;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r'; }

std::vector<std::string_view> split_tokens(std::string_view line) {
  std::vector<std::string_view> tokens;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && is_space(line[i])) ++i;
    const size_t start = i;
    while (i < line.size() && !is_space(line[i])) ++i;
    if (i > start) tokens.push_back(line.substr(start, i - start));
  }
  return tokens;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// A decimal integer of type T: optional '-' (signed types), digits, nothing
// else. Out-of-range values are an error, never wrapped.
template <typename T>
bool parse_int(std::string_view s, T* out, std::string* why) {
  if (s.empty()) {
    *why = "empty number";
    return false;
  }
  T v{};
  const char* end = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(s.data(), end, v, 10);
  if (ec == std::errc::result_out_of_range) {
    *why = fmt::format("'{}' is out of range [{}, {}]", show(s), std::numeric_limits<T>::min(),
                       std::numeric_limits<T>::max());
    return false;
  }
  if (ec != std::errc() || ptr != end) {
    *why = fmt::format("'{}' is not a decimal integer", show(s));
    return false;
  }
  *out = v;
  return true;
}

// ---------------------------------------------------------------------------
// Enumerations by name.

struct Named {
  const char* name;
  int32_t value;
};

constexpr Named kDtypes[] = {
    {"f32", LOWBIT_DTYPE_F32}, {"f64", LOWBIT_DTYPE_F64}, {"f16", LOWBIT_DTYPE_F16},
    {"bf16", LOWBIT_DTYPE_BF16}, {"s8", LOWBIT_DTYPE_S8},   {"u8", LOWBIT_DTYPE_U8},
    {"s4", LOWBIT_DTYPE_S4},   {"u4", LOWBIT_DTYPE_U4},   {"s32", LOWBIT_DTYPE_S32},
};

constexpr Named kQuantizeOps[] = {
    {"quantize", LOWBIT_QOP_QUANTIZE},
    {"dequantize", LOWBIT_QOP_DEQUANTIZE},
    {"quantize_backward", LOWBIT_QOP_QUANTIZE_BACKWARD},
    {"dequantize_backward", LOWBIT_QOP_DEQUANTIZE_BACKWARD},
    {"fake_quantize", LOWBIT_QOP_FAKE_QUANTIZE},
    {"fake_quantize_backward", LOWBIT_QOP_FAKE_QUANTIZE_BACKWARD},
    {"dynamic_quantize", LOWBIT_QOP_DYNAMIC_QUANTIZE},
};

constexpr Named kScopes[] = {
    {"per_tensor", LOWBIT_SCOPE_PER_TENSOR},
    {"per_channel", LOWBIT_SCOPE_PER_CHANNEL},
    {"per_token", LOWBIT_SCOPE_PER_TOKEN},
    {"per_group", LOWBIT_SCOPE_PER_GROUP},
};

template <size_t N>
bool parse_named(std::string_view s, const Named (&table)[N], const char* what, int32_t* out, std::string* why) {
  for (const Named& n : table)
    if (s == n.name) {
      *out = n.value;
      return true;
    }
  std::string expected;
  for (const Named& n : table) expected += fmt::format("{}{}", expected.empty() ? "" : ", ", n.name);
  *why = fmt::format("unknown {} '{}' (expected {})", what, show(s), expected);
  return false;
}

template <size_t N>
std::string name_of(int32_t value, const Named (&table)[N]) {
  for (const Named& n : table)
    if (n.value == value) return n.name;
  return std::to_string(value);  // not writable by the parser: shows the raw value
}

// "4096x14336": 1..4 non-negative int64 sizes. Sets rank and dims.
bool parse_dims(std::string_view s, lowbit_quantize_desc* d, std::string* why) {
  int64_t dims[4] = {0, 0, 0, 0};
  int rank = 0;
  while (true) {
    const size_t x = s.find('x');
    const std::string_view part = s.substr(0, x);
    if (rank == 4) {
      *why = "more than 4 dims";
      return false;
    }
    if (!parse_int(part, &dims[rank], why)) {
      *why = "dims: " + *why + " (expected sizes like 4096x14336)";
      return false;
    }
    if (dims[rank] < 0) {
      *why = fmt::format("dims: size {} is negative", dims[rank]);
      return false;
    }
    ++rank;
    if (x == std::string_view::npos) break;
    s.remove_prefix(x + 1);
  }
  d->rank = rank;
  for (int i = 0; i < 4; ++i) d->dims[i] = dims[i];
  return true;
}

// ---------------------------------------------------------------------------
// Family "quantize".

struct QuantizeKey {
  const char* name;
  const char* alias;  // long form, the descriptor field's name
  bool (*apply)(std::string_view value, lowbit_quantize_desc* d, std::string* why);
};

constexpr QuantizeKey kQuantizeKeys[] = {
    {"op", "op", [](std::string_view v, lowbit_quantize_desc* d, std::string* w) {
       return parse_named(v, kQuantizeOps, "op", &d->op, w);
     }},
    {"scope", "scope", [](std::string_view v, lowbit_quantize_desc* d, std::string* w) {
       return parse_named(v, kScopes, "scope", &d->scope, w);
     }},
    {"x", "x_dtype", [](std::string_view v, lowbit_quantize_desc* d, std::string* w) {
       return parse_named(v, kDtypes, "dtype", &d->x_dtype, w);
     }},
    {"q", "q_dtype", [](std::string_view v, lowbit_quantize_desc* d, std::string* w) {
       return parse_named(v, kDtypes, "dtype", &d->q_dtype, w);
     }},
    {"scale", "scale_dtype", [](std::string_view v, lowbit_quantize_desc* d, std::string* w) {
       return parse_named(v, kDtypes, "dtype", &d->scale_dtype, w);
     }},
    {"dims", "dims", [](std::string_view v, lowbit_quantize_desc* d, std::string* w) { return parse_dims(v, d, w); }},
    {"stride", "x_row_stride", [](std::string_view v, lowbit_quantize_desc* d, std::string* w) {
       return parse_int(v, &d->x_row_stride, w);
     }},
    {"axis", "axis", [](std::string_view v, lowbit_quantize_desc* d, std::string* w) {
       return parse_int(v, &d->axis, w);
     }},
    {"group", "group_size", [](std::string_view v, lowbit_quantize_desc* d, std::string* w) {
       return parse_int(v, &d->group_size, w);
     }},
    {"qmin", "qmin", [](std::string_view v, lowbit_quantize_desc* d, std::string* w) {
       return parse_int(v, &d->qmin, w);
     }},
    {"qmax", "qmax", [](std::string_view v, lowbit_quantize_desc* d, std::string* w) {
       return parse_int(v, &d->qmax, w);
     }},
    {"align", "alignment", [](std::string_view v, lowbit_quantize_desc* d, std::string* w) {
       return parse_int(v, &d->alignment, w);
     }},
    {"symmetric", "symmetric", [](std::string_view v, lowbit_quantize_desc* d, std::string* w) {
       if (v != "0" && v != "1") {
         *w = fmt::format("symmetric must be 0 or 1, not '{}'", show(v));
         return false;
       }
       d->symmetric = v == "1" ? 1 : 0;
       return true;
     }},
};
static_assert(std::size(kQuantizeKeys) <= 32, "the seen-mask below is 32 bits");

// Parses the key=value tokens of one quantize request (tokens[0] is the
// family name). Returns "" or the message, without the "line N: " prefix.
std::string parse_quantize(const std::vector<std::string_view>& tokens, ManifestItem* item) {
  lowbit_quantize_desc d;
  lowbit_quantize_desc_init(&d);
  uint32_t seen = 0;
  for (size_t t = 1; t < tokens.size(); ++t) {
    const std::string_view token = tokens[t];
    const size_t eq = token.find('=');
    if (eq == std::string_view::npos || eq == 0)
      return fmt::format("token '{}': expected key=value", show(token));
    const std::string_view key = token.substr(0, eq);
    const std::string_view value = token.substr(eq + 1);
    size_t k = 0;
    while (k < std::size(kQuantizeKeys) && key != kQuantizeKeys[k].name && key != kQuantizeKeys[k].alias) ++k;
    if (k == std::size(kQuantizeKeys)) {
      std::string expected;
      for (const QuantizeKey& q : kQuantizeKeys) expected += fmt::format("{}{}", expected.empty() ? "" : ", ", q.name);
      return fmt::format("token '{}': unknown key '{}' for family quantize (expected {})", show(token), show(key),
                         expected);
    }
    if ((seen >> k) & 1u) return fmt::format("token '{}': key '{}' given twice", show(token), kQuantizeKeys[k].name);
    seen |= 1u << k;
    if (value.empty()) return fmt::format("token '{}': empty value", show(token));
    std::string why;
    if (!kQuantizeKeys[k].apply(value, &d, &why)) return fmt::format("token '{}': {}", show(token), why);
  }
  item->desc = d;
  return "";
}

std::string format_quantize(const lowbit_quantize_desc& d) {
  std::string dims;
  const int rank = d.rank >= 1 && d.rank <= 4 ? d.rank : 1;
  for (int i = 0; i < rank; ++i) dims += fmt::format("{}{}", i ? "x" : "", d.dims[i]);
  return fmt::format(
      "quantize op={} scope={} x={} q={} scale={} dims={} stride={} axis={} group={} qmin={} qmax={} align={} "
      "symmetric={}",
      name_of(d.op, kQuantizeOps), name_of(d.scope, kScopes), name_of(d.x_dtype, kDtypes), name_of(d.q_dtype, kDtypes),
      name_of(d.scale_dtype, kDtypes), dims, d.x_row_stride, d.axis, d.group_size, d.qmin, d.qmax, d.alignment,
      d.symmetric);
}

// ---------------------------------------------------------------------------
// Families: one line each.

struct Family {
  const char* name;
  std::string (*parse)(const std::vector<std::string_view>& tokens, ManifestItem* item);
};

constexpr Family kFamilies[] = {
    {"quantize", &parse_quantize},
};

}  // namespace

lowbit_op_desc ManifestItem::op() const {
  struct Visitor {
    lowbit_op_desc operator()(const lowbit_quantize_desc& d) const { return {LOWBIT_FAMILY_QUANTIZE, 0, &d}; }
  };
  return std::visit(Visitor{}, desc);
}

const char* ManifestItem::family_name() const {
  struct Visitor {
    const char* operator()(const lowbit_quantize_desc&) const { return "quantize"; }
  };
  return std::visit(Visitor{}, desc);
}

std::string format_manifest_item(const ManifestItem& item) {
  struct Visitor {
    std::string operator()(const lowbit_quantize_desc& d) const { return format_quantize(d); }
  };
  return std::visit(Visitor{}, item.desc);
}

bool parse_manifest(std::string_view text, std::vector<ManifestItem>* out, std::string* error) {
  std::vector<ManifestItem> items;
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (const size_t hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    line = trim(line);
    const std::vector<std::string_view> tokens = split_tokens(line);
    if (tokens.empty()) continue;

    const Family* family = nullptr;
    for (const Family& f : kFamilies)
      if (tokens[0] == f.name) family = &f;
    if (family == nullptr) {
      std::string expected;
      for (const Family& f : kFamilies) expected += fmt::format("{}{}", expected.empty() ? "" : ", ", f.name);
      *error = fmt::format("line {}: token '{}': unknown op family (expected {})", line_no, show(tokens[0]), expected);
      return false;
    }
    ManifestItem item;
    item.line = line_no;
    item.text = std::string(line);
    if (std::string why = family->parse(tokens, &item); !why.empty()) {
      *error = fmt::format("line {}: {}", line_no, why);
      return false;
    }
    items.push_back(std::move(item));
  }
  for (ManifestItem& item : items) out->push_back(std::move(item));
  return true;
}

}  // namespace lowbit::cli
