#!/usr/bin/python3
"""meshgate under systemd's notify protocol, with a notify socket this test owns (no systemd needed).

One meshgate (configs/gateway-dual.toml on pmd_config/vdev-demo.toml, empty pcaps: no traffic) runs with
NOTIFY_SOCKET = an AF_UNIX datagram socket of this test, WATCHDOG_USEC and WATCHDOG_PID = meshgate's pid, as
systemd starts a Type=notify unit with WatchdogSec=. A thread records every datagram with the sender's pid
(SO_PASSCRED: NotifyAccess=main accepts the main pid only).

  ReadyTest     READY=1 arrives once; when it does the control block exists and answers (meshgatectl show gateway:
                this pid); it comes with STATUS=tunnels up 4/4; every message comes from meshgate's own pid.
  StatusTest    `tunnel a-1 down` -> STATUS=tunnels up 3/4, `tunnel a-1 up` -> 4/4 again; no STATUS while
                nothing changes (not one per loop).
  WatchdogTest  WATCHDOG=1 keeps coming at about WATCHDOG_USEC/2 (bounds generous: at least a third of the ideal
                count over the window, never more often than the period allows); SIGSTOP: none while the process
                is stopped; SIGCONT: they come back.
  ReloadTest    `meshgatectl reload` (the unit's ExecReload): `instance reset` of gw-a, then gw-b, each ok.
  StoppingTest  SIGTERM: STOPPING=1, after READY, and exit 0.
  EarlyStopTest SIGTERM while it is still starting (control block made, no READY yet) stops it too.

Run: /usr/bin/python3 tests/service/test_notify.py --meshgate BUILD/apps/meshgate/meshgate \
         --meshgatectl BUILD/apps/meshgatectl/meshgatectl --source-root . [--keep]
"""
import argparse
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import unittest

from notify_listener import Listener  # next to this file

ARGS = None
WATCHDOG_USEC = 400_000          # pings every 200 ms


def write_empty_pcap(path):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))


def status_of(lines):
    for ln in lines:
        if ln.startswith("STATUS="):
            return ln[len("STATUS="):]
    return None


