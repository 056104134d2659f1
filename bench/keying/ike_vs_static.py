#!/usr/bin/env python3
"""Forwarding rate with IKE-keyed SAs against static ones (issue 11; bench/README.md "Keying").

meshgate forwards at full rate as in bench/e2e (inside net_pcap infinite_rx, instance ports net_null, one worker,
the four tunnels of configs/gateway-dual.toml), alternately:
  static  the file's keys (AES-128-GCM, ESN)
  ike     the same four tunnels with `keying = "ike"` and no keys in the file: right after start a client of the
          keying socket (tests/keying/keyclient.py, in the role of charon's plugin) installs an inbound and an
          outbound SA per tunnel, AES-128-GCM with ESN and a fresh random key each, as charon would
Each round runs both back to back (order alternated); the rate is outside packets between two counter snapshots
after the warm-up (bench/e2e's method). A run where any packet met no tunnel inside the window (an SA not yet
installed) is an error, not a figure. Reported: the median over rounds of rate(ike) / rate(static) within a round.

  bench/keying/ike_vs_static.py [--build build] [--rounds 6] [--duration 4] [--sizes 64 1420] [--json out.json]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "keying"))
import keyclient as kc  # noqa: E402


def ike_config(tmp):
    """gateway-dual.toml with every tunnel keyed by IKE; returns (path, socket, [(instance ip, device ip)])."""
    with open(os.path.join(ROOT, "configs", "gateway-dual.toml")) as f:
        text = f.read()
    head, *tunnels = text.split("[[tunnel]]")
    inst = dict(re.findall(r'name = "(gw-[ab])"\nipv4 = "([\d.]+)"', head))
    dev = dict(re.findall(r'name = "(onprem-\d)"\nipv4 = "([\d.]+)"', head))
    pairs = []
    for i, t in enumerate(tunnels):
        pairs.append((inst[re.search(r'instance = "([^"]+)"', t).group(1)],
                      dev[re.search(r'device = "([^"]+)"', t).group(1)]))
        tunnels[i] = t[:t.index("[tunnel.out]")] + 'keying = "ike"\n\n'
    sock = os.path.join(tmp, "keying.sock")
    head = head.replace('pmd_config = "../pmd_config/vdev-demo.toml"',
                        'pmd_config = "%s"' % os.path.join(ROOT, "pmd_config", "vdev-bench.toml"))
    head = re.sub(r'(?m)^# ?state_dir = .*$', 'state_dir = "%s"' % os.path.join(tmp, "state"), head)
    cfg = os.path.join(tmp, "gateway-ike-bench.toml")
    with open(cfg, "w") as f:
        f.write(head + '[keying]\nsocket = "%s"\n\n' % sock + "".join("[[tunnel]]" + t for t in tunnels))
    os.makedirs(os.path.join(tmp, "state"), exist_ok=True)
    return cfg, sock, pairs


def install(sock, pairs, result):
    """What charon's plugin does per CHILD_SA: inbound, then outbound; fresh keys, never reused."""
    deadline = time.monotonic() + 30
    while True:
        try:
            c = kc.Client(sock)
            break
        except OSError:
            if time.monotonic() > deadline:
                result["error"] = "no keying socket"
                return
            time.sleep(0.01)
    c.hello()
    t0 = time.monotonic()
    for k, (inst, dev) in enumerate(pairs):
        sel = kc.sel(inst, dev)
        for spi, d, extra in ((0x9000 + k, kc.IN, {"window": 1024}), (0x8000 + k, kc.OUT, {})):
            r = c.add_sa(sel, spi, d, os.urandom(20), esn=1, **extra)
            if r.status != kc.OK:
                result["error"] = "ADD_SA %#x refused: %s" % (spi, r.reason)
                return
    result["installed_s"] = time.monotonic() - t0
    result["client"] = c  # kept open: the SAs' daemon stays connected during the run


