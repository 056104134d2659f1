#!/usr/bin/python3
"""Routes in the gateway (docs/ARCHITECTURE.md "Routes"): [[route]] tables on the shipped dual config, meshgate on
net_pcap vdevs, scapy as the oracle of what went into which tunnel.

  RoutesTest  the dual config (4 tunnels, weights 1) plus
                [[route]] 10.128.0.0/16 via devices = ["onprem-1"]      (tunnels a-1, b-1)
                [[route]] 2001:db8:b:5::/64 via tunnels = ["b-2"]
              Outbound, 4 kinds of flows mixed in one trace: to 10.128/16 (only a-1 and b-1 may carry them; both
              do), to 2001:db8:b:5::/64 (only b-2), to 10.200/16 and 2001:db8:b::/48 outside the /64 (the [inside]
              prefixes: all four tunnels carry some), and to 192.168.1.1 (no route: dropped as not_routed). Every
              routed packet is decrypted exactly once, on a tunnel of its route. Inbound (scapy's ESP into the
              instance ports): inner sources in 10.128/16 arriving on a-1 are delivered, the same on a-2 (onprem-2's
              tunnel, which 10.128/16 is not routed through) are dropped as inner_selector; a source in 10.200/16 is
              delivered from every tunnel. No flow moved (moved_route 0), exact accounting, 0 mbufs.
  CheckTest   `meshgate --check` lists the routes with their tunnels.

Run: /usr/bin/python3 tests/gateway/test_routes.py --meshgate build/apps/meshgate/meshgate [--keep]
"""
import collections
import ipaddress
import os
import random
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import gwtest  # noqa: E402  (exits 77 when scapy is missing)
from gwtest import Flow, GatewayCase, Gw, Run, Trace, decrypt_outputs, dual_cfg, interleave, sized  # noqa: E402
from scapy.all import IP, raw  # noqa: E402

ROUTES = """
[[route]]
prefixes = ["10.128.0.0/16"]
devices = ["onprem-1"]

[[route]]
prefixes = ["2001:db8:b:5::/64"]
tunnels = ["b-2"]
"""
ONPREM1 = {"a-1", "b-1"}


def write_config():
    with open(dual_cfg()) as f:
        text = f.read()
    path = os.path.join(gwtest.TMP, "routes.toml")
    with open(path, "w") as f:
        f.write(text.replace('pmd_config = "../pmd_config/', f'pmd_config = "{gwtest.source_path("pmd_config")}/')
                + ROUTES)
    return path


def allowed(dst):
    """The tunnels a destination may use, by the routes above (the oracle: Python's ipaddress, not lib/route)."""
    a = ipaddress.ip_address(dst)
    if a.version == 4 and a in ipaddress.ip_network("10.128.0.0/16"):
        return ONPREM1
    if a.version == 6 and a in ipaddress.ip_network("2001:db8:b:5::/64"):
        return {"b-2"}
    return {"a-1", "a-2", "b-1", "b-2"}


