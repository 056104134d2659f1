"""Small helpers the namespace-based tests share: a command that must succeed, and a bounded wait that says what it
waited for when it gives up (a slow host makes a wait longer, never a test red before its bound)."""
import subprocess
import time


def run(cmd, check=True, timeout=30, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError("%s: exit %d\n%s%s" % (" ".join(cmd), r.returncode, r.stdout, r.stderr))
    return r


def wait_for(pred, timeout, what, step=0.1):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(step)


class NsLab:
    """Two network namespaces, meshgate's (`gw`) and a device's (`dev`), joined by one veth pair per side: vo-SIDE
    in gw is a DPDK port (net_af_packet), so that namespace's kernel is kept off it (no ARP, no IPv6, strict
    reverse-path filtering: else it would answer for the twin's addresses too), vp-SIDE in dev is the device's.
    Checksum offload is off on both ends: frames that cross net_af_packet carry what the sender's kernel left.
    close() stops meshgate and removes everything, the temporary directory too unless MG_KEEP=1."""

    def __init__(self, prefix, sides=("a", "b")):
        import os
        import tempfile
        tag = str(os.getpid())
        self.gw, self.dev = "%s-gw-%s" % (prefix, tag), "%s-dev-%s" % (prefix, tag)
        self.dir = tempfile.mkdtemp(prefix="mg-%s-" % prefix)
        self.name = prefix.replace("-", "") + tag  # control block and EAL file prefix
        self.mg = None
        self.log = None
        for ns in (self.gw, self.dev):
            run(["ip", "netns", "add", ns])
            self.ns(ns, "ip", "link", "set", "lo", "up")
        for side in sides:
            run(["ip", "link", "add", "vo-" + side, "netns", self.gw, "type", "veth", "peer", "name", "vp-" + side,
                 "netns", self.dev])
            self.ns(self.gw, "ip", "link", "set", "vo-" + side, "arp", "off")
            self.ns(self.gw, "sysctl", "-qw", "net.ipv6.conf.vo-%s.disable_ipv6=1" % side,
                    "net.ipv4.conf.vo-%s.rp_filter=1" % side)
            for ns, ifc in ((self.gw, "vo-" + side), (self.dev, "vp-" + side)):
                self.ns(ns, "ip", "link", "set", ifc, "up")
                self.ns(ns, "ethtool", "-K", ifc, "tx", "off")

    def ns(self, ns, *cmd, check=True, timeout=30):
        return run(["ip", "netns", "exec", ns] + list(cmd), check=check, timeout=timeout)

    def mac(self, ns, ifc):
        import json
        return json.loads(run(["ip", "-n", ns, "-j", "link", "show", ifc]).stdout)[0]["address"]

    def write_pmd(self, ports):
        """A pmd_config of one worker (lcore 1) without hugepages; ports: (name, devargs, extra TOML lines)."""
        import os
        path = os.path.join(self.dir, "pmd.toml")
        text = ('[eal]\nargs = ["--no-huge", "-m", "512", "--no-pci", "-l", "0-1", "--file-prefix", "%s"]\n'
                '[workers]\nlcores = [1]\nmbufs = 8191\n' % self.name)
        for name, devargs, extra in ports:
            text += '[[port]]\nname = "%s"\ndevargs = "%s"\n%srx_desc = 256\ntx_desc = 256\n' % (name, devargs, extra)
        with open(path, "w") as f:
            f.write(text)
        return path

    def start_meshgate(self, meshgate, cfg, ready, what):
        """meshgate -c cfg in gw (report in self.report, output in self.log), until ready() or its exit."""
        import os
        self.report = os.path.join(self.dir, "report.json")
        self.log = open(os.path.join(self.dir, "meshgate.log"), "w")
        self.mg = subprocess.Popen(["ip", "netns", "exec", self.gw, meshgate, "-c", cfg, "--control-name",
                                    self.name, "--stats-json", self.report, "--duration", "600"],
                                   stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.mg.poll() is not None or ready(), 60, what)
        assert self.mg.poll() is None, "meshgate exited:\n" + self.log_text()

    def log_text(self):
        if self.log is None:
            return ""
        with open(self.log.name) as f:
            return f.read()

    def stop(self):
        import signal
        if self.mg and self.mg.poll() is None:
            self.mg.send_signal(signal.SIGINT)
            try:
                self.mg.wait(60)
            except subprocess.TimeoutExpired:
                self.mg.kill()
                self.mg.wait()
        return self.mg.returncode if self.mg else None

    def close(self):
        import os
        import shutil
        self.stop()
        for ns in (self.gw, self.dev):
            run(["ip", "netns", "del", ns], check=False)
        run(["rm", "-rf", "/var/run/dpdk/" + self.name], check=False)
        if os.environ.get("MG_KEEP") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)
