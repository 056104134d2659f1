#!/usr/bin/python3
"""Helpers of tests/capture/test_capture.py: a meshgate in the background with its telemetry client, the hugepages
the capture test reserves and gives back, dpdk-dumpcap and tshark runs, the inside trace."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import gwtest  # noqa: E402
from gwtest import IP, TCP, UDP, Raw, raw  # noqa: E402

DUMPCAP = shutil.which("dpdk-dumpcap") or "/usr/bin/dpdk-dumpcap"
TSHARK = shutil.which("tshark")
HUGE_DIR = "/dev/hugepages"
HUGE_NR = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"
HUGE_FREE = "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages"
PAGES = 256   # 512 MB: the gateway's -m 128 and pool, dumpcap's pool and ring, with room
GCM = "AES-GCM with 16 octet ICV [RFC4106]"


def wait_for(what, cond, timeout):
    """Polls cond() until it returns a true value (returned) or timeout seconds pass (AssertionError)."""
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


class Telemetry:
    """A client of one process's DPDK telemetry v2 socket. Each reply is the raw text too (for the key check)."""

    def __init__(self, prefix):
        self.path = f"/var/run/dpdk/{prefix}/dpdk_telemetry.v2"
        self.texts = []

    def __call__(self, cmd):
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
            s.settimeout(10)
            s.connect(self.path)
            s.recv(1 << 16)   # the greeting
            s.send(cmd.encode())
            text = s.recv(1 << 20).decode()
        self.texts.append(text)
        return json.loads(text)[cmd.split(",")[0]]

    def try_call(self, cmd):
        try:
            return self(cmd)
        except (OSError, ValueError):
            return None


class Gateway:
    """meshgate in the background on the dual config, stopped with SIGTERM (as systemd does)."""

    def __init__(self, name, pmd, inside, a_rx=(), extra=(), inside_path=None):
        self.dir = os.path.join(gwtest.TMP, name)
        os.makedirs(os.path.join(self.dir, "out"), exist_ok=True)
        os.makedirs(os.path.join(self.dir, "state"), exist_ok=True)
        self.inside_in = inside_path or os.path.join(self.dir, "inside-rx.pcap")
        gwtest.write_pcap(self.inside_in, inside)
        gwtest.write_pcap(os.path.join(self.dir, "a-rx.pcap"), list(a_rx))
        gwtest.write_pcap(os.path.join(self.dir, "b-rx.pcap"), [])
        self.prefix = f"mg-cap-{name}-{os.getpid()}"
        self.stats_path = os.path.join(self.dir, "stats.json")
        env = dict(os.environ, MESHGATE_INSIDE_PCAP=self.inside_in, MESHGATE_OUT=os.path.join(self.dir, "out"),
                   MESHGATE_OUT_A_RX=os.path.join(self.dir, "a-rx.pcap"),
                   MESHGATE_OUT_B_RX=os.path.join(self.dir, "b-rx.pcap"),
                   STATE_DIRECTORY=os.path.join(self.dir, "state"))
        self.cfg = gwtest.dual_cfg()
        self.cmd = [gwtest.ARGS.meshgate, "-c", self.cfg, "--pmd", pmd, "--stats-json", self.stats_path,
                    f"--eal=--file-prefix={self.prefix}", "--control-name", self.prefix, "--duration", "300"]
        self.cmd += list(extra)
        self.log = open(os.path.join(self.dir, "meshgate.log"), "w+")
        self.p = subprocess.Popen(self.cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.tel = Telemetry(self.prefix)
        self.rc = None
        self.stats = None

    def alive(self):
        return self.p.poll() is None

    def telemetry_up(self, timeout=60):
        def up():
            if not self.alive():
                raise AssertionError(f"meshgate exited {self.p.returncode} early:\n{self.output()}")
            return self.tel.try_call("/meshgate/stats")
        return wait_for("meshgate's telemetry", up, timeout)

    def stop(self, timeout=60):
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
        try:
            self.rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.rc = self.p.wait()
        if os.path.exists(self.stats_path):
            with open(self.stats_path) as f:
                self.stats = json.load(f)
        shutil.rmtree(f"/var/run/dpdk/{self.prefix}", ignore_errors=True)
        self.out_text = self.output()
        self.log.close()
        return self.rc

    def output(self):
        if self.log.closed:
            return self.out_text
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-3000:]

    def as_run(self):
        """What gwtest.accounting_problems reads of a run."""
        class R:
            pass
        r = R()
        r.rc, r.stats, r.gw = self.rc, self.stats, gwtest.Gw(self.cfg)
        r.out = {}
        for p in ("inside", "out-a", "out-b"):
            path = os.path.join(self.dir, "out", f"{p}.pcap")
            r.out[p] = gwtest.read_pcap(path) if os.path.exists(path) else None
        return r


def udp_tcp_trace(n):
    """n inside frames over 40 flows, UDP (dport 53) and TCP (dport 80) alternating, all to routed addresses."""
    frames = []
    for i in range(n):
        f = i % 40
        l3 = IP(src=f"10.1.0.{f + 1}", dst=f"10.128.1.{f % 20 + 1}", ttl=61)
        l4 = UDP(sport=2000 + f, dport=53) if f % 2 == 0 else TCP(sport=3000 + f, dport=80, flags="PA")
        frames.append(gwtest.frame(raw(l3 / l4 / Raw(gwtest.MARK + b"%08d" % i + bytes(60)))))
    return frames



def read_int(path):
    with open(path) as f:
        return int(f.read())


class Hugepages:
    """PAGES free 2 MB pages on a hugetlbfs mounted at /dev/hugepages; what was changed is put back on exit."""

    def __init__(self):
        self.mounted = False
        self.old_nr = None

    def __enter__(self):
        if not os.path.ismount(HUGE_DIR):
            os.makedirs(HUGE_DIR, exist_ok=True)
            m = subprocess.run(["mount", "-t", "hugetlbfs", "-o", "pagesize=2M", "nodev", HUGE_DIR],
                               capture_output=True, text=True)
            if m.returncode != 0:
                raise unittest.SkipTest(f"cannot mount hugetlbfs on {HUGE_DIR}: {m.stderr.strip()}")
            self.mounted = True
        free = read_int(HUGE_FREE)
        if free < PAGES:
            self.old_nr = read_int(HUGE_NR)
            try:
                with open(HUGE_NR, "w") as f:
                    f.write(str(self.old_nr + PAGES - free))
            except OSError as e:
                self.old_nr = None
                self.__exit__()
                raise unittest.SkipTest(f"cannot reserve hugepages ({e})")
        free = read_int(HUGE_FREE)
        if free < PAGES:
            self.__exit__()
            raise unittest.SkipTest(f"only {free} free 2 MB hugepages after asking for {PAGES} (memory?)")
        return self

    def __exit__(self, *exc):
        if self.old_nr is not None:
            with open(HUGE_NR, "w") as f:
                f.write(str(self.old_nr))
        if self.mounted:
            subprocess.run(["umount", HUGE_DIR], check=False)


def dumpcap(prefix, *args, timeout=90):
    cmd = [DUMPCAP, f"--file-prefix={prefix}", "-q"] + list(args)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout + p.stderr


def tshark_fields(path, fields, uats=()):
    cmd = [TSHARK, "-n", "-r", path, "-o", "esp.enable_encryption_decode:TRUE"]
    for u in uats:
        cmd += ["-o", f"uat:esp_sa:{u}"]
    cmd += ["-T", "fields", "-E", "separator=/t"]
    for f in fields:
        cmd += ["-e", f]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return [r.split("\t") for r in p.stdout.splitlines()]
