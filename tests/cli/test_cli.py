#!/usr/bin/env python3
"""Tests of the `lowbit` command-line tool (tools/lowbit/), CPU only.

    python3 tests/cli/test_cli.py [PATH_TO_LOWBIT] [unittest options]

The executable comes from the first argument, else $LOWBIT_CLI, else
$LOWBIT_BUILD_DIR/tools/lowbit, else build/tools/lowbit. Kernels are compiled
offline for sm_90a (NVRTC only; no GPU or driver needed), into temporary cache
directories. The GPU is hidden from the tool where a test needs "no GPU"
($LOWBIT_CUDA_LIBRARY pointing nowhere), so the suite behaves the same on a
GPU machine.

Ends with one line "cli: N passed, N failed, N skipped", also appended to the
file named by $LOWBIT_TEST_SUMMARY.
"""

import json
import os
import pty
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import suite_summary  # noqa: E402

CLI = None  # set in main()
ARCH = "sm_90a"
NO_GPU_ENV = {"LOWBIT_CUDA_LIBRARY": "/nonexistent/libcuda.so.1"}

# Six requests, four distinct kernels: line 3 reuses the kernel of line 2,
# and the zero-sized last request compiles nothing.
SMALL_MANIFEST = """\
# a small manifest for the CLI tests
quantize op=quantize x=f32 q=s8 dims=7
quantize op=quantize x=f32 q=s8 dims=4099          # same kernel as the line above
quantize op=dequantize x=f32 q=s8 dims=7
quantize op=quantize scope=per_tensor x=f16 q=u8 scale=f32 dims=16x4096

quantize op=dequantize x=bf16 q=u8 dims=3x5 stride=8 align=4
quantize op=quantize x=bf16 q=s8 dims=0x4096       # zero-sized: nothing to compile
"""
SMALL_REQUESTS = 6

SUMMARY_RE = re.compile(
    r"^prewarm: (\d+) kernels: (\d+) compiled, (\d+) already cached, (\d+) failed in (\d+\.\d\d) s$", re.M)
PROGRESS_RE = re.compile(
    r"^\[(\d+)/(\d+)\] .+: (compiled \d+ ms|cached \((disk|memory)\) \d+ ms|nothing to compile|failed: LOWBIT_\w+)$")
VERIFY_RE = re.compile(r"^verify: (\d+) entries, (\d+) damaged", re.M)

_golden_dir = None      # a cache holding the small manifest's kernels
_distinct_kernels = None


def run_cli(args, stdin=None, env=None, timeout=300):
    full_env = dict(os.environ)
    full_env.pop("LOWBIT_CACHE_PATH", None)
    full_env.pop("LOWBIT_LOG", None)
    full_env.update(env or {})
    return subprocess.run([CLI] + list(args), input=stdin, capture_output=True, text=True, env=full_env,
                          timeout=timeout)


