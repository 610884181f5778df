#!/usr/bin/env python3
"""Runs the Python binding's tests (unittest, standard library only) and ends
with "N passed, N failed, N skipped". Exit status 0 when nothing failed.

    LOWBIT_LIBRARY=/path/to/liblowbit.so python3 capi/python/run_tests.py [-q]
"""
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def main() -> int:
    verbosity = 1 if "-q" in sys.argv[1:] else 2
    suite = unittest.defaultTestLoader.discover(os.path.join(HERE, "tests"), top_level_dir=HERE)
    result = unittest.TextTestRunner(verbosity=verbosity, stream=sys.stdout).run(suite)
    for test, reason in result.skipped:
        print("SKIPPED %s: %s" % (test.id(), reason))
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped - len(result.expectedFailures)
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 0 if failed == 0 and result.testsRun > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
