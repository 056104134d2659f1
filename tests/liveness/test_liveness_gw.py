#!/usr/bin/python3
"""Component test of tunnel liveness (issue 6): one meshgate on net_pcap vdevs, inside and outside RX paced.

  WatchdogTest  --liveness 20x3. Each tunnel receives scapy-made inbound ESP (paced, one packet every few ms per
                tunnel) while plaintext flows go out; a-1's inbound ends part-way. a-1 is marked down by liveness
                within interval x multiplier + one interval of its last authenticated packet, while the inside
                traffic is still flowing; its flows move to the other tunnels (every inner packet still out exactly
                once, each moved flow switches once), other flows do not move, the other tunnels stay up until
                their own inbound ends (after the inside traffic); the stats JSON shows state, proof and flaps.
  OffTest       the same inputs without --liveness: nothing goes down (liveness is off by default).

Reuses tests/gateway/test_gateway.py (pcap i/o, config model, runner, decryption, accounting).
Run: /usr/bin/python3 tests/liveness/test_liveness_gw.py --meshgate build/apps/meshgate/meshgate [--keep]
Exit: 0 all passed, 1 a failure, 77 (meson: skipped) when scapy is missing.
"""
import collections
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "gateway"))
import test_gateway as tg  # noqa: E402  (exits 77 itself when scapy is missing)
from scapy.all import IP, raw  # noqa: E402

INTERVAL, MULT = 20, 3
DETECT_BOUND_MS = INTERVAL * MULT + INTERVAL   # the bound: interval x multiplier + one interval

INSIDE_PPS = 1000         # inside RX pace (per worker; one worker)
OUTSIDE_PPS = 400         # per outside port: 200 pps per tunnel, one inbound packet every 5 ms
INSIDE_PKTS = 1800        # 1.8 s of plaintext
OUTSIDE_PKTS = 1000       # per port: 2.5 s of inbound ESP
A1_STOP = 400             # a-1's inbound ends after this many a-rx packets (about 1.0 s)


def build_inputs(gw, rng):
    sa = {t.name: t.inn.scapy_sa() for t in gw.tunnels}

    def eth(t):
        return (bytes.fromhex(("02:70:63:61:70:01" if t.port == "out-a" else "02:70:63:61:70:02").replace(":", ""))
                + bytes.fromhex(t.dev_mac.replace(":", "")) + b"\x08\x00")

    # Inbound: one small UDP flow per tunnel, source on-premises (in the prefixes), destination an inside host.
    rx = {"out-a": [], "out-b": []}
    inbound = collections.Counter()
    for port, names in (("out-a", ["a-1", "a-2"]), ("out-b", ["b-1", "b-2"])):
        for k in range(OUTSIDE_PKTS):
            name = names[k % 2]
            if name == "a-1" and k >= A1_STOP:
                name = "a-2"
            t = gw.by_name[name]
            f = tg.Flow(7000 + gw.tunnels.index(t), False, "udp", f"10.130.0.{gw.tunnels.index(t) + 1}",
                        "100.64.0.1", 5000, 6000)
            inner = f.inner(k, 100)
            rx[port].append(eth(t) + raw(sa[name].encrypt(IP(inner))))
            inbound[name] += 1
    # Outbound: 200 flows interleaved over 1.8 s.
    flows = tg.make_flows(200, rng, v4_net=7, v6_net=0x70)
    tr = tg.Trace()
    for k in range(INSIDE_PKTS):
        tr.add(flows[rng.randrange(len(flows))] if k >= len(flows) else flows[k], 128)
    return tr, rx, inbound


class LiveCase(tg.GatewayCase):
    extra = ()

    @classmethod
    def setUpClass(cls):
        cls.gw = tg.Gw(tg.dual_cfg())
        tr, rx, cls.inbound = build_inputs(cls.gw, random.Random(6001))
        cls.trace = tr
        cls.mg = tg.Run(cls.name, tg.dual_cfg(), tr.frames, a_rx=rx["out-a"], b_rx=rx["out-b"],
                        extra=["--pace-pps", str(INSIDE_PPS), "--pace-outside-pps", str(OUTSIDE_PPS)]
                        + list(cls.extra))
        cls.mg.trace, cls.mg.gw = tr, cls.gw
        cls.decoded = tg.decrypt_outputs(cls.gw, cls.mg) if cls.mg.out["out-a"] is not None else []

    def events(self):
        return self.mg.stats.get("liveness_events", []) if self.mg.stats else []

    def check_accounting(self):
        self.assert_accounting(INSIDE_PKTS, 2 * OUTSIDE_PKTS)
        st = self.mg.stats
        self.assertEqual(sum(st["drops"].values()), 0, f"drops {st['drops']}")
        self.assertEqual(st["esp_in_drops"], 0)
        for name, n in self.inbound.items():
            self.assertEqual(self.mg.tunnel_stats()[name]["packets_in"], n, f"{name}: inbound packets")


