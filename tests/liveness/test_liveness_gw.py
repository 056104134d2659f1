#!/usr/bin/python3
"""Component test of tunnel liveness (issue 6): one meshgate on net_pcap vdevs, inside and outside RX paced.

  WatchdogTest  --liveness 20x3. Each tunnel receives scapy-made inbound ESP (paced, one packet every few ms per
                tunnel) while plaintext flows go out; a-1's inbound ends part-way. a-1 is marked down by liveness
                within interval x multiplier + one interval of its last authenticated packet, while the inside
                traffic is still flowing; its flows move to the other tunnels (every inner packet still out exactly
                once, each moved flow switches once), other flows do not move, the other tunnels stay up until
                their own inbound ends (after the inside traffic); the stats JSON shows state, proof and flaps.
                Probes (on by default with --liveness): only for tunnels without inbound traffic, one per 15..20 ms,
                ICMP echo requests instance IPv4 -> device IPv4 inside the tunnel's ESP.
  ReflectTest   --reflect: echo requests to a tunnel's own address are answered on that tunnel; replies to our
                probes are consumed (and count as proof); other ICMP goes inside.
  OffTest       the same inputs without --liveness: nothing goes down (liveness is off by default).

Reuses tests/common/gwtest.py (pcap i/o, config model, runner, decryption, accounting).
Run: /usr/bin/python3 tests/liveness/test_liveness_gw.py --meshgate build/apps/meshgate/meshgate [--keep]
Exit: 0 all passed, 1 a failure, 77 (meson: skipped) when scapy is missing.
"""
import collections
import copy
import os
import random
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import gwtest  # noqa: E402  (exits 77 itself when scapy is missing)
from scapy.all import IP, ICMP, IPv6, ICMPv6EchoReply, ICMPv6EchoRequest, raw  # noqa: E402

PROBE_ID = 0x6d67
PROBE_MAGIC = b"mg-probe"
REFLECT_MAGIC = b"reflect!"   # payload of the echo requests the reflector test sends
SPOOFED = {4: "203.0.113.99", 6: "2001:db8:ffff::99"}   # outside the [inside] prefixes, nobody's probe address

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
            f = gwtest.Flow(7000 + gw.tunnels.index(t), False, "udp", f"10.130.0.{gw.tunnels.index(t) + 1}",
                        "100.64.0.1", 5000, 6000)
            inner = f.inner(k, 100)
            rx[port].append(eth(t) + raw(sa[name].encrypt(IP(inner))))
            inbound[name] += 1
    # Outbound: 200 flows interleaved over 1.8 s.
    flows = gwtest.make_flows(200, rng, v4_net=7, v6_net=0x70)
    tr = gwtest.Trace()
    for k in range(INSIDE_PKTS):
        tr.add(flows[rng.randrange(len(flows))] if k >= len(flows) else flows[k], 128)
    return tr, rx, inbound


def is_probe(inner):
    """An inner ICMP or ICMPv6 echo (request or reply) of meshgate's liveness probes or of the reflector test."""
    if len(inner) >= 36 and inner[0] == 0x45 and inner[9] == 1 and inner[20] in (0, 8):
        return inner[28:36] in (PROBE_MAGIC, REFLECT_MAGIC)
    return (len(inner) >= 56 and inner[0] >> 4 == 6 and inner[6] == 58 and inner[40] in (128, 129)
            and inner[48:56] in (PROBE_MAGIC, REFLECT_MAGIC))


def echo_of(inner):
    """(src, dst, type as in ICMPv4 (8 request / 0 reply), id, seq, payload, checksums valid) of an inner echo, as
    scapy reads it; checksums recomputed by scapy from scratch."""
    if inner[0] >> 4 == 6:
        p = IPv6(inner)
        e = p[ICMPv6EchoRequest] if ICMPv6EchoRequest in p else p[ICMPv6EchoReply]
        q = IPv6(inner)
        qe = q[ICMPv6EchoRequest] if ICMPv6EchoRequest in q else q[ICMPv6EchoReply]
        del qe.cksum
        ok = IPv6(raw(q)).payload.cksum == e.cksum
        return p.src, p.dst, 8 if e.type == 128 else 0, e.id, e.seq, bytes(e.data), ok, p.plen + 40
    p = IP(inner)
    q = IP(inner)
    del q.chksum
    del q[ICMP].chksum
    q = IP(raw(q))
    ok = (q.chksum, q[ICMP].chksum) == (p.chksum, p[ICMP].chksum)
    return p.src, p.dst, p[ICMP].type, p[ICMP].id, p[ICMP].seq, bytes(p[ICMP].payload), ok, p.len


