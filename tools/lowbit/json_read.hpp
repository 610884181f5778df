// A small JSON reader for what the library hands the CLI: plan descriptions
// (lowbit_plan_describe) and cache-entry metadata. Complete enough for any
// JSON text, bounded in nesting depth, never reads outside its input.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lowbit::cli {

struct JsonValue {
  enum class Type { Null, Bool, Number, String, Array, Object };
  Type type = Type::Null;
  bool boolean = false;
  double number = 0;
  std::string string;
  std::vector<JsonValue> items;                             // Array
  std::vector<std::pair<std::string, JsonValue>> members;   // Object, in order

  // The member `key` of an object, or nullptr.
  const JsonValue* get(std::string_view key) const;
  // The string member `key`, or `fallback` if absent or not a string.
  std::string get_string(std::string_view key, std::string_view fallback = "") const;
};

// Parses one JSON value (surrounding whitespace allowed). False with *error
// set on malformed input.
bool parse_json(std::string_view text, JsonValue* out, std::string* error);

}  // namespace lowbit::cli
