#!/usr/bin/python3
"""Component tests of the meshgate data plane process on net_pcap vdevs, with workers running.

Each test class runs `meshgate` once (pcap in, pcap out, --stats-json) and checks the result against
independent oracles: scapy decrypts every ESP packet (ICV verified), meshgate-esp decrypts it a second time,
meshgate-spread predicts the flow placement for the same trace, and the stats JSON must account for every packet.

  OutboundTest       400 known flows (TCP/UDP/ICMP, IPv4/IPv6, 64..1400 B, interleaved) -> out-a/out-b:
                     every inner packet exactly once and byte for byte, one tunnel per flow, outer header of the
                     tunnel (instance IP -> device IP, device next_hop_mac, TTL, DSCP/DF copy), ESP sequence
                     numbers 1..n per SA in inner order, IV = sequence number, shares = meshgate-spread's.
  OutboundDropsTest  not routed (outside [inside] prefixes, boundary addresses) and non-IP / runt frames are
                     dropped and counted; Ethernet padding of short frames is not part of the inner packet.
  InboundTest        scapy-made ESP of all four tunnels (one flow over two tunnels): decrypted on the inside port;
                     wrong-instance SPI, replay, tamper, inner source outside the prefixes: dropped and counted;
                     outbound traffic in the same run comes out complete.
  StandbyTest        active-standby, paced: active only; active down -> standby; active up -> pinned flows stay,
                     new flows go to the active instance.
  InstanceDownTest   active-active, paced: gw-a down mid-run moves only gw-a's flows, no packet lost; gw-a up
                     again moves nothing back; the whole run equals meshgate-spread's replay of the same events.
  CheckTest          meshgate --check on the shipped configs (exit 0; also as documented in the file, with no
                     MESHGATE_* variables) and on broken copies (exit 2, file named).
Every run: exit code 0, mbufs_in_use_at_exit == 0, inside_rx/outside_rx = forwarded + drops by reason.

Run: /usr/bin/python3 tests/gateway/test_gateway.py --meshgate build/apps/meshgate/meshgate \
         [--spread build/apps/meshgate-spread/meshgate-spread] [--esp-tool build/apps/meshgate-esp/meshgate-esp] \
         [--source-root .] [--keep] [unittest args, e.g. -k Inbound]
Exit: 0 all passed, 1 a failure, 77 (meson: skipped) when scapy is missing.
The helpers (pcap i/o, config model, runner, decryption, accounting) are tests/common/gwtest.py.
"""
import collections
import os
import random
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import gwtest  # noqa: E402  (exits 77 when scapy is missing)
from gwtest import (  # noqa: E402
    Flow,
    GW_MAC,
    GatewayCase,
    Gw,
    HOST_MAC,
    Run,
    Trace,
    decrypt_outputs,
    dual_cfg,
    esp_tool_decrypt,
    frame,
    interleave,
    mac_str,
    make_flows,
    pmd_cfg,
    sized,
    source_path,
    spread_predict,
    standby_cfg,
    write_pcap,
)
from scapy.all import IP, IPv6, UDP, Raw, raw  # noqa: E402

# ------------------------------------------------------------------------------------------------ 1 outbound


