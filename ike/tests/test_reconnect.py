#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""meshgate going away and coming back: while the keying socket is gone a request fails cleanly (charon logs it,
keeps running, the device's new CHILD_SA is refused); when it is back the plugin reconnects by itself, finds that
meshgate no longer has the CHILD_SA's outbound SA and has charon rekey it, and new CHILD_SAs come up again."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ikelab  # noqa: E402
from recorder import DIR_IN, DIR_OUT  # noqa: E402


def main():
    lines = []
    with ikelab.gateway_lab() as (lab, rec, dev, gw):
        _, old_in, old_out = ikelab.initiate(dev, rec, "gcm")

        # meshgate goes away
        rec.stop()
        ikelab.wait_for(lambda: "kernel-meshgate: connection to meshgate at %s lost" % rec.path in gw.log_text(),
                        10, "the plugin to notice the lost connection")
        since = rec.count()
        r = dev.swanctl("--initiate", "--child", "chacha", "--timeout", "20", check=False, timeout=30)
        assert r.returncode != 0, "a CHILD_SA came up with meshgate away:\n" + r.stdout
        ikelab.wait_for(lambda: "kernel-meshgate: GET_SPI failed: not connected to meshgate" in gw.log_text(),
                        10, "the gateway to log the failed request")
        assert gw.alive(), "the gateway's charon died:\n" + gw.log_text()[-3000:]
        assert dev.child_spis("chacha") == [] and dev.child_spis("gcm") == [(old_out["spi"], old_in["spi"])]
        assert rec.count() == since
        lines.append("request while away: refused and logged, charon alive")

        # meshgate comes back, without the SAs it had
        t0 = time.monotonic()
        rec.start()
        rec.wait(lambda ms: [m for m in ms[since:] if m["type"] == "HELLO"], 10, "HELLO after the restart")
        t_hello = time.monotonic() - t0
        q = rec.wait(lambda ms: [m for m in ms[since:] if m["type"] == "QUERY_SA"], 10,
                     "the plugin to ask for the SAs it installed")
        assert (q[0]["dir"], q[0]["spi"]) == (DIR_OUT, old_out["spi"]), q
        tail = rec.wait(lambda ms: (lambda t: t if len([m for m in t if m["type"] == "ADD_SA"]) >= 2 and
                                    [m for m in t if m["type"] == "DEL_SA" and m["spi"] == old_in["spi"]]
                                    else None)(ms[since:]), 20, "the CHILD_SA meshgate lost to be rekeyed")
        adds = [m for m in tail if m["type"] == "ADD_SA"]
        assert (adds[0]["dir"], adds[1]["dir"]) == (DIR_IN, DIR_OUT), adds
        ikelab.wait_for(lambda: dev.child_spis("gcm") == [(adds[1]["spi"], adds[0]["spi"])], 10,
                        "the device to show the rekeyed CHILD_SA (has %s)" % dev.child_spis("gcm"))
        lines.append("reconnected %.0f ms after the socket came back; lost CHILD_SA rekeyed" % (t_hello * 1000))

        # and new CHILD_SAs come up again
        since = rec.count()
        dev.swanctl("--initiate", "--child", "chacha", "--timeout", "30", timeout=40)
        rec.wait(lambda ms: len([m for m in ms[since:] if m["type"] == "ADD_SA"]) >= 2, 10, "the chacha SA pair")
        assert len(dev.child_spis("chacha")) == 1
        assert gw.alive() and dev.alive()
        lines.append("new CHILD_SA after the reconnection")
    print("\n".join(lines))
    print("%d passed, 0 failed" % len(lines))


if __name__ == "__main__":
    main()
