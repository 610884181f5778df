#!/usr/bin/env python3
"""Draws the JSON of `lowbit bench` / `lowbit-bench --json FILE` as PNG files.

    python3 tools/plot_bench.py BENCH.json [--out DIR] [--prefix NAME] [--check]

For every suite present in the file (any subset of them):
  PREFIX-SUITE-fraction.png  the fraction of the bounding ceiling (named on the
                             axis: copy, read or cuBLAS) against M, one panel
                             per shape, one line per op / format / dtype; a
                             suite with a single M per shape (quantize) is drawn
                             as bars instead
  PREFIX-SUITE-cublas.png    the speed-up over cuBLAS against M (points that
                             have a cuBLAS time only)
  PREFIX-jit.png             the JIT's own costs (host microseconds, log scale)
PREFIX defaults to the JSON file's name without ".json", DIR to its folder.
--check only validates the file against the schema (no matplotlib needed);
the exit status is 1 if it does not conform.

Needs matplotlib (python3 -m pip install matplotlib) for the PNG files.
"""

import argparse
import json
import math
import os
import sys
from collections import OrderedDict

SCHEMA = "lowbit-bench/1"
CEILINGS = ("copy", "read", "cublas", "none")
UNITS = ("us", "us_host")

# name -> accepted types; float fields accept int too.
NUM = (int, float)
RECORD_FIELDS = {
    "suite": (str,), "op": (str,), "format": (str,), "dtype": (str,), "config": (str,), "unit": (str,),
    "group": (int,), "m": (int,), "n": (int,), "k": (int,),
    "median_us": NUM, "p10_us": NUM, "p90_us": NUM, "min_us": NUM, "max_us": NUM, "runs": (int,),
    "bytes": NUM, "gbps": NUM, "flops": NUM, "tflops": NUM,
    "ceiling": (str,), "ceiling_gbps": NUM, "fraction_of_ceiling": NUM,
    "cublas_us": NUM + (type(None),), "speedup_vs_cublas": NUM + (type(None),),
}
ENVIRONMENT_FIELDS = {
    "gpu": (str,), "sm_count": (int,), "driver": (str,), "driver_cuda_version": (int,), "lowbit": (str,),
    "date": (str,), "max_sm_clock_khz": (int,), "max_mem_clock_khz": (int,), "l2_bytes": (int,),
    "clocks_at_start": (dict, type(None)), "clocks_at_end": (dict, type(None)),
}
MODEL_OF = {(4096, 6144): "8B qkv", (4096, 4096): "8B o", (4096, 28672): "8B gate_up", (14336, 4096): "8B down",
            (8192, 10240): "70B qkv", (8192, 8192): "70B o", (8192, 57344): "70B gate_up",
            (28672, 8192): "70B down"}


def _close(a, b, rel=2e-3, abs_=1e-6):
    return abs(a - b) <= max(abs_, rel * max(abs(a), abs(b)))


def _is(value, types):
    # bool is an int in Python; JSON booleans are not numbers here.
    return isinstance(value, types) and not (isinstance(value, bool) and bool not in types)


