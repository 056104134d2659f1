#!/usr/bin/python3
"""Capture and telemetry: dpdk-dumpcap attached to a running meshgate, and the per-SA and per-worker telemetry.

Telemetry (vdev-demo, no hugepages): a gateway that has forwarded a known trace and decrypted a known inbound
stream (with 2 replays and 1 forged ICV) answers /meshgate/sas, /meshgate/sa,..., /meshgate/workers and
/meshgate/worker,N over its v2 socket with exactly those counts, the same figures its exit report gives; unknown
names are refused; no key byte appears in any answer.

Capture (pmd_config/vdev-capture.toml on hugepages, which the test mounts and reserves itself and gives back): the
inside port replays a pcap without end; dpdk-dumpcap attaches as a secondary process to out-a (all frames) and to
the inside port (BPF filter "udp"); tshark decrypts the outside capture with the SAs' keys (every frame ESP of gw-a
with a-1's or a-2's SPI, sequence numbers rising, inner UDP/TCP from the inside prefixes); every captured frame is
decrypted by scapy too, or, on the inside port, byte-identical to a frame of the input pcap; a dumpcap killed with
SIGKILL (its hooks stay in the gateway) does not stop forwarding. meshgate then exits 0, its counters add up
(rx = tx + drops) and every mbuf is back. The outside ports are net_null sinks (net_pcap output files would be
reopened, and cut, by dumpcap: pmd_config/vdev-capture.toml), so scapy is the second oracle of the ESP.
Needs root (hugepages), dpdk-dumpcap (package dpdk-dev) and tshark; exits 77 (skip) without them.
"""
import os
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from caplib import (DUMPCAP, GCM, HUGE_DIR, TSHARK, Gateway, Hugepages, dumpcap, tshark_fields,  # noqa: E402
                    udp_tcp_trace, wait_for)
import gwtest  # noqa: E402  (on sys.path through caplib)
from gwtest import IP, UDP, Raw, raw  # noqa: E402
from scapy.utils import rdpcap  # noqa: E402


