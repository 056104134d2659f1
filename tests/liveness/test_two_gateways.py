#!/usr/bin/python3
"""Two meshgate processes facing each other (issue 6, first test), in a network namespace this test creates and
deletes: a Linux bridge and four veth pairs; each meshgate outside port is net_pcap on one veth (iface=, phy_mac=1,
the veth MACs set to the configs' next_hop_mac values).

  near  configs/gateway-dual.toml (2 instances x 2 devices), --liveness 20x3 (probes on), paced plaintext flows.
  far   the mirror config made here (instances = near's devices, devices = near's instances, SAs swapped), with
        --reflect (answers near's probes on the same tunnel) and --fault 1.0:1-a:blackhole --fault 1.8:1-a:heal.

  TwoGateways  near marks a-1 down within interval x multiplier + one interval of its last proof, and only a-1;
               a-1 is up again no sooner than the hold-down after the heal; every probe of the other tunnels is
               answered; their data all arrives at the far side (the data plane loses nothing; the live pcap on a
               veth may lose a few in a thousand on a busy host, so that much is tolerated); a-1's loss is bounded by the
               detection time; both processes exit cleanly with no mbuf leak.
  KillFar      the far process stops (all four tunnels silent at once) and a new one starts 0.8 s later: all go
               down within the bound and together, and come back after the hold-down (the new process's replies
               start at sequence number 1, so the first ones are replays to the near side: same static keys).
  Flapping     a-1 black-holed 100 ms / healed 200 ms, 8 times, near hold-down 100 ms: down/up/down/up/down, then
               suppressed by damping (3 flaps); no false alarm elsewhere; a-1's packets conserved across both sides.
Needs root (ip netns) and scapy; exit 77 (skipped) without them.
Run: /usr/bin/python3 tests/liveness/test_two_gateways.py --meshgate build/apps/meshgate/meshgate [--keep]
"""
import json
import os
import random
import shutil
import subprocess
import sys
import time
import tomllib
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import gwtest  # noqa: E402

NS = f"mglv{os.getpid()}"
MACS = {"ga": "02:00:00:00:0a:01", "gb": "02:00:00:00:0a:02", "d1": "02:00:00:00:01:01", "d2": "02:00:00:00:01:02"}
INSIDE_PKTS, PPS = 3000, 1000


def sh(*cmd, ns=True, check=True):
    full = (["ip", "netns", "exec", NS] if ns else []) + list(cmd)
    return subprocess.run(full, capture_output=True, text=True, check=check)


def make_far_config(near_path, path, pmd_path):
    with open(near_path, "rb") as f:
        c = tomllib.load(f)
    inst_mac = {"gw-a": MACS["ga"], "gw-b": MACS["gb"]}
    dev_port = {"onprem-1": "op1", "onprem-2": "op2"}
    out = ['[gateway]', 'name = "far"', 'mode = "active-active"', f'pmd_config = "{pmd_path}"', '',
           '[inside]', 'port = "inside"', 'prefixes = ["10.0.0.0/8", "2001:db8:a::/48", "2001:db8:b::/48"]',
           'next_hop_mac = "02:00:00:00:0f:01"', '', '[flow]', 'seed = 7', 'table_size = 65537',
           'pin_idle_timeout_ms = 30000', 'pin_capacity = 65536', '']
    for d in c["device"]:   # the near side's devices are this side's instances
        out += ['[[instance]]', f'name = "{d["name"]}"', f'ipv4 = "{d["ipv4"]}"', f'port = "{dev_port[d["name"]]}"', '']
    for i in c["instance"]:
        out += ['[[device]]', f'name = "{i["name"]}"', f'ipv4 = "{i["ipv4"]}"', f'next_hop_mac = "{inst_mac[i["name"]]}"',
                '']
    for t in c["tunnel"]:
        name = t["name"].split("-")[1] + "-" + t["name"].split("-")[0]     # a-1 -> 1-a
        out += ['[[tunnel]]', f'name = "{name}"', f'instance = "{t["device"]}"', f'device = "{t["instance"]}"',
                'weight = 1']
        for side, src in (("out", t["in"]), ("in", t["out"])):
            out += [f'[tunnel.{side}]', f'spi = {src["spi"]}', f'cipher = "{src["cipher"]}"', f'key = "{src["key"]}"',
                    f'esn = {"true" if src.get("esn") else "false"}']
            if side == "in":
                out.append('replay_window = 1024')
        out.append('')
    with open(path, "w") as f:
        f.write("\n".join(out))