class OutboundTest(GatewayCase):
    """400 known flows, unpaced, dual config: decrypt everything, compare with the input and the prediction."""

    @classmethod
    def setUpClass(cls):
        rng = random.Random(4001)
        cls.gw = Gw(dual_cfg())
        flows = make_flows(400, rng)
        # Boundary destinations inside the prefixes.
        flows[0].dst = "10.255.255.254"
        flows[3].dst = "10.0.0.1"
        counts = [(f, rng.randint(2, 6)) for f in flows]
        tr = Trace()
        fsize = {f.fid: sized(rng) for f in flows}
        for f in interleave(counts, rng):
            # Sizes vary within a flow too (64..1400 frame bytes); most packets use the flow's usual size.
            tr.add(f, fsize[f.fid] if rng.random() < 0.7 else sized(rng))
        cls.launch("outbound", dual_cfg(), tr)

    def test_accounting(self):
        self.assert_accounting(len(self.trace.frames), 0)
        st = self.mg.stats
        self.assertEqual(sum(st["drops"].values()), 0, f"unexpected drops {st['drops']}")
        self.assertEqual(st["flows"]["new"], len({f.fid for f in self.trace.flow}), "flows.new")

    def test_every_inner_packet_exactly_once_byte_for_byte(self):
        self.assert_decoded_clean()
        self.assert_exactly_once(range(len(self.trace.frames)))

    def test_each_flow_uses_one_tunnel(self):
        self.assert_decoded_clean()
        per_flow = collections.defaultdict(set)
        for i, t in self.placement().items():
            per_flow[self.trace.flow[i].fid].add(t)
        multi = {f: sorted(ts) for f, ts in per_flow.items() if len(ts) != 1}
        self.assertFalse(multi, f"flows on more than one tunnel: {list(multi.items())[:10]}")
        used = collections.Counter(next(iter(ts)) for ts in per_flow.values())
        self.assertEqual(set(used), {t.name for t in self.gw.tunnels},
                         f"400 flows should reach all 4 tunnels, got {dict(used)}")

    def test_outer_headers_of_the_tunnel(self):
        self.assert_decoded_clean()
        probs = []
        for d in self.decoded:
            t = self.gw.by_name[d.tunnel]
            inner = d.inner
            v6 = (inner[0] >> 4) == 6
            inner_dscp = (((inner[0] & 0x0f) << 4 | inner[1] >> 4) if v6 else inner[1]) >> 2
            want = {"port": t.port, "outer src": t.inst_ip, "outer dst": t.dev_ip, "eth dst": t.dev_mac,
                    "ttl": t.ttl}
            got = {"port": d.port, "outer src": d.outer_src, "outer dst": d.outer_dst, "eth dst": d.eth_dst,
                   "ttl": d.ttl}
            if t.dscp == "copy":
                want["dscp"], got["dscp"] = inner_dscp, d.tos >> 2
            if t.df == "copy" and not v6:
                want["df"], got["df"] = bool(inner[6] & 0x40), d.df
            if want != got:
                probs.append(f"{d.port}#{d.pos} tunnel {d.tunnel}: want {want} got {got}")
        self.assertFalse(probs, f"{len(probs)} outer headers wrong, first: {probs[:5]}")

    def test_sequence_numbers_per_sa(self):
        self.assert_decoded_clean()
        by_sa = collections.defaultdict(list)
        for d in self.decoded:
            by_sa[d.tunnel].append(d)
        for name, ds in by_sa.items():
            seqs = sorted(d.seq for d in ds)
            self.assertEqual(seqs, list(range(1, len(ds) + 1)), f"{name}: sequence numbers not 1..{len(ds)}")
            bad_iv = [d.pos for d in ds if d.iv != d.seq.to_bytes(8, "big")]
            self.assertFalse(bad_iv, f"{name}: IV is not the 64-bit sequence number at {bad_iv[:5]}")
            # One worker: an SA's sequence order is the inner arrival order.
            order = [d.index for d in sorted(ds, key=lambda d: d.seq)]
            self.assertEqual(order, sorted(order), f"{name}: inner packets reordered within the SA")

    def test_second_oracle_meshgate_esp(self):
        self.assert_decoded_clean()
        for port in ("out-a", "out-b"):
            res, inners = esp_tool_decrypt(self.gw, self.mg, port, f"esp-tool-{port}")
            want = sorted(d.inner for d in self.decoded if d.port == port)
            self.assertEqual(res.get("frames_out", len(inners)), len(want), f"{port}: meshgate-esp {res}")
            self.assertEqual(sorted(inners), want, f"{port}: meshgate-esp and scapy disagree on the inner packets")

    def test_shares_match_meshgate_spread(self):
        if not gwtest.ARGS.spread:
            self.skipTest("meshgate-spread not given (--spread)")
        self.assert_decoded_clean()
        pred = spread_predict(dual_cfg(), self.mg.inside_in)
        got_pk = collections.Counter(self.placement().values())
        flows_at = collections.defaultdict(set)
        for i, t in self.placement().items():
            flows_at[t].add(self.trace.flow[i].fid)
        ts = self.mg.tunnel_stats()
        for pt in pred["tunnels"]:
            t = next(x for x in self.gw.tunnels if x.instance == pt["instance"] and x.device == pt["device"])
            self.assertEqual((len(flows_at[t.name]), got_pk[t.name]), (pt["flows"], pt["packets"]),
                             f"tunnel {t.name}: (flows, packets) observed vs meshgate-spread's prediction")
            self.assertEqual((ts[t.name]["placed"], ts[t.name]["packets_out"]), (pt["flows"], pt["packets"]),
                             f"tunnel {t.name}: (placed, packets_out) in the stats vs meshgate-spread")


# ------------------------------------------------------------------------------------------------ 1b drops


class MalformedInsideTest(GatewayCase):
    """Routed packets mixed with malformed IP headers toward routed destinations while every tunnel is up: the
    junk is inside_malformed, never no_tunnel (which an operator reads as an outage)."""

    @classmethod
    def setUpClass(cls):
        rng = random.Random(4010)
        cls.gw = Gw(dual_cfg())
        tr = Trace()
        flows = make_flows(20, rng, v4_net=4, v6_net=0x40)
        mac = bytes.fromhex(GW_MAC.replace(":", "")) + bytes.fromhex(HOST_MAC.replace(":", ""))
        good4 = raw(IP(src="10.4.0.9", dst="10.128.9.9") / UDP(sport=1, dport=2) / Raw(bytes(40)))
        good6 = raw(IPv6(src="2001:db8:a::9", dst="2001:db8:b::9") / UDP(sport=1, dport=2) / Raw(bytes(40)))
        bad = {
            # IPv4 total length beyond the frame
            "v4_len_past_frame": mac + b"\x08\x00" + good4[:2] + (500).to_bytes(2, "big") + good4[4:],
            # IHL 4 (a header shorter than the minimum)
            "v4_ihl_4": mac + b"\x08\x00" + b"\x44" + good4[1:],
            # total length below the header
            "v4_len_below_header": mac + b"\x08\x00" + good4[:2] + (12).to_bytes(2, "big") + good4[4:],
            # IPv6 payload length past the frame
            "v6_plen_past_frame": mac + b"\x86\xdd" + good6[:4] + (1000).to_bytes(2, "big") + good6[6:],
            # an IPv6 packet under the IPv4 ethertype, and an IPv4 one under IPv6's
            "v6_under_v4_type": mac + b"\x08\x00" + good6,
            "v4_under_v6_type": mac + b"\x86\xdd" + good4 + bytes(20),
        }
        plan = [("f", f) for f in flows for _ in range(3)] + [("bad", k) for k in bad for _ in range(2)]
        rng.shuffle(plan)
        cls.routed, cls.n_bad, cls.kinds = [], 0, sorted(bad)
        for kind, x in plan:
            if kind == "f":
                cls.routed.append(tr.add(x, sized(rng)))
            else:
                tr.add_raw(bad[x])
                cls.n_bad += 1
        cls.launch("malformed-inside", dual_cfg(), tr)

    def test_accounting(self):
        self.assert_accounting(len(self.trace.frames), 0)

    def test_malformed_counted_as_such(self):
        d = self.mg.stats["drops"]
        self.assertEqual(d["inside_malformed"], self.n_bad, f"inside_malformed (2 each of {self.kinds}): {d}")
        self.assertEqual(d["no_tunnel"], 0, f"no_tunnel with every tunnel up: {d}")

    def test_routed_packets_leave(self):
        self.assert_decoded_clean()
        self.assert_exactly_once(self.routed)


