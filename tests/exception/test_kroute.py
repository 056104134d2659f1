#!/usr/bin/python3
"""Routes learned from a kernel table ([routing] kernel_table), end to end: meshgate in a network namespace with two
tunnels to one device, each tunnel with its kernel interface (mgk-a1, mgk-b1); routes are put into table 100 of
that namespace with `ip route`, as BIRD's kernel protocol would; inside traffic is written into the inside TAP by
scapy, and the device (scapy in its own namespace) decrypts every ESP frame, so where each flow went is read off
the wire, not from meshgate's counters.

Checked, in this order:
  1. without a route, 10.128.0.0/16 is not routed (not_routed); the [inside] prefix reaches both tunnels;
  2. `10.128.0.0/16 dev mgk-a1 table 100`: every flow to it leaves on a-1;
  3. the same route with a second next hop (multipath through mgk-b1): the flows already on a-1 stay there (no pin
     moved), new flows use both tunnels;
  4. the route moved to mgk-b1 alone: every flow to it leaves on b-1, and exactly the flows pinned on a-1 moved
     (moved_route);
  5. what cannot be a tunnel's route is refused and counted (out of another interface, a blackhole), its traffic
     not routed; a decrypted packet whose source is routed through the other tunnel is dropped (inner_selector);
  6. a flood of 2000 route changes is coalesced (far fewer route tables than changes), no packet of the steady
     [inside] flows is lost meanwhile, and the table settles on the last state;
  7. announcing (table 101): each prefix while a tunnel of its set takes new flows, out of that tunnel's interface;
     a tunnel down withdraws what only it reached, a drain moves the routes to another tunnel's interface, and the
     time from the command to the kernel's table is reported;
  8. exit 0 with every mbuf back and nothing left in table 101; a route of ours left there by an earlier run is
     removed at start, and after kill -9 the kernel has removed every announced route with the interfaces.
Needs root (namespaces, TUN, TAP). Exit 77 only when a Debian package it needs is missing."""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
from labutil import NsLab, run, wait_for  # noqa: E402

SKIP = 77
KEYS = {"a_out": "3e1c5a7b9d0f2e4a6c8b1d3f5a7c9e0b2d4f6a8c", "a_in": "9a8b7c6d5e4f30211203f4e5d6c7b8a9f0e1d2c3",
        "b_out": "1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e", "b_in": "f1e2d3c4b5a6978877665544332211ffeeddccbb"}

# The device: decrypts whatever arrives on vp-a (tunnel a-1) and vp-b (b-1) and logs (tunnel, inner dst, dport);
# on request sends one encrypted packet from a given inner source through a tunnel.
DEVICE = r"""
import json, sys, threading
from scapy.all import AsyncSniffer, Ether, IP, UDP, ICMP, Raw, sendp, conf
from scapy.layers.ipsec import ESP, SecurityAssociation
conf.verb = 0
K = json.loads(sys.argv[1])
port = {'a': sys.argv[2], 'b': sys.argv[3]}
mine = {'a': sys.argv[4], 'b': sys.argv[5]}
gw = {'a': '192.0.2.1', 'b': '198.51.100.1'}
def sa(spi, key, src, dst):
    return SecurityAssociation(ESP, spi=spi, crypt_algo='AES-GCM', crypt_key=bytes.fromhex(key),
                               tunnel_header=IP(src=src, dst=dst))
out = {0x1001: ('a-1', sa(0x1001, K['a_out'], gw['a'], '192.0.2.2')),
       0x1002: ('b-1', sa(0x1002, K['b_out'], gw['b'], '192.0.2.2'))}
inb = {'a': sa(0x2001, K['a_in'], '192.0.2.2', gw['a']), 'b': sa(0x2002, K['b_in'], '192.0.2.2', gw['b'])}
log = []
lock = threading.Lock()
def on(p):
    if not p.haslayer(ESP) or p[ESP].spi not in out:
        return
    name, s = out[p[ESP].spi]
    try:
        inner = s.decrypt(p[IP])
    except Exception:
        log.append([name, 'undecryptable', 0])
        return
    if inner.haslayer(UDP):
        with lock:
            log.append([name, inner[IP].dst, inner[UDP].dport])
sns = [AsyncSniffer(iface=i, filter='ip proto 50', prn=on, store=False) for i in ('vp-a', 'vp-b')]
for s in sns:
    s.start()
import time
time.sleep(1)
print('READY', flush=True)
for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == 'log':     # everything decrypted since the last 'log'
        time.sleep(float(cmd[1]))
        with lock:
            print(json.dumps(log), flush=True)
            log.clear()
    elif cmd[0] == 'send':  # send TUNNEL SRC: one UDP packet from inner SRC to 10.1.0.1 through the tunnel
        t, src = cmd[1], cmd[2]
        sendp(Ether(src=mine[t], dst=port[t]) / inb[t].encrypt(IP(src=src, dst='10.1.0.1') / UDP(sport=5, dport=9) /
              Raw(b'selector')), iface='vp-' + t)
        print('done', flush=True)
    elif cmd[0] == 'end':
        break
"""