def summary_of(proc):
    """(requests, compiled, cached, failed) from a prewarm's stdout."""
    m = SUMMARY_RE.search(proc.stdout)
    if m is None:
        raise AssertionError(f"no summary line in stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return tuple(int(g) for g in m.groups()[:4])


def entries(cache_dir):
    if not os.path.isdir(cache_dir):
        return []
    return sorted(n for n in os.listdir(cache_dir) if n.endswith(".lbk"))


def write_file(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def setUpModule():
    global _golden_dir, _distinct_kernels
    _golden_dir = tempfile.mkdtemp(prefix="lowbit-cli-golden-")
    cache = os.path.join(_golden_dir, "cache")
    manifest = write_file(os.path.join(_golden_dir, "small.txt"), SMALL_MANIFEST)
    proc = run_cli(["prewarm", manifest, "--arch", ARCH, "--cache-dir", cache, "-j", "2"])
    if proc.returncode != 0:
        raise RuntimeError(f"the golden prewarm failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    _distinct_kernels = len(entries(cache))
    requests, compiled, cached, failed = summary_of(proc)
    if (requests, compiled, cached, failed) != (SMALL_REQUESTS, _distinct_kernels,
                                                  SMALL_REQUESTS - _distinct_kernels, 0):
        raise RuntimeError(f"unexpected golden prewarm summary: {proc.stdout}")


def tearDownModule():
    if _golden_dir:
        shutil.rmtree(_golden_dir, ignore_errors=True)


class CliTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="lowbit-cli-")
        # Keep the tool away from the user's real cache whatever a test forgets.
        self.env = {"LOWBIT_CACHE_DIR": os.path.join(self.tmp, "default-cache"), "HOME": self.tmp}

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def cli(self, *args, stdin=None, env=None, timeout=300):
        return run_cli(args, stdin=stdin, env={**self.env, **(env or {})}, timeout=timeout)

    def golden_copy(self):
        dst = self.path("cache")
        shutil.copytree(os.path.join(_golden_dir, "cache"), dst)
        return dst

    def small_manifest(self):
        return write_file(self.path("small.txt"), SMALL_MANIFEST)

    def assertUsageError(self, proc):
        self.assertEqual(proc.returncode, 2, proc.stderr)
        self.assertIn("usage:", proc.stderr)
        self.assertEqual(proc.stdout, "")


class TopLevel(CliTest):
    def test_version(self):
        proc = self.cli("--version")
        self.assertEqual(proc.returncode, 0)
        self.assertRegex(proc.stdout, r"^lowbit \d+\.\d+\.\d+\n$")

    def test_help(self):
        proc = self.cli("help")
        self.assertEqual(proc.returncode, 0)
        for command in ("info", "prewarm", "cache", "selftest"):
            self.assertIn(command, proc.stdout)
        proc = self.cli("help", "prewarm")
        self.assertEqual(proc.returncode, 0)
        self.assertIn("--arch", proc.stdout)
        proc = self.cli("cache", "--help")
        self.assertEqual(proc.returncode, 0)
        self.assertIn("--max-bytes", proc.stdout)

    def test_bad_subcommand(self):
        proc = self.cli("frobnicate")
        self.assertUsageError(proc)
        self.assertIn("unknown command 'frobnicate'", proc.stderr)
        self.assertUsageError(self.cli())
        self.assertUsageError(self.cli("help", "frobnicate"))

    def test_bad_flags(self):
        for args in (["info", "--bogus"], ["prewarm", "--arch"], ["prewarm", "-j", "many"], ["prewarm", "-j", "0x4"],
                     ["prewarm", "a.txt", "b.txt"], ["cache"], ["cache", "frob"], ["cache", "gc"],
                     ["cache", "gc", "--max-bytes", "12Q"], ["cache", "gc", "--max-bytes", "99999999999999999999"],
                     ["cache", "ls", "--remove"], ["selftest", "--nope"], ["selftest", "--seed", "-1"]):
            with self.subTest(args=args):
                self.assertUsageError(self.cli(*args))


class Info(CliTest):
    def test_info_json_offline(self):
        cache = self.path("c")
        proc = self.cli("info", "--arch", ARCH, "--json", "--cache-dir", cache)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        info = json.loads(proc.stdout)
        version = self.cli("--version").stdout.split()[1]
        self.assertEqual(info["version"], version)
        self.assertEqual(info["target"], {"arch": ARCH, "offline": True})
        self.assertEqual(info["cache"]["dir"], cache)
        self.assertFalse(info["cache"]["exists"])
        self.assertFalse(os.path.exists(cache), "info must not create the cache directory")
        self.assertTrue(info["nvrtc"]["available"], info["nvrtc"]["problem"])
        self.assertIn("available", info["gpu"])

    def test_info_json_no_gpu_counts_cache(self):
        cache = self.golden_copy()
        proc = self.cli("info", "--json", "--cache-dir", cache, env=NO_GPU_ENV)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        info = json.loads(proc.stdout)
        self.assertFalse(info["gpu"]["available"])
        self.assertTrue(info["gpu"]["problem"])
        self.assertIsNone(info["target"])
        self.assertEqual(info["cache"]["entries"], _distinct_kernels)
        self.assertEqual(info["cache"]["bytes"], sum(os.path.getsize(os.path.join(cache, e)) for e in entries(cache)))

    def test_info_text(self):
        proc = self.cli("info", "--cache-dir", self.path("c"), env=NO_GPU_ENV)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertRegex(proc.stdout, r"(?m)^lowbit: +\d+\.\d+\.\d+$")
        self.assertRegex(proc.stdout, r"(?m)^gpu: +no GPU: ")
        self.assertRegex(proc.stdout, r"(?m)^nvrtc: ")
        self.assertIn(self.path("c"), proc.stdout)

    def test_info_bad_arch(self):
        proc = self.cli("info", "--arch", "sm_x", "--cache-dir", self.path("c"))
        self.assertEqual(proc.returncode, 2)
        self.assertIn("sm_x", proc.stderr)


class Prewarm(CliTest):
    def test_default_manifest_twice(self):
        default = self.cli("prewarm", "--print-default").stdout
        requests = [l for l in default.splitlines() if l.strip() and not l.lstrip().startswith("#")]
        cache = self.path("cache")
        proc = self.cli("prewarm", "--arch", ARCH, "--cache-dir", cache)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        n, compiled, cached, failed = summary_of(proc)
        self.assertEqual(n, len(requests))
        self.assertEqual(failed, 0)
        self.assertEqual(compiled + cached, n)
        self.assertGreater(compiled, 0)
        self.assertEqual(compiled, len(entries(cache)), "one cache entry per compiled kernel")
        # Not a terminal: one plain progress line per request, on stderr.
        lines = [l for l in proc.stderr.splitlines() if l.startswith("[")]
        self.assertEqual(len(lines), n, proc.stderr)
        for line in lines:
            self.assertRegex(line, PROGRESS_RE)

        ls = self.cli("cache", "ls", "--cache-dir", cache)
        self.assertEqual(ls.returncode, 0, ls.stderr)
        self.assertIn(f"ls: {compiled} entries", ls.stdout)
        self.assertIn(ARCH, ls.stdout)
        self.assertIn("quantize<", ls.stdout)

        again = self.cli("prewarm", "--arch", ARCH, "--cache-dir", cache)
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertEqual(summary_of(again), (n, 0, n, 0))

    def test_print_default(self):
        proc = self.cli("prewarm", "--print-default")
        self.assertEqual(proc.returncode, 0)
        requests = [l for l in proc.stdout.splitlines() if l.strip() and not l.startswith("#")]
        # quantize: {quantize, dequantize} x {f16, bf16, f32} x {s8, u8} x K {4096, 14336} x M {1, 16, 4096}
        self.assertGreaterEqual(len(requests), 72)
        text = "\n".join(requests)
        for token in ("op=quantize", "op=dequantize", "x=f16", "x=bf16", "x=f32", "q=s8", "q=u8", "dims=1x4096",
                      "dims=16x14336", "dims=4096x4096"):
            self.assertIn(token, text)

    def test_jobs_4(self):
        cache = self.path("cache")
        proc = self.cli("prewarm", self.small_manifest(), "--arch", ARCH, "--cache-dir", cache, "-j", "4")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(summary_of(proc), (SMALL_REQUESTS, _distinct_kernels, SMALL_REQUESTS - _distinct_kernels, 0))
        self.assertEqual(len(entries(cache)), _distinct_kernels)
        proc = self.cli("prewarm", self.small_manifest(), "--arch", ARCH, "--cache-dir", cache, "-j4", "--quiet")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(summary_of(proc), (SMALL_REQUESTS, 0, SMALL_REQUESTS, 0))
        self.assertEqual(proc.stderr, "", "--quiet prints no progress")

    def test_stdin_manifest(self):
        cache = self.golden_copy()
        manifest = ("quantize x=f32 q=s8 dims=1\r\n"   # CRLF line ends are fine
                    "   quantize\top=dequantize  x=f32 q=s8 dims=2x3   \n"
                    "# nothing\n\n"
                    "quantize x=f32 q=s8 dims=5  # same kernel")
        proc = self.cli("prewarm", "-", "--arch", ARCH, "--cache-dir", cache, stdin=manifest)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(summary_of(proc), (3, 0, 3, 0))
        proc = self.cli("prewarm", "-", "--arch", ARCH, "--cache-dir", cache, stdin="")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(summary_of(proc), (0, 0, 0, 0))

    def test_bad_lines(self):
        cases = [
            ("quantize x=bf17", "x=bf17", "unknown dtype"),
            ("quantize colour=red", "colour=red", "unknown key"),
            ("quantize x", "'x'", "expected key=value"),
            ("quantise x=f32", "quantise", "unknown op family"),
            ("quantize dims=99999999999999999999", "dims=99999999999999999999", "out of range"),
            ("quantize qmin=2147483648", "qmin=2147483648", "out of range"),
            ("quantize dims=1x2x3x4x5", "dims=1x2x3x4x5", "more than 4 dims"),
            ("quantize dims=4096x", "dims=4096x", "dims"),
            ("quantize dims=-4", "dims=-4", "negative"),
            ("quantize x=f32 x=f16", "x=f16", "given twice"),
            ("quantize symmetric=2", "symmetric=2", "0 or 1"),
            ("quantize align=", "align=", "empty value"),
            ("quantize =f32", "=f32", "expected key=value"),
            ("quantize x=f32\x00junk", "\\x00", "unknown dtype"),
        ]
        for bad, token, why in cases:
            with self.subTest(line=bad):
                manifest = write_file(self.path("bad.txt"), f"# header\nquantize x=f32 dims=8\n{bad}\nquantize\n")
                proc = self.cli("prewarm", manifest, "--arch", ARCH, "--cache-dir", self.path("cache"))
                self.assertEqual(proc.returncode, 1, proc.stderr)
                self.assertIn("line 3", proc.stderr)
                self.assertIn(token, proc.stderr)
                self.assertIn(why, proc.stderr)
                self.assertNotRegex(proc.stdout, SUMMARY_RE, "nothing is compiled from a malformed manifest")
                self.assertFalse(os.path.exists(self.path("cache")))

    def test_missing_manifest(self):
        proc = self.cli("prewarm", self.path("nope.txt"), "--arch", ARCH, "--cache-dir", self.path("cache"))
        self.assertEqual(proc.returncode, 1)
        self.assertIn("nope.txt", proc.stderr)

    def test_failed_request(self):
        cache = self.golden_copy()
        manifest = write_file(self.path("m.txt"), "quantize x=f32 q=s8 dims=8\n"
                                                  "quantize x=s8 q=s8 dims=8x8\n"  # x must be a float type
                                                  "quantize qmin=5 qmax=1 dims=8\n")
        proc = self.cli("prewarm", manifest, "--arch", ARCH, "--cache-dir", cache)
        self.assertEqual(proc.returncode, 1)
        self.assertEqual(summary_of(proc), (3, 0, 1, 2))
        self.assertRegex(proc.stderr, r"line 2 \(.*\): LOWBIT_UNSUPPORTED: ")
        self.assertRegex(proc.stderr, r"line 3 \(.*\): LOWBIT_INVALID_PROBLEM: ")

    def test_no_gpu_needs_arch(self):
        proc = self.cli("prewarm", self.small_manifest(), "--cache-dir", self.path("cache"), env=NO_GPU_ENV)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("--arch", proc.stderr)
        self.assertIn("no CUDA GPU", proc.stderr)

    def test_progress_bar_on_a_terminal(self):
        cache = self.golden_copy()
        master, slave = pty.openpty()
        try:
            env = dict(os.environ, **self.env, TERM="xterm")
            proc = subprocess.run([CLI, "prewarm", self.small_manifest(), "--arch", ARCH, "--cache-dir", cache],
                                  stdout=subprocess.PIPE, stderr=slave, text=True, env=env, timeout=300)
            os.close(slave)
            slave = None
            err = b""
            while True:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                err += chunk
        finally:
            if slave is not None:
                os.close(slave)
            os.close(master)
        self.assertEqual(proc.returncode, 0)
        self.assertEqual(summary_of(proc)[0], SMALL_REQUESTS)
        self.assertIn(b"\r", err)
        self.assertIn(f"{SMALL_REQUESTS}/{SMALL_REQUESTS}".encode(), err)
        self.assertNotRegex(err.decode(errors="replace"), r"(?m)^\[1/")

    def test_parser_never_crashes(self):
        """Arbitrary bytes as a manifest: a clean exit, never a signal."""
        rng = random.Random(1234)
        alphabet = b"quantize op=dims x 0123456789-#\t\n\r=_abcfsu\x00\xff"
        cache = self.golden_copy()
        for i in range(40):
            n = rng.randint(0, 200)
            data = bytes(rng.choice(alphabet) if rng.random() < 0.8 else rng.randint(0, 255) for _ in range(n))
            if i % 2:
                data = b"quantize " + data
            proc = subprocess.run([CLI, "prewarm", "-", "--arch", ARCH, "--cache-dir", cache, "-q"], input=data,
                                  capture_output=True, env=dict(os.environ, **self.env), timeout=300)
            with self.subTest(data=data):
                self.assertIn(proc.returncode, (0, 1), proc.stderr)
                if proc.returncode == 1:
                    self.assertTrue(b"line " in proc.stderr or b"failed" in proc.stdout, proc.stderr)


class Cache(CliTest):
    def test_verify_clean_then_damaged(self):
        cache = self.golden_copy()
        proc = self.cli("cache", "verify", "--cache-dir", cache)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertEqual(VERIFY_RE.search(proc.stdout).groups(), (str(_distinct_kernels), "0"))

        victim = os.path.join(cache, entries(cache)[0])
        with open(victim, "r+b") as f:
            size = os.path.getsize(victim)
            f.seek(size // 2)
            b = f.read(1)
            f.seek(size // 2)
            f.write(bytes([b[0] ^ 0x40]))
        proc = self.cli("cache", "verify", "--cache-dir", cache)
        self.assertEqual(proc.returncode, 1)
        self.assertEqual(VERIFY_RE.search(proc.stdout).groups(), (str(_distinct_kernels), "1"))
        self.assertIn(os.path.basename(victim), proc.stdout)
        self.assertTrue(os.path.exists(victim), "verify without --remove changes nothing")

        proc = self.cli("cache", "verify", "--remove", "--cache-dir", cache)
        self.assertEqual(proc.returncode, 1)
        self.assertFalse(os.path.exists(victim))
        proc = self.cli("cache", "verify", "--cache-dir", cache)
        self.assertEqual(proc.returncode, 0)
        self.assertEqual(VERIFY_RE.search(proc.stdout).groups(), (str(_distinct_kernels - 1), "0"))

    def test_verify_truncated_entry(self):
        cache = self.golden_copy()
        victim = os.path.join(cache, entries(cache)[-1])
        with open(victim, "r+b") as f:
            f.truncate(50)
        proc = self.cli("cache", "verify", "--cache-dir", cache)
        self.assertEqual(proc.returncode, 1)
        self.assertEqual(VERIFY_RE.search(proc.stdout).group(2), "1")
        ls = self.cli("cache", "ls", "--cache-dir", cache)
        self.assertEqual(ls.returncode, 0)
        self.assertIn("damaged", ls.stdout)

    def test_ls_json(self):
        cache = self.golden_copy()
        proc = self.cli("cache", "ls", "--json", "--cache-dir", cache)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        listed = json.loads(proc.stdout)
        self.assertEqual(len(listed), _distinct_kernels)
        self.assertEqual(sorted(e["key"] + ".lbk" for e in listed), entries(cache))
        for e in listed:
            self.assertTrue(e["valid"])
            self.assertEqual(e["arch"], ARCH)
            self.assertTrue(e["kernel"].startswith("quantize<"))
            self.assertGreater(e["bytes"], 0)
            self.assertLessEqual(abs(e["last_used"] - time.time()), 24 * 3600)

    def test_ls_missing_dir(self):
        proc = self.cli("cache", "ls", "--cache-dir", self.path("none"))
        self.assertEqual(proc.returncode, 0)
        self.assertIn("ls: 0 entries", proc.stdout)
        self.assertFalse(os.path.exists(self.path("none")))

    def test_gc(self):
        cache = self.golden_copy()
        proc = self.cli("cache", "gc", "--max-bytes", "512M", "--cache-dir", cache)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(len(entries(cache)), _distinct_kernels)
        proc = self.cli("cache", "gc", "--max-bytes", "1", "--cache-dir", cache)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn(f"removed {_distinct_kernels} entries", proc.stdout)
        self.assertEqual(entries(cache), [])
        ls = self.cli("cache", "ls", "--cache-dir", cache)
        self.assertIn("ls: 0 entries", ls.stdout)

    def test_gc_keeps_recent(self):
        cache = self.golden_copy()
        names = entries(cache)
        now = time.time()
        for i, name in enumerate(names):  # the first entry is the most recently used
            os.utime(os.path.join(cache, name), (now - i * 100, now - i * 100))
        newest = os.path.getsize(os.path.join(cache, names[0]))
        proc = self.cli("cache", "gc", "--max-bytes", str(newest), "--cache-dir", cache)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(entries(cache), [names[0]])

    def test_clear(self):
        cache = self.golden_copy()
        proc = self.cli("cache", "clear", "--cache-dir", cache)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn(f"removed {_distinct_kernels} entries", proc.stdout)
        self.assertEqual(entries(cache), [])
        self.assertEqual(self.cli("cache", "clear", "--cache-dir", cache).returncode, 0)

    def test_refuses_untrusted_dir(self):
        cache = self.golden_copy()
        os.chmod(cache, 0o777)  # writable by others: lowbit must not trust (or report) it
        for args in (["ls"], ["verify"], ["verify", "--remove"], ["gc", "--max-bytes", "1"], ["clear"]):
            with self.subTest(args=args):
                proc = self.cli("cache", *args, "--cache-dir", cache)
                self.assertEqual(proc.returncode, 1, proc.stdout)
                self.assertIn("writable by group or others", proc.stderr)
        self.assertEqual(len(entries(cache)), _distinct_kernels, "nothing was removed")

    def test_default_dir_from_environment(self):
        cache = self.golden_copy()
        proc = self.cli("cache", "verify", env={"LOWBIT_CACHE_DIR": cache})
        self.assertEqual(proc.returncode, 0)
        self.assertEqual(VERIFY_RE.search(proc.stdout).group(1), str(_distinct_kernels))


class Selftest(CliTest):
    def test_no_gpu(self):
        proc = self.cli("selftest", "--cache-dir", self.path("c"), env=NO_GPU_ENV)
        self.assertEqual(proc.returncode, 2)
        self.assertRegex(proc.stdout, r"^selftest: skipped: no CUDA GPU \(.+\)\n$")
        proc = self.cli("selftest", "--allow-no-gpu", "--cache-dir", self.path("c"), env=NO_GPU_ENV)
        self.assertEqual(proc.returncode, 0)
        self.assertRegex(proc.stdout, r"^selftest: skipped: no CUDA GPU \(.+\)\n$")


class MultiProcess(CliTest):
    def test_eight_processes_one_cache(self):
        """8 concurrent prewarms of one manifest into one empty cache compile each
        kernel exactly once between them and leave an intact cache."""
        cache = self.path("shared-cache")
        manifest = self.small_manifest()
        env = dict(os.environ, **self.env)
        procs = [subprocess.Popen([CLI, "prewarm", manifest, "--arch", ARCH, "--cache-dir", cache, "-j", "2"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for _ in range(8)]
        results = []
        for p in procs:
            out, err = p.communicate(timeout=600)
            results.append((p.returncode, out, err))
        compiled_total = 0
        for rc, out, err in results:
            self.assertEqual(rc, 0, err)
            m = SUMMARY_RE.search(out)
            self.assertIsNotNone(m, out + err)
            requests, compiled, cached, failed = (int(g) for g in m.groups()[:4])
            self.assertEqual((requests, failed), (SMALL_REQUESTS, 0))
            self.assertEqual(compiled + cached, requests)
            compiled_total += compiled
        self.assertEqual(compiled_total, _distinct_kernels,
                         "every distinct kernel compiled exactly once across the processes:\n" +
                         "\n".join(out for _, out, _ in results))
        verify = self.cli("cache", "verify", "--cache-dir", cache)
        self.assertEqual(verify.returncode, 0, verify.stdout)
        self.assertEqual(VERIFY_RE.search(verify.stdout).groups(), (str(_distinct_kernels), "0"))
        self.assertEqual(len(entries(cache)), _distinct_kernels)
        leftovers = [n for n in os.listdir(cache) if n not in entries(cache) and n != "locks"]
        self.assertEqual(leftovers, [], "no temporary files left behind")


def main():
    global CLI
    argv = sys.argv[1:]
    if argv and not argv[0].startswith("-"):
        CLI = argv.pop(0)
    else:
        build = os.environ.get("LOWBIT_BUILD_DIR", "build")
        CLI = os.environ.get("LOWBIT_CLI") or os.path.join(build, "tools", "lowbit")
    CLI = os.path.abspath(CLI)
    if not os.access(CLI, os.X_OK):
        print(f"cli: the lowbit executable {CLI} is missing; build it first", file=sys.stderr)
        return 1
    return suite_summary.run_unittest("cli", argv)


if __name__ == "__main__":
    sys.exit(main())