class OutboundDropsTest(GatewayCase):
    """Routed packets mixed with not-routed ones, non-IP and runt frames, and short padded frames."""

    @classmethod
    def setUpClass(cls):
        rng = random.Random(4002)
        cls.gw = Gw(dual_cfg())
        tr = Trace()
        flows = make_flows(40, rng, v4_net=2, v6_net=0x20)
        cls.not_routed_dsts = ["192.168.1.1", "172.16.0.1", "11.0.0.1", "9.255.255.255", "0.0.0.0",
                               "2001:db8:c::1", "fe80::1", "2001:db8:9:ffff::1", "::1"]
        cls.n_not_routed = cls.n_not_ip = 0
        nr = [Flow(10000 + k, ":" in d, "udp", "10.2.200.1" if ":" not in d else "2001:db8:a::99", d,
                   5000 + k, 53) for k, d in enumerate(cls.not_routed_dsts)]
        # Short IPv4/UDP packets whose frames need Ethernet padding to 60 bytes.
        cls.short = [Flow(20000 + k, False, "udp", f"10.3.0.{k + 1}", "10.128.7.7", 7000 + k, 9) for k in range(6)]
        cls.short_idx = []
        plan = [("f", f) for f in flows for _ in range(3)] + [("nr", f) for f in nr for _ in range(2)]
        plan += [("arp", None)] * 5 + [("runt", None)] * 3 + [("runt6", None)] * 2 + [("short", f) for f in cls.short]
        rng.shuffle(plan)
        cls.routed = []
        for kind, f in plan:
            if kind == "f":
                cls.routed.append(tr.add(f, sized(rng)))
            elif kind == "nr":
                tr.add(f, 128)
                cls.n_not_routed += 1
            elif kind == "arp":
                tr.add_raw(bytes.fromhex("ffffffffffff") + bytes.fromhex(HOST_MAC.replace(":", "")) + b"\x08\x06"
                           + bytes(28) + bytes(18))
                cls.n_not_ip += 1
            elif kind == "runt":   # IPv4 ethertype but shorter than an IPv4 header
                tr.add_raw(bytes.fromhex(GW_MAC.replace(":", "")) + bytes.fromhex(HOST_MAC.replace(":", ""))
                           + b"\x08\x00" + b"\x45\x00\x00\x14")
                cls.n_not_ip += 1
            elif kind == "runt6":  # IPv6 ethertype, a 10-byte "packet"
                tr.add_raw(bytes.fromhex(GW_MAC.replace(":", "")) + bytes.fromhex(HOST_MAC.replace(":", ""))
                           + b"\x86\xdd" + b"\x60" + bytes(9))
                cls.n_not_ip += 1
            else:  # 14 + 20 + 8 + 18-byte tag = 60: no padding yet; make it shorter and pad the frame
                i = len(tr.frames)
                inner = raw(IP(src=f.src, dst=f.dst, ttl=61, id=i) / UDP(sport=f.sport, dport=f.dport)
                            / Raw(b"MG%04d" % i))
                fr = frame(inner)
                fr += bytes(60 - len(fr))          # Ethernet padding, as a NIC delivers a minimum frame
                cls.short_idx.append(tr.add_inner(f, inner, fr))
        cls.launch("outbound-drops", dual_cfg(), tr)

    def test_accounting(self):
        self.assert_accounting(len(self.trace.frames), 0)

    def test_not_routed_dropped_and_counted(self):
        d = self.mg.stats["drops"]
        self.assertEqual(d["not_routed"], self.n_not_routed,
                         f"not_routed (destinations {self.not_routed_dsts}, 2 packets each)")

    def test_non_ip_dropped_and_counted(self):
        d = self.mg.stats["drops"]
        self.assertEqual(d["inside_not_ip"], self.n_not_ip, "inside_not_ip (5 ARP, 3 IPv4 runts, 2 IPv6 runts)")

    def test_only_routed_packets_leave(self):
        # Loose: trailing Ethernet padding is the subject of test_ethernet_padding_is_not_encrypted.
        self.assert_decoded_clean(strict=False)
        self.assert_exactly_once(self.routed + self.short_idx, strict=False)

    def test_ethernet_padding_is_not_encrypted(self):
        """A 60-byte frame carrying a 34-byte IPv4 packet: the inner packet is the datagram, not the padding."""
        got = {}
        short_inner = {self.trace.inner[i]: i for i in self.short_idx}
        for d in self.decoded:
            if d.inner is None:
                continue
            for inner, i in short_inner.items():
                if d.inner.startswith(inner):
                    got[i] = d.inner
        self.assertEqual(len(got), len(self.short_idx), "short padded frames missing from the output")
        for i, inner in got.items():
            self.assertEqual(inner, self.trace.inner[i],
                             f"packet {i}: inner is {len(inner)} bytes, the IPv4 datagram is "
                             f"{len(self.trace.inner[i])} (Ethernet padding encrypted as part of the packet)")


