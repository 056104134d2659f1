#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Traffic for the end-to-end lab, run inside a namespace (one process per role). Counts, never speed:

  udp-recv PORT OUT.json            receives sequence-numbered datagrams on 0.0.0.0:PORT until SIGTERM; per flow
                                    (src, sport, dst, dport): received, unique, duplicates, highest sequence
  udp-send RATE SECONDS OUT.json SRC:SPORT>DST:DPORT ...
                                    every flow sends RATE datagrams a second, sequence 0, 1, 2, ... for SECONDS
                                    (or until SIGTERM); OUT has how many each flow sent
  tcp-sink PORT OUT.json            accepts streams until SIGTERM; each starts with (length, seed) and must carry
                                    exactly the bytes random.Random(seed) makes: per stream ok / bytes
  tcp-send OUT.json BYTES SRC>DST:DPORT ...
                                    one stream per argument, in parallel; each waits for the sink's verdict byte

Each role prints READY once its sockets are bound, so a caller can start the other side after it."""
import hashlib
import json
import random
import signal
import socket
import struct
import sys
import threading
import time

MAGIC = 0x6d677365  # "mgse"
HDR = struct.Struct("!IIQ")  # magic, flow index, sequence
SIZE = 200
stop = threading.Event()


def on_term(*_):
    stop.set()


def flow_key(src, sport, dst, dport):
    return "%s:%d>%s:%d" % (src, sport, dst, dport)


def parse_flow(s):
    src, dst = s.split(">")
    (sa, sp), (da, dp) = src.rsplit(":", 1), dst.rsplit(":", 1)
    return sa, int(sp), da, int(dp)


def udp_recv(port, out):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:   # past net.core.rmem_max (we are root): a stalled reader must not be where datagrams go missing
        s.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.setsockopt(socket.IPPROTO_IP, 8, 1)  # IP_PKTINFO: the destination of each datagram, for the flow's name
    s.bind(("0.0.0.0", port))
    s.settimeout(0.2)
    flows = {}  # key -> [received, seen bytearray bitmap, dups, max]
    print("READY", flush=True)
    while not stop.is_set():
        try:
            data, anc, _, (src, sport) = s.recvmsg(2048, 64)
        except socket.timeout:
            continue
        except InterruptedError:
            continue
        if len(data) < HDR.size:
            continue
        magic, _, seq = HDR.unpack_from(data)
        if magic != MAGIC:
            continue
        dst = "?"
        for lvl, typ, val in anc:
            if lvl == socket.IPPROTO_IP and typ == 8:
                dst = socket.inet_ntoa(val[8:12])  # in_pktinfo: ifindex, spec_dst, addr
        k = flow_key(src, sport, dst, port)
        f = flows.get(k)
        if f is None:
            f = flows[k] = [0, bytearray(), 0, -1]
        f[0] += 1
        byte, bit = seq >> 3, 1 << (seq & 7)
        if byte >= len(f[1]):
            f[1].extend(bytes(byte + 1024 - len(f[1])))
        if f[1][byte] & bit:
            f[2] += 1
        else:
            f[1][byte] |= bit
        f[3] = max(f[3], seq)
    res = {k: {"received": f[0], "unique": sum(bin(b).count("1") for b in f[1]), "dups": f[2], "max_seq": f[3]}
           for k, f in flows.items()}
    with open(out, "w") as fh:
        json.dump(res, fh)


def udp_send(rate, seconds, out, flows):
    socks = []
    for spec in flows:
        sa, sp, da, dp = parse_flow(spec)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((sa, sp))
        s.connect((da, dp))
        socks.append([s, flow_key(sa, sp, da, dp), 0])
    print("READY", flush=True)
    pad = bytes(SIZE - HDR.size)
    t0 = time.monotonic()
    errors = 0
    while not stop.is_set():
        now = time.monotonic() - t0
        if now >= seconds:
            break
        due = int(now * rate) + 1  # sequence numbers due by now, per flow
        for i, f in enumerate(socks):
            while f[2] < due:
                try:
                    f[0].send(HDR.pack(MAGIC, i, f[2]) + pad)
                    f[2] += 1
                except OSError:
                    errors += 1  # ENOBUFS and the like: not sent, so not counted; the number is sent again
                    break
        time.sleep(0.005)
    with open(out, "w") as fh:
        json.dump({"sent": {f[1]: f[2] for f in socks}, "send_errors": errors, "seconds": time.monotonic() - t0}, fh)


def stream_bytes(seed, n):
    return random.Random(seed).randbytes(n)


def tcp_sink(port, out):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(64)
    ls.settimeout(0.2)
    results = []
    lock = threading.Lock()

    def serve(c, peer):
        c.settimeout(60)
        r = {"peer": "%s:%d" % peer, "ok": False, "bytes": 0}
        try:
            head = b""
            while len(head) < 12:
                chunk = c.recv(12 - len(head))
                if not chunk:
                    raise EOFError("closed in the header")
                head += chunk
            length, seed = struct.unpack("!QI", head)
            h, n = hashlib.sha256(), 0
            while n < length:
                chunk = c.recv(min(65536, length - n))
                if not chunk:
                    break
                h.update(chunk)
                n += len(chunk)
            r["bytes"] = n
            r["ok"] = n == length and h.digest() == hashlib.sha256(stream_bytes(seed, length)).digest()
            c.sendall(b"\x01" if r["ok"] else b"\x00")
        except (OSError, EOFError) as e:
            r["error"] = str(e)
        finally:
            c.close()
            with lock:
                results.append(r)

    print("READY", flush=True)
    threads = []
    while not stop.is_set():
        try:
            c, peer = ls.accept()
        except (socket.timeout, InterruptedError):
            continue
        t = threading.Thread(target=serve, args=(c, peer), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join(5)
    with open(out, "w") as fh:
        with lock:
            json.dump(results, fh)


def tcp_send(out, nbytes, specs):
    results = [None] * len(specs)

    def one(i, spec):
        src, dst = spec.split(">")
        da, dp = dst.rsplit(":", 1)
        seed = 1000 + i
        r = {"flow": spec, "ok": False, "bytes": nbytes}
        t0 = time.monotonic()
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(60)
            s.bind((src, 0))
            s.connect((da, int(dp)))
            s.sendall(struct.pack("!QI", nbytes, seed) + stream_bytes(seed, nbytes))
            r["ok"] = s.recv(1) == b"\x01"
            s.close()
        except OSError as e:
            r["error"] = str(e)
        r["seconds"] = time.monotonic() - t0
        results[i] = r

    print("READY", flush=True)
    ts = [threading.Thread(target=one, args=(i, s)) for i, s in enumerate(specs)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    with open(out, "w") as fh:
        json.dump(results, fh)


def main():
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    role, a = sys.argv[1], sys.argv[2:]
    if role == "udp-recv":
        udp_recv(int(a[0]), a[1])
    elif role == "udp-send":
        udp_send(float(a[0]), float(a[1]), a[2], a[3:])
    elif role == "tcp-sink":
        tcp_sink(int(a[0]), a[1])
    elif role == "tcp-send":
        tcp_send(a[0], int(a[1]), a[2:])
    else:
        sys.exit("unknown role " + role)


if __name__ == "__main__":
    main()
