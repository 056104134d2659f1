#!/usr/bin/env python3
"""Input pcap for the end-to-end benchmark (bench/e2e/run.sh): IPv4/UDP packets of many flows, written as pcap
bytes directly (standard library only).

  mkpcap.py OUT.pcap SIZE|imix [--packets N] [--flows N]

SIZE is the inner IPv4 packet length in bytes (the Ethernet frame is 14 bytes more, no FCS), the same length the
ESP benchmark (bench/esp) uses for its "inner B". `imix` is the simple IMIX 7:4:1 of IP lengths 40/576/1500
(frames 54/590/1514), interleaved in that ratio. Destinations lie in 10.128.0.0/16 (an inside prefix of
configs/gateway-*.toml); every packet's flow is drawn from --flows flows (sources 10.1.x.y, ports vary) so that
the pin table and selection table see many flows. Explicit MACs: dst = 02:00:00:00:00:aa, src =
02:00:00:00:00:01.
"""
import argparse
import random
import struct


def csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def packet(ip_len: int, flow: tuple, ident: int) -> bytes:
    src, dst, sport, dport = flow
    udp_len = ip_len - 20
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, ip_len, ident & 0xFFFF, 0x4000, 64, 17, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    payload = bytes((ident + i) & 0xFF for i in range(udp_len - 8))
    udp = struct.pack("!HHHH", sport, dport, udp_len, 0)  # UDP checksum 0: allowed for IPv4
    eth = bytes.fromhex("0200000000aa") + bytes.fromhex("020000000001") + b"\x08\x00"
    return eth + ip + udp + payload


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("size", help="inner IPv4 length in bytes (>= 28) or 'imix'")
    ap.add_argument("--packets", type=int, default=4096)
    ap.add_argument("--flows", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    if a.size == "imix":
        pattern = [40] * 7 + [576] * 4 + [1500]
        rnd.shuffle(pattern)
        sizes = [pattern[i % len(pattern)] for i in range(a.packets)]
    else:
        n = int(a.size)
        if not 28 <= n <= 9000:
            raise SystemExit("size must be 28..9000 or imix")
        sizes = [n] * a.packets
    flows = []
    for i in range(a.flows):
        src = bytes([10, 1, (i >> 8) & 0xFF, i & 0xFF])
        dst = bytes([10, 128, rnd.randrange(256), rnd.randrange(1, 255)])
        flows.append((src, dst, 1024 + rnd.randrange(60000), rnd.choice([53, 443, 4789, 5001])))
    with open(a.out, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, n in enumerate(sizes):
            p = packet(n, flows[rnd.randrange(len(flows))], i)
            f.write(struct.pack("<IIII", i // 1000000, i % 1000000, len(p), len(p)))
            f.write(p)


if __name__ == "__main__":
    main()