class TelemetryTest(unittest.TestCase):
    N_IN, N_ESP = 400, 20

    @classmethod
    def setUpClass(cls):
        cls.gw = gwtest.Gw(gwtest.dual_cfg())
        a1 = cls.gw.by_name["a-1"]
        sa = a1.inn.scapy_sa()
        l2 = bytes.fromhex("027063617001" + a1.dev_mac.replace(":", "")) + b"\x08\x00"
        esp = []
        for i in range(cls.N_ESP):
            inner = IP(src=f"10.128.1.{i + 1}", dst="10.1.0.1", ttl=60) / UDP(sport=53, dport=2000) / Raw(bytes(30 + i))
            esp.append(l2 + raw(sa.encrypt(inner)))
        forged = bytearray(esp[3])
        forged[-1] ^= 1
        # Number 4 first with a bad ICV (in_auth; the real one is still accepted after it), number 5 twice again at
        # the end (in_replay).
        cls.rx = esp[:3] + [bytes(forged)] + esp[3:] + [esp[4], esp[4]]
        cls.g = Gateway("telemetry", gwtest.pmd_cfg(), udp_tcp_trace(cls.N_IN), a_rx=cls.rx, extra=["--pace-pps", "2000"])
        try:
            cls.g.telemetry_up()
            # Everything fed is through: the counts below are final while the gateway still runs.
            wait_for("the trace to be forwarded", lambda: (lambda s: s and s["inside_rx"] == cls.N_IN and
                                                           s["outside_rx"] == len(cls.rx))(
                cls.g.tel.try_call("/meshgate/stats")), 120)
            t = cls.g.tel
            cls.sas = t("/meshgate/sas")
            cls.sa_out = t("/meshgate/sa,a-1,out,0x00001001")
            cls.sa_in = t("/meshgate/sa,0x2001")              # the SPI alone: no other SA has it
            cls.sa_in_full = t("/meshgate/sa,a-1,in,8193")    # decimal SPI
            cls.tunnel = t("/meshgate/tunnel,a-1")
            cls.bad = {c: t(c) for c in ("/meshgate/sa,0x9999", "/meshgate/sa,a-1,sideways,0x1001",
                                         "/meshgate/sa,b-1,out,0x1001", "/meshgate/sa,0", "/meshgate/sa,",
                                         "/meshgate/sa,0x1001x", "/meshgate/worker,1", "/meshgate/worker,x",
                                         "/meshgate/worker,")}
            cls.workers = t("/meshgate/workers")
            cls.w0 = t("/meshgate/worker,0")
            cls.tunnels = {n: t(f"/meshgate/tunnel,{n}") for n in ("a-1", "a-2", "b-1", "b-2")}
            cls.texts = list(t.texts)
        finally:
            cls.g.stop()

    def test_exit(self):
        self.assertEqual(self.g.rc, 0, self.g.output())
        self.assertEqual(gwtest.accounting_problems(self.g.as_run(), self.N_IN, len(self.rx)), [])

    def test_sas_lists_every_sa(self):
        want = {f"{t.name},out,0x{t.out.spi:08x}" for t in self.gw.tunnels}
        want |= {f"{t.name},in,0x{t.inn.spi:08x}" for t in self.gw.tunnels}
        self.assertEqual(sorted(self.sas), sorted(want))

    def test_outbound_sa(self):
        s = self.sa_out
        self.assertIsNotNone(s)
        sent = self.tunnels["a-1"]["packets_out"]
        self.assertGreater(sent, 0)
        want = {"tunnel": "a-1", "direction": "out", "spi": 0x1001, "keying": "static", "state": "active",
                "cipher": "aes-gcm-128", "src": "192.0.2.1", "dst": "198.51.100.1", "packets": sent,
                "seq": sent, "esn": 1, "encap": "none", "age_ms": -1, "drops": 0}
        self.assertEqual({k: s.get(k) for k in want}, want)
        self.assertIn(s["engine"], ("ipsecmb", "sodium"))
        self.assertGreaterEqual(s["seq_reserved"], sent)
        self.assertEqual(s["bytes"], self.tunnels["a-1"]["bytes_out"])
        out_reasons = [k for k in s if k.startswith("out_")]
        self.assertIn("out_seq_overflow", out_reasons)
        self.assertFalse([k for k in s if k.startswith("in_")])

    def test_inbound_sa(self):
        s = self.sa_in
        self.assertIsNotNone(s)
        self.assertEqual(s, self.sa_in_full)
        want = {"tunnel": "a-1", "direction": "in", "spi": 0x2001, "packets": self.N_ESP, "seq": self.N_ESP,
                "replay_window": 1024, "esn": 1, "in_replay": 2, "in_auth": 1, "drops": 3}
        self.assertEqual({k: s.get(k) for k in want}, want)
        self.assertEqual(s["packets"], self.tunnels["a-1"]["packets_in"])
        self.assertFalse([k for k in s if k.startswith("out_")])

    def test_unknown_names_refused(self):
        self.assertEqual(self.bad, {k: None for k in self.bad})

    def test_workers(self):
        self.assertEqual(self.workers, [0])
        w = self.w0
        sent_a = sum(self.tunnels[n]["packets_out"] for n in ("a-1", "a-2"))
        sent_b = sum(self.tunnels[n]["packets_out"] for n in ("b-1", "b-2"))
        want = {"worker": 0, "lcore": 1, "inside_rx": self.N_IN, "outside_rx": len(self.rx),
                "inside_tx": self.N_ESP, "outside_tx": sent_a + sent_b, "ports": ["inside", "out-a", "out-b"],
                "rx_packets": [self.N_IN, len(self.rx), 0], "tx_packets": [self.N_ESP, sent_a, sent_b],
                "tx_refused": [0, 0, 0]}
        self.assertEqual({k: w.get(k) for k in want}, want)
        for reason in ("inside_not_ip", "not_routed", "no_tunnel", "tx_full"):
            self.assertEqual(w[reason], 0, reason)

    def test_matches_exit_report(self):
        st = self.g.stats
        self.assertIsNotNone(st)
        rep = {t["name"]: t for t in st["tunnels"]}
        sas = {(s["direction"], s["spi"]): s for s in rep["a-1"]["sas"]}
        self.assertEqual(sas[("out", 0x1001)]["packets"], self.sa_out["packets"])
        self.assertEqual(sas[("out", 0x1001)]["seq"], self.sa_out["seq"])
        self.assertEqual(sas[("in", 0x2001)]["seq"], self.sa_in["seq"])
        self.assertEqual(st["ports"]["out-a"]["tx_packets"], self.w0["tx_packets"][1])

    def test_no_key_in_any_answer(self):
        self.assertGreater(len(self.texts), 10)
        text = "\n".join(self.texts).lower()
        for t in self.gw.tunnels:
            for sa in (t.out, t.inn):
                for part in (sa.keymat.hex(), sa.keymat[:8].hex(), sa.keymat[-4:].hex()):
                    self.assertNotIn(part, text, f"key material of SPI {sa.spi:#x} in a telemetry answer")


