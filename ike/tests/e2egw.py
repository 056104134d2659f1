# SPDX-License-Identifier: GPL-2.0-or-later
"""meshgate in the end-to-end lab (e2elab.py): its configuration (two instances on net_af_packet with their
exception taps, four tunnels keyed by IKE), start / kill / stop, meshgatectl's JSON, and the whole lab brought up."""
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ikelab  # noqa: E402
from e2elab import DEVICES, INSIDE_MAC, INSTANCES, SITE, TUNNELS, Lab  # noqa: E402
from ikelab import wait_for  # noqa: E402


def meshgate_paths():
    mg, ctl = os.environ.get("MESHGATE"), os.environ.get("MESHGATECTL")
    if not (mg and os.path.isfile(mg) and ctl and os.path.isfile(ctl)):
        print("FAIL: MESHGATE / MESHGATECTL do not name the built programs")
        sys.exit(1)
    for tool, pkg in (("/usr/sbin/ethtool", "ethtool"), ("/usr/bin/tcpdump", "tcpdump"), ("/usr/sbin/tc", "iproute2")):
        if not os.path.exists(tool):
            print("SKIP: missing Debian package " + pkg)
            sys.exit(ikelab.SKIP)
    return mg, ctl


class Meshgate:
    """meshgate in the gw namespace: two instances on net_af_packet, each with its exception tap, one worker."""

    def __init__(self, lab, mg_bin, ctl, key="gw", suffix=""):
        """key: the lab's namespace; suffix names a second meshgate of the lab (its files in a folder of that name)."""
        self.lab, self.bin, self.ctl, self.key = lab, mg_bin, ctl, key
        self.name = "e2e%s%s" % (lab.tag, suffix)
        self.dir = os.path.join(lab.dir, suffix) if suffix else lab.dir
        self.sock = os.path.join(self.dir, "keying.sock")
        self.state = os.path.join(self.dir, "state")
        os.makedirs(self.state, exist_ok=True)
        self.cfg = self._config()
        self.proc, self.runs = None, 0
        lab.mg = self

    def _config(self):
        d = self.dir
        pmd = os.path.join(d, "pmd.toml")
        ports = ['[[port]]\nname = "inside"\ndevargs = "net_af_packet0,iface=gi,framecnt=4096"\n']
        k = 1
        for name, (_, _, _, _, veth, tap, _) in INSTANCES.items():
            ports.append('[[port]]\nname = "out-%s"\ndevargs = "net_af_packet%d,iface=%s,framecnt=4096"\n'
                         'host = "%s"\n' % (name, k, veth, tap))
            ports.append('[[port]]\nname = "%s"\ndevargs = "net_tap%d,iface=%s"\n' % (tap, k - 1, tap))
            k += 1
        with open(pmd, "w") as f:
            f.write('[eal]\nargs = ["--no-huge", "-m", "1024", "--no-pci", "-l", "0-1", "--file-prefix", "%s"]\n'
                    '[workers]\nlcores = [1]\nmbufs = 16383\n\n%s' % (self.name, "\n".join(ports)))
        cfg = os.path.join(d, "gateway.toml")
        out = ['[gateway]', 'name = "%s"' % self.name, 'mode = "active-active"', 'pmd_config = "%s"' % pmd,
               'state_dir = "%s"' % self.state, '', '[keying]', 'socket = "%s"' % self.sock, '', '[inside]',
               'port = "inside"', 'prefixes = ["%s"]' % SITE, 'next_hop_mac = "%s"' % INSIDE_MAC, '',
               '[flow]', 'seed = 11', 'table_size = 65537', 'pin_idle_timeout_ms = 60000', 'pin_capacity = 65536', '']
        for name, (addr, _, plen, _, _, _, _) in INSTANCES.items():
            out += ['[[instance]]', 'name = "%s"' % name, 'ipv4 = "%s"' % addr, 'ipv4_prefix_len = %d' % plen,
                    'port = "out-%s"' % name, '']
        for name, (_, addr, _, _) in DEVICES.items():   # no next_hop_mac: the kernel's neighbour table gives it
            out += ['[[device]]', 'name = "%s"' % name, 'ipv4 = "%s"' % addr, '']
        for t, (inst, dev, if_id, _) in TUNNELS.items():
            out += ['[[tunnel]]', 'name = "%s"' % t, 'instance = "%s"' % inst, 'device = "%s"' % dev, 'weight = 1',
                    'keying = "ike"', 'if_id = %d' % if_id, '']
        with open(cfg, "w") as f:
            f.write("\n".join(out))
        return cfg

    def log_text(self):
        try:
            return "".join(open(os.path.join(self.dir, "meshgate-%d.log" % k)).read() for k in range(self.runs))
        except OSError:
            return ""

    def start(self):
        log = open(os.path.join(self.dir, "meshgate-%d.log" % self.runs), "w")
        self.runs += 1
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.lab.ns[self.key], self.bin, "-c", self.cfg,
                                      "--control-name", self.name, "--duration", "900",
                                      "--stats-json", os.path.join(self.dir, "stats-%d.json" % (self.runs - 1))],
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: self.proc.poll() is not None or (os.path.exists(self.sock) and self.ctl_json("show",
                 "tunnels") is not None), 60, "meshgate's keying socket and control block")
        assert self.proc.poll() is None, "meshgate exited at start:\n" + self.log_text()[-3000:]
        self.lab.policy_routes(self)

    def kill9(self):
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        shutil.rmtree("/var/run/dpdk/" + self.name, ignore_errors=True)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree("/var/run/dpdk/" + self.name, ignore_errors=True)

    def outside_ports(self):
        return ["out-" + name for name in INSTANCES]

    def stop_and_check(self):
        """Stops meshgate (SIGTERM) and checks its exit: status 0, every mbuf back, and IKE and ARP carried by the
        exception path both ways on both outside ports, none lost between main and the worker. Returns the
        --stats-json report."""
        self.stop()
        assert self.proc.returncode == 0, "meshgate exit %s:\n%s" % (self.proc.returncode, self.log_text()[-2000:])
        with open(os.path.join(self.dir, "stats-%d.json" % (self.runs - 1))) as f:
            st = json.load(f)
        assert st["mbufs_in_use_at_exit"] == 0, "mbufs not returned: %d" % st["mbufs_in_use_at_exit"]
        for name in self.outside_ports():
            p = st["ports"][name]
            assert p["to_host"] > 0 and p["from_host"] > 0 and p["host_ring_full"] == 0, (name, p)
        return st

    def ctl_json(self, *args):
        r = subprocess.run([self.ctl, "--gateway", self.name, "--json"] + list(args), capture_output=True, text=True,
                           timeout=20)
        if r.returncode != 0:
            return None
        return json.loads(r.stdout)

    def tunnels(self):
        return {t["name"]: t for t in (self.ctl_json("show", "tunnels") or [])}

    def sas(self):
        return self.ctl_json("show", "sa") or []

    def errors(self):
        return self.ctl_json("show", "errors") or {}

    def gateway(self):
        return self.ctl_json("show", "gateway") or {}


