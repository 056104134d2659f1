# SPDX-License-Identifier: GPL-2.0-or-later
"""The tests' keying RECORDER: listens on a keying socket (lib/keying/keying_wire.h), records every message
kernel-meshgate sends, answers GET_SPI with fresh SPIs and the rest with OK. It is an instrument for watching the
plugin, not a stand-in for meshgate; the one bit of state it keeps is which SAs it was given, so that DEL_SA and
QUERY_SA of an SA it never saw (after a restart) get NOT_FOUND, as they would from a restarted meshgate.

The struct layouts are written out here independently of the C header, and their sizes checked against the sizes
the header pins, so a drift on either side shows up as a failure."""
import os
import secrets
import socket
import struct
import threading
import time

MAGIC, VERSION = 0x594B474D, 1
HELLO, GET_SPI, ADD_SA, UPDATE_SA, DEL_SA, QUERY_SA, EXPIRE, REPLY = 1, 2, 3, 4, 5, 6, 7, 0x80
NAMES = {HELLO: "HELLO", GET_SPI: "GET_SPI", ADD_SA: "ADD_SA", UPDATE_SA: "UPDATE_SA", DEL_SA: "DEL_SA",
         QUERY_SA: "QUERY_SA", EXPIRE: "EXPIRE"}
DIR_IN, DIR_OUT = 1, 2
OK, E_NOT_FOUND, E_REFUSED = 0, 5, 6

HDR = struct.Struct("<IHHII")
SEL = "I B 3x 16s 16s"
SA = struct.Struct("<" + SEL + " I B B B B H H B 3x I I Q Q Q Q 36s 4x")
SPI_REQ = struct.Struct("<" + SEL)
UPDATE = struct.Struct("<I B B H H B x 16s 16s")
REF = struct.Struct("<I B 3x")
REPLY_S = struct.Struct("<i I Q Q Q Q I 32s 112s 4x")
EXPIRE_S = struct.Struct("<I I B 7x")
for s, n in ((HDR, 16), (SA, 136), (SPI_REQ, 40), (UPDATE, 44), (REF, 8), (REPLY_S, 192), (EXPIRE_S, 16)):
    assert s.size == n, (s.format, s.size, n)


def _addr(family, raw):
    return socket.inet_ntop(socket.AF_INET, raw[:4]) if family == 4 else socket.inet_ntop(socket.AF_INET6, raw)


def decode(typ, body):
    """A recorded message as a dict (key included: the tests decrypt with it)."""
    m = {"type": NAMES.get(typ, typ), "t": time.monotonic()}
    if typ == GET_SPI and len(body) == SPI_REQ.size:
        if_id, fam, loc, rem = SPI_REQ.unpack(body)
        m.update(if_id=if_id, family=fam, local=_addr(fam, loc), remote=_addr(fam, rem))
    elif typ == ADD_SA and len(body) == SA.size:
        (if_id, fam, loc, rem, spi, d, cipher, esn, encap, sport, dport, keylen, replay, reqid, sb, hb, sp, hp,
         key) = SA.unpack(body)
        m.update(if_id=if_id, family=fam, local=_addr(fam, loc), remote=_addr(fam, rem), spi=spi, dir=d,
                 cipher=cipher, esn=esn, encap=encap, sport=sport, dport=dport, keylen=keylen, replay_window=replay,
                 reqid=reqid, soft_bytes=sb, hard_bytes=hb, soft_packets=sp, hard_packets=hp, key=key[:keylen],
                 key_tail=key[keylen:])
    elif typ == UPDATE_SA and len(body) == UPDATE.size:
        spi, d, encap, sport, dport, fam, loc, rem = UPDATE.unpack(body)
        m.update(spi=spi, dir=d, encap=encap, sport=sport, dport=dport, family=fam, local=_addr(fam, loc),
                 remote=_addr(fam, rem))
    elif typ in (DEL_SA, QUERY_SA) and len(body) == REF.size:
        spi, d = REF.unpack(body)
        m.update(spi=spi, dir=d)
    elif typ != HELLO or body:
        m["malformed"] = len(body)
    return m


