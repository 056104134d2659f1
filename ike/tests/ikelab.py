# SPDX-License-Identifier: GPL-2.0-or-later
"""A lab for ike/kernel-meshgate: network namespaces joined by a veth pair, one charon per namespace (each in a
private mount namespace with its own /run, so pid file and vici socket are its own), swanctl run inside them.

Every test makes its own lab and removes it (namespaces, processes, files) on the way out, failure or not."""
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

CHARON = "/usr/lib/ipsec/charon"
PLUGINS = "/usr/lib/ipsec/plugins"
SKIP = 77


def need_packages():
    """Exit 77 when something only a missing package provides is absent, never for anything else."""
    missing = []
    for path, pkg in ((CHARON, "strongswan-charon"), ("/usr/sbin/swanctl", "strongswan-swanctl"),
                      (PLUGINS + "/libstrongswan-kernel-libipsec.so", "libcharon-extra-plugins"),
                      (PLUGINS + "/libstrongswan-openssl.so", "libstrongswan-standard-plugins"),
                      ("/usr/lib/python3/dist-packages/scapy", "python3-scapy"), ("/usr/bin/unshare", "util-linux"),
                      ("/usr/bin/nsenter", "util-linux"), ("/usr/sbin/ip", "iproute2"), ("/usr/bin/ping", "iputils-ping")):
        if not os.path.exists(path):
            missing.append(pkg)
    if missing:
        print("SKIP: missing Debian packages: " + " ".join(sorted(set(missing))))
        sys.exit(SKIP)
    if os.geteuid() != 0:
        print("FAIL: these tests create network namespaces and need root")
        sys.exit(1)
    # meson's timeout sends SIGTERM: leave through the labs' cleanup (namespaces, charons) rather than around it
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))


def plugin_path():
    p = os.environ.get("KERNEL_MESHGATE_SO")
    if not p or not os.path.isfile(p):
        print("FAIL: KERNEL_MESHGATE_SO does not name the built plugin: %r" % p)
        sys.exit(1)
    return p


