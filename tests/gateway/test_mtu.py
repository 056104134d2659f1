#!/usr/bin/python3
"""MTU and fragments (docs/ARCHITECTURE.md "MTU and fragments"): meshgate on net_pcap vdevs, scapy as the oracle.

  MtuDefaultsTest      the shipped dual config, all flows on tunnel a-1 (other weights 0), no MTU key at all: path MTU
                       1446 (1500-byte port, ESP over IPv4). SYN MSS clamped to 1406 (IPv4, an odd-offset option too)
                       and 1386 (IPv6), inbound SYN-ACK clamped on its way in, TCP checksums valid per scapy; a DF
                       packet of exactly 1446 leaves as a 1500-byte outer datagram; DF 1447 -> ICMP frag-needed with
                       MTU 1446 and the quoted header (RFC 792: IP header + 8 bytes), checksums valid; an echo request
                       is answered, an ICMP error never; IPv4 without DF -> fragments, each its own ESP packet of at
                       most 1500 bytes, that decrypt and reassemble to the original; IPv6 without an ICMP source is
                       dropped and counted, not answered.
  MtuConfiguredTest    tunnel mtu = 1400, [inside] ipv4/ipv6, [mtu] icmp_rate 1 burst 3: ICMPv6 packet-too-big
                       (MTU 1346, quoting 1232 bytes: 1280 in all) and frag-needed from the [inside] addresses; the
                       rate limit holds (sent + limited = too big, sent within burst + rate x run time); the figures in
                       the stats JSON and in --check.
  OuterV6FragmentTest  IPv6 outer: an outer fragment (first and later) is dropped as in_fragment before any SA, the
                       whole ESP packet next to it is decrypted.
Every run: exit 0, no mbuf left, inside_rx + extra fragments = sent + drops by reason.

Run: /usr/bin/python3 tests/gateway/test_mtu.py --meshgate build/apps/meshgate/meshgate [--keep] [-k Defaults]
"""
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import gwtest  # noqa: E402  (exits 77 when scapy is missing)
from gwtest import GatewayCase, Gw, Run, Trace, decrypt_outputs, dual_cfg, frame, pmd_cfg  # noqa: E402
from scapy.all import ICMP, IP, IPv6, TCP, UDP, Ether, Raw, raw  # noqa: E402
from scapy.layers.inet6 import ICMPv6PacketTooBig, IPv6ExtHdrFragment  # noqa: E402

HOST4, PEER4 = "10.1.0.5", "10.128.0.9"
HOST6, PEER6 = "2001:db8:a::5", "2001:db8:b::9"


write_config = gwtest.write_dual_config


def udp4(size, df, ident, sport=1111):
    """An IPv4 UDP datagram of exactly `size` bytes."""
    p = IP(src=HOST4, dst=PEER4, id=ident, ttl=61, flags="DF" if df else 0) / UDP(sport=sport, dport=2222)
    return raw(p / Raw(bytes((ident + j) & 0xff for j in range(size - 28))))


def udp6(size, sport=1111):
    p = IPv6(src=HOST6, dst=PEER6, hlim=61) / UDP(sport=sport, dport=2222)
    return raw(p / Raw(bytes(j & 0xff for j in range(size - 48))))


def syn4(mss, sport, nop_first=False, flags="S", src=HOST4, dst=PEER4):
    opts = ([("NOP", None)] if nop_first else []) + [("MSS", mss), ("SAckOK", b""), ("Timestamp", (1, 0)),
                                                      ("WScale", 7)]
    return raw(IP(src=src, dst=dst, ttl=61, id=sport) / TCP(sport=sport, dport=443, flags=flags, seq=7, options=opts))


def syn6(mss, sport):
    return raw(IPv6(src=HOST6, dst=PEER6, hlim=61) / TCP(sport=sport, dport=443, flags="SA", seq=9, ack=3,
                                                         options=[("NOP", None), ("NOP", None), ("MSS", mss)]))


def mss_of(pkt):
    return dict((k, v) for k, v in pkt[TCP].options if k == "MSS").get("MSS")


def tcp_checksum_ok(pkt):
    """scapy recomputes the TCP checksum of the (IPv4 or IPv6) packet; True when it equals the one carried."""
    p = pkt.copy()
    had = p[TCP].chksum
    del p[TCP].chksum
    return (IPv6 if p.haslayer(IPv6) else IP)(raw(p))[TCP].chksum == had


