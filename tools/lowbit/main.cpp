// `lowbit`: the command-line tool of the lowbit library. This file only
// dispatches; each subcommand lives in its own cmd_*.cpp.
#include <cstdio>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include "commands.hpp"

namespace {

using lowbit::cli::Args;
using lowbit::cli::Command;

constexpr const Command* kCommands[] = {
    &lowbit::cli::kInfoCommand,
    &lowbit::cli::kPrewarmCommand,
    &lowbit::cli::kCacheCommand,
    &lowbit::cli::kSelftestCommand,
    &lowbit::cli::kBenchCommand,
};

void print_usage(std::FILE* out) {
  std::fprintf(out,
               "usage: lowbit <command> [options]\n"
               "\n"
               "JIT-compiled low-bit quantization kernels: inspect the setup, prewarm and manage\n"
               "the kernel cache, check the GPU kernels against the CPU reference, benchmark them.\n"
               "\n"
               "commands:\n");
  for (const Command* c : kCommands) std::fprintf(out, "  %-10s %s\n", c->name, c->summary);
  std::fprintf(out,
               "  %-10s %s\n"
               "\n"
               "  lowbit --version          print the library version\n"
               "  lowbit help COMMAND       options of one command (also: lowbit COMMAND --help)\n"
               "\n"
               "environment: LOWBIT_CACHE_DIR (cache directory), LOWBIT_CACHE_PATH (extra read-only\n"
               "cache directories), LOWBIT_LOG (error|warn|info|debug).\n",
               "help", "this text");
}

const Command* find_command(std::string_view name) {
  for (const Command* c : kCommands)
    if (name == c->name) return c;
  return nullptr;
}

int run(int argc, char** argv) {
  if (argc < 2) {
    print_usage(stderr);
    return lowbit::cli::kExitUsage;
  }
  const std::string_view first = argv[1];
  if (first == "--version" || first == "version") {
    std::printf("lowbit %s\n", lowbit_version_string());
    return lowbit::cli::kExitOk;
  }
  if (first == "help" || first == "--help" || first == "-h") {
    if (argc >= 3) {
      const Command* c = find_command(argv[2]);
      if (c == nullptr) {
        std::fprintf(stderr, "lowbit: unknown command '%s'\n\n", argv[2]);
        print_usage(stderr);
        return lowbit::cli::kExitUsage;
      }
      std::fputs(c->usage, stdout);
      return lowbit::cli::kExitOk;
    }
    print_usage(stdout);
    return lowbit::cli::kExitOk;
  }
  const Command* command = find_command(first);
  if (command == nullptr) {
    std::fprintf(stderr, "lowbit: unknown command '%s'\n\n", argv[1]);
    print_usage(stderr);
    return lowbit::cli::kExitUsage;
  }
  std::vector<std::string> rest;
  for (int i = 2; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(command->usage, stdout);
      return lowbit::cli::kExitOk;
    }
    rest.emplace_back(a);
  }
  Args args(std::move(rest));
  return command->run(args);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const int rc = run(argc, argv);
    if (std::fflush(stdout) != 0) return lowbit::cli::kExitFailed;  // e.g. a full disk or a closed pipe
    return rc;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lowbit: internal error: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "lowbit: internal error\n");
  }
  return lowbit::cli::kExitFailed;
}
