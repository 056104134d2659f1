#!/usr/bin/python3
"""BGP over the tunnels with BIRD, end to end: two meshgate processes face each other over two veth pairs (net_af_packet
on both ends), each in its own network namespace with its own BIRD. The "near" one is the gateway (instances gw-a,
gw-b; tunnels a-1 and b-2, each with its kernel interface); the "far" one plays the on-premises devices d1 and d2 (the
mirror config: SAs swapped). BIRD runs eBGP with BFD between the tunnels' inner addresses, through the tunnels:
the far BIRD announces 10.128.0.0/16 over a-1 only and 10.129.0.0/16 over both; the near BIRD puts what it learns
into kernel table 100, which the near meshgate learns its routes from ([routing] kernel_table).

Checked, in this order:
  1. both BGP sessions come up through the tunnels (their packets are ESP on the wire: nothing else connects them);
  2. the near meshgate learns both routes: 10.128/16 through a-1 alone, 10.129/16 through a-1 and b-2 (BIRD's
     multipath route); inside traffic to 10.128 arrives at the far side on tunnel a-1 only (the far meshgate's
     counters), traffic to 10.129 on both tunnels;
  3. tunnel a-1's wire cut (its veth down): BFD notices, BIRD withdraws, meshgate's table follows: 10.128 is not
     routed any more, every flow to 10.129 uses b-2; the time from the cut to meshgate's new route table is reported;
  4. the wire back: the session returns and so do the routes;
  5. announcing ([routing] announce_table = 101): a third BIRD, the inside router ("lan" namespace, on the near
     meshgate's inside port, a net_af_packet port whose kernel twin carries the gateway's inside address
     192.168.100.1/30), learns from the near BIRD what the near meshgate can reach now, and its kernel routes the
     inside hosts' traffic (steps 2 and 3) through the gateway; `tunnel a-1 down` / `up` twenty times: each
     withdraws and re-announces 10.128/16 at the inside router (command to the router's log: p50 and p99 reported);
     then a-1's wire cut again: meshgate's liveness verdict (20 ms x 3) withdraws 10.128/16 at the inside router
     before BFD (5 x 100 ms) would (verdict to the router's log reported); towards the devices, `tunnel a-1 down`
     withdraws [routing] device_prefixes from a-1's session only (the device keeps them over b-2), `up` brings them
     back;
  6. both meshgates exit 0 with every mbuf back.
Needs root and Debian's bird2 and python3-scapy; exit 77 without them."""
import argparse
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
from labutil import NsLab, run, wait_for  # noqa: E402

SKIP = 77
KEYS = {"a_out": "4b1d2c3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c", "a_in": "c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0",
        "b_out": "0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b", "b_in": "9f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c"}

# Inside traffic, from the inside router's namespace: its kernel routes what its BIRD learned from the gateway
# (through the gateway's inside address, whose ARP the inside twin answers) into meshgate's inside port.
SEND = r"""
import socket, sys, time
dst, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('10.1.200.1', 40000))
for i in range(count):
    s.sendto(b'x' * 32, (dst, first + i))
    time.sleep(0.002)
"""


def gateway_toml(name, pmd, state, inside, mine, theirs, tunnels, routing, inside_extra="", tunnel_extra=None):
    """A gateway file: instances `mine` (name, ip, port), devices `theirs` (name, ip, mac), tunnels (name, instance,
    device, interface, local, peer, out key, out spi, in key, in spi)."""
    t = '[gateway]\nname = "%s"\npmd_config = "%s"\nstate_dir = "%s"\n' % (name, pmd, state)
    t += '[inside]\nport = "inside"\nprefixes = ["%s"]\nnext_hop_mac = "02:00:00:00:00:01"\n%s' % (inside, inside_extra)
    t += routing
    for n, ip, port in mine:
        t += '[[instance]]\nname = "%s"\nipv4 = "%s"\nport = "%s"\n' % (n, ip, port)
    for n, ip, mac in theirs:
        t += '[[device]]\nname = "%s"\nipv4 = "%s"\nnext_hop_mac = "%s"\n' % (n, ip, mac)
    for n, inst, dev, ifc, local, peer, ko, so, ki, si in tunnels:
        t += ('[[tunnel]]\nname = "%s"\ninstance = "%s"\ndevice = "%s"\ninterface = "%s"\n' +
              (tunnel_extra or {}).get(n, "") + '[tunnel.liveness]\nprobe_source = "%s"\nprobe_address = "%s"\n'
              '[tunnel.out]\nspi = %d\ncipher = "aes-gcm-128"\nkey = "%s"\n'
              '[tunnel.in]\nspi = %d\ncipher = "aes-gcm-128"\nkey = "%s"\n') % (n, inst, dev, ifc, local, peer, so,
                                                                                 ko, si, ki)
    return t


