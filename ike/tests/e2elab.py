# SPDX-License-Identifier: GPL-2.0-or-later
"""The end-to-end lab of issue 11: meshgate, keyed by one charon with kernel-meshgate, facing two strongSwan devices
through a router, everything in network namespaces this module makes and removes.

  in --(ii|gi)-- gw: meshgate (inside port gi, outside ports oa / ob, all net_af_packet on veths; exception taps
                     mg-a / mg-b carry gw-a 192.0.2.1/24 and gw-b 198.51.100.1/24) + charon with kernel-meshgate
                 gw --(oa|ra)-- rt --(r1|wan)-- d1: charon + kernel-libipsec, hosts 10.1.1.1-4
                 gw --(ob|rb)-- rt --(r2|wan)-- d2: charon + kernel-libipsec, hosts 10.1.2.1-4
                                                d1 --(site|site)-- d2: the on-premises site's own link

Four tunnels, a-1 a-2 b-1 b-2 (instance gw-a/gw-b to device onprem-1/onprem-2, if_id 1..4), each its own
connection on both sides. meshgate spreads flows over every tunnel whatever the destination (it has no route table
yet), so both devices front the one site 10.1.0.0/16 (their CHILD_SAs' local_ts) and forward to each other's hosts
over the site link: a flow to a host of onprem-1 may arrive through onprem-2.

One charon keys both instances: charon's sockets bind UDP 500/4500 on every address of the namespace (two daemons
in one namespace would collide), meshgate has one keying socket for the process, and a charon restart leaves the
installed SAs running in meshgate (test_e2e_restart), so the daemon is not what decides an instance's failure domain:
one instance is reset in meshgate (`meshgatectl instance X reset` leaves IKE tunnels alone) and its IKE is reset
with `swanctl --terminate --ike` on its connections.

IKE_E2E_KEEP=1 keeps the lab's directory (configs, logs, captures, traffic results)."""
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ikelab  # noqa: E402
from ikelab import run, wait_for  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TRAFFIC = os.path.join(HERE, "traffic.py")
PY = "/usr/bin/python3"

INSTANCES = {  # name: (address, router's address, prefix length, policy routing table, outside veth, tap, MAC)
    "gw-a": ("192.0.2.1", "192.0.2.254", 24, 101, "oa", "mg-a", "02:00:00:0a:00:01"),
    "gw-b": ("198.51.100.1", "198.51.100.254", 24, 102, "ob", "mg-b", "02:00:00:0a:00:02"),
}
DEVICES = {  # name: (namespace key, address, router's address, hosts)
    "onprem-1": ("d1", "203.0.113.1", "203.0.113.254", ["10.1.1.%d" % i for i in range(1, 5)]),
    "onprem-2": ("d2", "198.18.0.1", "198.18.0.254", ["10.1.2.%d" % i for i in range(1, 5)]),
}
SITE = "10.1.0.0/16"
INSIDE_NET, INSIDE_GW, INSIDE_MAC, GI_MAC = "172.16.0.0/24", "172.16.0.1", "02:00:00:00:16:02", "02:00:00:00:16:01"
INSIDE_HOSTS = ["172.16.0.%d" % i for i in range(2, 6)]
TUNNELS = {  # name: (instance, device, if_id, ESP proposal)
    "a-1": ("gw-a", "onprem-1", 1, "aes128gcm16"),
    "a-2": ("gw-a", "onprem-2", 2, "aes256gcm16"),
    "b-1": ("gw-b", "onprem-1", 3, "chacha20poly1305"),
    "b-2": ("gw-b", "onprem-2", 4, "aes128gcm16"),
}
PSK = ikelab.PSK
INTERIM = os.environ.get("E2E_INTERIM") == "1"   # TEMPORARY: IKE over the kernel on oa/ob until the exception path
# The router's MACs on the instances' links: distinct, so a next hop resolved for the wrong instance is lost.
RT_MACS = {"gw-a": "02:00:00:0b:00:01", "gw-b": "02:00:00:0b:00:01" if INTERIM else "02:00:00:0b:00:02"}


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


