#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""A device that moves (MOBIKE, RFC 4555; the same path as a NAT that changes its mapping): the gateway's charon
asks its kernel interface to move the installed SAs (update_sa). meshgate does not move an installed SA (its outer
header is precomputed and its key gone) and refuses UPDATE_SA; the plugin must then answer charon NOT_SUPPORTED,
which makes charon rekey the CHILD_SA with the new address: a new SA pair to the new address is installed and the old
one deleted. (Answered FAILED instead, charon keeps sending to the old address: the tunnel is lost.) The keying
recorder refuses UPDATE_SA as meshgate does."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ikelab  # noqa: E402
from recorder import DIR_IN, DIR_OUT, Recorder  # noqa: E402

NEW_DEV = "192.0.2.5"


def main():
    ikelab.need_packages()
    so = ikelab.plugin_path()
    with ikelab.Lab() as lab:
        rec = Recorder(os.path.join(lab.dir, "keying.sock"))
        rec.refuse_updates = True
        rec.start()
        try:
            for addr, _, _ in ikelab.CHILDREN.values():
                lab.ns(lab.dev_ns, "ip", "addr", "add", addr + "/32", "dev", "lo")
            # The device may use any of its addresses (MOBIKE); the gateway's side is the one under test.
            dev_conf = ikelab.swanctl_conf(lab.DEV_OUTER, lab.GW_OUTER, "dev.lab", "gw.lab", True).replace(
                "local_addrs = %s" % lab.DEV_OUTER, "local_addrs = %any")
            dev = ikelab.Charon(lab, "dev", lab.dev_ns, lab.dev_if, "    kernel-libipsec {\n      load = 2\n    }\n",
                                dev_conf)
            snippet = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kernel-meshgate",
                                   "kernel-meshgate.conf")
            gw_plugins = ("    include %s\n    kernel-meshgate {\n      socket = %s\n      timeout = 2000\n    }\n"
                          % (snippet, rec.path))
            gw = ikelab.Charon(lab, "gw", lab.gw_ns, lab.gw_if, gw_plugins,
                               ikelab.swanctl_conf(lab.GW_OUTER, lab.DEV_OUTER, "gw.lab", "dev.lab", False),
                               delete_delay=1, plugin_dir=lab.plugin_dir(so))
            dev.load()
            gw.load()
            first = ikelab.initiate(dev, rec, "gcm")
            old = {m["dir"]: m for m in first if m["type"] == "ADD_SA"}
            assert old[DIR_OUT]["remote"] == lab.DEV_OUTER, old[DIR_OUT]
            since = rec.count()
            # The device moves: its new address first, then the old one goes (the new one, a secondary of the same
            # subnet, is promoted rather than removed with it).
            lab.ns(lab.dev_ns, "sysctl", "-qw", "net.ipv4.conf.%s.promote_secondaries=1" % lab.dev_if)
            lab.ns(lab.dev_ns, "ip", "addr", "add", NEW_DEV + "/24", "dev", lab.dev_if)
            time.sleep(0.5)
            lab.ns(lab.dev_ns, "ip", "addr", "del", lab.DEV_OUTER + "/24", "dev", lab.dev_if)

            def moved(ms):
                tail = ms[since:]
                new = [m for m in tail if m["type"] == "ADD_SA" and m["dir"] == DIR_OUT and
                       m.get("remote") == NEW_DEV]
                gone = [m for m in tail if m["type"] == "DEL_SA" and m["spi"] == old[DIR_OUT]["spi"]]
                return tail if new and gone else None
            tail = rec.wait(moved, 40, "a new outbound SA to %s and the old one deleted" % NEW_DEV)
            kinds = [(m["type"], m.get("dir")) for m in tail]
            ups = [m for m in tail if m["type"] == "UPDATE_SA"]
            assert ups, "charon asked to move the SA first: %s" % kinds
            i_up = tail.index(ups[0])
            i_new = next(i for i, m in enumerate(tail) if m["type"] == "ADD_SA" and m["dir"] == DIR_OUT)
            assert i_up < i_new, kinds
            new_in = [m for m in tail if m["type"] == "ADD_SA" and m["dir"] == DIR_IN]
            assert new_in and new_in[0]["remote"] == NEW_DEV, new_in
            assert "charon rekeys the CHILD_SA" in gw.log_text(), gw.log_text()[-2000:]
            print("device moved to %s: UPDATE_SA refused, CHILD_SA rekeyed to the new address (%s)"
                  % (NEW_DEV, ", ".join("%s %s" % (t, {DIR_IN: "in", DIR_OUT: "out"}.get(d, "")) for t, d in kinds)))
        finally:
            rec.stop()
    print("1 passed, 0 failed")


if __name__ == "__main__":
    main()
