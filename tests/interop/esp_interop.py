#!/usr/bin/python3
"""Interop of meshgate's ESP engine with independent implementations.

  scapy decrypts what meshgate-esp encrypted (ICV verified, inner bytes equal to the input);
  meshgate-esp decrypts what scapy encrypted, and drops scapy-made tampered and replayed packets;
  tshark decodes meshgate's AES-GCM output with an esp_sa entry;
  NAT traversal (RFC 3948): scapy (nat_t_header) decrypts meshgate-esp's ESP in UDP over IPv4 and IPv6 (UDP checksum
  0 over IPv4, valid over IPv6) and meshgate-esp decrypts scapy's, counting a NAT-keepalive, IKE behind the non-ESP
  marker and raw ESP for the UDP SA each under its reason; tshark dissects the output as UDPENCAP + ESP and decrypts
  it;
  keys reach meshgate-esp from a key file (key_file=, as in every run here) or standard input (key=-) without
  being on the command line; key=HEX still works but warns and is hidden from /proc/PID/cmdline at once; key
  files that are not private regular files are refused.

Run by meson test with Debian's /usr/bin/python3 (python3-scapy). Exit 0 on success, 1 on a failed check,
77 (meson: skipped) when scapy or tshark cannot be imported/run, with the reason printed.
"""
import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

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


KEYDIR = None   # where key files are written (a private temporary directory)
_KEYS = itertools.count()


def key_file(key, mode=0o600, text=True):
    """A key file (hex text or raw bytes) of the given mode, as meshgate-esp accepts one (0600)."""
    path = os.path.join(KEYDIR, f"k{next(_KEYS)}.key")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.hex().encode() + b"\n" if text else key)
    os.chmod(path, mode)
    return path


def spec(cipher, spi, key, outer, engine=None, esn=False, key_src=None, udp=None):
    """key_src: the spec's key field (default key_file= of a new 0600 file): the key stays off the command line.
    udp: (sport, dport) for ESP in UDP."""
    ks = key_src or f"key_file={key_file(key)}"
    s = f"spi={spi:#x},cipher={cipher},{ks},src={OUTER[outer][0]},dst={OUTER[outer][1]}"
    if engine:
        s += f",engine={engine}"
    if esn:
        s += ",esn=1"
    if udp:
        s += f",encap=udp,sport={udp[0]},dport={udp[1]}"
    return s


def run_tool(tool, args, stdin=None, stderr_out=None):
    p = subprocess.run([tool] + args + ["--json"], capture_output=True, text=True, input=stdin,
                       stdin=None if stdin is not None else subprocess.DEVNULL, timeout=120)
    if p.returncode != 0:
        print(p.stdout, p.stderr)
        raise RuntimeError(f"meshgate-esp {' '.join(args[:1])} exited {p.returncode}")
    if stderr_out is not None:
        stderr_out.append(p.stderr)
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


def udp_checksum_ok(pkt):
    """scapy recomputes the UDP checksum of an IPv6 packet; True when it equals the one carried."""
    p = pkt.copy()
    had = p[UDP].chksum
    del p[UDP].chksum
    return IPv6(raw(p))[UDP].chksum == had