def run(cmd, check=True, timeout=30, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError("%s: exit %d\n%s%s" % (" ".join(cmd), r.returncode, r.stdout, r.stderr))
    return r


def wait_for(pred, timeout, what, step=0.05):
    """Polls pred until it returns something true; bounded, and says what it waited for when it gives up."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(step)


STRONGSWAN_CONF = """
charon {{
  load_modular = yes
  plugins {{
    include /etc/strongswan.d/charon/*.conf
{extra_plugins}
  }}
  # IKE on the veth only; no DNS, no interfaces to guess from
  interfaces_use = {iface}
  retransmit_timeout = {retransmit_timeout}
  retransmit_tries = {retransmit_tries}
  delete_rekeyed_delay = {delete_delay}
  filelog {{
    lab {{
      path = {log}
      default = 1
      knl = 2
      time_format = %T
      flush_line = yes
    }}
  }}
  syslog {{
    daemon {{
      default = -1
    }}
  }}
}}
swanctl {{
  load = pem pkcs1 x509 revocation constraints pubkey openssl random
}}
"""


class Charon:
    """One charon in namespace ns, in a private mount namespace whose /run is a tmpfs."""

    def __init__(self, lab, name, ns, iface, extra_plugins, swanctl_conf, delete_delay=5, plugin_dir=None,
                 retransmit=(1.0, 3)):
        self.lab, self.name, self.ns = lab, name, ns
        self.dir = os.path.join(lab.dir, name)
        os.makedirs(os.path.join(self.dir, "swanctl"), exist_ok=True)
        self.log = os.path.join(self.dir, "charon.log")
        self.conf = os.path.join(self.dir, "strongswan.conf")
        with open(self.conf, "w") as f:
            f.write(STRONGSWAN_CONF.format(extra_plugins=extra_plugins, iface=iface, log=self.log,
                                           delete_delay=delete_delay, retransmit_timeout=retransmit[0],
                                           retransmit_tries=retransmit[1]))
        with open(os.path.join(self.dir, "swanctl", "swanctl.conf"), "w") as f:
            f.write(swanctl_conf)
        # The plugin under test is not installed: a copy of charon's plugin directory with it added is mounted
        # over the real one, in this charon's mount namespace only.
        mounts = "mount -t tmpfs lab-run /run"
        if plugin_dir:
            mounts += " && mount --bind %s %s" % (plugin_dir, PLUGINS)
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "unshare", "--mount", "--propagation", "private", "sh", "-c",
             mounts + " && exec " + CHARON],
            env=dict(os.environ, STRONGSWAN_CONF=self.conf), stdin=subprocess.DEVNULL,
            stdout=open(os.path.join(self.dir, "stdout"), "w"), stderr=subprocess.STDOUT, start_new_session=True)
        lab.charons.append(self)
        wait_for(lambda: self.proc.poll() is not None or self._vici_up(), 20, "%s's vici socket" % name)
        if self.proc.poll() is not None:
            raise RuntimeError("%s exited at start (%s):\n%s" % (name, self.proc.returncode, self.log_text()))

    def _pid(self):
        """charon's pid: ip netns exec, unshare and sh each exec the next, so it is the one we started."""
        return str(self.proc.pid) if self.proc.poll() is None else None

    def _vici_up(self):
        pid = self._pid()
        if not pid:
            return False
        return self.swanctl("--stats", check=False).returncode == 0

    def swanctl(self, *args, check=True, timeout=30):
        pid = self._pid()
        if not pid:
            raise RuntimeError("%s is not running:\n%s" % (self.name, self.log_text()))
        return run(["nsenter", "-t", pid, "-m", "-n", "env", "STRONGSWAN_CONF=" + self.conf, "swanctl"]
                   + list(args) + ["--uri", "unix:///run/charon.vici"], check=check, timeout=timeout)

    def load(self):
        return self.swanctl("--load-all", "--file", os.path.join(self.dir, "swanctl", "swanctl.conf"))

    def alive(self):
        return self.proc.poll() is None

    def log_text(self):
        try:
            with open(self.log) as f:
                return f.read()
        except OSError:
            return ""

    def child_spis(self, child):
        """(spi_in, spi_out) of the installed CHILD_SAs named child, from swanctl --list-sas --raw."""
        out = self.swanctl("--list-sas", "--raw").stdout
        spis = []
        for m in re.finditer(r"\b%s-\d+ \{.*?state=INSTALLED.*?spi-in=([0-9a-f]+) spi-out=([0-9a-f]+)" % child,
                             out, re.S):
            spis.append((int(m.group(1), 16), int(m.group(2), 16)))
        return spis

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


class LabBase:
    """What every lab has: a directory (kept with IKE_LAB_KEEP=1), its charons, and on the way out, failure or not,
    its processes stopped and its namespaces deleted; the logs' tails printed when it ends by an exception."""

    def __init__(self, prefix):
        self.dir = tempfile.mkdtemp(prefix=prefix)
        self.charons = []
        self.keep = os.environ.get("IKE_LAB_KEEP") == "1"

    def namespaces(self):
        return []

    def stop_processes(self):
        """Everything but the charons (a lab's own processes), before they stop."""

    def logs(self):
        return [(c.name, c.log_text()) for c in self.charons]

    def plugin_dir(self, so):
        d = os.path.join(self.dir, "plugins")
        if not os.path.isdir(d):
            os.makedirs(d)
            for f in os.listdir(PLUGINS):
                shutil.copy2(os.path.join(PLUGINS, f), d)
            shutil.copy2(so, os.path.join(d, "libstrongswan-kernel-meshgate.so"))
        return d

    def close(self):
        self.stop_processes()
        for c in self.charons:
            c.stop()
        for ns in self.namespaces():
            run(["ip", "netns", "del", ns], check=False)
        if self.keep:
            print("lab files kept in " + self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            for name, text in self.logs():
                print("---- %s log (last 60 lines) ----" % name)
                print("\n".join(text.splitlines()[-60:]))
        self.close()
        return False


class Lab(LabBase):
    """Namespaces "dev" (the on-premises device) and "gw" (charon with kernel-meshgate) joined by a veth pair."""

    DEV_OUTER, GW_OUTER = "192.0.2.1", "192.0.2.2"

    def __init__(self):
        super().__init__("ike-lab-")
        tag = "%d" % os.getpid()
        self.dev_ns, self.gw_ns = "ike-dev-" + tag, "ike-gw-" + tag
        self.dev_if, self.gw_if = "ikd" + tag[-8:], "ikg" + tag[-8:]
        try:
            for ns in (self.dev_ns, self.gw_ns):
                run(["ip", "netns", "add", ns])
            run(["ip", "link", "add", self.dev_if, "netns", self.dev_ns, "type", "veth", "peer", "name", self.gw_if,
                 "netns", self.gw_ns])
            for ns, ifc, addr in ((self.dev_ns, self.dev_if, self.DEV_OUTER), (self.gw_ns, self.gw_if, self.GW_OUTER)):
                self.ns(ns, "ip", "addr", "add", addr + "/24", "dev", ifc)
                self.ns(ns, "ip", "link", "set", ifc, "up")
                self.ns(ns, "ip", "link", "set", "lo", "up")
        except Exception:
            self.close()
            raise

    def namespaces(self):
        return [self.dev_ns, self.gw_ns]

    def ns(self, ns, *cmd, check=True, timeout=30):
        return run(["ip", "netns", "exec", ns] + list(cmd), check=check, timeout=timeout)


# The device and the gateway agree on two CHILD_SAs: one per cipher meshgate takes from a strongSwan peer.
PSK = "0sbWVzaGdhdGUtaWtlLWxhYi1vbmx5LW5vdC1hLXJlYWwtc2VjcmV0"  # "meshgate-ike-lab-only-not-a-real-secret"
CHILDREN = {  # name: (device's inner address, gateway's inner prefix, ESP proposal)
    "gcm": ("10.1.0.1", "10.2.0.0/24", "aes128gcm16"),
    "chacha": ("10.1.0.2", "10.3.0.0/24", "chacha20poly1305"),
}


def swanctl_conf(local, remote, local_id, remote_id, dev_side, child_extra=""):
    children = ""
    for name, (dev_inner, gw_net, esp) in CHILDREN.items():
        lts, rts = (dev_inner + "/32", gw_net) if dev_side else (gw_net, dev_inner + "/32")
        children += """
      %s {
        local_ts = %s
        remote_ts = %s
        esp_proposals = %s
        mode = tunnel
        %s
      }""" % (name, lts, rts, esp, child_extra)
    return """
connections {
  lab {
    version = 2
    local_addrs = %s
    remote_addrs = %s
    proposals = aes128gcm16-prfsha256-ecp256
    local {
      auth = psk
      id = %s
    }
    remote {
      auth = psk
      id = %s
    }
    children {%s
    }
  }
}
secrets {
  ike-lab {
    id-a = dev.lab
    id-b = gw.lab
    secret = %s
  }
}
""" % (local, remote, local_id, remote_id, children, PSK)


def start_pair(lab, so, socket_path, gw_delete_delay=5, child_extra=""):
    """The device (charon + kernel-libipsec) and the gateway (charon + kernel-meshgate), configs loaded."""
    for addr, _, _ in CHILDREN.values():
        lab.ns(lab.dev_ns, "ip", "addr", "add", addr + "/32", "dev", "lo")
    dev = Charon(lab, "dev", lab.dev_ns, lab.dev_if, "    kernel-libipsec {\n      load = 2\n    }\n",
                 swanctl_conf(lab.DEV_OUTER, lab.GW_OUTER, "dev.lab", "gw.lab", True, child_extra))
    snippet = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kernel-meshgate", "kernel-meshgate.conf")
    gw_plugins = ("    include %s\n    kernel-meshgate {\n      socket = %s\n      timeout = 2000\n    }\n"
                  % (snippet, socket_path))
    gw = Charon(lab, "gw", lab.gw_ns, lab.gw_if, gw_plugins,
                swanctl_conf(lab.GW_OUTER, lab.DEV_OUTER, "gw.lab", "dev.lab", False, child_extra),
                delete_delay=gw_delete_delay, plugin_dir=lab.plugin_dir(so))
    dev.load()
    gw.load()
    return dev, gw


def capture_esp(lab, ping_src, ping_dst, count=3, timeout=20):
    """ESP-in-UDP the device sends toward the gateway while pinging ping_dst from ping_src through its tunnel,
    captured on the gateway's veth. The gateway has no data plane here, so the pings get no answer."""
    from scapy.all import rdpcap
    pcap = os.path.join(lab.dir, "esp-%s.pcap" % ping_src)
    sniffer = subprocess.Popen(["ip", "netns", "exec", lab.gw_ns, "/usr/bin/python3",
                                os.path.join(os.path.dirname(os.path.abspath(__file__)), "sniff_esp.py"),
                                lab.gw_if, str(count), str(timeout), pcap],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = sniffer.stdout.readline()
        if "READY" not in line:
            raise RuntimeError("sniffer did not start: " + line + sniffer.stdout.read())
        lab.ns(lab.dev_ns, "ping", "-c", str(count), "-i", "0.2", "-W", "1", "-I", ping_src, ping_dst, check=False)
        out, _ = sniffer.communicate(timeout=timeout + 10)
    finally:
        if sniffer.poll() is None:
            sniffer.kill()
            sniffer.wait()
    assert os.path.exists(pcap), "no capture: " + out
    return list(rdpcap(pcap))


def decrypt(pkts, spi, cipher, key, outer_src, outer_dst):
    """The inner packets of pkts under (spi, key), decrypted by scapy, an implementation independent of charon
    and of the plugin. Raises if one does not authenticate."""
    from scapy.all import IP, UDP
    from scapy.layers.ipsec import ESP, SecurityAssociation
    sa = SecurityAssociation(ESP, spi=spi, crypt_algo=cipher, crypt_key=key,
                             tunnel_header=IP(src=outer_src, dst=outer_dst), nat_t_header=UDP(sport=4500, dport=4500))
    return [sa.decrypt(IP(bytes(p[IP]))) for p in pkts]


@contextlib.contextmanager
def gateway_lab(gw_delete_delay=5):
    """A lab with the device and the gateway up, the recorder on the gateway's keying socket."""
    from recorder import Recorder
    need_packages()
    so = plugin_path()
    with Lab() as lab:
        rec = Recorder(os.path.join(lab.dir, "keying.sock"))
        rec.start()
        try:
            dev, gw = start_pair(lab, so, rec.path, gw_delete_delay=gw_delete_delay)
            yield lab, rec, dev, gw
        finally:
            rec.stop()


def initiate(dev, rec, child):
    """The device brings up child; returns the recorded messages from GET_SPI to the outbound ADD_SA."""
    since = rec.count()
    dev.swanctl("--initiate", "--child", child, "--timeout", "30", timeout=40)

    def pair(ms):
        tail = [m for m in ms[since:] if m["type"] in ("GET_SPI", "ADD_SA")]
        return tail if len([m for m in tail if m["type"] == "ADD_SA"]) >= 2 else None
    return rec.wait(pair, 10, "GET_SPI and two ADD_SA for " + child)