BIRD_NEAR = """
router id 10.255.0.1;
log "%(dir)s/bird-near.log" all;
timeformat log "%%F %%T.%%3f";
protocol device { scan time 1; }
protocol kernel k100 {
  kernel table 100;
  merge paths on;                 # a prefix learned over several tunnels: one multipath route
  ipv4 { import none; export where source = RTS_BGP; };
}
# What each device should send into its tunnel: meshgate keeps it in table 1001 (a-1) / 1002 (b-2) while that
# tunnel is up. One BIRD table per tunnel; what BGP learns there goes on to master4 through a pipe.
ipv4 table t_a1;
ipv4 table t_b2;
protocol kernel k1001 { kernel table 1001; learn; ipv4 { table t_a1; import where krt_source = 200; export none; }; }
protocol kernel k1002 { kernel table 1002; learn; ipv4 { table t_b2; import where krt_source = 200; export none; }; }
protocol pipe p_a1 { table master4; peer table t_a1; import where source = RTS_BGP; export none; }
protocol pipe p_b2 { table master4; peer table t_b2; import where source = RTS_BGP; export none; }
protocol bfd { interface "mgn-*" { interval 100 ms; multiplier 5; }; }
template bgp to_dev {
  local as 65000;
  hold time 6; keepalive time 2; connect retry time 1; error wait time 1, 5;
  bfd on;
}
protocol bgp d1 from to_dev { neighbor 169.254.10.2 as 65001;
  ipv4 { table t_a1; import all; export where source = RTS_INHERIT; }; }
protocol bgp d2 from to_dev { neighbor 169.254.11.2 as 65001;
  ipv4 { table t_b2; import all; export where source = RTS_INHERIT; }; }
# Towards the inside router: what meshgate says this box can reach now (table 101), in a BIRD table of its own.
ipv4 table announce4;
protocol kernel k101 { kernel table 101; learn; ipv4 { table announce4; import all; export none; }; }
protocol bgp lan {
  local as 65000; neighbor 192.168.100.2 as 65100;
  hold time 6; keepalive time 2; connect retry time 1;
  ipv4 { table announce4; import none; export all; next hop self; };
}
"""

BIRD_LAN = """
router id 10.255.0.3;
log "%(dir)s/bird-lan.log" all;
timeformat log "%%F %%T.%%3f";
protocol device { scan time 1; }
protocol kernel { ipv4 { import none; export all; }; }   # the inside hosts' traffic follows the gateway's routes
protocol bgp to_gw {
  local as 65100; neighbor 192.168.100.1 as 65000;
  hold time 6; keepalive time 2; connect retry time 1;
  debug { routes };
  ipv4 { import all; export none; };
}
"""

BIRD_FAR = """
router id 10.255.0.2;
log "%(dir)s/bird-far.log" all;
protocol device { scan time 1; }
protocol static onprem { ipv4; route 10.128.0.0/16 blackhole; route 10.129.0.0/16 blackhole; }
protocol bfd { interface "mgf-*" { interval 100 ms; multiplier 5; }; }
template bgp to_gw {
  local as 65001;
  hold time 6; keepalive time 2; connect retry time 1; error wait time 1, 5;
  bfd on;
}
protocol bgp ga from to_gw { neighbor 169.254.10.1 as 65000; ipv4 { import all; export where proto = "onprem"; }; }
protocol bgp gb from to_gw { neighbor 169.254.11.1 as 65000;
  ipv4 { import all; export where proto = "onprem" && net = 10.129.0.0/16; }; }
"""


