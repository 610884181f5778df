"""Shared helpers of the Python binding tests."""
import os
import shutil
import tempfile
import unittest


def cache_dir(test: unittest.TestCase) -> str:
    """A fresh directory under $LOWBIT_CACHE_DIR (or the temp dir), removed
    after the test."""
    base = os.environ.get("LOWBIT_CACHE_DIR") or None
    if base:
        os.makedirs(base, exist_ok=True)
    path = tempfile.mkdtemp(prefix="lowbit-py-", dir=base)
    test.addCleanup(shutil.rmtree, path, True)
    return path


def header_path() -> str:
    return os.environ.get("LOWBIT_HEADER") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "include", "lowbit", "lowbit.h")
