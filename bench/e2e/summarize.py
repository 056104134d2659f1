#!/usr/bin/env python3
"""Table and results.json for bench/e2e/run.sh (standard library only).

  summarize.py DIR          DIR = a run.sh output directory: prints a Markdown table, writes DIR/results.json
  summarize.py --one FILE   one meshgate --stats-json file: its measured Mpps and checks, one line
"""
import glob
import json
import os
import re
import statistics
import sys

IMIX = [(40, 7), (576, 4), (1500, 1)]  # simple IMIX, inner IPv4 lengths (frames 54/590/1514)
ESP_SIZES = [64, 512, 1420]
TARGET_SHARE = 0.90
TARGET_SCALING = 1.8


def mg_rate(j):
    """Mpps between the two event snapshots; checks."""
    ev = j["events"]
    if len(ev) < 2:
        raise ValueError("fewer than two event snapshots")
    a, b = ev[0]["before"], ev[-1]["before"]
    window = b["elapsed_s"] - a["elapsed_s"]
    pk = b["outside_tx"] - a["outside_tx"]
    port_out = sum(v["opackets"] for k, v in j["ports"].items() if k != j.get("inside_port", "inside"))
    drops = sum(j["drops"].values()) + j["esp_out_drops"]
    missed = j["ports"]["inside"]["imissed"] + j["ports"]["inside"]["rx_nombuf"]
    return {"mpps": pk / window / 1e6, "window_s": window, "packets": pk, "port_out_ok": port_out == j["outside_tx"],
            "drops": drops, "missed": missed, "load": j.get("load", "?"),
            "shares": [t["packets_out"] for t in j["tunnels"]]}


def mmm(xs):
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs), "n": len(xs)} if xs else None


def fit(xs, ys):
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - b * mx, b


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        r = mg_rate(json.load(open(sys.argv[2])))
        print("%.3f Mpps over %.2f s (drops %d, rx missed %d, port opackets %s)" %
              (r["mpps"], r["window_s"], r["drops"], r["missed"], "match" if r["port_out_ok"] else "MISMATCH"))
        return
    d = sys.argv[1]
    meta = dict(l.split(": ", 1) for l in open(os.path.join(d, "meta.txt")).read().splitlines() if ": " in l)
    sizes = meta["sizes"].split() if "sizes" in meta else ["64", "512", "1420", "imix"]
    # raw AEAD seal (and encap) medians, ns per packet
    esp = {}
    try:
        for b in json.load(open(os.path.join(d, "esp.json")))["benchmarks"]:
            m = re.match(r"(seal|encap)/aes-gcm-128/ipsecmb/(\d+)/manual_time_median$", b["name"])
            if m:
                esp[(m.group(1), int(m.group(2)))] = b["ns_per_pkt"]
    except (OSError, ValueError, KeyError):
        pass

    def esp_ns(op, size):
        if size != "imix":
            return esp.get((op, int(size)))
        pts = [(s, esp[(op, s)]) for s in ESP_SIZES if (op, s) in esp]
        if len(pts) < 2:
            return None
        a, b = fit([p[0] for p in pts], [p[1] for p in pts])  # affine in length; mean over the IMIX mix
        return sum((a + b * L) * w for L, w in IMIX) / sum(w for _, w in IMIX)

    res = {"meta": meta, "imix": "7:4:1 of inner IPv4 40/576/1500 B", "points": {}}
    rows = []
    for s in sizes:
        fwd = [json.load(open(f))["pps"] / 1e6 for f in sorted(glob.glob(os.path.join(d, "raw", "fwd-%s-r*.json" % s)))]
        p = {"fwd_mpps": mmm(fwd)}
        seal = esp_ns("seal", s)
        p["aead_seal_ns"] = seal
        p["aead_mops"] = 1e3 / seal if seal else None
        p["encap_ns_espbench"] = esp_ns("encap", s)
        limit = None
        if fwd and seal:
            t_fwd = 1e3 / statistics.median(fwd)  # ns
            limit = 1e3 / (t_fwd + seal)
        p["limit_mpps"] = limit
        for w in (1, 2):
            for t in (1, 4):
                runs = []
                for f in sorted(glob.glob(os.path.join(d, "raw", "mg-%s-w%d-t%d-r*.json" % (s, w, t)))):
                    try:
                        runs.append(mg_rate(json.load(open(f))))
                    except (ValueError, KeyError) as e:
                        print("skip %s: %s" % (f, e), file=sys.stderr)
                k = "w%d_t%d" % (w, t)
                p[k] = mmm([r["mpps"] for r in runs])
                p[k + "_runs"] = runs
                if p[k] and limit:
                    p[k]["share_of_limit"] = p[k]["median"] / limit
        for t in (1, 4):
            if p["w1_t%d" % t] and p["w2_t%d" % t]:
                p["scaling_t%d" % t] = p["w2_t%d" % t]["median"] / p["w1_t%d" % t]["median"]
        res["points"][s] = p
        rows.append((s, p))
    json.dump(res, open(os.path.join(d, "results.json"), "w"), indent=1)

    def f(x, fmt="%.2f"):
        return fmt % x if x is not None else "-"

    def r3(m):
        return "%.2f / **%.2f** / %.2f" % (m["min"], m["median"], m["max"]) if m else "-"

    print("meshgate outbound, AES-128-GCM, Mpps min / **median** / max over %s repeats of %s s; %s" %
          (meta.get("repeats"), meta.get("duration_s", "?"), meta.get("date_utc", "")))
    print("load average (1/5/15 min): start %s, end %s (each run's load: results.json, run.log)" %
          (meta.get("load_start", "?"), meta.get("load_end", "?")))
    print()
    print("| inner B | plain fwd Mpps | AEAD seal Mops | limit Mpps | 1 worker, 1 tunnel | share | 1 worker, 4 tunnels | share |"
          " 2 workers, 1 tunnel | x 1w | 2 workers, 4 tunnels | x 1w |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s, p in rows:
        fm = p["fwd_mpps"]
        sh = lambda k: ("%.0f %%" % (100 * p[k]["share_of_limit"])) if p[k] and "share_of_limit" in p[k] else "-"
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            s, f(fm["median"] if fm else None), f(p["aead_mops"]), f(p["limit_mpps"]),
            r3(p["w1_t1"]), sh("w1_t1"), r3(p["w1_t4"]), sh("w1_t4"),
            r3(p["w2_t1"]), f(p.get("scaling_t1"), "%.2fx"), r3(p["w2_t4"]), f(p.get("scaling_t4"), "%.2fx")))
    print()
    print("limit = 1 / (1/fwd + 1/seal) (medians); share = 1-worker median / limit (target >= %d %%); "
          "x 1w = 2-worker median / 1-worker median (target >= %.1fx for 1 tunnel). IMIX = %s; its AEAD time is "
          "the 7:4:1 mean of an affine fit of seal ns over 64/512/1420 B." % (100 * TARGET_SHARE, TARGET_SCALING, res["imix"]))
    bad = []
    for s, p in rows:
        for k in ("w1_t1", "w1_t4", "w2_t1", "w2_t4"):
            for r in p[k + "_runs"]:
                if r["drops"] or not r["port_out_ok"] or r["missed"]:
                    bad.append("%s %s: drops %d missed %d port_out_ok %s" % (s, k, r["drops"], r["missed"], r["port_out_ok"]))
    print()
    print("checks: " + ("every run: no drops, no rx missed, port opackets = outside_tx" if not bad else "; ".join(bad)))


if __name__ == "__main__":
    main()