class WatchdogTest(LiveCase):
    name = "liveness-watchdog"
    extra = ("--liveness", f"{INTERVAL}x{MULT}", "--liveness-hold-down-ms", "1000")

    def test_accounting_and_every_packet_out_once(self):
        self.check_accounting()
        self.assert_decoded_clean()
        self.assert_exactly_once(range(INSIDE_PKTS))

    def test_a1_down_within_the_bound_while_traffic_flows(self):
        ev = [e for e in self.events() if e["tunnel"] == "a-1"]
        self.assertTrue(ev, f"a-1 never went down; events {self.events()}\n{self.mg.describe()}")
        first = ev[0]
        self.assertFalse(first["up"], f"first a-1 event is not a down: {first}")
        self.assertLess(first["inside_rx"], INSIDE_PKTS - 200,
                        f"a-1 went down after the inside traffic (too late to test the move): {first}")
        self.assertGreater(first["inside_rx"], 0)
        self.assertGreater(first["silence_ms"], INTERVAL * MULT - 1, f"down before interval x multiplier: {first}")
        self.assertLessEqual(first["silence_ms"], DETECT_BOUND_MS, f"detection too slow: {first}")
        self.assertEqual([e["up"] for e in ev], [False], f"a-1 came back without inbound traffic: {ev}")

    def test_other_tunnels_stay_up_while_their_inbound_lasts(self):
        early = [e for e in self.events() if e["tunnel"] != "a-1" and e["inside_rx"] < INSIDE_PKTS]
        self.assertFalse(early, f"other tunnels went down while their inbound ESP was arriving: {early}")

    def test_a1_flows_moved_once_others_stayed(self):
        self.assert_decoded_clean()
        per_flow = collections.defaultdict(list)
        for d in sorted((d for d in self.decoded if d.index is not None), key=lambda d: d.index):
            per_flow[self.trace.flow[d.index].fid].append(d.tunnel)
        moved, bad = 0, []
        for fid, ts in per_flow.items():
            changes = sum(1 for a, b in zip(ts, ts[1:]) if a != b)
            if ts[0] == "a-1":
                if changes > 1 or (changes == 1 and "a-1" in ts[ts.index(next(t for t in ts if t != "a-1")):]):
                    bad.append((fid, ts))
                moved += changes
            elif changes:
                bad.append((fid, ts))
        self.assertFalse(bad, f"flows moved more than once or off a live tunnel: {bad[:5]}")
        self.assertGreater(moved, 0, "no flow left a-1")
        down = next(e for e in self.events() if e["tunnel"] == "a-1")
        # Nothing placed on a-1 after the verdict: its last packet is before the verdict's inside_rx (+ one burst).
        last_a1 = max(d.index for d in self.decoded if d.tunnel == "a-1")
        self.assertLess(last_a1, down["inside_rx"] + 32, f"a-1 used after its down verdict {down}")
        self.assertEqual(self.mg.stats["flows"]["moved_down"], moved)

    def test_stats_show_liveness(self):
        ts = self.mg.tunnel_stats()
        for name in ("a-1", "a-2", "b-1", "b-2"):
            lv = ts[name].get("liveness")
            self.assertIsNotNone(lv, f"{name}: no liveness in the stats JSON")
            # At exit every inbound stream has ended: all down once, none back up.
            self.assertEqual(lv["state"], "down", f"{name}: {lv}")
            self.assertEqual(lv["flaps"], 1, f"{name}: {lv}")
            self.assertGreater(lv["last_proof_ms_ago"], INTERVAL * MULT, f"{name}: {lv}")
            self.assertEqual(ts[name]["state"], "down")
            self.assertEqual(ts[name]["admin"], "up", f"{name}: liveness must not change the operator's state")


class OffTest(LiveCase):
    name = "liveness-off"

    def test_nothing_goes_down_without_liveness(self):
        self.check_accounting()
        self.assertEqual(self.events(), [])
        ts = self.mg.tunnel_stats()
        for name in ("a-1", "a-2", "b-1", "b-2"):
            self.assertNotIn("liveness", ts[name])
            self.assertEqual(ts[name]["state"], "up")
        self.assertEqual(self.mg.stats["flows"]["moved_down"], 0)


if __name__ == "__main__":
    sys.exit(tg.__dict__["main"]())