# ------------------------------------------------------------------------------------------------ 2 inbound


class InboundTest(GatewayCase):
    """scapy-made ESP into out-a / out-b; checks what comes out on the inside port and the drop counters."""

    @classmethod
    def setUpClass(cls):
        rng = random.Random(4003)
        gw = cls.gw = Gw(dual_cfg())
        sa = {t.name: t.inn.scapy_sa() for t in gw.tunnels}
        rx = {"out-a": [], "out-b": []}
        tr = Trace()   # inner packets (not fed to the inside port): index_of matches decrypted frames
        cls.expect_good = []
        cls.good_per_tunnel = collections.Counter()
        cls.two_tunnel_idx = []

        def eth(t):
            return bytes.fromhex(("02:70:63:61:70:01" if t.port == "out-a" else "02:70:63:61:70:02")
                                 .replace(":", "")) + bytes.fromhex(t.dev_mac.replace(":", "")) + b"\x08\x00"

        def esp(t, inner):
            e = sa[t.name].encrypt(IPv6(inner) if (inner[0] >> 4) == 6 else IP(inner))
            return eth(t) + raw(e)

        def new_inner(f, size):
            inner = f.inner(len(tr.frames), size)
            return tr.add_inner(f, inner, None), inner

        # Inbound flows: source behind the tunnels (in the prefixes), destination an inside host.
        base = make_flows(48, rng, v4_net=5, v6_net=0x50)
        for f in base:   # swap so the source is on-premises 10.128.x / 2001:db8:b:: and dst is anything
            f.src, f.dst = f.dst, ("100.64.0.%d" % (f.fid % 200 + 1)) if not f.v6 else "2001:db8:ffff::1"
        by_tunnel = {t.name: base[k::4] for k, t in enumerate(gw.tunnels)}
        # One flow whose packets arrive over two tunnels of different instances and devices.
        split = Flow(900, False, "tcp", "10.129.0.9", "100.64.9.9", 40000, 443)
        cls.n_replay = cls.n_tamper = cls.n_wrong = cls.n_selector = 0
        events = []
        for name, fl in by_tunnel.items():
            for f in fl:
                for _ in range(3):
                    events.append(("good", name, f))
        for k in range(10):
            events.append(("good", ["a-2", "b-1"][k % 2], split))
        for _ in range(3):
            events.append(("wrong", "b-1", base[0]))     # gw-b's SA sent to gw-a's port
        for _ in range(2):
            events.append(("replay", "a-1", None))
        for _ in range(2):
            events.append(("tamper", "a-2", base[1]))
        events.append(("selector", "b-2", Flow(901, False, "udp", "172.16.9.9", "100.64.0.1", 9, 9)))
        events.append(("selector", "b-2", Flow(902, False, "udp", "11.0.0.1", "100.64.0.1", 9, 9)))
        events.append(("selector", "a-1", Flow(903, True, "udp", "2001:db8:c::1", "2001:db8:ffff::1", 9, 9)))
        rng.shuffle(events)
        # A replay must follow a packet of a-1 already sent: keep them after the first half.
        events.sort(key=lambda e: e[0] == "replay")
        last_a1 = []
        for kind, name, f in events:
            t = gw.by_name[name]
            if kind == "good":
                i, inner = new_inner(f, sized(rng))
                fr = esp(t, inner)
                rx[t.port].append(fr)
                cls.expect_good.append(i)
                cls.good_per_tunnel[name] += 1
                if f is split:
                    cls.two_tunnel_idx.append(i)
                if name == "a-1":
                    last_a1.append(fr)
            elif kind == "wrong":
                _, inner = new_inner(f, 200)
                rx["out-a"].append(eth(gw.by_name["a-1"]) + raw(sa[name].encrypt(IP(inner) if not f.v6
                                                                                 else IPv6(inner))))
                cls.n_wrong += 1
            elif kind == "replay":
                rx["out-a"].append(last_a1[-1 - cls.n_replay * 3])  # a copy of an a-1 packet already delivered
                cls.n_replay += 1
            elif kind == "tamper":
                _, inner = new_inner(f, 300)
                b = bytearray(esp(t, inner))
                b[-20] ^= 0x01   # in the ciphertext, before the ICV
                rx[t.port].append(bytes(b))
                cls.n_tamper += 1
            else:
                _, inner = new_inner(f, 150)
                rx[t.port].append(esp(t, inner))
                cls.n_selector += 1
        cls.trace = tr
        cls.rx = rx
        # Outbound traffic at the same time: one worker serves both directions.
        cls.out_trace = Trace()
        for f in interleave([(f, 3) for f in make_flows(40, rng, first_id=500, v4_net=12, v6_net=0xc0)], rng):
            cls.out_trace.add(f, sized(rng))
        cls.mg = Run("inbound", dual_cfg(), cls.out_trace.frames, a_rx=rx["out-a"], b_rx=rx["out-b"])
        cls.mg.trace, cls.mg.gw = tr, gw
        cls.decoded = decrypt_outputs(gw, cls.mg, cls.out_trace) if cls.mg.out["out-a"] is not None else []

    def inside_frames(self):
        fr = self.mg.out["inside"]
        if fr is None:
            self.fail_run("inside.pcap was not written")
        return fr

    def test_accounting(self):
        self.assert_accounting(len(self.out_trace.frames), len(self.rx["out-a"]) + len(self.rx["out-b"]))

    def test_outbound_alongside(self):
        self.assert_decoded_clean()
        self.assert_exactly_once(range(len(self.out_trace.frames)))

    def test_all_tunnels_decrypted_byte_for_byte(self):
        got = []
        wrong_l2 = []
        for k, fr in enumerate(self.inside_frames()):
            inner = fr[14:]
            et = fr[12:14]
            want_et = b"\x86\xdd" if inner and (inner[0] >> 4) == 6 else b"\x08\x00"
            if mac_str(fr[0:6]) != self.gw.inside_mac or et != want_et:
                wrong_l2.append((k, mac_str(fr[0:6]), et.hex()))
            got.append(self.trace.index_of.get(inner))
        self.assertFalse(wrong_l2, f"inside frames with wrong Ethernet dst/type (want {self.gw.inside_mac}): "
                                   f"{wrong_l2[:5]}")
        unknown = sum(1 for g in got if g is None)
        self.assertEqual(unknown, 0, f"{unknown} inside frames match no sent inner packet byte for byte")
        cnt = collections.Counter(got)
        self.assertEqual(sorted(cnt), sorted(self.expect_good), "decrypted set != the valid packets sent")
        self.assertEqual(max(cnt.values(), default=1), 1, "an inner packet came out twice")

    def test_flow_over_two_tunnels(self):
        got = {self.trace.index_of.get(fr[14:]) for fr in self.inside_frames()}
        missing = [i for i in self.two_tunnel_idx if i not in got]
        self.assertFalse(missing, f"packets of the flow sent over a-2 and b-1 missing: {missing}")
        ts = self.mg.tunnel_stats()
        for name, n in self.good_per_tunnel.items():
            self.assertEqual(ts[name]["packets_in"], n, f"{name}: packets_in")

    def test_wrong_instance_spi_dropped(self):
        st = self.mg.stats
        self.assertEqual(st["esp_unknown_sa_drops"].get("in_unknown_spi", 0), self.n_wrong,
                         f"b-1's SPI on out-a: esp_unknown_sa_drops {st['esp_unknown_sa_drops']}")
        self.assertEqual(self.mg.tunnel_stats()["b-1"]["packets_in"], self.good_per_tunnel["b-1"],
                         "b-1 must not count packets that arrived on gw-a's port")

    def test_replay_dropped(self):
        ed = self.mg.tunnel_stats()["a-1"]["esp_drops"]
        self.assertEqual(ed.get("in_replay", 0), self.n_replay, f"a-1 esp_drops {ed}")

    def test_tampered_dropped(self):
        ed = self.mg.tunnel_stats()["a-2"]["esp_drops"]
        self.assertEqual(ed.get("in_auth", 0), self.n_tamper, f"a-2 esp_drops {ed}")

    def test_inner_selector(self):
        st = self.mg.stats
        self.assertEqual(st["drops"]["inner_selector"], self.n_selector, f"drops {st['drops']}")
        total_esp = sum(sum(t["esp_drops"].values()) for t in st["tunnels"])
        self.assertEqual(total_esp, self.n_replay + self.n_tamper, "ESP drops other than replay/tamper: "
                         + str({t['name']: t['esp_drops'] for t in st['tunnels']}))


