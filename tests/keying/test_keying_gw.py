#!/usr/bin/python3
"""The keying interface end to end (issue 11 part 3): meshgate on net_pcap vdevs with tunnel a-1 keyed by IKE
(`keying = "ike"`, no key in the file, every other tunnel at weight 0), driven through its keying socket by
tests/keying/keyclient.py in the keying daemon's role; scapy is the oracle for every ESP frame.

  KeyingTest   while paced inside traffic runs: bad requests first (garbage, wrong version, SPI 0, wrong key length,
               unknown tunnel, a static tunnel's selector, padding), each refused with a reason and nothing changed;
               then GET_SPI, ADD_SA inbound (a fixed SPI, so ESP made beforehand can arrive), ADD_SA outbound #1, a
               duplicate refused, QUERY_SA; then a rekey (ADD_SA outbound #2, ESP in UDP 4500 -> 4501, with packet
               lifetimes soft 200, hard 1200; DEL_SA #1), EXPIRE soft then hard, QUERY, and DEL_SA #2.
  Checked:     `meshgatectl show sa` between the two outbound SAs shows the inbound one, #1 replaced, #2 active;
               before the first outbound SA nothing leaves (no_tunnel); every ESP frame decrypts (scapy) under the
               key of its SPI, #1's frames all precede #2's (make-before-break: no packet under #1 after the
               switch), each SA's sequence numbers are 1, 2, 3, ... with no gap or repeat (a fresh key starts at 1),
               #2 sends exactly 1200 (its hard lifetime) and the tunnel is then down; inbound ESP under the installed SA is decrypted to exactly its
               inner packet, earlier frames are counted as unknown SPI; QUERY's counts match; inside_rx = packets
               sent + drops; clean exit, no mbuf left, the socket file gone at exit.
Run: /usr/bin/python3 tests/keying/test_keying_gw.py --meshgate build/apps/meshgate/meshgate \
       --meshgatectl build/apps/meshgatectl/meshgatectl [--keep]
"""
import collections
import os
import random
import struct
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "common"))
sys.path.insert(0, os.path.join(HERE, "..", "operator"))
import gwtest  # noqa: E402  (exits 77 without scapy)
import keyclient as kc  # noqa: E402
import test_operator as op  # noqa: E402
from scapy.all import IP, UDP, Raw, raw  # noqa: E402
from scapy.layers.ipsec import ESP, SecurityAssociation  # noqa: E402

TOTAL = 9000       # inside packets, paced at op.PPS
IN_SPI = 0x5000    # inbound SPI the test chooses (a daemon may, GET_SPI is an offer)
IN_FRAMES = 2000   # inbound ESP frames under IN_SPI, paced at 400/s
SOFT2, HARD2 = 200, 1200   # packet lifetimes of the second outbound SA


def scapy_sa(spi, key, src, dst, nat_t=None):
    return SecurityAssociation(ESP, spi=spi, crypt_algo="AES-GCM", crypt_key=key, tunnel_header=IP(src=src, dst=dst),
                               nat_t_header=nat_t)


