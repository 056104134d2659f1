#!/usr/bin/python3
"""meshgate's main job on an embedded default: the dual-redundancy gateway (2 instances x 2 devices = 4 tunnels)
on DPDK virtual devices (net_pcap), no NIC needed.

1. Makes a capture of many inner flows (TCP and UDP, IPv4 and IPv6, mixed sizes) and, for every tunnel, inbound
   ESP from its device (encrypted with meshgate-esp and the tunnel's inbound SA).
2. Runs meshgate on configs/gateway-dual.toml, paced so the run lasts a few seconds.
3. Half way through, takes instance gw-b down for maintenance with meshgatectl (the operator's command through
   the shared-memory control ring).
4. Prints per tunnel flows / packets / share before and after, and the share of flows that moved; checks the
   ESP output with an independent decoder (scapy) and the accounting.
"""
import json, logging, os, shutil, subprocess, sys, tempfile, time, tomllib

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.all import IP, wrpcap, rdpcap  # noqa: E402
from scapy.layers.ipsec import SecurityAssociation, ESP  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_pcaps  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("BUILD", os.path.join(ROOT, "build"))
MESHGATE = os.path.join(BUILD, "apps/meshgate/meshgate")
CTL = os.path.join(BUILD, "apps/meshgatectl/meshgatectl")
ESPTOOL = os.path.join(BUILD, "apps/meshgate-esp/meshgate-esp")
CONFIG = os.path.join(ROOT, "configs/gateway-dual.toml")
FLOWS, PER_FLOW, PPS = 1000, 10, 5000