def natt(tool, tmp):
    """ESP in UDP (RFC 3948) both ways against scapy's nat_t_header, and tshark's UDPENCAP dissector."""
    inner = inner_packets()
    src = os.path.join(tmp, "inner_natt.pcap")
    wrpcap(src, [eth() / p for p in inner])
    for cipher in CIPHERS:
        for engine in (["ipsecmb", "sodium"] if cipher.startswith("chacha") else ["ipsecmb"]):
            for outer in (4, 6):
                tag = f"natt {cipher}/{engine}/outer v{outer}"
                key = keymat(cipher, outer + 20)
                out = os.path.join(tmp, "natt_enc.pcap")
                # The device sits behind a NAT that maps its 4500 to 61001: that is where our packets go.
                res = run_tool(tool, ["encrypt", "--sa", spec(cipher, 0x7007, key, outer, engine, udp=(4500, 61001)),
                                      src, out])
                check(res["frames_out"] == len(inner), f"{tag}: {res['frames_out']} of {len(inner)} encrypted")
                th = IP(src=OUTER[outer][0], dst=OUTER[outer][1]) if outer == 4 else \
                    IPv6(src=OUTER[outer][0], dst=OUTER[outer][1])
                sa = SecurityAssociation(ESP, spi=0x7007, crypt_algo=CIPHERS[cipher][0], crypt_key=key,
                                         tunnel_header=th, nat_t_header=UDP(sport=4500, dport=61001))
                ok = 0
                for i, frame in enumerate(rdpcap(out)):
                    o = frame.payload
                    u = o[UDP]
                    check((u.sport, u.dport) == (4500, 61001), f"{tag}: packet {i} ports {u.sport}->{u.dport}")
                    check(u.len == len(o) - (20 if outer == 4 else 40), f"{tag}: packet {i} UDP length {u.len}")
                    if outer == 4:
                        check(u.chksum == 0, f"{tag}: packet {i} UDP checksum {u.chksum:#x}, RFC 3948 says 0")
                    else:
                        check(u.chksum != 0 and udp_checksum_ok(o), f"{tag}: packet {i} bad IPv6 UDP checksum")
                    check(o[ESP].spi == 0x7007 and o[ESP].seq == i + 1, f"{tag}: packet {i} ESP header")
                    try:
                        dec = sa.decrypt(o)
                    except IPSecIntegrityError as e:
                        check(False, f"{tag}: scapy rejects packet {i}: {e}")
                        continue
                    if check(raw(dec) == raw(inner[i]), f"{tag}: packet {i} inner bytes differ"):
                        ok += 1
                print(f"ok   ours->scapy {tag}: {ok}/{len(inner)} in UDP decrypted and equal")

                # scapy encrypts in UDP from a NATed port to our 4500; with the ESP, the other things a NAT-T port
                # receives.
                key2 = keymat(cipher, outer + 30)
                hdr = IP(src=OUTER[outer][1], dst=OUTER[outer][0]) if outer == 4 else \
                    IPv6(src=OUTER[outer][1], dst=OUTER[outer][0])
                sa2 = SecurityAssociation(ESP, spi=0x7008, crypt_algo=CIPHERS[cipher][0], crypt_key=key2,
                                          tunnel_header=hdr, nat_t_header=UDP(sport=62000, dport=4500))
                raw_sa = SecurityAssociation(ESP, spi=0x7008, crypt_algo=CIPHERS[cipher][0], crypt_key=key2,
                                             tunnel_header=hdr.copy())
                frames, expect = [], []
                for i, p in enumerate(inner):
                    e = sa2.encrypt(p)
                    if outer == 4:
                        # scapy 2.5.0 writes UDP length 8 here (the header is serialised before the ESP is put
                        # behind it): such a datagram carries no ESP and is dropped. The length scapy meant:
                        del e[UDP].len
                    frames.append(eth() / e.__class__(raw(e)))
                    expect.append(raw(p))
                    if i == 3:
                        frames.append(eth() / hdr.copy() / UDP(sport=62000, dport=4500) / Raw(b"\xff"))
                    if i == 5:
                        ike = b"\x00" * 4 + bytes(range(1, 29))   # non-ESP marker + an IKE header's worth
                        frames.append(eth() / hdr.copy() / UDP(sport=62000, dport=4500) / Raw(ike))
                        frames.append(eth() / hdr.copy() / UDP(sport=500, dport=500) / Raw(ike[4:]))
                    if i == 7:
                        raw_sa.seq_num = 1000
                        r = raw_sa.encrypt(p)
                        frames.append(eth() / r.__class__(raw(r)))
                srcp = os.path.join(tmp, "scapy_natt.pcap")
                dst = os.path.join(tmp, "natt_dec.pcap")
                wrpcap(srcp, frames)
                res = run_tool(tool, ["decrypt", "--sa", spec(cipher, 0x7008, key2, outer, engine, udp=(62000, 4500)),
                                      srcp, dst])
                d = res["drops"]
                check(res["frames_out"] == len(inner), f"{tag}: {res['frames_out']} of {len(inner)} decrypted")
                want = {"in_nat_keepalive": 1, "in_ike": 2, "in_encap_mismatch": 1}
                check(d == want, f"{tag}: drops {d}, want {want}")
                got = [raw(f.payload) for f in rdpcap(dst)]
                check(got == expect, f"{tag}: decrypted inner packets differ from scapy's input")
                print(f"ok   scapy->ours {tag}: {len(got)} decrypted from UDP; keepalive, IKE x2 and raw ESP counted")

    tshark = shutil.which("tshark")
    if not tshark:
        print("SKIP tshark natt: not installed")
        return
    for outer in (4, 6):
        key = keymat("aes-gcm-128", outer + 40)
        out = os.path.join(tmp, "natt_ts.pcap")
        run_tool(tool, ["encrypt", "--sa", spec("aes-gcm-128", 0x7009, key, outer, udp=(4500, 4500)), src, out])
        fam = "IPv4" if outer == 4 else "IPv6"
        uat = (f'"{fam}","{OUTER[outer][0]}","{OUTER[outer][1]}","0x00007009",'
               f'"AES-GCM with 16 octet ICV [RFC4106]","0x{key.hex()}","NULL",""')
        cmd = [tshark, "-n", "-r", out, "-o", "esp.enable_encryption_decode:TRUE", "-o", f"uat:esp_sa:{uat}",
               "-T", "fields", "-E", "separator=/t", "-e", "frame.protocols", "-e", "esp.spi", "-e", "esp.sequence",
               "-e", "udp.srcport"]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if not check(p.returncode == 0, f"tshark natt v{outer}: exit {p.returncode}: {p.stderr.strip()}"):
            continue
        rows = [r.split("\t") for r in p.stdout.strip().splitlines()]
        check(len(rows) == len(inner), f"tshark natt v{outer}: {len(rows)} rows")
        good = 0
        for i, (r, pk) in enumerate(zip(rows, inner)):
            protos = r[0].split(":")
            ok = ("udpencap" in protos and "esp" in protos and protos.index("udpencap") < protos.index("esp")
                  and r[1] in ("0x00007009", "0x7009", str(0x7009)) and r[2] == str(i + 1))
            # Inner ports: after the outer UDP's 4500 come the decrypted packet's own (ICMP has none).
            want = str(pk[UDP].sport) if pk.haslayer(UDP) else None
            if want is not None:
                ok = ok and want in r[3].split(",")
            if check(ok, f"tshark natt v{outer}: packet {i} not dissected as UDPENCAP + ESP and decrypted: {r}"):
                good += 1
        print(f"ok   tshark natt v{outer}: {good}/{len(inner)} dissected as UDPENCAP + ESP, inner decoded")


