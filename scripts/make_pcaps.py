#!/usr/bin/python3
"""Makes the captures a vdev pmd_config (pmd_config/vdev-demo.toml) feeds to meshgate, for a gateway file with static
keys (configs/gateway-dual.toml by default):

  DIR/in.pcap           inside traffic: FLOWS flows x PACKETS packets, interleaved; IPv4 and IPv6, TCP and UDP,
                        64 to 1400 bytes, to destinations inside the file's [inside] prefixes' far side
  DIR/rx-<instance>.pcap inbound ESP from the devices: PER_TUNNEL packets on every tunnel of that instance,
                        encrypted with the tunnel's inbound SA by scapy (an encoder meshgate does not share)
  DIR/empty.pcap        a pcap header only, for a port with nothing to read
  DIR/out/              where meshgate writes (MESHGATE_OUT)

and prints the environment to run meshgate with. Needs Debian's python3-scapy (/usr/bin/python3).

  /usr/bin/python3 scripts/make_pcaps.py DIR [--config FILE] [--flows N] [--packets N] [--per-tunnel N]
"""
import argparse
import logging
import os
import sys
import tomllib

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.all import Ether, IP, IPv6, TCP, UDP, Raw, wrpcap  # noqa: E402
from scapy.layers.ipsec import SecurityAssociation, ESP  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ETH = dict(src="02:00:00:00:00:09", dst="02:00:00:00:00:0a")  # explicit: no ARP lookups
CIPHERS = {"aes-gcm-128": "AES-GCM", "aes-gcm-256": "AES-GCM"}  # scapy has no ChaCha20-Poly1305 for ESP


def inside_packets(flows, per_flow):
    """flows x per_flow inner packets, flow after flow in each round, sizes cycling over 64..1400 bytes."""
    pk = []
    for r in range(per_flow):
        for f in range(flows):
            size = (64, 200, 576, 1200, 1400)[(f + r) % 5]
            if f % 3 == 0:
                p = IPv6(src="2001:db8:a::%x" % (f + 1), dst="2001:db8:b::1") / TCP(sport=1024 + f, dport=443)
            else:
                p = IP(src="10.0.%d.%d" % (f // 250 % 256, f % 250 + 1), dst="10.128.0.%d" % (f % 7 + 1)) / \
                    (UDP(sport=1024 + f % 60000, dport=4789) if f % 3 == 1 else TCP(sport=1024 + f % 60000, dport=80))
            p = p / Raw(bytes(max(0, size - len(p))))
            pk.append(Ether(**ETH) / p)
    return pk


def sa_key(sa, config_dir):
    """The keying material of an SA table: `key = "HEX"` or `key_file` (hex text or raw bytes)."""
    if "key" in sa:
        return bytes.fromhex(sa["key"].replace(":", ""))
    path = os.path.join(config_dir, sa["key_file"])
    data = open(path, "rb").read()
    try:
        return bytes.fromhex(data.decode().strip().replace(":", ""))
    except (UnicodeDecodeError, ValueError):
        return data


def inbound_esp(cfg, config_dir, per_tunnel):
    """{instance name: [frames]}: per_tunnel ESP packets from each device on each static-key tunnel."""
    inst = {i["name"]: i for i in cfg["instance"]}
    dev = {d["name"]: d for d in cfg["device"]}
    rx = {name: [] for name in inst}
    for t in cfg["tunnel"]:
        sa_cfg = t.get("in")
        if sa_cfg is None or sa_cfg.get("cipher", "aes-gcm-128") not in CIPHERS:
            print(f"make_pcaps: tunnel {t['name']}: no static AES-GCM inbound SA, no inbound ESP made for it",
                  file=sys.stderr)
            continue
        i, d = inst[t["instance"]], dev[t["device"]]
        sa = SecurityAssociation(ESP, spi=sa_cfg["spi"], crypt_algo="AES-GCM", crypt_key=sa_key(sa_cfg, config_dir),
                                 tunnel_header=IP(src=d["ipv4"], dst=i["ipv4"]), esn_en=sa_cfg.get("esn", False))
        for n in range(per_tunnel):
            inner = IP(src="10.128.0.%d" % (n % 7 + 1), dst="10.0.0.%d" % (n % 200 + 1)) / \
                UDP(sport=53, dport=1000 + n % 60000) / Raw(b"r" * 100)
            rx[t["instance"]].append(Ether(src="02:00:00:00:01:01", dst="02:00:00:00:00:0b") / sa.encrypt(inner))
    return rx


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--config", default=os.path.join(ROOT, "configs", "gateway-dual.toml"))
    ap.add_argument("--flows", type=int, default=1000)
    ap.add_argument("--packets", type=int, default=10, help="packets per flow")
    ap.add_argument("--per-tunnel", type=int, default=200, help="inbound ESP packets per tunnel")
    a = ap.parse_args()
    if a.flows < 1 or a.packets < 1 or a.per_tunnel < 0:
        ap.error("--flows and --packets must be at least 1, --per-tunnel at least 0")
    cfg = tomllib.load(open(a.config, "rb"))
    os.makedirs(os.path.join(a.dir, "out"), exist_ok=True)
    wrpcap(os.path.join(a.dir, "in.pcap"), inside_packets(a.flows, a.packets))
    wrpcap(os.path.join(a.dir, "empty.pcap"), [])
    for name, frames in inbound_esp(cfg, os.path.dirname(os.path.abspath(a.config)), a.per_tunnel).items():
        wrpcap(os.path.join(a.dir, f"rx-{name}.pcap"), frames)
    d = os.path.abspath(a.dir)
    print(f"export MESHGATE_INSIDE_PCAP={d}/in.pcap MESHGATE_OUT={d}/out")
    names = [i["name"] for i in cfg["instance"]]
    for var, name in zip(("MESHGATE_OUT_A_RX", "MESHGATE_OUT_B_RX"), names):
        print(f"export {var}={d}/rx-{name}.pcap")


if __name__ == "__main__":
    main()
