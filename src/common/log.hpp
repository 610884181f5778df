// Log sink shared by a context and everything it owns: a user callback or
// stderr, filtered by level ($LOWBIT_LOG overrides the configured level).
#pragma once

#include <atomic>
#include <string>

#include <fmt/format.h>

#include "lowbit/lowbit.h"

namespace lowbit {

class Logger {
 public:
  Logger() = default;
  Logger(lowbit_log_callback callback, void* user_data, int32_t level);

  bool enabled(int32_t level) const noexcept { return level <= level_; }
  void write(int32_t level, const std::string& message) const;

  template <typename... Args>
  void log(int32_t level, fmt::format_string<Args...> format, Args&&... args) const {
    if (enabled(level)) write(level, fmt::format(format, std::forward<Args>(args)...));
  }
  template <typename... Args>
  void warn(fmt::format_string<Args...> format, Args&&... args) const {
    log(LOWBIT_LOG_WARN, format, std::forward<Args>(args)...);
  }
  template <typename... Args>
  void info(fmt::format_string<Args...> format, Args&&... args) const {
    log(LOWBIT_LOG_INFO, format, std::forward<Args>(args)...);
  }
  template <typename... Args>
  void debug(fmt::format_string<Args...> format, Args&&... args) const {
    log(LOWBIT_LOG_DEBUG, format, std::forward<Args>(args)...);
  }

 private:
  lowbit_log_callback callback_ = nullptr;
  void* user_data_ = nullptr;
  int32_t level_ = LOWBIT_LOG_WARN;
};

}  // namespace lowbit
