#!/usr/bin/python3
"""meshgate --check on this host: the hugepage verdict and the systemd line.

  NoHugeTest     pmd_config/vdev-demo.toml (--no-huge): exit 0, "hugepages: not used".
  HugeTest       the same pmd_config without --no-huge (-m 64): this test reads /proc/mounts and
                 /sys/kernel/mm/hugepages itself; no hugetlbfs mounted or under 64 MB free -> exit 2, the message
                 names the fix (dpdk-hugepages.py --setup 2G, NR_2M_PAGES); else exit 0 with "hugepages: needed".
                 Also pmd_config/nic-mlx5.toml (--socket-mem 2048) with its MESHGATE_PCI_* variables unset.
  SystemdTest    --check says whether this build notifies systemd (libsystemd found at build time or not).

Run: /usr/bin/python3 tests/service/test_check.py --meshgate BUILD/apps/meshgate/meshgate --source-root .
"""
import argparse
import glob
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

ARGS = None
TMP = None


def env_for_demo():
    d = os.path.join(TMP, "env")
    os.makedirs(d, exist_ok=True)
    empty = os.path.join(d, "empty.pcap")
    with open(empty, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    return dict(os.environ, MESHGATE_INSIDE_PCAP=empty, MESHGATE_OUT=d, MESHGATE_OUT_A_RX=empty,
                MESHGATE_OUT_B_RX=empty)


def check(pmd):
    cfg = os.path.join(ARGS.source_root, "configs", "gateway-dual.toml")
    p = subprocess.run([ARGS.meshgate, "-c", cfg, "--pmd", pmd, "--check"], capture_output=True, text=True,
                       timeout=60, env=env_for_demo())
    return p.returncode, p.stdout, p.stderr


def host_free_mb():
    """(hugetlbfs mounted, MB of free hugepages), read independently of lib/config."""
    mounted = False
    with open("/proc/mounts") as f:
        mounted = any(len(ln.split()) > 2 and ln.split()[2] == "hugetlbfs" for ln in f)
    kb = 0
    for d in glob.glob("/sys/kernel/mm/hugepages/hugepages-*kB"):
        size = int(os.path.basename(d)[len("hugepages-"):-2])
        with open(os.path.join(d, "free_hugepages")) as f:
            kb += int(f.read()) * size
    return mounted, kb // 1024


class NoHugeTest(unittest.TestCase):
    def test_demo_needs_no_hugepages(self):
        rc, out, err = check(os.path.join(ARGS.source_root, "pmd_config", "vdev-demo.toml"))
        self.assertEqual(rc, 0, f"exit {rc}: {err[-500:]}")
        self.assertTrue("hugepages: not used (--no-huge)" in out, out[-400:])
        self.assertTrue("is valid" in out, out[-400:])


class HugeTest(unittest.TestCase):
    def test_verdict_matches_host(self):
        with open(os.path.join(ARGS.source_root, "pmd_config", "vdev-demo.toml")) as f:
            text = f.read()
        old = '"--no-huge", "-m", "1024"'
        self.assertIn(old, text, "vdev-demo.toml's [eal] args changed; update this test")
        pmd = os.path.join(TMP, "huge.toml")
        with open(pmd, "w") as f:
            f.write(text.replace(old, '"-m", "64"'))
        rc, out, err = check(pmd)
        mounted, free = host_free_mb()
        if mounted and free >= 64:
            self.assertEqual(rc, 0, f"host has {free} MB free on hugetlbfs, --check exit {rc}: {err[-500:]}")
            self.assertTrue("hugepages: needed (64 MB)" in out, out[-400:])
        else:
            self.assertEqual(rc, 2, f"host: hugetlbfs mounted {mounted}, {free} MB free; --check exit {rc} "
                                    f"(expected 2)\n{out[-300:]}{err[-300:]}")
            self.assertIn("dpdk-hugepages.py --setup 2G", err)
            self.assertIn("NR_2M_PAGES", err)
            self.assertIn(pmd, err, "the message names the pmd_config")
            self.assertNotIn("is valid", out)


    def test_nic_config_without_its_variables(self):
        """pmd_config/nic-mlx5.toml (--socket-mem 2048) with MESHGATE_PCI_* unset, as an operator checks it first."""
        cfg = os.path.join(ARGS.source_root, "configs", "gateway-dual.toml")
        pmd = os.path.join(ARGS.source_root, "pmd_config", "nic-mlx5.toml")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESHGATE_")}
        p = subprocess.run([ARGS.meshgate, "-c", cfg, "--pmd", pmd, "--check"], capture_output=True, text=True,
                           timeout=60, env=env)
        mounted, free = host_free_mb()
        if mounted and free >= 2048:
            self.assertEqual(p.returncode, 0, p.stderr[-500:])
            self.assertTrue("hugepages: needed (2048 MB)" in p.stdout, p.stdout[-400:])
        else:
            self.assertEqual(p.returncode, 2, f"host: hugetlbfs mounted {mounted}, {free} MB free; exit "
                                              f"{p.returncode}\n{p.stderr[-500:]}")
            self.assertIn("dpdk-hugepages.py --setup 2G", p.stderr)
            self.assertIn("MESHGATE_PCI_INSIDE", p.stderr, "the unset variables are still noted")


class SystemdTest(unittest.TestCase):
    def test_says_whether_it_notifies(self):
        rc, out, err = check(os.path.join(ARGS.source_root, "pmd_config", "vdev-demo.toml"))
        self.assertEqual(rc, 0, err[-300:])
        line = [ln for ln in out.splitlines() if ln.startswith("systemd: ")]
        self.assertEqual(len(line), 1, out[-800:])
        if ARGS.expect_notify:
            self.assertIn("sd_notify through libsystemd", line[0])


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--meshgate", required=True)
    ap.add_argument("--source-root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    ap.add_argument("--expect-notify", action="store_true", help="the build found libsystemd")
    ARGS, rest = ap.parse_known_args()
    TMP = tempfile.mkdtemp(prefix="mg-svc-check-")
    try:
        prog = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    sys.exit(0 if prog.result.wasSuccessful() else 1)
