#!/usr/bin/python3
"""The Debian package: built from a copy of the tree with dpkg-buildpackage, installed on this machine, used,
purged.

  dpkg-buildpackage -b -us -uc runs in a copy (the tree stays clean) with DEB_BUILD_OPTIONS=noopt nostrip and -g0
  (the package's files and metadata are what is tested, not the optimiser: this keeps the build inside CI's
  budget); the time is printed. Then:
  ContentsTest   the four programs in /usr/bin and nothing else there (no tests or benchmarks), every
                 configs/*.toml in /etc/meshgate and every pmd_config/*.toml in /etc/meshgate/pmd_config (gateway
                 files 0640: they hold keys), meshgate@.service in /lib/systemd/system, meshgate@demo's files
                 (demo.toml, demo.env, vdev-service.toml, its capture), no charon plugin (GPL, left out); conffiles are the /etc/meshgate files; Depends (from shlibs) names DPDK's librte-* and libsystemd0.
  InstalledTest  after dpkg -i: `meshgate -c /etc/meshgate/gateway-dual.toml --check` from /usr/bin works as
                 installed (its pmd_config found at the installed relative path), says it notifies systemd;
                 `meshgatectl --help` works; the installed unit passes systemd-analyze verify.
  DemoServiceTest meshgate@demo as systemd would start it, without systemd as PID 1 (this machine has none): the
                 installed unit's ExecStart with %i = demo and the variables of its EnvironmentFile
                 (/etc/meshgate/demo.env), in /, with NOTIFY_SOCKET (a socket the test owns), WATCHDOG_USEC from
                 WatchdogSec= and STATE_DIRECTORY. It must send READY=1 with a STATUS of 4 tunnels up and
                 WATCHDOG=1; its shipped traffic (/usr/share/meshgate/demo) reaches all four tunnels, at the pace
                 demo.env sets; the unit's ExecReload answers ok and leaves one audit line per instance reset;
                 SIGTERM (systemd's stop) ends it with STOPPING=1, exit 0 and 0 mbufs in use. The unit's sandboxing
                 (ProtectSystem=, capabilities) is not exercised: only systemd applies it.
  SystemdTest    the same unit under a real systemd: /lib/systemd/systemd as PID 1 of a PID and mount namespace
                 (pid1.py: every other unit masked, /run, /tmp, /var/lib and /var/log fresh tmpfs inside), with
                 journald. `systemctl start meshgate@demo` returns with the unit active (Type=notify: READY) and
                 StatusText "tunnels up 4/4", under the unit's sandboxing; traffic flows; meshgatectl commands and
                 `systemctl reload` each leave their audit line in the journal (at notice; info lines below it),
                 which holds none of demo.toml's keys; a main process stopped with SIGSTOP is killed by the
                 watchdog (WatchdogSec) and restarted (Restart=on-failure: NRestarts 1, a new MainPID, active
                 again); `systemctl stop` ends it with exit 0. Skipped where such a namespace cannot run (no
                 root, no systemd binary).
  PurgeTest      dpkg --purge: the package is gone and none of its files remain, /etc/meshgate included;
                 /var/lib/meshgate (sequence-number records) is kept when it holds files, removed when empty.
The build-tree programs other tests use are never touched (they are run by path, not from PATH).

Skipped (77) unless root with dpkg-buildpackage present, and when a meshgate package or any of its files is
already on this machine (an operator's install is not ours to replace or purge).
Run: /usr/bin/python3 tests/service/test_package.py --source-root .
"""
import argparse
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

from notify_listener import Listener  # next to this file
import pid1
from unit_file import directives, environment_file, exec_line

ARGS = None
TMP = None
PROGRAMS = ("meshgate", "meshgatectl", "meshgate-esp", "meshgate-spread")
UNIT = "/lib/systemd/system/meshgate@.service"
STATE = "/var/lib/meshgate"
R = {}   # what the one build/install/purge run saw; the tests assert on it


def run(argv, timeout=600, env=None, cwd=None):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    return p.returncode, p.stdout, p.stderr


