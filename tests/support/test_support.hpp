// Helpers shared by the test suites: skips, temporary directories, random
// data, and device buffers through lowbit's own driver table.
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <doctest/doctest.h>

namespace lowbit::test {

// Counts a skipped test case (see test_main.cpp) and prints why.
void mark_skipped(const std::string& why);
int skipped_count();

// "" if a CUDA GPU is usable, else the reason it is not.
const std::string& gpu_unavailable_reason();

// A fresh directory under $TMPDIR (or /tmp), removed with its contents by
// the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Files in `dir` whose names end with `suffix`.
std::vector<std::string> list_files(const std::string& dir, const std::string& suffix);

// A generator seeded from the test case name and the clock: fresh data every
// run, printed so a failure can be replayed with LOWBIT_TEST_SEED.
std::mt19937_64& rng();

// This test binary run again as a child process, for scenarios that need a
// fresh process with another environment (no NVRTC, no driver, a file size
// limit). The child recognises itself by a variable in `set`, runs the
// scenario and prints "key=value" lines on stdout.
struct ChildRun {
  int status = 0;                             // as waitpid() gives it
  std::string output;                         // the child's stdout
  std::map<std::string, std::string> values;  // its "key=value" lines
};
// Runs /proc/self/exe without arguments, with this process's environment
// less the variables named in `unset` and those `set` assigns, plus `set`
// ("NAME=value" each).
ChildRun run_self(const std::vector<std::string>& set, const std::vector<std::string>& unset = {});

}  // namespace lowbit::test

// Skip the rest of this test case (counted as skipped) with a reason.
#define LOWBIT_SKIP(why)                  \
  do {                                    \
    ::lowbit::test::mark_skipped(why);    \
    return;                               \
  } while (0)

// Skip unless a CUDA GPU is usable.
#define LOWBIT_REQUIRE_GPU()                                                              \
  do {                                                                                    \
    if (!::lowbit::test::gpu_unavailable_reason().empty())                               \
      LOWBIT_SKIP("needs a CUDA GPU: " + ::lowbit::test::gpu_unavailable_reason());       \
  } while (0)
