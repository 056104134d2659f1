#!/usr/bin/python3
"""One inbound SA over two workers: exactly-once delivery whatever worker receives each copy.

gw-a's outside port has two RX queues and no RSS (tests/gateway/pmd-2q-outside.toml: net_pcap, one queue per
worker), so every packet of the inbound SA of tunnel a-1 can reach either worker; this is the port configuration of
issue 15, defect 4 (20,039 of 20,000 unique packets delivered). 20,000 unique ESP packets (made by meshgate-esp, a
sample checked with scapy) are spread over the two queues: 90 % on both, 5 % on each queue alone,
duplicates within a queue and tampered copies (a flipped ciphertext byte, and 100 more numbers that never had a
valid packet). The SA's replay window (65,536) holds all 20,000 numbers, so no copy can fall out of it: the
outcome does not depend on how the workers are scheduled, and exactly the 20,000 must come out, each once.
The same input goes through RUNS meshgate processes: a window that loses the race loses it only when both workers
really run at once, which a busy machine grants now and then.
"""
import collections
import os
import random
import struct
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import gwtest  # noqa: E402
from gwtest import IP, Gw, Run, raw, read_pcap, source_path, write_pcap  # noqa: E402

N = 20000          # unique packets
N_AHEAD = 100      # tampered packets with numbers beyond N (never valid)
WINDOW = 65536     # >= N: no copy is ever too old
RUNS = 3
PORT_MAC = "02:70:63:61:70:01"   # net_pcap's MAC of out-a (port id 1)


def ipv4_udp(idx):
    """An inner IPv4/UDP packet from an on-premises host (inside the prefixes) carrying idx."""
    payload = gwtest.MARK + b"%08d:000000:" % idx + bytes((idx + j) & 0xff for j in range(40))
    udp = struct.pack("!HHHH", 1024 + idx % 50000, 443, 8 + len(payload), 0) + payload
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), idx & 0xffff, 0x4000, 61, 17, 0,
                                bytes([10, 128, (idx >> 8) & 0xff, idx & 0xff]), bytes([100, 64, 0, 1])))
    s = sum(struct.unpack("!10H", hdr))
    s = (s & 0xffff) + (s >> 16)
    s = (s & 0xffff) + (s >> 16)
    hdr[10:12] = struct.pack("!H", ~s & 0xffff)
    return bytes(hdr) + udp


