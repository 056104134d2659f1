#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""kernel-meshgate against meshgate itself (no recorder): the device (charon + kernel-libipsec) brings up a CHILD_SA
with the gateway's charon, whose plugin installs it in a running meshgate (a separate process, over the keying
socket; meshgate's ports are vdevs here, so IKE runs over the lab's veth; the ike-e2e suite carries it through
meshgate's own ports and its exception path). Checked with `meshgatectl --json show sa`:
  - the SPIs meshgate holds are the device's (our inbound = the device's outbound and the reverse), ESP in UDP
    4500 -> 4500 as the device requires, the tunnel up (it has an outbound SA);
  - a rekey started by the device: meshgate holds the new pair, and the old SAs disappear (old outbound at once,
    old inbound after charon's delete delay);
  - the device's charon going away and the gateway's deleting the CHILD_SA leave meshgate with no SA for the
    tunnel, which is down again.
Needs MESHGATE and MESHGATECTL (the built programs) besides KERNEL_MESHGATE_SO."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ikelab  # noqa: E402

DELETE_DELAY = 2


def meshgate_config(lab, sock):
    pmd = os.path.join(lab.dir, "pmd.toml")
    with open(pmd, "w") as f:
        f.write('[eal]\nargs = ["--no-huge", "-m", "256", "--no-pci", "-l", "0-1"]\n[workers]\nlcores = [1]\n'
                '[[port]]\nname = "inside"\ndevargs = "net_null0"\n[[port]]\nname = "out"\ndevargs = "net_null1"\n'
                '[[port]]\nname = "out2"\ndevargs = "net_null2"\n')
    cfg = os.path.join(lab.dir, "gateway.toml")
    with open(cfg, "w") as f:
        f.write("""[gateway]
name = "ikelab"
pmd_config = "%s"
state_dir = "%s"
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
name = "gw2"        # active-active needs two; its tunnel is never keyed here
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
""" % (pmd, os.path.join(lab.dir, "state"), sock, lab.GW_OUTER, lab.DEV_OUTER))
    os.makedirs(os.path.join(lab.dir, "state"), exist_ok=True)
    return cfg


def show_sa(ctl, name):
    r = subprocess.run([ctl, "--gateway", name, "--json", "show", "sa"], capture_output=True, text=True, timeout=20)
    return json.loads(r.stdout) if r.returncode == 0 else None


def tunnel_state(ctl, name):
    r = subprocess.run([ctl, "--gateway", name, "--json", "show", "tunnels"], capture_output=True, text=True,
                       timeout=20)
    return json.loads(r.stdout)[0]["state"] if r.returncode == 0 else None


def main():
    ikelab.need_packages()
    so = ikelab.plugin_path()
    mg_bin, ctl = os.environ.get("MESHGATE"), os.environ.get("MESHGATECTL")
    if not (mg_bin and os.path.isfile(mg_bin) and ctl and os.path.isfile(ctl)):
        print("FAIL: MESHGATE / MESHGATECTL do not name the built programs")
        sys.exit(1)
    name = "ikelab%d" % os.getpid()
    with ikelab.Lab() as lab:
        sock = os.path.join(lab.dir, "keying.sock")
        cfg = meshgate_config(lab, sock)
        log = open(os.path.join(lab.dir, "meshgate.log"), "w")
        mg = subprocess.Popen([mg_bin, "-c", cfg, "--control-name", name, "--eal=--file-prefix=" + name,
                               "--duration", "300", "-q"], stdout=log, stderr=subprocess.STDOUT)
        try:
            ikelab.wait_for(lambda: os.path.exists(sock) or mg.poll() is not None, 60, "meshgate's keying socket")
            assert mg.poll() is None, open(log.name).read()
            assert tunnel_state(ctl, name) == "down", "a tunnel keyed by IKE is down until its first SA"
            dev, gw = ikelab.start_pair(lab, so, sock, gw_delete_delay=DELETE_DELAY)
            ikelab.wait_for(lambda: "connected to meshgate gateway 'ikelab'" in gw.log_text(), 20,
                            "the plugin connected to meshgate")
            t0 = time.monotonic()
            dev.swanctl("--initiate", "--child", "gcm", "--timeout", "30", timeout=40)

            def pair():
                rows = show_sa(ctl, name) or []
                return rows if len([r for r in rows if r["state"] == "active"]) == 2 else None
            rows = ikelab.wait_for(pair, 20, "meshgate holding the CHILD_SA's two SAs")
            keyed_s = time.monotonic() - t0
            (dev_in, dev_out), = dev.child_spis("gcm")
            got = sorted((r["direction"], r["spi"]) for r in rows)
            assert got == [("in", dev_out), ("out", dev_in)], (got, dev_in, dev_out)
            assert all(r["keying"] == "ike" for r in rows), rows
            ikelab.wait_for(lambda: tunnel_state(ctl, name) == "up", 10, "the tunnel up once it has an outbound SA")

            # A rekey started by the device: the new pair arrives, the old SAs go.
            t1 = time.monotonic()
            dev.swanctl("--rekey", "--child", "gcm")

            def rekeyed():
                spis = dev.child_spis("gcm")
                rows = show_sa(ctl, name) or []
                if len(spis) != 1 or spis[0] == (dev_in, dev_out):
                    return None
                new_in, new_out = spis[0]
                have = sorted((r["direction"], r["spi"]) for r in rows)
                return (new_in, new_out) if have == [("in", new_out), ("out", new_in)] else None
            new_in, new_out = ikelab.wait_for(rekeyed, 30, "meshgate holding only the rekeyed pair")
            rekey_s = time.monotonic() - t1
            assert tunnel_state(ctl, name) == "up"

            # The gateway's charon deletes the CHILD_SA: meshgate has no SA left and the tunnel is down.
            gw.swanctl("--terminate", "--child", "gcm", "--force", "--timeout", "10", check=False)
            ikelab.wait_for(lambda: show_sa(ctl, name) == [], 20, "no SA left after the CHILD_SA was terminated")
            ikelab.wait_for(lambda: tunnel_state(ctl, name) == "down", 10, "the tunnel down without an SA")
            assert mg.poll() is None, "meshgate exited"
            print("keyed in %.0f ms, rekeyed in %.0f ms (old inbound gone after charon's %d s delete delay)"
                  % (keyed_s * 1000, rekey_s * 1000, DELETE_DELAY))
        except Exception:
            log.flush()
            print("meshgate log:\n" + open(log.name).read()[-3000:])
            raise
        finally:
            if mg.poll() is None:
                mg.terminate()
                try:
                    mg.wait(20)
                except subprocess.TimeoutExpired:
                    mg.kill()
                    mg.wait()
            log.close()
            subprocess.run(["rm", "-rf", "/var/run/dpdk/" + name])
        assert mg.returncode == 0, "meshgate exit %s:\n%s" % (mg.returncode, open(log.name).read()[-2000:])
    print("1 passed, 0 failed")


if __name__ == "__main__":
    main()