class RoutesTest(GatewayCase):

    @classmethod
    def setUpClass(cls):
        rng = random.Random(1414)
        cls.cfg = write_config()
        gw = cls.gw = Gw(cls.cfg)
        flows = []
        for k in range(240):
            kind = k % 4
            sport = 2000 + k
            if kind == 0:
                flows.append(Flow(k, False, "udp", f"10.1.{k // 200}.{k % 200 + 1}", f"10.128.{k % 50}.{k % 200 + 1}",
                                  sport, 443))
            elif kind == 1:
                flows.append(Flow(k, True, "udp", f"2001:db8:a::{k + 1:x}", f"2001:db8:b:5::{k + 1:x}", sport, 443))
            elif kind == 2:
                flows.append(Flow(k, False, "tcp", f"10.1.9.{k % 200 + 1}", f"10.200.{k % 50}.{k % 200 + 1}",
                                  sport, 80))
            else:
                flows.append(Flow(k, True, "tcp", f"2001:db8:a::{k + 1:x}", f"2001:db8:b:7::{k + 1:x}", sport, 80))
        cls.unrouted = [Flow(900 + k, False, "udp", "10.1.0.1", "192.168.1.1", 3000 + k, 53) for k in range(5)]
        tr = Trace()
        cls.routed_idx = []
        for f in interleave([(f, 3) for f in flows] + [(f, 2) for f in cls.unrouted], rng):
            i = tr.add(f, sized(rng))
            if f not in cls.unrouted:
                cls.routed_idx.append(i)
        cls.n_unrouted = 10

        # Inbound: scapy's ESP from the devices. (tunnel, inner source, delivered?)
        sa = {t.name: t.inn.scapy_sa() for t in gw.tunnels}
        cls.in_trace = Trace()
        rx = {"out-a": [], "out-b": []}
        cls.expect_in = []
        cls.n_selector = 0
        for k, (tn, src, ok) in enumerate([("a-1", "10.128.3.3", True), ("b-1", "10.128.4.4", True),
                                           ("a-2", "10.128.3.3", False), ("b-2", "10.128.5.5", False),
                                           ("a-2", "10.200.1.1", True), ("b-2", "10.200.2.2", True)] * 4):
            t = gw.by_name[tn]
            f = Flow(5000 + k, False, "udp", src, "100.64.0.9", 7000 + k, 9)
            inner = f.inner(len(cls.in_trace.frames), 200)
            i = cls.in_trace.add_inner(f, inner, None)
            eth = bytes.fromhex(("027063617001" if t.port == "out-a" else "027063617002") +
                                t.dev_mac.replace(":", "")) + b"\x08\x00"
            rx[t.port].append(eth + raw(sa[tn].encrypt(IP(inner))))
            if ok:
                cls.expect_in.append(i)
            else:
                cls.n_selector += 1
        cls.trace = tr
        cls.n_outside = len(rx["out-a"]) + len(rx["out-b"])
        cls.mg = Run("routes", cls.cfg, tr.frames, a_rx=rx["out-a"], b_rx=rx["out-b"])
        cls.mg.trace, cls.mg.gw = tr, gw
        cls.decoded = decrypt_outputs(gw, cls.mg) if cls.mg.out["out-a"] is not None else []

    def test_every_routed_packet_once_on_a_tunnel_of_its_route(self):
        if self.mg.rc != 0:
            self.fail_run("meshgate failed")
        self.assert_decoded_clean()
        self.assert_exactly_once(self.routed_idx)
        wrong = [(d.index, d.tunnel, self.trace.flow[d.index].dst) for d in self.decoded
                 if d.tunnel not in allowed(self.trace.flow[d.index].dst)]
        self.assertEqual(wrong, [], "packets on a tunnel their destination's route does not include")
        used = collections.defaultdict(set)
        for d in self.decoded:
            dst = ipaddress.ip_address(self.trace.flow[d.index].dst)
            kind = ("10.128" if dst in ipaddress.ip_network("10.128.0.0/16") else
                    "b:5" if dst in ipaddress.ip_network("2001:db8:b:5::/64") else "inside")
            used[kind].add(d.tunnel)
        self.assertEqual(used["10.128"], ONPREM1, "the route's flows spread over both of its tunnels")
        self.assertEqual(used["b:5"], {"b-2"})
        self.assertEqual(used["inside"], {"a-1", "a-2", "b-1", "b-2"})

    def test_unrouted_dropped_and_counted(self):
        st = self.mg.stats
        self.assertIsNotNone(st, self.mg.describe())
        self.assertEqual(st["drops"]["not_routed"], self.n_unrouted, st["drops"])
        self.assertEqual(st["flows"]["moved_route"], 0)

    def test_inbound_source_must_be_routed_through_its_tunnel(self):
        st = self.mg.stats
        self.assertIsNotNone(st, self.mg.describe())
        self.assertEqual(st["drops"]["inner_selector"], self.n_selector, st["drops"])
        inside = self.mg.out["inside"] or []
        got = collections.Counter(self.in_trace.index_of.get(fr[14:]) for fr in inside)
        self.assertEqual(sorted(i for i in got if i is not None), sorted(self.expect_in))
        self.assertTrue(all(c == 1 for i, c in got.items() if i is not None), got)
        self.assertIn("mbufs in use after closing ports: 0", self.mg.stderr)

    def test_accounting(self):
        self.assert_accounting(len(self.trace.frames), self.n_outside)


class CheckTest(GatewayCase):
    def test_check_lists_routes(self):
        cfg = write_config()
        env = dict(os.environ, MESHGATE_INSIDE_PCAP="/x", MESHGATE_OUT="/tmp", MESHGATE_OUT_A_RX="/x",
                   MESHGATE_OUT_B_RX="/x")
        p = subprocess.run([gwtest.ARGS.meshgate, "-c", cfg, "--check"], capture_output=True, text=True, env=env,
                           timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("route 10.128.0.0/16 via a-1 b-1\n", p.stdout)
        self.assertIn("route 2001:db8:b:5::/64 via b-2\n", p.stdout)


if __name__ == "__main__":
    sys.exit(gwtest.main())
