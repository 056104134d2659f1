#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""End to end with a real peer: the device (charon + kernel-libipsec) brings up CHILD_SAs with the gateway
(charon + kernel-meshgate + the keying recorder). What the plugin sends must be what charon negotiated, in
charon's order, and the keys must be the ones the device encrypts with: scapy decrypts the device's captured
ESP-in-UDP with the key from the recorded inbound ADD_SA, and the inner ICMP comes out."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ikelab  # noqa: E402
from recorder import DIR_IN, DIR_OUT  # noqa: E402

CIPHERS = {"gcm": (1, 20, "AES-GCM"), "chacha": (3, 36, "CHACHA20-POLY1305")}


def check_child(lab, dev, rec, child, results):
    cipher_id, keylen, scapy_cipher = CIPHERS[child]
    dev_inner, gw_net, _ = ikelab.CHILDREN[child]
    t0 = time.monotonic()
    msgs = ikelab.initiate(dev, rec, child)
    up = time.monotonic() - t0
    types = [(m["type"], m.get("dir")) for m in msgs]
    assert types == [("GET_SPI", None), ("ADD_SA", DIR_IN), ("ADD_SA", DIR_OUT)], types
    get_spi, sa_in, sa_out = msgs
    for m in msgs:
        assert m["magic_ok"] and m["len_ok"] and "malformed" not in m, m
    # charon gives get_spi no if_id: the tunnel is named by the outer addresses
    assert (get_spi["if_id"], get_spi["family"], get_spi["local"], get_spi["remote"]) == (
        0, 4, lab.GW_OUTER, lab.DEV_OUTER), get_spi
    assert sa_in["spi"] == get_spi["allocated"], (sa_in["spi"], get_spi["allocated"])
    dev_spis = dev.child_spis(child)
    assert len(dev_spis) == 1, dev_spis
    dev_in, dev_out = dev_spis[0]
    assert sa_in["spi"] == dev_out and sa_out["spi"] == dev_in, (sa_in["spi"], sa_out["spi"], dev_spis)
    for sa in (sa_in, sa_out):
        # the selector is the gateway's view whatever the direction: local = the gateway's outer address
        assert (sa["family"], sa["local"], sa["remote"], sa["if_id"]) == (4, lab.GW_OUTER, lab.DEV_OUTER, 0), sa
        assert (sa["encap"], sa["sport"], sa["dport"]) == (1, 4500, 4500), sa
        assert (sa["cipher"], sa["keylen"], sa["esn"]) == (cipher_id, keylen, 0), sa
        assert sa["key_tail"] == bytes(36 - keylen), "bytes after keylen must be zero"
        assert sa["reqid"] != 0 and sa["reqid"] == sa_in["reqid"], (sa["reqid"], sa_in["reqid"])
    # meshgate takes 0 (its default) or a power of two 64..65536 (lib/keying validation); charon's default is 32
    w = sa_in["replay_window"]
    assert w == 0 or (64 <= w <= 65536 and w & (w - 1) == 0), "inbound replay window %d" % w
    assert sa_out["replay_window"] == 0, sa_out["replay_window"]
    assert sa_in["key"] != sa_out["key"], "inbound and outbound keys must differ"

    # The oracle: the device's ESP toward the gateway, decrypted with the recorded inbound key.
    gw_host = gw_net.split("/")[0][:-1] + "1"
    pkts = ikelab.capture_esp(lab, dev_inner, gw_host)
    assert len(pkts) == 3, "captured %d ESP-in-UDP packets, expected 3" % len(pkts)
    inner = ikelab.decrypt(pkts, sa_in["spi"], scapy_cipher, sa_in["key"], lab.DEV_OUTER, lab.GW_OUTER)
    from scapy.all import ICMP, IP
    for p in inner:
        assert IP in p and ICMP in p and p[ICMP].type == 8, p.summary()
        assert (p[IP].src, p[IP].dst) == (dev_inner, gw_host), p.summary()
    # The oracle can say no: one flipped key bit and nothing authenticates.
    bad = bytes([sa_in["key"][0] ^ 1]) + sa_in["key"][1:]
    try:
        ikelab.decrypt(pkts[:1], sa_in["spi"], scapy_cipher, bad, lab.DEV_OUTER, lab.GW_OUTER)
        raise AssertionError("a wrong key decrypted the capture")
    except Exception as e:  # scapy raises IPSecIntegrityError (or a cryptography InvalidTag)
        if isinstance(e, AssertionError):
            raise
    results.append("%s: CHILD_SA up in %.0f ms (swanctl --initiate), 3/3 ESP packets decrypted" % (child, up * 1000))


def main():
    results = []
    with ikelab.gateway_lab() as (lab, rec, dev, gw):
        for child in ("gcm", "chacha"):
            check_child(lab, dev, rec, child, results)
        assert gw.alive() and dev.alive()
    print("\n".join(results))
    print("%d passed, 0 failed" % len(results))


if __name__ == "__main__":
    main()
