#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Issue 11 end to end, a device going away (e2elab.py): onprem-2's charon is killed (SIGKILL: no DELETE, its
userspace ESP dies with it) under sequence-numbered UDP load from the inside host to every device host (and from
onprem-1's hosts back). The gateway's charon finds it by DPD (dpd_delay DPD_S, action clear) and deletes a-2's and
b-2's CHILD_SAs; meshgate then has no outbound SA on them: both down, their flows move, and only theirs:

  - a-2 and b-2 down, a-1 and b-1 up, within DETECT_S;
  - moved_down = the flows pinned on a-2 and b-2 before (plus any that moved from the first of them to go onto
    the second in the moment between the two deletions and moved again); a-1 and b-1 took all of them (moved_in)
    and kept their own;
  - exactly the moved flows lost datagrams (those sent between the device's death and the verdict): every flow
    that stayed on a-1 or b-1 lost 0, also those to onprem-2's hosts (onprem-1 forwards them over the site link);
  - the flows that moved are delivered again afterwards (through onprem-1)."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2egw  # noqa: E402
import e2elab  # noqa: E402
import ikelab  # noqa: E402
from e2eload import Load  # noqa: E402

DPD_S = 2
DETECT_S = 30   # DPD_S, then charon's retransmits (1 s, 1.8 s, 3.2 s with 2 tries): ~8 s; bounded generously
LOAD_S = 40


def flows(mg):
    return mg.ctl_json("show", "flows")


def main():
    with e2egw.started(gw_dpd_delay=DPD_S) as up:
        lab, mg, devs = up.lab, up.mg, up.devs
        load = Load(lab, LOAD_S, "dpd", rate=25, back_from=("d1",))
        n_flows = len(load.flows_out)
        ikelab.wait_for(lambda: flows(mg)["flows_new"] >= n_flows, 20, "every inside flow pinned")
        f0 = flows(mg)
        pinned0 = {t["name"]: t["pinned"] for t in f0["tunnels"]}
        moved_in0 = {t["name"]: t["moved_in"] for t in f0["tunnels"]}

        t0 = time.monotonic()
        os.killpg(devs["onprem-2"].proc.pid, signal.SIGKILL)
        devs["onprem-2"].proc.wait(10)

        def verdict():
            ts = mg.tunnels()
            return ts if ts["a-2"]["state"] == "down" and ts["b-2"]["state"] == "down" else None
        ts = ikelab.wait_for(verdict, DETECT_S, "a-2 and b-2 down after onprem-2 went away")
        detect_s = time.monotonic() - t0
        assert ts["a-1"]["state"] == "up" and ts["b-1"]["state"] == "up", ts
        assert not [s for s in mg.sas() if s["tunnel"] in ("a-2", "b-2")], "SAs left on a-2 / b-2: %s" % mg.sas()
        time.sleep(5)   # the moved flows run on their new tunnels for a while
        f1 = flows(mg)
        load.stop_senders()
        res = load.results()

        gone = pinned0["a-2"] + pinned0["b-2"]
        moved_in = {t["name"]: t["moved_in"] - moved_in0[t["name"]] for t in f1["tunnels"]}
        pinned1 = {t["name"]: t["pinned"] for t in f1["tunnels"]}
        lossy = {f: s - u for f, (s, u, _) in res.items() if s != u}
        print("onprem-2 gone: a-2 and b-2 down %.1f s after its charon died (DPD %d s); pinned before %s, after %s; "
              "moved_down %d, moved_in %s; %d of %d flows lost datagrams (%d in all)"
              % (detect_s, DPD_S, pinned0, pinned1, f1["moved_down"] - f0["moved_down"], moved_in, len(lossy),
                 len(res), sum(lossy.values())))
        assert gone > 0, "no flow was on a-2 or b-2: nothing to move %s" % pinned0
        # charon deletes a-2's and b-2's SAs one after the other (tens of ms apart): a flow of the first one to go
        # may be placed on the second while it is still up and move again a moment later. So every flow that was
        # on them, or passed through them, moved once more when they went down, and the survivors took them all.
        again = moved_in["a-2"] + moved_in["b-2"]
        assert f1["moved_down"] - f0["moved_down"] == gone + again, \
            "moved_down is not the flows a-2 and b-2 had (%d) and those that passed through them (%d)" % (gone, again)
        assert moved_in["a-1"] + moved_in["b-1"] == gone, moved_in
        assert pinned1["a-1"] + pinned1["b-1"] == pinned0["a-1"] + pinned0["b-1"] + gone, (pinned0, pinned1)
        assert pinned1["a-2"] == pinned1["b-2"] == 0, pinned1
        inside = {f: v for f, v in lossy.items() if f.split(":")[0] in e2elab.INSIDE_HOSTS}
        assert len(inside) == gone and len(lossy) == gone, \
            "flows that lost datagrams (%d) are not exactly the %d moved ones: %s" % (len(lossy), gone, lossy)
        dups = {f: d for f, (_, _, d) in res.items() if d}
        assert not dups, dups
        for f, (s, u, _) in res.items():
            assert s - u < 25 * (detect_s + 3), "%s lost %d: more than the time to the verdict" % (f, s - u)
        assert mg.proc.poll() is None, "meshgate exited"
        mg.stop_and_check()
    print("1 passed, 0 failed")


if __name__ == "__main__":
    main()
