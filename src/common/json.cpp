#include "common/json.hpp"

#include <cstdlib>

#include <fmt/format.h>

namespace lowbit {

std::string json_escape(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) out += fmt::format("\\u{:04x}", c);
        else out += char(c);
    }
  }
  return out + "\"";
}

void JsonObject::key(std::string_view k) {
  if (body_.size() > 1) body_ += ",";
  body_ += json_escape(k);
  body_ += ":";
}

JsonObject& JsonObject::add(std::string_view k, std::string_view value) {
  key(k);
  body_ += json_escape(value);
  return *this;
}
JsonObject& JsonObject::add(std::string_view k, int64_t value) {
  key(k);
  body_ += fmt::format("{}", value);
  return *this;
}
JsonObject& JsonObject::add(std::string_view k, uint64_t value) {
  key(k);
  body_ += fmt::format("{}", value);
  return *this;
}
JsonObject& JsonObject::add(std::string_view k, double value) {
  key(k);
  body_ += fmt::format("{:.6g}", value);
  return *this;
}
JsonObject& JsonObject::add(std::string_view k, bool value) {
  key(k);
  body_ += value ? "true" : "false";
  return *this;
}
JsonObject& JsonObject::raw(std::string_view k, std::string_view json) {
  key(k);
  body_ += json;
  return *this;
}

namespace {

// Position just after `"key":` at nesting depth 1, or npos.
size_t find_value(std::string_view json, std::string_view key) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < json.size(); ++i) {
    char c = json[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '{' || c == '[') ++depth;
    else if (c == '}' || c == ']') --depth;
    else if (c == '"') {
      if (depth == 1 && json.substr(i + 1, key.size()) == key && i + 1 + key.size() + 1 < json.size() &&
          json[i + 1 + key.size()] == '"' && json[i + 2 + key.size()] == ':')
        return i + 3 + key.size();
      in_string = true;
    }
  }
  return std::string_view::npos;
}

}  // namespace

std::optional<int64_t> json_get_int(std::string_view json, std::string_view key) {
  size_t pos = find_value(json, key);
  if (pos == std::string_view::npos || pos >= json.size()) return std::nullopt;
  std::string digits;
  for (size_t i = pos; i < json.size() && (json[i] == '-' || (json[i] >= '0' && json[i] <= '9')); ++i)
    digits += json[i];
  if (digits.empty() || digits == "-") return std::nullopt;
  return std::strtoll(digits.c_str(), nullptr, 10);
}

std::optional<std::string> json_get_string(std::string_view json, std::string_view key) {
  size_t pos = find_value(json, key);
  if (pos == std::string_view::npos || pos >= json.size() || json[pos] != '"') return std::nullopt;
  std::string out;
  for (size_t i = pos + 1; i < json.size(); ++i) {
    char c = json[i];
    if (c == '"') return out;
    if (c == '\\' && i + 1 < json.size()) {
      char e = json[++i];
      if (e == 'n') out += '\n';
      else if (e == 't') out += '\t';
      else if (e == 'r') out += '\r';
      else if (e == 'u' && i + 4 < json.size()) {
        out += char(std::strtol(std::string(json.substr(i + 1, 4)).c_str(), nullptr, 16));
        i += 4;
      } else out += e;
    } else {
      out += c;
    }
  }
  return std::nullopt;
}

}  // namespace lowbit
