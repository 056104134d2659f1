#!/usr/bin/python3
"""Liveness figures (issue 6 "Measure"); not part of the test suite.

  failover  one meshgate on net_pcap vdevs, inside and outside RX paced; tunnel a-1's inbound ESP (one packet
            every 5 ms) stops for 150 ms, CYCLES times, with 400 ms of traffic between (hold-down 100 ms, no
            damping, so that every outage is a detection). Per outage: last proof -> verdict (silence_ms) and
            verdict -> every worker on the new state (publish_ms); p50/p99/max of both and of their sum.
  overhead  forwarding rate (inside packets per second, unpaced, the inside pcap replayed from memory, output to
            /dev/null) without liveness and with --liveness 20x100 (probes every 15..20 ms on every tunnel; x100 so
            that the tunnels, which get no replies here, stay up for the 1.5 s runs), alternated REPEATS times.
  twoproc   (root) two meshgates in a network namespace, probes answered by the far one (--reflect), which
            black-holes a-1 for 150 ms every 500 ms: probe-based detection, CYCLES times.

Run: /usr/bin/python3 tests/liveness/measure_failover.py --meshgate build/apps/meshgate/meshgate [--cycles 50]
"""
import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import gwtest  # noqa: E402
from scapy.all import IP, raw  # noqa: E402


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def failover(args):
    gw = gwtest.Gw(gwtest.dual_cfg())
    sa = {t.name: t.inn.scapy_sa() for t in gw.tunnels}
    alive, dead = 80, 30            # slots of 5 ms for a-1: 400 ms alive, 150 ms silent
    per_port = args.cycles * (alive + dead) * 2 + 200
    rx = {"out-a": [], "out-b": []}
    for port, names in (("out-a", ["a-1", "a-2"]), ("out-b", ["b-1", "b-2"])):
        for k in range(per_port):
            name = names[k % 2]
            if name == "a-1" and (k // 2) % (alive + dead) >= alive:
                name = "a-2"
            t = gw.by_name[name]
            inner = gwtest.Flow(9000, False, "udp", "10.130.0.1", "100.64.0.1", 1, 2).inner(k, 90)
            eth = bytes(6) + bytes.fromhex(t.dev_mac.replace(":", "")) + b"\x08\x00"
            rx[port].append(eth + raw(sa[name].encrypt(IP(inner))))
    secs = per_port / 400
    flows = gwtest.make_flows(100, random.Random(1), v4_net=9, v6_net=0x90)
    tr = gwtest.Trace()
    for k in range(int(secs * 1000) - 500):
        tr.add(flows[k % len(flows)], 100)
    t0 = time.monotonic()
    run = gwtest.Run("failover", gwtest.dual_cfg(), tr.frames, a_rx=rx["out-a"], b_rx=rx["out-b"],
                     timeout=int(secs) + 120,
                     extra=["--pace-pps", "1000", "--pace-outside-pps", "400", "--liveness", "20x3",
                            "--liveness-hold-down-ms", "100", "--liveness-no-damping", "--liveness-no-probes"])
    if run.rc != 0:
        sys.exit(f"meshgate failed\n{run.describe()}")
    ev = [e for e in run.stats["liveness_events"] if e["tunnel"] == "a-1" and not e["up"]
          and e["outside_rx"] < 2 * per_port - 100]
    s = [e["silence_ms"] for e in ev]
    p = [e["publish_us"] for e in ev]
    tot = [a + b / 1000 for a, b in zip(s, p)]
    others = [e for e in run.stats["liveness_events"] if e["tunnel"] != "a-1" and e["outside_rx"] < 2 * per_port - 100]
    print(f"failover: {len(ev)} outages of a-1 detected ({args.cycles} induced), {len(others)} false downs of the "
          f"other tunnels; run {time.monotonic() - t0:.0f} s")
    for name, v, u in (("last proof -> verdict", s, "ms"), ("verdict -> published", p, "us"),
                       ("last proof -> rerouted", tot, "ms")):
        print(f"  {name:24s} p50 {pct(v, 50):.1f} {u}  p99 {pct(v, 99):.1f} {u}  max {max(v):.1f} {u}")
    print(f"  flows moved_down {run.stats['flows']['moved_down']}")


def overhead(args):
    # Inside RX replays its pcap from memory (net_pcap infinite_rx) and every TX goes to /dev/null, so that the
    # rate is meshgate's, not the pcap files'.
    with open(gwtest.pmd_cfg()) as f:
        pmd = f.read()
    pmd = pmd.replace("rx_pcap=${MESHGATE_INSIDE_PCAP}", "rx_pcap=${MESHGATE_INSIDE_PCAP},infinite_rx=1")
    for port in ("inside", "out-a", "out-b"):
        pmd = pmd.replace("${MESHGATE_OUT}/%s.pcap" % port, "/dev/null")
    path = os.path.join(gwtest.TMP, "pmd-overhead.toml")
    with open(path, "w") as f:
        f.write(pmd)
    gwtest.pmd_cfg = lambda: path
    rng = random.Random(2)
    flows = gwtest.make_flows(1000, rng, v4_net=11, v6_net=0xb0)
    frames = [gwtest.frame(flows[k % 1000].inner(k, 128)) for k in range(args.packets)]
    rates = {"off": [], "20x100": []}
    for r in range(args.repeats):
        for mode in rates:
            extra = ["--liveness", "20x100"] if mode != "off" else []
            run = gwtest.Run(f"ovh-{mode}-{r}", gwtest.dual_cfg(), frames,
                             extra=extra + ["--duration", str(args.seconds)])
            st = run.stats
            if run.rc != 0 or st is None:
                sys.exit(f"meshgate failed\n{run.describe()}")
            fwd = sum(t["packets_out"] for t in st["tunnels"])
            probes = sum(t["probes_out"] for t in st["tunnels"])
            rates[mode].append((fwd / st["elapsed_s"], probes))
            shutil.rmtree(run.dir, ignore_errors=True)
    for mode, v in rates.items():
        med = statistics.median(x[0] for x in v)
        print(f"overhead: liveness {mode:7s} median {med / 1e6:.3f} Mpps over {len(v)} runs of {args.seconds} s "
              f"({', '.join(f'{x[0] / 1e6:.3f}' for x in v)}); probes sent {[x[1] for x in v]}")
    off = statistics.median(x[0] for x in rates["off"])
    on = statistics.median(x[0] for x in rates["20x100"])
    print(f"overhead: {100 * (off - on) / off:+.2f} % of the forwarding rate (negative: faster with probes, noise)")


def twoproc(args):
    """Probe-based detection between two meshgates (tests/liveness/test_two_gateways.py's namespace): the far side
    black-holes a-1 for 150 ms every 500 ms, CYCLES times; near: --liveness 20x3, hold-down 200 ms, no damping."""
    import test_two_gateways as t2
    n = args.cycles
    faults = []
    for k in range(n):
        faults += ["--fault", f"{1.0 + 0.5 * k:.2f}:1-a:blackhole", "--fault", f"{1.15 + 0.5 * k:.2f}:1-a:heal"]

    class Run(t2.TwoGateways):
        FAR = [(0, faults + ["--duration", str(3 + 0.5 * n)])]
        NEAR_S = 2 + 0.5 * n
        NEAR_EXTRA = ("--liveness-hold-down-ms", "200", "--liveness-no-damping")

    Run.setUpClass()
    if Run.near is None or Run.near_rc != 0:
        sys.exit(f"two-process run failed: near rc {Run.near_rc}\n{Run.near_log[-2000:]}\n{Run.far_log[-1000:]}")
    ev = Run.near["liveness_events"]
    downs = [e for e in ev if e["tunnel"] == "a-1" and not e["up"]]
    s = [e["silence_ms"] for e in downs]
    p = [e["publish_us"] for e in downs]
    tot = [a + b / 1000 for a, b in zip(s, p)]
    others = [e for e in ev if e["tunnel"] != "a-1"]
    print(f"two processes, probes: {len(downs)} of {n} outages of a-1 detected, {len(others)} false downs elsewhere")
    for name, v, u in (("last proof -> verdict", s, "ms"), ("verdict -> published", p, "us"),
                       ("last proof -> rerouted", tot, "ms")):
        print(f"  {name:24s} p50 {pct(v, 50):.1f} {u}  p99 {pct(v, 99):.1f} {u}  max {max(v):.1f} {u}")
    ts = {t["name"]: t for t in Run.near["tunnels"]}
    print(f"  probes sent {sum(t['probes_out'] for t in ts.values())}, replies {sum(t['probe_replies_in'] for t in ts.values())}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--meshgate", required=True)
    ap.add_argument("--source-root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    ap.add_argument("--cycles", type=int, default=50)
    ap.add_argument("--packets", type=int, default=8000)
    ap.add_argument("--seconds", type=float, default=1.5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("what", nargs="*", default=["failover", "overhead"])
    a = ap.parse_args()
    gwtest.ARGS = argparse.Namespace(meshgate=os.path.abspath(a.meshgate), source_root=os.path.abspath(a.source_root),
                                 spread="", esp_tool="")
    gwtest.TMP = tempfile.mkdtemp(prefix="mg-live-measure-")
    try:
        if "failover" in a.what:
            failover(a)
        if "overhead" in a.what:
            overhead(a)
        if "twoproc" in a.what:
            twoproc(a)
    finally:
        shutil.rmtree(gwtest.TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