class Recorder:
    def __init__(self, path):
        self.path = path
        self.msgs = []
        self.cond = threading.Condition()
        self.conn = None
        self.listener = None
        self.thread = None
        self.sas = set()  # (dir, spi) given by ADD_SA since this incarnation started
        self.query = {}   # (dir, spi) -> (packets, bytes, last_use_ms_ago) for QUERY_SA replies
        self.refuse_updates = False  # answer UPDATE_SA as meshgate does (E_REFUSED) instead of OK

    def start(self):
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind(self.path)
        os.chmod(self.path, 0o600)
        self.listener.listen(4)
        self.sas = set()
        self.thread = threading.Thread(target=self._serve, args=(self.listener,), daemon=True)
        self.thread.start()

    def stop(self):
        """meshgate going away: the listening socket and the connection close, the path disappears."""
        listener, self.listener = self.listener, None
        if listener:
            listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self.cond:
            if self.conn:
                self.conn.shutdown(socket.SHUT_RDWR)
                self.conn.close()
                self.conn = None
        if self.thread:
            self.thread.join(5)
        if os.path.exists(self.path):
            os.unlink(self.path)

    def _serve(self, listener):
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with self.cond:
                self.conn = conn
                self.msgs.append({"type": "CONNECT", "t": time.monotonic()})
                self.cond.notify_all()
            while True:
                try:
                    data = conn.recv(1024)
                except OSError:
                    data = b""
                if not data:
                    break
                self._handle(conn, data)
            with self.cond:
                if self.conn is conn:
                    self.conn = None
                    conn.close()

    def _handle(self, conn, data):
        if len(data) < HDR.size:
            self._record({"type": "SHORT", "len": len(data), "t": time.monotonic()})
            return
        magic, version, typ, seq, length = HDR.unpack_from(data)
        m = decode(typ, data[HDR.size:])
        m.update(seq=seq, magic_ok=magic == MAGIC and version == VERSION, len_ok=length == len(data))
        status, spi, packets, nbytes, last = OK, m.get("spi", 0), 0, 0, 2**64 - 1
        if typ == GET_SPI:
            spi = 0xC0000000 | secrets.randbits(28)
            m["allocated"] = spi
        elif typ == ADD_SA:
            self.sas.add((m["dir"], m["spi"]))
        elif typ == DEL_SA:
            if (m["dir"], m["spi"]) not in self.sas:
                status = E_NOT_FOUND
            self.sas.discard((m["dir"], m["spi"]))
        elif typ == UPDATE_SA and self.refuse_updates:
            status = E_REFUSED  # as meshgate: an installed SA is not moved, it is rekeyed
        elif typ == QUERY_SA:
            if (m["dir"], m["spi"]) not in self.sas:
                status = E_NOT_FOUND
            packets, nbytes, last = self.query.get((m["dir"], m["spi"]), (0, 0, 2**64 - 1))
        reason = (b"recorder: not moved, rekey it" if status == E_REFUSED else b"recorder: not given this SA") \
            if status else b""
        body = REPLY_S.pack(status, spi, packets, nbytes, last, 0, 0, b"recorder", reason)
        self._record(m)
        conn.send(HDR.pack(MAGIC, VERSION, typ | REPLY, seq, HDR.size + len(body)) + body)

    def _record(self, m):
        with self.cond:
            self.msgs.append(m)
            self.cond.notify_all()

    def send_expire(self, spi, reqid, hard):
        body = EXPIRE_S.pack(spi, reqid, 1 if hard else 0)
        with self.cond:
            self.conn.send(HDR.pack(MAGIC, VERSION, EXPIRE, 0, HDR.size + len(body)) + body)

    def wait(self, pred, timeout, what):
        """Waits until pred(list of messages) is true; returns its value."""
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                v = pred(self.msgs)
                if v:
                    return v
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out after %.0f s waiting for %s; recorded: %s" %
                                         (timeout, what, [x["type"] for x in self.msgs]))
                self.cond.wait(left)

    def of(self, typ, since=0):
        with self.cond:
            return [m for m in self.msgs[since:] if m["type"] == typ]

    def count(self):
        with self.cond:
            return len(self.msgs)
