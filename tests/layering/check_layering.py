#!/usr/bin/python3
"""The layering of docs/ARCHITECTURE.md "Layers", checked on the sources and on the build.

  apps -> dataplane -> {flow, esp, ctrl, config} -> {crypto, net}

(a) every `#include "X/..."` in lib/<lib>/ names <lib> itself or a library below it (table ALLOWED);
    the offline apps include only what they may (APP_ALLOWED);
(b) no lib/config, lib/ctrl, lib/flow or lib/net source, and no DPDK-free app, includes a DPDK header (rte_*.h);
(c) in the configured build (meson introspect + build.ninja): the DPDK-free libraries and executables are
    compiled without DPDK's include paths and linked without DPDK's libraries or mg_esp/mg_dataplane.

A self-test first runs (a) and (b) on a small tree with one broken rule of each kind and fails unless each is
caught, so this test cannot pass by checking nothing.

usage: check_layering.py --source-root DIR [--build-root DIR]      exit 0 ok, 1 a rule is broken
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

# What each library may include besides itself. Mirrors docs/ARCHITECTURE.md; ctrl takes net/limits.h (the product's limits).
ALLOWED = {
    "net": set(),
    "crypto": set(),
    "esp": {"crypto", "net"},
    "flow": {"net"},
    "route": {"net"},
    "ctrl": {"net"},
    "config": {"crypto", "net"},
    "seqstate": set(),
    "keying": set(),
    "hostif": {"net"},
    "log": set(),
    "dataplane": {"flow", "route", "esp", "ctrl", "config", "seqstate", "keying", "hostif", "log", "crypto", "net"},
}
# The offline tools: no data plane, no ESP engine, no DPDK.
APP_ALLOWED = {
    "meshgate-spread": {"flow", "config", "crypto", "net"},
    "meshgatectl": {"ctrl", "net"},
}
NO_DPDK_LIBS = ("net", "crypto", "config", "ctrl", "flow", "seqstate", "keying", "hostif")
# Headers that may include DPDK although their library must not: header-only helpers that no lib/ source
# includes (checked below), so they are never part of the library.
#   flow/hash_candidates.h: the flow hashes compared by tests/flow/test_hash.cpp and bench/flow (Toeplitz
#   through rte_thash); mg_flow itself uses none of it.
DPDK_EXEMPT = {"flow/hash_candidates.h"}
DAG_LINE = "apps -> dataplane -> {flow, esp, ctrl, config} -> {crypto, net}"

SOURCE_EXT = (".h", ".hpp", ".cpp", ".cc", ".c")
INCLUDE_RE = re.compile(r'^\s*#\s*include\s*([<"])([^">]+)[">]', re.M)


def sources(d):
    for dirpath, _, files in os.walk(d):
        for f in sorted(files):
            if f.endswith(SOURCE_EXT):
                yield os.path.join(dirpath, f)


def includes(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    for m in INCLUDE_RE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        yield line, m.group(1), m.group(2)


def check_sources(root):
    """(a) and (b) on a source tree; returns a list of problems."""
    problems = []
    libdir = os.path.join(root, "lib")
    libs = sorted(d for d in os.listdir(libdir) if os.path.isdir(os.path.join(libdir, d)))
    lib_includers = {}  # "lib/header" -> lib sources that include it
    for lib in libs:
        if lib not in ALLOWED:
            problems.append(f"lib/{lib}: no layering rule for this library (add it to ALLOWED and docs/ARCHITECTURE.md)")
            continue
        for path in sources(os.path.join(libdir, lib)):
            rel = os.path.relpath(path, root)
            own = os.path.relpath(path, libdir)
            for line, kind, inc in includes(path):
                target = inc.split("/", 1)[0] if "/" in inc else None
                if kind == '"' and target in libs and target != lib and target not in ALLOWED[lib]:
                    problems.append(f"{rel}:{line}: includes \"{inc}\": lib/{lib} may include only "
                                    f"{sorted(ALLOWED[lib]) or 'nothing'} (docs/ARCHITECTURE.md: {DAG_LINE})")
                if kind == '"' and target in libs:
                    lib_includers.setdefault(inc, []).append(rel)
                if (lib in NO_DPDK_LIBS and os.path.basename(inc).startswith("rte_")
                        and own not in DPDK_EXEMPT):
                    problems.append(f"{rel}:{line}: includes <{inc}>: lib/{lib} must not depend on DPDK")
    for h in sorted(DPDK_EXEMPT):
        for user in lib_includers.get(h, []):
            problems.append(f"{user}: includes \"{h}\", which uses DPDK and is meant for tests and benches only")
    for app, allowed in APP_ALLOWED.items():
        d = os.path.join(root, "apps", app)
        if not os.path.isdir(d):
            continue
        for path in sources(d):
            rel = os.path.relpath(path, root)
            for line, kind, inc in includes(path):
                target = inc.split("/", 1)[0] if "/" in inc else None
                if kind == '"' and target in libs and target not in allowed:
                    problems.append(f"{rel}:{line}: includes \"{inc}\": {app} may use only {sorted(allowed)}")
                if os.path.basename(inc).startswith("rte_"):
                    problems.append(f"{rel}:{line}: includes <{inc}>: {app} must build without DPDK")
    return problems


DPDK_COMPILE = ("/include/dpdk", "rte_config.h")
DPDK_LINK = re.compile(r"librte_|-lrte_|libmg_esp\.a|libmg_dataplane\.a")
# Targets that must not see DPDK. The libraries must exist; the executables are optional build products.
NO_DPDK_TARGETS = {"mg_net": True, "mg_crypto": True, "mg_config": True, "mg_ctrl": True, "mg_flow": True,
                   "mg_seqstate": True, "mg_keying": True, "mg_hostif": True,
                   "meshgate-spread": False, "meshgatectl": False, "test_config": False}


def check_build(build):
    problems = []
    out = subprocess.run(["meson", "introspect", "--targets", build], capture_output=True, text=True)
    if out.returncode != 0:
        return [f"meson introspect --targets {build} failed: {out.stderr.strip()}"]
    targets = {t["name"]: t for t in json.loads(out.stdout)}
    with open(os.path.join(build, "build.ninja"), encoding="utf-8") as f:
        ninja = f.read()
    for name, required in NO_DPDK_TARGETS.items():
        t = targets.get(name)
        if t is None:
            if required:
                problems.append(f"{name}: not a target of the build in {build}")
            continue
        for s in t.get("target_sources", []):
            for p in s.get("parameters", []):
                if any(m in p for m in DPDK_COMPILE):
                    problems.append(f"{name}: compiled with DPDK's {p} (it must not depend on DPDK)")
                    break
        if t["type"] == "executable":
            for fn in t["filename"]:
                rel = os.path.relpath(fn, build)
                m = re.search(r"^build " + re.escape(rel) + r":.*?(?=^build |\Z)", ninja, re.M | re.S)
                if not m:
                    problems.append(f"{name}: no link rule for {rel} in build.ninja")
                    continue
                bad = sorted(set(DPDK_LINK.findall(m.group(0))))
                if bad:
                    problems.append(f"{name}: linked with {', '.join(bad)} (it must build without DPDK)")
    return problems


def self_test():
    """The checker must catch one broken rule of each kind on a made-up tree."""
    with tempfile.TemporaryDirectory() as root:
        files = {
            "lib/net/net.h": "#pragma once\n",
            "lib/esp/esp.h": '#include "net/net.h"\n',
            "lib/config/config.h": '#include "net/net.h"\n#include "esp/esp.h"\n',   # (a) config -> esp
            "lib/ctrl/ctrl.cpp": "#include <rte_ring.h>\n",                          # (b) DPDK in ctrl
            "lib/flow/hash_candidates.h": "#include <rte_thash.h>\n",               # exempt ...
            "lib/flow/flow.cpp": '#include "flow/hash_candidates.h"\n',              # ... unless a lib uses it
            "lib/crypto/aead.h": '#include "dataplane/x.h"\n',                       # (a) upward include
            "lib/dataplane/x.h": '#include "esp/esp.h"\n#include "config/config.h"\n',  # fine
            "lib/newlib/a.h": "\n",                                                  # no rule
            "apps/meshgate-spread/main.cpp": '#include "esp/esp.h"\n',              # app rule
        }
        for rel, text in files.items():
            p = os.path.join(root, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "w") as f:
                f.write(text)
        got = check_sources(root)
        want = ["lib/config/config.h:2", "lib/ctrl/ctrl.cpp:1", "lib/flow/flow.cpp: includes",
                "lib/crypto/aead.h:1", "lib/newlib", "apps/meshgate-spread/main.cpp:1"]
        missed = [w for w in want if not any(g.startswith(w) for g in got)]
        extra = [g for g in got if not any(g.startswith(w) for w in want)]
        return [f"self-test: not caught: {m}" for m in missed] + [f"self-test: false alarm: {e}" for e in extra]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source-root", required=True)
    ap.add_argument("--build-root", default="")
    a = ap.parse_args()
    problems = self_test()
    with open(os.path.join(a.source_root, "docs", "ARCHITECTURE.md")) as f:
        design = f.read()
    if DAG_LINE not in design:
        problems.append(f"docs/ARCHITECTURE.md no longer states '{DAG_LINE}': update ALLOWED in {__file__} with it")
    problems += check_sources(a.source_root)
    if a.build_root:
        problems += check_build(a.build_root)
    for p in problems:
        print(p)
    print(f"layering: {len(problems)} problem(s)" if problems else "layering: ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
