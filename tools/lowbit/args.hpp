// Command-line parsing for the subcommands: a cursor over the arguments that
// understands "--name VALUE", "--name=VALUE", "-j N" and "-jN", plus the
// parsers of numeric option values.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lowbit::cli {

class Args {
 public:
  explicit Args(std::vector<std::string> args) : args_(std::move(args)) {}

  bool done() const { return i_ >= args_.size(); }
  const std::string& current() const { return args_[i_]; }

  // Consumes the boolean flag `name` if it is the current argument.
  bool flag(std::string_view name);
  // Consumes the option `name` with its value ("--name V", "--name=V"; for a
  // short "-x" also "-xV"). Returns true if the current argument is that
  // option; a missing value sets error() (and still returns true).
  bool option(std::string_view name, std::string* value);
  // Whether the current argument looks like an option ("-x", "--x"; not "-").
  bool at_option() const;
  // Consumes a positional argument.
  std::string take() { return args_[i_++]; }

  const std::string& error() const { return error_; }

 private:
  std::vector<std::string> args_;
  size_t i_ = 0;
  std::string error_;
};

// "4096", "512K", "512M", "2G", "1T", also "2GB" / "2GiB" (binary units,
// case-insensitive). False for malformed input or a value above 2^64 - 1.
bool parse_size(std::string_view text, uint64_t* out);

// A decimal unsigned integer in [min, max].
bool parse_uint(std::string_view text, uint64_t min, uint64_t max, uint64_t* out);

// "1.5 GiB", "312 KiB", "17 B".
std::string format_bytes(uint64_t bytes);

}  // namespace lowbit::cli
