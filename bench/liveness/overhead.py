#!/usr/bin/env python3
"""Probe overhead on the forwarding rate (issue 6; bench/README.md "Liveness").

meshgate forwards at full rate as in bench/e2e (inside net_pcap infinite_rx, instance ports net_null, one worker,
the four tunnels of configs/gateway-dual.toml), alternately:
  off       no liveness
  probes    --liveness 20x3 --liveness-monitor: every tunnel probed every 15..20 ms (ICMP echo inside ESP), the
            detector on main, the watchdog on the workers' inbound path. net_null answers no probe, so monitor
            mode keeps the tunnels in service: the verdicts are computed and reported, not applied. A real peer's
            replies (one per probe, a few hundred a second) are left out of the cost.
  watchdog  --liveness 20x3 --liveness-monitor --liveness-no-probes (detector and watchdog only)
Each round runs the three back to back (order rotated), several rounds; the rate of a run is outside packets
between two counter snapshots taken after a warm-up (as bench/e2e/summarize.py), less the probes. The overhead
is 1 - rate(mode) / rate(off) of the same round; the median over rounds and its spread are reported, because
this shared 2-vCPU machine moves single runs by several per cent.

  bench/liveness/overhead.py [--build build] [--rounds 8] [--duration 4] [--sizes 64 1420] [--json out.json]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
MODES = {
    "off": [],
    "probes": ["--liveness", "20x3", "--liveness-monitor"],
    "watchdog": ["--liveness", "20x3", "--liveness-monitor", "--liveness-no-probes"],
}


def run(mg, cfg, pcap, mode, warmup, duration, tmp, tag):
    j = os.path.join(tmp, f"{tag}.json")
    t1, t2 = warmup, warmup + duration
    cmd = [mg, "-c", cfg, "--pmd", os.path.join(ROOT, "pmd_config", "vdev-bench.toml"), "-q",
           "--duration", str(t2), "--event", f"{t1}:tunnel:a-1:up", "--event", f"{t2}:tunnel:a-1:up",
           "--stats-json", j, "--control-name", tag, f"--eal=--file-prefix={tag}", "--eal=--log-level=error"]
    env = dict(os.environ, MESHGATE_INSIDE_PCAP=pcap)
    p = subprocess.run(cmd + MODES[mode], env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"meshgate {mode} failed ({p.returncode}): {p.stderr[-500:]}")
    with open(j) as f:
        s = json.load(f)
    a, b = s["events"][0]["before"], s["events"][-1]["before"]
    probes = sum(t["probes_out"] for t in s["tunnels"])  # whole run; at most a few thousand
    window = b["elapsed_s"] - a["elapsed_s"]
    pk = b["outside_tx"] - a["outside_tx"] - probes * duration / s["elapsed_s"]
    downs = [e for e in s.get("liveness_events", []) if not e["up"]]
    return {"mpps": pk / window / 1e6, "probes_per_s": probes / s["elapsed_s"],
            "verdicts": len(downs), "drops": sum(s["drops"].values())}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--duration", type=float, default=4.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--sizes", nargs="+", default=["64", "1420"])
    ap.add_argument("--json")
    a = ap.parse_args()
    mg = os.path.join(a.build, "apps", "meshgate", "meshgate")
    tmp = tempfile.mkdtemp(prefix="mg-lvo-")
    out = {"rounds": a.rounds, "duration_s": a.duration, "load_start": open("/proc/loadavg").read().split()[:3],
           "sizes": {}}
    for size in a.sizes:
        pcap = os.path.join(tmp, f"in-{size}.pcap")
        subprocess.run([sys.executable, os.path.join(ROOT, "bench", "e2e", "mkpcap.py"), pcap, size,
                        "--packets", "4096", "--flows", "1024"], check=True)
        rates = {m: [] for m in MODES}
        extra = {m: [] for m in MODES}
        order = list(MODES)
        for r in range(a.rounds):
            for m in order[r % 3:] + order[:r % 3]:
                x = run(mg, os.path.join(ROOT, "configs", "gateway-dual.toml"), pcap, m, a.warmup, a.duration, tmp,
                        f"lvo{os.getpid()}")
                rates[m].append(x["mpps"])
                extra[m].append(x)
            print(f"size {size} round {r + 1}: " + "  ".join(f"{m} {rates[m][-1]:.3f}" for m in MODES),
                  file=sys.stderr)
        res = {}
        for m in ("probes", "watchdog"):
            ov = [1 - x / y for x, y in zip(rates[m], rates["off"])]
            res[m] = {"overhead_median": statistics.median(ov), "overhead_min": min(ov), "overhead_max": max(ov),
                      "mpps_median": statistics.median(rates[m]),
                      "probes_per_s": statistics.median(e["probes_per_s"] for e in extra[m]),
                      "verdicts": sum(e["verdicts"] for e in extra[m])}
        res["off"] = {"mpps_median": statistics.median(rates["off"])}
        out["sizes"][size] = res
        print(f"{size:>5} B  off {res['off']['mpps_median']:.3f} Mpps | probes {res['probes']['mpps_median']:.3f} "
              f"Mpps, overhead median {res['probes']['overhead_median'] * 100:+.2f} % "
              f"[{res['probes']['overhead_min'] * 100:+.2f} .. {res['probes']['overhead_max'] * 100:+.2f}], "
              f"{res['probes']['probes_per_s']:.0f} probes/s | watchdog only: overhead median "
              f"{res['watchdog']['overhead_median'] * 100:+.2f} % "
              f"[{res['watchdog']['overhead_min'] * 100:+.2f} .. {res['watchdog']['overhead_max'] * 100:+.2f}]")
    out["load_end"] = open("/proc/loadavg").read().split()[:3]
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
