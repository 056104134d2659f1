#!/usr/bin/python3
"""lib/hostif against the real kernel, no mocks: three network namespaces made and removed here, joined by veth
pairs, and hostif_driver (one mg::hostif::Netlink, as main holds it) running in the gateway's namespace.

  gw    a0 10.1.0.1/24 fd01::1/64 ---- b0 10.1.0.2-.6/24 fd01::2,3,6/64            peer (also the router)
        a1 10.2.0.1/24            ---- c0 10.2.0.2/24                               other
        a2 (down, no address)     ---- b2                                           peer
        a3 10.4.0.1/24            ---- b3 10.4.0.2/24                               peer
        a4 (link-local only)      ---- b4 (link-local only)                         peer
  gw routes: 10.9.0.0/24 via 10.1.0.3; fd09::/64 via fd01::3; fd0a::/64 via b4's link-local; 10.8.0.0/24 via inet6
  fd01::6; `ip rule from 10.2.0.1 lookup 100`, table 100: default via 10.2.0.2 dev a1; main has no default route.
  The link-local gateway has a link of its own: b0 learns a0's link-local from a0's NS and confirms it ~5 s later
  by an NS from b0's link-local, which leaves a0 an entry for b0's link-local that no test asked for.

Each next-hop test uses a neighbour nobody has used (checked: no entry before), nothing in the test sends a packet,
so an entry that becomes REACHABLE with the far end's real MAC (from `ip -j link`) proves the kernel resolved it
by itself because NTF_USE asked it to:
  test_add_address        v4 and v6 on a2 seen in `ip -j addr` (v6 with nodad), twice = success; IPv6 with another
                          prefix, bad ifindex, bad prefix length, no address: errors with text
  test_set_link           a2 up with MTU 1400, down (MTU kept); MTU above the device's maximum, bad ifindex: errors
  test_resolve_v4/_v6     on-link peer: first `resolving`, then `known` with b0's MAC (ARP / ND by the kernel)
  test_router_*           a destination behind a router (v4, v6, v6 link-local gateway, v4 via an IPv6 gateway):
                          via = the router, MAC = the router's; no neighbour entry for the destination itself;
                          a link-local dst is on-link on whichever interface is asked about
  test_policy_routing     src 10.2.0.1 goes out a1 via 10.2.0.2 (c0's MAC); src 10.1.0.1 to the same dst: no route
                          (both ifindexes); a dst routed out of another interface, a local dst: other_interface
  test_refresh_stale      a STALE entry stays STALE on its own; refresh -> the kernel probes it -> REACHABLE
  test_refresh_new_mac    the far end's MAC changes, entry forced STALE: refresh, then next_hop polls: the new MAC
  test_errors             mixed IP versions, no dst, an IPv4 src not of this host (the kernel's ENETUNREACH), a
                          broadcast dst, refresh on a bad ifindex or of no address: error texts
Waits are bounded (RESOLVE_S) and poll; nothing depends on speed.
Exit: 0 passed, 1 a failure (also: not root), 77 (meson: skipped) when iproute2 is missing.
Run: /usr/bin/python3 tests/hostif/test_hostif.py --driver build/tests/hostif/hostif_driver
"""
import argparse
import json
import os
import select
import shutil
import subprocess
import sys
import time
import unittest

RESOLVE_S = 15.0   # bound for any resolution the kernel does (ARP/ND retransmit every 1 s)
ANSWER_S = 10.0    # bound for one driver answer (the library bounds each call at 200 ms)
DRIVER = None
TAG = f"mgh{os.getpid()}"
GW, PEER, OTHER = TAG + "g", TAG + "p", TAG + "o"


def ip(*args, ns=None, check=True):
    cmd = ["ip"] + (["-n", ns] if ns else []) + list(args)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r.stdout


def ipj(*args, ns):
    return json.loads(ip("-j", *args, ns=ns) or "[]")


def link(ns, dev):
    return ipj("link", "show", "dev", dev, ns=ns)[0]


def mac(ns, dev):
    return link(ns, dev)["address"]


def ifindex(dev):
    return link(GW, dev)["ifindex"]


