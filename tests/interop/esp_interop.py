#!/usr/bin/python3
"""Interop of meshgate's ESP engine with independent implementations.

  scapy decrypts what meshgate-esp encrypted (ICV verified, inner bytes equal to the input);
  meshgate-esp decrypts what scapy encrypted, and drops scapy-made tampered and replayed packets;
  tshark decodes meshgate's AES-GCM output with an esp_sa entry.

Run by meson test with Debian's /usr/bin/python3 (python3-scapy). Exit 0 on success, 1 on a failed check,
77 (meson: skipped) when scapy or tshark cannot be imported/run, with the reason printed.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import logging

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)  # no "MAC address not found" noise
try:
    from scapy.all import IP, IPv6, UDP, TCP, ICMP, Ether, Raw, wrpcap, rdpcap, raw
    from scapy.layers.ipsec import ESP, SecurityAssociation, IPSecIntegrityError
except Exception as e:  # pragma: no cover
    print(f"SKIP: scapy is not importable here ({e}); install python3-scapy")
    sys.exit(77)

FAILS = []


def check(cond, what):
    if not cond:
        FAILS.append(what)
        print(f"FAIL: {what}")
    return cond


CIPHERS = {
    # name: (scapy algo, key bytes without salt)
    "aes-gcm-128": ("AES-GCM", 16),
    "aes-gcm-256": ("AES-GCM", 32),
    "chacha20-poly1305": ("CHACHA20-POLY1305", 32),
}

# Explicit MACs: a bare Ether() makes scapy resolve the destination with ARP on the host's network.
def eth():
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


OUTER = {4: ("192.0.2.1", "198.51.100.7"), 6: ("2001:db8:1::1", "2001:db8:2::7")}


def keymat(cipher, seed):
    n = CIPHERS[cipher][1] + 4
    return bytes((seed * 31 + i * 7 + 3) & 0xff for i in range(n))


def inner_packets():
    """Mixed inner traffic: IPv4 and IPv6; UDP, TCP and ICMP; sizes from tiny to near-MTU."""
    pkts = []
    sizes = [0, 1, 3, 49, 64, 200, 511, 777, 1400]
    for i, sz in enumerate(sizes):
        pay = bytes((i + j) & 0xff for j in range(sz))
        pkts.append(IP(src="10.0.0.%d" % (i + 1), dst="10.128.0.1", tos=0x10) / UDP(sport=1000 + i, dport=53) / Raw(pay))
        pkts.append(IPv6(src="2001:db8:a::%x" % (i + 1), dst="2001:db8:b::1") / TCP(sport=2000 + i, dport=443, flags="PA") / Raw(pay))
    pkts.append(IP(src="10.0.0.200", dst="10.128.0.2") / ICMP(type=8, id=7, seq=1) / Raw(b"ping" * 10))
    return [IP(raw(p)) if p.haslayer(IP) else IPv6(raw(p)) for p in pkts]


def spec(cipher, spi, key, outer, engine=None, esn=False):
    s = f"spi={spi:#x},cipher={cipher},key={key.hex()},src={OUTER[outer][0]},dst={OUTER[outer][1]}"
    if engine:
        s += f",engine={engine}"
    if esn:
        s += ",esn=1"
    return s


def run_tool(tool, args):
    p = subprocess.run([tool] + args + ["--json"], capture_output=True, text=True)
    if p.returncode != 0:
        print(p.stdout, p.stderr)
        raise RuntimeError(f"meshgate-esp {' '.join(args[:1])} exited {p.returncode}")
    return json.loads(p.stdout)


def ours_to_scapy(tool, tmp):
    """meshgate encrypts, scapy decrypts and verifies every ICV."""
    inner = inner_packets()
    src = os.path.join(tmp, "inner.pcap")
    wrpcap(src, [eth() / p for p in inner])
    cases = []
    for cipher in CIPHERS:
        engines = ["ipsecmb", "sodium"] if cipher.startswith("chacha") else ["ipsecmb"]
        for engine in engines:
            for outer in (4, 6):
                for esn in (False, True):
                    cases.append((cipher, engine, outer, esn))
    for cipher, engine, outer, esn in cases:
        tag = f"{cipher}/{engine}/outer v{outer}/{'esn' if esn else 'no esn'}"
        key = keymat(cipher, outer)
        out = os.path.join(tmp, "enc.pcap")
        # With ESN start just below 2^32 so the run crosses into high half 1.
        start = (1 << 32) - 5 if esn else 1
        res = run_tool(tool, ["encrypt", "--sa", spec(cipher, 0x1001, key, outer, engine, esn),
                              "--start-seq", str(start), src, out])
        check(res["frames_out"] == len(inner), f"{tag}: {res['frames_out']} of {len(inner)} encrypted")
        th = IP(src=OUTER[outer][0], dst=OUTER[outer][1]) if outer == 4 else \
            IPv6(src=OUTER[outer][0], dst=OUTER[outer][1])
        sa = SecurityAssociation(ESP, spi=0x1001, crypt_algo=CIPHERS[cipher][0], crypt_key=key,
                                 tunnel_header=th, esn_en=esn)
        got = rdpcap(out)
        ok = 0
        for i, frame in enumerate(got):
            seq = start + i
            outer_pkt = frame.payload
            check(outer_pkt[ESP].seq == seq & 0xffffffff, f"{tag}: packet {i} seq {outer_pkt[ESP].seq}")
            check(bytes(outer_pkt[ESP].data[:8]) == seq.to_bytes(8, "big"), f"{tag}: packet {i} IV is not the seq")
            if esn:
                sa.esn = seq >> 32
            try:
                dec = sa.decrypt(outer_pkt)
            except IPSecIntegrityError as e:
                check(False, f"{tag}: scapy rejects packet {i}: {e}")
                continue
            if check(raw(dec) == raw(inner[i]), f"{tag}: packet {i} inner bytes differ"):
                ok += 1
            src_ip = outer_pkt.src
            check(src_ip == OUTER[outer][0], f"{tag}: outer source {src_ip}")
        print(f"ok   ours->scapy {tag}: {ok}/{len(inner)} decrypted and equal")


def scapy_to_ours(tool, tmp):
    """scapy encrypts; meshgate decrypts, and drops tampered and replayed packets."""
    inner = inner_packets()
    for cipher in CIPHERS:
        for engine in (["ipsecmb", "sodium"] if cipher.startswith("chacha") else ["ipsecmb"]):
            for outer in (4, 6):
                tag = f"{cipher}/{engine}/outer v{outer}"
                key = keymat(cipher, outer + 10)
                hdr = IP(src=OUTER[outer][1], dst=OUTER[outer][0]) if outer == 4 else \
                    IPv6(src=OUTER[outer][1], dst=OUTER[outer][0])
                sa = SecurityAssociation(ESP, spi=0x2002, crypt_algo=CIPHERS[cipher][0], crypt_key=key,
                                         tunnel_header=hdr)
                frames, expect = [], []
                n_tamper = n_replay = 0
                for i, p in enumerate(inner):
                    e = sa.encrypt(p)
                    e = e.__class__(raw(e))
                    frames.append(eth() / e)
                    expect.append(raw(p))
                    if i % 4 == 1:  # tampered copy with a fresh sequence number
                        t = sa.encrypt(p)
                        b = bytearray(raw(t))
                        b[-20] ^= 0x01  # inside the ciphertext
                        frames.append(eth() / t.__class__(bytes(b)))
                        n_tamper += 1
                    if i % 5 == 2:  # replay of the packet just sent
                        frames.append(eth() / e)
                        n_replay += 1
                src = os.path.join(tmp, "scapy_esp.pcap")
                out = os.path.join(tmp, "dec.pcap")
                wrpcap(src, frames)
                res = run_tool(tool, ["decrypt", "--sa", spec(cipher, 0x2002, key, outer, engine), src, out])
                drops = res["drops"]
                check(res["frames_out"] == len(inner), f"{tag}: {res['frames_out']} of {len(inner)} decrypted")
                check(drops.get("in_auth", 0) == n_tamper, f"{tag}: in_auth {drops.get('in_auth', 0)} != {n_tamper}")
                check(drops.get("in_replay", 0) == n_replay, f"{tag}: in_replay {drops.get('in_replay', 0)} != {n_replay}")
                check(sum(drops.values()) == n_tamper + n_replay, f"{tag}: unexpected drops {drops}")
                got = [raw(f.payload) for f in rdpcap(out)]
                check(got == expect, f"{tag}: decrypted inner packets differ from scapy's input")
                print(f"ok   scapy->ours {tag}: {len(got)} decrypted, {n_tamper} tampered and {n_replay} replayed dropped")


def tshark_decodes(tool, tmp):
    tshark = shutil.which("tshark")
    if not tshark:
        print("SKIP tshark: not installed (apt-get install tshark)")
        return
    inner = inner_packets()
    src = os.path.join(tmp, "inner_ts.pcap")
    wrpcap(src, [eth() / p for p in inner])
    for cipher, algo in (("aes-gcm-128", "AES-GCM with 16 octet ICV [RFC4106]"),
                         ("aes-gcm-256", "AES-GCM with 16 octet ICV [RFC4106]")):
        key = keymat(cipher, 3)
        out = os.path.join(tmp, "ts.pcap")
        run_tool(tool, ["encrypt", "--sa", spec(cipher, 0x3003, key, 4), src, out])
        uat = f'"IPv4","{OUTER[4][0]}","{OUTER[4][1]}","0x00003003","{algo}","0x{key.hex()}","NULL",""'
        cmd = [tshark, "-n", "-r", out, "-o", "esp.enable_encryption_decode:TRUE",
               "-o", f"uat:esp_sa:{uat}", "-T", "fields", "-e", "esp.sequence", "-e", "udp.srcport",
               "-e", "tcp.srcport", "-e", "icmp.type"]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if not check(p.returncode == 0, f"tshark {cipher}: exit {p.returncode}: {p.stderr.strip()}"):
            continue
        rows = [r.split("\t") for r in p.stdout.strip().splitlines()]
        check(len(rows) == len(inner), f"tshark {cipher}: {len(rows)} rows")
        decoded = 0
        for i, (r, pk) in enumerate(zip(rows, inner)):
            want = str(pk[UDP].sport) if pk.haslayer(UDP) else str(pk[TCP].sport) if pk.haslayer(TCP) else "8"
            if check(want in r[1:], f"tshark {cipher}: packet {i} not decoded: {r}"):
                decoded += 1
        print(f"ok   tshark {cipher}: {decoded}/{len(inner)} inner packets decoded")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True, help="path to meshgate-esp")
    ap.add_argument("--part", choices=["all", "ours-to-scapy", "scapy-to-ours", "tshark"], default="all")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mg-interop-") as tmp:
        if a.part in ("all", "ours-to-scapy"):
            ours_to_scapy(a.tool, tmp)
        if a.part in ("all", "scapy-to-ours"):
            scapy_to_ours(a.tool, tmp)
        if a.part in ("all", "tshark"):
            tshark_decodes(a.tool, tmp)
    if FAILS:
        print(f"{len(FAILS)} interop checks failed")
        return 1
    print("interop: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