class CaptureTest(unittest.TestCase):
    N_CAP = 60

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("hugepages need root")
        if not os.path.exists(DUMPCAP) or not TSHARK:
            raise unittest.SkipTest("dpdk-dumpcap (dpdk-dev) or tshark missing: scripts/setup.sh installs them")
        cls.huge = Hugepages().__enter__()
        cls.trace = udp_tcp_trace(400)
        cls.g = None
        try:
            cls.run_capture()
        finally:
            if cls.g is not None:
                cls.g.stop()
                for f in os.listdir(HUGE_DIR):   # hugepage files of our prefix, if EAL left any
                    if f.startswith(cls.g.prefix):
                        os.unlink(os.path.join(HUGE_DIR, f))
            cls.huge.__exit__()
            shutil.rmtree(getattr(cls, "short", "/nonexistent"), ignore_errors=True)

    @classmethod
    def run_capture(cls):
        pmd = gwtest.source_path("pmd_config", "vdev-capture.toml")
        # A secondary sees only the first 63 characters of net_pcap's arguments (pmd_config/vdev-capture.toml).
        cls.short = f"/tmp/mgcap-{os.getpid()}"
        os.makedirs(cls.short, exist_ok=True)
        cls.g = g = Gateway("capture", pmd, cls.trace, extra=["--pace-pps", "3000"],
                            inside_path=os.path.join(cls.short, "in.pcap"))
        g.telemetry_up()
        d = g.dir
        cls.cap_a = os.path.join(d, "a.pcapng")
        cls.cap_in = os.path.join(d, "in.pcapng")
        cls.res_a = dumpcap(g.prefix, "-i", "net_null1", "-c", str(cls.N_CAP), "-w", cls.cap_a)
        cls.res_in = dumpcap(g.prefix, "-i", "net_pcap0", "-f", "udp", "-c", str(cls.N_CAP), "-w", cls.cap_in)
        for rc, out in (cls.res_a, cls.res_in):
            assert rc == 0, f"dpdk-dumpcap exited {rc}:\n{out}"
        # A dumpcap killed outright cannot unhook itself: its callbacks stay, copying into a ring nobody reads.
        cls.cap_b = os.path.join(d, "b.pcapng")
        k = subprocess.Popen([DUMPCAP, f"--file-prefix={g.prefix}", "-q", "-i", "net_null2", "-w", cls.cap_b],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for("dumpcap on out-b to capture", lambda: os.path.exists(cls.cap_b) and
                     os.path.getsize(cls.cap_b) > 2000, 60)
        finally:
            k.kill()
            k.wait()
        before = g.tel("/meshgate/stats")["inside_rx"]
        cls.after_kill = wait_for("forwarding after the SIGKILL", lambda: (lambda s: s and s["inside_rx"] >= before + 500
                                                                          and s)(g.tel.try_call("/meshgate/stats")), 60)
        cls.res_a2 = dumpcap(g.prefix, "-i", "net_null1", "-c", "5", "-w", os.path.join(d, "a2.pcapng"))
        cls.alive_before_stop = g.alive()

    def test_dumpcap_attached(self):
        self.assertEqual(self.res_a[0], 0, self.res_a[1])
        self.assertEqual(self.res_in[0], 0, self.res_in[1])
        self.assertEqual(self.res_a2[0], 0, "another port after the kill: " + self.res_a2[1])
        self.assertTrue(self.alive_before_stop)

    def test_outside_capture_is_gw_a_esp(self):
        uats = []
        for t in gwtest.Gw(gwtest.dual_cfg()).tunnels:
            if t.port == "out-a":
                uats.append(f'"IPv4","{t.inst_ip}","{t.dev_ip}","0x{t.out.spi:08x}","{GCM}",'
                            f'"0x{t.out.keymat.hex()}","NULL",""')
        rows = tshark_fields(self.cap_a, ["ip.src", "ip.dst", "ip.proto", "esp.spi", "esp.sequence", "udp.dstport",
                                          "tcp.dstport"], uats)
        self.assertGreaterEqual(len(rows), self.N_CAP)   # dumpcap stops after the burst that reaches -c
        last = {}
        for r in rows:
            srcs, dsts = r[0].split(","), r[1].split(",")
            self.assertEqual(srcs[0], "192.0.2.1", r)
            self.assertIn(dsts[0], ("198.51.100.1", "198.51.100.2"), r)
            self.assertEqual(r[2].split(",")[0], "50", r)
            spi = int(r[3], 16)
            self.assertIn(spi, (0x1001, 0x1002), r)
            self.assertEqual(dsts[0], "198.51.100.1" if spi == 0x1001 else "198.51.100.2", r)
            seq = int(r[4])
            self.assertGreater(seq, last.get(spi, 0), r)
            last[spi] = seq
            # Decrypted by tshark: the inner packet is one of the trace's (inside prefixes, its ports).
            self.assertEqual(len(srcs), 2, f"not decrypted: {r}")
            self.assertTrue(srcs[1].startswith("10.1.0.") and dsts[1].startswith("10.128.1."), r)
            self.assertTrue(r[5] == "53" or r[6] == "80", r)

    def test_outside_capture_decrypts_to_the_trace(self):
        # Second oracle (scapy): every captured ESP frame authenticates under its SA and holds a packet of the trace.
        sas = {t.out.spi: t.out.scapy_sa() for t in gwtest.Gw(gwtest.dual_cfg()).tunnels}
        inner = {f[14:] for f in self.trace}
        got = [bytes(p) for p in rdpcap(self.cap_a)]
        self.assertTrue(got)
        bad = []
        for k, b in enumerate(got):
            outer = IP(b[14:])
            try:
                if raw(sas[outer[gwtest.ESP].spi].decrypt(outer)) not in inner:
                    bad.append((k, "not a packet of the trace"))
            except Exception as e:  # an ICV failure, an unknown SPI
                bad.append((k, repr(e)))
        self.assertEqual(bad, [])

    def test_inside_capture_filtered(self):
        rows = tshark_fields(self.cap_in, ["ip.src", "ip.dst", "ip.proto", "udp.dstport"])
        self.assertGreaterEqual(len(rows), self.N_CAP)
        for r in rows:
            self.assertEqual(r[2], "17", r)   # the BPF filter "udp" kept TCP out
            self.assertEqual(r[3], "53", r)
            self.assertTrue(r[0].startswith("10.1.0.") and r[1].startswith("10.128.1."), r)
        fed = set(self.trace)
        got = [bytes(p) for p in rdpcap(self.cap_in)]
        self.assertEqual([k for k, b in enumerate(got) if b not in fed], [])

    def test_gateway_exact_and_clean_after_capture(self):
        self.assertEqual(self.g.rc, 0, self.g.output())
        st = self.g.stats
        self.assertIsNotNone(st)
        self.assertEqual(st["mbufs_in_use_at_exit"], 0)
        self.assertGreater(st["inside_rx"], 1000)
        self.assertEqual(gwtest.accounting_problems(self.g.as_run(), None, 0), [])


if __name__ == "__main__":
    if "CaptureTest" in sys.argv and (os.geteuid() != 0 or not os.path.exists(DUMPCAP) or not TSHARK):
        print("SKIP: needs root, dpdk-dumpcap (dpdk-dev) and tshark; scripts/setup.sh installs the packages")
        sys.exit(77)
    sys.exit(gwtest.main())