def make_pmd(path, inside_rx, inside_tx, ports):
    lines = ['[eal]', 'args = ["--no-huge", "-m", "512", "--no-pci", "-l", "0-1"]', '', '[workers]', 'lcores = [1]',
             'mbufs = 16383', '', '[[port]]', 'name = "inside"',
             f'devargs = "net_pcap0,rx_pcap={inside_rx},tx_pcap={inside_tx}"', '']
    for k, (name, iface) in enumerate(ports):
        lines += ['[[port]]', f'name = "{name}"', f'devargs = "net_pcap{k + 1},iface={iface},phy_mac=1"', '']
    with open(path, "w") as f:
        f.write("\n".join(lines))


class TwoGateways(unittest.TestCase):
    """Black hole on one tunnel at the far side for 0.8 s, then healed."""
    FAR = [(0, ["--fault", "1.0:1-a:blackhole", "--fault", "1.8:1-a:heal", "--duration", "6"])]
    NEAR_S = 4.5
    NEAR_EXTRA = ()

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0 or shutil.which("ip") is None:
            raise unittest.SkipTest("needs root and ip(8) for a network namespace")
        d = cls.dir = os.path.join(gwtest.TMP, cls.__name__)
        os.makedirs(os.path.join(d, "near-out"), exist_ok=True)
        os.makedirs(os.path.join(d, "far-out"), exist_ok=True)
        for s in ("near-state", "far-state"):   # sequence numbers continue over a far restart, as in production
            os.makedirs(os.path.join(d, s), exist_ok=True)
        subprocess.run(["ip", "netns", "add", NS], check=True)
        try:
            sh("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", check=False)
            sh("sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1", check=False)
            sh("ip", "link", "add", "br0", "type", "bridge")
            sh("ip", "link", "set", "br0", "up")
            for ifc, mac in MACS.items():
                sh("ip", "link", "add", ifc, "type", "veth", "peer", "name", ifc + "-br")
                sh("ip", "link", "set", ifc, "address", mac)
                sh("ip", "link", "set", ifc + "-br", "master", "br0")
                sh("ip", "link", "set", ifc, "up")
                sh("ip", "link", "set", ifc + "-br", "up")
            rng = random.Random(6100)
            flows = [f for f in gwtest.make_flows(300, rng, v4_net=12, v6_net=0xc0) if not f.v6][:150]
            cls.trace = tr = gwtest.Trace()
            for k in range(INSIDE_PKTS):
                tr.add(flows[k % len(flows)], 200)
            gwtest.write_pcap(os.path.join(d, "near-in.pcap"), tr.frames)
            gwtest.write_pcap(os.path.join(d, "empty.pcap"), [])
            make_pmd(os.path.join(d, "near-pmd.toml"), os.path.join(d, "near-in.pcap"),
                     os.path.join(d, "near-out", "inside.pcap"), [("out-a", "ga"), ("out-b", "gb")])
            make_pmd(os.path.join(d, "far-pmd.toml"), os.path.join(d, "empty.pcap"),
                     os.path.join(d, "far-out", "inside.pcap"), [("op1", "d1"), ("op2", "d2")])
            make_far_config(gwtest.dual_cfg(), os.path.join(d, "far.toml"), os.path.join(d, "far-pmd.toml"))
            mg = gwtest.ARGS.meshgate
            fars = []
            for k, (start, args) in enumerate(cls.FAR):
                fars.append((start, [mg, "-c", os.path.join(d, "far.toml"), "--reflect"] + list(args)
                             + ["--stats-json", os.path.join(d, f"far{k}.json"), f"--eal=--file-prefix={NS}-far{k}",
                                "--state-dir", os.path.join(d, "far-state"),
                                "--control-name", f"{NS}-far{k}"]))
            near_cmd = [mg, "-c", gwtest.dual_cfg(), "--pmd", os.path.join(d, "near-pmd.toml"), "--liveness", "20x3",
                        "--pace-pps", str(PPS), "--duration", str(cls.NEAR_S)] + list(cls.NEAR_EXTRA) + [
                        "--stats-json", os.path.join(d, "near.json"), "--state-dir", os.path.join(d, "near-state"),
                        f"--eal=--file-prefix={NS}-near", "--control-name", f"{NS}-near"]
            cls.cmds = ([c for _, c in fars], near_cmd)
            t0 = time.monotonic()
            procs, near = [], None
            for start, cmd in fars:   # far processes start at their times; near 0.3 s after the first far
                while time.monotonic() - t0 < start:
                    time.sleep(0.01)
                    if near is None and time.monotonic() - t0 >= 0.3:
                        near = subprocess.Popen(["ip", "netns", "exec", NS] + near_cmd, stdout=subprocess.PIPE,
                                                stderr=subprocess.STDOUT, text=True)
                if procs:
                    procs[-1].wait(timeout=30)   # one far process at a time (same ports)
                procs.append(subprocess.Popen(["ip", "netns", "exec", NS] + cmd, stdout=subprocess.PIPE,
                                              stderr=subprocess.STDOUT, text=True))
                if near is None:
                    time.sleep(0.3)
                    near = subprocess.Popen(["ip", "netns", "exec", NS] + near_cmd, stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT, text=True)
            cls.near_log = near.communicate(timeout=cls.NEAR_S + 60)[0]
            outs = [p.communicate(timeout=cls.NEAR_S + 60)[0] for p in procs]
            cls.far_log = "\n".join(outs)
            cls.near_rc, cls.far_rc = near.returncode, max(p.returncode for p in procs)
        finally:
            subprocess.run(["ip", "netns", "del", NS], check=False)
            for p in [f"{NS}-far{k}" for k in range(len(cls.FAR))] + [f"{NS}-near"]:
                shutil.rmtree(f"/var/run/dpdk/{p}", ignore_errors=True)
        cls.near, cls.fars = None, []
        if os.path.exists(os.path.join(d, "near.json")):
            with open(os.path.join(d, "near.json")) as f:
                cls.near = json.load(f)
        for k in range(len(cls.FAR)):
            p = os.path.join(d, f"far{k}.json")
            if os.path.exists(p):
                with open(p) as f:
                    cls.fars.append(json.load(f))
        cls.far = cls.fars[0] if cls.fars else None

    def describe(self):
        return (f"near rc {self.near_rc}: {' '.join(self.cmds[1])}\n{self.near_log[-1500:]}\n"
                f"far rc {self.far_rc}: {' / '.join(' '.join(c) for c in self.cmds[0])}\n{self.far_log[-1500:]}")

    def test_clean_exits(self):
        self.assertEqual((self.near_rc, self.far_rc), (0, 0), self.describe())
        self.assertEqual(self.near["mbufs_in_use_at_exit"], 0)
        for f in self.fars:
            self.assertEqual(f["mbufs_in_use_at_exit"], 0)

    def test_blackholed_tunnel_down_in_time_and_back_after_hold_down(self):
        ev = self.near["liveness_events"]
        a1 = [e for e in ev if e["tunnel"] == "a-1"]
        self.assertEqual([e["up"] for e in a1], [False, True], f"a-1 events {a1}\n{self.describe()}")
        down, up = a1
        self.assertLessEqual(down["silence_ms"], 80, f"detection slower than interval x multiplier + interval: {down}")
        self.assertGreaterEqual(up["at_ms"] - down["at_ms"], 1000, f"back up before the hold-down: {a1}")
        others = [e for e in ev if e["tunnel"] != "a-1"]
        self.assertEqual(others, [], f"false alarms on the other tunnels: {others}")
        ts = {t["name"]: t for t in self.near["tunnels"]}
        for name in ("a-2", "b-1", "b-2"):
            # One probe every 15..20 ms for 4.5 s (about 260): every one of them, not one in two.
            self.assertGreater(ts[name]["probes_out"], 200, f"{name}: probes sent")
            self.assertGreaterEqual(ts[name]["probe_replies_in"], ts[name]["probes_out"] * 98 // 100,
                                    f"{name}: replies")

    def test_other_tunnels_lose_nothing_a1_loss_bounded(self):
        near = {t["name"]: t for t in self.near["tunnels"]}
        far = {t["name"]: t for t in self.far["tunnels"]}
        for n, f in (("a-2", "2-a"), ("b-1", "1-b"), ("b-2", "2-b")):
            # The data plane loses nothing; a live pcap on a veth may (kernel socket buffer while a process is
            # descheduled on a busy host): a loss of a few packets in a thousand is the medium's, not liveness's.
            lost = near[n]["packets_out"] - far[f]["packets_in"]
            self.assertTrue(0 <= lost <= near[n]["packets_out"] // 200, f"{n}: sent {near[n]['packets_out']}, "
                            f"received far {far[f]['packets_in']}")
        lost = near["a-1"]["packets_out"] - far["1-a"]["packets_in"]
        self.assertGreater(lost, 0, "the black hole dropped nothing?")
        self.assertLessEqual(lost, 80 * PPS // 1000, f"a-1 lost {lost} packets: more than the detection window")
        self.assertEqual(self.near["inside_rx"], INSIDE_PKTS)
        self.assertEqual(sum(t["packets_out"] for t in self.near["tunnels"]), INSIDE_PKTS, "no drop near")


class KillFar(TwoGateways):
    """The far process ends at 1.5 s (as if killed: its tunnels fall silent at once) and a new one starts at 2.3 s
    with the same static SAs and state directory. Every tunnel goes down within the bound; they come back once the
    hold-down has passed after the new far process's first replies. Those replies are no replays: the new process
    continues the sequence numbers where the state directory says (issue 15; before, it restarted at 1, reusing
    (key, IV) pairs, and the near side dropped its first replies as replays)."""
    FAR = [(0, ["--duration", "1.5"]), (2.3, ["--duration", "7"])]
    NEAR_S = 7.5

    def test_blackholed_tunnel_down_in_time_and_back_after_hold_down(self):
        ev = self.near["liveness_events"]
        for name in ("a-1", "a-2", "b-1", "b-2"):
            e = [x for x in ev if x["tunnel"] == name]
            self.assertEqual([x["up"] for x in e], [False, True], f"{name}: {e}\n{self.describe()}")
            self.assertLessEqual(e[0]["silence_ms"], 80, f"{name}: {e[0]}")
            # Back no sooner than the hold-down (1000 ms of proof) after the first replies of the new far process,
            # which cannot come before the down (one 20 ms tick of margin).
            self.assertGreaterEqual(e[1]["at_ms"] - e[0]["at_ms"], 1000 - 20, f"{name}: {e}")
        downs = [x["at_ms"] for x in ev if not x["up"]]
        self.assertLessEqual(max(downs) - min(downs), 2 * 20 + 5, f"all tunnels of the dead peer go down together: {ev}")
        ts = {t["name"]: t for t in self.near["tunnels"]}
        replays = {n: t["esp_drops"].get("in_replay", 0) + t["esp_drops"].get("in_too_old", 0) for n, t in ts.items()}
        self.assertEqual(sum(replays.values()), 0, f"the restarted peer's replies were taken for replays (its "
                                                   f"sequence numbers, i.e. IVs, started over): {replays}")

    def test_other_tunnels_lose_nothing_a1_loss_bounded(self):
        self.assertEqual(self.near["inside_rx"], INSIDE_PKTS)


class Flapping(TwoGateways):
    """a-1 at the far side: black hole 100 ms, healed 200 ms, 8 times; near with a 100 ms hold-down so that each
    cycle is a down and an up. Damping suppresses the tunnel after three flaps (3 x 1000 less decay > 2500): it
    stays down for the rest of the run although proof comes back; no crash, other tunnels untouched."""
    FAR = [(0, [x for k in range(8) for x in ("--fault", f"{1.0 + 0.3 * k:.1f}:1-a:blackhole",
                                               "--fault", f"{1.1 + 0.3 * k:.1f}:1-a:heal")] + ["--duration", "6"])]
    NEAR_EXTRA = ("--liveness-hold-down-ms", "100")

    def test_blackholed_tunnel_down_in_time_and_back_after_hold_down(self):
        ev = self.near["liveness_events"]
        a1 = [e for e in ev if e["tunnel"] == "a-1"]
        self.assertEqual([e["up"] for e in a1], [False, True, False, True, False], f"{a1}\n{self.describe()}")
        for e in a1:
            if not e["up"]:
                self.assertLessEqual(e["silence_ms"], 80, e)
        self.assertEqual([e for e in ev if e["tunnel"] != "a-1"], [])
        lv = {t["name"]: t for t in self.near["tunnels"]}["a-1"]["liveness"]
        self.assertEqual((lv["state"], lv["flaps"], lv["suppressions"]), ("suppressed", 3, 1), lv)

    def test_other_tunnels_lose_nothing_a1_loss_bounded(self):
        near = {t["name"]: t for t in self.near["tunnels"]}
        far = {t["name"]: t for t in self.far["tunnels"]}
        for n, f in (("a-2", "2-a"), ("b-1", "1-b"), ("b-2", "2-b")):
            # The data plane loses nothing; a live pcap on a veth may (kernel socket buffer while a process is
            # descheduled on a busy host): a loss of a few packets in a thousand is the medium's, not liveness's.
            lost = near[n]["packets_out"] - far[f]["packets_in"]
            self.assertTrue(0 <= lost <= near[n]["packets_out"] // 200, f"{n}: sent {near[n]['packets_out']}, "
                            f"received far {far[f]['packets_in']}")
        self.assertEqual(sum(t["packets_out"] for t in self.near["tunnels"]), INSIDE_PKTS, "no drop near")
        # Everything near sent on a-1 (data and probes) reached the far side or its black hole (less what the
        # medium may lose, as above).
        sent = near["a-1"]["packets_out"] + near["a-1"]["probes_out"]
        got = far["1-a"]["packets_in"] + far["1-a"]["reflect_in"] + far["1-a"]["fault_drops"]
        self.assertTrue(0 <= sent - got <= sent // 200, f"a-1: sent {sent}, accounted far {got}")


def main():
    import argparse
    import tempfile
    ap = argparse.ArgumentParser()
    ap.add_argument("--meshgate", required=True)
    ap.add_argument("--source-root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    ap.add_argument("--keep", action="store_true")
    a, rest = ap.parse_known_args()
    gwtest.ARGS = argparse.Namespace(meshgate=os.path.abspath(a.meshgate), source_root=os.path.abspath(a.source_root),
                                 spread="", esp_tool="")
    gwtest.TMP = tempfile.mkdtemp(prefix="mg-two-")
    try:
        prog = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
    finally:
        if a.keep:
            print(f"scratch kept in {gwtest.TMP}")
        else:
            shutil.rmtree(gwtest.TMP, ignore_errors=True)
    r = prog.result
    if r.testsRun and len(r.skipped) == r.testsRun:
        return 77
    return 0 if not (r.failures or r.errors) else 1


if __name__ == "__main__":
    sys.exit(main())
