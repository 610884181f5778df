// Progress output of long-running commands (prewarm), on stderr: a redrawn
// bar when stderr is a terminal, one plain line per finished item otherwise
// (logs, CI). Thread-safe: workers report as they finish.
#pragma once

#include <cstddef>
#include <mutex>
#include <string>

namespace lowbit::cli {

class Progress {
 public:
  enum class Mode { Bar, Lines, Quiet };
  // Bar if stderr is a terminal, else Lines; Quiet if `quiet`.
  static Mode detect(bool quiet);

  Progress(size_t total, Mode mode);
  ~Progress();  // clears the bar

  enum class Result { Compiled, Cached, Failed };
  // One item finished: "[i/n] LABEL: DETAIL" in Lines mode; in Bar mode the
  // bar advances and shows LABEL.
  void item(Result result, const std::string& label, const std::string& detail);
  // A line that must be seen in every mode, Quiet included (a warning): in
  // Bar mode it is printed above the bar, which is then redrawn.
  void message(const std::string& line);
  // Clears the bar (idempotent).
  void finish();

 private:
  void draw_locked(const std::string& label);
  void clear_locked();

  std::mutex mutex_;
  const size_t total_;
  const Mode mode_;
  size_t done_ = 0, compiled_ = 0, cached_ = 0, failed_ = 0;
  bool bar_shown_ = false;
  int width_ = 80;
};

}  // namespace lowbit::cli
