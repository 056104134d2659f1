"""A client of meshgate's keying socket (lib/keying/keying_wire.h), written from the wire format alone: what the
tests use in the role of the keying daemon, to drive and to probe the interface byte by byte."""
import socket
import struct

MAGIC, VERSION = 0x594B474D, 1
HELLO, GET_SPI, ADD_SA, UPDATE_SA, DEL_SA, QUERY_SA, EXPIRE, REPLY = 1, 2, 3, 4, 5, 6, 7, 0x80
IN, OUT = 1, 2
AES128, AES256, CHACHA = 1, 2, 3
OK, E_MALFORMED, E_VERSION, E_NO_TUNNEL, E_EXISTS, E_NOT_FOUND, E_REFUSED, E_BUSY = range(8)

HDR = struct.Struct("<IHHII")
SEL = struct.Struct("<IB3x16s16s")
SA_TAIL = struct.Struct("<IBBBBHHB3xIIQQQQ36s4x")
REF = struct.Struct("<IB3x")
REPLY_S = struct.Struct("<iIQQQQI32s112s4x")
EXPIRE_S = struct.Struct("<IIB7x")
assert SEL.size == 40 and SEL.size + SA_TAIL.size == 136 and REPLY_S.size == 192


def addr(a):
    import ipaddress
    b = ipaddress.ip_address(a).packed
    return b + bytes(16 - len(b)), (4 if len(b) == 4 else 6)


def sel(local=None, remote=None, if_id=0):
    if local is None:
        return SEL.pack(if_id, 0, bytes(16), bytes(16))
    la, fam = addr(local)
    ra, _ = addr(remote)
    return SEL.pack(if_id, fam, la, ra)


def sa_body(selector, spi, direction, key, cipher=AES128, esn=0, window=0, reqid=0, soft_bytes=0, hard_bytes=0,
            soft_packets=0, hard_packets=0, encap=0, sport=0, dport=0, keylen=None):
    return selector + SA_TAIL.pack(spi, direction, cipher, esn, encap, sport, dport,
                                   len(key) if keylen is None else keylen, window, reqid, soft_bytes, hard_bytes,
                                   soft_packets, hard_packets, key.ljust(36, b"\0")[:36])


class Reply:
    def __init__(self, typ, seq, body):
        self.type, self.seq = typ, seq
        (self.status, self.spi, self.packets, self.bytes, self.last_use_ms_ago, self.seqno, self.tunnels, gw,
         reason) = REPLY_S.unpack(body)
        self.gateway = gw.split(b"\0")[0].decode()
        self.reason = reason.split(b"\0")[0].decode()

    def __repr__(self):
        return f"Reply(status={self.status}, spi={self.spi:#x}, reason={self.reason!r})"


class Client:
    def __init__(self, path, timeout=20):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.seq = 0
        self.expires = []

    def close(self):
        self.s.close()

    def raw(self, data):
        """Sends bytes as they are; returns the reply (unsolicited EXPIREs met on the way are kept)."""
        self.s.send(data)
        return self.read_reply()

    def read_reply(self):
        while True:
            d = self.s.recv(4096)
            if len(d) < HDR.size:
                raise AssertionError(f"short reply {d!r}")
            magic, ver, typ, seq, ln = HDR.unpack_from(d)
            assert magic == MAGIC and ver == VERSION and ln == len(d), (magic, ver, ln, len(d))
            if typ == EXPIRE:
                self.expires.append(EXPIRE_S.unpack(d[HDR.size:]))
                continue
            assert typ & REPLY, typ
            return Reply(typ, seq, d[HDR.size:])

    def request(self, typ, body=b"", version=VERSION):
        self.seq += 1
        r = self.raw(HDR.pack(MAGIC, version, typ, self.seq, HDR.size + len(body)) + body)
        assert r.seq == self.seq and r.type == typ | REPLY, (r.seq, self.seq, r.type, typ)
        return r

    def hello(self):
        return self.request(HELLO)

    def get_spi(self, selector):
        return self.request(GET_SPI, selector)

    def add_sa(self, selector, spi, direction, key, **kw):
        return self.request(ADD_SA, sa_body(selector, spi, direction, key, **kw))

    def del_sa(self, spi, direction):
        return self.request(DEL_SA, REF.pack(spi, direction))

    def query_sa(self, spi, direction):
        return self.request(QUERY_SA, REF.pack(spi, direction))
