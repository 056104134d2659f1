#!/usr/bin/python3
"""No false alarm at full rate (issue 6): two meshgate processes joined by net_memif (shared memory, copy mode,
no hugepages), the near one forwarding as fast as it can for 60 s with liveness 20 ms x 3 and probes on.

  near  configs/gateway-dual.toml cut to two tunnels (a-1: gw-a -> onprem-1, b-2: gw-b -> onprem-2; a memif link
        is point to point, so each instance port meets one far port), inside = a pcap replayed without end
        (net_pcap infinite_rx), one worker, --liveness 20x3.
  far   the mirror config (tests/liveness/test_two_gateways.py make_far_config), --reflect: it decrypts, answers
        near's probes on the same tunnel, and is the memif server. Its worker runs on the other CPU than near's.

Near offers more than the far side can take, so near's TX queues are full most of the time: that is where probes
used to be refused and lost (three in a row = a false down). Checks: no liveness event on near in 60 s, both
tunnels up at the end, about one probe per 17.5 ms per tunnel and every one answered, every packet near's TX
took reached the far side's tunnel (memif loses nothing), both exit cleanly with every mbuf back.
Run: /usr/bin/python3 tests/liveness/test_full_rate.py --meshgate build/apps/meshgate/meshgate [--seconds 60]
"""
import collections
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import gwtest  # noqa: E402
import test_two_gateways as t2  # noqa: E402

SECONDS = 60.0
TUNNELS = (("a-1", "1-a"), ("b-2", "2-b"))


def two_tunnel_config(src, dst):
    with open(src) as f:
        text = f.read()
    head, *tunnels = text.split("[[tunnel]]")
    keep = [t for t in tunnels if any(f'name = "{n}"' in t for n, _ in TUNNELS)]
    assert len(keep) == 2, "configs/gateway-dual.toml has no tunnels a-1 and b-2"
    with open(dst, "w") as f:
        f.write(head + "".join("[[tunnel]]" + t for t in keep))


def memif_pmd(path, inside, ports, role, sock, lcores):
    lines = ['[eal]', f'args = ["--no-huge", "-m", "1024", "--no-pci", "--lcores", "{lcores}"]', '',
             '[workers]', 'lcores = [1]', 'mbufs = 32767', '', '[[port]]', 'name = "inside"', f'devargs = "{inside}"',
             '']
    for k, (name, ident) in enumerate(ports):
        lines += ['[[port]]', f'name = "{name}"', f'devargs = "net_memif{k},role={role},id={ident},socket={sock}"', '']
    with open(path, "w") as f:
        f.write("\n".join(lines))


def cpu_seconds():
    """(busy CPU seconds of the whole host, CPU seconds of this process and its waited-for children, wall time)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    busy = (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")   # all but idle and iowait
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return busy, me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime, time.monotonic()


def foreign_share(a, b):
    """Share of the host's CPU time that went to processes other than this test and its two gateways."""
    wall = max(b[2] - a[2], 1e-3)
    return max(0.0, (b[0] - a[0]) - (b[1] - a[1])) / (wall * os.cpu_count())


# The two gateways need the host's two CPUs: near's worker and far's worker poll without pause, near's main
# keeps the probe clock. When other processes took more than this share of the CPU time, a 60 ms silence
# (20 ms x 3) may be the far side not being scheduled, a true loss of liveness from near's point of view: the
# false-alarm checks then cannot tell the product from the host and are skipped (loudly, with the figure);
# every accounting check still runs.
FOREIGN_MAX = 0.10


