#!/usr/bin/env python3
"""Writes the inside traffic of the installed demo (meshgate@demo, pmd_config vdev-service.toml): FLOWS flows x
PACKETS packets, interleaved, as a classic pcap that net_pcap replays forever (infinite_rx=1).

Python's standard library only (a build step: no scapy on a package builder). The flows are those of
scripts/make_pcaps.py's inside capture: 2 in 3 IPv4 (UDP to 4789 or TCP to 80, 10.0.x.y -> 10.128.0.1-7), 1 in 3
IPv6 TCP to 443 (2001:db8:a::N -> 2001:db8:b::1), 64 to 1400 bytes. Headers carry valid checksums.

  demo_pcap.py OUT [--flows N] [--packets N]
"""
import argparse
import ipaddress
import struct

ETH = bytes.fromhex("02000000000a" "020000000009")  # dst, src: fixed, as make_pcaps.py (no ARP)
SIZES = (64, 200, 576, 1200, 1400)                   # IP packet sizes


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def l4(proto, sport, dport, payload, pseudo):
    if proto == 17:
        h = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
    else:  # TCP: an ACK|PSH segment, data offset 5
        h = struct.pack("!HHIIBBHHH", sport, dport, 1, 1, 5 << 4, 0x18, 65535, 0, 0)
    seg = h + payload
    c = csum(pseudo + seg) or (0xFFFF if proto == 17 else 0)
    at = 6 if proto == 17 else 16
    return seg[:at] + struct.pack("!H", c) + seg[at + 2:]


def ipv4(src, dst, proto, sport, dport, size):
    s, d = ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed
    hl = 8 if proto == 17 else 20
    payload = bytes(max(0, size - 20 - hl))
    seg = l4(proto, sport, dport, payload, s + d + struct.pack("!BBH", 0, proto, hl + len(payload)))
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(seg), 0, 0x4000, 64, proto, 0, s, d)
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return b"\x08\x00" + h + seg


def ipv6(src, dst, sport, dport, size):
    s, d = ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed
    payload = bytes(max(0, size - 40 - 20))
    seg = l4(6, sport, dport, payload, s + d + struct.pack("!I3xB", 20 + len(payload), 6))
    h = struct.pack("!IHBB16s16s", 6 << 28, len(seg), 6, 64, s, d)
    return b"\x86\xdd" + h + seg


def packets(flows, per_flow):
    for r in range(per_flow):
        for f in range(flows):
            size = SIZES[(f + r) % len(SIZES)]
            if f % 3 == 0:
                yield ETH + ipv6(f"2001:db8:a::{f + 1:x}", "2001:db8:b::1", 1024 + f, 443, size)
            else:
                src = f"10.0.{f // 250 % 256}.{f % 250 + 1}"
                dst = f"10.128.0.{f % 7 + 1}"
                proto, dport = (17, 4789) if f % 3 == 1 else (6, 80)
                yield ETH + ipv4(src, dst, proto, 1024 + f % 60000, dport, size)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--flows", type=int, default=1024)
    ap.add_argument("--packets", type=int, default=2, help="packets per flow")
    a = ap.parse_args()
    if not 1 <= a.flows <= 60000 or not 1 <= a.packets <= 100:
        ap.error("--flows 1..60000, --packets 1..100")
    with open(a.out, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))  # microseconds, Ethernet
        for i, p in enumerate(packets(a.flows, a.packets)):
            f.write(struct.pack("<IIII", 1, i, len(p), len(p)) + p)


if __name__ == "__main__":
    main()
