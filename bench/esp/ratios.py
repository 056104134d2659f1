#!/usr/bin/env python3
"""Reads `esp_bench --benchmark_format=json` (or --benchmark_out=FILE) and prints, per cipher/engine:
ns/packet and Mpps of encap, decap and the raw AEAD seal/open at each size, and the ratios of issue 2:

  (1) encap at 1420 B as % of the raw AEAD (seal) rate ......... target >= 90 %
  (2) at 64 B, encap ns - raw AEAD (seal) ns per packet ......... target <= 20 ns
  (3) decap vs encap, (decap ns - encap ns) / encap ns ........... target: decap at most 15 % slower

Figures and ratios come from the side-by-side benchmarks (sbs/...) when present, and again from the
separate per-step benchmarks when those are present. With repetitions the median of each benchmark is used
(the "median" aggregate when present, else the median of the repetitions). Standard library only.

usage: ratios.py [--markdown] [FILE|-]
"""
import json
import statistics
import sys

TARGET_RATE = 90.0    # % of raw AEAD rate at 1420 B
TARGET_OUTSIDE = 20.0  # ns per packet outside the AEAD call at 64 B
TARGET_DECAP = 15.0   # % decap vs encap


def load(path):
    text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    # esp_bench may print EAL lines before the JSON when stdout is used; start at the first '{'.
    return json.loads(text[text.index("{"):])


def collect(doc):
    """-> (side_by_side, separate, clock): {(op, variant, size): ns per packet}, timer ns per burst.

    side_by_side comes from the sbs/<cipher>/<engine>/<size> benchmarks (all four steps timed in the same
    iterations, counters <op>_ns = median burst / 32); separate from encap/, decap/, seal/, open/ and
    encap_loop/ (one step per benchmark, from items_per_second)."""
    iters, medians = {}, {}

    def put(key, val, agg):
        if val is None:
            return
        if agg is None:
            iters.setdefault(key, []).append(val)
        elif agg == "median":
            medians[key] = val

    for b in doc.get("benchmarks", []):
        if b.get("error_occurred"):
            continue
        agg = b.get("aggregate_name") if b.get("run_type") == "aggregate" else None
        if agg is not None and agg != "median":
            continue
        parts = [p for p in b.get("run_name", b["name"]).split("/") if p != "manual_time"]
        if parts[:2] == ["baseline", "clock"]:
            put(("clock", "", "", 0), b.get("ns_per_burst"), agg)
            continue
        if len(parts) != 4:
            continue
        kind, cipher, engine, size = parts
        v, size = cipher + "/" + engine, int(size)
        if kind == "sbs":
            for op in ("encap", "decap", "seal", "open"):
                put(("sbs", op, v, size), b.get(op + "_ns"), agg)
        else:
            ips = b.get("items_per_second")
            put(("sep", kind, v, size), 1e9 / ips if ips else None, agg)
    res = {k: statistics.median(v) for k, v in iters.items()}
    res.update(medians)
    clock = res.pop(("clock", "", "", 0), None)
    sbs = {k[1:]: v for k, v in res.items() if k[0] == "sbs"}
    sep = {k[1:]: v for k, v in res.items() if k[0] == "sep"}
    return sbs, sep, clock


def fmt_ns(ns):
    return "-" if ns is None else (f"{ns:.1f}" if ns < 1000 else f"{ns:.0f}")


def fmt_mpps(ns):
    return "-" if ns is None else f"{1e3 / ns:.2f}"


def verdict(ok):
    return "meets" if ok else "MISSES"


