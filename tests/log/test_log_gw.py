#!/usr/bin/python3
"""Logs and audit of a whole gateway (issue 12; README "Logs and audit").

Run 1: configs/gateway-dual.toml copied with two of its keys moved into key files (raw bytes, hex text), liveness
in monitor mode without probes (each tunnel gets one verdict: nobody sends it ESP), an --event, --stats-interval,
--stats-json and `--eal=--log-level=meshgate.*:debug`; meshgatectl sends a list of commands (state, weight, drain,
a target out of range, maintenance, a refused and a good instance reset with a new key, mode, clear, ping).
  - no key of the config (nor the new one) appears in stdout, stderr or the stats JSON: raw, hex lower and upper,
    ':'-separated, or any 8-byte window of any of these;
  - one audit line per command, in order, with meshgatectl's uid and pid, comm, the command as meshgatectl spells
    it, the result and generation meshgatectl got; the event, each verdict and each SA change once;
  - from the first line meshgate's formatter wrote, every stderr line has an ISO-8601 UTC timestamp within the run
    and a level; debug lines are there (meshgate.*:debug).
Run 2: stderr is "journald's" (JOURNAL_STREAM names it) and `--eal=--log-level=meshgate.ctrl:warning`: `<N>`
prefixes and no timestamps; the ctrl info line is gone, the audit line is not.
"""
import argparse
import datetime
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import unittest

ARGS = None
TMP = None
CTL_TIMEOUT_MS = "20000"
PLAIN = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z (EMERG|ALERT|CRIT|ERROR|WARNING|NOTICE|INFO|DEBUG) ")
JOURNAL = re.compile(r"^<([0-7])>")