def bring_up(lab, gw_charon, devs, timeout=60):
    """All four tunnels keyed at once: a-1 and b-2 started by the gateway, a-2 and b-1 by the devices. Returns the
    seconds from the first initiation to meshgate holding an outbound SA on every tunnel, all four up."""
    t0 = time.monotonic()
    jobs = []
    for t, (inst, dev, _, _) in TUNNELS.items():
        who = gw_charon if t in ("a-1", "b-2") else devs[dev]
        jobs.append(subprocess.Popen(["nsenter", "-t", str(who.proc.pid), "-m", "-n", "env",
                                      "STRONGSWAN_CONF=" + who.conf, "swanctl", "--initiate", "--child", t,
                                      "--timeout", "30", "--uri", "unix:///run/charon.vici"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    mg = lab.mg

    def all_up():
        ts = mg.tunnels()
        return len(ts) == 4 and all(x["state"] == "up" and x["out_spi"] != 0 for x in ts.values())
    wait_for(all_up, timeout, "all four tunnels keyed and up in meshgate", step=0.02)
    took = time.monotonic() - t0
    for j in jobs:
        out, _ = j.communicate(timeout=40)
        assert j.returncode == 0, "swanctl --initiate failed:\n" + out
    return took


@contextlib.contextmanager
def started(gw_dpd_delay=0):
    """The whole lab up: meshgate, the devices' charons, the gateway's, and the four tunnels keyed (bring_up).
    Yields lab, mg, devs, gw (its charon), keyed_s and so (the plugin) as attributes."""
    ikelab.need_packages()
    so = ikelab.plugin_path()
    mg_bin, ctl = meshgate_paths()
    with Lab(gw_dpd_delay) as lab:
        mg = Meshgate(lab, mg_bin, ctl)
        mg.start()
        devs = {d: lab.start_device(d) for d in DEVICES}
        gw = lab.start_gw_charon(so, mg.sock)
        keyed_s = bring_up(lab, gw, devs)
        yield types.SimpleNamespace(lab=lab, mg=mg, devs=devs, gw=gw, keyed_s=keyed_s, so=so)