# ------------------------------------------------------------------------------------------------ paced runs


def paced_trace(groups, total, rng):
    """groups: list of (flows, start_index). Each packet index picks a random flow among those started.
    Each flow's first packet is placed at its group's start (so 'starts after X' is exact)."""
    tr = Trace()
    alive = []
    starts = sorted(groups, key=lambda g: g[1])
    gi = 0
    pending_first = []
    for i in range(total):
        while gi < len(starts) and starts[gi][1] <= i:
            alive.extend(starts[gi][0])
            pending_first.extend(starts[gi][0])
            gi += 1
        f = pending_first.pop(0) if pending_first else rng.choice(alive)
        tr.add(f, rng.choice([64, 128, 256, 512, 1000]))
    return tr


class PacedCase(GatewayCase):
    """A paced run with two instance events (down at packet DOWN, up at packet UP) over a trace of flow groups."""

    @classmethod
    def start(cls, name, config, groups, events):
        cls.gw = Gw(config)
        cls.launch(name, config, paced_trace(groups, cls.TOTAL, random.Random(cls.SEED)),
                   extra=["--pace-pps", str(cls.PPS)] + [f"--event={e}" for e in events])

    def per_flow(self):
        """fid -> list of (index, tunnel) in index order."""
        pf = collections.defaultdict(list)
        for i, t in sorted(self.placement().items()):
            pf[self.trace.flow[i].fid].append((i, t))
        return pf

    def first_g1_packet(self, pred, what):
        """The smallest index of a packet of the G1 flows for which pred(flow id, tunnel) holds."""
        g1 = {f.fid for f in self.g1}
        hits = [i for i, t in self.placement().items()
                if self.trace.flow[i].fid in g1 and pred(self.trace.flow[i].fid, t)]
        if not hits:
            self.fail_run(what)
        return min(hits)

    def inst(self, tunnel):
        return self.gw.by_name[tunnel].instance

    def event_before(self, text_prefix):
        for e in self.mg.stats.get("events", []):
            if e["event"].startswith(text_prefix):
                return e
        return None


