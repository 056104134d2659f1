#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The shipped charon side of the dual-redundancy design, configs/swanctl-dual.conf, loads into a real charon with
kernel-meshgate (its four connections and two secrets, no error), and agrees with configs/gateway-ike.toml tunnel
by tunnel: local address = the instance's, remote = the device's (read back from charon: swanctl --list-conns),
if_id in and out = the tunnel's if_id (from the file: charon 5.9 does not list them), so that the plugin names each
CHILD_SA's tunnel without ambiguity."""
import os
import re
import sys
import tomllib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ikelab  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def main():
    ikelab.need_packages()
    so = ikelab.plugin_path()
    with open(os.path.join(ROOT, "configs", "swanctl-dual.conf")) as f:
        conf = f.read()
    with open(os.path.join(ROOT, "configs", "gateway-ike.toml"), "rb") as f:
        gw = tomllib.load(f)
    # No device answers in this lab: nothing is initiated, only loaded.
    conf = conf.replace("start_action = start", "start_action = none")
    with ikelab.Lab() as lab:
        snippet = os.path.join(ROOT, "ike", "kernel-meshgate", "kernel-meshgate.conf")
        plugins = ("    include %s\n    kernel-meshgate {\n      socket = %s\n      timeout = 500\n    }\n"
                   % (snippet, os.path.join(lab.dir, "no-meshgate.sock")))
        c = ikelab.Charon(lab, "gw", lab.gw_ns, lab.gw_if, plugins, conf, plugin_dir=lab.plugin_dir(so))
        out = c.load().stdout
        assert re.search(r"successfully loaded 4 connections, 0 unloaded", out), out
        assert re.search(r"loaded ike secret 'ike-onprem-1'", out) and re.search(r"ike-onprem-2", out), out
        raw = c.swanctl("--list-conns", "--raw").stdout
        inst = {i["name"]: i["ipv4"] for i in gw["instance"]}
        dev = {d["name"]: d["ipv4"] for d in gw["device"]}
        for t in gw["tunnel"]:
            n = re.escape(t["name"])
            m = re.search(r"\{%s \{local_addrs=\[([^\]]*)\] remote_addrs=\[([^\]]*)\].*?children \{%s \{mode=TUNNEL" % (n, n),
                          raw)
            assert m, "connection %s with a tunnel-mode child %s not loaded:\n%s" % (t["name"], t["name"], raw)
            assert m.group(1) == inst[t["instance"]], (t["name"], m.group(1))
            assert m.group(2) == dev[t["device"]], (t["name"], m.group(2))
            # charon 5.9 does not list if_ids back: they come from the file it accepted.
            block = conf[conf.index("  %s {" % t["name"]):]
            block = block[:block.index("\n  }\n")]
            assert re.search(r"if_id_in = %d\n" % t["if_id"], block) and re.search(r"if_id_out = %d\n" % t["if_id"],
                                                                                  block), (t["name"], block)
        print("swanctl-dual.conf: 4 connections and 2 secrets loaded; addresses and if_ids match gateway-ike.toml")
    print("1 passed, 0 failed")


if __name__ == "__main__":
    main()