def key_sources(tool, tmp):
    """The same encryption from a key file (hex or raw), standard input and the command line; only the last warns,
    and its key leaves /proc/PID/cmdline; bad key files and key sources are usage errors (exit 2)."""
    inner = inner_packets()
    src = os.path.join(tmp, "inner_keys.pcap")
    wrpcap(src, [eth() / p for p in inner[:4]])
    cipher, key = "aes-gcm-256", keymat("aes-gcm-256", 9)
    outs = {}
    for how, ks, stdin in (("hex file", f"key_file={key_file(key)}", None),
                           ("raw file", f"key_file={key_file(key, text=False)}", None),
                           ("stdin", "key=-", key.hex() + "\n"),
                           ("command line", f"key={key.hex()}", None)):
        out = os.path.join(tmp, f"keys-{how.replace(' ', '-')}.pcap")
        errs = []
        res = run_tool(tool, ["encrypt", "--sa", spec(cipher, 0x4004, key, 4, key_src=ks), src, out], stdin=stdin,
                       stderr_out=errs)
        check(res["frames_out"] == 4, f"key from {how}: {res['frames_out']} of 4 encrypted")
        warned = "warning" in errs[0] and "command line" in errs[0]
        check(warned == (how == "command line"), f"key from {how}: warning {'missing' if how == 'command line' else 'given'}: {errs[0]!r}")
        check(key.hex() not in errs[0], f"key from {how}: the key is in the messages")
        with open(out, "rb") as f:
            outs[how] = f.read()
    check(len(set(outs.values())) == 1, "the same key from file, stdin and command line gave different ESP")
    sa = SecurityAssociation(ESP, spi=0x4004, crypt_algo="AES-GCM", crypt_key=key,
                             tunnel_header=IP(src=OUTER[4][0], dst=OUTER[4][1]))
    got = rdpcap(os.path.join(tmp, "keys-stdin.pcap"))
    check(raw(sa.decrypt(got[0].payload)) == raw(inner[0]), "key=-: scapy cannot decrypt")

    # A key given on the command line is overwritten there at once: watch /proc/PID/cmdline while the tool waits
    # for the second SA's key on standard input.
    ks = [f"key={key.hex()}", "key=-"]
    cmd = [tool, "decrypt", "--sa", spec(cipher, 0x5005, key, 4, key_src=ks[0]),
           "--sa", spec("aes-gcm-128", 0x5006, None, 4, key_src=ks[1]), src, os.path.join(tmp, "hidden.pcap")]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    hidden, seen = False, b""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and p.poll() is None:
        try:
            with open(f"/proc/{p.pid}/cmdline", "rb") as f:
                seen = f.read()
        except OSError:
            break
        if b"meshgate-esp" in seen and b"decrypt" in seen and key.hex().encode() not in seen:
            hidden = True
            break
        time.sleep(0.01)
    out, err = p.communicate(keymat("aes-gcm-128", 10).hex().encode(), timeout=60)
    check(hidden, f"key still in /proc/PID/cmdline (exit {p.returncode}): {seen[:200]!r} {err[-300:]!r}")
    check(p.returncode == 0, f"key=HEX then key=-: exit {p.returncode}: {err[-300:]!r}")

    def refused(ks, want, stdin=b"", what=""):
        q = subprocess.run([tool, "encrypt", "--sa", spec(cipher, 0x6006, key, 4, key_src=ks), src,
                            os.path.join(tmp, "refused.pcap")], capture_output=True, input=stdin, timeout=20)
        e = q.stderr.decode(errors="replace")
        check(q.returncode == 2 and want in e, f"{what or ks}: exit {q.returncode} (want 2), {e.strip()!r}")
        check(key.hex() not in e, f"{what or ks}: the key is in the message")

    refused(f"key_file={key_file(key, 0o644)}", "has mode 0644", what="mode 0644")
    refused(f"key_file={key_file(key, 0o640)}", "has mode 0640", what="mode 0640")
    fifo = os.path.join(KEYDIR, "k.fifo")
    os.mkfifo(fifo, 0o600)
    refused(f"key_file={fifo}", "is a FIFO, not a regular file", what="FIFO")   # before: waited for a writer
    refused("key_file=/dev/zero", "is a character device", what="/dev/zero")
    refused(f"key_file={os.path.join(KEYDIR, 'none.key')}", "cannot be read", what="missing file")
    refused(f"key_file={key_file(key)},key=-", "give the key once", what="two key sources")
    refused("key=-", "holds neither 36 raw bytes nor hex text", stdin=b"not a key\n", what="junk on stdin")
    print("ok   key sources: key_file (hex, raw), key=- and key=HEX (warned, hidden) give the same ESP; bad ones "
          "refused")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True, help="path to meshgate-esp")
    ap.add_argument("--part", choices=["all", "ours-to-scapy", "scapy-to-ours", "tshark", "keys", "natt"],
                    default="all")
    a = ap.parse_args()
    global KEYDIR
    with tempfile.TemporaryDirectory(prefix="mg-interop-") as tmp:
        KEYDIR = os.path.join(tmp, "keys")
        os.mkdir(KEYDIR, 0o700)
        if a.part in ("all", "ours-to-scapy"):
            ours_to_scapy(a.tool, tmp)
        if a.part in ("all", "scapy-to-ours"):
            scapy_to_ours(a.tool, tmp)
        if a.part in ("all", "tshark"):
            tshark_decodes(a.tool, tmp)
        if a.part in ("all", "keys"):
            key_sources(a.tool, tmp)
        if a.part in ("all", "natt"):
            natt(a.tool, tmp)
    if FAILS:
        print(f"{len(FAILS)} interop checks failed")
        return 1
    print("interop: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
