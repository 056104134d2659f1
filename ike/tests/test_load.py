#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""kernel-meshgate loads into Debian's installed charon (built against Debian's configured source), through the
shipped strongswan.d snippet, ahead of kernel-netlink, and connects to the keying socket with HELLO."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ikelab  # noqa: E402


def main():
    with ikelab.gateway_lab() as (lab, rec, dev, gw):
        stats = gw.swanctl("--stats").stdout
        m = re.search(r"loaded plugins: (.*)", stats)
        assert m, stats
        plugins = m.group(1).split()
        assert "kernel-meshgate" in plugins, plugins
        assert plugins.index("kernel-meshgate") < plugins.index("kernel-netlink"), plugins
        rec.wait(lambda ms: [x for x in ms if x["type"] == "HELLO"], 10, "HELLO from the plugin")
        hello = rec.of("HELLO")[0]
        assert hello["magic_ok"] and hello["len_ok"], hello
        log = gw.log_text()
        assert "kernel-meshgate: connected to meshgate gateway 'recorder'" in log, log[-2000:]
        assert gw.alive()
        print("loaded plugins: " + " ".join(plugins))
    print("1 passed, 0 failed")


if __name__ == "__main__":
    main()