def main():
    cfg = tomllib.load(open(CONFIG, "rb"))
    inst = {i["name"]: i for i in cfg["instance"]}
    dev = {d["name"]: d for d in cfg["device"]}
    work = tempfile.mkdtemp(prefix="meshgate-demo.")
    out = os.path.join(work, "out")
    os.mkdir(out)

    # Inner traffic: FLOWS flows, PER_FLOW packets each, interleaved (scripts/make_pcaps.py, which operators use too).
    pk = make_pcaps.inside_packets(FLOWS, PER_FLOW)
    plain = os.path.join(work, "plain.pcap")
    wrpcap(plain, pk)
    print(f"demo: {len(pk)} inside packets in {FLOWS} flows (IPv4/IPv6, TCP/UDP, 64-1400 B)")

    # Inbound: each device sends 200 packets on each of its tunnels (device -> instance, the tunnel's in SA).
    rx = make_pcaps.inbound_esp(cfg, os.path.dirname(CONFIG), 200)
    env = dict(os.environ, MESHGATE_INSIDE_PCAP=plain, MESHGATE_OUT=out)
    for name, var in (("gw-a", "MESHGATE_OUT_A_RX"), ("gw-b", "MESHGATE_OUT_B_RX")):
        path = os.path.join(work, f"rx-{name}.pcap")
        wrpcap(path, rx[name])
        env[var] = path
    print(f"demo: {sum(len(v) for v in rx.values())} inbound ESP packets from the devices on all four tunnels")

    stats = os.path.join(work, "stats.json")
    name = f"demo{os.getpid()}"
    cmd = [MESHGATE, "-c", CONFIG, "--pace-pps", str(PPS), "--exit-when-idle-ms", "700", "--stats-json", stats,
           "--gateway", name, "--eal=--file-prefix=" + name, "--eal=--log-level=lib.eal:error", "-q"]
    half = len(pk) // 2
    have_ctl = os.path.exists(CTL)
    if not have_ctl:  # without the operator CLI, the same state change as a scheduled event
        cmd += ["--event", f"p{half}:instance:gw-b:down"]
    print("demo: " + " ".join(cmd[:3]) + f" (paced at {PPS} packets/s)")
    mg = subprocess.Popen(cmd, env=env)
    # Wait until half of the inside traffic went through, then maintenance of gw-b through the control ring.
    before = None
    t0 = time.time()
    while have_ctl and time.time() - t0 < 60:
        time.sleep(0.05)
        p = subprocess.run([CTL, "--gateway", name, "--json", "show", "tunnels"], capture_output=True, text=True)
        if p.returncode != 0:
            continue
        g = subprocess.run([CTL, "--gateway", name, "--json", "show", "gateway"], capture_output=True, text=True)
        if g.returncode == 0 and json.loads(g.stdout).get("inside_rx", 0) >= half:
            before = json.loads(p.stdout)
            break
    if have_ctl:
        c = subprocess.run([CTL, "--gateway", name, "instance", "gw-b", "maintenance"], capture_output=True, text=True)
        print(f"demo: meshgatectl --gateway {name} instance gw-b maintenance -> {c.stdout.strip() or c.stderr.strip()}")
    rc = mg.wait()
    shutil.rmtree(f"/var/run/dpdk/{name}", ignore_errors=True)  # the EAL runtime directory of its --file-prefix
    if not have_ctl:
        before = json.load(open(stats))["events"][0]["before"]
    if rc != 0:
        print(f"demo: meshgate exited {rc}")
        return 1
    fin = json.load(open(stats))

    def rows(ts):
        return {t["name"]: t for t in (ts["tunnels"] if isinstance(ts, dict) else ts)}

    b = rows(before) if before else {}
    f = rows(fin)
    tot_b = sum(t.get("packets_out", 0) for t in b.values()) or 1
    tot_a = sum(f[n]["packets_out"] - b.get(n, {}).get("packets_out", 0) for n in f) or 1
    print("\n%-6s %-6s | %8s %10s %7s | %8s %10s %7s" % ("tunnel", "inst", "flows", "packets", "share", "flows", "packets", "share"))
    print("%-13s | %-27s | %-27s" % ("", "before (gw-b up)", "after (gw-b maintenance)"))
    for n in f:
        pb = b.get(n, {}).get("packets_out", 0)
        pa = f[n]["packets_out"] - pb
        print("%-6s %-6s | %8d %10d %6.1f%% | %8d %10d %6.1f%%" % (
            n, f[n]["instance"], b.get(n, {}).get("pinned", 0), pb, 100.0 * pb / tot_b, f[n]["pinned"], pa, 100.0 * pa / tot_a))
    flows_before = sum(t.get("pinned", 0) for t in b.values())
    moved = fin["flows"]["moved_down"]
    print(f"\nflows moved by the maintenance: {moved} of {flows_before} ({100.0 * moved / max(1, flows_before):.1f} %; "
          f"the flows of gw-b's two tunnels, ideal 50 %); flows of gw-a's tunnels moved: 0 by design, checked below")

    # Independent check: scapy decrypts every ESP packet written on the outside ports.
    sas = {}
    for t in cfg["tunnel"]:
        sas[t["out"]["spi"]] = (t, SecurityAssociation(ESP, spi=t["out"]["spi"], crypt_algo="AES-GCM",
                                                       crypt_key=bytes.fromhex(t["out"]["key"]),
                                                       tunnel_header=IP(src=inst[t["instance"]]["ipv4"], dst=dev[t["device"]]["ipv4"]),
                                                       esn_en=t["out"].get("esn", False)))
    flow_tunnels, ok = {}, 0
    for port in ("out-a", "out-b"):
        for fr in rdpcap(os.path.join(out, port + ".pcap")):
            e = fr[ESP]
            t, sa = sas[e.spi]
            inner = sa.decrypt(fr.payload)  # raises on a bad ICV
            ok += 1
            l4 = inner.payload
            key = (inner.src, inner.dst, getattr(l4, "sport", 0), getattr(l4, "dport", 0))
            flow_tunnels.setdefault(key, []).append((float(fr.time), t["name"]))
    stayed = moved_ok = bad = 0
    for key, tl in flow_tunnels.items():
        ts = [n for _, n in sorted(tl)]  # in the order the packets left
        first = ts[0]
        if all(x == first for x in ts):
            stayed += 1
        elif first.startswith("b-") and all(x.startswith("a-") for x in ts[ts.index(next(x for x in ts if x.startswith("a-"))):]):
            moved_ok += 1
        else:
            bad += 1
    print(f"scapy decrypted {ok} ESP packets; {len(flow_tunnels)} flows: {stayed} kept one tunnel, "
          f"{moved_ok} moved from gw-b to gw-a once, {bad} moved otherwise")
    drops = sum(fin["drops"].values()) + fin["esp_out_drops"]
    print(f"accounting: inside rx {fin['inside_rx']} = tunnels {sum(t['packets_out'] for t in fin['tunnels'])} + drops {drops}; "
          f"inbound decrypted to the inside port: {fin['inside_tx']} of {fin['outside_rx']}; mbufs in use at exit: {fin['mbufs_in_use_at_exit']}")
    good = bad == 0 and ok == fin["outside_tx"] and fin["mbufs_in_use_at_exit"] == 0 and \
        fin["inside_rx"] == sum(t["packets_out"] for t in fin["tunnels"]) + drops
    print("demo: " + ("all checks passed" if good else "CHECKS FAILED") + f" (files in {work})")
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
