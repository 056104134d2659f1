#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Issue 11 end to end, restarts (e2elab.py), under sequence-numbered UDP load both ways:

  charon   the gateway's charon killed with SIGKILL: meshgate keeps forwarding on the installed SAs (every tunnel's
           packets_out grows, and packets_in from each device); a new charon initiates the four again: every
           tunnel gets a new outbound SA, each device holds one CHILD_SA per tunnel whose SPIs are meshgate's.
  meshgate meshgate killed with SIGKILL and started again (same state directory): the plugin reconnects and has
           charon rekey every CHILD_SA meshgate lost; all four are keyed again within KEYED_S, meshgate holds no
           SPI it held before, no ESP leaves an instance under an SPI of before the restart, and no (SPI, IV)
           appears twice in the captures across both restarts.
Prints the figures (time to re-key, what the load lost around each restart). The dead charon's SAs are gone
from meshgate within 40 s of the new charon's (outbound at once, inbound after a 10 s grace). Loss is
reported, not failed: around the charon restart a device, on the new charon's INITIAL_CONTACT, destroys the old
IKE_SA and CHILD_SAs before the gateway has its IKE_AUTH response and switches meshgate to the new outbound SA (about
one round trip of datagrams on each re-established tunnel); around meshgate's restart nothing is forwarded until
it runs and the tunnels are keyed again."""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2egw  # noqa: E402
import ikelab  # noqa: E402
from e2elab import DEVICES, INSIDE_HOSTS, INSTANCES, TUNNELS  # noqa: E402
import e2eload  # noqa: E402
from e2eload import Load, check_iv_unique, dev_hosts  # noqa: E402

KEYED_S = 15.0     # meshgate restarted -> all four tunnels keyed again (the plugin retries every 0.5 s)
LOAD_S = 75


def counters(mg):
    return {n: (t["packets_out"], t["packets_in"]) for n, t in mg.tunnels().items()}


def ping_sweep(lab):
    """New flows (ICMP: one per source and destination) from every inside host to every device host. Flows stay on
    their tunnel, so after meshgate's restart only new ones reach the tunnels that were keyed last."""
    procs = [subprocess.Popen(["ip", "netns", "exec", lab.ns["in"], "ping", "-q", "-c", "3", "-i", "0.3", "-W", "2",
                               "-I", src, dst], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for src in INSIDE_HOSTS for dst in dev_hosts()]
    for p in procs:
        p.wait(30)


def assert_flowing(mg, seconds, what, lab=None):
    """Over `seconds` (or a ping sweep with lab): every tunnel sends, and each device's traffic arrives (it sends on
    one of its SAs)."""
    c0 = counters(mg)
    if lab is not None:
        ping_sweep(lab)
    else:
        time.sleep(seconds)
    c1 = counters(mg)
    out = {n: c1[n][0] - c0[n][0] for n in c0}
    inb = {n: c1[n][1] - c0[n][1] for n in c0}
    assert all(v > 0 for v in out.values()), "%s: tunnels that sent nothing in %.0f s: %s" % (what, seconds, out)
    for dev in DEVICES:
        got = sum(inb[t] for t, (_, d, _, _) in TUNNELS.items() if d == dev)
        assert got > 0, "%s: nothing came in from %s in %.0f s: %s" % (what, dev, seconds, inb)
    return out, inb


def report_load(load, what):
    load.stop_senders()
    res = load.results()
    lost = sum(s - u for s, u, _ in res.values())
    dups = sum(d for _, _, d in res.values())
    print("   load while %s: %d flows, %d datagrams, lost %d (%d flows), duplicated %d"
          % (what, len(res), sum(s for s, _, _ in res.values()), lost, sum(1 for s, u, _ in res.values() if s != u),
             dups))
    assert dups == 0, "duplicated datagrams"
    return lost


def device_spis(devs):
    """{tunnel: [(device's spi_in, spi_out), ...]} of the devices' installed CHILD_SAs."""
    return {t: devs[d].child_spis(t) for t, (_, d, _, _) in TUNNELS.items()}


def main():
    with e2egw.started() as up:
        lab, mg, devs, gwc = up.lab, up.mg, up.devs, up.gw
        caps = [lab.capture("rt", "ra", "cap-a"), lab.capture("rt", "rb", "cap-b")]
        load = Load(lab, LOAD_S, "charon", rate=20)
        time.sleep(2)

        # ---- the gateway's charon dies
        old = {(s["direction"], s["spi"]) for s in mg.sas()}
        os.killpg(gwc.proc.pid, signal.SIGKILL)
        gwc.proc.wait(10)
        out, inb = assert_flowing(mg, 4, "charon dead")
        print("charon killed: meshgate forwards on the installed SAs (4 s: out %s, in %s)" % (out, inb))
        gwc = lab.start_gw_charon(up.so, mg.sock, name="gw-charon-2")
        old_out = {n: t["out_spi"] for n, t in mg.tunnels().items()}
        t0 = time.monotonic()
        for t in TUNNELS:   # what start_action = start would do
            gwc.swanctl("--initiate", "--child", t, "--timeout", "30", timeout=40)

        def rekeyed():
            ts = mg.tunnels()
            return all(ts[n]["state"] == "up" and ts[n]["out_spi"] not in (0, old_out[n]) for n in ts)
        ikelab.wait_for(rekeyed, 30, "a new outbound SA on every tunnel from the new charon")
        ikelab.wait_for(lambda: all(len(v) == 1 for v in device_spis(devs).values()), 30,
                        "one CHILD_SA per tunnel on the devices (the old ones deleted)")
        took = time.monotonic() - t0
        ts = mg.tunnels()
        have = {(s["direction"], s["spi"]) for s in mg.sas()}
        for t, [(d_in, d_out)] in device_spis(devs).items():
            assert ts[t]["out_spi"] == d_in, "%s: meshgate sends on %#x, the device receives on %#x" % (
                t, ts[t]["out_spi"], d_in)
            assert ("in", d_out) in have, "%s: the device sends on %#x, meshgate has no such inbound SA" % (t, d_out)
        orphans = sorted(have & old)
        assert_flowing(mg, 3, "after the new charon")
        print("charon restarted: four tunnels keyed again in %.0f ms; SAs of the dead charon still in meshgate: %d %s"
              % (took * 1000, len(orphans), ["%s %#x" % o for o in orphans]))
        # The dead charon cannot delete them: meshgate does, once every tunnel has the new charon's SAs (replaced
        # outbound at once, inbound after a 10 s grace), keys wiped with them.
        t1 = time.monotonic()
        ikelab.wait_for(lambda: not ({(s["direction"], s["spi"]) for s in mg.sas()} & old), 40,
                        "meshgate deleting the dead charon's SAs")
        print("the dead charon's SAs deleted by meshgate %.1f s later" % (time.monotonic() - t1))

        report_load(load, "charon killed and restarted")

        # ---- meshgate dies
        load = Load(lab, LOAD_S, "meshgate", rate=20)
        time.sleep(2)
        before = {s["spi"] for s in mg.sas()}
        mg.kill9()
        t_restart = time.time()
        time.sleep(1)
        mg.start()
        t0 = time.monotonic()

        def keyed():
            ts = mg.tunnels()
            return len(ts) == 4 and all(t["state"] == "up" and t["out_spi"] != 0 for t in ts.values())
        ikelab.wait_for(keyed, KEYED_S, "all four tunnels keyed again after meshgate's restart")
        took = time.monotonic() - t0
        stale = [s for s in mg.sas() if s["spi"] in before]
        assert not stale, "meshgate holds SAs of before its restart: %s" % stale
        assert_flowing(mg, 3, "after meshgate's restart (new flows)", lab=lab)
        print("meshgate restarted: four tunnels keyed again %.0f ms after its start" % (took * 1000))

        report_load(load, "meshgate killed and restarted")
        for p, _ in caps:
            lab.stop(p)
        n, sas, drops = check_iv_unique(caps)
        print("captures: %d ESP packets of %d SAs, no (SPI, IV) twice; tcpdump dropped %d" % (n, sas, drops))
        addrs = {v[0] for v in INSTANCES.values()}
        late = [(src, spi) for pcap in caps for ts_, src, _, spi, _, _ in e2eload.esp_headers(pcap[1])
                if src in addrs and ts_ > t_restart and spi in before]
        assert not late, "ESP sent under SPIs of before meshgate's restart: %s" % late[:5]
        assert mg.proc.poll() is None, "meshgate exited"
        mg.stop_and_check()
    print("1 passed, 0 failed")


if __name__ == "__main__":
    main()
