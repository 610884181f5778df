// The subcommands of the `lowbit` tool and what they share.
//
// Exit codes: 0 success, 1 the command ran and something failed, 2 bad usage
// (unknown subcommand or option, missing value) or a test that could not run
// (selftest without a GPU, unless --allow-no-gpu).
#pragma once

#include <string>

#include "args.hpp"
#include "lowbit/lowbit.h"

namespace lowbit::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;

struct Command {
  const char* name;
  const char* summary;  // one line for `lowbit help`
  const char* usage;    // the full text for `lowbit help NAME` and `lowbit NAME --help`
  int (*run)(Args& args);
};

extern const Command kInfoCommand;
extern const Command kPrewarmCommand;
extern const Command kCacheCommand;
extern const Command kSelftestCommand;
extern const Command kBenchCommand;

// Prints "lowbit NAME: MESSAGE" and the command's usage to stderr; returns
// kExitUsage.
int usage_error(const Command& command, const std::string& message);

// Prints "lowbit NAME: MESSAGE" to stderr.
void print_error(const Command& command, const std::string& message);

// The status's symbolic name, e.g. "LOWBIT_UNSUPPORTED" (from
// lowbit_status_string, whose text continues after a colon).
std::string status_name(lowbit_status status);

// "LOWBIT_NO_DEVICE: <the thread's last error message>".
std::string last_error(lowbit_status status);

// The cache directory a command works on: `option` if given, else the
// library's default ($LOWBIT_CACHE_DIR, $XDG_CACHE_HOME/lowbit,
// ~/.cache/lowbit); "" if there is none.
std::string resolve_cache_dir(const std::string& option);

// Versions as the driver and NVRTC report them (13000 -> "13.0").
std::string format_cuda_version(int version);

}  // namespace lowbit::cli