def validate(doc):
    """Returns a list of problems (empty when `doc` conforms to the schema)."""
    problems = []
    if not isinstance(doc, dict):
        return ["the document is not a JSON object"]
    if doc.get("schema") != SCHEMA:
        problems.append(f"schema is {doc.get('schema')!r}, expected {SCHEMA!r}")
    env = doc.get("environment")
    if not isinstance(env, dict):
        problems.append("environment: missing or not an object")
    else:
        for key, types in ENVIRONMENT_FIELDS.items():
            if key not in env:
                problems.append(f"environment.{key}: missing")
            elif not _is(env[key], types):
                problems.append(f"environment.{key}: {type(env[key]).__name__} is not {types[0].__name__}")
    ceil = doc.get("ceilings")
    if not isinstance(ceil, dict):
        problems.append("ceilings: missing or not an object")
    else:
        for key in ("copy_gbps", "read_gbps"):
            if not _is(ceil.get(key), NUM) or ceil[key] <= 0:
                problems.append(f"ceilings.{key}: missing or not a positive number")
    suites = doc.get("suites")
    ran = set()
    if not isinstance(suites, dict) or not isinstance(suites.get("ran"), list):
        problems.append("suites: missing, or without the list 'ran'")
    else:
        ran = set(suites["ran"]) | set((suites.get("failed") or {}).keys())
    records = doc.get("records")
    if not isinstance(records, list):
        return problems + ["records: missing or not a list"]
    for i, r in enumerate(records):
        where = f"records[{i}]"
        if not isinstance(r, dict):
            problems.append(f"{where}: not an object")
            continue
        bad = False
        for key, types in RECORD_FIELDS.items():
            if key not in r:
                problems.append(f"{where}.{key}: missing")
                bad = True
            elif not _is(r[key], types):
                problems.append(f"{where}.{key}: {type(r[key]).__name__} is not {types[0].__name__}")
                bad = True
        if bad:
            continue
        where = f"{where} ({r['suite']} {r['op']} {r['format']} {r['dtype']} M{r['m']} N{r['n']} K{r['k']})"
        if ran and r["suite"] not in ran:
            problems.append(f"{where}: suite {r['suite']!r} is not among suites.ran / suites.failed")
        if r["unit"] not in UNITS:
            problems.append(f"{where}: unit {r['unit']!r} is not one of {UNITS}")
        if r["ceiling"] not in CEILINGS:
            problems.append(f"{where}: ceiling {r['ceiling']!r} is not one of {CEILINGS}")
        if r["runs"] < 1:
            problems.append(f"{where}: runs < 1")
        if r["median_us"] < 0 and r["unit"] == "us":
            problems.append(f"{where}: a negative GPU time")  # host differences may be negative
        t = [r["min_us"], r["p10_us"], r["median_us"], r["p90_us"], r["max_us"]]
        if any(b < a and not _close(a, b) for a, b in zip(t, t[1:])):
            problems.append(f"{where}: min <= p10 <= median <= p90 <= max does not hold: {t}")
        for key in ("m", "n", "k", "group", "bytes", "flops", "gbps", "tflops", "ceiling_gbps",
                    "fraction_of_ceiling"):
            if r[key] < 0:
                problems.append(f"{where}.{key}: negative")
        if r["median_us"] > 0:
            if not _close(r["gbps"], r["bytes"] / (r["median_us"] * 1e3)):
                problems.append(f"{where}: gbps {r['gbps']} != bytes / median")
            if r["flops"] > 0 and not _close(r["tflops"], r["flops"] / (r["median_us"] * 1e6)):
                problems.append(f"{where}: tflops {r['tflops']} != flops / median")
        if r["ceiling"] in ("copy", "read"):
            if r["ceiling_gbps"] <= 0:
                problems.append(f"{where}: ceiling {r['ceiling']} without ceiling_gbps")
            elif not _close(r["fraction_of_ceiling"], r["gbps"] / r["ceiling_gbps"]):
                problems.append(f"{where}: fraction_of_ceiling {r['fraction_of_ceiling']} != gbps / ceiling_gbps")
            elif isinstance(ceil, dict) and _is(ceil.get(r["ceiling"] + "_gbps"), NUM) and \
                    not _close(r["ceiling_gbps"], ceil[r["ceiling"] + "_gbps"]):
                problems.append(f"{where}: ceiling_gbps {r['ceiling_gbps']} is not ceilings.{r['ceiling']}_gbps")
        if (r["cublas_us"] is None) != (r["speedup_vs_cublas"] is None):
            problems.append(f"{where}: cublas_us and speedup_vs_cublas must both be null or both numbers")
        elif r["cublas_us"] is not None:
            if r["cublas_us"] <= 0 or r["median_us"] <= 0:
                problems.append(f"{where}: cublas_us and median_us must be positive")
            elif not _close(r["speedup_vs_cublas"], r["cublas_us"] / r["median_us"]):
                problems.append(f"{where}: speedup_vs_cublas != cublas_us / median_us")
        if r["ceiling"] == "cublas":
            if r["cublas_us"] is None:
                problems.append(f"{where}: ceiling cublas without cublas_us")
            elif not _close(r["fraction_of_ceiling"], r["speedup_vs_cublas"]):
                problems.append(f"{where}: fraction of the cuBLAS ceiling != speedup_vs_cublas")
    return problems


def load(path):
    with open(path) as f:
        return json.load(f)


# ---- plotting -------------------------------------------------------------------------

def _suites(records):
    return list(OrderedDict.fromkeys(r["suite"] for r in records))


def _shape_key(r):
    return (r["n"], r["k"])


def _shape_title(key, records):
    n, k = key
    if k > 0:
        name = MODEL_OF.get((k, n))
        return f"{name}: N={n} K={k}" if name else f"N={n} K={k}"
    return f"N={n}"


def _series_label(r):
    parts = [r["op"], r["format"], r["dtype"]]
    if r["group"]:
        parts.append(f"g{r['group']}")
    return " ".join(p for p in parts if p)


