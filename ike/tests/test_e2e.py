#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Issue 11 end to end (e2elab.py: meshgate with two instances and one charon + kernel-meshgate, two strongSwan
devices, an inside host, nothing mocked; IKE runs through meshgate's own ports and exception taps):

  1. the four tunnels keyed by IKEv2 at once, two started by the gateway and two by the devices;
  2. ping both ways and TCP streams both ways (every byte checked) through all four: packets_out > 0 on each;
  3. under sequence-numbered UDP load both ways, a CHILD_SA rekey every REKEY_EVERY s for SOAK_S s, started by the
     gateway and the devices in turn: every flow loses 0 and duplicates 0, meshgate has no ICV failure (in_auth)
     nor replay, and the captures on the router's links never show one (SPI, IV) twice.
Prints the figures: time to key the four, rekeys done, packets sent and lost, capture coverage."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2egw  # noqa: E402
from e2eload import Load, check_iv_unique, dev_hosts  # noqa: E402
from e2elab import DEVICES, INSIDE_HOSTS, TUNNELS  # noqa: E402

SOAK_S = float(os.environ.get("E2E_SOAK_S", "62"))
REKEY_EVERY = 3.0
TCP_DEV, TCP_IN = 5001, 5002


def check_ping(lab):
    for k, h in enumerate(dev_hosts()):
        src = INSIDE_HOSTS[k % len(INSIDE_HOSTS)]
        r = lab.sh("in", "ping", "-c", "3", "-i", "0.2", "-W", "3", "-I", src, h, check=False)
        assert " 3 received" in r.stdout, "ping %s -> %s:\n%s" % (src, h, r.stdout)
    for dev, (key, _, _, hosts) in DEVICES.items():
        for k, h in enumerate(hosts):
            dst = INSIDE_HOSTS[k % len(INSIDE_HOSTS)]
            r = lab.sh(key, "ping", "-c", "3", "-i", "0.2", "-W", "3", "-I", h, dst, check=False)
            assert " 3 received" in r.stdout, "ping %s -> %s:\n%s" % (h, dst, r.stdout)


def check_tcp(lab, nbytes=300000):
    sinks = {key: lab.traffic(key, "tcp-sink", TCP_DEV, os.path.join(lab.dir, "tcp-sink-%s.json" % key),
                              name="tcp-sink-" + key) for key in ("d1", "d2")}
    sinks["in"] = lab.traffic("in", "tcp-sink", TCP_IN, os.path.join(lab.dir, "tcp-sink-in.json"), name="tcp-sink-in")
    specs_in = ["%s>%s:%d" % (INSIDE_HOSTS[k % len(INSIDE_HOSTS)], h, TCP_DEV)
                for k, h in enumerate(dev_hosts() * 2)]
    senders = [("in", specs_in)]
    for dev, (key, _, _, hosts) in DEVICES.items():
        senders.append((key, ["%s>%s:%d" % (h, INSIDE_HOSTS[k % len(INSIDE_HOSTS)], TCP_IN)
                              for k, h in enumerate(hosts)]))
    t0 = time.monotonic()
    procs = [(key, lab.traffic(key, "tcp-send", os.path.join(lab.dir, "tcp-send-%s.json" % key), nbytes, *specs,
                               name="tcp-send-" + key)) for key, specs in senders]
    for key, p in procs:
        p.wait(180)
    took = time.monotonic() - t0
    for p in sinks.values():
        lab.stop(p)
    total = 0
    for key, specs in senders:
        res = json.load(open(os.path.join(lab.dir, "tcp-send-%s.json" % key)))
        bad = [r for r in res if not r["ok"]]
        assert not bad, "TCP streams from %s not delivered intact: %s" % (key, bad)
        total += sum(r["bytes"] for r in res)
    for key in sinks:
        res = json.load(open(os.path.join(lab.dir, "tcp-sink-%s.json" % key)))
        assert all(r["ok"] for r in res), "sink %s: %s" % (key, res)
    return len(specs_in), sum(len(s) for _, s in senders[1:]), total, took


def out_spis(mg):
    return {n: t["out_spi"] for n, t in mg.tunnels().items()}


