"""The closing line of lowbit's Python test scripts (tests/cli/test_cli.py,
tests/bench/test_bench.py, tests/soak/soak.py): "<suite>: N passed, N failed,
N skipped", printed and appended to the file named by $LOWBIT_TEST_SUMMARY,
which tools/run_tests.sh totals (as tests/support/test_main.cpp does for the
doctest suites).

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
    import suite_summary
    sys.exit(suite_summary.run_unittest("cli", argv))   # a unittest module
    suite_summary.report("soak", passed, failed)         # counted by hand
"""

import os
import sys
import unittest


def report(suite, passed, failed, skipped=0):
    """Prints the closing line and appends it to $LOWBIT_TEST_SUMMARY."""
    line = f"{suite}: {passed} passed, {failed} failed, {skipped} skipped"
    print(line, flush=True)
    summary = os.environ.get("LOWBIT_TEST_SUMMARY")
    if summary:
        with open(summary, "a") as f:
            f.write(line + "\n")
    return line


class CountingResult(unittest.TextTestResult):
    """Counts test methods: passed, failed (a failure or error in the test or
    any of its subtests, or in a fixture), skipped."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.passed = 0
        self.failed_ids = set()

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed += 1

    def _failed(self, test):
        self.failed_ids.add(getattr(test, "test_case", test).id())

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._failed(test)

    def addError(self, test, err):
        super().addError(test, err)
        self._failed(test)

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._failed(test)

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            self._failed(test)


def run_unittest(suite, argv=()):
    """Runs the tests of the __main__ module (unittest options in `argv`),
    reports them as `suite`, and returns the exit code: 1 if any failed, 77
    (Meson's SKIP) if all were skipped, else 0."""
    runner = unittest.TextTestRunner(verbosity=2, resultclass=CountingResult, stream=sys.stdout)
    program = unittest.main(argv=[sys.argv[0]] + list(argv), testRunner=runner, exit=False)
    result = program.result
    failed = len(result.failed_ids)
    skipped = len(result.skipped)
    report(suite, result.passed, failed, skipped)
    if failed:
        return 1
    if result.passed == 0 and skipped > 0:
        return 77
    return 0
