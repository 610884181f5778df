#!/usr/bin/env python3
"""Checks that the code snippets of a Markdown file are the ones the tests run.

A snippet in the Markdown is a fenced code block right after a marker line

    <!-- snippet: capi/rust/lowbit/tests/readme_snippet.rs -->

(path relative to the repository root). The block must equal, after removing
the common indentation, the lines between "--- snippet begin ---" and
"--- snippet end ---" in that file (the marker lines excluded). Prints
"N passed, N failed, 0 skipped".

    python3 capi/check_snippets.py [MARKDOWN...]   (default: README.md)
"""
import os
import re
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKER = re.compile(r"^<!-- snippet: (\S+) -->\s*$")


def source_snippet(path):
    with open(os.path.join(ROOT, path)) as f:
        lines = f.read().splitlines()
    begin = [i for i, l in enumerate(lines) if "--- snippet begin ---" in l]
    end = [i for i, l in enumerate(lines) if "--- snippet end ---" in l]
    if len(begin) != 1 or len(end) != 1 or end[0] <= begin[0]:
        raise ValueError("%s: needs exactly one snippet begin/end pair" % path)
    body = "\n".join(lines[begin[0] + 1:end[0]]).expandtabs(4)
    return textwrap.dedent(body).strip("\n")


def markdown_snippets(md_path):
    with open(md_path) as f:
        lines = f.read().splitlines()
    i = 0
    while i < len(lines):
        m = MARKER.match(lines[i])
        if m:
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            k = j + 1
            while k < len(lines) and not lines[k].startswith("```"):
                k += 1
            yield m.group(1), "\n".join(lines[j + 1:k]).expandtabs(4).strip("\n"), i + 1
            i = k
        i += 1


def main(argv):
    files = argv or [os.path.join(ROOT, "README.md")]
    passed = failed = 0
    for md in files:
        found = 0
        for path, block, line in markdown_snippets(md):
            found += 1
            try:
                want = source_snippet(path)
            except (OSError, ValueError) as e:
                print("FAILED %s:%d: %s" % (md, line, e))
                failed += 1
                continue
            if block == want:
                print("ok     %s:%d matches %s" % (os.path.relpath(md, ROOT), line, path))
                passed += 1
            else:
                print("FAILED %s:%d differs from %s; the tested code is:\n%s" % (md, line, path, want))
                failed += 1
        if found == 0:
            print("FAILED %s: no <!-- snippet: ... --> markers" % md)
            failed += 1
    print("%d passed, %d failed, 0 skipped" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