def rekey_soak(lab, mg, gwc, devs):
    """A rekey every REKEY_EVERY s. Each device sends all its traffic on one of its two CHILD_SAs (the newest), so
    the tunnel is picked from meshgate's inbound counters: in turn each device's busy tunnel and its idle one, each
    started by the gateway and by the device (every 8 rekeys make every combination)."""
    caps = [lab.capture("rt", "ra", "cap-a"), lab.capture("rt", "rb", "cap-b")]
    load = Load(lab, SOAK_S, "soak")
    t0 = time.monotonic()
    k, done, kinds = 0, {"gateway": 0, "device": 0}, set()
    ts = mg.tunnels()
    seen = {n: {t["out_spi"]} for n, t in ts.items()}
    last_in = [(time.monotonic(), {n: t["packets_in"] for n, t in ts.items()})]
    next_rekey = t0 + 2.0
    while time.monotonic() - t0 < SOAK_S - 2:
        now = time.monotonic()
        ts = mg.tunnels()
        for n, t in ts.items():
            seen[n].add(t["out_spi"])
        last_in = [x for x in last_in if now - x[0] < 1.0] + [(now, {n: t["packets_in"] for n, t in ts.items()})]
        if now >= next_rekey:
            dev = list(DEVICES)[k % 2]
            mine = sorted(n for n, v in TUNNELS.items() if v[1] == dev)
            busy = max(mine, key=lambda n: last_in[-1][1][n] - last_in[0][1][n])
            t = busy if (k // 2) % 2 == 0 else [n for n in mine if n != busy][0]
            side = "gateway" if (k // 4) % 2 == 0 else "device"
            who = gwc if side == "gateway" else devs[dev]
            r = who.swanctl("--rekey", "--child", t, check=False)
            assert r.returncode == 0, "swanctl --rekey %s on the %s: %s%s" % (t, side, r.stdout, r.stderr)
            done[side] += 1
            kinds.add((dev, t == busy, side))
            k += 1
            next_rekey += REKEY_EVERY
        time.sleep(0.2)
    load.wait(SOAK_S + 60)
    res = load.results()
    for p, _ in caps:
        lab.stop(p)
    assert len(kinds) == 8, "not every kind of rekey was done: %s" % sorted(kinds)
    return res, done, seen, caps


def main():
    with e2egw.started() as up:
        lab, mg = up.lab, up.mg
        print("1. four tunnels keyed in %.0f ms (a-1, b-2 by the gateway; a-2, b-1 by the devices)"
              % (up.keyed_s * 1000))

        check_ping(lab)
        n_out, n_back, nbytes, took = check_tcp(lab)
        ts = mg.tunnels()
        idle = [n for n, t in ts.items() if t["packets_out"] == 0]
        assert not idle, "tunnels that carried nothing out: %s\n%s" % (idle, ts)
        print("2. ping both ways; %d TCP streams in, %d out, %.1f MB intact in %.1f s; packets_out %s, packets_in %s"
              % (n_out, n_back, nbytes / 1e6, took, {n: t["packets_out"] for n, t in ts.items()},
                 {n: t["packets_in"] for n, t in ts.items()}))

        before = mg.errors().get("esp", {})
        res, done, seen, caps = rekey_soak(lab, mg, up.gw, up.devs)
        sent = sum(s for s, _, _ in res.values())
        lost = {f: s - u for f, (s, u, _) in res.items() if s != u}
        dups = {f: d for f, (_, _, d) in res.items() if d}
        rekeys = {n: len(s) - 1 for n, s in seen.items()}
        esp = mg.errors().get("esp", {})
        print("3. %d rekeys (%d by the gateway, %d by the devices; new outbound SAs per tunnel %s) in %.0f s; "
              "%d flows, %d datagrams, lost %d, duplicated %d; meshgate ESP drops %s (before the soak %s)"
              % (sum(done.values()), done["gateway"], done["device"], rekeys, SOAK_S, len(res), sent,
                 sum(lost.values()), sum(dups.values()), esp, before))
        n, sas, drops = check_iv_unique(caps)
        print("   captures: %d ESP packets of %d SAs, no (SPI, IV) twice; tcpdump dropped %d" % (n, sas, drops))
        assert not lost, "flows lost datagrams during the rekeys: %s" % lost
        assert not dups, "flows got duplicates: %s" % dups
        assert esp.get("in_auth", 0) == 0 and esp.get("in_replay", 0) == 0, "ICV failures or replays: %s" % esp
        assert all(r >= 3 for r in rekeys.values()), "too few rekeys seen in meshgate: %s" % rekeys
        assert mg.proc.poll() is None, "meshgate exited"
        st = mg.stop_and_check()
        print("   meshgate exit 0, mbufs all back; exception path (frames to / from the kernel): %s"
              % {p: (v.get("to_host"), v.get("from_host")) for p, v in st["ports"].items() if "host" in v})
    print("1 passed, 0 failed")


if __name__ == "__main__":
    main()