class Lab:
    def __init__(self, gw_dpd_delay=0):
        tag = str(os.getpid())
        self.tag = tag
        self.ns = {k: "e2e-%s-%s" % (k, tag) for k in ("gw", "rt", "d1", "d2", "in")}
        self.dir = tempfile.mkdtemp(prefix="ike-e2e-")
        self.keep = os.environ.get("IKE_E2E_KEEP") == "1"
        self.charons, self.procs = [], []
        self.gw_dpd_delay = gw_dpd_delay
        self.mg = None
        try:
            self._topology()
        except Exception:
            self.close()
            raise

    # ---- namespaces and links
    def sh(self, key, *cmd, check=True, timeout=30):
        return run(["ip", "netns", "exec", self.ns[key]] + list(cmd), check=check, timeout=timeout)

    def _veth(self, a_key, a_if, b_key, b_if, a_mac=None, b_mac=None):
        run(["ip", "link", "add", a_if, "netns", self.ns[a_key], "type", "veth", "peer", "name", b_if, "netns",
             self.ns[b_key]])
        for key, ifc, mac in ((a_key, a_if, a_mac), (b_key, b_if, b_mac)):
            if mac:
                self.sh(key, "ip", "link", "set", ifc, "address", mac)
            self.sh(key, "ip", "link", "set", ifc, "up")

    def _no_tx_csum(self, key, ifc):
        # Frames that cross net_af_packet must carry whole checksums: a veth hands on the kernel's partial ones.
        self.sh(key, "ethtool", "-K", ifc, "tx", "off")

    def _dpdk_owned(self, ifc):
        # The gw namespace's kernel must not answer on the ports meshgate owns (a NIC bound to DPDK is not the
        # kernel's at all): no ARP on them, and strict reverse-path filtering drops IP for the instance addresses
        # arriving there (their routes go out of the taps), so IKE reaches charon only through meshgate. Packet
        # sockets (net_af_packet) still see every frame. (No tc drop: this kernel has no gact/matchall.)
        self.sh("gw", "ip", "link", "set", ifc, "arp", "off")
        self.sh("gw", "sysctl", "-qw", "net.ipv4.conf.%s.rp_filter=1" % ifc)

    def _topology(self):
        for ns in self.ns.values():
            run(["ip", "netns", "add", ns])
        for key in self.ns:
            self.sh(key, "ip", "link", "set", "lo", "up")
            for s in ("net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1",
                      "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"):
                self.sh(key, "sysctl", "-qw", s)
        for key in ("rt", "d1", "d2"):
            self.sh(key, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        # inside host <-> meshgate's inside port
        self._veth("in", "ii", "gw", "gi", INSIDE_MAC, GI_MAC)
        for key, ifc in (("in", "ii"), ("gw", "gi")):
            self._no_tx_csum(key, ifc)
        self._dpdk_owned("gi")
        for k, h in enumerate(INSIDE_HOSTS):
            self.sh("in", "ip", "addr", "add", h + "/24", "dev", "ii")
        self.sh("in", "ip", "neigh", "add", INSIDE_GW, "lladdr", GI_MAC, "dev", "ii", "nud", "permanent")
        self.sh("in", "ip", "route", "add", SITE, "via", INSIDE_GW, "src", INSIDE_HOSTS[0])
        # meshgate's outside ports <-> the router
        for name, (addr, rtr, plen, _, veth, _, mac) in INSTANCES.items():
            rif = "r" + veth[1]
            self._veth("gw", veth, "rt", rif, a_mac=mac, b_mac=RT_MACS[name])
            self._no_tx_csum("gw", veth)
            self._no_tx_csum("rt", rif)
            if INTERIM:
                self.sh("gw", "ip", "addr", "add", "%s/%d" % (addr, plen), "dev", veth)
            else:
                self._dpdk_owned(veth)
            self.sh("rt", "ip", "addr", "add", "%s/%d" % (rtr, plen), "dev", rif)
        # the devices, the router and the site link between the devices
        for name, (key, addr, rtr, hosts) in DEVICES.items():
            rif = "r" + key[1]
            self._veth("rt", rif, key, "wan")
            self.sh("rt", "ip", "addr", "add", rtr + "/24", "dev", rif)
            self.sh(key, "ip", "addr", "add", addr + "/24", "dev", "wan")
            self.sh(key, "ip", "route", "add", "default", "via", rtr)
            for h in hosts:
                self.sh(key, "ip", "addr", "add", h + "/32", "dev", "lo")
        self._veth("d1", "site", "d2", "site")
        self.sh("d1", "ip", "addr", "add", "169.254.12.1/30", "dev", "site")
        self.sh("d2", "ip", "addr", "add", "169.254.12.2/30", "dev", "site")
        self.sh("d1", "ip", "route", "add", "10.1.2.0/24", "via", "169.254.12.2")
        self.sh("d2", "ip", "route", "add", "10.1.1.0/24", "via", "169.254.12.1")

    def policy_routes(self):
        """Each instance's own traffic (IKE, ICMP) leaves through its own tap to its own next hop. The routes live
        on the taps, which meshgate makes: after each meshgate start (a restart takes them with the taps)."""
        for name, (addr, rtr, plen, table, veth, tap, _) in INSTANCES.items():
            if INTERIM:
                tap = veth
            wait_for(lambda: addr in self.sh("gw", "ip", "-4", "-o", "addr", "show", "dev", tap, check=False).stdout,
                     30, "meshgate to put %s on %s" % (addr, tap))
            if self.sh("gw", "ip", "rule", "list", "from", addr, "table", str(table)).stdout.strip() == "":
                self.sh("gw", "ip", "rule", "add", "from", addr, "table", str(table))
            self.sh("gw", "ip", "route", "replace", "default", "via", rtr, "dev", tap, "table", str(table))

    # ---- charons
    def plugin_dir(self, so):
        d = os.path.join(self.dir, "plugins")
        if not os.path.isdir(d):
            os.makedirs(d)
            for f in os.listdir(ikelab.PLUGINS):
                shutil.copy2(os.path.join(ikelab.PLUGINS, f), d)
            shutil.copy2(so, os.path.join(d, "libstrongswan-kernel-meshgate.so"))
        return d

    def gw_swanctl_conf(self):
        conns = ""
        for t, (inst, dev, if_id, esp) in TUNNELS.items():
            dpd = "dpd_delay = %ds" % self.gw_dpd_delay if self.gw_dpd_delay else ""
            conns += """
  %s {
    version = 2
    local_addrs = %s
    remote_addrs = %s
    proposals = aes128gcm16-prfsha256-ecp256
    %s
    local { auth = psk
      id = %s.lab }
    remote { auth = psk
      id = %s.lab }
    children {
      %s {
        local_ts = %s
        remote_ts = %s
        esp_proposals = %s
        if_id_in = %d
        if_id_out = %d
        rekey_time = 0
        dpd_action = clear
      }
    }
  }""" % (t, INSTANCES[inst][0], DEVICES[dev][1], dpd, inst, dev, t, INSIDE_NET, SITE, esp, if_id, if_id)
        return "connections {%s\n}\n%s" % (conns, self._secrets())

    def dev_swanctl_conf(self, dev):
        conns = ""
        for t, (inst, d, _, esp) in TUNNELS.items():
            if d != dev:
                continue
            conns += """
  %s {
    version = 2
    local_addrs = %s
    remote_addrs = %s
    proposals = aes128gcm16-prfsha256-ecp256
    local { auth = psk
      id = %s.lab }
    remote { auth = psk
      id = %s.lab }
    children {
      %s {
        local_ts = %s
        remote_ts = %s
        esp_proposals = %s
        rekey_time = 0
      }
    }
  }""" % (t, DEVICES[dev][1], INSTANCES[inst][0], dev, inst, t, SITE, INSIDE_NET, esp)
        return "connections {%s\n}\n%s" % (conns, self._secrets())

    @staticmethod
    def _secrets():
        ids = "".join("    id-%d = %s.lab\n" % (k, n) for k, n in enumerate(list(INSTANCES) + list(DEVICES)))
        return "secrets {\n  ike-lab {\n%s    secret = %s\n  }\n}\n" % (ids, PSK)

    def start_device(self, dev):
        key = DEVICES[dev][0]
        c = ikelab.Charon(self, dev, self.ns[key], "wan", "    kernel-libipsec {\n      load = 2\n    }\n",
                          self.dev_swanctl_conf(dev), delete_delay=2)
        c.load()
        return c

    def start_gw_charon(self, so, sock, name="gw-charon"):
        snippet = os.path.join(HERE, "..", "kernel-meshgate", "kernel-meshgate.conf")
        plugins = ("    include %s\n    kernel-meshgate {\n      socket = %s\n      timeout = 2000\n    }\n"
                   % (snippet, sock))
        taps = ",".join(v[4 if INTERIM else 5] for v in INSTANCES.values())
        c = ikelab.Charon(self, name, self.ns["gw"], taps, plugins, self.gw_swanctl_conf(), delete_delay=2,
                          plugin_dir=self.plugin_dir(so), retransmit=(1.0, 2))
        c.load()
        wait_for(lambda: "connected to meshgate gateway" in c.log_text(), 20, "the plugin connected to meshgate")
        return c

    # ---- background processes (traffic, captures)
    def spawn(self, key, cmd, name, ready=True):
        out = open(os.path.join(self.dir, name + ".log"), "w")
        p = subprocess.Popen(["ip", "netns", "exec", self.ns[key]] + cmd, stdout=subprocess.PIPE,
                             stderr=out, text=True, start_new_session=True)
        self.procs.append(p)
        if ready:
            line = p.stdout.readline()
            if "READY" not in line:
                p.wait(5)
                raise RuntimeError("%s did not start: %s %s" % (name, line, open(out.name).read()))
        return p

    def traffic(self, key, role, *args, name):
        return self.spawn(key, [PY, TRAFFIC, role] + [str(a) for a in args], name)

    def capture(self, key, ifc, name):
        """tcpdump of ESP in UDP and IKE on ifc, headers only (outer + SPI, sequence and IV)."""
        pcap = os.path.join(self.dir, name + ".pcap")
        p = self.spawn(key, ["tcpdump", "-i", ifc, "-s", "96", "-B", "16384", "-U", "-n", "-w", pcap, "udp port 4500"],
                       name, ready=False)
        wait_for(lambda: "listening on" in open(os.path.join(self.dir, name + ".log")).read() or p.poll() is not None,
                 15, "tcpdump on " + ifc)
        return p, pcap

    @staticmethod
    def stop(p, timeout=20):
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)

    def close(self):
        if self.mg is not None:
            self.mg.stop()
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)
        for c in self.charons:
            c.stop()
        for ns in self.ns.values():
            run(["ip", "netns", "del", ns], check=False)
        if self.keep:
            print("lab files kept in " + self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            for c in self.charons:
                print("---- %s log (last 40 lines) ----" % c.name)
                print("\n".join(c.log_text().splitlines()[-40:]))
            if self.mg is not None:
                print("---- meshgate log (last 40 lines) ----")
                print("\n".join(self.mg.log_text().splitlines()[-40:]))
        self.close()
        return False


class Meshgate:
    """meshgate in the gw namespace: two instances on net_af_packet, each with its exception tap, one worker."""

    def __init__(self, lab, mg_bin, ctl):
        self.lab, self.bin, self.ctl = lab, mg_bin, ctl
        self.name = "e2e%s" % lab.tag
        self.sock = os.path.join(lab.dir, "keying.sock")
        self.state = os.path.join(lab.dir, "state")
        os.makedirs(self.state, exist_ok=True)
        self.cfg = self._config()
        self.proc, self.runs = None, 0
        lab.mg = self

    def _config(self):
        d = self.lab.dir
        pmd = os.path.join(d, "pmd.toml")
        ports = ['[[port]]\nname = "inside"\ndevargs = "net_af_packet0,iface=gi,framecnt=4096"\n']
        k = 1
        for name, (_, _, _, _, veth, tap, _) in INSTANCES.items():
            if INTERIM:
                ports.append('[[port]]\nname = "out-%s"\ndevargs = "net_af_packet%d,iface=%s,framecnt=4096"\n'
                             % (name, k, veth))
            else:
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
            out += ['[[instance]]', 'name = "%s"' % name, 'ipv4 = "%s"' % addr,
                    'port = "out-%s"' % name, '']
            if not INTERIM:
                out.insert(-2, 'ipv4_prefix_len = %d' % plen)
        for name, (_, addr, _, _) in DEVICES.items():   # no next_hop_mac: the kernel's neighbour table gives it
            out += ['[[device]]', 'name = "%s"' % name, 'ipv4 = "%s"' % addr, '']
            if INTERIM:
                out.insert(-1, 'next_hop_mac = "%s"' % RT_MACS["gw-a"])
        for t, (inst, dev, if_id, _) in TUNNELS.items():
            out += ['[[tunnel]]', 'name = "%s"' % t, 'instance = "%s"' % inst, 'device = "%s"' % dev, 'weight = 1',
                    'keying = "ike"', 'if_id = %d' % if_id, '']
        with open(cfg, "w") as f:
            f.write("\n".join(out))
        return cfg

    def log_text(self):
        try:
            return "".join(open(os.path.join(self.lab.dir, "meshgate-%d.log" % k)).read() for k in range(self.runs))
        except OSError:
            return ""

    def start(self):
        log = open(os.path.join(self.lab.dir, "meshgate-%d.log" % self.runs), "w")
        self.runs += 1
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.lab.ns["gw"], self.bin, "-c", self.cfg,
                                      "--control-name", self.name, "--duration", "900",
                                      "--stats-json", os.path.join(self.lab.dir, "stats-%d.json" % (self.runs - 1))],
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: self.proc.poll() is not None or (os.path.exists(self.sock) and self.ctl_json("show",
                 "tunnels") is not None), 60, "meshgate's keying socket and control block")
        assert self.proc.poll() is None, "meshgate exited at start:\n" + self.log_text()[-3000:]
        self.lab.policy_routes()

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


def esp_headers(pcap):
    """(time, outer src, outer dst, SPI, sequence, IV) of every ESP-in-UDP packet of an Ethernet capture, read with
    scapy's pcap reader; IKE (zero marker) and keepalives left out."""
    from scapy.utils import RawPcapReader
    out = []
    for data, meta in RawPcapReader(pcap):
        if len(data) < 14 + 20 + 8 + 16 or data[12:14] != b"\x08\x00" or data[23] != 17:
            continue
        ihl = (data[14] & 0x0F) * 4
        u = 14 + ihl
        esp = data[u + 8:]
        if len(esp) < 16 or esp[:4] == b"\0\0\0\0":
            continue
        src, dst = ".".join(map(str, data[26:30])), ".".join(map(str, data[30:34]))
        spi, seq = struct.unpack("!II", esp[:8])
        out.append((meta.sec + meta.usec / 1e6, src, dst, spi, seq, bytes(esp[8:16])))
    return out


def tcpdump_drops(log):
    """Packets tcpdump says the kernel dropped (its closing line), so a reader knows how complete a capture is."""
    for line in open(log):
        if "dropped by kernel" in line:
            return int(line.split()[0])
    return None


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
