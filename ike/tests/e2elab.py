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

IKE_LAB_KEEP=1 keeps the lab's directory (configs, logs, captures, traffic results)."""
import os
import signal
import subprocess
import sys

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
# The router's MACs on the instances' links: distinct, so a next hop resolved for the wrong instance is lost.
RT_MACS = {"gw-a": "02:00:00:0b:00:01", "gw-b": "02:00:00:0b:00:02"}


def _conn(name, local, remote, local_id, remote_id, local_ts, remote_ts, esp, ike_extra="", child_extra=""):
    """One swanctl connection with its one CHILD_SA of the same name; rekeys only when asked (the tests drive them)."""
    return """
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
        rekey_time = 0
        %s
      }
    }
  }""" % (name, local, remote, ike_extra, local_id, remote_id, name, local_ts, remote_ts, esp, child_extra)


class Lab(ikelab.LabBase):
    def __init__(self, gw_dpd_delay=0):
        super().__init__("ike-e2e-")
        tag = str(os.getpid())
        self.tag = tag
        self.ns = {k: "e2e-%s-%s" % (k, tag) for k in ("gw", "rt", "d1", "d2", "in")}
        self.procs = []
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

    def _dpdk_owned(self, ifc, key="gw"):
        # The gw namespace's kernel must not answer on the ports meshgate owns (a NIC bound to DPDK is not the
        # kernel's at all): no ARP on them, and strict reverse-path filtering drops IP for the instance addresses
        # arriving there (their routes go out of the taps), so IKE reaches charon only through meshgate. Packet
        # sockets (net_af_packet) still see every frame. (No tc drop: this kernel has no gact/matchall.)
        self.sh(key, "ip", "link", "set", ifc, "arp", "off")
        self.sh(key, "sysctl", "-qw", "net.ipv4.conf.%s.rp_filter=1" % ifc)

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

    def policy_routes(self, mg=None):
        """Each instance's own traffic (IKE, ICMP) leaves through its own tap to its own next hop. The routes live
        on the taps, which meshgate makes: after each meshgate start (a restart takes them with the taps)."""
        for name, (addr, rtr, plen, table, _, tap, _) in INSTANCES.items():
            wait_for(lambda: addr in self.sh("gw", "ip", "-4", "-o", "addr", "show", "dev", tap, check=False).stdout,
                     30, "meshgate to put %s on %s" % (addr, tap))
            if self.sh("gw", "ip", "rule", "list", "from", addr, "table", str(table)).stdout.strip() == "":
                self.sh("gw", "ip", "rule", "add", "from", addr, "table", str(table))
            self.sh("gw", "ip", "route", "replace", "default", "via", rtr, "dev", tap, "table", str(table))

    # ---- charons
    def gw_swanctl_conf(self):
        dpd = "dpd_delay = %ds" % self.gw_dpd_delay if self.gw_dpd_delay else ""
        conns = "".join(_conn(t, INSTANCES[inst][0], DEVICES[dev][1], inst, dev, INSIDE_NET, SITE, esp, dpd,
                              "if_id_in = %d\n        if_id_out = %d\n        dpd_action = clear" % (if_id, if_id))
                        for t, (inst, dev, if_id, esp) in TUNNELS.items())
        return "connections {%s\n}\n%s" % (conns, self._secrets())

    def dev_swanctl_conf(self, dev):
        conns = "".join(_conn(t, DEVICES[dev][1], INSTANCES[inst][0], dev, inst, SITE, INSIDE_NET, esp)
                        for t, (inst, d, _, esp) in TUNNELS.items() if d == dev)
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
        # kernel-libipsec's TUN device: its queue holds what the device's hosts send while charon (userspace ESP)
        # is off the CPU on this busy box; the default 500 is the device's weak spot, not the gateway's.
        wait_for(lambda: self.sh(key, "ip", "link", "show", "ipsec0", check=False).returncode == 0, 20,
                 "%s's ipsec0" % dev)
        self.sh(key, "ip", "link", "set", "ipsec0", "txqueuelen", "10000")
        return c

    def start_gw_charon(self, so, sock, name="gw-charon"):
        snippet = os.path.join(HERE, "..", "kernel-meshgate", "kernel-meshgate.conf")
        plugins = ("    include %s\n    kernel-meshgate {\n      socket = %s\n      timeout = 2000\n    }\n"
                   % (snippet, sock))
        taps = ",".join(v[5] for v in INSTANCES.values())
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

    def capture(self, key, ifc, name, what="udp port 4500"):
        """tcpdump of what (default ESP in UDP and IKE) on ifc, headers only (outer + SPI, sequence and IV)."""
        pcap = os.path.join(self.dir, name + ".pcap")
        p = self.spawn(key, ["tcpdump", "-i", ifc, "-s", "96", "-B", "16384", "-U", "-n", "-w", pcap, what],
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

    def namespaces(self):
        return list(self.ns.values())

    def stop_processes(self):
        if self.mg is not None:
            self.mg.stop()
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)

    def logs(self):
        return super().logs() + ([("meshgate", self.mg.log_text())] if self.mg is not None else [])