class PacedChecks:
    """Checks every paced run gets (a mixin, so that unittest does not run them on the base class)."""

    def test_accounting(self):
        self.assert_accounting(self.TOTAL, 0)
        evs = self.mg.stats.get("events", [])
        self.assertEqual([e["ok"] for e in evs], [True, True], f"events {[(e['event'], e['ok']) for e in evs]}")

    def test_no_packet_lost(self):
        self.assert_decoded_clean()
        self.assert_exactly_once(range(self.TOTAL))


class StandbyTest(PacedChecks, PacedCase):
    """gateway-standby.toml, 4000 pps: down gw-a at packet 1200, up again at 3000; new flows at 2200 and 4400."""
    PPS, TOTAL, DOWN, UP = 4000, 6000, 1200, 3000
    G1B_START, G2_START = 2200, 4400
    SLACK = 800   # packets (200 ms at 4000 pps) for main to apply an event once inside RX reached its count

    SEED = 4004

    @classmethod
    def setUpClass(cls):
        gw = Gw(standby_cfg())
        cls.active = gw.active_instance()
        cls.standby = next(n for n in gw.instances if n != cls.active)
        rng = random.Random(cls.SEED + 1)
        cls.g1 = make_flows(100, rng, first_id=0, v4_net=6, v6_net=0x60)
        cls.g1b = make_flows(30, rng, first_id=100, v4_net=7, v6_net=0x70)
        cls.g2 = make_flows(40, rng, first_id=200, v4_net=8, v6_net=0x80)
        cls.start("standby", standby_cfg(), [(cls.g1, 0), (cls.g1b, cls.G1B_START), (cls.g2, cls.G2_START)],
                  [f"p{cls.DOWN}:instance:{cls.active}:down", f"p{cls.UP}:instance:{cls.active}:up"])

    def cutover(self):
        """First packet index of a G1 flow on the standby instance."""
        return self.first_g1_packet(lambda fid, t: self.inst(t) == self.standby,
                                    "no G1 packet ever reached the standby instance (down event without effect?)")

    def test_all_on_active_before_down(self):
        self.assert_decoded_clean()
        x = self.cutover()
        wrong = [(i, t) for i, t in self.placement().items() if i < x and self.inst(t) != self.active]
        self.assertFalse(wrong, f"before the down event packets left through {self.standby}: {wrong[:10]}")
        self.assertGreaterEqual(x, self.DOWN, "the standby got flows before the down event's packet count")
        self.assertLessEqual(x, self.DOWN + self.SLACK, "the down event took effect late")
        pf = self.per_flow()
        multi = [f for f, pl in pf.items() if len({t for i, t in pl if i < x}) > 1]
        self.assertFalse(multi, f"flows on two active tunnels before the down event: {multi[:10]}")

    def test_all_on_standby_after_down(self):
        self.assert_decoded_clean()
        x = self.cutover()
        wrong = [(i, t) for i, t in self.placement().items()
                 if x <= i < self.G2_START and self.inst(t) != self.standby]
        self.assertFalse(wrong, f"after {self.active} went down (cutover at packet {x}) packets still left "
                                f"through it: {wrong[:10]}")

    def test_pinned_flows_stay_on_standby_after_up(self):
        self.assert_decoded_clean()
        x = self.cutover()
        pf = self.per_flow()
        back, multi = [], []
        for f in self.g1 + self.g1b:
            after = [(i, t) for i, t in pf[f.fid] if i >= x]
            if any(self.inst(t) != self.standby for _, t in after):
                back.append((f.fid, [(i, t) for i, t in after if self.inst(t) != self.standby][:3]))
            if len({t for _, t in after}) > 1:
                multi.append((f.fid, sorted({t for _, t in after})))
        self.assertFalse(back, f"{len(back)} pinned flows went back to {self.active} after it came up: {back[:5]}")
        self.assertFalse(multi, f"flows changed tunnel after the cutover: {multi[:5]}")
        moved = sum(1 for f in self.g1 if any(i >= x for i, _ in pf[f.fid]))
        self.assertEqual(self.mg.stats["flows"]["moved_down"], moved, "flows.moved_down")

    def test_new_flows_after_up_go_to_active(self):
        self.assert_decoded_clean()
        up = self.event_before(f"p{self.UP}:")
        self.assertIsNotNone(up, "no snapshot for the up event in the stats JSON")
        self.assertLess(up["before"]["inside_rx"], self.G2_START,
                        f"the up event fired only after {up['before']['inside_rx']} packets; the test needs it "
                        f"before {self.G2_START} (machine too slow?)")
        pf = self.per_flow()
        wrong = []
        for f in self.g2:
            ts = {t for _, t in pf[f.fid]}
            if len(ts) != 1 or self.inst(next(iter(ts))) != self.active:
                wrong.append((f.fid, sorted(ts)))
        self.assertFalse(wrong, f"new flows after the up event not on one {self.active} tunnel: {wrong[:10]}")
        used = {t for f in self.g2 for _, t in pf[f.fid]}
        self.assertEqual(len(used), 2, f"40 new flows should use both {self.active} tunnels, got {used}")


