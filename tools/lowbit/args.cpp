#include "args.hpp"

#include <charconv>
#include <cstdint>
#include <system_error>

#include <fmt/format.h>

namespace lowbit::cli {

bool Args::flag(std::string_view name) {
  if (done() || current() != name) return false;
  ++i_;
  return true;
}

bool Args::option(std::string_view name, std::string* value) {
  if (done()) return false;
  const std::string& a = current();
  if (a == name) {
    ++i_;
    if (done()) {
      error_ = fmt::format("option {} needs a value", name);
      return true;
    }
    *value = args_[i_++];
    return true;
  }
  if (a.size() > name.size() && a.compare(0, name.size(), name) == 0) {
    const bool is_long = name.size() > 2 && name[1] == '-';
    if (is_long && a[name.size()] == '=') {
      *value = a.substr(name.size() + 1);
      ++i_;
      return true;
    }
    if (!is_long && name.size() == 2) {  // "-j4"
      *value = a.substr(2);
      ++i_;
      return true;
    }
  }
  return false;
}

bool Args::at_option() const { return !done() && current().size() > 1 && current()[0] == '-'; }

bool parse_uint(std::string_view text, uint64_t min, uint64_t max, uint64_t* out) {
  uint64_t v = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, v, 10);
  if (text.empty() || ec != std::errc() || ptr != end || v < min || v > max) return false;
  *out = v;
  return true;
}

bool parse_size(std::string_view text, uint64_t* out) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  uint64_t v = 0;
  if (!parse_uint(text.substr(0, digits), 0, UINT64_MAX, &v)) return false;
  std::string unit;
  for (char c : text.substr(digits)) unit += char(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
  int shift = 0;
  if (unit.empty() || unit == "B") shift = 0;
  else if (unit == "K" || unit == "KB" || unit == "KIB") shift = 10;
  else if (unit == "M" || unit == "MB" || unit == "MIB") shift = 20;
  else if (unit == "G" || unit == "GB" || unit == "GIB") shift = 30;
  else if (unit == "T" || unit == "TB" || unit == "TIB") shift = 40;
  else return false;
  if (shift > 0 && v > (UINT64_MAX >> shift)) return false;
  *out = v << shift;
  return true;
}

std::string format_bytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return fmt::format("{} B", bytes);
  double v = double(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 6) {
    v /= 1024.0;
    ++u;
  }
  return fmt::format("{:.1f} {}", v, kUnits[u]);
}

}  // namespace lowbit::cli
