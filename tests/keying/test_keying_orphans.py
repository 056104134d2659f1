#!/usr/bin/python3
"""SAs whose keying daemon is gone (charon killed, restarted): they keep the tunnel running until the tunnel has
newer SAs from a daemon that is connected; then the dead daemon's replaced outbound SA goes at once and its inbound
ones after a 10 s grace (a device may still send on its old SA for a moment), keys wiped with them. Two clients of
the keying socket play the two daemons (tests/keying/keyclient.py); meshgatectl --json show sa is the witness.
Also: a daemon that leaves while its SA is still the tunnel's current one takes nothing with it."""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
from labutil import wait_for  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import keyclient as kc  # noqa: E402

GW_IP, DEV_IP = "192.0.2.1", "198.51.100.1"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--meshgate", required=True)
    ap.add_argument("--meshgatectl", required=True)
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="mg-orphans-")
    name = "mgorph%d" % os.getpid()
    sock = os.path.join(d, "keying.sock")
    with open(os.path.join(d, "pmd.toml"), "w") as f:
        f.write('[eal]\nargs = ["--no-huge", "-m", "256", "--no-pci", "-l", "0-1"]\n[workers]\nlcores = [1]\n'
                '[[port]]\nname = "inside"\ndevargs = "net_null0,no-rx=1"\n'
                '[[port]]\nname = "out"\ndevargs = "net_null1,no-rx=1"\n'
                '[[port]]\nname = "out2"\ndevargs = "net_null2,no-rx=1"\n')
    os.makedirs(os.path.join(d, "state"))
    cfg = os.path.join(d, "gw.toml")
    with open(cfg, "w") as f:
        f.write("""[gateway]
name = "orphans"
pmd_config = "pmd.toml"
state_dir = "state"
[keying]
socket = "%s"
[inside]
port = "inside"
prefixes = ["10.2.0.0/24"]
next_hop_mac = "02:00:00:00:00:01"
[[instance]]
name = "gw"
ipv4 = "%s"
port = "out"
[[instance]]
name = "gw2"
ipv4 = "192.0.2.3"
port = "out2"
[[device]]
name = "dev"
ipv4 = "%s"
[[tunnel]]
name = "t"
instance = "gw"
device = "dev"
keying = "ike"
[[tunnel]]
name = "t2"
instance = "gw2"
device = "dev"
keying = "ike"
""" % (sock, GW_IP, DEV_IP))
    log = open(os.path.join(d, "meshgate.log"), "w")
    mg = subprocess.Popen([a.meshgate, "-c", cfg, "--control-name", name, "--eal=--file-prefix=" + name,
                           "--duration", "300"], stdout=log, stderr=subprocess.STDOUT)

    def sas():
        r = subprocess.run([a.meshgatectl, "--gateway", name, "--json", "show", "sa"], capture_output=True,
                           text=True, timeout=20)
        return sorted((x["direction"], x["spi"]) for x in json.loads(r.stdout)) if r.returncode == 0 else None

    sel = kc.sel(GW_IP, DEV_IP)
    try:
        wait_for(lambda: os.path.exists(sock) or mg.poll() is not None, 60, "meshgate's keying socket")
        assert mg.poll() is None, open(log.name).read()
        # Daemon A installs a pair and dies.
        c = kc.Client(sock)
        assert c.hello().status == kc.OK
        assert c.add_sa(sel, 0x8001, kc.IN, os.urandom(20), window=1024).status == kc.OK
        assert c.add_sa(sel, 0x7001, kc.OUT, os.urandom(20)).status == kc.OK
        c.close()
        time.sleep(2)  # 20 rounds of the orphan check
        assert wait_for(sas, 10, "show sa") == [("in", 0x8001), ("out", 0x7001)], \
            "A's SAs are the tunnel's only ones: they stay after A is gone"
        # Daemon B brings the tunnel up anew.
        c2 = kc.Client(sock)
        assert c2.hello().status == kc.OK
        assert c2.add_sa(sel, 0x8002, kc.IN, os.urandom(20), window=1024).status == kc.OK
        t0 = time.monotonic()
        time.sleep(1)
        assert sas() == [("in", 0x8001), ("in", 0x8002), ("out", 0x7001)], \
            "A's outbound is still the current one until B installs its own: %s" % sas()
        assert c2.add_sa(sel, 0x7002, kc.OUT, os.urandom(20)).status == kc.OK
        t0 = time.monotonic()
        wait_for(lambda: sas() == [("in", 0x8001), ("in", 0x8002), ("out", 0x7002)], 5,
                 "A's replaced outbound SA deleted at once, its inbound kept for the grace")
        wait_for(lambda: sas() == [("in", 0x8002), ("out", 0x7002)], 30, "A's inbound SA deleted after the grace")
        grace = time.monotonic() - t0
        assert grace >= 9, "inbound kept at least ~10 s (went after %.1f s)" % grace
        # B's SAs are its own: B leaving while they are current takes nothing.
        c2.close()
        time.sleep(2)
        assert sas() == [("in", 0x8002), ("out", 0x7002)], sas()
        print("orphans: A's outbound deleted when B's arrived, A's inbound %.1f s later; B's kept" % grace)
    finally:
        if mg.poll() is None:
            mg.terminate()
            try:
                mg.wait(30)
            except subprocess.TimeoutExpired:
                mg.kill()
                mg.wait()
        log.close()
        subprocess.run(["rm", "-rf", "/var/run/dpdk/" + name])
        if mg.returncode != 0:
            print(open(log.name).read()[-3000:])
        shutil.rmtree(d, ignore_errors=True)
    assert mg.returncode == 0, "meshgate exit %s" % mg.returncode
    print("1 passed, 0 failed")


if __name__ == "__main__":
    main()