class FullRateNoFalseAlarm(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        d = cls.dir = tempfile.mkdtemp(prefix="mg-fullrate-")
        tag = f"mgfr{os.getpid()}"
        near_cfg, far_cfg = os.path.join(d, "near.toml"), os.path.join(d, "far.toml")
        two_tunnel_config(gwtest.dual_cfg(), near_cfg)
        rng = __import__("random").Random(6200)
        flows = [f for f in gwtest.make_flows(200, rng, v4_net=12, v6_net=0xc0) if not f.v6][:100]
        tr = gwtest.Trace()
        for k in range(2000):
            tr.add(flows[k % len(flows)], 200)
        gwtest.write_pcap(os.path.join(d, "in.pcap"), tr.frames)
        gwtest.write_pcap(os.path.join(d, "empty.pcap"), [])
        sock = os.path.join(d, "memif.sock")
        # Near: main on CPU 0, worker on CPU 1; far: worker on CPU 0, main on CPU 1 (mains mostly sleep).
        memif_pmd(os.path.join(d, "near-pmd.toml"),
                  f"net_pcap0,rx_pcap={os.path.join(d, 'in.pcap')},infinite_rx=1,tx_pcap={os.path.join(d, 'near-in.out')}",
                  [("out-a", 1), ("out-b", 2)], "client", sock, "0@0,1@1")
        memif_pmd(os.path.join(d, "far-pmd.toml"),
                  f"net_pcap0,rx_pcap={os.path.join(d, 'empty.pcap')},tx_pcap=/dev/null",
                  [("op1", 1), ("op2", 2)], "server", sock, "0@1,1@0")
        t2.make_far_config(near_cfg, far_cfg, os.path.join(d, "far-pmd.toml"))
        mg = gwtest.ARGS.meshgate
        far_cmd = [mg, "-c", far_cfg, "--reflect", "--duration", str(SECONDS + 4), "--stats-json",
                   os.path.join(d, "far.json"), f"--eal=--file-prefix={tag}-far", "--control-name", f"{tag}-far"]
        near_cmd = [mg, "-c", near_cfg, "--pmd", os.path.join(d, "near-pmd.toml"), "--liveness", "20x3",
                    "--duration", str(SECONDS), "--stats-json", os.path.join(d, "near.json"),
                    f"--eal=--file-prefix={tag}-near", "--control-name", f"{tag}-near",
                    "--state-dir", os.path.join(d, "near-state")]
        far_cmd += ["--state-dir", os.path.join(d, "far-state")]
        for s in ("near-state", "far-state"):
            os.makedirs(os.path.join(d, s), exist_ok=True)
        cls.cmds = (far_cmd, near_cmd)
        # DPDK 22.11's net_memif sometimes faults inside its own Tx path (librte_net_memif.so, reading a ring
        # descriptor of a region no longer mapped; reproduced without meshgate by bench/e2e/e2e_fwd as the memif
        # client, ~1 run in 10-20 of 2 s, none seen in runs of 8 s and more). meshgate's fatal-signal report names
        # the module; such a run is repeated once, loudly. A fault anywhere else fails the test.
        cls.memif_crashes = []
        for attempt in range(2):
            for stale in ("near.json", "far.json", "memif.sock"):
                if os.path.exists(os.path.join(d, stale)):
                    os.unlink(os.path.join(d, stale))
            cpu0 = cpu_seconds()
            far = subprocess.Popen(far_cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            # No wait for the server's socket (an abstract one by default, invisible to os.path): the client waits
            # for its server itself (pmd start_wait_s).
            near = subprocess.run(near_cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  timeout=SECONDS + 120)
            cls.near_log, cls.near_rc = near.stdout, near.returncode
            cls.far_log = far.communicate(timeout=60)[0]
            cls.far_rc = far.returncode
            cls.foreign = foreign_share(cpu0, cpu_seconds())
            for name, text in (("near.log", cls.near_log), ("far.log", cls.far_log)):
                with open(os.path.join(d, f"{name}.{attempt}"), "w") as f:
                    f.write(text)
            for p in (f"{tag}-far", f"{tag}-near"):
                shutil.rmtree(f"/var/run/dpdk/{p}", ignore_errors=True)
            crash = [ln for ln in (cls.near_log + cls.far_log).splitlines() if "meshgate: fatal signal" in ln]
            if crash and all("librte_net_memif" in ln for ln in crash) and attempt == 0:
                cls.memif_crashes += crash
                print(f"\nWARNING: DPDK net_memif crashed ({crash[0]}); running the pair once more",
                      file=sys.stderr)
                continue
            break
        cls.near = cls.far = None
        for name in ("near", "far"):
            p = os.path.join(d, f"{name}.json")
            if os.path.exists(p):
                with open(p) as f:
                    setattr(cls, name, json.load(f))
        if cls.near and cls.far:
            sent = cls.near["outside_tx"]
            print(f"\nfull rate: other processes took {cls.foreign:.0%} of the CPU time; near forwarded {sent / cls.near['elapsed_s'] / 1e6:.2f} Mpps for "
                  f"{cls.near['elapsed_s']:.1f} s; TX queue full {cls.near['drops']['tx_full']} times; probes "
                  + ", ".join(f"{t['name']} {t['probes_out']} sent / {t['probe_replies_in']} answered / "
                              f"{t.get('probes_deferred', '?')} deferred / {t['probe_drops']} dropped"
                              for t in cls.near["tunnels"])
                  + f"; waiting for sequence reservations {cls.near['esp_out_drops']}", file=sys.stderr)

    @classmethod
    def tearDownClass(cls):
        if not getattr(gwtest.ARGS, "keep", False):
            shutil.rmtree(cls.dir, ignore_errors=True)

    def describe(self):
        return (f"near rc {self.near_rc}: {' '.join(self.cmds[1])}\n{self.near_log[-2000:]}\n"
                f"far rc {self.far_rc}: {' '.join(self.cmds[0])}\n{self.far_log[-1500:]}")

    def test_clean_exits(self):
        self.assertEqual((self.near_rc, self.far_rc), (0, 0), self.describe())
        self.assertEqual(self.near["mbufs_in_use_at_exit"], 0, self.describe())
        self.assertEqual(self.far["mbufs_in_use_at_exit"], 0, self.describe())

    def need_quiet_host(self):
        if self.foreign > FOREIGN_MAX:
            print(f"\nWARNING: other processes took {self.foreign:.0%} of the CPU time during the run (limit "
                  f"{FOREIGN_MAX:.0%}): the false-alarm check is skipped", file=sys.stderr)
            self.skipTest(f"host busy: {self.foreign:.0%} of the CPU time went to other processes")

    def test_no_false_alarm(self):
        self.assertIsNotNone(self.near, self.describe())
        self.need_quiet_host()
        self.assertEqual(self.near["liveness_events"], [], self.describe())
        for t in self.near["tunnels"]:
            self.assertEqual(t["liveness"]["state"], "up", t)
            self.assertEqual(t["liveness"]["flaps"], 0, t)

    def test_probes_kept_going_and_were_answered(self):
        self.need_quiet_host()
        el = self.near["elapsed_s"]
        for t in self.near["tunnels"]:
            # One probe every 15..20 ms (jitter); the data going out proves nothing to the near side, so every
            # interval has its probe.
            self.assertGreaterEqual(t["probes_out"], int(el * 1000 / 20 * 0.95), t)
            self.assertLessEqual(t["probes_out"], int(el * 1000 / 15) + 2, t)
            self.assertGreaterEqual(t["probe_replies_in"], t["probes_out"] - 2, t)  # in flight at the stop
        far = {t["name"]: t for t in self.far["tunnels"]}
        for n, f in TUNNELS:
            near_t = {t["name"]: t for t in self.near["tunnels"]}[n]
            self.assertGreaterEqual(far[f]["reflect_in"], near_t["probe_replies_in"], (n, far[f]))
            self.assertEqual(far[f]["reflected"], far[f]["reflect_in"], far[f])

    def test_full_rate_and_nothing_lost_between(self):
        near = {t["name"]: t for t in self.near["tunnels"]}
        far = {t["name"]: t for t in self.far["tunnels"]}
        lost = 0
        for n, f in TUNNELS:
            self.assertGreater(near[n]["packets_out"], 0, n)
            # What was still in the memif ring when near closed its port at the stop is gone with the link (at
            # most one ring, 1024 descriptors); everything before arrived and decrypted.
            gap = near[n]["packets_out"] + near[n]["probes_out"] - far[f]["packets_in"] - far[f]["reflect_in"]
            self.assertTrue(0 <= gap <= 1024, (n, gap, near[n], far[f]))
            lost += gap
        self.assertEqual(self.far["outside_rx"], self.near["outside_tx"] - lost)
        # Per port, the workers' counts: exact on both sides, though net_memif zeroes its own counters once the
        # peer leaves (near stops first, so far's driver shows 0 at its exit; its largest sampled values remain).
        for (n, f), (np_, fp) in zip(TUNNELS, (("out-a", "op1"), ("out-b", "op2"))):
            nt = near[n]
            self.assertEqual(self.near["ports"][np_]["tx_packets"], nt["packets_out"] + nt["probes_out"]
                             + nt["reflected"], (np_, self.near["ports"][np_], nt))
            gap = nt["packets_out"] + nt["probes_out"] - far[f]["packets_in"] - far[f]["reflect_in"]
            self.assertEqual(self.far["ports"][fp]["rx_packets"], self.near["ports"][np_]["tx_packets"] - gap,
                             (fp, self.far["ports"][fp]))
            self.assertGreater(self.far["ports"][fp]["ipackets"], 0, (fp, self.far["ports"][fp]))
            self.assertLessEqual(self.far["ports"][fp]["ipackets"], self.far["ports"][fp]["rx_packets"], fp)
        self.assertEqual(self.far["esp_in_drops"], 0, self.far)
        # Forwarding as fast as it could: inside RX never waited on pacing and only full TX queues dropped -- and,
        # while near's main shares its CPU with far's busy worker, packets that reached the durably reserved
        # sequence numbers before main could extend them (out_seq_unreserved: counted, never sent twice).
        dr = self.near["drops"]
        # A tunnel down on a busy host (see FOREIGN_MAX) leaves new flows without a tunnel for a while.
        self.assertEqual(sum(dr.values()) - dr["tx_full"] - (dr["no_tunnel"] if self.foreign > FOREIGN_MAX else 0),
                         0, dr)
        esp_out = collections.Counter()
        for t in near.values():
            esp_out.update({k: v for k, v in t["esp_drops"].items() if k.startswith("out_")})
        self.assertEqual(set(esp_out) - {"out_seq_unreserved"}, set(), esp_out)
        # The SA counts every packet it refused, probes included; a deferred probe is tried again, so one probe may
        # be refused several times (probe_esp_refused counts those tries). Data refused = the rest.
        probe_refused = sum(t["probe_esp_refused"] for t in near.values())
        self.assertEqual(self.near["inside_rx"], sum(t["packets_out"] for t in near.values()) + dr["tx_full"]
                         + sum(esp_out.values()) - probe_refused + dr["no_tunnel"],
                         (esp_out, probe_refused))


def main():
    import argparse
    global SECONDS
    ap = argparse.ArgumentParser()
    ap.add_argument("--meshgate", required=True)
    ap.add_argument("--source-root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    ap.add_argument("--seconds", type=float, default=SECONDS)
    ap.add_argument("--keep", action="store_true")
    a, rest = ap.parse_known_args()
    SECONDS = a.seconds
    gwtest.ARGS = argparse.Namespace(meshgate=os.path.abspath(a.meshgate), source_root=os.path.abspath(a.source_root),
                                 spread="", esp_tool="", keep=a.keep)
    prog = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
    r = prog.result
    return 0 if not (r.failures or r.errors) else 1


if __name__ == "__main__":
    sys.exit(main())