def neigh(addr, dev="a0"):
    """The gateway's entry for addr on dev: (state list, lladdr) or None."""
    for e in ipj("neigh", "show", "to", addr, "dev", dev, ns=GW):
        if e.get("dst") == addr:
            return e.get("state", []), e.get("lladdr")
    return None


def history(seq):
    """'resolving x40, known' rather than forty entries."""
    out = []
    for x in seq:
        if out and out[-1][0] == x:
            out[-1][1] += 1
        else:
            out.append([x, 1])
    return ", ".join(f"{x} x{n}" if n > 1 else str(x) for x, n in out)


def sysctl(ns, key, value):
    subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", f"{key}={value}"], check=True)


class Driver:
    def __init__(self, path):
        self.p = subprocess.Popen(["ip", "netns", "exec", GW, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, bufsize=1)

    def ask(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        ready, _, _ = select.select([self.p.stdout], [], [], ANSWER_S)
        if not ready:
            raise AssertionError(f"driver gave no answer to '{line}' within {ANSWER_S} s")
        out = json.loads(self.p.stdout.readline())
        if "fatal" in out:
            raise AssertionError(f"driver: {out['fatal']}")
        return out

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=ANSWER_S)


class HostifTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for ns in (GW, PEER, OTHER):
            ip("netns", "add", ns)
            ip("link", "set", "lo", "up", ns=ns)
        try:
            cls._topology()
        except Exception:
            cls.tearDownClass()
            raise
        cls.d = Driver(DRIVER)

    @classmethod
    def _topology(cls):
        for a, b, far in (("a0", "b0", PEER), ("a1", "c0", OTHER), ("a2", "b2", PEER), ("a3", "b3", PEER),
                          ("a4", "b4", PEER)):
            ip("link", "add", a, "type", "veth", "peer", "name", b, "netns", far, ns=GW)
        # Probing a STALE entry starts after delay_first_probe_time: 1 s instead of 5 keeps the test short.
        for fam in ("ipv4", "ipv6"):
            for dev in ("a0", "a3"):
                sysctl(GW, f"net.{fam}.neigh.{dev}.delay_first_probe_time", 1)
        ip("addr", "add", "10.1.0.1/24", "dev", "a0", ns=GW)
        ip("addr", "add", "fd01::1/64", "dev", "a0", "nodad", ns=GW)
        ip("addr", "add", "10.2.0.1/24", "dev", "a1", ns=GW)
        ip("addr", "add", "10.4.0.1/24", "dev", "a3", ns=GW)
        for n in range(2, 7):
            ip("addr", "add", f"10.1.0.{n}/24", "dev", "b0", ns=PEER)
        for n in (2, 3, 6):
            ip("addr", "add", f"fd01::{n}/64", "dev", "b0", "nodad", ns=PEER)
        ip("addr", "add", "10.4.0.2/24", "dev", "b3", ns=PEER)
        ip("addr", "add", "10.2.0.2/24", "dev", "c0", ns=OTHER)
        for ns, dev in ((GW, "a0"), (GW, "a1"), (GW, "a3"), (GW, "a4"), (PEER, "b0"), (PEER, "b2"), (PEER, "b3"),
                        (PEER, "b4"), (OTHER, "c0")):
            ip("link", "set", dev, "up", ns=ns)
        # The kernel's own NS needs a usable link-local source, and b4's link-local is a gateway below: wait
        # until duplicate address detection is over on all of them.
        deadline = time.monotonic() + RESOLVE_S
        while True:
            lls = [a for ns, dev in ((GW, "a0"), (GW, "a4"), (PEER, "b4"))
                   for a in ipj("-6", "addr", "show", "dev", dev, "scope", "link", ns=ns)[0]["addr_info"]
                   if a.get("local")]   # ip -j leaves {} for the addresses the scope filter drops
            if len(lls) == 3 and not any(a.get("tentative") for a in lls):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"link-local addresses still tentative after {RESOLVE_S} s: {lls}")
            time.sleep(0.1)
        cls.b4_ll = lls[2]["local"]
        ip("route", "add", "10.9.0.0/24", "via", "10.1.0.3", "dev", "a0", ns=GW)
        ip("-6", "route", "add", "fd09::/64", "via", "fd01::3", "dev", "a0", ns=GW)
        ip("-6", "route", "add", "fd0a::/64", "via", cls.b4_ll, "dev", "a4", ns=GW)
        ip("route", "add", "10.8.0.0/24", "via", "inet6", "fd01::6", "dev", "a0", ns=GW)
        ip("route", "add", "default", "via", "10.2.0.2", "dev", "a1", "table", "100", ns=GW)
        ip("rule", "add", "from", "10.2.0.1", "lookup", "100", ns=GW)

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "d", None):
            cls.d.close()
        for ns in (GW, PEER, OTHER):
            ip("netns", "del", ns, check=False)

    # --- helpers -------------------------------------------------------------------------------------------------

    def nh(self, dev, src, dst):
        return self.d.ask(f"nh {ifindex(dev)} {src} {dst}")

    def resolve(self, dev, src, dst, via, far_ns, far_dev):
        """First answer `resolving`, then `known` with the far end's MAC within RESOLVE_S; no ping, no traffic."""
        self.assertIsNone(neigh(via, dev), f"{via} must be unused before the test")
        first = self.nh(dev, src, dst)
        self.assertEqual((first["status"], first["via"]), ("resolving", via), first)
        deadline = time.monotonic() + RESOLVE_S
        seen = [first["status"]]
        while True:
            h = self.nh(dev, src, dst)
            seen.append(h["status"])
            if h["status"] == "known":
                break
            self.assertEqual(h["status"], "resolving", h)
            self.assertLess(time.monotonic(), deadline, f"{via} not resolved in {RESOLVE_S} s: {history(seen)}; entry {neigh(via, dev)}")
            time.sleep(0.05)
        self.assertEqual(h["via"], via)
        self.assertEqual(h["mac"], mac(far_ns, far_dev))
        state, lladdr = neigh(via, dev)
        self.assertEqual(lladdr, h["mac"])
        return h

    def wait_state(self, addr, dev, want, bound=RESOLVE_S):
        deadline = time.monotonic() + bound
        states = []
        while True:
            e = neigh(addr, dev)
            st = e[0] if e else ["(none)"]
            if not states or states[-1] != st:
                states.append(st)
            if want in st:
                return states
            self.assertLess(time.monotonic(), deadline, f"{addr} never {want} in {bound} s: {states}")
            time.sleep(0.05)

    # --- tests ---------------------------------------------------------------------------------------------------

    def test_add_address(self):
        a2 = ifindex("a2")
        for addr, plen in (("10.3.0.1", 24), ("fd03::1", 64)):
            for attempt in ("first", "again"):
                r = self.d.ask(f"addr {a2} {addr} {plen}")
                self.assertEqual((r["ok"], r["err"]), (True, ""), f"{attempt}: {r}")
        infos = {a["local"]: a for a in ipj("addr", "show", "dev", "a2", ns=GW)[0]["addr_info"]}
        self.assertEqual(infos["10.3.0.1"]["prefixlen"], 24)
        self.assertEqual(infos["fd03::1"]["prefixlen"], 64)
        self.assertTrue(infos["fd03::1"].get("nodad"), f"IPv6 address without IFA_F_NODAD: {infos['fd03::1']}")
        self.assertEqual(sum(1 for a in infos if a in ("10.3.0.1", "fd03::1")), 2)

        r = self.d.ask(f"addr {a2} fd03::1 80")
        self.assertFalse(r["ok"])
        self.assertIn("already there with prefix length 64", r["err"])
        r = self.d.ask("addr 999999 10.3.0.9 24")
        self.assertFalse(r["ok"])
        self.assertIn("No such device", r["err"])
        self.assertIn("10.3.0.9/24", r["err"])
        r = self.d.ask(f"addr {a2} 10.3.0.9 33")
        self.assertFalse(r["ok"])
        self.assertIn("prefix length out of range", r["err"])
        r = self.d.ask(f"addr {a2} not-an-address 24")
        self.assertFalse(r["ok"])
        self.assertIn("not an IPv4 or IPv6 address", r["err"])
        self.assertNotIn("10.3.0.9", [a["local"] for a in ipj("addr", "show", "dev", "a2", ns=GW)[0]["addr_info"]])

    def test_set_link(self):
        a2 = ifindex("a2")
        self.assertNotIn("UP", link(GW, "a2")["flags"])
        r = self.d.ask(f"link {a2} up 1400")
        self.assertEqual((r["ok"], r["err"]), (True, ""), r)
        self.assertIn("UP", link(GW, "a2")["flags"])
        self.assertEqual(link(GW, "a2")["mtu"], 1400)
        r = self.d.ask(f"link {a2} down 0")
        self.assertTrue(r["ok"], r)
        self.assertNotIn("UP", link(GW, "a2")["flags"])
        self.assertEqual(link(GW, "a2")["mtu"], 1400, "mtu 0 must leave the MTU alone")
        r = self.d.ask(f"link {a2} up 70000")
        self.assertFalse(r["ok"])
        self.assertIn("mtu 70000", r["err"])
        self.assertEqual(link(GW, "a2")["mtu"], 1400)
        r = self.d.ask("link 999999 up 0")
        self.assertFalse(r["ok"])
        self.assertIn("No such device", r["err"])

    def test_resolve_v4(self):
        self.resolve("a0", "10.1.0.1", "10.1.0.2", "10.1.0.2", PEER, "b0")

    def test_resolve_v6(self):
        self.resolve("a0", "fd01::1", "fd01::2", "fd01::2", PEER, "b0")

    def test_router_v4(self):
        self.resolve("a0", "10.1.0.1", "10.9.0.5", "10.1.0.3", PEER, "b0")
        self.assertIsNone(neigh("10.9.0.5"), "the destination behind the router needs no neighbour entry")

    def test_router_v6(self):
        self.resolve("a0", "fd01::1", "fd09::5", "fd01::3", PEER, "b0")
        self.assertIsNone(neigh("fd09::5"))

    def test_router_v6_link_local_gateway(self):
        h = self.resolve("a4", "fd01::1", "fd0a::5", self.b4_ll, PEER, "b4")
        # A link-local dst is on-link on the interface asked about (every link has fe80::/64: RTA_OIF decides).
        for dev in ("a4", "a0"):
            d = self.nh(dev, "-", self.b4_ll)
            self.assertEqual((d["via"], d["status"]), (self.b4_ll, "known" if dev == "a4" else "resolving"), d)
        self.assertEqual(d["mac"], "")
        self.assertEqual(self.nh("a4", "-", self.b4_ll)["mac"], h["mac"])

    def test_router_v4_via_ipv6_gateway(self):
        self.resolve("a0", "10.1.0.1", "10.8.0.5", "fd01::6", PEER, "b0")

    def test_policy_routing(self):
        # Only `ip rule from 10.2.0.1` leads to a route for 198.51.100.7 at all: out a1, via c0.
        self.resolve("a1", "10.2.0.1", "198.51.100.7", "10.2.0.2", OTHER, "c0")
        for dev in ("a0", "a1"):
            h = self.nh(dev, "10.1.0.1", "198.51.100.7")
            self.assertEqual(h["status"], "no_route", h)
            self.assertIn("unreachable", h["err"])
        h = self.nh("a0", "fd01::1", "2001:db8::1")
        self.assertEqual(h["status"], "no_route", h)
        h = self.nh("a0", "10.2.0.1", "198.51.100.7")   # the policy route leaves by a1
        self.assertEqual((h["status"], h["via"]), ("other_interface", "10.2.0.2"), h)
        h = self.nh("a0", "10.1.0.1", "10.2.0.2")       # a1's subnet
        self.assertEqual((h["status"], h["via"]), ("other_interface", "10.2.0.2"), h)
        h = self.nh("a0", "10.1.0.1", "10.1.0.1")       # this host
        self.assertEqual(h["status"], "other_interface", h)
        self.assertIsNone(neigh("198.51.100.7", "a0"))
        self.assertIsNone(neigh("10.2.0.2", "a0"), "no neighbour may be made on the wrong interface")

    def test_refresh_stale(self):
        h = self.resolve("a0", "10.1.0.1", "10.1.0.4", "10.1.0.4", PEER, "b0")
        ip("neigh", "change", "10.1.0.4", "dev", "a0", "lladdr", h["mac"], "nud", "stale", ns=GW)
        self.assertEqual(neigh("10.1.0.4")[0], ["STALE"])
        time.sleep(1.5)   # > delay_first_probe_time: nothing but refresh may wake it
        self.assertEqual(neigh("10.1.0.4")[0], ["STALE"], "the entry must stay STALE without traffic or refresh")
        r = self.d.ask(f"refresh {ifindex('a0')} 10.1.0.4")
        self.assertEqual((r["ok"], r["err"]), (True, ""), r)
        states = self.wait_state("10.1.0.4", "a0", "REACHABLE")
        self.assertNotEqual(states[0], ["STALE"], f"refresh left it STALE first: {states}")
        self.assertEqual(self.nh("a0", "10.1.0.1", "10.1.0.4")["mac"], h["mac"])

    def test_refresh_new_mac(self):
        old = self.resolve("a3", "10.4.0.1", "10.4.0.2", "10.4.0.2", PEER, "b3")["mac"]
        new = "02:00:5e:10:00:42"
        self.assertNotEqual(old, new)
        ip("link", "set", "b3", "address", new, ns=PEER)
        ip("neigh", "change", "10.4.0.2", "dev", "a3", "lladdr", old, "nud", "stale", ns=GW)
        self.assertEqual(self.nh("a3", "10.4.0.1", "10.4.0.2")["mac"], old, "STALE with the old MAC is still known")
        r = self.d.ask(f"refresh {ifindex('a3')} 10.4.0.2")
        self.assertTrue(r["ok"], r)
        # Unicast probes to the old MAC go unanswered, the entry fails, next_hop resolves it anew.
        deadline = time.monotonic() + 2 * RESOLVE_S
        seen = []
        while True:
            h = self.nh("a3", "10.4.0.1", "10.4.0.2")
            seen.append((h["status"], h["mac"]))
            if h["status"] == "known" and h["mac"] == new:
                break
            self.assertIn(h["status"], ("known", "resolving"), h)
            self.assertLess(time.monotonic(), deadline, f"new MAC never seen: {history(seen)}; entry {neigh('10.4.0.2', 'a3')}")
            time.sleep(0.05)

    def test_errors(self):
        a0 = ifindex("a0")
        h = self.nh("a0", "10.1.0.1", "fd01::2")
        self.assertEqual(h["status"], "error")
        self.assertIn("different IP versions", h["err"])
        h = self.nh("a0", "10.1.0.1", "nothing")
        self.assertEqual(h["status"], "error")
        self.assertIn("dst is not an address", h["err"])
        h = self.nh("a0", "10.7.7.7", "10.1.0.2")     # the kernel says ENETUNREACH: not a missing route
        self.assertEqual(h["status"], "error", h)
        self.assertIn("src 10.7.7.7 is not an address of this host", h["err"])
        h = self.nh("a0", "10.1.0.1", "10.1.0.255")
        self.assertEqual(h["status"], "error", h)
        self.assertIn("not a unicast route", h["err"])
        r = self.d.ask("refresh 999999 10.1.0.2")
        self.assertFalse(r["ok"])
        self.assertIn("No such device", r["err"])
        r = self.d.ask(f"refresh {a0} nothing")
        self.assertFalse(r["ok"])
        self.assertIn("not an address", r["err"])


def main():
    global DRIVER
    ap = argparse.ArgumentParser()
    ap.add_argument("--driver", required=True)
    a, rest = ap.parse_known_args()
    DRIVER = os.path.abspath(a.driver)
    if shutil.which("ip") is None or shutil.which("sysctl") is None:
        print("skipped: iproute2 (ip) or procps (sysctl) is missing")
        return 77
    if os.geteuid() != 0:
        print("test_hostif needs root (network namespaces, addresses, neighbour entries)")
        return 1
    prog = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
    return 0 if prog.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
