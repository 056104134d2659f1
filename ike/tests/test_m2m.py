#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Issue 11, meshgate to meshgate keyed by IKEv2: what the strongSwan devices of test_e2e cannot do, raw ESP
(IP protocol 50: no NAT, no `encap = yes`, so charon does not encapsulate) and ESN (`aes128gcm16-esn`).

  h1 --(i1|g1i)-- g1: meshgate "m1" + charon (kernel-meshgate)   inside 172.16.1.0/24, instance 192.0.2.1 on tap t1
                  g1 --(o1|o2)-- g2: the two outside ports joined directly (both net_af_packet, each with its tap)
  h2 --(i2|g2i)-- g2: meshgate "m2" + charon (kernel-meshgate)   inside 172.16.2.0/24, instance 192.0.2.2 on tap t2

Each meshgate runs active-standby (its config needs two instances): the active one carries the tunnel, the standby
one has its own port (a veth whose far end nobody uses) and no tunnel. Checks:
  1. g1's charon initiates: IKE_SA + CHILD_SA up, both meshgates hold the pair (its SPIs crossed), charon says ESN;
  2. ping both ways and sequence-numbered UDP both ways (traffic.py): 0 lost;
  3. on the veth between the gateways (tcpdump at both ends, read with scapy): ESP is protocol 50, none in UDP 4500, no (SPI, IV)
     twice; both meshgates' stats JSON say encap none and ESN on both SAs;
  4. under that load a CHILD_SA rekey from g1, then one from g2: 0 lost, 0 duplicated, no ICV failure nor replay."""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2egw  # noqa: E402
import e2elab  # noqa: E402
import ikelab  # noqa: E402
from e2eload import Load, check_iv_unique, esp_headers  # noqa: E402
from ikelab import wait_for  # noqa: E402

LOAD_S = 16.0
RATE = 50
# gateway key: (instance address, tap, outside veth and MAC, standby veth, inside veth (gw side) and MAC,
#               inside host key, its veth, MAC and address, inside network, if_id)
GWS = {
    "g1": ("192.0.2.1", "t1", "o1", "02:00:00:0c:00:01", "s1", "g1i", "02:00:00:0c:01:01",
           "h1", "i1", "02:00:00:0c:01:02", "172.16.1.2", "172.16.1.0/24", 7),
    "g2": ("192.0.2.2", "t2", "o2", "02:00:00:0c:00:02", "s2", "g2i", "02:00:00:0c:02:01",
           "h2", "i2", "02:00:00:0c:02:02", "172.16.2.2", "172.16.2.0/24", 7),
}
PEER = {"g1": "g2", "g2": "g1"}
TUNNEL = "m2m"


class M2MLab(e2elab.Lab):
    """Two gateways and their inside hosts (e2elab.Lab's helpers, this topology)."""

    def __init__(self):
        ikelab.LabBase.__init__(self, "ike-m2m-")
        self.tag = str(os.getpid())
        self.ns = {k: "m2m-%s-%s" % (k, self.tag) for k in ("g1", "g2", "h1", "h2")}
        self.procs, self.mgs, self.mg = [], [], None
        try:
            self._topology()
        except Exception:
            self.close()
            raise

    def _topology(self):
        for ns in self.ns.values():
            ikelab.run(["ip", "netns", "add", ns])
        for key in self.ns:
            self.sh(key, "ip", "link", "set", "lo", "up")
            for s in ("net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1",
                      "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"):
                self.sh(key, "sysctl", "-qw", s)
        self._veth("g1", "o1", "g2", "o2", GWS["g1"][3], GWS["g2"][3])
        for g, (_, _, out, _, standby, gi, gi_mac, h, hi, hi_mac, haddr, _, _) in GWS.items():
            self._veth(g, standby, g, standby + "x")
            self._veth(h, hi, g, gi, hi_mac, gi_mac)
            for key, ifc in ((g, out), (g, gi), (h, hi)):
                self._no_tx_csum(key, ifc)
            for ifc in (out, gi, standby):
                self._dpdk_owned(ifc, g)
            gw_addr = haddr.rsplit(".", 1)[0] + ".1"
            self.sh(h, "ip", "addr", "add", haddr + "/24", "dev", hi)
            self.sh(h, "ip", "neigh", "add", gw_addr, "lladdr", gi_mac, "dev", hi, "nud", "permanent")
            self.sh(h, "ip", "route", "add", GWS[PEER[g]][11], "via", gw_addr, "src", haddr)

    def policy_routes(self, mg=None):
        """The tap's address is on-link for the peer (the outside ports are joined directly): no routes to add."""
        addr, tap = GWS[mg.key][0], GWS[mg.key][1]
        wait_for(lambda: addr in self.sh(mg.key, "ip", "-4", "-o", "addr", "show", "dev", tap, check=False).stdout,
                 30, "meshgate to put %s on %s" % (addr, tap))

    def namespaces(self):
        return list(self.ns.values())

    def stop_processes(self):
        for m in self.mgs:
            m.stop()
        self.mg = None
        super().stop_processes()

    def logs(self):
        return ikelab.LabBase.logs(self) + [("meshgate " + m.key, m.log_text()) for m in self.mgs]

    def swanctl_conf(self, g):
        p = PEER[g]
        child = "if_id_in = %d\n        if_id_out = %d" % (GWS[g][12], GWS[g][12])
        conn = e2elab._conn(TUNNEL, GWS[g][0], GWS[p][0], g, p, GWS[g][11], GWS[p][11], "aes128gcm16-esn",
                            child_extra=child)
        secrets = "secrets {\n  ike-lab {\n    id-1 = g1.lab\n    id-2 = g2.lab\n    secret = %s\n  }\n}\n" % ikelab.PSK
        return "connections {%s\n}\n%s" % (conn, secrets)

    def start_charon(self, g, so, sock):
        snippet = os.path.join(e2elab.HERE, "..", "kernel-meshgate", "kernel-meshgate.conf")
        plugins = ("    include %s\n    kernel-meshgate {\n      socket = %s\n      timeout = 2000\n    }\n"
                   % (snippet, sock))
        c = ikelab.Charon(self, "charon-" + g, self.ns[g], GWS[g][1], plugins, self.swanctl_conf(g), delete_delay=2,
                          plugin_dir=self.plugin_dir(so), retransmit=(1.0, 2))
        c.load()
        wait_for(lambda: "connected to meshgate gateway" in c.log_text(), 20, "%s's plugin connected" % g)
        return c


class Gateway(e2egw.Meshgate):
    """One meshgate of the pair: instance "act" (the tunnel, exception tap) and "sby" (standby, no tunnel)."""

    def __init__(self, lab, mg_bin, ctl, g):
        self.g = g
        super().__init__(lab, mg_bin, ctl, key=g, suffix=g)
        lab.mgs.append(self)

    def outside_ports(self):
        return ["out"]

    def _config(self):
        addr, tap, out, _, standby, gi, _, _, _, hi_mac, _, _, if_id = GWS[self.g]
        pmd = os.path.join(self.dir, "pmd.toml")
        with open(pmd, "w") as f:
            f.write('[eal]\nargs = ["--no-huge", "-m", "512", "--no-pci", "-l", "0-1", "--file-prefix", "%s"]\n'
                    '[workers]\nlcores = [1]\nmbufs = 16383\n\n'
                    '[[port]]\nname = "inside"\ndevargs = "net_af_packet0,iface=%s,framecnt=2048"\n\n'
                    '[[port]]\nname = "out"\ndevargs = "net_af_packet1,iface=%s,framecnt=2048"\nhost = "%s"\n\n'
                    '[[port]]\nname = "%s"\ndevargs = "net_tap0,iface=%s"\n\n'
                    '[[port]]\nname = "standby"\ndevargs = "net_af_packet2,iface=%s,framecnt=512"\n'
                    % (self.name, gi, out, tap, tap, tap, standby))
        peer = GWS[PEER[self.g]]
        cfg = os.path.join(self.dir, "gateway.toml")
        with open(cfg, "w") as f:
            f.write("\n".join([
                '[gateway]', 'name = "%s"' % self.name, 'mode = "active-standby"', 'pmd_config = "%s"' % pmd,
                'state_dir = "%s"' % self.state, '', '[keying]', 'socket = "%s"' % self.sock, '',
                '[inside]', 'port = "inside"', 'prefixes = ["%s"]' % peer[11], 'next_hop_mac = "%s"' % hi_mac, '',
                '[flow]', 'seed = 11', 'table_size = 65537', 'pin_idle_timeout_ms = 60000', 'pin_capacity = 65536', '',
                '[[instance]]', 'name = "act"', 'ipv4 = "%s"' % addr, 'ipv4_prefix_len = 24', 'port = "out"', '',
                '[[instance]]', 'name = "sby"', 'ipv4 = "198.51.100.%s"' % self.g[1], 'ipv4_prefix_len = 24',
                'port = "standby"', 'role = "standby"', '',
                '[[device]]', 'name = "peer"', 'ipv4 = "%s"' % peer[0], '',
                '[[tunnel]]', 'name = "%s"' % TUNNEL, 'instance = "act"', 'device = "peer"', 'weight = 1',
                'keying = "ike"', 'if_id = %d' % if_id, '']))
        return cfg

    def stats_json(self):
        import json
        with open(os.path.join(self.dir, "stats-%d.json" % (self.runs - 1))) as f:
            return json.load(f)


def flows(g, n=4):
    """n sequence-numbered UDP flows from g's inside host to the other's."""
    src, dst = GWS[g][10], GWS[PEER[g]][10]
    return ["%s:%d>%s:6000" % (src, 30000 + k, dst) for k in range(n)]


def pair(mg):
    """(outbound SPI, {inbound SPIs}) meshgate holds active on the tunnel."""
    sas = [s for s in mg.sas() if s["tunnel"] == TUNNEL and s["state"] == "active"]
    return ({s["spi"] for s in sas if s["direction"] == "out"}, {s["spi"] for s in sas if s["direction"] == "in"})


def crossed(m1, m2):
    """Both meshgates hold one active outbound SA each, each the other's inbound one: returns the two SPIs."""
    (o1, i1), (o2, i2) = pair(m1), pair(m2)
    if len(o1) == 1 and len(o2) == 1 and o1 <= i2 and o2 <= i1:
        return next(iter(o1)), next(iter(o2))
    return None


def esn_in_charon(c):
    out = c.swanctl("--list-sas", "--raw").stdout
    m = re.search(r"\b%s-\d+ \{.*?state=INSTALLED.*?\}" % TUNNEL, out, re.S)
    return m is not None and "esn=1" in m.group(0), out


def main():
    ikelab.need_packages()
    so = ikelab.plugin_path()
    mg_bin, ctl = e2egw.meshgate_paths()
    with M2MLab() as lab:
        m1, m2 = Gateway(lab, mg_bin, ctl, "g1"), Gateway(lab, mg_bin, ctl, "g2")
        for m in (m1, m2):
            m.start()
        c1, c2 = lab.start_charon("g1", so, m1.sock), lab.start_charon("g2", so, m2.sock)
        # Each end sees only what arrives there: net_af_packet sends past the packet taps (qdisc bypass).
        caps = [lab.capture(g, GWS[g][2], "cap-" + g, what="ip") for g in GWS]

        # 1. keyed, g1 initiating
        t0 = time.monotonic()
        c1.swanctl("--initiate", "--child", TUNNEL, "--timeout", "30", timeout=40)
        spis = wait_for(lambda: crossed(m1, m2), 20, "both meshgates to hold the crossed pair", step=0.02)
        took = time.monotonic() - t0
        for c in (c1, c2):
            ok, out = esn_in_charon(c)
            assert ok, "%s's CHILD_SA is not ESN:\n%s" % (c.name, out)
        print("1. IKE_SA + CHILD_SA up in %.0f ms (g1 initiated); SPIs g1->g2 %#x, g2->g1 %#x; ESN on both sides"
              % (took * 1000, spis[0], spis[1]))

        # 2. ping both ways, then UDP both ways
        for g in GWS:
            h, src, dst = GWS[g][7], GWS[g][10], GWS[PEER[g]][10]
            r = lab.sh(h, "ping", "-c", "3", "-i", "0.2", "-W", "3", "-I", src, dst, check=False)
            assert " 3 received" in r.stdout, "ping %s -> %s:\n%s" % (src, dst, r.stdout)
        load = Load(lab, LOAD_S, "m2m", rate=RATE, flows={"h1": flows("g1"), "h2": flows("g2")})

        # 4. under that load, a rekey from each side
        seen = [spis]
        for who, c in (("g1", c1), ("g2", c2)):
            time.sleep(LOAD_S / 4)
            c.swanctl("--rekey", "--child", TUNNEL)
            last = seen[-1]
            seen.append(wait_for(lambda: (lambda x: x if x and x[0] != last[0] and x[1] != last[1] else None)(
                crossed(m1, m2)), 20, "both meshgates on the pair of %s's rekey" % who, step=0.02))
        load.wait(LOAD_S + 60)
        res = load.results()
        for p, _ in caps:
            lab.stop(p)
        sent = sum(s for s, _, _ in res.values())
        lost = {f: s - u for f, (s, u, _) in res.items() if s != u}
        dups = {f: d for f, (_, _, d) in res.items() if d}
        errs = [m.errors().get("esp", {}) for m in (m1, m2)]
        print("2. ping both ways; %d UDP flows, %d datagrams, lost %d, duplicated %d" % (len(res), sent,
              sum(lost.values()), sum(dups.values())))
        print("4. rekeyed from g1 then g2 under load: pairs %s; meshgate ESP drops %s"
              % (["%#x/%#x" % s for s in seen], errs))
        assert len(res) == 8 and all(s > 0 for s, _, _ in res.values()), res
        assert not lost, "flows lost datagrams: %s" % lost
        assert not dups, "flows got duplicates: %s" % dups
        for e in errs:
            assert e.get("in_auth", 0) == 0 and e.get("in_replay", 0) == 0, "ICV failures or replays: %s" % errs

        # 3. the wire: raw ESP only, every SA of the test, no (SPI, IV) twice
        udp_esp = [h for _, pcap in caps for h in esp_headers(pcap)]
        assert not udp_esp, "ESP in UDP between the gateways: %d packets, first %s" % (len(udp_esp), udp_esp[0])
        wire_spis = {spi for _, pcap in caps for _, _, _, spi, _, _ in esp_headers(pcap, raw=True)}
        want = {s for p in seen for s in p}
        assert want <= wire_spis, "SAs never seen on the wire: %s" % sorted(hex(s) for s in want - wire_spis)
        n, nsas, drops = check_iv_unique(caps, raw=True)
        print("3. wire: %d ESP packets (IP protocol 50) of %d SAs, none in UDP; no (SPI, IV) twice; tcpdump dropped %d"
              % (n, nsas, drops))

        for m in (m1, m2):
            st = m.stop_and_check()
            t = [x for x in st["tunnels"] if x["name"] == TUNNEL][0]
            assert t["encap"] == {"out": {"mode": "none"}, "in": {"mode": "none"}}, (m.key, t["encap"])
            assert t.get("esn") == {"out": True, "in": True}, "%s's stats JSON: esn %s" % (m.key, t.get("esn"))
        print("   both meshgates: encap none and ESN on both SAs (stats JSON); exit 0, mbufs all back")
    print("1 passed, 0 failed")


if __name__ == "__main__":
    main()
