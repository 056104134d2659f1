#!/usr/bin/python3
"""Start order of two meshgate processes joined by net_memif: the client may start before its server.

  ClientFirst  near (memif client) starts, far (memif server) 2 s later: near waits for the server instead of
               failing its port start, says so once, and then both carry traffic both ways; exits are clean.
  NoServer     a client with start_wait_s = 1 and no server gives up after about a second with exit 4 and an
               error that names the port and the memif server.
Run: /usr/bin/python3 tests/liveness/test_memif_order.py --meshgate build/apps/meshgate/meshgate [--keep]
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import gwtest  # noqa: E402
import test_full_rate as fr  # noqa: E402
import test_two_gateways as t2  # noqa: E402


def write_pmd(path, inside, ports, role, sock, lcores, start_wait=None):
    fr.memif_pmd(path, inside, ports, role, sock, lcores)
    if start_wait is not None:
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace("socket=" + sock + '"', "socket=" + sock + f'"\nstart_wait_s = {start_wait}'))


class MemifOrder(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        d = cls.dir = tempfile.mkdtemp(prefix="mg-memif-order-")
        cls.tag = f"mgmo{os.getpid()}"
        cls.near_cfg, cls.far_cfg = os.path.join(d, "near.toml"), os.path.join(d, "far.toml")
        fr.two_tunnel_config(gwtest.dual_cfg(), cls.near_cfg)
        rng = __import__("random").Random(6201)
        flows = [f for f in gwtest.make_flows(100, rng, v4_net=12, v6_net=0xc0) if not f.v6][:40]
        tr = gwtest.Trace()
        for k in range(400):
            tr.add(flows[k % len(flows)], 200)
        gwtest.write_pcap(os.path.join(d, "in.pcap"), tr.frames)
        gwtest.write_pcap(os.path.join(d, "empty.pcap"), [])
        cls.sock = os.path.join(d, "memif.sock")
        cls.inside = f"net_pcap0,rx_pcap={os.path.join(d, 'in.pcap')},infinite_rx=1,tx_pcap=/dev/null"
        write_pmd(os.path.join(d, "far-pmd.toml"), f"net_pcap0,rx_pcap={os.path.join(d, 'empty.pcap')},tx_pcap=/dev/null",
                  [("op1", 1), ("op2", 2)], "server", cls.sock, "0@1,1@0")
        t2.make_far_config(cls.near_cfg, cls.far_cfg, os.path.join(d, "far-pmd.toml"))

    @classmethod
    def tearDownClass(cls):
        if not getattr(gwtest.ARGS, "keep", False):
            shutil.rmtree(cls.dir, ignore_errors=True)
        for p in ("far", "near", "lone"):
            shutil.rmtree(f"/var/run/dpdk/{cls.tag}-{p}", ignore_errors=True)

    def near_cmd(self, pmd, name, json_path, seconds):
        return [gwtest.ARGS.meshgate, "-c", self.near_cfg, "--pmd", pmd, "--duration", str(seconds), "--pace-pps",
                "5000", "--stats-json", json_path, f"--eal=--file-prefix={self.tag}-{name}", "--control-name",
                f"{self.tag}-{name}", "--state-dir", self.state(name)]

    def state(self, name):   # each run's own sequence-number records: the keys start at 1
        d = os.path.join(self.dir, f"{name}-state")
        os.makedirs(d, exist_ok=True)
        return d

    def test_client_first(self):
        d = self.dir
        pmd = os.path.join(d, "near-pmd.toml")
        write_pmd(pmd, self.inside, [("out-a", 1), ("out-b", 2)], "client", self.sock, "0@0,1@1")
        near = subprocess.Popen(self.near_cmd(pmd, "near", os.path.join(d, "near.json"), 4),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(2.0)
        if near.poll() is not None:
            self.fail("the client gave up before its server started:\n" + near.communicate()[0][-3000:])
        far = subprocess.run([gwtest.ARGS.meshgate, "-c", self.far_cfg, "--reflect", "--duration", "10",
                              "--exit-when-idle-ms", "3000", "--stats-json", os.path.join(d, "far.json"),
                              f"--eal=--file-prefix={self.tag}-far", "--control-name", f"{self.tag}-far",
                              "--state-dir", self.state("far")],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
        near_log = near.communicate(timeout=120)[0]
        # DPDK's memif logs one line per failed connect: keep the log readable.
        near_log = "\n".join(ln for ln in near_log.splitlines() if "memif_connect_client(): Failed" not in ln)
        why = f"near rc {near.returncode}:\n{near_log[-3000:]}\nfar rc {far.returncode}:\n{far.stdout[-2000:]}"
        if any("librte_net_memif" in ln for ln in (near_log + far.stdout).splitlines() if "fatal signal" in ln):
            self.skipTest("DPDK's net_memif faulted in its own code (pmd_config/memif.toml, known problem):\n" + why)
        self.assertEqual((near.returncode, far.returncode), (0, 0), why)
        # Said once (out-a); by the time out-b starts, the server is up.
        self.assertEqual(near_log.count("port out-a: waiting for the memif server"), 1, why)
        self.assertLess(near_log.index("port out-a: waiting"), near_log.index("port out-a: memif link up"), why)
        with open(os.path.join(d, "near.json")) as f:
            nj = json.load(f)
        with open(os.path.join(d, "far.json")) as f:
            fj = json.load(f)
        far_t = {t["name"]: t for t in fj["tunnels"]}
        for (n, f_), (np_, fp) in zip(fr.TUNNELS, (("out-a", "op1"), ("out-b", "op2"))):
            nt = {t["name"]: t for t in nj["tunnels"]}[n]
            self.assertGreater(nt["packets_out"], 1000, nt)
            # Everything near's TX took reached far, but what was in the ring when near closed its port.
            gap = nj["ports"][np_]["tx_packets"] - fj["ports"][fp]["rx_packets"]
            self.assertTrue(0 <= gap <= 1024, (np_, nj["ports"][np_], fp, fj["ports"][fp]))
            self.assertEqual(far_t[f_]["packets_in"], fj["ports"][fp]["rx_packets"], far_t[f_])
        self.assertEqual(nj["mbufs_in_use_at_exit"], 0)
        self.assertEqual(fj["mbufs_in_use_at_exit"], 0)

    def test_no_server(self):
        d = self.dir
        pmd = os.path.join(d, "lone-pmd.toml")
        write_pmd(pmd, self.inside, [("out-a", 1), ("out-b", 2)], "client", os.path.join(d, "nobody.sock"), "0@0,1@1",
                  start_wait=1)
        t0 = time.monotonic()
        r = subprocess.run(self.near_cmd(pmd, "lone", os.path.join(d, "lone.json"), 2), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=120)
        self.assertEqual(r.returncode, 4, r.stdout[-2000:])
        self.assertIn("port 'out-a': start failed", r.stdout)
        self.assertIn("no memif server answered within start_wait_s = 1 s", r.stdout)
        self.assertGreaterEqual(time.monotonic() - t0, 1.0)


if __name__ == "__main__":
    sys.exit(gwtest.main())