def run(mg, cfg, pcap, mode, warmup, duration, tmp, tag, sock=None, pairs=None):
    j = os.path.join(tmp, f"{tag}.json")
    t1, t2 = warmup, warmup + duration
    cmd = [mg, "-c", cfg, "--pmd", os.path.join(ROOT, "pmd_config", "vdev-bench.toml"), "-q",
           "--duration", str(t2), "--event", f"{t1}:tunnel:a-1:up", "--event", f"{t2}:tunnel:a-1:up",
           "--stats-json", j, "--control-name", tag, f"--eal=--file-prefix={tag}", "--eal=--log-level=error"]
    if mode == "static":
        os.makedirs(os.path.join(tmp, "state-static"), exist_ok=True)
        cmd += ["--state-dir", os.path.join(tmp, "state-static")]  # sequence reservations as durable as ike's
    env = dict(os.environ, MESHGATE_INSIDE_PCAP=pcap)
    if sock and os.path.exists(sock):
        os.unlink(sock)
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    res = {}
    th = None
    if mode == "ike":
        th = threading.Thread(target=install, args=(sock, pairs, res))
        th.start()
    out, err = p.communicate(timeout=warmup + duration + 120)
    if th:
        th.join()
        if "client" in res:
            res["client"].close()
    if p.returncode != 0 or "error" in res:
        raise RuntimeError(f"meshgate {mode} failed ({p.returncode}, {res.get('error')}): {err[-800:]}")
    with open(j) as f:
        s = json.load(f)
    a, b = s["events"][0]["before"], s["events"][-1]["before"]
    if b["drops"]["no_tunnel"] != a["drops"]["no_tunnel"]:
        raise RuntimeError(f"{mode}: packets without a tunnel inside the measured window (SAs late?)")
    window = b["elapsed_s"] - a["elapsed_s"]
    return (b["outside_tx"] - a["outside_tx"]) / window / 1e6, res.get("installed_s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--duration", type=float, default=4.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--sizes", nargs="+", default=["64", "1420"])
    ap.add_argument("--json")
    a = ap.parse_args()
    mg = os.path.join(a.build, "apps", "meshgate", "meshgate")
    tmp = tempfile.mkdtemp(prefix="mg-ikebench-")
    icfg, sock, pairs = ike_config(tmp)
    scfg = os.path.join(ROOT, "configs", "gateway-dual.toml")
    out = {"rounds": a.rounds, "duration_s": a.duration, "load_start": open("/proc/loadavg").read().split()[:3],
           "sizes": {}}
    for size in a.sizes:
        pcap = os.path.join(tmp, f"in-{size}.pcap")
        subprocess.run([sys.executable, os.path.join(ROOT, "bench", "e2e", "mkpcap.py"), pcap, size,
                        "--packets", "4096", "--flows", "1024"], check=True)
        rates = {"static": [], "ike": []}
        inst = []
        for r in range(a.rounds):
            for m in (("static", "ike") if r % 2 == 0 else ("ike", "static")):
                mpps, i_s = run(mg, scfg if m == "static" else icfg, pcap, m, a.warmup, a.duration, tmp,
                                f"ikb{os.getpid()}", sock, pairs)
                rates[m].append(mpps)
                if i_s is not None:
                    inst.append(i_s)
            print(f"size {size} round {r + 1}: static {rates['static'][-1]:.3f}  ike {rates['ike'][-1]:.3f} Mpps",
                  file=sys.stderr)
        ratio = [x / y for x, y in zip(rates["ike"], rates["static"])]
        res = {"static_mpps_median": statistics.median(rates["static"]),
               "ike_mpps_median": statistics.median(rates["ike"]),
               "ratio_median": statistics.median(ratio), "ratio_min": min(ratio), "ratio_max": max(ratio),
               "install_8_sas_ms_median": statistics.median(inst) * 1000}
        out["sizes"][size] = res
        print(f"{size:>5} B  static {res['static_mpps_median']:.3f} Mpps | ike {res['ike_mpps_median']:.3f} Mpps | "
              f"ike/static median {res['ratio_median']:.3f} [{res['ratio_min']:.3f} .. {res['ratio_max']:.3f}] | "
              f"8 SAs installed in {res['install_8_sas_ms_median']:.1f} ms")
    out["load_end"] = open("/proc/loadavg").read().split()[:3]
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