class InstanceDownTest(PacedChecks, PacedCase):
    """gateway-dual.toml, 4000 pps: gw-a down at packet 1500, up at 3500; new flows from 4700."""
    PPS, TOTAL, DOWN, UP, G2_START = 4000, 6000, 1500, 3500, 4700
    SLACK = 800

    SEED = 4005

    @classmethod
    def setUpClass(cls):
        rng = random.Random(cls.SEED + 1)
        cls.g1 = make_flows(200, rng, first_id=0, v4_net=9, v6_net=0x90)
        cls.g2 = make_flows(60, rng, first_id=300, v4_net=11, v6_net=0xb0)
        cls.start("instance-down", dual_cfg(), [(cls.g1, 0), (cls.g2, cls.G2_START)],
                  [f"p{cls.DOWN}:instance:gw-a:down", f"p{cls.UP}:instance:gw-a:up"])

    def first_tunnel(self):
        return {fid: pl[0][1] for fid, pl in self.per_flow().items()}

    def cutover(self):
        first = self.first_tunnel()
        return self.first_g1_packet(lambda fid, t: self.inst(first[fid]) == "gw-a" and self.inst(t) == "gw-b",
                                    "no gw-a flow ever moved to gw-b (down event without effect?)")

    def test_gw_b_flows_keep_their_tunnel(self):
        self.assert_decoded_clean()
        first = self.first_tunnel()
        moved = []
        n = 0
        for fid, pl in self.per_flow().items():
            if self.inst(first[fid]) == "gw-b":
                n += 1
                ts = sorted({t for _, t in pl})
                if len(ts) != 1:
                    moved.append((fid, ts))
        self.assertGreater(n, 50, "too few flows started on gw-b for the check to mean anything")
        self.assertFalse(moved, f"{len(moved)} of {n} gw-b flows changed tunnel: {moved[:10]}")

    def test_only_gw_a_flows_move_once_at_the_cutover(self):
        self.assert_decoded_clean()
        x = self.cutover()
        self.assertGreaterEqual(x, self.DOWN, "gw-a flows moved before the down event's packet count")
        self.assertLessEqual(x, self.DOWN + self.SLACK, "the down event took effect late")
        first = self.first_tunnel()
        probs = []
        n_moved = 0
        for f in self.g1:
            pl = self.per_flow()[f.fid]
            if self.inst(first[f.fid]) != "gw-a":
                continue
            before = {t for i, t in pl if i < x}
            after = {t for i, t in pl if i >= x}
            if len(before) != 1 or (after and (len(after) != 1 or self.inst(next(iter(after))) != "gw-b")):
                probs.append((f.fid, sorted(before), sorted(after)))
            n_moved += bool(after)
        self.assertFalse(probs, f"gw-a flows not (one gw-a tunnel before packet {x}, one gw-b tunnel after): "
                                f"{probs[:8]}")
        on_a_after = [(i, t) for i, t in self.placement().items() if x <= i < self.G2_START and self.inst(t) == "gw-a"]
        self.assertFalse(on_a_after, f"packets on gw-a while it was down / after it came up (pinned): {on_a_after[:8]}")
        self.assertEqual(self.mg.stats["flows"]["moved_down"], n_moved, "flows.moved_down")

    def test_new_flows_after_up_use_gw_a_again(self):
        self.assert_decoded_clean()
        up = self.event_before(f"p{self.UP}:")
        self.assertIsNotNone(up, "no snapshot for the up event in the stats JSON")
        self.assertLess(up["before"]["inside_rx"], self.G2_START, "up event fired too late for the check")
        pf = self.per_flow()
        multi = [(f.fid, sorted({t for _, t in pf[f.fid]})) for f in self.g2 if len({t for _, t in pf[f.fid]}) != 1]
        self.assertFalse(multi, f"new flows on more than one tunnel: {multi[:5]}")
        on_a = sum(1 for f in self.g2 if self.inst(pf[f.fid][0][1]) == "gw-a")
        self.assertGreater(on_a, 0, "no new flow went to gw-a after it came back up")

    def test_matches_meshgate_spread_replay(self):
        if not gwtest.ARGS.spread:
            self.skipTest("meshgate-spread not given (--spread)")
        self.assert_decoded_clean()
        x = self.cutover()
        evs = [f"down gw-a/onprem-1 at {x}", f"down gw-a/onprem-2 at {x}",
               f"up gw-a/onprem-1 at {self.G2_START}", f"up gw-a/onprem-2 at {self.G2_START}"]
        pred = spread_predict(dual_cfg(), self.mg.inside_in, evs)
        got_pk = collections.Counter(self.placement().values())
        arrivals = collections.Counter()   # flows arriving at a tunnel (new or moved), as the tool counts them
        for fid, pl in self.per_flow().items():
            last = None
            for _, t in pl:
                if t != last:
                    arrivals[t] += 1
                last = t
        ts = self.mg.tunnel_stats()
        for pt in pred["tunnels"]:
            t = next(x for x in self.gw.tunnels if x.instance == pt["instance"] and x.device == pt["device"])
            self.assertEqual((arrivals[t.name], got_pk[t.name]), (pt["flows"], pt["packets"]),
                             f"{t.name}: (flow arrivals, packets) observed vs meshgate-spread with {evs}")
            self.assertEqual(ts[t.name]["placed"], pt["flows"], f"{t.name}: stats placed vs meshgate-spread")