def write_empty_pcap(path):
    with open(path, "wb") as f:
        f.write(bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000"))


def wait_for(cond, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Gateway:
    """One meshgate on the vdev demo pmd (empty pcaps), stdout and stderr in files of their own."""

    def __init__(self, tag, config, extra, env_extra=None, journald=False):
        self.dir = os.path.join(TMP, tag)
        os.makedirs(os.path.join(self.dir, "out"), exist_ok=True)
        os.makedirs(os.path.join(self.dir, "state"), exist_ok=True)
        empty = os.path.join(self.dir, "empty.pcap")
        write_empty_pcap(empty)
        self.name = f"log-{tag}-{os.getpid()}"
        self.stats = os.path.join(self.dir, "stats.json")
        self.out_path, self.err_path = os.path.join(self.dir, "stdout"), os.path.join(self.dir, "stderr")
        env = dict(os.environ, MESHGATE_INSIDE_PCAP=empty, MESHGATE_OUT=os.path.join(self.dir, "out"),
                   MESHGATE_OUT_A_RX=empty, MESHGATE_OUT_B_RX=empty)
        env.pop("JOURNAL_STREAM", None)
        self.out_f, self.err_f = open(self.out_path, "wb"), open(self.err_path, "wb")
        if journald:  # what systemd sets for a service whose stderr is the journal: that stream's device:inode
            st = os.fstat(self.err_f.fileno())
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        env.update(env_extra or {})
        cmd = [ARGS.meshgate, "-c", config, "--pmd", os.path.join(ARGS.source_root, "pmd_config", "vdev-demo.toml"),
               "--control-name", self.name, f"--eal=--file-prefix={self.name}", "--state-dir",
               os.path.join(self.dir, "state"), "--stats-json", self.stats, "--duration", "120"] + extra
        self.t0 = datetime.datetime.now(datetime.timezone.utc)
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.out_f, stderr=self.err_f)
        self.calls = []  # (argv, pid, rc, reply json or None)

    def err_text(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode(errors="replace")

    def ctl(self, *args):
        """Runs meshgatectl --json; returns (pid, rc, reply)."""
        import json
        argv = [ARGS.meshgatectl, "--gateway", self.name, "--timeout-ms", CTL_TIMEOUT_MS, "--json"] + list(args)
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = p.communicate(timeout=60)
        reply = None
        if out.strip().startswith("{"):
            reply = json.loads(out)
        self.calls.append((list(args), p.pid, p.returncode, reply, err))
        return p.pid, p.returncode, reply

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        rc = self.proc.wait(timeout=120)
        self.t1 = datetime.datetime.now(datetime.timezone.utc)
        self.out_f.close()
        self.err_f.close()
        return rc

    def outputs(self):
        """Every byte this run left for anyone to read: stdout, stderr, the stats JSON."""
        res = {}
        for label, path in (("stdout", self.out_path), ("stderr", self.err_path), ("stats-json", self.stats)):
            if os.path.exists(path):
                with open(path, "rb") as f:
                    res[label] = f.read()
        return res


def key_forms(key):
    """Every spelling of every 8-byte window of a key (the whole key is made of them)."""
    forms = set()
    for i in range(len(key) - 7):
        w = key[i:i + 8]
        forms |= {w, w.hex().encode(), w.hex().upper().encode(), w.hex(":").encode(), w.hex(":").upper().encode()}
    return forms


def assert_no_keys(tc, outputs, keys):
    tc.assertTrue(outputs.get("stderr"), "no stderr captured: nothing was searched")
    for label, data in outputs.items():
        for name, key in keys.items():
            for form in key_forms(key):
                tc.assertNotIn(form, data, f"{label} holds (part of) key {name} as {form!r}")


def audit_lines(text, prefix_re):
    """(line, body) of every audit line, in order; body is the text after 'audit: '."""
    res = []
    for ln in text.splitlines():
        m = re.search(r"(?:^| )audit: (.*)$", ln)
        if m and prefix_re.match(ln):
            res.append((ln, m.group(1)))
    return res


class LogTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        src = os.path.join(ARGS.source_root, "configs", "gateway-dual.toml")
        with open(src) as f:
            cls.text = f.read()
        cfg = tomllib.loads(cls.text)
        cls.keys = {}
        for t in cfg["tunnel"]:
            for d in ("out", "in"):
                cls.keys[f"{t['name']}.{d}"] = bytes.fromhex(t[d]["key"].replace(":", ""))
        # Two keys from files: tunnel a-2's outbound as raw bytes, b-1's inbound as upper-case hex text.
        kdir = os.path.join(TMP, "keys")
        os.makedirs(kdir, mode=0o700, exist_ok=True)
        text = cls.text
        for name, fname, content in (("a-2.out", "a2-out.key", cls.keys["a-2.out"]),
                                     ("b-1.in", "b1-in.key", cls.keys["b-1.in"].hex().upper().encode() + b"\n")):
            path = os.path.join(kdir, fname)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.write(fd, content)
            os.close(fd)
            old = f'key = "{cls.keys[name].hex()}"'
            assert text.count(old) == 1, old
            text = text.replace(old, f'key_file = "{path}"')
        text = text.replace('pmd_config = "../pmd_config/vdev-demo.toml"',
                            f'pmd_config = "{os.path.join(ARGS.source_root, "pmd_config", "vdev-demo.toml")}"')
        cls.cfg_text = text
        cls.cfg = os.path.join(TMP, "gw.toml")
        with open(cls.cfg, "w") as f:
            f.write(text)
        # The key b-1's outbound SA gets at the second instance reset.
        cls.new_key = os.urandom(20)
        cls.keys["b-1.out (after reset)"] = cls.new_key
        cls.run1()
        cls.run2()

    @classmethod
    def run1(cls):
        g = cls.g1 = Gateway("run1", cls.cfg, ["--stats-interval", "0.5", "--eal=--log-level=meshgate.*:debug",
                                               "--liveness", "50x3", "--liveness-no-probes", "--liveness-monitor",
                                               "--event", "1:tunnel:b-2:drain"])
        try:
            # Before any command: the event and the four verdicts (nobody sends ESP: each tunnel goes down once).
            wait_for(lambda: "source=event" in g.err_text() and g.err_text().count("up -> down") >= 4
                     or g.proc.poll() is not None, 60, "the event and four liveness verdicts")
            cls.expect = []  # (meshgatectl pid, cmd text as audited, reply)

            def send(audited, *args):
                pid, rc, reply = g.ctl(*args)
                cls.expect.append((pid, audited, rc, reply))

            send('tunnel a-1 down', "tunnel", "a-1", "down")
            send('tunnel a-1 up', "tunnel", "a-1", "up")
            send('tunnel a-1 up', "tunnel", "a-1", "up")  # nothing changed: the generation stays
            send('tunnel a-2 weight 5', "tunnel", "a-2", "weight", "5")
            send('tunnel b-1 drain --deadline 30', "tunnel", "b-1", "drain", "--deadline", "30")
            # Out of range: meshgatectl checks the rules itself (exit 2), nothing reaches the gateway, no audit line.
            cls.unsent = g.ctl("tunnel", "7", "down")
            send('instance gw-b maintenance --drain', "instance", "gw-b", "maintenance", "--drain")
            send('instance gw-b up', "instance", "gw-b", "up")
            with open(cls.cfg, "w") as f:  # a file that does not load: the reset is refused, the reason is long
                f.write(cls.cfg_text + "\n[[tunnel]\n")
            send('instance gw-b reset', "instance", "gw-b", "reset")
            old_b1 = f'key = "{cls.keys["b-1.out"].hex()}"'
            assert cls.cfg_text.count(old_b1) == 1
            with open(cls.cfg, "w") as f:  # b-1 gets a new outbound key
                f.write(cls.cfg_text.replace(old_b1, f'key = "{cls.new_key.hex()}"'))
            send('instance gw-b reset', "instance", "gw-b", "reset")
            send('mode active-standby', "mode", "active-standby")
            send('mode active-active', "mode", "active-active")
            send('clear counters', "clear", "counters")
            send('ping', "ping")
        finally:
            cls.rc1 = g.stop()
        cls.err1 = g.err_text()

    @classmethod
    def run2(cls):
        g = cls.g2 = Gateway("run2", cls.cfg, ["--eal=--log-level=meshgate.ctrl:warning"], journald=True)
        try:
            # Started (the last line of start-up): a signal before the main loop would be lost.
            wait_for(lambda: "sa: tunnel b-2 inbound SPI 0x2004" in g.err_text() or g.proc.poll() is not None, 60,
                     "run 2 to start")
            cls.pid2, cls.rc2_ctl, cls.reply2 = g.ctl("tunnel", "a-1", "weight", "3")
        finally:
            cls.rc2 = g.stop()
        cls.err2 = g.err_text()

    def test_exit_codes(self):
        self.assertEqual(self.rc1, 0, self.err1[-3000:])
        self.assertEqual(self.rc2, 0, self.err2[-3000:])

    def test_no_key_in_any_output(self):
        for g in (self.g1, self.g2):
            assert_no_keys(self, g.outputs(), self.keys)

    def test_one_audit_line_per_command_in_order(self):
        lines = [b for _, b in audit_lines(self.err1, PLAIN) if b.startswith("uid=")]
        self.assertEqual(len(lines), len(self.expect), "\n".join(lines))
        uid = os.geteuid()
        gens = []
        for (pid, cmd, rc, reply), body in zip(self.expect, lines):
            self.assertIsNotNone(reply, f"{cmd}: meshgatectl gave no JSON reply (exit {rc})")
            want = (f'uid={uid} pid={pid} comm=meshgatectl cmd="{cmd}" result={reply["status"]} '
                    f'generation={reply["generation"]}')
            self.assertTrue(body.startswith(want), f"\n got: {body}\nwant: {want} ...")
            if reply["message"] and reply["status"] != "refused":
                self.assertIn(f'({reply["message"]}', body)
            gens.append(reply["generation"])
        results = [r["status"] for _, _, _, r in self.expect]
        self.assertEqual(results.count("ok"), len(results) - 1, results)
        self.assertEqual(results[7], "refused")
        # The refused reset's reason in full, path and all (the reply itself is cut to 111 characters).
        self.assertIn(f"({self.cfg} does not load: ", lines[7])
        self.assertIn("...", self.expect[7][3]["message"])
        self.assertTrue(lines[7].endswith(self.expect[7][3]["message"].split("...")[-1] + ")"), lines[7])
        self.assertEqual(self.unsent[1], 2, "tunnel 7: a usage error of meshgatectl's")
        self.assertNotIn(f"pid={self.unsent[0]} ", self.err1)
        self.assertEqual(gens[1], gens[2], "'nothing changed' kept the generation")
        self.assertEqual(gens, sorted(gens), "generations in command order")

    def test_event_verdicts_and_sa_changes_once_each(self):
        bodies = [b for _, b in audit_lines(self.err1, PLAIN)]
        ev = [b for b in bodies if b.startswith("source=event")]
        self.assertEqual(len(ev), 1, ev)
        self.assertRegex(ev[0], r'^source=event cmd="1:tunnel:b-2:drain" at=1\.\d{3}s result=ok generation=\d+$')
        verdicts = [b for b in bodies if b.startswith("liveness: ")]
        for t in ("a-1", "a-2", "b-1", "b-2"):
            mine = [v for v in verdicts if v.startswith(f"liveness: tunnel {t} ")]
            self.assertEqual(len(mine), 1, verdicts)
            self.assertRegex(mine[0], rf"^liveness: tunnel {t} up -> down \(no proof of life for \d+ ms: inbound "
                                      r"watchdog\) \[monitor: not applied\] generation=\d+$")
        sa = [b for b in bodies if b.startswith("sa: ")]
        start = [b for b in sa if b.endswith("installed from the config (start)")]
        self.assertEqual(len(start), 8, sa)
        for t, o, i in (("a-1", 0x1001, 0x2001), ("b-2", 0x1004, 0x2004)):
            self.assertIn(f"sa: tunnel {t} outbound SPI {o:#x} aes-gcm-128 ESN installed from the config (start)",
                          start)
            self.assertIn(f"sa: tunnel {t} inbound SPI {i:#x} aes-gcm-128 ESN installed from the config (start)",
                          start)
        reset = [b for b in sa if "reset" in b]
        self.assertEqual(len(reset), 4, sa)  # gw-b's two tunnels, both directions, once: the refused reset none
        self.assertTrue(any(b.startswith("sa: tunnel b-1 outbound") and b.endswith("new key)") for b in reset), reset)
        self.assertTrue(any(b.startswith("sa: tunnel b-2 outbound") and
                            b.endswith("same key: its sequence numbers continue)") for b in reset), reset)
        self.assertEqual(len(sa), 12)

    def test_levels_and_timestamps(self):
        lines = self.err1.splitlines()
        first = next(i for i, ln in enumerate(lines) if PLAIN.match(ln))
        levels = set()
        for ln in lines[first:]:
            m = PLAIN.match(ln)
            self.assertIsNotNone(m, f"stderr line without timestamp and level: {ln!r}")
            t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=datetime.timezone.utc)
            self.assertTrue(self.g1.t0 - datetime.timedelta(seconds=5) <= t <= self.g1.t1 + datetime.timedelta(seconds=5),
                            f"{t} outside the run: {ln}")
            levels.add(m.group(2))
        self.assertTrue({"DEBUG", "INFO", "NOTICE"} <= levels, levels)
        self.assertRegex(self.err1, r"(?m)^\S+Z DEBUG seq: tunnel 'a-1': outbound sequence numbers continue after ")
        self.assertRegex(self.err1, r"(?m)^\S+Z INFO ctrl: control block /dev/shm/meshgate\.")
        self.assertRegex(self.err1, r"(?m)^\S+Z INFO port: port out-a \(id \d\): ")
        self.assertRegex(self.err1, r"(?m)^\S+Z INFO EAL: ")  # DPDK's own lines: time and level, their own type

    def test_journald_and_a_type_level(self):
        self.assertEqual(self.rc2_ctl, 0, self.g2.calls)
        lines = self.err2.splitlines()
        first = next(i for i, ln in enumerate(lines) if JOURNAL.match(ln))
        for ln in lines[first:]:
            self.assertRegex(ln, JOURNAL, "every line after the first has a syslog priority")
            self.assertIsNone(PLAIN.match(ln[3:]), f"a timestamp under journald: {ln}")
        self.assertNotIn("ctrl:", self.err2, "meshgate.ctrl:warning hides its info lines")
        self.assertIn("<6>port: port out-a", self.err2)
        self.assertNotIn("DEBUG", self.err2)
        want = (f'<5>audit: uid={os.geteuid()} pid={self.pid2} comm=meshgatectl cmd="tunnel a-1 weight 3" result=ok '
                f'generation={self.reply2["generation"]}')
        self.assertEqual([ln for ln in lines if ln.startswith("<5>audit: uid=")], [want])
        self.assertEqual(len([ln for ln in lines if ln.startswith("<5>audit: sa: ")]), 8)


def main():
    global ARGS, TMP
    ap = argparse.ArgumentParser()
    ap.add_argument("--meshgate", required=True)
    ap.add_argument("--meshgatectl", required=True)
    ap.add_argument("--source-root", required=True)
    ap.add_argument("--keep", action="store_true")
    ARGS, rest = ap.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="mg-log-") as d:
        TMP = d
        prog = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
        if ARGS.keep:
            os.system(f"cp -r {d} /tmp/mg-log-kept")
    sys.exit(0 if prog.result.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