def dpkg(*args):
    """dpkg, retried while another dpkg or apt holds the lock (other work on this machine)."""
    t_end = time.monotonic() + 180
    while True:
        rc, out, err = run(["dpkg", *args], timeout=300)
        if rc == 0 or "lock" not in err or time.monotonic() > t_end:
            return rc, out, err
        time.sleep(2)


def status():
    rc, out, _ = run(["dpkg-query", "-W", "-f=${db:Status-Status}", "meshgate"])
    return out.strip() if rc == 0 else "not-installed"


def ours_present():
    found = [p for p in [f"/usr/bin/{n}" for n in PROGRAMS] + ["/etc/meshgate", UNIT] if os.path.lexists(p)]
    return found


def demo_service():
    """meshgate@demo started the way the installed unit says (DemoServiceTest's docstring)."""
    with open(UNIT) as f:
        d = directives(f.read())
    D = R["demo"] = {}
    env_path = d["EnvironmentFile"][0].lstrip("-").replace("%i", "demo")
    D["env_file"] = env_path
    unit_env = environment_file(env_path) if os.path.exists(env_path) else {}
    D["unit_env"] = unit_env
    argv = D["argv"] = exec_line(d["ExecStart"][0], "demo", unit_env)
    reload_argv = D["reload_argv"] = exec_line(d["ExecReload"][0], "demo", unit_env)
    wd_s = float(d["WatchdogSec"][0].rstrip("s"))
    sock = os.path.join(TMP, "notify")
    lis = Listener(sock)
    state = os.path.join(TMP, "state")
    os.makedirs(state, mode=0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHGATE_")}
    env.update(unit_env, NOTIFY_SOCKET=sock, WATCHDOG_USEC=str(int(wd_s * 1e6)), STATE_DIRECTORY=state)
    err_path = os.path.join(TMP, "demo.err")
    ctl = ["/usr/bin/meshgatectl", "--gateway", "demo"]
    with open(err_path, "w") as err:
        p = subprocess.Popen(argv, cwd="/", env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        # -O0 programs on a shared host: a generous bound (READY comes in about a second when quiet).
        ready = lis.wait_for(lambda ls: "READY=1" in ls, 120)
        D["ready"] = ready is not None and ready[1] == p.pid
        D["ready_lines"] = ready[2] if ready else None
        D["tunnels"] = []
        for _ in range(2):
            time.sleep(3)
            rc, out, e = run(ctl + ["show", "tunnels", "-j"], timeout=60)
            D["tunnels"].append({t["name"]: t["packets_out"] for t in json.loads(out)} if rc == 0 else e)
            D.setdefault("t_tunnels", []).append(time.monotonic())
        D["reload"] = run(reload_argv, timeout=120)
        D["watchdog"] = sum(1 for _, pid, ls in lis.snapshot() if pid == p.pid and "WATCHDOG=1" in ls)
        t_stop = time.monotonic()
        p.send_signal(signal.SIGTERM)
        D["rc"] = p.wait(timeout=60)
        D["stopping"] = any(t >= t_stop and "STOPPING=1" in ls for t, _, ls in lis.snapshot())
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        lis.close()
    with open(err_path) as f:
        D["stderr"] = f.read()


def systemd_pid1():
    """meshgate@demo under a real systemd (SystemdTest's docstring)."""
    why = pid1.available()
    P = R["pid1"] = {"skip": why}
    if why:
        return
    ctl = ["/usr/bin/meshgatectl", "--gateway", "demo"]
    unit = "meshgate@demo.service"
    with pid1.Pid1(keep=["meshgate@.service"]) as sd:
        P["journald"] = sd.systemctl("start", "systemd-journald.socket", "systemd-journald.service", timeout=120)
        P["start"] = sd.systemctl("start", unit, timeout=240)
        P["started"] = sd.show(unit, "ActiveState", "SubState", "StatusText", "MainPID", "NRestarts")
        P["tunnels"] = []
        for _ in range(2):
            time.sleep(3)
            rc, out, err = sd.run(ctl + ["show", "tunnels", "-j"])   # in the namespace: its pids are the block's
            P["tunnels"].append({t["name"]: t["packets_out"] for t in json.loads(out)} if rc == 0 else err)
        P["maintenance"] = sd.run(ctl + ["instance", "gw-a", "maintenance"])
        P["up"] = sd.run(ctl + ["instance", "gw-a", "up"])
        P["reload"] = sd.systemctl("reload", unit, timeout=120)
        main1 = P["started"].get("MainPID")
        P["sigstop"] = sd.systemctl("kill", "--kill-whom=main", "-s", "SIGSTOP", unit)
        # WatchdogSec=10s, then the kill, RestartSec=2s and a new start: a generous bound on a busy host.
        t_end = time.monotonic() + 120
        while time.monotonic() < t_end:
            st = sd.show(unit, "ActiveState", "SubState", "MainPID", "NRestarts", "StatusText")
            if st.get("NRestarts") == "1" and st.get("ActiveState") == "active" and st.get("MainPID") not in ("0", main1):
                break
            time.sleep(1)
        P["after_watchdog"] = st
        P["main1"] = main1
        P["stop"] = sd.systemctl("stop", unit, timeout=120)
        P["stopped"] = sd.show(unit, "ActiveState", "Result", "ExecMainStatus", "ExecMainCode")
        P["journal"] = sd.journal(unit)
        P["journal_notice"] = sd.journal(unit, "-p", "notice")   # the priorities meshgate gave its lines


def copy_tree(src, dst):
    """The source tree without build directories, git's data or fuzzing output (top level), nor __pycache__."""
    def skip(d, names):
        top = os.path.abspath(d) == src
        return [n for n in names if n == "__pycache__" or n == ".git"
                or (top and n.startswith(("build", "obj-", "fuzz-corpus")))]
    shutil.copytree(src, dst, ignore=skip, symlinks=True)


def scenario():
    src = os.path.join(TMP, "meshgate")
    copy_tree(ARGS.source_root, src)
    # The package's files and metadata are under test, not the optimiser or the debug symbols: -O0, -g0 and no
    # dbgsym package keep the build inside CI's budget.
    env = dict(os.environ, DEB_BUILD_OPTIONS="noopt nocheck nostrip parallel=2", DEB_CFLAGS_APPEND="-g0",
               DEB_CXXFLAGS_APPEND="-g0")
    t0 = time.monotonic()
    rc, out, err = run(["dpkg-buildpackage", "-b", "-us", "-uc"], timeout=1200, env=env, cwd=src)
    R["build_s"] = time.monotonic() - t0
    print(f"dpkg-buildpackage: {R['build_s']:.0f} s", flush=True)
    R["build"] = (rc, (out + err)[-3000:])
    debs = glob.glob(os.path.join(TMP, "meshgate_*.deb"))
    if rc != 0 or len(debs) != 1:
        return
    deb = R["deb"] = debs[0]
    _, out, _ = run(["dpkg-deb", "-c", deb])
    R["files"] = {ln.split(None, 5)[5].lstrip(".").split(" -> ")[0]: ln.split()[0] for ln in out.splitlines()}
    _, R["depends"], _ = run(["dpkg-deb", "-f", deb, "Depends"])
    ctl = os.path.join(TMP, "control")
    run(["dpkg-deb", "-e", deb, ctl])
    cf = os.path.join(ctl, "conffiles")
    R["conffiles"] = []
    if os.path.exists(cf):
        with open(cf) as f:
            R["conffiles"] = f.read().split()

    state_before = sorted(os.listdir(STATE)) if os.path.isdir(STATE) else None
    R["state_before"] = state_before
    R["install"] = dpkg("-i", deb)
    if R["install"][0] != 0:
        return
    try:
        R["status_installed"] = status()
        d = os.path.join(TMP, "env")
        os.makedirs(d, exist_ok=True)
        empty = os.path.join(d, "empty.pcap")
        with open(empty, "wb") as f:
            f.write(bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000"))
        env = dict(os.environ, MESHGATE_INSIDE_PCAP=empty, MESHGATE_OUT=d, MESHGATE_OUT_A_RX=empty,
                   MESHGATE_OUT_B_RX=empty)
        R["check"] = run(["/usr/bin/meshgate", "-c", "/etc/meshgate/gateway-dual.toml", "--check"], env=env,
                         timeout=60)
        R["check_noenv"] = run(["/usr/bin/meshgate", "-c", "/etc/meshgate/gateway-dual.toml", "--check"],
                               timeout=60, env={k: v for k, v in os.environ.items() if not k.startswith("MESHGATE_")})
        R["ctl_help"] = run(["/usr/bin/meshgatectl", "--help"], timeout=60)
        R["modes"] = {p: oct(os.stat(p).st_mode & 0o777) for p in glob.glob("/etc/meshgate/*.toml")}
        vd = os.path.join(TMP, "verify")
        os.makedirs(vd)
        shutil.copy(UNIT, os.path.join(vd, "meshgate@demo.service"))
        R["verify"] = run(["systemd-analyze", "verify", "--man=no", os.path.join(vd, "meshgate@demo.service")])
        demo_service()
        systemd_pid1()
        # What systemd's StateDirectory= would make on the first start, when this machine has none.
        R["made_state"] = state_before is None
        if R["made_state"]:
            os.makedirs(STATE, mode=0o700)
    finally:
        R["purge"] = dpkg("--purge", "meshgate")
    R["status_after"] = status()
    R["left"] = [f for f in R["files"] if f.rstrip("/") and not f.endswith("/") and os.path.lexists(f)]
    R["etc_left"] = os.path.lexists("/etc/meshgate")
    R["state_after"] = sorted(os.listdir(STATE)) if os.path.isdir(STATE) else None


class PackageCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not R:
            try:
                scenario()
            except Exception as e:  # noqa: BLE001 - reported by every test
                R["error"] = repr(e)

    def need(self, key):
        self.assertNotIn("error", R, R.get("error"))
        self.assertEqual(R["build"][0], 0, f"dpkg-buildpackage failed:\n{R['build'][1]}")
        self.assertIn(key, R, f"{key}: not reached (install: {R.get('install')})")
        return R[key]


class ContentsTest(PackageCase):
    def test_programs_and_nothing_else_in_bin(self):
        files = self.need("files")
        bins = {f for f in files if f.startswith("/usr/bin/") and not f.endswith("/")}
        self.assertEqual(bins, {f"/usr/bin/{n}" for n in PROGRAMS})

    def test_configs_pmd_configs_unit(self):
        files = self.need("files")
        for f in glob.glob(os.path.join(ARGS.source_root, "configs", "*.toml")):
            p = "/etc/meshgate/" + os.path.basename(f)
            self.assertIn(p, files)
            self.assertEqual(files[p], "-rw-r-----", f"{p}: holds keys, must not be readable by others")
        for f in glob.glob(os.path.join(ARGS.source_root, "pmd_config", "*.toml")):
            self.assertIn("/etc/meshgate/pmd_config/" + os.path.basename(f), files)
        self.assertIn(UNIT, files)
        for f in ("/etc/meshgate/demo.toml", "/etc/meshgate/demo.env", "/etc/meshgate/pmd_config/vdev-service.toml",
                  "/usr/share/meshgate/demo/inside.pcap"):
            self.assertIn(f, files, "meshgate@demo's files")
        self.assertIn("/usr/share/doc/meshgate/README.md", files, "the unit's Documentation=")
        self.assertFalse([f for f in files if "strongswan" in f or f.endswith(".so")], "the GPL charon plugin is "
                                                                                      "not part of the package")

    def test_conffiles_and_depends(self):
        conffiles = self.need("conffiles")
        self.assertIn("/etc/meshgate/gateway-dual.toml", conffiles)
        self.assertIn("/etc/meshgate/pmd_config/vdev-demo.toml", conffiles)
        dep = self.need("depends")
        self.assertIn("librte-", dep)   # DPDK's libraries, one package each
        self.assertIn("libsystemd0", dep)


class InstalledTest(PackageCase):
    def test_check_from_installed_paths(self):
        self.assertEqual(self.need("install")[0], 0, R["install"])
        self.assertEqual(R["status_installed"], "installed")
        rc, out, err = R["check"]
        self.assertEqual(rc, 0, f"/usr/bin/meshgate -c /etc/meshgate/gateway-dual.toml --check: {err[-600:]}")
        self.assertIn("/etc/meshgate/pmd_config/vdev-demo.toml", out)
        self.assertIn("systemd: sd_notify through libsystemd", out)
        self.assertIn("is valid", out)
        rc, out, err = R["check_noenv"]
        self.assertEqual(rc, 0, f"without MESHGATE_*: {err[-600:]}")

    def test_modes_ctl_and_unit(self):
        self.need("install")
        self.assertEqual(R["ctl_help"][0], 0, R["ctl_help"])
        for p, m in R["modes"].items():
            self.assertEqual(m, "0o640", p)
        rc, out, err = R["verify"]
        self.assertEqual((rc, (out + err).strip()), (0, ""), "systemd-analyze verify of the installed unit")


class DemoServiceTest(PackageCase):
    def demo(self):
        self.need("install")
        self.assertIn("demo", R, "meshgate@demo was not started")
        self.assertIn("rc", R["demo"], f"meshgate@demo did not run to its stop: {R['demo']}")
        return R["demo"]

    def test_started_as_the_unit_says(self):
        D = self.demo()
        self.assertEqual(D["argv"][:5], ["/usr/bin/meshgate", "--config", "/etc/meshgate/demo.toml", "--gateway",
                                         "demo"])
        self.assertTrue(D["ready"], f"no READY=1 from the main pid: {D['stderr'][-1500:]}")
        self.assertIn("STATUS=tunnels up 4/4", D["ready_lines"])
        self.assertGreater(D["watchdog"], 0, "no WATCHDOG=1")

    def test_shipped_traffic_reaches_every_tunnel(self):
        D = self.demo()
        first, second = D["tunnels"]
        self.assertIsInstance(first, dict, first)
        self.assertIsInstance(second, dict, second)
        self.assertEqual(sorted(first), ["a-1", "a-2", "b-1", "b-2"])
        for t in first:
            self.assertGreater(second[t], first[t], f"tunnel {t} carried nothing between two looks: {D['tunnels']}")
        # demo.env's pace bounds the total rate (the shipped file sets it; 20,000 packets/s).
        pace = re.search(r"--pace-pps[= ](\d+)", D["unit_env"].get("MESHGATE_OPTS", ""))
        self.assertIsNotNone(pace, f"{D['env_file']}: {D['unit_env']}")
        dt = D["t_tunnels"][1] - D["t_tunnels"][0]
        sent = sum(second.values()) - sum(first.values())
        self.assertLessEqual(sent, int(pace.group(1)) * (dt + 2), "more than the pace allows")

    def test_reload_and_audit(self):
        D = self.demo()
        rc, out, err = D["reload"]
        self.assertEqual(rc, 0, f"{D['reload_argv']}: {out} {err}")
        for inst in ("gw-a", "gw-b"):
            self.assertIn(f"instance {inst}: ok", out)
            lines = [ln for ln in D["stderr"].splitlines() if "audit:" in ln and f'cmd="instance {inst} reset"' in ln]
            self.assertEqual(len(lines), 1, f"audit lines for the reset of {inst}: {lines}")
            self.assertIn("result=ok", lines[0])

    def test_stop(self):
        D = self.demo()
        self.assertTrue(D["stopping"], "no STOPPING=1 after SIGTERM")
        self.assertEqual(D["rc"], 0, D["stderr"][-1500:])
        self.assertIn("mbufs in use after closing ports: 0", D["stderr"])


class SystemdTest(PackageCase):
    def pid1(self):
        self.need("install")
        P = R.get("pid1")
        self.assertIsNotNone(P, "the systemd run was not reached")
        if P["skip"]:
            self.skipTest(P["skip"])
        self.assertIn("journal", P, f"the systemd run stopped early: {P}")
        return P

    def test_start_ready_status(self):
        P = self.pid1()
        self.assertEqual(P["journald"][0], 0, P["journald"])
        self.assertEqual(P["start"][0], 0, f"systemctl start: {P['start']}\n{P['journal'][-2000:]}")
        st = P["started"]
        self.assertEqual((st["ActiveState"], st["SubState"]), ("active", "running"), st)
        self.assertEqual(st["StatusText"], "tunnels up 4/4")
        self.assertEqual(st["NRestarts"], "0")

    def test_traffic_commands_reload_audit(self):
        P = self.pid1()
        first, second = P["tunnels"]
        self.assertIsInstance(first, dict, first)
        self.assertIsInstance(second, dict, second)
        self.assertEqual(sorted(first), ["a-1", "a-2", "b-1", "b-2"])
        self.assertTrue(all(second[t] > first[t] for t in first), P["tunnels"])
        for k in ("maintenance", "up", "reload"):
            self.assertEqual(P[k][0], 0, f"{k}: {P[k]}")
        audit = [ln for ln in P["journal"].splitlines() if ln.startswith("audit: uid=")]
        for cmd in ("instance gw-a maintenance", "instance gw-a up", "instance gw-a reset", "instance gw-b reset"):
            lines = [ln for ln in audit if f'cmd="{cmd}' in ln]
            self.assertEqual(len(lines), 1, f"{cmd}: {audit}")
            self.assertIn("comm=meshgatectl", lines[0])
            self.assertIn("result=ok", lines[0])

    def test_journal_priorities(self):
        P = self.pid1()
        notice = P["journal_notice"]
        self.assertIn('cmd="instance gw-a maintenance"', notice, "audit lines are notices")
        self.assertIn("EAL: Detected CPU lcores", P["journal"])
        self.assertNotIn("EAL: Detected CPU lcores", notice, "an info line came out at notice or above")

    def test_no_key_in_the_journal(self):
        P = self.pid1()
        with open(os.path.join(ARGS.source_root, "configs", "gateway-dual.toml")) as f:
            keys = re.findall(r'^key = "([0-9a-f]+)"', f.read(), re.M)
        self.assertEqual(len(keys), 8)
        journal = P["journal"].lower()
        self.assertGreater(len(journal), 1000)
        for k in keys:
            for w in range(0, len(k) - 16, 8):
                self.assertNotIn(k[w:w + 16], journal)

    def test_watchdog_restarts_a_stuck_main(self):
        P = self.pid1()
        self.assertEqual(P["sigstop"][0], 0, P["sigstop"])
        st = P["after_watchdog"]
        self.assertEqual(st.get("NRestarts"), "1", f"{st}\n{P['journal'][-2000:]}")
        self.assertEqual(st.get("ActiveState"), "active", st)
        self.assertNotEqual(st.get("MainPID"), P["main1"])
        self.assertIn("Watchdog timeout", P["journal"])

    def test_stop(self):
        P = self.pid1()
        self.assertEqual(P["stop"][0], 0, P["stop"])
        st = P["stopped"]
        self.assertEqual((st["ActiveState"], st["Result"], st["ExecMainStatus"]), ("inactive", "success", "0"), st)
        self.assertIn("mbufs in use after closing ports: 0", P["journal"])


class PurgeTest(PackageCase):
    def test_nothing_left(self):
        self.assertEqual(self.need("purge")[0], 0, R["purge"])
        self.assertEqual(R["status_after"], "not-installed")
        self.assertEqual(R["left"], [], "files of the package left after --purge")
        self.assertFalse(R["etc_left"], "/etc/meshgate left after --purge")

    def test_state_dir(self):
        self.need("purge")
        if R["made_state"]:
            self.assertIsNone(R["state_after"], "an empty /var/lib/meshgate is removed by --purge")
        else:
            self.assertEqual(R["state_after"], R["state_before"], "sequence-number records must survive --purge")
            self.assertIn("kept /var/lib/meshgate", R["purge"][2])


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--source-root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    ARGS, rest = ap.parse_known_args()
    ARGS.source_root = os.path.abspath(ARGS.source_root)
    if os.geteuid() != 0 or shutil.which("dpkg-buildpackage") is None:
        print("SKIP: needs root and dpkg-buildpackage (scripts/setup.sh installs dpkg-dev and debhelper)")
        sys.exit(77)
    if status() != "not-installed" or ours_present():
        print(f"SKIP: a meshgate package ({status()}) or its files ({ours_present()}) are already on this machine;"
              " not replacing or purging them")
        sys.exit(77)
    TMP = tempfile.mkdtemp(prefix="mg-svc-deb-")
    try:
        prog = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
    finally:
        if status() != "not-installed":   # never leave it installed, whatever failed
            dpkg("--purge", "meshgate")
        shutil.rmtree(TMP, ignore_errors=True)
    sys.exit(0 if prog.result.wasSuccessful() else 1)
