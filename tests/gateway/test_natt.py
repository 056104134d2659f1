#!/usr/bin/python3
"""NAT traversal (RFC 3948, ESP in UDP) in the gateway: meshgate on net_pcap vdevs, scapy and tshark as oracles.

  NattDualTest     the shipped dual config, all flows on tunnel a-1 (other weights 0), a-1 with encap = "udp" toward
                   a device behind a NAT (udp_remote_port = 61001), a-2 raw. Out of out-a: every frame is IPv4/UDP
                   4500 -> 61001, UDP checksum 0, length right, and scapy's SA with nat_t_header decrypts it to the
                   inside packet, exactly once; tshark dissects every frame as UDPENCAP + ESP; a DF packet of the UDP
                   path MTU (1438) fills 1500 bytes, one byte more gets ICMP frag-needed with MTU 1438. Into out-a:
                   scapy's ESP in UDP from the NATed port is decrypted byte for byte; a NAT-keepalive is counted
                   (in_nat_keepalive), IKE behind the non-ESP marker and on UDP 500 are counted as to_host, raw ESP
                   for a-1 and ESP in UDP for the raw a-2 as in_encap_mismatch of each. The stats JSON and --check
                   show each tunnel's encapsulation and its MTU figures.
  NattOuterV6Test  the same tunnel over IPv6: out of out-a IPv6/UDP with a valid UDP checksum (RFC 8200 8.1),
                   decrypted by scapy; scapy's IPv6 ESP in UDP (checksum 0, as scapy sends it) decrypted.
Every run: exit 0, no mbuf left, every packet sent or dropped under one reason.

Run: /usr/bin/python3 tests/gateway/test_natt.py --meshgate build/apps/meshgate/meshgate [--keep] [-k V6]
"""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import gwtest  # noqa: E402  (exits 77 when scapy is missing)
from gwtest import GatewayCase, Gw, Run, Trace, decrypt_outputs, frame, nat_t_fixed, pmd_cfg  # noqa: E402
from scapy.all import ICMP, IP, IPv6, UDP, Ether, Raw, raw  # noqa: E402
from scapy.layers.ipsec import ESP, SecurityAssociation  # noqa: E402

HOST4, PEER4 = "10.1.0.5", "10.128.0.9"
NAT_PORT = 61001   # where the device's NAT maps its 4500
A1_UDP = 'name = "a-1"\ninstance = "gw-a"\ndevice = "onprem-1"\nweight = 1\n'


write_config = gwtest.write_dual_config


def udp_edit():
    return (A1_UDP, A1_UDP + f'encap = "udp"\nudp_remote_port = {NAT_PORT}\n')


def udp4(size, df, ident, sport=1111):
    p = IP(src=HOST4, dst=PEER4, id=ident, ttl=61, flags="DF" if df else 0) / UDP(sport=sport, dport=2222)
    return raw(p / Raw(bytes((ident + j) & 0xff for j in range(size - 28))))


def l2_in(tunnel, v6=False):
    """Ethernet header of a frame from the device to the instance port."""
    return bytes.fromhex("027063617001" + tunnel.dev_mac.replace(":", "")) + (b"\x86\xdd" if v6 else b"\x08\x00")


