#!/usr/bin/env python3
"""Concurrency soak: PROCS processes x THREADS threads creating and running
plans over one shared, initially empty cache directory, for SECONDS.

    soak.py --worker BUILD/soak_worker --cli BUILD/tools/lowbit/lowbit
            [--procs 8] [--threads 8] [--seconds 30] [--pool 12]
            [--arch sm_90a | --device 0] [--name soak]

Checks, each counted in the closing "<name>: N passed, N failed, N skipped"
line (appended to $LOWBIT_TEST_SUMMARY when set):
  - every process exits 0 with no failed request (one check per process);
  - every kernel is compiled once per cache dir: the compiles summed over all
    processes and contexts equal the number of distinct kernel keys seen, and
    no compile failed;
  - afterwards every entry is valid (`lowbit cache verify`), one entry per
    distinct key, and no temporary file is left.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import suite_summary  # noqa: E402


def parse_kv(text):
    out = {"key": [], "failure": []}
    for line in text.splitlines():
        if "=" not in line:
            continue
        k, v = line.split("=", 1)
        if k in ("key", "failure"):
            out[k].append(v)
        else:
            out[k] = v
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", required=True)
    ap.add_argument("--cli", required=True)
    ap.add_argument("--procs", type=int, default=int(os.environ.get("LOWBIT_SOAK_PROCS", 8)))
    ap.add_argument("--threads", type=int, default=int(os.environ.get("LOWBIT_SOAK_THREADS", 8)))
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("LOWBIT_SOAK_SECONDS", 30)))
    ap.add_argument("--pool", type=int, default=12)
    ap.add_argument("--arch", default="sm_90a")
    ap.add_argument("--device", type=int, default=-1)
    ap.add_argument("--name", default="soak")
    ap.add_argument("--keep", action="store_true", help="keep the cache directory")
    a = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="lowbit-soak-")
    cache = os.path.join(tmp, "cache")
    target = ["--device", str(a.device)] if a.device >= 0 else ["--arch", a.arch]
    env = dict(os.environ)
    for v in ("LOWBIT_CACHE_PATH", "LOWBIT_CACHE_DIR"):
        env.pop(v, None)
    started = time.monotonic()
    procs = []
    for p in range(a.procs):
        cmd = [a.worker, "--cache-dir", cache, "--threads", str(a.threads), "--seconds", str(a.seconds),
               "--seed", str(1000 + p), "--pool", str(a.pool)] + target
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    passed = failed = 0
    results = []
    limit = a.seconds + 600  # compiles of the whole pool on a slow machine, plus teardown
    for p, proc in enumerate(procs):
        try:
            out, err = proc.communicate(timeout=max(1.0, limit - (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            err += "\n(killed: timed out)"
        kv = parse_kv(out)
        results.append(kv)
        ok = proc.returncode == 0 and kv.get("failures") == "0"
        if ok:
            passed += 1
        else:
            failed += 1
            print(f"{a.name}: process {p} failed (exit {proc.returncode})")
            for f in kv["failure"][:10]:
                print(f"  failure: {f}")
            if err.strip():
                print("  stderr: " + err.strip()[-2000:].replace("\n", "\n  "))
    wall = time.monotonic() - started

    def total(key):
        return sum(int(r.get(key, "0") or 0) for r in results)

    keys = set()
    for r in results:
        keys.update(r["key"])
    compiles, failures_c = total("compiles"), total("compile_failures")
    print(f"{a.name}: {a.procs} processes x {a.threads} threads, {a.seconds:g} s, pool of {a.pool} kernels, "
          f"{wall:.1f} s wall")
    print(f"{a.name}: plans={total('plans')} runs={total('runs')} memory_hits={total('memory_hits')} "
          f"disk_hits={total('disk_hits')} misses={total('misses')} compiles={compiles} "
          f"compile_failures={failures_c} damaged={total('damaged')} distinct_keys={len(keys)}")
    if compiles == len(keys) and failures_c == 0 and len(keys) > 0:
        passed += 1
    else:
        failed += 1
        print(f"{a.name}: FAILED compile-once: {compiles} compiles for {len(keys)} distinct kernels "
              f"({failures_c} compile failures)")

    verify = subprocess.run([a.cli, "cache", "verify", "--cache-dir", cache], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    entries = [n for n in os.listdir(cache) if n.endswith(".lbk")] if os.path.isdir(cache) else []
    temps = [n for n in os.listdir(cache) if n.startswith(".tmp-")] if os.path.isdir(cache) else []
    print(f"{a.name}: lowbit cache verify: {verify.stdout.strip().splitlines()[-1] if verify.stdout.strip() else '?'}")
    if verify.returncode == 0 and len(entries) == len(keys) and not temps:
        passed += 1
    else:
        failed += 1
        print(f"{a.name}: FAILED verify (exit {verify.returncode}): {len(entries)} entries for {len(keys)} keys, "
              f"{len(temps)} temp files\n{verify.stdout}")
    if not a.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"{a.name}: cache kept in {cache}")
    suite_summary.report(a.name, passed, failed)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
