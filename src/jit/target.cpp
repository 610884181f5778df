#include "jit/target.hpp"

#include <fmt/format.h>

namespace lowbit {

std::string Target::name() const { return fmt::format("sm_{}{}", sm, arch_specific ? "a" : ""); }

bool Target::parse(std::string_view text, Target* out) {
  if (text.substr(0, 3) == "sm_") text.remove_prefix(3);
  Target t;
  if (!text.empty() && text.back() == 'a') {
    t.arch_specific = true;
    text.remove_suffix(1);
  }
  if (text.empty() || text.size() > 3) return false;
  int sm = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    sm = sm * 10 + (c - '0');
  }
  if (sm < 10) return false;
  t.sm = sm;
  *out = t;
  return true;
}

Target Target::for_device(int major, int minor) {
  Target t;
  t.sm = major * 10 + minor;
  // Hopper and Blackwell data-center parts have arch-specific features.
  t.arch_specific = (t.sm == 90 || t.sm == 100 || t.sm == 103);
  return t;
}

}  // namespace lowbit
