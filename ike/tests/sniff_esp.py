#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Run inside a namespace: captures COUNT ESP-in-UDP packets (UDP 4500, non-zero marker: not IKE, not a keepalive)
arriving on IFACE and writes them to PCAP. Prints READY once capturing."""
import sys

from scapy.all import UDP, sniff, wrpcap

iface, count, timeout, pcap = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]


def esp_in_udp(p):
    if UDP not in p or p[UDP].dport != 4500:
        return False
    payload = bytes(p[UDP].payload)
    return len(payload) > 8 and payload[:4] != b"\0\0\0\0"


pkts = sniff(iface=iface, count=count, timeout=timeout, lfilter=esp_in_udp,
             started_callback=lambda: print("READY", flush=True))
wrpcap(pcap, pkts)
print("captured %d" % len(pkts), flush=True)
