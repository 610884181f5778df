#include "commands.hpp"

#include <cstdio>

#include <fmt/format.h>

#include "cache/disk_store.hpp"

namespace lowbit::cli {

int usage_error(const Command& command, const std::string& message) {
  std::fprintf(stderr, "lowbit %s: %s\n\n%s", command.name, message.c_str(), command.usage);
  return kExitUsage;
}

void print_error(const Command& command, const std::string& message) {
  std::fprintf(stderr, "lowbit %s: %s\n", command.name, message.c_str());
}

std::string status_name(lowbit_status status) {
  const std::string text = lowbit_status_string(status);
  const size_t colon = text.find(':');
  return colon == std::string::npos ? fmt::format("status {}", status) : text.substr(0, colon);
}

std::string last_error(lowbit_status status) {
  return fmt::format("{}: {}", status_name(status), lowbit_last_error_message());
}

std::string resolve_cache_dir(const std::string& option) {
  return option.empty() ? default_cache_dir() : option;
}

std::string format_cuda_version(int version) {
  return fmt::format("{}.{}", version / 1000, (version % 1000) / 10);
}

}  // namespace lowbit::cli
