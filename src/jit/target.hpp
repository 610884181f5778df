// A compile target: an SM version plus the arch-specific "a" suffix (sm_90a
// enables Hopper-only instructions such as wgmma).
#pragma once

#include <string>
#include <string_view>

namespace lowbit {

struct Target {
  int sm = 0;                  // 80, 86, 89, 90, 100, ...
  bool arch_specific = false;  // the "a" suffix

  std::string name() const;                                // "sm_90a"
  static bool parse(std::string_view text, Target* out);   // "sm_90a", "90a", "sm_80"
  // The target lowbit compiles for on a device of compute capability
  // major.minor: the arch-specific variant where one exists (sm_90a, sm_100a),
  // so kernels may use every instruction of the chip.
  static Target for_device(int major, int minor);
};

// Oldest architecture lowbit's kernels support.
inline constexpr int kMinSm = 75;

}  // namespace lowbit
