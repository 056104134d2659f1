#!/usr/bin/python3
"""Prints the build targets (paths relative to BUILD) that the selected meson tests run: every build-tree file
named on their command lines and the targets they depend on (meson test's `depends`).
Usage: suite_targets.py BUILD [--suite S]... [TEST]...   (reads `meson introspect` of BUILD itself)
"""
import json
import os
import subprocess
import sys

build, want = os.path.abspath(sys.argv[1]), sys.argv[2:]
suites = {w.split(":")[-1] for k, w in enumerate(want) if k and want[k - 1] == "--suite"}
names = {w for k, w in enumerate(want) if not w.startswith("--") and not (k and want[k - 1] == "--suite")}
out = set()
def intro(what):
    return json.loads(subprocess.run(["meson", "introspect", what, build], capture_output=True, text=True,
                                     check=True).stdout)


files = {t["id"]: t["filename"] for t in intro("--targets")}
for t in intro("--tests"):
    if not ({s.split(":")[-1] for s in t["suite"]} & suites or t["name"] in names):
        continue
    for a in t["cmd"]:
        if isinstance(a, str) and a.startswith(build + "/") and not a.endswith((".py", ".toml")):
            out.add(os.path.relpath(a, build))
    for d in t.get("depends", []):
        out.update(os.path.relpath(f, build) for f in files.get(d, []))
print("\n".join(sorted(out)))