def icmp_frames(run):
    return [Ether(fr) for fr in (run.out["inside"] or [])]


class MtuDefaultsTest(GatewayCase):
    """No MTU key anywhere: the defaults come from the port (1500) and the cipher (path MTU 1446)."""

    @classmethod
    def setUpClass(cls):
        cfg = write_config("defaults", [])
        cls.gw = Gw(cfg)
        tr = Trace()
        cls.pk = {}

        def add(name, inner):
            cls.pk[name] = inner
            tr.add_inner(None, inner, frame(inner))

        add("syn", syn4(1460, 40001))
        add("syn_odd", syn4(1460, 40002, nop_first=True))
        add("syn_low", syn4(1200, 40003))
        add("synack6", syn6(1440, 40004))
        add("ack", raw(IP(src=HOST4, dst=PEER4, ttl=61) / TCP(sport=40005, dport=443, flags="PA",
                                                            options=[("MSS", 1460)]) / Raw(b"x" * 20)))
        add("df_fits", udp4(1446, True, 0x100))
        add("df_big", udp4(1447, True, 0x101))
        add("echo_big", raw(IP(src=HOST4, dst=PEER4, ttl=61, flags="DF", id=0x102) / ICMP(type=8, id=5, seq=6)
                            / Raw(b"e" * 1472)))
        add("unreach_big", raw(IP(src=HOST4, dst=PEER4, ttl=61, flags="DF", id=0x103) / ICMP(type=3, code=1)
                               / Raw(b"u" * 1472)))
        add("frag_2000", udp4(1986, False, 0x104))
        add("frag_1447", udp4(1447, False, 0x105))
        add("v6_big", udp6(1447))
        # Inbound: a SYN-ACK from behind the tunnel, its MSS lowered before it reaches the inside host.
        a1 = cls.gw.by_name["a-1"]
        esp = a1.inn.scapy_sa().encrypt(IP(syn4(1460, 443, flags="SA", src=PEER4, dst=HOST4)))
        a_rx = [bytes.fromhex("027063617001" + a1.dev_mac.replace(":", "")) + b"\x08\x00" + raw(esp)]
        cls.trace = tr
        cls.mg = Run("mtu-defaults", cfg, tr.frames, a_rx=a_rx)
        cls.mg.trace, cls.mg.gw = tr, cls.gw
        cls.decoded = decrypt_outputs(cls.gw, cls.mg) if cls.mg.out["out-a"] is not None else []
        cls.inner = [IP(d.inner) if d.inner and d.inner[0] >> 4 == 4 else IPv6(d.inner) if d.inner else None
                     for d in cls.decoded]

    def tunnel(self):
        return self.mg.tunnel_stats()["a-1"]

    def esp_inner(self, pred):
        return [p for p in self.inner if p is not None and pred(p)]

    def test_accounting(self):
        self.assert_accounting(len(self.trace.frames), 1)
        bad = [d for d in self.decoded if d.error]
        self.assertFalse(bad, f"ESP frames that did not decrypt: {[d.error for d in bad]}")
        t = self.tunnel()
        st = self.mg.stats
        self.assertEqual(t["packets_out"], 10, "5 TCP + df_fits + 2 x 2 fragments")
        self.assertEqual(st["drops"]["too_big"], 4, st["drops"])
        self.assertEqual((t["too_big"], t["icmp_too_big"], t["icmp_suppressed"], t["icmp_rate_limited"],
                          t["fragmented"], t["fragments"], t["mss_clamped"]), (4, 2, 2, 0, 2, 4, 4),
                         "too_big, icmp_too_big, icmp_suppressed, icmp_rate_limited, fragmented, fragments, "
                         f"mss_clamped: {t}")

    def test_syn_mss_clamped_checksum_valid(self):
        got = {p[TCP].sport: p for p in self.esp_inner(lambda p: p.haslayer(TCP))}
        for sport, want in ((40001, 1406), (40002, 1406), (40003, 1200), (40004, 1386), (40005, 1460)):
            self.assertIn(sport, got, f"TCP packet from port {sport} did not come out")
            self.assertEqual(mss_of(got[sport]), want, f"sport {sport}: MSS")
            self.assertTrue(tcp_checksum_ok(got[sport]), f"sport {sport}: TCP checksum wrong after the clamp")
        # Apart from MSS and checksum, nothing changed; the low MSS and the non-SYN are byte for byte as sent.
        self.assertEqual(raw(got[40003]), self.pk["syn_low"])
        self.assertEqual(raw(got[40005]), self.pk["ack"])
        want = IP(self.pk["syn"])
        want[TCP].options = [("MSS", 1406) if k == "MSS" else (k, v) for k, v in want[TCP].options]
        del want[TCP].chksum
        self.assertEqual(raw(got[40001]), raw(want), "the clamped SYN is the one scapy builds with MSS 1406")

    def test_inbound_syn_ack_clamped(self):
        ins = [e for e in icmp_frames(self.mg) if e.haslayer(TCP)]
        self.assertEqual(len(ins), 1, f"decrypted SYN-ACK on the inside: {[e.summary() for e in ins]}")
        self.assertEqual(mss_of(ins[0]), 1406)
        self.assertTrue(tcp_checksum_ok(ins[0][IP]))

    def test_df_packet_of_exactly_the_path_mtu_fills_the_link(self):
        fits = [d for d in self.decoded if d.inner == self.pk["df_fits"]]
        self.assertEqual(len(fits), 1, "the 1446-byte DF packet went out whole, once")
        frame_len = len(self.mg.out["out-a"][fits[0].pos])
        self.assertEqual(frame_len, 14 + 1500, "a 1446-byte inner packet makes a 1500-byte outer datagram")
        self.assertTrue(all(len(f) <= 14 + 1500 for f in self.mg.out["out-a"]), "an ESP frame over the MTU left")

    def test_icmp_frag_needed(self):
        icmps = [e for e in icmp_frames(self.mg) if e.haslayer(ICMP)]
        self.assertEqual(len(icmps), 2, f"ICMP errors on the inside: {[e.summary() for e in icmps]}")
        for e, name in zip(icmps, ("df_big", "echo_big")):
            orig = self.pk[name]
            self.assertEqual((e[ICMP].type, e[ICMP].code, e[ICMP].nexthopmtu), (3, 4, 1446), name)
            self.assertEqual((e[IP].src, e[IP].dst), ("192.0.2.1", HOST4), f"{name}: from the instance address")
            self.assertEqual(e.dst, self.gw.inside_mac, f"{name}: to the inside next hop")
            self.assertEqual(raw(e[ICMP].payload), orig[:28], f"{name}: quotes the IP header and 8 bytes")
            chk = e[IP].copy()
            del chk.chksum
            del chk[ICMP].chksum
            again = IP(raw(chk))
            self.assertEqual((again.chksum, again[ICMP].chksum), (e[IP].chksum, e[ICMP].chksum), f"{name}: checksums")

    def test_no_df_fragmented_and_reassembled(self):
        for name, ident, count in (("frag_2000", 0x104, 2), ("frag_1447", 0x105, 2)):
            frags = sorted(self.esp_inner(lambda p: p.haslayer(IP) and p[IP].id == ident), key=lambda p: p.frag)
            self.assertEqual(len(frags), count, f"{name}: fragments")
            payload = b""
            for k, f in enumerate(frags):
                self.assertLessEqual(len(raw(f)), 1446, f"{name}: fragment {k} over the path MTU")
                self.assertEqual(f.frag * 8, len(payload), f"{name}: fragment {k} offset")
                self.assertEqual(bool(f.flags.MF), k < count - 1, f"{name}: fragment {k} MF")
                c = f.copy()
                del c.chksum
                self.assertEqual(IP(raw(c)).chksum, f.chksum, f"{name}: fragment {k} header checksum")
                payload += raw(f.payload)[:f.len - f.ihl * 4]
            orig = IP(self.pk[name])
            whole = IP(src=orig.src, dst=orig.dst, id=orig.id, ttl=orig.ttl, tos=orig.tos, proto=orig.proto) / Raw(payload)
            self.assertEqual(raw(whole), self.pk[name], f"{name}: reassembled != original")

    def test_ipv6_without_a_source_is_dropped_not_answered(self):
        self.assertEqual(len(self.esp_inner(lambda p: p.haslayer(IPv6) and p.haslayer(UDP))), 0, "v6_big went out")
        self.assertFalse([e for e in icmp_frames(self.mg) if e.haslayer(IPv6) and not e.haslayer(TCP)])


