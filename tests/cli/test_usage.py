#!/usr/bin/python3
"""Usage errors of meshgate and meshgate-esp: exit 2 with a message naming what is wrong. Numbers out of range are
usage errors (a negative --duration used to mean "forever", a negative --pace-pps "unlimited"); a bad
--control-name is a usage error, not a runtime failure; an EAL failure says why, never "Success" (rte_errno unset);
another user's file at the control block's name is named (owner, mode), not replaced.
(meshgatectl's and meshgate-spread's exit codes are tested with their other tests: tests/ctrl, tests/flow.)

Starts no gateway that uses shared names: --check runs, and for the EAL case two data planes with --no-control and
a file prefix of their own.
Run: /usr/bin/python3 tests/cli/test_usage.py --meshgate M --esp-tool E --source-root DIR
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

ARGS = None


def run(cmd, timeout=60, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw)


class Meshgate(unittest.TestCase):
    def cfg(self):
        return os.path.join(ARGS.source_root, "configs", "gateway-dual.toml")

    def check(self, *extra):
        return run([ARGS.meshgate, "-c", self.cfg(), "--check", *extra])

    def test_numbers_out_of_range_are_usage_errors(self):
        for opt, val in (("--duration", "-5"), ("--duration", "0"), ("--pace-pps", "-1"), ("--pace-pps", "0"),
                         ("--pace-outside-pps", "-1"), ("--stats-interval", "-2"), ("--exit-when-idle-ms", "-1"),
                         ("--exit-when-idle-ms", "0"), ("--liveness-hold-down-ms", "-1"), ("--pace-pps", "1e20")):
            with self.subTest(opt=opt, val=val):
                p = self.check(f"{opt}={val}")
                self.assertEqual(p.returncode, 2, p.stdout[-300:] + p.stderr)
                self.assertIn(opt, p.stderr)
        p = self.check("--duration", "0.5", "--pace-pps", "1000", "--pace-outside-pps", "1", "--stats-interval",
                       "0.1", "--exit-when-idle-ms", "1")
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_bad_control_name_is_a_usage_error(self):
        for name in ("bad/x", "", "x" * 33, "../etc"):
            with self.subTest(name=name):
                p = self.check(f"--control-name={name}")
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertIn("--control-name", p.stderr)
        self.assertEqual(self.check("--control-name", "ok-name_1").returncode, 0)

    @staticmethod
    def null_pmd(d, prefix):
        """A pmd_config of null ports with an EAL file prefix of our own (no clash with other tests)."""
        pmd = os.path.join(d, "pmd.toml")
        with open(pmd, "w") as f:
            f.write(f'[eal]\nargs = ["--no-huge", "-m", "256", "--no-pci", "-l", "0-1", "--file-prefix={prefix}"]\n'
                    '\n[workers]\nlcores = [1]\n')
            for k, name in enumerate(("inside", "out-a", "out-b")):
                f.write(f'\n[[port]]\nname = "{name}"\ndevargs = "net_null{k}"\n')
        return pmd

    def test_another_users_control_block_is_named_not_replaced(self):
        # A local user's file at the control block's name: before, taken for a stale block of ours, deleted and
        # replaced (or, with a live pid in it, reported as "a running gateway"). Now: refused, owner and mode named.
        if os.geteuid() != 0:
            self.skipTest("needs root to give a file to another user")
        name = f"mgcli-{os.getpid()}"
        path = f"/dev/shm/meshgate.{name}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, bytes(64))
            os.fchown(fd, 65534, 65534)
            os.fchmod(fd, 0o644)
            os.close(fd)
            with tempfile.TemporaryDirectory(prefix="mg-cli-") as d:
                p = run([ARGS.meshgate, "-c", self.cfg(), "--pmd", self.null_pmd(d, f"mgcli{os.getpid()}b"),
                         "--control-name", name, "--duration", "1", "-q"])
            shutil.rmtree(f"/var/run/dpdk/mgcli{os.getpid()}b", ignore_errors=True)   # if it got as far as the EAL
            self.assertEqual(p.returncode, 1, p.stderr)
            for want in (path, "owner uid 65534", "mode 0644"):
                self.assertIn(want, p.stderr)
            st = os.stat(path)
            self.assertEqual((st.st_uid, st.st_mode & 0o7777), (65534, 0o644), "the file was replaced")
        finally:
            if os.path.exists(path):
                os.unlink(path)

    def test_eal_failure_says_why(self):
        # A second data plane with the file prefix of a running one: DPDK fails "Cannot init config" without
        # setting rte_errno, which used to be printed as "EAL init failed: Success".
        prefix = f"mgcli{os.getpid()}"
        with tempfile.TemporaryDirectory(prefix="mg-cli-") as d:
            pmd = self.null_pmd(d, prefix)
            cmd = [ARGS.meshgate, "-c", self.cfg(), "--pmd", pmd, "--no-control", "-q"]
            first = subprocess.Popen(cmd + ["--duration", "60"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
            try:
                # The primary holds its config lock from early in its EAL init to its exit.
                lock = f"/var/run/dpdk/{prefix}/config"
                deadline = time.monotonic() + 30
                while not os.path.exists(lock) and first.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.05)
                self.assertTrue(os.path.exists(lock), f"the first data plane did not start: {first.poll()}")
                time.sleep(0.5)
                p = run(cmd + ["--duration", "1"])
                self.assertEqual(p.returncode, 3, p.stderr)
                line = [ln for ln in p.stderr.splitlines() if ln.startswith("meshgate:")]
                self.assertTrue(line, p.stderr)
                self.assertIn("EAL init failed", line[-1])
                self.assertNotIn("Success", line[-1])
                self.assertIn("file-prefix", line[-1])
            finally:
                first.terminate()
                first.communicate(timeout=60)
                shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)   # our own EAL runtime dir


class MeshgateEsp(unittest.TestCase):
    def test_numbers_out_of_range_are_usage_errors(self):
        for val in ("0", "-1", "18446744073709551616", "x"):
            with self.subTest(val=val):
                p = run([ARGS.esp_tool, "encrypt", "--sa", "spi=0x1001", "--start-seq", val, "in.pcap", "out.pcap"])
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertIn("--start-seq", p.stderr)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--meshgate", required=True)
    ap.add_argument("--esp-tool", required=True)
    ap.add_argument("--source-root", required=True)
    ARGS, rest = ap.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