# Inside traffic: UDP datagrams written into the inside TAP (meshgate's inside port reads them).
SEND = r"""
import sys
from scapy.all import Ether, IP, UDP, Raw, sendp, conf
conf.verb = 0
dst, first, count, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
f = [Ether(src='02:00:00:00:00:01', dst=sys.argv[5]) / IP(src='10.1.200.1', dst=dst) /
     UDP(sport=40000, dport=first + i) / Raw(b'x' * 32) for i in range(count)]
for r in range(rounds):
    sendp(f, iface='mgk-in', inter=0.002)
"""


class Lab(NsLab):
    def __init__(self, meshgate, ctl):
        super().__init__("mgk")
        self.meshgate, self.ctl = meshgate, ctl
        for side in ("a", "b"):
            self.ns(self.dev, "sysctl", "-qw", "net.ipv6.conf.vp-%s.disable_ipv6=1" % side)
        self.dev_a, self.dev_b = self.mac(self.dev, "vp-a"), self.mac(self.dev, "vp-b")
        self.port_a, self.port_b = self.mac(self.gw, "vo-a"), self.mac(self.gw, "vo-b")

    def start(self):
        pmd = self.write_pmd([("inside", "net_tap0,iface=mgk-in", ""), ("out-a", "net_af_packet0,iface=vo-a", ""),
                              ("out-b", "net_af_packet1,iface=vo-b", "")])
        os.makedirs(os.path.join(self.dir, "state"), exist_ok=True)
        tunnels = ""
        for t, i, n, spi in (("a-1", "gw-a", "a", 1), ("b-1", "gw-b", "b", 2)):
            tunnels += """[[tunnel]]
name = "%s"
instance = "%s"
device = "dev"
interface = "mgk-%s1"
[tunnel.liveness]
probe_source = "169.254.1%d.1"
probe_address = "169.254.1%d.2"
[tunnel.out]
spi = 0x100%d
cipher = "aes-gcm-128"
key = "%s"
[tunnel.in]
spi = 0x200%d
cipher = "aes-gcm-128"
key = "%s"
""" % (t, i, n, spi, spi, spi, KEYS[n + "_out"], spi, KEYS[n + "_in"])
        cfg = os.path.join(self.dir, "gw.toml")
        with open(cfg, "w") as f:
            f.write("""[gateway]
name = "kroute"
pmd_config = "%s"
state_dir = "%s"
[inside]
port = "inside"
prefixes = ["10.1.0.0/16"]
next_hop_mac = "02:00:00:00:00:01"
[routing]
kernel_table = 100
announce_table = 101
[[instance]]
name = "gw-a"
ipv4 = "192.0.2.1"
port = "out-a"
[[instance]]
name = "gw-b"
ipv4 = "198.51.100.1"
port = "out-b"
[[device]]
name = "dev"
ipv4 = "192.0.2.2"
next_hop_mac = "%s"
""" % (pmd, os.path.join(self.dir, "state"), self.dev_a) + tunnels)
        self.start_meshgate(self.meshgate, cfg, lambda: "routes: learning from kernel table 100" in self.log_text(),
                            "meshgate learning routes")
        self.ns(self.gw, "ip", "link", "set", "mgk-in", "up")
        self.inside_mac = self.mac(self.gw, "mgk-in")

    def counters(self):
        """meshgatectl's counters, with the data plane's drops (show errors) under "drops"."""
        c = json.loads(run([self.ctl, "--gateway", self.name, "-j", "show", "counters"]).stdout)
        drops = json.loads(run([self.ctl, "--gateway", self.name, "-j", "show", "errors"]).stdout)["dataplane"]
        c["drops"] = {k: drops.get(k, 0) for k in ("not_routed", "inner_selector")}
        return c

    def route(self, *args):
        self.ns(self.gw, "ip", "route", *args)

    def send(self, dst, first, count, rounds=1, wait=True):
        cmd = ["ip", "netns", "exec", self.gw, "/usr/bin/python3", "-c", SEND, dst, str(first), str(count),
               str(rounds), self.inside_mac]
        p = subprocess.Popen(cmd)
        if wait:
            assert p.wait(120) == 0
        return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--meshgate", required=True)
    ap.add_argument("--meshgatectl", required=True)
    args = ap.parse_args()
    for path, pkg in (("/usr/lib/python3/dist-packages/scapy", "python3-scapy"), ("/usr/sbin/ethtool", "ethtool")):
        if not os.path.exists(path):
            print("SKIP: missing Debian package " + pkg)
            return SKIP
    if os.geteuid() != 0:
        print("FAIL: needs root (network namespaces, TUN)")
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    lab = Lab(args.meshgate, args.meshgatectl)
    dev = None
    try:
        lab.start()
        dev = subprocess.Popen(["ip", "netns", "exec", lab.dev, "/usr/bin/python3", "-c", DEVICE, json.dumps(KEYS),
                                lab.port_a, lab.port_b, lab.dev_a, lab.dev_b], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
        assert dev.stdout.readline().strip() == "READY"

        def device_log(settle=1.0):
            dev.stdin.write("log %f\n" % settle)
            dev.stdin.flush()
            return json.loads(dev.stdout.readline())

        def learned(n):
            return lambda: lab.counters()["gateway"]["routes_learned"] == n

        def updates():
            return lab.counters()["gateway"]["route_updates"]

        def by_tunnel(log, dst_prefix):
            got = {}
            for name, dst, port in log:
                if dst.startswith(dst_prefix):
                    got.setdefault(name, set()).add(port)
            return got

        # 1. No route yet.
        base = lab.counters()
        lab.send("10.128.0.5", 1000, 16)
        lab.send("10.1.0.5", 2000, 64)
        log = device_log()
        assert not by_tunnel(log, "10.128."), log
        static = by_tunnel(log, "10.1.")
        assert set(static) == {"a-1", "b-1"} and sum(map(len, static.values())) == 64, static
        c = lab.counters()
        assert c["drops"]["not_routed"] - base["drops"]["not_routed"] >= 16, c["drops"]
        print("1. without a route: 10.128/16 not routed; [inside] flows over", {k: len(v) for k, v in static.items()})

        # 2. Through a-1.
        u0 = updates()
        lab.route("add", "10.128.0.0/16", "dev", "mgk-a1", "table", "100")
        wait_for(learned(1), 30, "the route learned")
        assert updates() > u0
        lab.send("10.128.0.5", 1000, 32)
        got = by_tunnel(device_log(), "10.128.")
        assert set(got) == {"a-1"} and len(got["a-1"]) == 32, got
        print("2. 10.128/16 dev mgk-a1: 32 of 32 flows on a-1")

        # 3. Multipath: pins stay, new flows spread.
        m0 = lab.counters()["gateway"]["moved_route"]
        u0 = updates()
        lab.route("replace", "10.128.0.0/16", "table", "100", "nexthop", "dev", "mgk-a1", "nexthop", "dev", "mgk-b1")
        wait_for(lambda: updates() > u0, 30, "the multipath route")
        lab.send("10.128.0.5", 1000, 32)   # the pinned flows
        lab.send("10.128.0.5", 3000, 64)   # new flows
        got = device_log()
        old = by_tunnel([x for x in got if 1000 <= x[2] < 1032], "10.128.")
        new = by_tunnel([x for x in got if x[2] >= 3000], "10.128.")
        assert set(old) == {"a-1"} and len(old["a-1"]) == 32, old
        assert set(new) == {"a-1", "b-1"} and sum(map(len, new.values())) == 64, new
        assert lab.counters()["gateway"]["moved_route"] == m0, "no pin moved"
        print("3. multipath: the 32 pinned flows stayed on a-1, 64 new flows over",
              {k: len(v) for k, v in new.items()})

        # 4. Through b-1 alone: the flows pinned on a-1 move, and only they.
        on_a = 32 + len(new.get("a-1", ()))
        u0 = updates()
        lab.route("replace", "10.128.0.0/16", "dev", "mgk-b1", "table", "100")
        wait_for(lambda: updates() > u0, 30, "the route through b-1")
        lab.send("10.128.0.5", 1000, 32)
        lab.send("10.128.0.5", 3000, 64)
        got = by_tunnel(device_log(), "10.128.")
        assert set(got) == {"b-1"} and len(got["b-1"]) == 96, got
        moved = lab.counters()["gateway"]["moved_route"] - m0
        assert moved == on_a, (moved, on_a)
        print("4. 10.128/16 dev mgk-b1: 96 of 96 flows on b-1; moved_route %d = the flows pinned on a-1" % moved)

        # 5. Refused routes; the inner selector follows the learned routes.
        lab.route("add", "10.129.0.0/16", "dev", "lo", "table", "100")
        lab.route("add", "blackhole", "10.130.0.0/16", "table", "100")
        wait_for(lambda: lab.counters()["gateway"]["routes_refused"] == 2, 30, "two refused routes")
        assert lab.counters()["gateway"]["routes_learned"] == 1
        nr = lab.counters()["drops"]["not_routed"]
        lab.send("10.129.0.5", 1000, 8)
        lab.send("10.130.0.5", 1000, 8)
        assert not by_tunnel(device_log(), "10.129.") and not by_tunnel(device_log(0.1), "10.130.")
        assert lab.counters()["drops"]["not_routed"] - nr >= 16
        sel = lab.counters()["drops"]["inner_selector"]
        for t in ("a", "b"):
            dev.stdin.write("send %s 10.128.7.7\n" % t)
            dev.stdin.flush()
            assert dev.stdout.readline().strip() == "done"
        # The counters are the control block's, refreshed every 100 ms: wait for both packets to show.
        b_in = lambda: {t["name"]: t for t in lab.counters()["tunnels"]}["b-1"]["packets_in"]  # noqa: E731
        wait_for(lambda: lab.counters()["drops"]["inner_selector"] >= sel + 1 and b_in() >= 1, 30,
                 "one inner_selector drop (via a-1) and one packet delivered (via b-1)")
        assert lab.counters()["drops"]["inner_selector"] == sel + 1, "only the packet through a-1 is dropped"
        print("5. refused: a route out of lo and a blackhole (routes_refused 2); 10.128.7.7 from a-1 dropped, "
              "from b-1 delivered")

        # 6. A flood of changes while the [inside] flows run: coalesced, nothing lost, the last state wins.
        batch = os.path.join(lab.dir, "flood.batch")
        with open(batch, "w") as f:
            for i in range(1000):
                f.write("route add 10.200.%d.0/24 dev mgk-a1 table 100\n" % (i % 250))
                f.write("route del 10.200.%d.0/24 dev mgk-a1 table 100\n" % (i % 250))
        u0 = updates()
        device_log(0.5)
        sent0 = sum(t["packets_out"] for t in lab.counters()["tunnels"])
        sender = lab.send("10.1.0.5", 2000, 64, rounds=5, wait=False)
        lab.ns(lab.gw, "ip", "-batch", batch, timeout=120)
        assert sender.wait(120) == 0
        log = device_log(2)
        static = by_tunnel(log, "10.1.")
        n_static = sum(1 for x in log if x[1].startswith("10.1."))
        # Exact on meshgate's side (every packet encrypted and sent); the device's sniffer on a busy host may miss a few.
        wait_for(lambda: sum(t["packets_out"] for t in lab.counters()["tunnels"]) - sent0 >= 320, 30, "320 sent")
        assert sum(t["packets_out"] for t in lab.counters()["tunnels"]) - sent0 == 320
        assert n_static >= 310, (n_static, static)
        wait_for(learned(1), 30, "the table back to one route")
        n_updates = updates() - u0
        assert 1 <= n_updates < 500, n_updates
        print("6. 2000 route changes: %d route tables published; 320 of 320 [inside] packets delivered meanwhile" %
              n_updates)

        # 7. Announcing.
        def announced():
            out = run(["ip", "-n", lab.gw, "-j", "route", "show", "table", "101"]).stdout
            return {r["dst"]: r.get("dev") for r in json.loads(out or "[]") if r.get("protocol") in ("200", 200)}

        assert announced() == {"10.1.0.0/16": "mgk-a1", "10.128.0.0/16": "mgk-b1"}, announced()
        ms = []
        for cmd, want in ((("tunnel", "b-1", "down"), {"10.1.0.0/16": "mgk-a1"}),
                          (("tunnel", "b-1", "up"), {"10.1.0.0/16": "mgk-a1", "10.128.0.0/16": "mgk-b1"}),
                          (("tunnel", "a-1", "drain"), {"10.1.0.0/16": "mgk-b1", "10.128.0.0/16": "mgk-b1"}),
                          (("tunnel", "a-1", "up"), {"10.1.0.0/16": "mgk-a1", "10.128.0.0/16": "mgk-b1"})):
            t0 = time.monotonic()
            run([lab.ctl, "--gateway", lab.name] + list(cmd))
            wait_for(lambda: announced() == want, 30, "table 101 = %s after %s" % (want, cmd))
            ms.append((time.monotonic() - t0) * 1000)
        assert lab.counters()["gateway"]["routes_announced"] == 2
        print("7. announced: %s; b-1 down withdrew 10.128/16, a-1 drain moved 10.1/16 to mgk-b1; command to kernel "
              "table %s ms (meshgatectl and ip route polling included)" % (announced(), " ".join("%.0f" % x for x in ms)))

        dev.stdin.write("end\n")
        dev.stdin.flush()
        rc = lab.stop()
        assert rc == 0, "meshgate exit %s:\n%s" % (rc, lab.log_text()[-3000:])
        rep = json.load(open(lab.report))
        assert rep["mbufs_in_use_at_exit"] == 0, rep["mbufs_in_use_at_exit"]
        assert announced() == {}, announced()

        # 8. A leftover of ours is removed at start; kill -9 leaves nothing announced.
        lab.route("add", "10.250.0.0/16", "dev", "lo", "table", "101", "proto", "200")
        lab.start()
        # Table 100's route through mgk-b1 went with the first run's interfaces: only the static prefix is back.
        wait_for(lambda: announced() == {"10.1.0.0/16": "mgk-a1"}, 30, "announced again")
        assert "1 left by an earlier run removed" in lab.log_text(), lab.log_text()[-2000:]
        lab.mg.kill()
        lab.mg.wait(30)
        wait_for(lambda: announced() == {}, 30, "no announcement after kill -9")
        print("8. clean stop: table 101 empty; a stale route of ours removed at start; kill -9: table 101 empty")
        print("routes from the kernel: all checks passed")
        return 0
    except Exception:
        print("meshgate log:\n" + lab.log_text()[-4000:])
        raise
    finally:
        if dev and dev.poll() is None:
            dev.kill()
        lab.close()


if __name__ == "__main__":
    sys.exit(main())