class Scenario:
    """Runs the whole scenario once (setUpClass); the tests assert on what it recorded."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.control = f"svcnotify{os.getpid()}"
        d = os.path.join(tmp, "gw")
        os.makedirs(os.path.join(d, "out"), exist_ok=True)
        os.makedirs(os.path.join(d, "state"), exist_ok=True)
        empty = os.path.join(d, "empty.pcap")
        write_empty_pcap(empty)
        self.listener = Listener(os.path.join(tmp, "notify.sock"))
        self.ready_seen = {}
        self.listener.on_ready = self._at_ready
        env = dict(os.environ, MESHGATE_INSIDE_PCAP=empty, MESHGATE_OUT=os.path.join(d, "out"),
                   MESHGATE_OUT_A_RX=empty, MESHGATE_OUT_B_RX=empty, STATE_DIRECTORY=os.path.join(d, "state"),
                   NOTIFY_SOCKET=os.path.join(tmp, "notify.sock"), WATCHDOG_USEC=str(WATCHDOG_USEC))
        cfg = os.path.join(ARGS.source_root, "configs", "gateway-dual.toml")
        pmd = os.path.join(ARGS.source_root, "pmd_config", "vdev-demo.toml")
        gw = [ARGS.meshgate, "-c", cfg, "--pmd", pmd, "--gateway", self.control,
              f"--eal=--file-prefix=mg-svc-notify-{os.getpid()}", "--duration", "300"]
        # WATCHDOG_PID is the pid of the process that is to ping: the shell's, which exec makes meshgate's.
        self.log = open(os.path.join(d, "meshgate.out"), "w+")
        self.proc = subprocess.Popen(["/bin/sh", "-c", 'export WATCHDOG_PID=$$; exec "$@"', "sh"] + gw, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.events = {}
        try:
            self._drive()
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.listener.close()
            shutil.rmtree(f"/var/run/dpdk/mg-svc-notify-{os.getpid()}", ignore_errors=True)

    def ctl(self, *args):
        p = subprocess.run([ARGS.meshgatectl, "--gateway", self.control] + list(args), capture_output=True,
                           text=True, timeout=20)
        return p.returncode, p.stdout + p.stderr

    def _at_ready(self):
        """At READY=1, before the next datagram is read: what a unit ordered after this one would find."""
        self.ready_seen["block"] = os.path.exists(f"/dev/shm/meshgate.{self.control}")
        rc, out = self.ctl("--json", "show", "gateway")
        self.ready_seen["show_rc"] = rc
        try:
            self.ready_seen["pid"] = json.loads(out).get("pid") if rc == 0 else None
        except ValueError:
            self.ready_seen["pid"] = None

    def _drive(self):
        L = self.listener
        ready = L.wait_for(lambda ls: "READY=1" in ls, 90)
        self.events["ready"] = ready
        if ready is None:
            return
        # Quiet second: nothing changes, so no STATUS may come.
        t0 = time.monotonic()
        time.sleep(1.0)
        self.events["quiet"] = (t0, time.monotonic())
        rc, out = self.ctl("tunnel", "a-1", "down")
        self.events["down_rc"] = (rc, out)
        t_down = time.monotonic()
        self.events["status_down"] = L.wait_for(lambda ls: status_of(ls) is not None and "3/4" in status_of(ls), 15,
                                                after=ready[0])
        rc, out = self.ctl("tunnel", "a-1", "up")
        self.events["up_rc"] = (rc, out)
        self.events["status_up"] = L.wait_for(lambda ls: status_of(ls) is not None and "4/4" in status_of(ls), 15,
                                              after=t_down)
        # The unit's ExecReload: every instance reset in turn.
        self.events["reload"] = self.ctl("reload")
        # Watchdog window.
        w0 = time.monotonic()
        time.sleep(3.0)
        self.events["wd_window"] = (w0, time.monotonic())
        # Stopped: nothing may come while the process cannot run.
        os.kill(self.proc.pid, signal.SIGSTOP)
        time.sleep(0.5)              # datagrams sent just before the stop are read by now
        s0 = time.monotonic()
        time.sleep(2.0)
        s1 = time.monotonic()
        self.events["stopped"] = (s0, s1)
        os.kill(self.proc.pid, signal.SIGCONT)
        self.events["resumed"] = L.wait_for(lambda ls: "WATCHDOG=1" in ls, 15, after=s1)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.rc = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.rc = "timeout"
        self.events["stopping"] = L.wait_for(lambda ls: "STOPPING=1" in ls, 5, after=ready[0])

    def describe(self):
        self.log.seek(0)
        msgs = [(round(t - self.listener.msgs[0][0], 3), pid, ls) for t, pid, ls in self.listener.snapshot()[:40]] \
            if self.listener.msgs else []
        return f"\nmessages (first 40): {msgs}\nmeshgate output tail:\n{self.log.read()[-1500:]}"


class NotifyCase(unittest.TestCase):
    S = None

    @classmethod
    def setUpClass(cls):
        if NotifyCase.S is None:
            NotifyCase.S = Scenario(TMP)

    def ev(self, name):
        e = self.S.events.get(name)
        self.assertIsNotNone(e, f"{name}: never seen{self.S.describe()}")
        return e


class ReadyTest(NotifyCase):
    def test_ready_once_from_main_pid(self):
        self.ev("ready")
        msgs = self.S.listener.snapshot()
        self.assertEqual(sum(1 for _, _, ls in msgs if "READY=1" in ls), 1, f"READY=1 not exactly once{self.S.describe()}")
        pids = {pid for _, pid, _ in msgs}
        self.assertEqual(pids, {self.S.proc.pid}, f"senders {pids}, meshgate is {self.S.proc.pid}{self.S.describe()}")

    def test_ready_only_once_control_answers(self):
        self.ev("ready")
        seen = self.S.ready_seen
        self.assertTrue(seen.get("block"), f"no /dev/shm/meshgate.{self.S.control} at READY{self.S.describe()}")
        self.assertEqual(seen.get("show_rc"), 0, f"meshgatectl show gateway at READY: {seen}{self.S.describe()}")
        self.assertEqual(seen.get("pid"), self.S.proc.pid, f"block owner at READY: {seen}{self.S.describe()}")

    def test_ready_carries_status(self):
        ready = self.ev("ready")
        self.assertEqual(status_of(ready[2]), "tunnels up 4/4", f"READY datagram {ready[2]}{self.S.describe()}")


class StatusTest(NotifyCase):
    def test_status_follows_tunnel_down_and_up(self):
        self.assertEqual(self.ev("down_rc")[0], 0, self.S.events["down_rc"])
        self.assertEqual(status_of(self.ev("status_down")[2]), "tunnels up 3/4", self.S.describe())
        self.assertEqual(self.ev("up_rc")[0], 0, self.S.events["up_rc"])
        self.assertEqual(status_of(self.ev("status_up")[2]), "tunnels up 4/4", self.S.describe())

    def test_no_status_while_nothing_changes(self):
        q0, q1 = self.ev("quiet")
        n = sum(1 for t, _, ls in self.S.listener.snapshot() if q0 <= t < q1 and status_of(ls) is not None)
        self.assertEqual(n, 0, f"{n} STATUS messages in a second without a change{self.S.describe()}")
        w0, w1 = self.ev("wd_window")
        n = sum(1 for t, _, ls in self.S.listener.snapshot() if w0 <= t < w1 and status_of(ls) is not None)
        self.assertEqual(n, 0, f"{n} STATUS messages in the watchdog window{self.S.describe()}")


class ReloadTest(NotifyCase):
    def test_reload_resets_every_instance(self):
        rc, out = self.ev("reload")
        self.assertEqual(rc, 0, out)
        for inst in ("gw-a", "gw-b"):
            self.assertIn(f"instance {inst}: ok", out)


class WatchdogTest(NotifyCase):
    def test_cadence(self):
        w0, w1 = self.ev("wd_window")
        n = self.S.listener.count("WATCHDOG=1", w0, w1)
        period = WATCHDOG_USEC / 2 / 1e6
        ideal = (w1 - w0) / period
        self.assertGreaterEqual(n, ideal / 3, f"{n} WATCHDOG=1 in {w1 - w0:.1f} s (ideal {ideal:.0f}){self.S.describe()}")
        self.assertLessEqual(n, ideal + 2, f"{n} WATCHDOG=1 in {w1 - w0:.1f} s: more often than every {period} s"
                                           f"{self.S.describe()}")

    def test_none_while_stopped_then_back(self):
        s0, s1 = self.ev("stopped")
        n = self.S.listener.count("WATCHDOG=1", s0, s1)
        self.assertEqual(n, 0, f"{n} WATCHDOG=1 while the process was stopped{self.S.describe()}")
        self.ev("resumed")


class StoppingTest(NotifyCase):
    def test_stopping_and_clean_exit(self):
        ready, stopping = self.ev("ready"), self.ev("stopping")
        self.assertGreater(stopping[0], ready[0])
        self.assertEqual(self.S.rc, 0, f"exit {self.S.rc}{self.S.describe()}")


class EarlyStopTest(unittest.TestCase):
    """SIGTERM while meshgate is still starting (its control block made, READY not yet sent: EAL and ports being
    set up) stops it: systemd's stop of a unit that is starting must not be lost. Each try waits for the block to
    appear, sends one SIGTERM and asks the notify socket whether READY had come before it; a try where it had
    proves nothing and is repeated (up to 5)."""

    def test_sigterm_during_start(self):
        conclusive = 0
        for attempt in range(5):
            tmp = os.path.join(TMP, f"early{attempt}")
            d = os.path.join(tmp, "gw")
            os.makedirs(os.path.join(d, "out"), exist_ok=True)
            os.makedirs(os.path.join(d, "state"), exist_ok=True)
            empty = os.path.join(d, "empty.pcap")
            write_empty_pcap(empty)
            listener = Listener(os.path.join(tmp, "notify.sock"))
            control = f"svcearly{os.getpid()}x{attempt}"
            prefix = f"mg-svc-early-{os.getpid()}-{attempt}"
            env = dict(os.environ, MESHGATE_INSIDE_PCAP=empty, MESHGATE_OUT=os.path.join(d, "out"),
                       MESHGATE_OUT_A_RX=empty, MESHGATE_OUT_B_RX=empty, STATE_DIRECTORY=os.path.join(d, "state"),
                       NOTIFY_SOCKET=os.path.join(tmp, "notify.sock"))
            cmd = [ARGS.meshgate, "-c", os.path.join(ARGS.source_root, "configs", "gateway-dual.toml"),
                   "--pmd", os.path.join(ARGS.source_root, "pmd_config", "vdev-demo.toml"),
                   "--gateway", control, f"--eal=--file-prefix={prefix}", "--duration", "300"]
            with open(os.path.join(d, "meshgate.out"), "w+") as log:
                proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
                try:
                    t_end = time.monotonic() + 60
                    while not os.path.exists(f"/dev/shm/meshgate.{control}") and proc.poll() is None \
                            and time.monotonic() < t_end:
                        time.sleep(0.002)
                    proc.send_signal(signal.SIGTERM)
                    t_sig = time.monotonic()
                    ready = listener.wait_for(lambda ls: "READY=1" in ls, 0.0)
                    try:
                        rc = proc.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        rc = None
                    log.seek(0)
                    out = log.read()
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
                    listener.close()
                    shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)
            if ready is not None and ready[0] < t_sig:
                continue  # the signal came after start-up: this try says nothing about the start
            conclusive += 1
            self.assertIsNotNone(rc, "SIGTERM during start-up was lost: still running 60 s later\n" + out[-1500:])
            self.assertIn(rc, (0, 4), f"exit {rc}\n{out[-1500:]}")
            break
        self.assertGreater(conclusive, 0, "every try's SIGTERM came after READY: start-up was never hit")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--meshgate", required=True)
    ap.add_argument("--meshgatectl", required=True)
    ap.add_argument("--source-root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    ap.add_argument("--keep", action="store_true")
    ARGS, rest = ap.parse_known_args()
    TMP = tempfile.mkdtemp(prefix="mg-svc-notify-")
    try:
        prog = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
        ok = prog.result.wasSuccessful()
    finally:
        if not ARGS.keep:
            shutil.rmtree(TMP, ignore_errors=True)
        else:
            print(f"kept {TMP}")
    sys.exit(0 if ok else 1)