def _grid(plt, count, width=5.0, height=3.6):
    cols = min(4, count)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows + 0.8), squeeze=False)
    flat = [a for row in axes for a in row]
    for a in flat[count:]:
        a.set_visible(False)
    return fig, flat[:count]


def _ceiling_text(doc, records):
    names = sorted({r["ceiling"] for r in records if r["ceiling"] != "none"})
    ceil = doc.get("ceilings", {})
    parts = []
    for n in names:
        v = ceil.get(n + "_gbps")
        parts.append(f"{n} {v:.0f} GB/s" if isinstance(v, (int, float)) else n)
    return ", ".join(parts)


def _title(doc, text):
    env = doc.get("environment", {})
    return f"{text}\n{env.get('gpu', '?')}, driver {env.get('driver', '?')}, lowbit {env.get('lowbit', '?')}, " \
           f"{env.get('date', '')}"


def _shape_order(key):
    # DESIGN.md's order (8B then 70B: qkv, o, gate_up, down), then the others.
    n, k = key
    order = list(MODEL_OF)
    return (0, order.index((k, n))) if (k, n) in order else (1, k == 0, k, n)


def _by_shape(records):
    groups = OrderedDict()
    for r in sorted(records, key=lambda r: _shape_order(_shape_key(r))):
        groups.setdefault(_shape_key(r), []).append(r)
    return groups