def main(argv):
    md = "--markdown" in argv
    args = [a for a in argv if a != "--markdown"]
    doc = load(args[0] if args else "-")
    sbs, sep, clock = collect(doc)
    ctx = doc.get("context", {})
    print(f"# {ctx.get('date', '')}  {ctx.get('host_name', '')}  {ctx.get('num_cpus', '')} cpus @ "
          f"{ctx.get('mhz_per_cpu', '')} MHz  lcore cpu {ctx.get('lcore_cpu', '?')}  burst {ctx.get('burst', '32')}")
    if clock is not None:
        print(f"# timer overhead in every timed region: {clock:.1f} ns per burst = {clock / 32:.2f} ns per packet"
              " (in all figures alike)")
    print()
    misses = []
    if sbs:
        print("## side by side (sbs/: encap, decap, seal, open timed in the same iterations; median burst / 32)")
        report(sbs, md, misses, "sbs")
    if sep:
        print("## separate benchmarks (one timed step each; items_per_second)")
        report(sep, md, misses if not sbs else [], "separate")
    print("targets: (1) >= 90 %  (2) <= 20 ns  (3) decap ns <= encap ns + 15 % (a faster decap is fine)")
    if misses:
        print("misses:")
        for m in misses:
            print("  " + m)
    return 0


def report(res, md, misses, label):
    variants = []
    for (_, v, _) in res:
        if v not in variants:
            variants.append(v)
    order = ["aes-gcm-128/ipsecmb", "aes-gcm-256/ipsecmb", "chacha20-poly1305/ipsecmb", "chacha20-poly1305/sodium"]
    variants.sort(key=lambda v: order.index(v) if v in order else len(order))
    sizes = sorted({s for (_, _, s) in res})
    g = lambda op, v, s: res.get((op, v, s))
    loop = any(k[0] == "encap_loop" for k in res)

    head = ["cipher/engine", "inner B", "encap ns", "encap Mpps", "decap ns", "decap Mpps",
            "AEAD seal ns", "seal Mpps", "AEAD open ns", "open Mpps"] + (["encap_loop ns"] if loop else [])
    rows = []
    for v in variants:
        for s in sizes:
            e, d, sl, op = (g(x, v, s) for x in ("encap", "decap", "seal", "open"))
            row = [v, str(s), fmt_ns(e), fmt_mpps(e), fmt_ns(d), fmt_mpps(d), fmt_ns(sl), fmt_mpps(sl),
                   fmt_ns(op), fmt_mpps(op)]
            if loop:
                row.append(fmt_ns(g("encap_loop", v, s)))
            rows.append(row)
    table(head, rows, md)
    print()

    head = ["cipher/engine", "(1) encap/AEAD rate @1420", "(2) encap-AEAD ns @64", "decap-open ns @64"] + \
           [f"(3) decap vs encap @{s}" for s in sizes]
    rows = []
    for v in variants:
        row = [v]
        e, sl = g("encap", v, 1420), g("seal", v, 1420)
        if e and sl:
            r = 100.0 * sl / e
            row.append(f"{r:.1f} % ({verdict(r >= TARGET_RATE)})")
            if r < TARGET_RATE:
                misses.append(f"{label} {v}: (1) {r:.1f} % < {TARGET_RATE:.0f} %")
        else:
            row.append("-")
        e, sl = g("encap", v, 64), g("seal", v, 64)
        if e and sl:
            diff = e - sl
            row.append(f"{diff:+.1f} ns ({verdict(diff <= TARGET_OUTSIDE)})")
            if diff > TARGET_OUTSIDE:
                misses.append(f"{label} {v}: (2) {diff:.1f} ns > {TARGET_OUTSIDE:.0f} ns")
        else:
            row.append("-")
        d, op = g("decap", v, 64), g("open", v, 64)
        row.append(f"{d - op:+.1f} ns" if d and op else "-")
        for s in sizes:
            e, d = g("encap", v, s), g("decap", v, s)
            if e and d:
                r = 100.0 * (d - e) / e
                row.append(f"{r:+.1f} % ({verdict(r <= TARGET_DECAP)})")
                if r > TARGET_DECAP:
                    misses.append(f"{label} {v}: (3) decap {r:+.1f} % vs encap at {s} B")
            else:
                row.append("-")
        rows.append(row)
    table(head, rows, md)
    print()


def table(head, rows, md):
    if md:
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
        return
    w = [max(len(head[i]), *(len(r[i]) for r in rows)) for i in range(len(head))]
    print("  ".join(h.ljust(w[i]) if i == 0 else h.rjust(w[i]) for i, h in enumerate(head)))
    for r in rows:
        print("  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