class Lab(NsLab):
    def __init__(self, meshgate, ctl):
        super().__init__("mgb")
        self.meshgate, self.ctl = meshgate, ctl
        # The far meshgate owns the device side's veths as well: that namespace's kernel keeps off them too.
        for side in ("a", "b"):
            self.ns(self.dev, "ip", "link", "set", "vp-" + side, "arp", "off")
            self.ns(self.dev, "sysctl", "-qw", "net.ipv6.conf.vp-%s.disable_ipv6=1" % side,
                    "net.ipv4.conf.vp-%s.rp_filter=1" % side)
        self.far = None
        self.birds = []
        self.lan = "mgb-lan-%d" % os.getpid()

    def start(self):
        mac = {s: self.mac(self.gw, "vo-" + s) for s in "ab"}
        fmac = {s: self.mac(self.dev, "vp-" + s) for s in "ab"}
        # The inside router: a namespace of its own, on meshgate's inside port (lan0, DPDK's: that kernel keeps off
        # it), which has a kernel twin (mgn-tw) with the gateway's inside address 192.168.100.1/30.
        run(["ip", "netns", "add", self.lan])
        run(["ip", "link", "add", "lan0", "netns", self.gw, "type", "veth", "peer", "name", "lan1", "netns", self.lan])
        self.ns(self.gw, "ip", "link", "set", "lan0", "arp", "off")
        self.ns(self.gw, "sysctl", "-qw", "net.ipv6.conf.lan0.disable_ipv6=1", "net.ipv4.conf.lan0.rp_filter=1")
        for ns, ifc in ((self.gw, "lan0"), (self.lan, "lan1")):
            self.ns(ns, "ip", "link", "set", ifc, "up")
            self.ns(ns, "ethtool", "-K", ifc, "tx", "off")
        self.ns(self.lan, "ip", "link", "set", "lo", "up")
        self.ns(self.lan, "ip", "addr", "add", "192.168.100.2/30", "dev", "lan1")
        self.ns(self.lan, "ip", "addr", "add", "10.1.200.1/32", "dev", "lo")   # the inside hosts' source
        near_pmd = self.write_pmd([("inside", "net_af_packet2,iface=lan0", 'host = "inside-twin"\n'),
                                   ("inside-twin", "net_tap0,iface=mgn-tw", ""),
                                   ("out-a", "net_af_packet0,iface=vo-a", ""),
                                   ("out-b", "net_af_packet1,iface=vo-b", "")])
        far_dir = os.path.join(self.dir, "far")
        os.makedirs(far_dir)
        far_pmd = os.path.join(far_dir, "pmd.toml")
        # The far process: its own EAL prefix, its worker on CPU 0 and main on CPU 1 (the near one's worker is on
        # CPU 1): two polling workers never share a CPU of a 2-CPU host.
        with open(far_pmd, "w") as f:
            f.write('[eal]\nargs = ["--no-huge", "-m", "512", "--no-pci", "--lcores", "0@1,1@0", "--file-prefix", '
                    '"%sf"]\n[workers]\nlcores = [1]\nmbufs = 8191\n' % self.name)
            for name, devargs in (("inside", "net_tap0,iface=mgf-in"), ("d1", "net_af_packet0,iface=vp-a"),
                                  ("d2", "net_af_packet1,iface=vp-b")):
                f.write('[[port]]\nname = "%s"\ndevargs = "%s"\nrx_desc = 256\ntx_desc = 256\n' % (name, devargs))
        for d in (os.path.join(self.dir, "state"), os.path.join(far_dir, "state")):
            os.makedirs(d)
        near = os.path.join(self.dir, "near.toml")
        with open(near, "w") as f:
            f.write(gateway_toml(
                "near", near_pmd, os.path.join(self.dir, "state"), "10.1.0.0/16",
                [("gw-a", "192.0.2.1", "out-a"), ("gw-b", "198.51.100.1", "out-b")],
                [("d1", "192.0.2.2", fmac["a"]), ("d2", "198.51.100.2", fmac["b"])],
                [("a-1", "gw-a", "d1", "mgn-a1", "169.254.10.1", "169.254.10.2", KEYS["a_out"], 0x1001, KEYS["a_in"],
                  0x2001),
                 ("b-2", "gw-b", "d2", "mgn-b2", "169.254.11.1", "169.254.11.2", KEYS["b_out"], 0x1002, KEYS["b_in"],
                  0x2002)],
                "[routing]\nkernel_table = 100\nannounce_table = 101\ndevice_prefixes = [\"10.1.0.0/16\"]\n"
                "[liveness]\ninterval_ms = 20\nmultiplier = 3\nhold_down_ms = 500\n",
                inside_extra='ipv4 = "192.168.100.1"\nipv4_prefix_len = 30\n',
                tunnel_extra={"a-1": "announce_table = 1001\n", "b-2": "announce_table = 1002\n"}))
        far = os.path.join(far_dir, "far.toml")
        with open(far, "w") as f:
            f.write(gateway_toml(
                "far", far_pmd, os.path.join(far_dir, "state"), "10.1.0.0/16",
                [("d1", "192.0.2.2", "d1"), ("d2", "198.51.100.2", "d2")],
                [("gw-a", "192.0.2.1", mac["a"]), ("gw-b", "198.51.100.1", mac["b"])],
                [("1-a", "d1", "gw-a", "mgf-a1", "169.254.10.2", "169.254.10.1", KEYS["a_in"], 0x2001, KEYS["a_out"],
                  0x1001),
                 ("2-b", "d2", "gw-b", "mgf-b2", "169.254.11.2", "169.254.11.1", KEYS["b_in"], 0x2002, KEYS["b_out"],
                  0x1002)],
                "[liveness]\nenabled = false\nreflect = true\n"))   # answers the near side's probes
        self.far_log = open(os.path.join(far_dir, "meshgate.log"), "w")
        self.far = subprocess.Popen(["ip", "netns", "exec", self.dev, self.meshgate, "-c", far, "--control-name",
                                     self.name + "f", "--stats-json", os.path.join(far_dir, "report.json"),
                                     "--duration", "600"], stdout=self.far_log, stderr=subprocess.STDOUT)
        self.far_report = os.path.join(far_dir, "report.json")
        self.start_meshgate(self.meshgate, near, lambda: "routes: learning from kernel table 100" in self.log_text(),
                            "the near meshgate")
        wait_for(lambda: self.far.poll() is not None or run(["ip", "-n", self.dev, "link", "show", "mgf-b2"],
                                                              check=False).returncode == 0, 60, "the far meshgate")
        assert self.far.poll() is None, "far meshgate exited: " + open(self.far_log.name).read()[-3000:]
        for ns, text, tag in ((self.gw, BIRD_NEAR, "near"), (self.dev, BIRD_FAR, "far"), (self.lan, BIRD_LAN, "lan")):
            conf = os.path.join(self.dir, "bird-%s.conf" % tag)
            with open(conf, "w") as f:
                f.write(text % {"dir": self.dir})
            sock = os.path.join(self.dir, "bird-%s.ctl" % tag)
            out = open(os.path.join(self.dir, "bird-%s.out" % tag), "w")
            self.birds.append(subprocess.Popen(["ip", "netns", "exec", ns, "bird", "-f", "-c", conf, "-s", sock,
                                                "-P", os.path.join(self.dir, "bird-%s.pid" % tag)],
                                               stdout=out, stderr=subprocess.STDOUT))
        self.near_sock = os.path.join(self.dir, "bird-near.ctl")
        time.sleep(1)
        for b, tag in zip(self.birds, ("near", "far", "lan")):
            assert b.poll() is None, "bird (%s) exited: %s" % (tag, open(os.path.join(self.dir, "bird-%s.out" % tag)).read())

    def birdc(self, *cmd):
        return run(["birdc", "-s", self.near_sock] + list(cmd), check=False).stdout

    def established(self, proto):
        return re.search(r"^%s\s+BGP\s+\S+\s+up\s+\S+\s+Established" % proto, self.birdc("show", "protocols"),
                         re.M) is not None

    def counters(self, name):
        return json.loads(run([self.ctl, "--gateway", name, "-j", "show", "counters"]).stdout)

    def far_in(self):
        return {t["name"]: t["packets_in"] for t in self.counters(self.name + "f")["tunnels"]}

    def send(self, dst, first, count):
        run(["ip", "netns", "exec", self.lan, "/usr/bin/python3", "-c", SEND, dst, str(first), str(count)],
            timeout=120)

    def close(self):
        for b in self.birds:
            if b.poll() is None:
                b.terminate()
                try:
                    b.wait(10)
                except subprocess.TimeoutExpired:
                    b.kill()
        if self.far and self.far.poll() is None:
            self.far.send_signal(signal.SIGINT)
            try:
                self.far.wait(60)
            except subprocess.TimeoutExpired:
                self.far.kill()
        run(["rm", "-rf", "/var/run/dpdk/" + self.name + "f"], check=False)
        run(["ip", "netns", "del", self.lan], check=False)
        super().close()


