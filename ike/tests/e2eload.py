# SPDX-License-Identifier: GPL-2.0-or-later
"""Load and checks shared by the end-to-end tests: sequence-numbered UDP flows both ways (traffic.py) and the
(SPI, IV) check of the router-side captures."""
import json
import os
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2elab import DEVICES, INSIDE_HOSTS  # noqa: E402

RATE = 60         # datagrams a second per flow
UDP_PORT = 6000


def dev_hosts():
    return [h for _, _, _, hosts in DEVICES.values() for h in hosts]


def udp_flows():
    """Inside -> every device host (8 flows per inside host), each device host -> the inside hosts."""
    out, back = [], {}
    for k, h in enumerate(dev_hosts() * 4):
        out.append("%s:%d>%s:%d" % (INSIDE_HOSTS[k % len(INSIDE_HOSTS)], 20000 + k, h, UDP_PORT))
    for dev, (key, _, _, hosts) in DEVICES.items():
        back[key] = ["%s:%d>%s:%d" % (h, 21000 + k, INSIDE_HOSTS[k % len(INSIDE_HOSTS)], UDP_PORT)
                     for k, h in enumerate(hosts * 2)]
    return out, back


class Load:
    """Sequence-numbered UDP flows both ways; results() says what every flow sent, received and got twice."""

    def __init__(self, lab, seconds, tag, rate=RATE, back_from=("d1", "d2"), flows=None):
        """flows: {namespace key: flows it sends} (each key also receives); default the e2e lab's udp_flows()."""
        self.lab, self.tag = lab, tag
        d = lab.dir
        if flows is None:
            out, back = udp_flows()
            flows = dict([("in", out)] + [(k, f) for k, f in back.items() if k in back_from])
            recv_keys = ("in", "d1", "d2")
        else:
            recv_keys = tuple(flows)
        self.flows_out = flows.get("in", [])
        self.recv = {key: lab.traffic(key, "udp-recv", UDP_PORT, os.path.join(d, "%s-recv-%s.json" % (tag, key)),
                                      name="%s-recv-%s" % (tag, key)) for key in recv_keys}
        self.send = {key: lab.traffic(key, "udp-send", rate, seconds, os.path.join(d, "%s-send-%s.json" % (tag, key)),
                                      *f, name="%s-send-%s" % (tag, key)) for key, f in flows.items()}

    def stop_senders(self):
        for p in self.send.values():
            self.lab.stop(p)

    def wait(self, timeout):
        for p in self.send.values():
            p.wait(timeout)

    def results(self, grace=3.0):
        """{flow: (sent, unique received, duplicates)} once the senders are done and the receivers had grace s."""
        time.sleep(grace)
        for p in self.recv.values():
            self.lab.stop(p)
        got = {}
        for key in self.recv:
            got.update(json.load(open(os.path.join(self.lab.dir, "%s-recv-%s.json" % (self.tag, key)))))
        res = {}
        for key in self.send:
            s = json.load(open(os.path.join(self.lab.dir, "%s-send-%s.json" % (self.tag, key))))
            for flow, n in s["sent"].items():
                g = got.get(flow, {"unique": 0, "dups": 0, "max_seq": -1})
                res[flow] = (n, g["unique"], g["dups"])
        return res


def check_iv_unique(caps, raw=False):
    """No (outer src, outer dst, SPI, IV) twice in either capture; returns (packets read, SAs seen, tcpdump drops)."""
    seen, n, sas, drops = set(), 0, set(), 0
    for _, pcap in caps:
        for _, src, dst, spi, seq, iv in esp_headers(pcap, raw):
            key = (src, dst, spi, iv)
            assert key not in seen, "(SPI %#x, IV %s) twice from %s to %s (seq %d)" % (spi, iv.hex(), src, dst, seq)
            seen.add(key)
            sas.add((src, dst, spi))
            n += 1
        d = tcpdump_drops(pcap[:-5] + ".log")
        drops += d or 0
    return n, len(sas), drops


def esp_headers(pcap, raw=False):
    """(time, outer src, outer dst, SPI, sequence, IV) of every ESP-in-UDP packet (raw: every raw ESP packet, IP
    protocol 50) of an Ethernet capture, read with scapy's pcap reader; IKE (UDP 500, or 4500 with the zero marker) and keepalives left out."""
    from scapy.utils import RawPcapReader
    out = []
    for data, meta in RawPcapReader(pcap):
        if len(data) < 14 + 20 + 8 + 16 or data[12:14] != b"\x08\x00" or data[23] != (50 if raw else 17):
            continue
        ihl = (data[14] & 0x0F) * 4
        if not raw and 4500 not in struct.unpack("!HH", data[14 + ihl:14 + ihl + 4]):
            continue   # IKE on UDP 500
        esp = data[14 + ihl:] if raw else data[14 + ihl + 8:]
        if len(esp) < 16 or esp[:4] == b"\0\0\0\0":
            continue
        src, dst = ".".join(map(str, data[26:30])), ".".join(map(str, data[30:34]))
        spi, seq = struct.unpack("!II", esp[:8])
        out.append((meta.sec + meta.usec / 1e6, src, dst, spi, seq, bytes(esp[8:16])))
    return out


def tcpdump_drops(log):
    """Packets tcpdump says the kernel dropped (its closing line), so a reader knows how complete a capture is."""
    for line in open(log):
        if "dropped by kernel" in line:
            return int(line.split()[0])
    return None
