#include "json_read.hpp"

#include <cstdlib>

#include <fmt/format.h>

namespace lowbit::cli {

const JsonValue* JsonValue::get(std::string_view key) const {
  if (type != Type::Object) return nullptr;
  for (const auto& [k, v] : members)
    if (k == key) return &v;
  return nullptr;
}

std::string JsonValue::get_string(std::string_view key, std::string_view fallback) const {
  const JsonValue* v = get(key);
  return v != nullptr && v->type == Type::String ? v->string : std::string(fallback);
}

namespace {

constexpr int kMaxDepth = 64;

class Parser {
 public:
  explicit Parser(std::string_view text) : s_(text) {}

  bool document(JsonValue* out, std::string* error) {
    bool ok = value(out, 0);
    if (ok) {
      space();
      if (i_ != s_.size()) ok = fail("trailing characters");
    }
    if (!ok) *error = fmt::format("offset {}: {}", i_, why_);
    return ok;
  }

 private:
  bool fail(const char* why) {
    why_ = why;
    return false;
  }
  void space() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  bool literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) return fail("invalid literal");
    i_ += word.size();
    return true;
  }

  bool value(JsonValue* out, int depth) {
    if (depth > kMaxDepth) return fail("nested too deeply");
    space();
    if (i_ >= s_.size()) return fail("unexpected end");
    const char c = s_[i_];
    if (c == '{') return object(out, depth);
    if (c == '[') return array(out, depth);
    if (c == '"') {
      out->type = JsonValue::Type::String;
      return string(&out->string);
    }
    if (c == 't' || c == 'f') {
      out->type = JsonValue::Type::Bool;
      out->boolean = c == 't';
      return literal(c == 't' ? "true" : "false");
    }
    if (c == 'n') {
      out->type = JsonValue::Type::Null;
      return literal("null");
    }
    return number(out);
  }

  bool number(JsonValue* out) {
    const size_t start = i_;
    while (i_ < s_.size() && std::string_view("+-0123456789.eE").find(s_[i_]) != std::string_view::npos) ++i_;
    if (i_ == start) return fail("unexpected character");
    const std::string digits(s_.substr(start, i_ - start));
    char* end = nullptr;
    out->type = JsonValue::Type::Number;
    out->number = std::strtod(digits.c_str(), &end);
    if (end != digits.c_str() + digits.size()) return fail("malformed number");
    return true;
  }

  bool hex4(uint32_t* out) {
    if (s_.size() - i_ < 4) return fail("truncated \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = s_[i_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= uint32_t(c - '0');
      else if (c >= 'a' && c <= 'f') v |= uint32_t(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= uint32_t(c - 'A' + 10);
      else return fail("bad \\u escape");
    }
    *out = v;
    return true;
  }

  static void append_utf8(std::string* s, uint32_t cp) {
    if (cp < 0x80) {
      *s += char(cp);
    } else if (cp < 0x800) {
      *s += char(0xc0 | (cp >> 6));
      *s += char(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      *s += char(0xe0 | (cp >> 12));
      *s += char(0x80 | ((cp >> 6) & 0x3f));
      *s += char(0x80 | (cp & 0x3f));
    } else {
      *s += char(0xf0 | (cp >> 18));
      *s += char(0x80 | ((cp >> 12) & 0x3f));
      *s += char(0x80 | ((cp >> 6) & 0x3f));
      *s += char(0x80 | (cp & 0x3f));
    }
  }

  bool string(std::string* out) {
    ++i_;  // opening quote
    while (true) {
      if (i_ >= s_.size()) return fail("unterminated string");
      const char c = s_[i_++];
      if (c == '"') return true;
      if (c != '\\') {
        *out += c;
        continue;
      }
      if (i_ >= s_.size()) return fail("unterminated escape");
      const char e = s_[i_++];
      switch (e) {
        case '"': case '\\': case '/': *out += e; break;
        case 'b': *out += '\b'; break;
        case 'f': *out += '\f'; break;
        case 'n': *out += '\n'; break;
        case 'r': *out += '\r'; break;
        case 't': *out += '\t'; break;
        case 'u': {
          uint32_t cp = 0;
          if (!hex4(&cp)) return false;
          if (cp >= 0xd800 && cp < 0xdc00 && s_.substr(i_, 2) == "\\u") {
            i_ += 2;
            uint32_t lo = 0;
            if (!hex4(&lo)) return false;
            if (lo >= 0xdc00 && lo < 0xe000) cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          }
          append_utf8(out, cp);
          break;
        }
        default: return fail("bad escape");
      }
    }
  }

  bool array(JsonValue* out, int depth) {
    out->type = JsonValue::Type::Array;
    ++i_;
    space();
    if (i_ < s_.size() && s_[i_] == ']') {
      ++i_;
      return true;
    }
    while (true) {
      out->items.emplace_back();
      if (!value(&out->items.back(), depth + 1)) return false;
      space();
      if (i_ >= s_.size()) return fail("unterminated array");
      const char c = s_[i_++];
      if (c == ']') return true;
      if (c != ',') return fail("expected , or ]");
    }
  }

  bool object(JsonValue* out, int depth) {
    out->type = JsonValue::Type::Object;
    ++i_;
    space();
    if (i_ < s_.size() && s_[i_] == '}') {
      ++i_;
      return true;
    }
    while (true) {
      space();
      if (i_ >= s_.size() || s_[i_] != '"') return fail("expected a member name");
      std::string key;
      if (!string(&key)) return false;
      space();
      if (i_ >= s_.size() || s_[i_] != ':') return fail("expected :");
      ++i_;
      JsonValue v;
      if (!value(&v, depth + 1)) return false;
      out->members.emplace_back(std::move(key), std::move(v));
      space();
      if (i_ >= s_.size()) return fail("unterminated object");
      const char c = s_[i_++];
      if (c == '}') return true;
      if (c != ',') return fail("expected , or }");
    }
  }

  std::string_view s_;
  size_t i_ = 0;
  const char* why_ = "";
};

}  // namespace

bool parse_json(std::string_view text, JsonValue* out, std::string* error) {
  JsonValue v;
  Parser p(text);
  if (!p.document(&v, error)) return false;
  *out = std::move(v);
  return true;
}

}  // namespace lowbit::cli