def stamp_mg(line):
    """The time of a meshgate log line (2026-11-30T19:51:56.390Z ...), in seconds."""
    return datetime.datetime.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def lan_removed(d):
    """Times at which the inside router's BIRD logged 10.128.0.0/16 removed (its clock: the host's, UTC)."""
    out = []
    with open(os.path.join(d, "bird-lan.log")) as f:
        for line in f:
            if "removed" in line and "10.128.0.0/16" in line:
                p = line.split()
                out.append(datetime.datetime.strptime(p[0] + " " + p[1], "%Y-%m-%d %H:%M:%S.%f").astimezone(
                    datetime.timezone.utc).timestamp())
    return out


def latencies(starts, ends):
    """ms from each start to the first end after it."""
    out = []
    for s in starts:
        after = [e for e in ends if e >= s - 0.002]
        if after:
            out.append((after[0] - s) * 1000)
    return out


def lan_kernel(lab):
    return run(["ip", "-n", lab.lan, "route", "show"]).stdout


def table100(lab):
    return run(["ip", "-n", lab.gw, "route", "show", "table", "100"]).stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--meshgate", required=True)
    ap.add_argument("--meshgatectl", required=True)
    args = ap.parse_args()
    for path, pkg in (("/usr/sbin/bird", "bird2"), ("/usr/lib/python3/dist-packages/scapy", "python3-scapy"),
                      ("/usr/sbin/ethtool", "ethtool")):
        if not os.path.exists(path):
            print("SKIP: missing Debian package " + pkg)
            return SKIP
    if os.geteuid() != 0:
        print("FAIL: needs root (network namespaces, TUN)")
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    # The example shipped for configs/gateway-bgp.toml parses (bird -p: configuration check only).
    example = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "configs", "bird-gateway.conf")
    r = run(["bird", "-p", "-c", example], check=False)
    assert r.returncode == 0, "configs/bird-gateway.conf: " + r.stderr
    lab = Lab(args.meshgate, args.meshgatectl)
    try:
        lab.start()
        # 1. Sessions through the tunnels.
        t0 = time.monotonic()
        wait_for(lambda: lab.established("d1") and lab.established("d2"), 90, "both BGP sessions Established")
        print("1. BGP d1 and d2 Established through the tunnels after %.1f s" % (time.monotonic() - t0))

        # 2. Routes learned; traffic follows them.
        wait_for(lambda: lab.counters(lab.name)["gateway"]["routes_learned"] == 2 and
                 "nexthop" in table100(lab), 60, "two routes learned, one multipath")
        print("   table 100:\n" + "".join("     " + x + "\n" for x in table100(lab).splitlines()))
        # The inside router's kernel routes the prefixes its BGP session through the inside twin brought.
        wait_for(lambda: all(p in lan_kernel(lab) for p in ("10.128.0.0/16", "10.129.0.0/16")), 90,
                 "the inside router routing 10.128/16 and 10.129/16 to the gateway")
        print("   inside router (BGP through meshgate's inside port and its twin): " +
              "; ".join(x for x in lan_kernel(lab).splitlines() if "bird" in x))
        before = lab.far_in()
        lab.send("10.128.0.5", 1000, 32)
        wait_for(lambda: lab.far_in()["1-a"] - before["1-a"] >= 32, 30, "32 packets on 1-a")
        time.sleep(0.5)
        after = lab.far_in()
        assert after["1-a"] - before["1-a"] == 32 and after["2-b"] == before["2-b"], (before, after)
        lab.send("10.129.0.5", 2000, 64)
        wait_for(lambda: sum(lab.far_in().values()) - sum(after.values()) >= 64, 30, "64 packets to 10.129")
        got = lab.far_in()
        da, db = got["1-a"] - after["1-a"], got["2-b"] - after["2-b"]
        assert da + db == 64 and da > 0 and db > 0, (da, db)
        print("2. 10.128/16: 32 of 32 flows on a-1; 10.129/16: %d on a-1, %d on b-2" % (da, db))

        # 3. a-1's wire cut.
        upd = lab.counters(lab.name)["gateway"]["route_updates"]
        t_cut = time.monotonic()
        lab.ns(lab.dev, "ip", "link", "set", "vp-a", "down")
        wait_for(lambda: lab.counters(lab.name)["gateway"]["routes_learned"] == 1 and
                 lab.counters(lab.name)["gateway"]["route_updates"] > upd, 60, "10.128/16 withdrawn")
        t_gone = time.monotonic() - t_cut
        before = lab.far_in()
        lab.send("10.129.0.5", 2000, 64)
        wait_for(lambda: lab.far_in()["2-b"] - before["2-b"] >= 64, 30, "64 packets on 2-b")
        after = lab.far_in()
        assert after["2-b"] - before["2-b"] == 64 and after["1-a"] == before["1-a"], (before, after)
        print("3. a-1 cut: routes followed in %.2f s (BFD 5 x 100 ms, then BIRD and meshgate); 64 of 64 flows to "
              "10.129 on b-2" % t_gone)

        # 4. The wire back.
        lab.ns(lab.dev, "ip", "link", "set", "vp-a", "up")
        wait_for(lambda: lab.counters(lab.name)["gateway"]["routes_learned"] == 2, 90, "the routes back")
        print("4. a-1 back: both routes learned again")

        # 5. Announcing to the inside router.
        lan_sock = os.path.join(lab.dir, "bird-lan.ctl")

        def lan_routes():
            return set(re.findall(r"^(\d+\.\d+\.\d+\.\d+/\d+)", run(["birdc", "-s", lan_sock, "show", "route"],
                                                                       check=False).stdout, re.M))

        want = {"10.1.0.0/16", "10.128.0.0/16", "10.129.0.0/16"}
        wait_for(lambda: lan_routes() == want, 90, "the inside router learning %s" % want)
        cmd_t = []  # the test's clock just before meshgatectl starts: an upper bound (its start-up is included)
        for i in range(20):
            for cmd, present in (("down", False), ("up", True)):
                if cmd == "down":
                    cmd_t.append(time.time())
                run([lab.ctl, "--gateway", lab.name, "tunnel", "a-1", cmd])
                wait_for(lambda: ("10.128.0.0/16" in lan_routes()) == present, 30,
                         "10.128/16 %s at the inside router" % ("back" if present else "withdrawn"))
        gone = lan_removed(lab.dir)
        lat = sorted(latencies(cmd_t, gone))
        assert len(lat) == 20, (len(cmd_t), len(gone), lat)
        p50, p99 = lat[len(lat) // 2], lat[-1]
        print("5. inside router: %s; `tunnel a-1 down` (from meshgatectl's start) to the withdrawal of 10.128/16 in "
              "the inside router's log, 20 times: p50 %.1f ms, p99 %.1f ms (max of 20)" % (sorted(want), p50, p99))
        assert p99 < 5000, lat  # generous: a shared 2-CPU host; the figures above are what is reported
        # Towards the devices: 10.1.0.0/16 ([routing] device_prefixes) from each tunnel's table, per session.
        far_sock = os.path.join(lab.dir, "bird-far.ctl")

        def far_sessions():
            out = run(["birdc", "-s", far_sock, "show", "route", "10.1.0.0/16"], check=False).stdout
            return set(re.findall(r"\[(ga|gb) ", out))

        wait_for(lambda: far_sessions() == {"ga", "gb"}, 60, "the device learning 10.1/16 over both tunnels")
        dev_ms = []
        for cmd, want in (("down", {"gb"}), ("up", {"ga", "gb"})) * 5:
            t0 = time.monotonic()
            run([lab.ctl, "--gateway", lab.name, "tunnel", "a-1", cmd])
            wait_for(lambda: far_sessions() == want, 30, "the device's routes to 10.1/16 over %s" % sorted(want))
            dev_ms.append((time.monotonic() - t0) * 1000)
        print("   devices: 10.1/16 withdrawn from a-1's session and announced again, 5 times each: %s ms (meshgatectl "
              "start and birdc polling included)" % " ".join("%.0f" % x for x in dev_ms))
        # A liveness verdict: a-1's wire cut while BFD (5 x 100 ms) and liveness (3 x 20 ms) both watch it.
        n_gone = len(lan_removed(lab.dir))
        lab.ns(lab.dev, "ip", "link", "set", "vp-a", "down")
        wait_for(lambda: "10.128.0.0/16" not in lan_routes(), 60, "10.128/16 withdrawn after the cut")
        verdicts = [stamp_mg(x) for x in lab.log_text().splitlines() if "liveness: tunnel a-1 up -> down" in x]
        assert verdicts, "a liveness verdict for a-1"
        v_lat = latencies(verdicts[-1:], lan_removed(lab.dir)[n_gone:])
        assert v_lat, (verdicts, lan_removed(lab.dir)[n_gone:])
        lab.ns(lab.dev, "ip", "link", "set", "vp-a", "up")

        rc = lab.stop()
        assert rc == 0, "near meshgate exit %s:\n%s" % (rc, lab.log_text()[-3000:])
        lab.far.send_signal(signal.SIGINT)
        assert lab.far.wait(60) == 0, open(lab.far_log.name).read()[-3000:]
        for rep in (lab.report, lab.far_report):
            r = json.load(open(rep))
            assert r["mbufs_in_use_at_exit"] == 0, (rep, r["mbufs_in_use_at_exit"])
        # The audit line of a verdict is written once its state is published: add the publish time it reports.
        ev = [e for e in json.load(open(lab.report))["liveness_events"] if e["event"] == "liveness:a-1:down"]
        pub_ms = ev[-1]["publish_us"] / 1000 if ev else 0
        print("   a-1's wire cut: liveness verdict to the withdrawal in the inside router's log %.1f ms (%.1f of them "
              "meshgate's publish, announce table included)" % (v_lat[0] + pub_ms, pub_ms))
        print("BGP over the tunnels: all checks passed")
        return 0
    except Exception:
        print("near meshgate log:\n" + lab.log_text()[-3000:])
        for f in ("bird-near.log", "bird-far.log"):
            p = os.path.join(lab.dir, f)
            if os.path.exists(p):
                print(f + ":\n" + open(p).read()[-3000:])
        print("birdc show protocols:\n" + lab.birdc("show", "protocols"))
        raise
    finally:
        lab.close()


if __name__ == "__main__":
    sys.exit(main())
