// The main() of every doctest suite: runs doctest, then prints one line
// "<suite>: N passed, N failed, N skipped" and appends it to the file named
// by $LOWBIT_TEST_SUMMARY, which tools/run_tests.sh totals. A test case that
// called LOWBIT_SKIP counts as skipped, not passed. When every test case was
// skipped the exit code is 77 (Meson's SKIP).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "support/test_support.hpp"

namespace {

doctest::TestRunStats g_stats{};

struct CountingListener : doctest::IReporter {
  explicit CountingListener(const doctest::ContextOptions&) {}
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats& s) override { g_stats = s; }
  void test_case_start(const doctest::TestCaseData&) override {}
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override {}
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};

REGISTER_LISTENER("lowbit_counts", 1, CountingListener);

}  // namespace

int main(int argc, char** argv) {
  doctest::Context context(argc, argv);
  const int rc = context.run();
  if (context.shouldExit()) return rc;
  const char* suite = std::getenv("LOWBIT_TEST_SUITE_NAME");
  if (suite == nullptr) {
    suite = std::strrchr(argv[0], '/') != nullptr ? std::strrchr(argv[0], '/') + 1 : argv[0];
  }
  const int skipped = lowbit::test::skipped_count();
  const int failed = int(g_stats.numTestCasesFailed);
  const int passed = int(g_stats.numTestCasesPassingFilters) - failed - skipped;
  char line[256];
  std::snprintf(line, sizeof(line), "%s: %d passed, %d failed, %d skipped", suite, passed, failed, skipped);
  std::printf("%s\n", line);
  if (const char* path = std::getenv("LOWBIT_TEST_SUMMARY"); path != nullptr && *path != '\0') {
    if (std::FILE* f = std::fopen(path, "a")) {
      std::fprintf(f, "%s\n", line);
      std::fclose(f);
    }
  }
  if (rc == 0 && passed == 0 && skipped > 0) return 77;
  return rc;
}