def _line_panels(plt, doc, suite, records, value, ylabel, title, path, reference=None):
    groups = _by_shape(records)
    fig, axes = _grid(plt, len(groups))
    # One colour per format (and op), solid for f16, dashed for bf16: the same
    # series looks the same in every panel.
    colours = OrderedDict()
    for r in records:
        colours.setdefault((r["op"], r["format"]), f"C{len(colours) % 10}")
    handles = OrderedDict()
    for ax, (key, rs) in zip(axes, groups.items()):
        series = OrderedDict()
        for r in sorted(rs, key=lambda r: r["m"]):
            series.setdefault(_series_label(r), []).append(r)
        for label, pts in series.items():
            p0 = pts[0]
            (h,) = ax.plot([p["m"] for p in pts], [value(p) for p in pts], marker="o", markersize=3, label=label,
                           color=colours[(p0["op"], p0["format"])],
                           linestyle="--" if p0["dtype"] == "bf16" else "-")
            handles.setdefault(label, h)
        if reference is not None:
            ax.axhline(reference, color="black", linewidth=0.8, linestyle="--")
        ax.set_xscale("log", base=2)
        ax.set_title(_shape_title(key, rs), fontsize=9)
        ax.set_xlabel("M")
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
    fig.legend(list(handles.values()), list(handles.keys()), loc="lower center",
               ncol=min(6, len(handles)), fontsize=7)
    fig.suptitle(_title(doc, title), fontsize=10)
    fig.tight_layout(rect=(0, 0.06 + 0.02 * (len(handles) // 6), 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _bar_panels(plt, doc, suite, records, path):
    groups = _by_shape(records)
    fig, axes = _grid(plt, len(groups), width=6.0, height=0.22 * max(len(v) for v in groups.values()) + 1.2)
    for ax, (key, rs) in zip(axes, groups.items()):
        labels = [_series_label(r) for r in rs]
        vals = [r["fraction_of_ceiling"] for r in rs]
        ax.barh(range(len(rs)), vals, color=["C0" if r["ceiling"] == "copy" else "C1" for r in rs])
        ax.set_yticks(range(len(rs)))
        ax.set_yticklabels(labels, fontsize=7)
        ax.invert_yaxis()
        ax.axvline(1.0, color="black", linewidth=0.8, linestyle="--")
        ax.set_xlim(0, max(1.25, max(vals) * 1.25))
        for i, r in enumerate(rs):
            ax.text(vals[i] + 0.01, i, f"{100 * vals[i]:.0f}%  {_us_text(r['median_us'])}", va="center", fontsize=6)
        ms = sorted({r["m"] for r in rs})
        ax.set_title(f"M={','.join(map(str, ms))} {_shape_title(key, rs)}", fontsize=9)
        ax.set_xlabel(f"fraction of ceiling ({_ceiling_text(doc, rs)})", fontsize=8)
        ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle(_title(doc, f"{suite}: fraction of the bounding ceiling"), fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _us_text(us):
    if abs(us) >= 1e6:
        return f"{us / 1e6:.2f} s"
    if abs(us) >= 1e3:
        return f"{us / 1e3:.1f} ms"
    return f"{us:.2f} us"


def _jit_panel(plt, doc, records, path):
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(records) + 1.8))
    y = list(range(len(records)))
    floor = 1e-2  # log scale: a difference can be zero or negative
    ax.barh(y, [max(r["median_us"], floor) for r in records], color="C0", label="median")
    mins = [(i, r["min_us"]) for i, r in enumerate(records) if r["min_us"] > 0]
    ax.plot([v for _, v in mins], [i for i, _ in mins], "k|", markersize=14, label="min")
    targets = [(i, r.get("target_us")) for i, r in enumerate(records) if isinstance(r.get("target_us"), (int, float))]
    if targets:
        ax.plot([t for _, t in targets], [i for i, _ in targets], "rx", markersize=8, label="target")
    for i, r in enumerate(records):
        ax.text(max(r["median_us"], floor) * 1.15, i, _us_text(r["median_us"]), va="center", fontsize=7)
    ax.set_yticks(y)
    ax.set_yticklabels([r["op"] for r in records], fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(floor, max(r["median_us"] for r in records) * 20)
    ax.set_xlabel("host microseconds (log)")
    ax.grid(True, axis="x", alpha=0.3)
    fig.legend(loc="upper right", fontsize=7, ncol=3)
    fig.suptitle(_title(doc, "jit: the cost of the JIT itself"), fontsize=10, x=0.4)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot(doc, out_dir, prefix):
    """Writes the PNG files for `doc`; returns their paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    written = []
    records = doc.get("records", [])
    for suite in _suites(records):
        rs = [r for r in records if r["suite"] == suite]
        timed = [r for r in rs if r["unit"] == "us" and r["ceiling"] != "none"]
        if timed:
            path = os.path.join(out_dir, f"{prefix}{suite}-fraction.png")
            multi_m = any(len({r["m"] for r in g}) > 1 for g in _by_shape(timed).values())
            if multi_m:
                _line_panels(plt, doc, suite, timed, lambda r: r["fraction_of_ceiling"],
                             f"fraction of ceiling ({_ceiling_text(doc, timed)})",
                             f"{suite}: fraction of the bounding ceiling vs M", path, reference=1.0)
            else:
                _bar_panels(plt, doc, suite, timed, path)
            written.append(path)
        vs = [r for r in rs if r["speedup_vs_cublas"] is not None]
        if vs:
            path = os.path.join(out_dir, f"{prefix}{suite}-cublas.png")
            _line_panels(plt, doc, suite, vs, lambda r: r["speedup_vs_cublas"], "speed-up over cuBLAS (x)",
                         f"{suite}: speed-up over cuBLAS f16/bf16 GEMM on the same M, N, K (>1: faster)", path,
                         reference=1.0)
            written.append(path)
        host = [r for r in rs if r["unit"] == "us_host"]
        if host:
            path = os.path.join(out_dir, f"{prefix}{suite}.png")
            _jit_panel(plt, doc, host, path)
            written.append(path)
    return written


def main(argv=None):
    ap = argparse.ArgumentParser(description="Draw lowbit-bench JSON as PNG files.")
    ap.add_argument("json", help="the file written by `lowbit bench --json FILE`")
    ap.add_argument("--out", help="output folder (default: the JSON file's folder)")
    ap.add_argument("--prefix", help="file name prefix (default: the JSON file's name without .json, then '-')")
    ap.add_argument("--check", action="store_true", help="only validate the file against the schema")
    args = ap.parse_args(argv)
    try:
        doc = load(args.json)
    except (OSError, ValueError) as e:
        print(f"plot_bench: cannot read {args.json}: {e}", file=sys.stderr)
        return 1
    problems = validate(doc)
    for p in problems:
        print(f"plot_bench: {args.json}: {p}", file=sys.stderr)
    if args.check:
        if not problems:
            print(f"{args.json}: conforms to {SCHEMA} ({len(doc['records'])} records)")
        return 1 if problems else 0
    if problems:
        print("plot_bench: drawing anyway, from the records that have the needed fields", file=sys.stderr)
        doc = dict(doc, records=[r for r in doc.get("records", []) if isinstance(r, dict) and
                                 all(k in r for k in RECORD_FIELDS)])
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("plot_bench: matplotlib is not installed (python3 -m pip install matplotlib)", file=sys.stderr)
        return 2
    stem = os.path.splitext(os.path.basename(args.json))[0]
    out_dir = args.out or os.path.dirname(os.path.abspath(args.json))
    prefix = args.prefix if args.prefix is not None else stem + "-"
    written = plot(doc, out_dir, prefix)
    if not written:
        print("plot_bench: no records to draw")
    for w in written:
        print(w)
    return 0


if __name__ == "__main__":
    sys.exit(main())
