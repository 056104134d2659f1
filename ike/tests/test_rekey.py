#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Rekeying through kernel-meshgate: a rekey started by the device is make-before-break on the gateway (new
inbound, new outbound, then the old outbound deleted, the old inbound last, after charon's delete delay); an EXPIRE
from meshgate makes the gateway's charon rekey that CHILD_SA itself; a hard EXPIRE closes it and charon re-creates it."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ikelab  # noqa: E402
from recorder import DIR_IN, DIR_OUT  # noqa: E402

DELETE_DELAY = 2  # the gateway charon's delete_rekeyed_delay, seconds


def find(msgs, typ, dir_, spi):
    hits = [i for i, m in enumerate(msgs) if m["type"] == typ and m.get("dir") == dir_ and m.get("spi") == spi]
    return hits[0] if hits else None


def check_rekey(rec, dev, since, old_in, old_out, what, timeout=20):
    """Waits for the new pair and both deletions after message index since; checks their order."""
    def done(ms):
        tail = ms[since:]
        new_in = [m for m in tail if m["type"] == "ADD_SA" and m["dir"] == DIR_IN]
        new_out = [m for m in tail if m["type"] == "ADD_SA" and m["dir"] == DIR_OUT]
        if new_in and new_out and find(tail, "DEL_SA", DIR_OUT, old_out["spi"]) is not None and \
                find(tail, "DEL_SA", DIR_IN, old_in["spi"]) is not None:
            return tail
        return None
    tail = rec.wait(done, timeout, "new SA pair and deletion of the old one after " + what)
    i_spi = [i for i, m in enumerate(tail) if m["type"] == "GET_SPI"]
    i_in = [i for i, m in enumerate(tail) if m["type"] == "ADD_SA" and m["dir"] == DIR_IN]
    i_out = [i for i, m in enumerate(tail) if m["type"] == "ADD_SA" and m["dir"] == DIR_OUT]
    assert len(i_spi) == 1 and len(i_in) == 1 and len(i_out) == 1, [(m["type"], m.get("dir")) for m in tail]
    i_del_out = find(tail, "DEL_SA", DIR_OUT, old_out["spi"])
    i_del_in = find(tail, "DEL_SA", DIR_IN, old_in["spi"])
    order = [i_spi[0], i_in[0], i_out[0], i_del_out, i_del_in]
    assert order == sorted(order), ("%s: not make-before-break: " % what,
                                    [(m["type"], m.get("dir"), m.get("spi")) for m in tail])
    new_in, new_out = tail[i_in[0]], tail[i_out[0]]
    assert new_in["spi"] == tail[i_spi[0]]["allocated"]
    assert new_in["reqid"] == new_out["reqid"] == old_in["reqid"], "a rekey keeps the reqid"
    assert new_in["key"] not in (old_in["key"], old_out["key"]) and new_out["key"] not in (old_in["key"],
                                                                                            old_out["key"])
    # the old inbound SA lives on for the delay, so packets still in flight under it are not lost
    held = tail[i_del_in]["t"] - tail[i_del_out]["t"]
    assert held >= DELETE_DELAY * 0.5, "old inbound deleted %.1f s after the old outbound" % held
    ikelab.wait_for(lambda: dev.child_spis("gcm") == [(new_out["spi"], new_in["spi"])], 10,
                    "the device's CHILD_SA to show the new SPIs (has %s)" % dev.child_spis("gcm"))
    return new_in, new_out, tail[i_out[0]]["t"], held


def main():
    lines = []
    with ikelab.gateway_lab(gw_delete_delay=DELETE_DELAY) as (lab, rec, dev, gw):
        _, old_in, old_out = ikelab.initiate(dev, rec, "gcm")

        # 1. the device rekeys (the gateway answers)
        since, t0 = rec.count(), time.monotonic()
        dev.swanctl("--rekey", "--child", "gcm")
        new_in, new_out, t_out, held = check_rekey(rec, dev, since, old_in, old_out, "swanctl --rekey on the device")
        lines.append("device-initiated rekey: new outbound SA installed %.0f ms after swanctl --rekey, old "
                     "inbound kept %.1f s" % ((t_out - t0) * 1000, held))

        # 2. an EXPIRE for an SA charon does not know changes nothing
        since = rec.count()
        rec.send_expire(0x12345678, new_out["reqid"], hard=False)
        ikelab.wait_for(lambda: "meshgate expired outbound SA 12345678 (reqid %u), unknown to charon" % new_out["reqid"]
                        in gw.log_text(), 10,
                        "the gateway to log the unknown EXPIRE")
        time.sleep(1)
        assert not rec.of("ADD_SA", since), "an EXPIRE of an unknown SA started a rekey"

        # 3. meshgate's soft EXPIRE: the gateway's charon rekeys
        since, t0 = rec.count(), time.monotonic()
        rec.send_expire(new_out["spi"], new_out["reqid"], hard=False)
        r_in, r_out, t_out, held = check_rekey(rec, dev, since, new_in, new_out, "a soft EXPIRE")
        assert "creating rekey job for CHILD_SA ESP/0x%08x/%s" % (new_out["spi"], lab.DEV_OUTER) in gw.log_text()
        lines.append("EXPIRE-initiated rekey: new outbound SA installed %.0f ms after the EXPIRE" %
                     ((t_out - t0) * 1000))

        # 4. a hard EXPIRE: charon closes the CHILD_SA at once (both SAs deleted, no delay) and, as it does
        #    after any hard expire, establishes a new one: new SPIs, new keys
        since = rec.count()
        rec.send_expire(r_out["spi"], r_out["reqid"], hard=True)
        tail = rec.wait(lambda ms: (lambda t: t if find(t, "DEL_SA", DIR_OUT, r_out["spi"]) is not None and
                                    find(t, "DEL_SA", DIR_IN, r_in["spi"]) is not None and
                                    len([m for m in t if m["type"] == "ADD_SA"]) >= 2 else None)(ms[since:]),
                        15, "deletion and re-creation after a hard EXPIRE")
        i_del_out, i_del_in = find(tail, "DEL_SA", DIR_OUT, r_out["spi"]), find(tail, "DEL_SA", DIR_IN, r_in["spi"])
        adds = [i for i, m in enumerate(tail) if m["type"] == "ADD_SA"]
        assert max(i_del_out, i_del_in) < adds[0], "the expired SAs must be gone before new ones come"
        h_in, h_out = tail[adds[0]], tail[adds[1]]
        assert (h_in["dir"], h_out["dir"]) == (DIR_IN, DIR_OUT)
        assert h_in["key"] not in (r_in["key"], r_out["key"])
        ikelab.wait_for(lambda: dev.child_spis("gcm") == [(h_out["spi"], h_in["spi"])], 10,
                        "the device to show the re-created CHILD_SA (has %s)" % dev.child_spis("gcm"))
        assert gw.alive() and dev.alive()
    print("\n".join(lines))
    print("3 passed, 0 failed")


if __name__ == "__main__":
    main()