class KeyingTest(op.OperatorCase):
    @classmethod
    def setUpClass(cls):
        rng = random.Random(1111)
        d = os.path.join(op.TMP, "keying")
        os.makedirs(d, exist_ok=True)
        with open(gwtest.dual_cfg()) as f:
            text = f.read().replace('pmd_config = "../pmd_config/vdev-demo.toml"', f'pmd_config = "{gwtest.pmd_cfg()}"')
        head, *tunnels = text.split("[[tunnel]]")
        assert 'name = "a-1"' in tunnels[0]
        a1 = tunnels[0]
        cut = a1.index("[tunnel.out]")
        tunnels[0] = a1[:cut] + 'keying = "ike"\n\n'   # a-1 keeps its name, instance, device, weight; no SAs
        tunnels[1:] = [t.replace("weight = 1", "weight = 0", 1) for t in tunnels[1:]]
        cls.sock = os.path.join(d, "keying.sock")
        text = head + "[keying]\n" + f'socket = "{cls.sock}"\n\n' + "".join("[[tunnel]]" + t for t in tunnels)
        cfg = os.path.join(d, "gateway.toml")
        with open(cfg, "w") as f:
            f.write(text)
        gw = gwtest.Gw(cfg)
        t = gw.by_name["a-1"]
        cls.inst_ip, cls.dev_ip = t.inst_ip, t.dev_ip
        g1 = gwtest.make_flows(40, rng, first_id=0, v4_net=21, v6_net=21)
        g1 = [f for f in g1 if not f.v6]
        tr = op.build_trace([(g1, 0, TOTAL)], TOTAL, rng)
        cls.key_in, cls.key1, cls.key2 = os.urandom(20), os.urandom(20), os.urandom(20)
        # Inbound: ESP under IN_SPI made before the run; those that arrive before the SA is installed are unknown.
        sa_in = scapy_sa(IN_SPI, cls.key_in, cls.dev_ip, cls.inst_ip)
        cls.in_inner = []
        a_rx = []
        for i in range(IN_FRAMES):
            inner = raw(IP(src="10.128.7.%d" % (1 + i % 200), dst="10.1.0.5", ttl=61, id=i & 0xffff)
                        / UDP(sport=7000, dport=7001) / Raw(b"in%06d" % i))
            cls.in_inner.append(inner)
            esp = sa_in.encrypt(IP(inner), seq_num=i + 1)
            a_rx.append(bytes.fromhex("027063617001" + t.dev_mac.replace(":", "")) + b"\x08\x00" + raw(esp))
        cls.replies = {}
        cls.marks = {}   # inside_rx read right after a step
        cls.shown_sa = None
        cls.sel = kc.sel(cls.inst_ip, cls.dev_ip)

        def scenario(mg):
            c = None
            deadline = time.monotonic() + 30
            while c is None:
                try:
                    c = kc.Client(cls.sock)
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            R = cls.replies
            R["hello"] = c.hello()
            # Bad input: each refused, nothing installed.
            R["garbage"] = c.raw(b"\x01\x02garbage")
            R["version"] = c.request(kc.HELLO, version=9)
            R["spi0"] = c.add_sa(cls.sel, 0, kc.OUT, cls.key1)
            R["keylen"] = c.add_sa(cls.sel, 0x7001, kc.OUT, cls.key1[:16])
            R["keylen_lie"] = c.add_sa(cls.sel, 0x7001, kc.OUT, cls.key1, keylen=36)
            R["no_tunnel"] = c.add_sa(kc.sel("192.0.2.99", cls.dev_ip), 0x7001, kc.OUT, cls.key1)
            b1 = gw.by_name["b-1"]
            R["static"] = c.add_sa(kc.sel(b1.inst_ip, b1.dev_ip), 0x7001, kc.OUT, cls.key1)
            R["if_id"] = c.add_sa(kc.sel(if_id=99), 0x7001, kc.OUT, cls.key1)
            R["window_out"] = c.add_sa(cls.sel, 0x7001, kc.OUT, cls.key1, window=1024)
            R["cipher"] = c.add_sa(cls.sel, 0x7001, kc.OUT, cls.key1, cipher=9)
            R["del_none"] = c.del_sa(0x7001, kc.OUT)
            R["query_none"] = c.query_sa(0x7001, kc.OUT)
            R["truncated"] = c.raw(kc.HDR.pack(kc.MAGIC, 1, kc.ADD_SA, 77, kc.HDR.size + 100) + bytes(100))
            mg.wait_rx(1500)
            R["get_spi"] = c.get_spi(cls.sel)
            R["get_spi_static"] = c.get_spi(kc.sel(b1.inst_ip, b1.dev_ip))
            R["add_in"] = c.add_sa(cls.sel, IN_SPI, kc.IN, cls.key_in, window=1024, reqid=7)
            R["add_in_dup"] = c.add_sa(cls.sel, IN_SPI, kc.IN, os.urandom(20))
            cls.marks["out1"] = mg.rx()
            R["add_out1"] = c.add_sa(cls.sel, 0x7001, kc.OUT, cls.key1, reqid=7)
            R["add_out1_dup"] = c.add_sa(cls.sel, 0x7001, kc.OUT, os.urandom(20))
            mg.wait_rx(4000)
            R["query1"] = c.query_sa(0x7001, kc.OUT)
            R["add_out2"] = c.add_sa(cls.sel, 0x7002, kc.OUT, cls.key2, reqid=8, soft_packets=SOFT2,
                                     hard_packets=HARD2, encap=1, sport=4500, dport=4501)
            cls.marks["switched"] = mg.rx()
            t_end = time.monotonic() + 10   # the mirror is refreshed every 100 ms
            while time.monotonic() < t_end:
                cls.shown_sa = [x for x in mg.show("sa") if x["tunnel"] == "a-1"]
                if len(cls.shown_sa) == 3:
                    break
                time.sleep(0.05)
            R["del_out1"] = c.del_sa(0x7001, kc.OUT)
            R["query1_gone"] = c.query_sa(0x7001, kc.OUT)
            mg.wait_rx(6500)
            t_end = time.monotonic() + 30   # the hard lifetime: EXPIREs arrive unsolicited
            while len(c.expires) < 2 and time.monotonic() < t_end:
                c.query_sa(0x7002, kc.OUT)
                time.sleep(0.05)
            cls.expires = list(c.expires)
            R["query2"] = c.query_sa(0x7002, kc.OUT)
            R["query_in"] = c.query_sa(IN_SPI, kc.IN)
            R["del_out2"] = c.del_sa(0x7002, kc.OUT)
            cls.marks["deleted"] = mg.rx()
            R["query2_after"] = c.query_sa(0x7002, kc.OUT)
            c.close()
        cls.drive("keying", cfg, tr, scenario, a_rx=a_rx, outside_pps=400, idle_ms=1500)

    # -- helpers
    def esp_frames(self):
        """(spi, seq, decrypted inner or None) of every out-a frame, in order."""
        # #2 is ESP in UDP (NAT-T, RFC 3948) from port 4500 to 4501: the daemon's choice for this SA.
        sas = {0x7001: scapy_sa(0x7001, self.key1, self.inst_ip, self.dev_ip),
               0x7002: scapy_sa(0x7002, self.key2, self.inst_ip, self.dev_ip, UDP(sport=4500, dport=4501))}
        res = []
        for fr in self.mg.out["out-a"] or []:
            ip = fr[14:]
            ihl = (ip[0] & 0x0f) * 4
            esp_at = ihl
            if ip[9] == 17 and struct.unpack("!HH", ip[ihl:ihl + 4]) == (4500, 4501):
                esp_at = ihl + 8
            elif ip[9] != 50:
                res.append((None, None, None))
                continue
            spi, seq = struct.unpack("!II", ip[esp_at:esp_at + 8])
            if (ip[9] == 17) != (spi == 0x7002):
                res.append((spi, seq, None))   # each SA's own encapsulation only
                continue
            inner = None
            if spi in sas:
                try:
                    inner = raw(sas[spi].decrypt(IP(ip)))
                except Exception:  # noqa: BLE001 - any failure is a finding
                    inner = None
            res.append((spi, seq, inner))
        return res

    def test_bad_requests_refused_with_a_reason(self):
        R = self.replies
        self.assertFalse(self.mg.problems, f"{self.mg.problems}\n{self.mg.describe()}")
        self.assertEqual((R["hello"].status, R["hello"].tunnels), (kc.OK, 4), R["hello"])
        want = {"garbage": kc.E_MALFORMED, "version": kc.E_VERSION, "spi0": kc.E_MALFORMED, "keylen": kc.E_MALFORMED,
                "keylen_lie": kc.E_MALFORMED, "no_tunnel": kc.E_NO_TUNNEL, "static": kc.E_NO_TUNNEL,
                "if_id": kc.E_NO_TUNNEL, "window_out": kc.E_MALFORMED, "cipher": kc.E_MALFORMED,
                "del_none": kc.E_NOT_FOUND, "query_none": kc.E_NOT_FOUND, "truncated": kc.E_MALFORMED,
                "get_spi_static": kc.E_NO_TUNNEL, "add_in_dup": kc.E_EXISTS, "add_out1_dup": kc.E_EXISTS,
                "query1_gone": kc.E_NOT_FOUND, "query2_after": kc.E_NOT_FOUND}
        for name, status in want.items():
            self.assertEqual(R[name].status, status, (name, R[name]))
            self.assertTrue(R[name].reason, (name, R[name]))
        # No reply ever quotes key bytes.
        for r in R.values():
            for k in (self.key_in, self.key1, self.key2):
                self.assertNotIn(k.hex()[:8], r.reason)
        # Nothing went out before the first outbound SA, whatever the bad requests said.
        first = self.marks["out1"]
        self.assertGreater(first, 1000)

    def test_show_sa_during_the_rekey(self):
        rows = sorted((x["direction"], x["spi"], x["state"], x["keying"]) for x in self.shown_sa or [])
        self.assertEqual(rows, [("in", IN_SPI, "active", "ike"), ("out", 0x7001, "replaced", "ike"),
                                ("out", 0x7002, "active", "ike")], self.shown_sa)
        # Per SA: its own encapsulation (#2 was installed as ESP in UDP, the others raw), no ESN (none asked for
        # it), and an age since its install, older for the first ones.
        by = {(x["direction"], x["spi"]): x for x in self.shown_sa}
        self.assertEqual({k: v["encap"] for k, v in by.items()},
                         {("in", IN_SPI): "none", ("out", 0x7001): "none", ("out", 0x7002): "udp"})
        self.assertFalse(any(v["esn"] for v in by.values()), self.shown_sa)
        self.assertTrue(all(v["age_ms"] >= 0 for v in by.values()), self.shown_sa)
        self.assertGreaterEqual(by[("out", 0x7001)]["age_ms"], by[("out", 0x7002)]["age_ms"], self.shown_sa)

    def test_installs_accepted(self):
        R = self.replies
        for name in ("get_spi", "add_in", "add_out1", "query1", "add_out2", "del_out1", "query2", "query_in",
                     "del_out2"):
            self.assertEqual(R[name].status, kc.OK, (name, R[name]))
        self.assertGreaterEqual(R["get_spi"].spi, 0x100)
        # #2 (ESP in UDP) took the tunnel's path MTU 8 bytes down: 1438 on the 1500-byte port, MSS 1398.
        mtu = {x["name"]: x for x in self.mg.stats["tunnels"]}["a-1"]["mtu"]
        self.assertEqual((mtu["path"], mtu["mss_clamp_v4"]), (1438, 1398), mtu)

    def test_every_frame_decrypts_in_order_from_1(self):
        fr = self.esp_frames()
        self.assertTrue(fr, "nothing left out-a")
        bad = [(i, s, q) for i, (s, q, inner) in enumerate(fr) if inner is None]
        self.assertFalse(bad, f"{len(bad)} of {len(fr)} frames did not decrypt under their SPI's key: {bad[:6]}")
        spis = [s for s, _, _ in fr]
        self.assertEqual(spis, sorted(spis), "a frame under SA #1 after the switch to #2")
        by = collections.defaultdict(list)
        for s, q, _ in fr:
            by[s].append(q)
        self.assertEqual(set(by), {0x7001, 0x7002})
        for s, seqs in by.items():
            self.assertEqual(seqs, list(range(1, len(seqs) + 1)), f"SPI {s:#x}: sequence numbers not 1, 2, 3, ...")
        # Every inner packet is one of ours, each at most once.
        inners = [inner for _, _, inner in fr]
        self.assertEqual(len(set(inners)), len(inners))
        self.assertTrue(all(i in self.trace.index_of for i in inners))
        # QUERY_SA agrees with the wire (#1's count was taken while it ran: at most what it sent in all).
        self.assertLessEqual(self.replies["query1"].packets, len(by[0x7001]))
        self.assertGreater(self.replies["query1"].packets, 0)
        # The hard packet lifetime is exact: #2 sent HARD2 packets, numbered 1..HARD2, then stopped; EXPIRE soft, then
        # hard, reached the daemon with #2's SPI and reqid.
        self.assertEqual(len(by[0x7002]), HARD2)
        self.assertEqual((self.replies["query2"].packets, self.replies["query2"].seqno), (HARD2, HARD2))
        self.assertEqual(self.expires, [(0x7002, 8, 0), (0x7002, 8, 1)])

    def test_nothing_after_the_last_delete_and_accounting(self):
        st = self.mg.stats
        self.assertEqual(self.mg.rc, 0, self.mg.describe())
        self.assertEqual(st["mbufs_in_use_at_exit"], 0)
        t = {x["name"]: x for x in st["tunnels"]}
        sent = len(self.esp_frames())
        self.assertEqual(t["a-1"]["packets_out"] + t["a-1"]["probes_out"], sent)
        self.assertEqual(sum(x["packets_out"] for n, x in t.items() if n != "a-1"), 0)
        dr = st["drops"]
        self.assertGreater(dr["no_tunnel"], 1000, "before the first SA, and once #2 ended (the tunnel is down)")
        self.assertEqual(st["inside_rx"], sum(x["packets_out"] for x in t.values()) + sum(dr.values())
                         + sum(sum(x["esp_drops"].values()) for x in t.values() if x["esp_drops"]), (st["inside_rx"], dr))
        # The stats show the keying and the SAs left: the inbound one (never deleted), no outbound.
        self.assertEqual((t["a-1"]["keying"], t["b-1"]["keying"]), ("ike", "static"))
        self.assertEqual([(x["direction"], x["spi"]) for x in t["a-1"]["sas"]], [("in", IN_SPI)])
        self.assertEqual(sorted(x["direction"] for x in t["b-1"]["sas"]), ["in", "out"])
        after = self.marks["deleted"]
        self.assertLess(after + op.SLACK, TOTAL, "the trace ended before the last delete")
        self.assertFalse(os.path.exists(self.sock), "the keying socket outlived meshgate")

    def test_inbound_under_the_installed_sa(self):
        st = self.mg.stats
        inside = self.mg.out["inside"] or []
        got = [fr[14:] for fr in inside if fr[12:14] == b"\x08\x00" and fr[14 + 9] == 17]
        want = set(self.in_inner)
        mine = [g for g in got if g in want]
        self.assertGreater(len(mine), 0, "no inbound packet decrypted")
        self.assertEqual(len(set(mine)), len(mine), "an inbound packet delivered twice")
        # Delivered ones are a suffix of the sequence (from the first after the install), every later one there.
        idx = sorted(self.in_inner.index(g) for g in mine)
        self.assertEqual(idx, list(range(idx[0], IN_FRAMES)), "a gap after the inbound SA was installed")
        t = {x["name"]: x for x in st["tunnels"]}
        self.assertEqual(t["a-1"]["packets_in"], len(mine))
        self.assertGreaterEqual(self.replies["query_in"].seqno, idx[0] + 1)
        # The frames before the install: unknown SPI, counted; every frame read is one or the other.
        self.assertEqual(st["esp_unknown_sa_drops"].get("in_unknown_spi", 0), idx[0])
        self.assertEqual(st["outside_rx"], IN_FRAMES)


def main():
    return op.main()


if __name__ == "__main__":
    sys.exit(main())