def pcap_times(path):
    """Timestamps (s) of a microsecond or nanosecond pcap's frames."""
    with open(path, "rb") as f:
        data = f.read()
    nano = struct.unpack("<I", data[:4])[0] == 0xA1B23C4D
    out, off = [], 24
    while off + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack("<IIII", data[off:off + 16])
        out.append(sec + frac / (1e9 if nano else 1e6))
        off += 16 + incl
    return out


class LiveCase(gwtest.GatewayCase):
    extra = ()
    cfg = None        # default: configs/gateway-dual.toml
    PROBE = {}        # tunnel -> (probe source, probe address); default: (instance IPv4, device IPv4)

    @classmethod
    def config(cls):
        return gwtest.source_path("configs", cls.cfg) if cls.cfg else gwtest.dual_cfg()

    def probe_addrs(self, t):
        return self.PROBE.get(t.name, self.PROBE.get("*", (t.inst_ip, t.dev_ip)))

    @classmethod
    def setUpClass(cls):
        cls.gw = gwtest.Gw(cls.config())
        tr, rx, cls.inbound = build_inputs(cls.gw, random.Random(6001))
        cls.trace = tr
        cls.mg = gwtest.Run(cls.name, cls.config(), tr.frames, a_rx=rx["out-a"], b_rx=rx["out-b"],
                        extra=["--pace-pps", str(INSIDE_PPS), "--pace-outside-pps", str(OUTSIDE_PPS)]
                        + list(cls.extra))
        cls.mg.trace, cls.mg.gw = tr, cls.gw
        dec = gwtest.decrypt_outputs(cls.gw, cls.mg) if cls.mg.out["out-a"] is not None else []
        # Liveness packets (probes, reflected replies) are checked on their own; the rest is data.
        cls.probes = [d for d in dec if d.inner is not None and is_probe(d.inner)]
        cls.decoded = [d for d in dec if not (d.inner is not None and is_probe(d.inner))]
        cls.times = {port: pcap_times(os.path.join(cls.mg.dir, "out", f"{port}.pcap")) for port in ("out-a", "out-b")}

    def events(self):
        return self.mg.stats.get("liveness_events", []) if self.mg.stats else []

    def check_accounting(self, outside_fed=2 * OUTSIDE_PKTS, inside_fed=INSIDE_PKTS, selector=None):
        """selector: per tunnel, the inbound packets expected to be dropped as inner_selector (none by default)."""
        selector = selector or collections.Counter()
        # The shared accounting of data, with the liveness packets taken out of the counters and the pcaps.
        run = copy.copy(self.mg)
        st = run.stats = copy.deepcopy(self.mg.stats)
        T = st["tunnels"]
        st["outside_tx"] -= sum(t["probes_out"] + t["reflected"] for t in T)
        st["outside_rx"] -= sum(t["probe_replies_in"] + t["reflect_in"] for t in T)
        for port in ("out-a", "out-b"):
            mine = [t for t in T if self.gw.by_name[t["name"]].port == port]
            for key in ("opackets", "tx_packets"):
                st["ports"][port][key] -= sum(t["probes_out"] + t["reflected"] for t in mine)
            for key in ("ipackets", "rx_packets"):
                st["ports"][port][key] -= sum(t["probe_replies_in"] + t["reflect_in"] for t in mine)
        run.out = dict(run.out)
        for port in ("out-a", "out-b"):
            keep = {d.pos for d in self.decoded if d.port == port}
            run.out[port] = [f for k, f in enumerate(run.out[port]) if k in keep]
        consumed = sum(t["probe_replies_in"] + t["reflect_in"] for t in T)
        probs = gwtest.accounting_problems(run, inside_fed, outside_fed - consumed)
        if probs:
            self.fail_run("accounting: " + "; ".join(probs))
        self.assertEqual(sum(t["probe_drops"] for t in T), 0)
        st = self.mg.stats
        self.assertEqual({k: v for k, v in st["drops"].items() if v},
                         {"inner_selector": sum(selector.values())} if selector else {}, f"drops {st['drops']}")
        self.assertEqual(st["esp_in_drops"], 0)
        for name, n in self.inbound.items():
            t = self.mg.tunnel_stats()[name]
            self.assertEqual(t["packets_in"] + t["probe_replies_in"] + t["reflect_in"] + selector[name], n,
                             f"{name}: inbound")


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

    def test_probes_inside_esp_only_when_not_busy(self):
        """Probes: ICMP (ICMPv6) echo requests from the tunnel's probe source to its probe address (by default
        instance IPv4 -> device IPv4), valid checksums (scapy's), identifier and magic, inside the tunnel's ESP
        (they decrypted above with the tunnel's outbound SA). While a tunnel's inbound traffic arrives every 5 ms
        it needs no probes; after it ends, one every 15..20 ms (jitter)."""
        self.assertTrue(self.probes, "no probes at all")
        by_t = collections.defaultdict(list)
        for d in self.probes:
            t = self.gw.by_name[d.tunnel]
            src, dst, typ, ident, _, payload, ok, _ = echo_of(d.inner)
            self.assertEqual((src, dst, typ, ident), self.probe_addrs(t) + (8, PROBE_ID), d.tunnel)
            self.assertEqual(payload[:8], PROBE_MAGIC)
            self.assertTrue(ok, f"{d.tunnel}: checksums")
            by_t[d.tunnel].append(self.times[d.port][d.pos])
        ts = self.mg.tunnel_stats()
        for name, times in by_t.items():
            self.assertEqual(ts[name]["probes_out"], len(times), name)
        # a-1 is probed from its silence to the end (about 2 s): roughly one probe per 17.5 ms on average.
        a1 = sorted(by_t["a-1"])
        gaps = sorted(b - a for a, b in zip(a1, a1[1:]))
        self.assertGreater(len(a1), 40, f"a-1: {len(a1)} probes")
        med = gaps[len(gaps) // 2]
        self.assertTrue(0.013 <= med <= 0.022, f"a-1: median probe gap {med * 1000:.1f} ms (want 15..20)")
        # The busy tunnels got probes only in their silent tail (about 0.4 s after 2.5 s of inbound).
        for name in ("a-2", "b-1", "b-2"):
            self.assertLess(len(by_t[name]), len(a1) / 2, f"{name}: {len(by_t[name])} probes while busy?")

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
            self.assertEqual(ts[name]["probes_out"], 0)
            self.assertEqual(ts[name]["state"], "up")
        self.assertEqual(self.mg.stats["flows"]["moved_down"], 0)


class ReflectTest(LiveCase):
    """--reflect with --liveness: echo requests to a tunnel's own instance address come back on that tunnel (inner
    addresses swapped, type 0, same id/seq/payload, valid checksums, the tunnel's outbound SA); echo replies to
    our probes are consumed as probe replies (and are proof of life); other ICMP goes to the inside port. Echo
    requests from a source outside the [inside] prefixes that is not the tunnel's probe peer are dropped as
    inner_selector, like data from there, never answered."""
    name = "liveness-reflect"
    extra = ("--liveness", f"{INTERVAL}x{MULT}", "--reflect")
    N_IN = 100
    V6 = False

    @classmethod
    def setUpClass(cls):
        gw = cls.gw = gwtest.Gw(gwtest.dual_cfg())
        sa = {t.name: t.inn.scapy_sa() for t in gw.tunnels}
        rng = random.Random(6002)
        rx = {"out-a": [], "out-b": []}
        cls.inbound = collections.Counter()
        cls.requests = {}   # (tunnel, seq) -> request payload
        cls.spoofed = collections.Counter()   # per tunnel: requests from a source no data may come from
        cls.replies = collections.Counter()
        cls.data_icmp = 0
        for port, names in (("out-a", ["a-1", "a-2"]), ("out-b", ["b-1", "b-2"])):
            for k in range(OUTSIDE_PKTS):
                t = gw.by_name[names[k % 2]]
                kind = k % 10
                me, far = cls.PROBE.get("*", (t.inst_ip, t.dev_ip))
                if kind in (0, 1, 2, 3):   # echo request to the tunnel's own address: reflected
                    body = REFLECT_MAGIC + bytes(rng.randrange(256) for _ in range(rng.choice([0, 8, 56, 500])))
                    src = far
                    if k % 20 in (2, 3):   # ... unless its source is neither in the prefixes nor the probe peer
                        src = SPOOFED[6 if cls.V6 else 4]
                        cls.spoofed[t.name] += 1
                    else:
                        cls.requests[(t.name, k)] = bytes(body)
                    pkt = (IPv6(src=src, dst=me, hlim=60) / ICMPv6EchoRequest(id=77, seq=k, data=body) if cls.V6
                           else IP(src=src, dst=me, ttl=60) / ICMP(type=8, id=77, seq=k) / body)
                elif kind in (4, 5):       # a reply to one of our probes
                    body = PROBE_MAGIC + struct.pack("<Q", k)
                    pkt = (IPv6(src=far, dst=me) / ICMPv6EchoReply(id=PROBE_ID, seq=k, data=body) if cls.V6
                           else IP(src=far, dst=me) / ICMP(type=0, id=PROBE_ID, seq=k) / body)
                    cls.replies[t.name] += 1
                elif kind == 6:            # an echo request to someone else: data, to the inside port
                    pkt = IP(src="10.128.9.9", dst="100.64.0.9") / ICMP(type=8, id=5, seq=k) / b"data-icmp"
                    cls.data_icmp += 1
                else:                      # plain data
                    pkt = IP(src="10.128.1.1", dst="100.64.0.1") / gwtest.UDP(sport=1, dport=2) / (b"x" * 50)
                eth = (bytes.fromhex(("02:70:63:61:70:01" if port == "out-a" else "02:70:63:61:70:02")
                                     .replace(":", "")) + bytes.fromhex(t.dev_mac.replace(":", "")) + b"\x08\x00")
                b = raw(pkt)
                rx[port].append(eth + raw(sa[t.name].encrypt(IPv6(b) if b[0] >> 4 == 6 else IP(b))))
                cls.inbound[t.name] += 1
        flows = gwtest.make_flows(20, rng, v4_net=8, v6_net=0x80)
        tr = gwtest.Trace()
        for k in range(cls.N_IN):
            tr.add(flows[k % len(flows)], 128)
        cls.trace = tr
        cls.mg = gwtest.Run(cls.name, gwtest.dual_cfg(), tr.frames, a_rx=rx["out-a"], b_rx=rx["out-b"],
                        extra=["--pace-pps", str(INSIDE_PPS), "--pace-outside-pps", str(OUTSIDE_PPS)]
                        + list(cls.extra))
        cls.mg.trace, cls.mg.gw = tr, gw
        dec = gwtest.decrypt_outputs(gw, cls.mg)
        cls.probes = [d for d in dec if d.inner is not None and is_probe(d.inner)]
        cls.decoded = [d for d in dec if not (d.inner is not None and is_probe(d.inner))]

    def test_accounting(self):
        self.check_accounting(inside_fed=self.N_IN, selector=self.spoofed)
        self.assert_decoded_clean()
        self.assert_exactly_once(range(self.N_IN))

    def test_requests_reflected_on_the_same_tunnel(self):
        got = {}
        for d in self.probes:
            src, dst, typ, ident, seq, payload, ok, ip_len = echo_of(d.inner)
            if typ != 0:
                continue
            t = self.gw.by_name[d.tunnel]
            self.assertEqual((src, dst, ident), self.probe_addrs(t) + (77,), d.tunnel)
            self.assertEqual(d.inner[0] >> 4, 6 if self.V6 else 4)
            self.assertTrue(ok, f"{d.tunnel}: checksums")
            self.assertEqual(len(d.inner), ip_len, "no padding in the tunnel")
            got[(d.tunnel, seq)] = payload
        self.assertEqual(got, self.requests)
        ts = self.mg.tunnel_stats()
        for name in ("a-1", "a-2", "b-1", "b-2"):
            n = sum(1 for (tn, _) in self.requests if tn == name)
            self.assertEqual((ts[name]["reflect_in"], ts[name]["reflected"]), (n, n), name)
            self.assertEqual(ts[name]["probe_replies_in"], self.replies[name], name)
            self.assertGreater(self.spoofed[name], 0, name)
        self.assertEqual(self.mg.stats["drops"]["inner_selector"], sum(self.spoofed.values()))

    def test_other_icmp_goes_inside_and_tunnels_stay_up(self):
        inside = self.mg.out["inside"]
        self.assertEqual(sum(1 for f in inside if b"data-icmp" in f), self.data_icmp)
        self.assertFalse([f for f in inside if REFLECT_MAGIC in f or PROBE_MAGIC in f])
        early = [e for e in self.events() if e["outside_rx"] < 2 * OUTSIDE_PKTS - 50]
        self.assertFalse(early, f"tunnels went down while authenticated inbound (probe replies included) arrived")


V6_PROBE = ("2001:db8:ffff::1", "2001:db8:ffff::2")


class Ipv6ReflectTest(ReflectTest):
    """The reflector with IPv6 inner addresses: ICMPv6 echo requests to the tunnels' probe source (given on the
    command line) come back as ICMPv6 echo replies (addresses swapped, checksum valid for scapy); ICMPv6
    replies to our probes are consumed."""
    name = "liveness-reflect-v6"
    V6 = True
    PROBE = {"*": V6_PROBE}
    extra = ReflectTest.extra + ("--probe-source", V6_PROBE[0], "--probe-address", V6_PROBE[1])


class Ipv6ProbeTest(WatchdogTest):
    """Probes with IPv6 inner addresses over the IPv4 tunnels: ICMPv6 echo requests (RFC 4443, checksum over the
    pseudo-header, verified by scapy); everything else as WatchdogTest."""
    name = "liveness-ipv6"
    PROBE = {"*": V6_PROBE}
    extra = WatchdogTest.extra + ("--probe-source", V6_PROBE[0], "--probe-address", V6_PROBE[1])


class ConfigFileTest(WatchdogTest):
    """Liveness from the gateway file alone, no liveness flag (configs/gateway-liveness.toml: [liveness] 20 ms x 3,
    hold-down 1000 ms, per-tunnel inner probe addresses in [tunnel.liveness]): the same behaviour as WatchdogTest,
    probes between each tunnel's own addresses."""
    name = "liveness-config"
    cfg = "gateway-liveness.toml"
    extra = ()
    PROBE = {f"{i}-{d}": (f"169.254.{n}.1", f"169.254.{n}.2")
             for n, (i, d) in zip(range(10, 14), (("a", 1), ("a", 2), ("b", 1), ("b", 2)))}


class MonitorTest(LiveCase):
    """--liveness-monitor: the detector runs and reports (a-1's down verdict is in the events and the stats, marked
    not applied), but no tunnel leaves service: no flow moves, a-1 keeps carrying its flows to the end."""
    name = "liveness-monitor"
    extra = ("--liveness", f"{INTERVAL}x{MULT}", "--liveness-monitor")

    def test_verdicts_reported_not_applied(self):
        self.check_accounting()
        self.assert_decoded_clean()
        self.assert_exactly_once(range(INSIDE_PKTS))
        ev = [e for e in self.events() if e["tunnel"] == "a-1"]
        self.assertTrue(ev, f"no verdict on a-1: {self.events()}")
        self.assertFalse(ev[0]["up"])
        self.assertLessEqual(ev[0]["silence_ms"], DETECT_BOUND_MS)
        self.assertTrue(all(not e["applied"] for e in self.events()), self.events())
        self.assertEqual(self.mg.stats["generation"], 1, "monitor mode published a state change")
        self.assertEqual(self.mg.stats["flows"]["moved_down"], 0)
        ts = self.mg.tunnel_stats()
        self.assertEqual(ts["a-1"]["liveness"]["state"], "down")
        self.assertEqual(ts["a-1"]["state"], "up")
        last_a1 = max(d.index for d in self.decoded if d.tunnel == "a-1")
        self.assertGreater(last_a1, ev[0]["inside_rx"] + 100, "a-1 stopped carrying traffic at the verdict")


if __name__ == "__main__":
    sys.exit(gwtest.main())
