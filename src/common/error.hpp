// Internal error handling: C++ code throws lowbit::Error carrying a status
// code; the C API boundary (capi/) catches it and turns it into a status plus
// the thread's last-error text. Nothing below capi/ returns status codes.
#pragma once

#include <exception>
#include <string>
#include <utility>

#include <fmt/format.h>

#include "lowbit/lowbit.h"

namespace lowbit {

class Error : public std::exception {
 public:
  Error(lowbit_status status, std::string message) : status_(status), message_(std::move(message)) {}
  lowbit_status status() const noexcept { return status_; }
  const char* what() const noexcept override { return message_.c_str(); }
  const std::string& message() const noexcept { return message_; }

 private:
  lowbit_status status_;
  std::string message_;
};

// Throws Error(status, formatted message).
template <typename... Args>
[[noreturn]] void fail(lowbit_status status, fmt::format_string<Args...> format, Args&&... args) {
  throw Error(status, fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace lowbit
