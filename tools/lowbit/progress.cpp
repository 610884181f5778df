#include "progress.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>

namespace lowbit::cli {

namespace {

int terminal_width() {
  winsize ws{};
  if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20) return ws.ws_col;
  if (const char* c = std::getenv("COLUMNS")) {
    const int v = std::atoi(c);
    if (v >= 20 && v <= 1000) return v;
  }
  return 80;
}

}  // namespace

Progress::Mode Progress::detect(bool quiet) {
  if (quiet) return Mode::Quiet;
  const char* term = std::getenv("TERM");
  const bool dumb = term != nullptr && std::string(term) == "dumb";
  return ::isatty(STDERR_FILENO) && !dumb ? Mode::Bar : Mode::Lines;
}

Progress::Progress(size_t total, Mode mode) : total_(total), mode_(mode) {
  if (mode_ == Mode::Bar) width_ = terminal_width();
}

Progress::~Progress() { finish(); }

void Progress::item(Result result, const std::string& label, const std::string& detail) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++done_;
  if (result == Result::Compiled) ++compiled_;
  else if (result == Result::Cached) ++cached_;
  else ++failed_;
  if (mode_ == Mode::Lines) {
    std::fprintf(stderr, "[%zu/%zu] %s: %s\n", done_, total_, label.c_str(), detail.c_str());
    std::fflush(stderr);
  } else if (mode_ == Mode::Bar) {
    draw_locked(label);
  }
}

void Progress::message(const std::string& line) {
  std::lock_guard<std::mutex> lock(mutex_);
  clear_locked();
  std::fprintf(stderr, "%s\n", line.c_str());
  if (mode_ == Mode::Bar && done_ > 0 && done_ < total_) draw_locked("");
  std::fflush(stderr);
}

void Progress::finish() {
  std::lock_guard<std::mutex> lock(mutex_);
  clear_locked();
}

void Progress::clear_locked() {
  if (!bar_shown_) return;
  std::fputs("\r\x1b[K", stderr);
  std::fflush(stderr);
  bar_shown_ = false;
}

void Progress::draw_locked(const std::string& label) {
  // "[#######.......]  12/72  3 compiled  9 cached  0 failed  quantize<...>"
  const std::string counts = fmt::format(" {}/{}  {} compiled  {} cached  {} failed", done_, total_, compiled_,
                                         cached_, failed_);
  const int bar = std::clamp(width_ / 4, 10, 40);
  const size_t filled = total_ == 0 ? size_t(bar) : done_ * size_t(bar) / total_;
  std::string line = "[";
  line.append(filled, '#').append(size_t(bar) - filled, '.').append("]").append(counts);
  const size_t room = size_t(width_ - 1);
  if (!label.empty() && line.size() + 2 < room) {
    std::string shown = label.substr(0, room - line.size() - 2);
    line += "  " + shown;
  }
  if (line.size() > room) line.resize(room);
  std::fprintf(stderr, "\r\x1b[K%s", line.c_str());
  std::fflush(stderr);
  bar_shown_ = true;
}

}  // namespace lowbit::cli