# ------------------------------------------------------------------------------------------------ 5 --check


class CheckTest(unittest.TestCase):
    def check(self, path, with_env=True):
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESHGATE_")}
        if with_env:   # what pmd_config/vdev-demo.toml's ${VAR}s need
            d = os.path.join(gwtest.TMP, "check-env")
            os.makedirs(d, exist_ok=True)
            write_pcap(os.path.join(d, "rx.pcap"), [])
            env.update(MESHGATE_INSIDE_PCAP=os.path.join(d, "rx.pcap"), MESHGATE_OUT=d,
                       MESHGATE_OUT_A_RX=os.path.join(d, "rx.pcap"), MESHGATE_OUT_B_RX=os.path.join(d, "rx.pcap"))
        p = subprocess.run([gwtest.ARGS.meshgate, "--check", "-c", path], capture_output=True, text=True, timeout=30,
                           env=env)
        return p.returncode, p.stdout, p.stderr

    def test_shipped_configs_are_valid(self):
        for name in ("gateway-dual.toml", "gateway-standby.toml", "gateway-single.toml", "gateway-liveness.toml"):
            path = source_path("configs", name)
            rc, out, err = self.check(path)
            self.assertEqual(rc, 0, f"meshgate --check -c {path} (MESHGATE_* set): exit {rc}, stderr {err[-500:]}")
            self.assertIn("is valid", out, f"meshgate --check -c {path}: no verdict on stdout")

    def test_documented_check_command_without_env(self):
        """configs/gateway-dual.toml says 'Check it with: meshgate --check -c configs/gateway-dual.toml'."""
        path = dual_cfg()
        with open(path) as f:
            self.assertIn("meshgate --check -c configs/gateway-dual.toml", f.read(),
                          "the config no longer documents the command; update this test")
        rc, out, err = self.check(path, with_env=False)
        self.assertEqual(rc, 0, f"meshgate --check -c {path} with no MESHGATE_* variables (as the file documents): "
                                f"exit {rc}, stderr {err[-400:]}")

    def broken(self, name, edit):
        with open(dual_cfg()) as f:
            text = f.read()
        text = text.replace('pmd_config = "../pmd_config/vdev-demo.toml"', f'pmd_config = "{pmd_cfg()}"')
        new = edit(text)
        self.assertNotEqual(new, text, f"{name}: the edit did not apply (shipped config changed?)")
        d = os.path.join(gwtest.TMP, "check")
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, name)
        with open(path, "w") as f:
            f.write(new)
        return path

    def test_broken_configs_exit_2_and_name_the_file(self):
        cases = {
            "dup-spi.toml": lambda s: s.replace("spi = 0x1002", "spi = 0x1001", 1),
            "short-key.toml": lambda s: s.replace('key = "cac50a7dade96ed1ec61a4e4385bd81f7acb2005"',
                                                  'key = "cac50a7dade96ed1ec61a4e4385bd81f"', 1),
            "unknown-instance.toml": lambda s: s.replace('instance = "gw-b"\ndevice = "onprem-1"',
                                                         'instance = "gw-c"\ndevice = "onprem-1"', 1),
            "syntax.toml": lambda s: s.replace("[flow]", "[flow", 1),
        }
        # The edited copy itself must be fine apart from the one defect: an unedited copy checks clean.
        ok = self.broken("ok.toml", lambda s: s + "\n")
        rc, _, err = self.check(ok)
        self.assertEqual(rc, 0, f"unedited copy {ok} fails --check: {err[-400:]}")
        for name, edit in cases.items():
            path = self.broken(name, edit)
            rc, out, err = self.check(path)
            self.assertEqual(rc, 2, f"meshgate --check -c {path}: exit {rc} (expected 2); stderr {err[-300:]}")
            self.assertIn(name, err, f"meshgate --check -c {path}: stderr does not name the file: {err[-300:]}")


if __name__ == "__main__":
    sys.exit(gwtest.main())
