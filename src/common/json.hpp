// A minimal JSON writer (describe, cache metadata) and a reader of top-level
// scalar fields from JSON that lowbit itself wrote.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace lowbit {

std::string json_escape(std::string_view s);  // with the surrounding quotes

// Builds one JSON object: {"a":1,"b":"x",...}. Values may be nested objects
// through raw().
class JsonObject {
 public:
  JsonObject& add(std::string_view key, std::string_view value);
  JsonObject& add(std::string_view key, const char* value) { return add(key, std::string_view(value)); }
  JsonObject& add(std::string_view key, const std::string& value) { return add(key, std::string_view(value)); }
  JsonObject& add(std::string_view key, int64_t value);
  JsonObject& add(std::string_view key, int32_t value) { return add(key, int64_t(value)); }
  JsonObject& add(std::string_view key, uint64_t value);
  JsonObject& add(std::string_view key, double value);
  JsonObject& add(std::string_view key, bool value);
  JsonObject& raw(std::string_view key, std::string_view json);  // value already JSON
  std::string str() const { return body_ + "}"; }

 private:
  void key(std::string_view k);
  std::string body_ = "{";
};

// Reads a top-level field of a flat JSON object written by JsonObject:
// a number (as int64) or a string (unescaped). nullopt if absent.
std::optional<int64_t> json_get_int(std::string_view json, std::string_view key);
std::optional<std::string> json_get_string(std::string_view json, std::string_view key);

}  // namespace lowbit