class MtuConfiguredTest(GatewayCase):
    """Tunnel mtu 1400, [inside] addresses, a tight rate limit."""

    N_FLOOD = 30

    @classmethod
    def setUpClass(cls):
        cls.cfg = write_config("configured", [
            ('name = "a-1"\ninstance = "gw-a"\n', 'name = "a-1"\ninstance = "gw-a"\nmtu = 1400\n'),
            ('next_hop_mac = "02:00:00:00:00:01"\n',
             'next_hop_mac = "02:00:00:00:00:01"\nipv4 = "10.0.0.1"\nipv6 = "2001:db8:a::1"\n'),
        ], append="\n[mtu]\nicmp_rate = 1\nicmp_burst = 3\n")
        cls.gw = Gw(cls.cfg)
        tr = Trace()
        cls.pk = {"v6_big": udp6(1347), "df_big": udp4(1347, True, 0x200), "df_fits": udp4(1346, True, 0x201),
                  "syn": syn4(1460, 40010)}
        for inner in cls.pk.values():
            tr.add_inner(None, inner, frame(inner))
        for k in range(cls.N_FLOOD):
            inner = udp4(1400, True, 0x300 + k)
            tr.add_inner(None, inner, frame(inner))
        cls.trace = tr
        cls.mg = Run("mtu-configured", cls.cfg, tr.frames)
        cls.mg.trace, cls.mg.gw = tr, cls.gw
        cls.decoded = decrypt_outputs(cls.gw, cls.mg) if cls.mg.out["out-a"] is not None else []

    def test_accounting_and_rate_limit(self):
        self.assert_accounting(len(self.trace.frames), 0)
        t = self.mg.tunnel_stats()["a-1"]
        too_big = 2 + self.N_FLOOD
        self.assertEqual(t["too_big"], too_big)
        self.assertEqual(t["icmp_too_big"] + t["icmp_rate_limited"], too_big, t)
        # The bucket starts full (3) and gains 1 per second: bounds that hold on any machine, fast or slow.
        self.assertGreaterEqual(t["icmp_too_big"], 3, t)
        self.assertLessEqual(t["icmp_too_big"], 3 + int(self.mg.stats["elapsed_s"]) + 1, t)
        self.assertEqual(len(self.mg.out["inside"]), t["icmp_too_big"], "ICMP frames on the inside port")

    def test_icmpv6_packet_too_big(self):
        e = Ether(self.mg.out["inside"][0])
        self.assertTrue(e.haslayer(ICMPv6PacketTooBig), e.summary())
        self.assertEqual((e[IPv6].src, e[IPv6].dst), ("2001:db8:a::1", HOST6))
        self.assertEqual(e[ICMPv6PacketTooBig].mtu, 1346)
        self.assertEqual(len(raw(e[IPv6])), 1280, "as much of the packet as fits in 1280 bytes")
        self.assertEqual(raw(e[ICMPv6PacketTooBig].payload), self.pk["v6_big"][:1232])
        c = e[IPv6].copy()
        del c[ICMPv6PacketTooBig].cksum
        self.assertEqual(IPv6(raw(c))[ICMPv6PacketTooBig].cksum, e[ICMPv6PacketTooBig].cksum, "ICMPv6 checksum")

    def test_icmp_from_the_inside_address(self):
        e = Ether(self.mg.out["inside"][1])
        self.assertEqual((e[IP].src, e[IP].dst, e[ICMP].type, e[ICMP].code, e[ICMP].nexthopmtu),
                         ("10.0.0.1", HOST4, 3, 4, 1346))
        self.assertEqual(raw(e[ICMP].payload), self.pk["df_big"][:28])

    def test_tunnel_mtu_and_mss(self):
        self.assertFalse([d for d in self.decoded if d.error])
        inner = {d.inner: d for d in self.decoded}
        self.assertTrue(self.pk["df_fits"] in inner, "the 1346-byte DF packet went out whole")
        self.assertEqual(len(self.mg.out["out-a"][inner[self.pk["df_fits"]].pos]), 14 + 1400)
        syn = [IP(d.inner) for d in self.decoded if IP(d.inner).haslayer(TCP)]
        self.assertEqual([mss_of(p) for p in syn], [1306], "MSS from the tunnel's path MTU (1346 - 40)")

    def test_figures_in_stats_json(self):
        ts = self.mg.tunnel_stats()
        self.assertEqual(ts["a-1"]["mtu"], {"link": 1400, "path": 1346, "mss_clamp_v4": 1306, "mss_clamp_v6": 1286})
        self.assertEqual(ts["b-2"]["mtu"], {"link": 1500, "path": 1446, "mss_clamp_v4": 1406, "mss_clamp_v6": 1386})

    def test_figures_in_check(self):
        env = dict(os.environ, MESHGATE_INSIDE_PCAP="x", MESHGATE_OUT="/tmp", MESHGATE_OUT_A_RX="x",
                   MESHGATE_OUT_B_RX="x")
        p = subprocess.run([gwtest.ARGS.meshgate, "-c", self.cfg, "--pmd", pmd_cfg(), "--check"], env=env,
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("mtu 1400 (tunnel)  inner path MTU 1346  mss clamp v4 1306 v6 1286  icmp source 10.0.0.1 "
                      "2001:db8:a::1", p.stdout)
        self.assertIn("too-big ICMP 1/s burst 3 per worker", p.stdout)


class OuterV6FragmentTest(GatewayCase):
    """ESP over IPv6: outer fragments are dropped before any SA, like IPv4 ones."""

    @classmethod
    def setUpClass(cls):
        edits = [('ipv4 = "192.0.2.1"', 'ipv6 = "2001:db8:ff::1"'), ('ipv4 = "192.0.2.2"', 'ipv6 = "2001:db8:ff::2"'),
                 ('ipv4 = "198.51.100.1"', 'ipv6 = "2001:db8:fe::1"'), ('ipv4 = "198.51.100.2"', 'ipv6 = "2001:db8:fe::2"')]
        cfg = write_config("outer6", edits)
        gw = Gw(dual_cfg())   # keys and SPIs are the dual config's
        a1 = gw.by_name["a-1"]
        a1.inn.src, a1.inn.dst = "2001:db8:fe::1", "2001:db8:ff::1"
        sa = a1.inn.scapy_sa()
        inner = IP(src=PEER4, dst=HOST4, ttl=60) / UDP(sport=53, dport=5353) / Raw(b"q" * 300)
        esp = raw(sa.encrypt(inner))
        hdr = bytes.fromhex("027063617001" + a1.dev_mac.replace(":", "")) + b"\x86\xdd"
        whole = IPv6(esp)
        # The same kind of ESP packet cut by a router on the way: first and later fragment.
        esp2 = IPv6(raw(sa.encrypt(inner)))
        body = raw(esp2.payload)
        f1 = IPv6(src=esp2.src, dst=esp2.dst, nh=44) / IPv6ExtHdrFragment(nh=50, offset=0, m=1, id=7) / Raw(body[:200])
        f2 = IPv6(src=esp2.src, dst=esp2.dst, nh=44) / IPv6ExtHdrFragment(nh=50, offset=25, m=0, id=7) / Raw(body[200:])
        cls.rx = [hdr + raw(f1), hdr + raw(f2), hdr + raw(whole)]
        cls.mg = Run("mtu-outer6", cfg, [], a_rx=cls.rx)
        cls.inner = raw(inner)

    def test_outer_fragments_counted_whole_packet_decrypted(self):
        self.assertEqual(self.mg.rc, 0, self.mg.describe())
        st = self.mg.stats
        self.assertEqual(st["esp_unknown_sa_drops"].get("in_fragment"), 2, st["esp_unknown_sa_drops"])
        self.assertEqual(st["outside_rx"], 3)
        self.assertEqual(st["mbufs_in_use_at_exit"], 0)
        out = [fr[14:] for fr in self.mg.out["inside"]]
        self.assertEqual(out, [self.inner], "the whole ESP packet is decrypted, the fragments are not")


if __name__ == "__main__":
    sys.exit(gwtest.main())