class NattDualTest(GatewayCase):

    @classmethod
    def setUpClass(cls):
        cls.cfg = write_config("natt", [udp_edit()])
        cls.gw = Gw(cls.cfg)
        a1, a2 = cls.gw.by_name["a-1"], cls.gw.by_name["a-2"]
        assert a1.out.udp == (4500, NAT_PORT) and a1.inn.udp == (NAT_PORT, 4500) and a2.out.udp is None
        tr = Trace()
        cls.pk = {}

        def add(name, inner):
            cls.pk[name] = inner
            tr.add_inner(None, inner, frame(inner))

        for i in range(20):
            add(f"u{i}", udp4(60 + 37 * i, False, 0x200 + i, sport=3000 + i))
        add("df_fits", udp4(1438, True, 0x300))
        add("df_big", udp4(1439, True, 0x301))

        # Inbound on out-a: what a NAT-T device and the network send to the instance.
        sa = a1.inn.scapy_sa()
        cls.sent_in = []
        rx = []
        for i in range(12):
            inner = IP(src=PEER4, dst=HOST4, ttl=60) / UDP(sport=53, dport=4000 + i) / Raw(bytes([i]) * (10 + 50 * i))
            cls.sent_in.append(raw(inner))
            rx.append(l2_in(a1) + raw(nat_t_fixed(sa.encrypt(inner))))
        outer = IP(src=a1.dev_ip, dst=a1.inst_ip)
        ike = b"\x00" * 4 + bytes(range(1, 29))
        rx.append(l2_in(a1) + raw(outer / UDP(sport=NAT_PORT, dport=4500) / Raw(b"\xff")))     # NAT-keepalive
        rx.append(l2_in(a1) + raw(outer / UDP(sport=NAT_PORT, dport=4500) / Raw(ike)))         # IKE, marker
        rx.append(l2_in(a1) + raw(outer / UDP(sport=500, dport=500) / Raw(ike[4:])))           # IKE on 500
        raw_a1 = SecurityAssociation(ESP, spi=a1.inn.spi, crypt_algo="AES-GCM", crypt_key=a1.inn.keymat,
                                     tunnel_header=IP(src=a1.dev_ip, dst=a1.inst_ip), esn_en=True, esn=0)
        raw_a1.seq_num = 500
        rx.append(l2_in(a1) + raw(raw_a1.encrypt(IP(cls.sent_in[0]))))                          # raw for a UDP SA
        a2.inn.udp = (4500, 4500)   # the device wraps a-2's ESP in UDP although a-2 is raw
        rx.append(l2_in(a2) + raw(nat_t_fixed(a2.inn.scapy_sa().encrypt(IP(cls.sent_in[1])))))
        a2.inn.udp = None
        cls.rx = rx
        cls.trace = tr
        cls.mg = Run("natt", cls.cfg, tr.frames, a_rx=rx)
        cls.mg.trace, cls.mg.gw = tr, cls.gw
        cls.decoded = decrypt_outputs(cls.gw, cls.mg) if cls.mg.out["out-a"] is not None else []

    def test_accounting(self):
        self.assert_accounting(len(self.trace.frames), len(self.rx))

    def test_outbound_in_udp_decrypted_by_scapy(self):
        self.assert_decoded_clean()
        want = [i for i, f in enumerate(self.trace.frames) if self.trace.frames[i] != frame(self.pk["df_big"])]
        self.assert_exactly_once(want)
        self.assertEqual(len(self.decoded), 21)
        for d in self.decoded:
            self.assertEqual(d.port, "out-a")
            self.assertEqual(d.proto, 17)
            sport, dport, ulen, csum = d.udp
            ip_len = len(self.mg.out["out-a"][d.pos]) - 14
            self.assertEqual((sport, dport, ulen, csum), (4500, NAT_PORT, ip_len - 20, 0),
                             "UDP 4500 -> the NAT's port, length to the end of the datagram, checksum 0 (RFC 3948)")
            self.assertEqual(d.outer_dst, self.gw.by_name["a-1"].dev_ip)

    def test_path_mtu_is_8_bytes_less(self):
        fits = [d for d in self.decoded if d.inner == self.pk["df_fits"]]
        self.assertEqual(len(fits), 1)
        self.assertEqual(len(self.mg.out["out-a"][fits[0].pos]), 14 + 1500, "1438 + UDP ESP overhead = 1500")
        icmps = [Ether(f) for f in self.mg.out["inside"] if Ether(f).haslayer(ICMP)]
        self.assertEqual(len(icmps), 1, [e.summary() for e in icmps])
        self.assertEqual((icmps[0][ICMP].type, icmps[0][ICMP].code, icmps[0][ICMP].nexthopmtu), (3, 4, 1438))
        self.assertEqual(self.mg.stats["drops"]["too_big"], 1)

    def test_inbound_from_the_nat_decrypted(self):
        ins = [f[14:] for f in self.mg.out["inside"] if Ether(f).haslayer(UDP)]
        self.assertEqual(ins, self.sent_in, "scapy's ESP in UDP decrypted byte for byte, in order")
        self.assertEqual(self.mg.tunnel_stats()["a-1"]["packets_in"], 12)

    def test_keepalive_ike_and_wrong_encapsulation_counted(self):
        st = self.mg.stats
        self.assertEqual(st["esp_unknown_sa_drops"], {"in_nat_keepalive": 1}, st["esp_unknown_sa_drops"])
        self.assertEqual(st["drops"]["to_host"], 2, "IKE behind the marker and on 500: the host's")
        ts = self.mg.tunnel_stats()
        self.assertEqual(ts["a-1"]["esp_drops"], {"in_encap_mismatch": 1}, "raw ESP for the UDP SA")
        self.assertEqual(ts["a-2"]["esp_drops"], {"in_encap_mismatch": 1}, "ESP in UDP for the raw SA")
        self.assertEqual(st["outside_rx"], len(self.rx))

    def test_tshark_dissects_udpencap_esp(self):
        tshark = shutil.which("tshark")
        if not tshark:
            self.skipTest("tshark not installed")
        pcap = os.path.join(self.mg.dir, "out", "out-a.pcap")
        p = subprocess.run([tshark, "-n", "-r", pcap, "-T", "fields", "-e", "frame.protocols", "-e", "esp.spi",
                            "-e", "udp.dstport"], capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        rows = [r.split("\t") for r in p.stdout.strip().splitlines()]
        self.assertEqual(len(rows), len(self.mg.out["out-a"]))
        for r in rows:
            self.assertTrue(r[0].endswith("ip:udp:udpencap:esp"), r)
            self.assertEqual(int(r[1], 16), 0x1001, r)
            self.assertEqual(r[2], str(NAT_PORT), r)

    def test_encap_in_stats_json(self):
        ts = self.mg.tunnel_stats()
        self.assertEqual(ts["a-1"]["encap"], {"out": {"mode": "udp", "sport": 4500, "dport": NAT_PORT},
                                              "in": {"mode": "udp", "sport": NAT_PORT, "dport": 4500}})
        self.assertEqual(ts["a-2"]["encap"], {"out": {"mode": "none"}, "in": {"mode": "none"}})
        self.assertEqual(ts["a-1"]["mtu"], {"link": 1500, "path": 1438, "mss_clamp_v4": 1398, "mss_clamp_v6": 1378})
        self.assertEqual(ts["a-2"]["mtu"]["path"], 1446)

    def test_encap_in_check(self):
        env = dict(os.environ, MESHGATE_INSIDE_PCAP="x", MESHGATE_OUT="/tmp", MESHGATE_OUT_A_RX="x",
                   MESHGATE_OUT_B_RX="x")
        p = subprocess.run([gwtest.ARGS.meshgate, "-c", self.cfg, "--pmd", pmd_cfg(), "--check"], env=env,
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(f"encap udp 4500 -> {NAT_PORT}", p.stdout)
        self.assertIn(f"encap udp {NAT_PORT} -> 4500", p.stdout)
        self.assertIn("inner path MTU 1438", p.stdout)


class NattOuterV6Test(GatewayCase):
    """ESP in UDP over IPv6: a UDP checksum on what we send, none needed on what we receive."""

    @classmethod
    def setUpClass(cls):
        edits = [udp_edit(), ('ipv4 = "192.0.2.1"', 'ipv6 = "2001:db8:ff::1"'),
                 ('ipv4 = "192.0.2.2"', 'ipv6 = "2001:db8:ff::2"'),
                 ('ipv4 = "198.51.100.1"', 'ipv6 = "2001:db8:fe::1"'),
                 ('ipv4 = "198.51.100.2"', 'ipv6 = "2001:db8:fe::2"')]
        cls.cfg = write_config("natt6", edits)
        gw = Gw(write_config("natt6-keys", [udp_edit()]))   # keys, SPIs and ports; addresses set below
        cls.a1 = a1 = gw.by_name["a-1"]
        a1.out.src, a1.out.dst = "2001:db8:ff::1", "2001:db8:fe::1"
        a1.inn.src, a1.inn.dst = "2001:db8:fe::1", "2001:db8:ff::1"
        cls.inner_out = [udp4(100 + 50 * i, False, 0x400 + i, sport=5000 + i) for i in range(6)]
        sa = a1.inn.scapy_sa()
        cls.inner_in = [raw(IP(src=PEER4, dst=HOST4) / UDP(sport=53, dport=6000 + i) / Raw(b"v" * (20 + i)))
                        for i in range(6)]
        rx = [l2_in(a1, v6=True) + raw(sa.encrypt(IP(p))) for p in cls.inner_in]
        cls.mg = Run("natt6", cls.cfg, [frame(p) for p in cls.inner_out], a_rx=rx)
        cls.nrx = len(rx)

    def test_outbound_checksum_and_decryption(self):
        self.assertEqual(self.mg.rc, 0, self.mg.describe())
        out = [IPv6(f[14:]) for f in self.mg.out["out-a"]]
        self.assertEqual(len(out), len(self.inner_out))
        sa = self.a1.out.scapy_sa()
        for i, p in enumerate(out):
            self.assertEqual((p.nh, p[UDP].sport, p[UDP].dport), (17, 4500, NAT_PORT))
            self.assertNotEqual(p[UDP].chksum, 0, "RFC 8200 8.1: UDP over IPv6 carries a checksum")
            again = p.copy()
            del again[UDP].chksum
            self.assertEqual(IPv6(raw(again))[UDP].chksum, p[UDP].chksum, f"packet {i}: UDP checksum scapy agrees")
            self.assertEqual(raw(sa.decrypt(p)), self.inner_out[i])

    def test_inbound_zero_checksum_accepted(self):
        ins = [f[14:] for f in self.mg.out["inside"]]
        self.assertEqual(ins, self.inner_in)
        self.assertEqual(self.mg.stats["outside_rx"], self.nrx)
        self.assertEqual(self.mg.stats["mbufs_in_use_at_exit"], 0)


if __name__ == "__main__":
    sys.exit(gwtest.main())
