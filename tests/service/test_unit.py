#!/usr/bin/python3
"""meshgate@.service as built (BUILD/systemd/meshgate@.service), checked without systemd as PID 1.

  VerifyTest    `systemd-analyze verify` of the unit as the instance meshgate@demo.service, its programs pointing
                at the build tree: exit 0 and not one line of output (verify exits 0 on a line it ignores, so
                output is a failure). The oracle is checked first: a copy with an unknown Type= must print.
  DirectiveTest what README "Install and run as a service" promises of the unit: Type=notify, NotifyAccess=main,
                WatchdogSec, Restart=on-failure, StateDirectory=meshgate, RuntimeDirectory, hardening, the
                capability bounding set, LimitMEMLOCK=infinity, After/Wants=dpdk.service, the template's
                config path /etc/meshgate/%i.toml.
  CommandTest   the unit's ExecStart runs with --check (%i = demo, the config being configs/gateway-dual.toml);
                its ExecReload is valid meshgatectl usage (with no such gateway: exit 3, not 2).

Run: /usr/bin/python3 tests/service/test_unit.py --unit BUILD/systemd/meshgate@.service \
         --meshgate BUILD/apps/meshgate/meshgate --meshgatectl BUILD/apps/meshgatectl/meshgatectl --source-root .
Exit 77 (skipped) when systemd-analyze is missing (scripts/setup.sh installs systemd).
"""
import argparse
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

from unit_file import directives, environment_file, exec_line  # next to this file

ARGS = None
TMP = None


def unit_text():
    with open(ARGS.unit) as f:
        return f.read()


def exec_argv(text, key, env=None):
    """The Exec line with $NAMEs expanded from env (systemd/demo.env, what meshgate@demo's EnvironmentFile holds,
    by default); %i is left for the caller."""
    if env is None:
        env = environment_file(os.path.join(ARGS.source_root, "systemd", "demo.env"))
    return exec_line(directives(text)[key][0], "%i", env)


def for_build_tree(text):
    """The unit with its programs' directory replaced by one that holds links to the build's programs."""
    bindir = os.path.dirname(exec_argv(text, "ExecStart")[0])
    bindir_new = os.path.join(TMP, "bin")
    os.makedirs(bindir_new, exist_ok=True)
    for name, target in (("meshgate", ARGS.meshgate), ("meshgatectl", ARGS.meshgatectl)):
        link = os.path.join(bindir_new, name)
        if not os.path.lexists(link):
            os.symlink(os.path.abspath(target), link)
    return text.replace(bindir + "/", bindir_new + "/")


def verify(text, sub):
    d = os.path.join(TMP, sub)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "meshgate@demo.service")
    with open(path, "w") as f:
        f.write(text)
    p = subprocess.run(["systemd-analyze", "verify", "--man=no", path], capture_output=True, text=True, timeout=60)
    return p.returncode, (p.stdout + p.stderr).strip()


class VerifyTest(unittest.TestCase):
    def test_oracle_reports_a_bad_line(self):
        bad = for_build_tree(unit_text()).replace("Type=notify", "Type=notfy")
        rc, out = verify(bad, "bad")
        self.assertIn("notfy", out, f"systemd-analyze verify said nothing of Type=notfy (exit {rc}): this test "
                                    "could not catch a broken unit")

    def test_verify_clean(self):
        rc, out = verify(for_build_tree(unit_text()), "good")
        self.assertEqual(rc, 0, out)
        self.assertEqual(out, "", f"systemd-analyze verify printed:\n{out}")


class DirectiveTest(unittest.TestCase):
    def test_promised_directives(self):
        d = directives(unit_text())
        want = {"Type": "notify", "NotifyAccess": "main", "Restart": "on-failure", "StateDirectory": "meshgate",
                "LimitMEMLOCK": "infinity", "NoNewPrivileges": "yes", "PrivateTmp": "yes", "ProtectHome": "yes",
                "ProtectSystem": "strict", "RestartPreventExitStatus": "2"}
        for k, v in want.items():
            self.assertEqual(d.get(k), [v], f"{k}= is {d.get(k)}, README says {v}")
        self.assertTrue(re.fullmatch(r"\d+s", d["WatchdogSec"][0]), d.get("WatchdogSec"))
        self.assertIn("meshgate", d["RuntimeDirectory"][0].split())
        self.assertIn("dpdk.service", d["After"][0].split())
        self.assertIn("dpdk.service", d["Wants"][0].split())
        caps = set(d["CapabilityBoundingSet"][0].split())
        for c in ("CAP_IPC_LOCK", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_ADMIN", "CAP_SYS_RAWIO",
                  "CAP_DAC_OVERRIDE"):
            self.assertIn(c, caps)
        argv = exec_argv(unit_text(), "ExecStart")
        self.assertEqual(os.path.basename(argv[0]), "meshgate")
        self.assertTrue(argv[argv.index("--config") + 1].endswith("/meshgate/%i.toml"), argv)


class CommandTest(unittest.TestCase):
    def test_exec_start_with_check(self):
        argv = exec_argv(for_build_tree(unit_text()), "ExecStart")
        argv = [a.replace("%i", "demo") for a in argv]
        argv[argv.index("--config") + 1] = os.path.join(ARGS.source_root, "configs", "gateway-dual.toml")
        d = os.path.join(TMP, "env")
        os.makedirs(d, exist_ok=True)
        empty = os.path.join(d, "empty.pcap")
        with open(empty, "wb") as f:
            f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        env = dict(os.environ, MESHGATE_INSIDE_PCAP=empty, MESHGATE_OUT=d, MESHGATE_OUT_A_RX=empty,
                   MESHGATE_OUT_B_RX=empty)
        p = subprocess.run(argv + ["--check"], capture_output=True, text=True, timeout=60, env=env)
        self.assertEqual(p.returncode, 0, f"{argv} --check: {p.stderr[-500:]}")
        self.assertIn("is valid", p.stdout)

    def test_exec_reload_is_valid_usage(self):
        argv = exec_argv(for_build_tree(unit_text()), "ExecReload")
        argv = [a.replace("%i", f"nosuch{os.getpid()}") for a in argv]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 3, f"{argv}: exit {p.returncode} (3: no such gateway; 2 would be a usage "
                                          f"error): {p.stdout}{p.stderr}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--unit", required=True)
    ap.add_argument("--meshgate", required=True)
    ap.add_argument("--meshgatectl", required=True)
    ap.add_argument("--source-root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    ARGS, rest = ap.parse_known_args()
    if shutil.which("systemd-analyze") is None:
        print("SKIP: systemd-analyze is missing (apt-get install systemd; scripts/setup.sh does)")
        sys.exit(77)
    TMP = tempfile.mkdtemp(prefix="mg-svc-unit-")
    try:
        prog = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    sys.exit(0 if prog.result.wasSuccessful() else 1)