class OneSaTwoWorkersTest(unittest.TestCase):
    maxDiff = 2000

    @classmethod
    def setUpClass(cls):
        tmp = os.path.join(gwtest.TMP, "replay-workers")
        os.makedirs(tmp, exist_ok=True)
        # gateway-single.toml with a window that holds every number of the test.
        with open(source_path("configs", "gateway-single.toml")) as f:
            text = f.read()
        assert text.count("replay_window = 1024") == 2, "configs/gateway-single.toml changed: adapt this test"
        cls.cfg = os.path.join(tmp, "gateway.toml")
        with open(cls.cfg, "w") as f:
            f.write(text.replace("replay_window = 1024", f"replay_window = {WINDOW}"))
        gw = cls.gw = Gw(cls.cfg)
        t = cls.tunnel = gw.by_name["a-1"]
        assert t.port == "out-a"

        # Plain frames as the device would send them, then meshgate-esp encrypts them with a-1's inbound SA:
        # sequence numbers 1 .. N + N_AHEAD in file order.
        l2 = bytes.fromhex(PORT_MAC.replace(":", "") + t.dev_mac.replace(":", "")) + b"\x08\x00"
        cls.inner = [ipv4_udp(i) for i in range(N + N_AHEAD)]
        plain = os.path.join(tmp, "plain.pcap")
        esp_path = os.path.join(tmp, "esp.pcap")
        write_pcap(plain, [l2 + p for p in cls.inner])
        cmd = [gwtest.ARGS.esp_tool, "encrypt", "--sa", t.inn.tool_spec(tmp), plain, esp_path]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, f"meshgate-esp exited {p.returncode}: {p.stderr}"
        esp = read_pcap(esp_path)
        assert len(esp) == N + N_AHEAD, f"meshgate-esp wrote {len(esp)} frames"
        cls.esp = esp

        rng = random.Random(1504)
        a, b = [], []
        cls.only = {"a": [], "b": []}
        cls.copies = cls.tampered = 0

        def tamper(fr):
            x = bytearray(fr)
            x[-20] ^= 0x01   # ciphertext, before the ICV
            return bytes(x)

        # One order for both queues, reordered within blocks of 64: the two workers walk the numbers at the same
        # pace, so they handle the copies of one number at about the same time (the race the window must win).
        order = list(range(N))
        for s in range(0, N, 64):
            blk = order[s:s + 64]
            rng.shuffle(blk)
            order[s:s + 64] = blk
        for i in order:
            r = rng.random()
            where = [a, b] if r < 0.9 else [a] if r < 0.95 else [b]
            if len(where) == 1:
                cls.only["a" if where[0] is a else "b"].append(i)
            else:
                cls.copies += 1
            for q in where:
                q.append(esp[i])
                if rng.random() < 0.125:
                    q.append(esp[i])
                    cls.copies += 1
                if rng.random() < 0.03:
                    q.append(tamper(esp[i]))
                    cls.tampered += 1
        for k in range(N_AHEAD):
            (a if k % 2 else b).append(tamper(esp[N + k]))
        cls.fed = len(a) + len(b)
        cls.runs = []
        a_rx1 = os.path.join(tmp, "a-rx1.pcap")
        write_pcap(a_rx1, b)
        cls.runs = []
        for r in range(RUNS):
            run = Run(f"replay-workers-{r}", cls.cfg, [], a_rx=a, timeout=300,
                      pmd=source_path("tests", "gateway", "pmd-2q-outside.toml"),
                      more_env={"MESHGATE_OUT_A_RX1": a_rx1})
            run.gw = gw
            run.per_worker = []
            for name in ("inside", "inside-1"):
                pth = os.path.join(run.dir, "out", f"{name}.pcap")
                run.per_worker.append(read_pcap(pth) if os.path.exists(pth) else None)
            cls.runs.append(run)

    def delivered(self, run, worker):
        fr = run.per_worker[worker]
        if fr is None:
            self.fail(f"worker {worker}'s inside pcap was not written\n{run.describe()}")
        if not hasattr(self, "index_of"):
            type(self).index_of = {p: i for i, p in enumerate(self.inner)}
        return [self.index_of.get(f[14:]) for f in fr]

    def test_esp_is_what_scapy_decrypts(self):
        sa = self.tunnel.inn.scapy_sa()
        for i in (0, 1, N // 2, N - 1, N + N_AHEAD - 1):
            ip = self.esp[i][14:]
            self.assertEqual(struct.unpack("!I", ip[24:28])[0], i + 1, f"frame {i}: sequence number")
            self.assertEqual(raw(sa.decrypt(IP(ip))), self.inner[i], f"frame {i}: scapy's plaintext")

    def test_both_workers_decrypted_the_sa(self):
        for r, run in enumerate(self.runs):
            got = [set(self.delivered(run, 0)), set(self.delivered(run, 1))]
            for w, q in enumerate("ab"):
                missing = [i for i in self.only[q] if i not in got[w]]
                self.assertFalse(missing, f"run {r}: packets only on queue {w} not delivered by worker {w}: "
                                          f"{missing[:10]}")

    def test_every_unique_packet_exactly_once(self):
        res = []
        for run in self.runs:
            got = self.delivered(run, 0) + self.delivered(run, 1)
            cnt = collections.Counter(i for i in got if i is not None)
            twice = {i: c for i, c in cnt.items() if c > 1}
            missing = [i for i in range(N) if i not in cnt]
            ahead = [i for i in cnt if i >= N]
            res.append((len(got), got.count(None), len(twice), len(missing), len(ahead)))
        self.assertEqual(res, [(N, 0, 0, 0, 0)] * RUNS,
                         f"per run: (delivered, unknown, twice, missing, tampered) of {N} unique")

    def test_counters(self):
        for r, run in enumerate(self.runs):
            self.assertIsNotNone(run.stats, run.describe())
            a1 = run.tunnel_stats()["a-1"]
            ed = a1["esp_drops"]
            self.assertEqual(a1["packets_in"], N, f"run {r}: a-1 packets_in; esp_drops {ed}")
            self.assertEqual(ed.get("in_too_old", 0), 0, f"run {r}: nothing is too old for a window of 65,536")
            self.assertGreaterEqual(ed.get("in_auth", 0), N_AHEAD, f"run {r}: tampered numbers beyond N reach "
                                                                   "the ICV check")
            self.assertEqual(sum(ed.values()), self.copies + self.tampered + N_AHEAD,
                             f"run {r}: a-1 esp_drops {ed}: {self.copies} copies, {self.tampered} + {N_AHEAD} "
                             "tampered")

    def test_accounting(self):
        for r, run in enumerate(self.runs):
            for port in ("inside", "out-a", "out-b"):   # one file per TX queue: the port's frames are both
                more = os.path.join(run.dir, "out", f"{port}-1.pcap")
                if run.out[port] is not None and os.path.exists(more):
                    run.out[port] = run.out[port] + read_pcap(more)
                    os.rename(more, more + ".counted")
            probs = gwtest.accounting_problems(run, 0, self.fed)
            self.assertFalse(probs, f"run {r}: accounting: " + "; ".join(probs) + "\n" + run.describe())


if __name__ == "__main__":
    sys.exit(gwtest.main())
