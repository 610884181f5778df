#!/usr/bin/env python3
"""CPU tests of the benchmark's output: the JSON schema (on a recorded sample,
tests/bench/sample_bench.json, from a GPU run of `lowbit bench`), the plotting
script tools/plot_bench.py, the committed results under tools/bench/results/,
and `lowbit bench`'s command line where no GPU is needed.

    python3 tests/bench/test_bench.py [PATH_TO_LOWBIT] [unittest options]

The `lowbit` executable (optional: those tests are skipped without it) comes
from the first argument, else $LOWBIT_CLI, else $LOWBIT_BUILD_DIR/tools/lowbit.
The plotting tests are skipped, with a message, where matplotlib is not
importable (python3 -m pip install matplotlib).

Ends with one line "bench: N passed, N failed, N skipped", also appended to
the file named by $LOWBIT_TEST_SUMMARY.
"""

import copy
import glob
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import suite_summary  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("LOWBIT_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
PLOT = os.path.join(SOURCE, "tools", "plot_bench.py")
SAMPLE = os.path.join(HERE, "sample_bench.json")
RESULTS = os.path.join(SOURCE, "tools", "bench", "results")
CLI = None  # set in main()
NO_GPU_ENV = {"LOWBIT_CUDA_LIBRARY": "/nonexistent/libcuda.so.1"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def load_plot_module():
    spec = importlib.util.spec_from_file_location("plot_bench", PLOT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pb = load_plot_module()

try:
    import matplotlib  # noqa: F401
    HAVE_MATPLOTLIB = True
except ImportError:
    HAVE_MATPLOTLIB = False
NEEDS_MPL = unittest.skipUnless(HAVE_MATPLOTLIB, "matplotlib is not installed (python3 -m pip install matplotlib)")


def sample():
    with open(SAMPLE) as f:
        return json.load(f)


def first(doc, suite):
    return next(i for i, r in enumerate(doc["records"]) if r["suite"] == suite)


def only_suites(doc, suites):
    d = copy.deepcopy(doc)
    d["records"] = [r for r in d["records"] if r["suite"] in suites]
    d["suites"]["ran"] = [s for s in d["suites"]["ran"] if s in suites]
    return d


class Schema(unittest.TestCase):
    def test_sample_conforms(self):
        doc = sample()
        self.assertEqual(pb.validate(doc), [])
        suites = {r["suite"] for r in doc["records"]}
        # The sample covers a bandwidth-bound suite, one with cuBLAS, and the JIT's.
        self.assertIn("quantize", suites)
        self.assertIn("wq-decode", suites)
        self.assertIn("jit", suites)
        self.assertTrue(any(r["speedup_vs_cublas"] is not None for r in doc["records"]))
        self.assertTrue(any(r["ceiling"] == "read" for r in doc["records"]))
        self.assertTrue(any(r["ceiling"] == "copy" for r in doc["records"]))

    def test_sample_environment(self):
        env = sample()["environment"]
        for key in ("gpu", "driver", "lowbit", "date", "max_sm_clock_khz", "clocks_at_start"):
            self.assertIn(key, env)
        self.assertRegex(env["date"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

    def test_missing_field(self):
        for key in ("median_us", "ceiling", "speedup_vs_cublas", "config", "p90_us"):
            with self.subTest(key=key):
                doc = sample()
                del doc["records"][0][key]
                self.assertTrue(any(key in p and "missing" in p for p in pb.validate(doc)), pb.validate(doc))

    def test_wrong_types(self):
        for key, value in (("m", "1"), ("median_us", None), ("runs", 2.5), ("ceiling", 3), ("group", True)):
            with self.subTest(key=key):
                doc = sample()
                doc["records"][0][key] = value
                self.assertNotEqual(pb.validate(doc), [])

    def test_inconsistent_figures(self):
        doc = sample()
        i = first(doc, "quantize")
        doc["records"][i]["fraction_of_ceiling"] *= 1.5
        self.assertTrue(any("fraction_of_ceiling" in p for p in pb.validate(doc)))
        doc = sample()
        doc["records"][i]["gbps"] *= 2
        self.assertTrue(any("gbps" in p for p in pb.validate(doc)))
        doc = sample()
        j = next(k for k, r in enumerate(doc["records"]) if r["cublas_us"] is not None)
        doc["records"][j]["speedup_vs_cublas"] = None
        self.assertTrue(any("cublas" in p for p in pb.validate(doc)))
        doc = sample()
        r = doc["records"][i]
        r["p10_us"], r["p90_us"] = r["p90_us"] * 2 + 1, r["p10_us"]
        self.assertTrue(any("p10" in p for p in pb.validate(doc)))

    def test_bad_top_level(self):
        doc = sample()
        doc["schema"] = "something-else/9"
        self.assertTrue(any("schema" in p for p in pb.validate(doc)))
        doc = sample()
        del doc["ceilings"]["read_gbps"]
        self.assertTrue(any("read_gbps" in p for p in pb.validate(doc)))
        doc = sample()
        doc["records"][0]["suite"] = "never-ran"
        self.assertTrue(any("never-ran" in p for p in pb.validate(doc)))
        self.assertNotEqual(pb.validate([]), [])

    def test_check_command(self):
        proc = subprocess.run([sys.executable, PLOT, "--check", SAMPLE], capture_output=True, text=True)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn("conforms", proc.stdout)
        with tempfile.TemporaryDirectory() as tmp:
            doc = sample()
            del doc["records"][0]["median_us"]
            bad = os.path.join(tmp, "bad.json")
            with open(bad, "w") as f:
                json.dump(doc, f)
            proc = subprocess.run([sys.executable, PLOT, "--check", bad], capture_output=True, text=True)
            self.assertEqual(proc.returncode, 1)
            self.assertIn("median_us", proc.stderr)

    def test_committed_results_conform(self):
        files = sorted(glob.glob(os.path.join(RESULTS, "*.json")))
        if not files:
            self.skipTest(f"no results committed under {RESULTS}")
        for path in files:
            with self.subTest(path=os.path.basename(path)):
                self.assertEqual(pb.validate(pb.load(path)), [])


@NEEDS_MPL
class Plot(unittest.TestCase):
    def run_plot(self, doc, tmp, name="run"):
        path = os.path.join(tmp, name + ".json")
        with open(path, "w") as f:
            json.dump(doc, f)
        proc = subprocess.run([sys.executable, PLOT, path, "--out", os.path.join(tmp, "png")],
                              capture_output=True, text=True, timeout=300)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        written = [line for line in proc.stdout.splitlines() if line.endswith(".png")]
        for w in written:
            with open(w, "rb") as f:
                self.assertEqual(f.read(8), PNG_MAGIC, w)
            self.assertGreater(os.path.getsize(w), 5000, w)
        return sorted(os.path.basename(w) for w in written)

    def test_all_suites(self):
        with tempfile.TemporaryDirectory() as tmp:
            names = self.run_plot(sample(), tmp)
            self.assertIn("run-quantize-fraction.png", names)
            self.assertIn("run-wq-decode-fraction.png", names)
            self.assertIn("run-wq-decode-cublas.png", names)
            self.assertIn("run-jit.png", names)

    def test_some_suites(self):
        with tempfile.TemporaryDirectory() as tmp:
            self.assertEqual(self.run_plot(only_suites(sample(), {"jit"}), tmp, "j"), ["j-jit.png"])
            self.assertEqual(self.run_plot(only_suites(sample(), {"wq-decode"}), tmp, "w"),
                             ["w-wq-decode-cublas.png", "w-wq-decode-fraction.png"])
            self.assertEqual(self.run_plot(only_suites(sample(), {"quantize"}), tmp, "q"),
                             ["q-quantize-fraction.png"])

    def test_no_records(self):
        with tempfile.TemporaryDirectory() as tmp:
            self.assertEqual(self.run_plot(only_suites(sample(), set()), tmp, "empty"), [])

    def test_committed_prefill_results(self):
        files = sorted(glob.glob(os.path.join(RESULTS, "*wq-prefill*.json")))
        if not files:
            self.skipTest(f"no wq-prefill results committed under {RESULTS}")
        with open(files[0]) as f:
            doc = json.load(f)
        with tempfile.TemporaryDirectory() as tmp:
            self.assertEqual(self.run_plot(doc, tmp, "p"), ["p-wq-prefill-cublas.png", "p-wq-prefill-fraction.png"])

    def test_in_process(self):
        with tempfile.TemporaryDirectory() as tmp:
            written = pb.plot(sample(), tmp, "x-")
            self.assertTrue(written)
            self.assertTrue(all(os.path.exists(w) for w in written))


class Cli(unittest.TestCase):
    def setUp(self):
        if CLI is None:
            self.skipTest("the lowbit executable was not found (pass its path, or set LOWBIT_CLI)")

    def cli(self, *args, env=None):
        full = dict(os.environ)
        full.update(env or {})
        return subprocess.run([CLI, *args], capture_output=True, text=True, env=full, timeout=120)

    def test_listed_and_help(self):
        proc = self.cli("help")
        self.assertEqual(proc.returncode, 0)
        self.assertIn("bench", proc.stdout)
        proc = self.cli("bench", "--help")
        self.assertEqual(proc.returncode, 0)
        for flag in ("--suite", "--shapes", "--m", "--json", "--quick", "--min-runs", "--min-ms"):
            self.assertIn(flag, proc.stdout)
        proc = self.cli("bench", "--list")
        self.assertEqual(proc.returncode, 0)
        for suite in ("quantize", "wq-decode", "wq-prefill", "jit"):
            self.assertIn(suite, proc.stdout)

    def test_bad_usage(self):
        for args in (["--suite", "nope"], ["--shapes", "13b"], ["--m", "1,x"], ["--m", "0"], ["--min-runs", "0"],
                     ["--json"], ["--frobnicate"]):
            with self.subTest(args=args):
                proc = self.cli("bench", *args, env=NO_GPU_ENV)
                self.assertEqual(proc.returncode, 2, proc.stderr)
                self.assertIn("lowbit bench:", proc.stderr)

    def test_no_gpu(self):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "b.json")
            proc = self.cli("bench", "--suite", "jit", "--json", out, env=NO_GPU_ENV)
            self.assertEqual(proc.returncode, 2)
            self.assertIn("lowbit bench:", proc.stderr)
            self.assertFalse(os.path.exists(out), "no JSON without a GPU")


def main():
    global CLI
    argv = sys.argv[1:]
    candidate = None
    if argv and not argv[0].startswith("-"):
        candidate = argv.pop(0)
    else:
        build = os.environ.get("LOWBIT_BUILD_DIR", "build")
        candidate = os.environ.get("LOWBIT_CLI") or os.path.join(build, "tools", "lowbit")
    if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
        CLI = os.path.abspath(candidate)
    if not HAVE_MATPLOTLIB:
        print("bench: matplotlib is not installed: the plotting tests are skipped "
              "(python3 -m pip install matplotlib)")
    return suite_summary.run_unittest("bench", argv)


if __name__ == "__main__":
    sys.exit(main())
