#include "common/log.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace lowbit {

namespace {

int32_t level_from_env(int32_t fallback) {
  const char* v = std::getenv("LOWBIT_LOG");
  if (v == nullptr || *v == '\0') return fallback;
  if (std::strcmp(v, "error") == 0) return LOWBIT_LOG_ERROR;
  if (std::strcmp(v, "warn") == 0) return LOWBIT_LOG_WARN;
  if (std::strcmp(v, "info") == 0) return LOWBIT_LOG_INFO;
  if (std::strcmp(v, "debug") == 0) return LOWBIT_LOG_DEBUG;
  return fallback;
}

const char* level_name(int32_t level) {
  switch (level) {
    case LOWBIT_LOG_ERROR: return "error";
    case LOWBIT_LOG_WARN: return "warn";
    case LOWBIT_LOG_INFO: return "info";
    default: return "debug";
  }
}

}  // namespace

Logger::Logger(lowbit_log_callback callback, void* user_data, int32_t level)
    : callback_(callback), user_data_(user_data), level_(level_from_env(level)) {}

void Logger::write(int32_t level, const std::string& message) const {
  if (!enabled(level)) return;
  if (callback_ != nullptr) {
    callback_(user_data_, level, message.c_str());
    return;
  }
  // One fprintf per line so that lines from concurrent threads do not interleave.
  std::fprintf(stderr, "lowbit: %s: %s\n", level_name(level), message.c_str());
}

}  // namespace lowbit
