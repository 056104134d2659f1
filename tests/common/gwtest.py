#!/usr/bin/python3
"""Shared helpers of the Python suites that run meshgate on net_pcap vdevs (gateway, operator, liveness).

pcap i/o, an independent model of the gateway TOML (tomllib), traffic (flows, traces, frames), one meshgate run
(Run), scapy decryption of the instance ports, meshgate-esp and meshgate-spread as second oracles, the
accounting check that every run must pass, GatewayCase (the assertions built on them) and main() (the runner).

Suites import it with tests/common on sys.path (`import gwtest`) and either call gwtest.main(), which parses
--meshgate/--spread/--esp-tool/--source-root/--keep and runs the __main__ module's tests, or set gwtest.ARGS and
gwtest.TMP themselves before using Run. Importing it exits 77 (meson: skipped) when scapy is missing.
"""
import argparse
import collections
import ipaddress
import json
import logging
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import tomllib
import unittest
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)  # no "MAC address not found" noise
try:
    from scapy.all import IP, IPv6, UDP, TCP, ICMP, Raw, raw
    from scapy.layers.ipsec import ESP, SecurityAssociation, IPSecIntegrityError
except Exception as e:  # pragma: no cover
    print(f"SKIP: scapy is not importable here ({e}); install python3-scapy")
    sys.exit(77)

ARGS = None       # parsed command line (set in main)
TMP = None        # per-process scratch directory
KEEP = False

MARK = b"MGIDX"   # every inner payload starts with MARK + 8-digit packet index + ':' + 6-digit flow id
HOST_MAC = "02:00:00:00:0a:0a"   # inside host (source of the plaintext frames)
GW_MAC = "02:00:00:00:0a:0b"     # what the inside host sends to
PEER_MAC = "02:00:00:00:0b:0b"   # outer source MAC of inbound ESP frames

# ------------------------------------------------------------------------------------------------ pcap i/o


def write_pcap(path, frames, gap_us=250):
    """frames: list of bytes. Microsecond pcap, Ethernet, timestamps gap_us apart (sane for the pin timeout)."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        t = 1_700_000_000 * 1_000_000
        for i, b in enumerate(frames):
            ts = t + i * gap_us
            f.write(struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(b), len(b)))
            f.write(b)


def read_pcap(path, torn_tail_ok=False):
    """Returns the list of frames (bytes) of a pcap (micro- or nanosecond, either byte order). torn_tail_ok: the
    writer was killed, so a last record cut short is left out (else it comes back short, and fails checks)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24 and torn_tail_ok:
        return []
    if len(data) < 24:
        raise AssertionError(f"{path}: not a pcap ({len(data)} bytes)")
    magic = struct.unpack("<I", data[:4])[0]
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        end = "<"
    elif magic in (0xD4C3B2A1, 0x4D3CB2A1):
        end = ">"
    else:
        raise AssertionError(f"{path}: bad pcap magic {magic:#x}")
    out, off = [], 24
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack(end + "IIII", data[off:off + 16])
        off += 16
        if torn_tail_ok and off + incl > len(data):
            break
        out.append(data[off:off + incl])
        off += incl
    return out


def mac_str(b):
    return ":".join(f"{x:02x}" for x in b)


# ------------------------------------------------------------------------------------------------ config model


class SaSpec:
    def __init__(self, tbl, cfg_dir, src, dst, udp=None):
        """udp: (sport, dport) of this SA's packets when it is ESP in UDP (RFC 3948), else None."""
        self.udp = udp
        self.spi = int(tbl["spi"])
        self.cipher = tbl.get("cipher", "aes-gcm-128")
        self.esn = bool(tbl.get("esn", False))
        if "key" in tbl:
            self.keymat = bytes.fromhex(tbl["key"])
        else:
            kf = os.path.join(cfg_dir, tbl["key_file"])
            raw_k = open(kf, "rb").read()
            txt = raw_k.strip()
            try:
                self.keymat = bytes.fromhex(txt.decode())
            except ValueError:
                self.keymat = raw_k
        self.src, self.dst = src, dst   # outer source/destination as seen on the wire

    def scapy_sa(self):
        algo = {"aes-gcm-128": "AES-GCM", "aes-gcm-256": "AES-GCM",
                "chacha20-poly1305": "CHACHA20-POLY1305"}[self.cipher]
        hdr = IP(src=self.src, dst=self.dst) if ":" not in self.src else IPv6(src=self.src, dst=self.dst)
        nat_t = UDP(sport=self.udp[0], dport=self.udp[1]) if self.udp else None
        return SecurityAssociation(ESP, spi=self.spi, crypt_algo=algo, crypt_key=self.keymat,
                                   tunnel_header=hdr, esn_en=self.esn, esn=0, nat_t_header=nat_t)

    def tool_spec(self, key_dir):
        """meshgate-esp's SA spec, its key in a 0600 file in key_dir (a key on a command line is visible to all)."""
        path = os.path.join(key_dir, f"{self.spi:08x}-{self.src}-{self.dst}.key".replace(":", "_"))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.keymat.hex() + "\n")
        os.chmod(path, 0o600)
        s = f"spi={self.spi:#x},cipher={self.cipher},key_file={path},src={self.src},dst={self.dst}"
        if self.udp:
            s += f",encap=udp,sport={self.udp[0]},dport={self.udp[1]}"
        return s + (",esn=1" if self.esn else "") + ",window=65536"


def nat_t_fixed(pkt):
    """scapy 2.5.0's SecurityAssociation(nat_t_header=...) writes UDP length 8 over IPv4 (it serialises the outer
    header before the ESP is attached behind it); a receiver must drop that (the UDP datagram holds no ESP). This
    sets the length scapy meant. IPv6 output is right already."""
    if pkt.haslayer(UDP) and pkt.version == 4:
        pkt = pkt.copy()
        del pkt[UDP].len
        return IP(raw(pkt))
    return pkt


class Tunnel:
    pass


class Gw:
    """The parts of a gateway TOML the tests need, read independently of lib/config (tomllib)."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            c = tomllib.load(f)
        cfg_dir = os.path.dirname(os.path.abspath(path))
        self.mode = c["gateway"].get("mode", "active-active")
        self.inside_mac = c["inside"]["next_hop_mac"].lower()
        self.prefixes = [ipaddress.ip_network(p) for p in c["inside"]["prefixes"]]
        self.instances = {i["name"]: i for i in c["instance"]}
        self.devices = {d["name"]: d for d in c["device"]}
        self.tunnels = []
        for t in c["tunnel"]:
            x = Tunnel()
            x.name, x.instance, x.device = t["name"], t["instance"], t["device"]
            inst, dev = self.instances[x.instance], self.devices[x.device]
            x.port = inst["port"]
            x.inst_ip, x.dev_ip = inst["ipv4"], dev["ipv4"]
            x.dev_mac = dev["next_hop_mac"].lower()
            x.ttl = int(t.get("ttl", 64))
            x.df = t.get("df", "copy")
            x.dscp = t.get("dscp", "copy")
            x.weight = int(t.get("weight", 1))
            x.ike = t.get("keying") == "ike"   # SAs from the keying interface: none in the file
            x.out = None if x.ike else SaSpec(t["out"], cfg_dir, x.inst_ip, x.dev_ip, udp=self._udp(t, t["out"], False))
            x.inn = None if x.ike else SaSpec(t["in"], cfg_dir, x.dev_ip, x.inst_ip, udp=self._udp(t, t["in"], True))
            self.tunnels.append(x)
        self.by_name = {t.name: t for t in self.tunnels}
        self.by_out_spi = {t.out.spi: t for t in self.tunnels if t.out}

    @staticmethod
    def _udp(t, sa, inbound):
        """(sport, dport) of an SA's packets when it is ESP in UDP: its own keys over its tunnel's (README
        "NAT traversal")."""
        def key(k, default):
            return sa.get(k, t.get(k, default))
        if key("encap", "none") != "udp":
            return None
        local, remote = int(key("udp_local_port", 4500)), int(key("udp_remote_port", 4500))
        return (remote, local) if inbound else (local, remote)

    def routed(self, addr):
        a = ipaddress.ip_address(addr)
        return any(a.version == p.version and a in p for p in self.prefixes)

    def active_instance(self):
        roles = {n: i.get("role") for n, i in self.instances.items()}
        act = [n for n, r in roles.items() if r == "active"]
        return act[0] if act else next(iter(self.instances))


def source_path(*parts):
    return os.path.join(ARGS.source_root, *parts)


def dual_cfg():
    return source_path("configs", "gateway-dual.toml")


def standby_cfg():
    return source_path("configs", "gateway-standby.toml")


def pmd_cfg():
    return source_path("pmd_config", "vdev-demo.toml")


def write_dual_config(name, edits, append=""):
    """The shipped dual config in TMP with every tunnel but a-1 at weight 0 (all flows on a-1), then (old, new) text
    edits, each of which must apply."""
    with open(dual_cfg()) as f:
        text = f.read()
    parts = text.split("[[tunnel]]")
    for k in range(2, len(parts)):   # parts[1] is a-1
        parts[k] = parts[k].replace("weight = 1", "weight = 0", 1)
    text = "[[tunnel]]".join(parts)
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = os.path.join(TMP, name + ".toml")
    with open(path, "w") as f:
        f.write(text + append)
    return path


# ------------------------------------------------------------------------------------------------ traffic


class Flow:
    def __init__(self, fid, v6, proto, src, dst, sport, dport, tos=0, df=False):
        self.fid, self.v6, self.proto = fid, v6, proto
        self.src, self.dst, self.sport, self.dport = src, dst, sport, dport
        self.tos, self.df = tos, df

    def inner(self, idx, frame_len):
        """The inner IP packet (bytes) carrying packet index idx, sized so that the Ethernet frame is frame_len."""
        tag = MARK + b"%08d:%06d:" % (idx, self.fid)
        if self.v6:
            l3 = IPv6(src=self.src, dst=self.dst, tc=self.tos, hlim=61)
        else:
            l3 = IP(src=self.src, dst=self.dst, tos=self.tos, ttl=61, id=idx & 0xffff,
                    flags="DF" if self.df else 0)
        if self.proto == "tcp":
            l4 = TCP(sport=self.sport, dport=self.dport, flags="PA", seq=idx * 1000)
        elif self.proto == "udp":
            l4 = UDP(sport=self.sport, dport=self.dport)
        else:
            l4 = ICMP(type=8, id=self.sport, seq=idx & 0xffff) if not self.v6 else None
        hdr = len(raw(l3 / l4)) if l4 is not None else len(raw(l3))
        pad = max(0, frame_len - 14 - hdr - len(tag))
        body = tag + bytes((idx + j) & 0xff for j in range(pad))
        pkt = l3 / l4 / Raw(body) if l4 is not None else l3 / Raw(body)
        return raw(pkt)


def frame(inner, dst_mac=GW_MAC, src_mac=HOST_MAC):
    et = b"\x86\xdd" if (inner[0] >> 4) == 6 else b"\x08\x00"
    return bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", "")) + et + inner


def make_flows(n, rng, first_id=0, v4_net=1, v6_net=0x10):
    """n routed flows: 45 % TCP, 45 % UDP, some ICMP; a third IPv6; DSCP and DF vary."""
    flows = []
    for k in range(n):
        fid = first_id + k
        v6 = (k % 3 == 2)
        r = rng.random()
        proto = "tcp" if r < 0.45 else "udp" if r < 0.9 or v6 else "icmp"
        tos = [0, 0x28, 0xb8, 0x10][k % 4]
        if v6:
            src = f"2001:db8:a:{v6_net:x}::{fid + 1:x}"
            dst = f"2001:db8:b::{(fid * 7) % 5000 + 1:x}"
        else:
            src = f"10.{v4_net}.{(fid >> 8) & 0xff}.{fid & 0xff}"
            dst = f"10.128.{(fid * 13) % 250}.{(fid * 7) % 250 + 1}"
        sport = 1024 + (fid * 37) % 60000
        dport = [53, 80, 443, 4789, 8080][k % 5]
        flows.append(Flow(fid, v6, proto, src, dst, sport, dport, tos=tos, df=(k % 2 == 0)))
    return flows


def interleave(flows_counts, rng):
    """flows_counts: list of (flow, packets). Returns the list of flows in a random interleaved order."""
    seq = [f for f, c in flows_counts for _ in range(c)]
    rng.shuffle(seq)
    return seq


class Trace:
    """An inside trace: packets[i] = (flow or None, inner bytes or None, frame bytes)."""

    def __init__(self):
        self.frames, self.inner, self.flow = [], [], []
        self.index_of = {}   # inner bytes -> packet index

    def add(self, fl, frame_len):
        """Appends packet number len(frames) of flow fl; returns its index."""
        inner = fl.inner(len(self.frames), frame_len)
        return self.add_inner(fl, inner, frame(inner))

    def add_inner(self, fl, inner, frame_bytes):
        i = len(self.frames)
        self.frames.append(frame_bytes)
        self.inner.append(inner)
        self.flow.append(fl)
        assert inner not in self.index_of
        self.index_of[inner] = i
        return i

    def add_raw(self, frame_bytes):
        self.frames.append(frame_bytes)
        self.inner.append(None)
        self.flow.append(None)


def sized(rng):
    return rng.choice([64, 64, 100, 128, 200, 256, 512, 576, 777, 1000, 1280, 1400])


# ------------------------------------------------------------------------------------------------ running


class Run:
    """One meshgate process: inputs written, outputs and stats read back."""

    def __init__(self, name, config, inside_frames, a_rx=(), b_rx=(), extra=(), timeout=120, pmd=None, more_env=None,
                 state_dir=None, kill_after=None):
        """pmd: a pmd_config other than the demo's; more_env: values for its other ${VAR}s.
        state_dir: where meshgate records its sequence numbers (passed as $STATE_DIRECTORY, as systemd does;
        meshgate makes it when missing); default: a fresh one for this run, so its SAs start at 1.
        kill_after: (seconds, min bytes of out-a.pcap) -- SIGKILL the process once both are reached, as a crash
        would."""
        self.name = name
        self.dir = os.path.join(TMP, name)
        os.makedirs(os.path.join(self.dir, "out"), exist_ok=True)
        ind = os.path.join(self.dir, "in")
        os.makedirs(ind, exist_ok=True)
        self.inside_in = os.path.join(ind, "inside-rx.pcap")
        write_pcap(self.inside_in, list(inside_frames))
        write_pcap(os.path.join(ind, "a-rx.pcap"), list(a_rx))
        write_pcap(os.path.join(ind, "b-rx.pcap"), list(b_rx))
        self.stats_path = os.path.join(self.dir, "stats.json")
        self.state_dir = state_dir or os.path.join(self.dir, "state")
        if state_dir is None:
            os.makedirs(self.state_dir, exist_ok=True)
        env = dict(os.environ)
        env.update(MESHGATE_INSIDE_PCAP=self.inside_in, MESHGATE_OUT=os.path.join(self.dir, "out"),
                   MESHGATE_OUT_A_RX=os.path.join(ind, "a-rx.pcap"),
                   MESHGATE_OUT_B_RX=os.path.join(ind, "b-rx.pcap"), STATE_DIRECTORY=self.state_dir)
        env.update(more_env or {})
        self.prefix = f"mg-gwtest-{name}-{os.getpid()}"
        self.cmd = [ARGS.meshgate, "-c", config, "--pmd", pmd or pmd_cfg(), "--stats-json", self.stats_path,
                    f"--eal=--file-prefix={self.prefix}"] + list(extra)
        if not any(a.startswith("--exit-when-idle-ms") or a.startswith("--duration") for a in extra):
            self.cmd += ["--exit-when-idle-ms", "400"]
        t0 = self.t_start = time.monotonic()
        self.killed = False
        if kill_after is not None:
            self._run_and_kill(env, timeout, *kill_after)
        else:
            try:
                p = subprocess.run(self.cmd, env=env, capture_output=True, text=True, timeout=timeout)
                self.rc, self.stdout, self.stderr = p.returncode, p.stdout, p.stderr
            except subprocess.TimeoutExpired as e:
                self.rc, self.stdout, self.stderr = -1, str(e.stdout), str(e.stderr)
        self.seconds = time.monotonic() - t0
        shutil.rmtree(f"/var/run/dpdk/{self.prefix}", ignore_errors=True)  # our own EAL runtime dir
        self.stats = None
        if os.path.exists(self.stats_path):
            with open(self.stats_path) as f:
                self.stats = json.load(f)
        self.out = {}
        for port in ("inside", "out-a", "out-b"):
            pth = os.path.join(self.dir, "out", f"{port}.pcap")
            self.out[port] = read_pcap(pth, torn_tail_ok=self.killed) if os.path.exists(pth) else None

    def _run_and_kill(self, env, timeout, seconds, min_bytes):
        out_a = os.path.join(self.dir, "out", "out-a.pcap")
        with open(os.path.join(self.dir, "meshgate.out"), "w+") as log:
            p = subprocess.Popen(self.cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
            t_end = time.monotonic() + timeout
            while p.poll() is None and time.monotonic() < t_end:
                size = os.path.getsize(out_a) if os.path.exists(out_a) else 0
                if time.monotonic() - self.t_start >= seconds and size >= min_bytes:
                    break
                time.sleep(0.01)
            self.killed = p.poll() is None
            if self.killed:
                p.kill()
            p.wait()
            log.seek(0)
            self.rc, self.stdout, self.stderr = p.returncode, "", log.read()

    def describe(self):
        return (f"command: STATE_DIRECTORY={self.state_dir} MESHGATE_INSIDE_PCAP={self.inside_in} "
                f"MESHGATE_OUT={self.dir}/out "
                f"MESHGATE_OUT_A_RX={self.dir}/in/a-rx.pcap MESHGATE_OUT_B_RX={self.dir}/in/b-rx.pcap "
                + " ".join(self.cmd) + f"\nexit {self.rc}\nstderr tail: {self.stderr[-800:]}")

    def tunnel_stats(self):
        return {t["name"]: t for t in self.stats["tunnels"]}


class Decoded:
    """One ESP frame from an instance port, decrypted by scapy."""
    __slots__ = ("port", "pos", "eth_dst", "eth_type", "outer_src", "outer_dst", "ttl", "tos", "df", "proto",
                 "spi", "seq", "iv", "tunnel", "inner", "index", "loose_index", "error", "udp")


def decrypt_outputs(gw, run, trace=None):
    """Decrypts every frame of out-a/out-b with scapy, SA chosen by SPI among all tunnels of the config;
    inner packets are matched to the packets of trace (default: the run's)."""
    index_of = (trace or run.trace).index_of
    sas = {t.out.spi: t.out.scapy_sa() for t in gw.tunnels if t.out}
    res = []
    for port in ("out-a", "out-b"):
        frames = run.out[port]
        if frames is None:
            raise AssertionError(f"{run.name}: {port}.pcap was not written\n{run.describe()}")
        for pos, fr in enumerate(frames):
            d = Decoded()
            d.port, d.pos, d.error, d.tunnel, d.inner, d.index, d.loose_index = port, pos, None, None, None, None, None
            d.udp = None
            d.eth_dst = mac_str(fr[0:6])
            d.eth_type = fr[12:14]
            res.append(d)
            if d.eth_type != b"\x08\x00":
                d.error = f"ethertype {d.eth_type.hex()}"
                continue
            ip = fr[14:]
            ihl = (ip[0] & 0x0f) * 4
            d.tos, d.ttl, d.proto = ip[1], ip[8], ip[9]
            d.df = bool(ip[6] & 0x40)
            d.outer_src = str(ipaddress.ip_address(ip[12:16]))
            d.outer_dst = str(ipaddress.ip_address(ip[16:20]))
            esp_off = ihl
            if d.proto == 17:   # ESP in UDP: (sport, dport, length, checksum) kept for the suites to check
                d.udp = struct.unpack("!HHHH", ip[ihl:ihl + 8])
                esp_off = ihl + 8
            elif d.proto != 50:
                d.error = f"outer protocol {d.proto}"
                continue
            d.spi, d.seq = struct.unpack("!II", ip[esp_off:esp_off + 8])
            d.iv = ip[esp_off + 8:esp_off + 16]
            t = gw.by_out_spi.get(d.spi)
            if t is None:
                d.error = f"unknown SPI {d.spi:#x}"
                continue
            if (d.udp is not None) != (t.out.udp is not None) or (d.udp and d.udp[:2] != t.out.udp):
                d.error = f"encapsulation {d.udp} where the config says {t.out.udp}"
                continue
            d.tunnel = t.name
            sa = sas[d.spi]
            sa.esn = 0  # every run here stays below 2^32 packets per SA
            try:
                dec = sa.decrypt(IP(ip))
            except IPSecIntegrityError as e:
                d.error = f"scapy: ICV does not verify ({e})"
                continue
            except Exception as e:  # noqa: BLE001 - any decode failure is a finding
                d.error = f"scapy: {type(e).__name__}: {e}"
                continue
            d.inner = raw(dec)
            d.index = index_of.get(d.inner)
            d.loose_index = d.index if d.index is not None else index_of.get(ip_datagram(d.inner))
    return res


def ip_datagram(b):
    """b cut to the length its IPv4/IPv6 header gives (drops trailing bytes such as Ethernet padding)."""
    if len(b) >= 20 and b[0] >> 4 == 4:
        return b[:struct.unpack("!H", b[2:4])[0]]
    if len(b) >= 40 and b[0] >> 4 == 6:
        return b[:40 + struct.unpack("!H", b[4:6])[0]]
    return b


def esp_tool_decrypt(gw, run, port, tmpname):
    """Second oracle: meshgate-esp decrypt of one instance port's output with the out SAs of that port."""
    tunnels = [t for t in gw.tunnels if t.port == port]
    src = os.path.join(run.dir, "out", f"{port}.pcap")
    dst = os.path.join(run.dir, f"{tmpname}.pcap")
    cmd = [ARGS.esp_tool, "decrypt"]
    key_dir = os.path.join(run.dir, "esp-tool-keys")
    os.makedirs(key_dir, mode=0o700, exist_ok=True)
    for t in tunnels:
        cmd += ["--sa", t.out.tool_spec(key_dir)]
    cmd += [src, dst, "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError(f"meshgate-esp exited {p.returncode}: {p.stderr}\n{' '.join(cmd)}")
    return json.loads(p.stdout), [f[14:] for f in read_pcap(dst)]


def spread_predict(config, pcap, events=()):
    cmd = [ARGS.spread, "-c", config, "--pcap", pcap, "--json"]
    for e in events:
        cmd += ["--event", e]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError(f"meshgate-spread exited {p.returncode}: {p.stderr}\n{' '.join(cmd)}")
    return json.loads(p.stdout)


# ------------------------------------------------------------------------------------------------ shared checks


def accounting_problems(run, inside_fed, outside_fed):
    """Returns a list of accounting violations of a finished run (empty when all is well)."""
    p = []
    if run.rc != 0:
        p.append(f"exit code {run.rc} (expected 0)")
    st = run.stats
    if st is None:
        return p + ["no stats JSON written"]
    T = st["tunnels"]
    d = st["drops"]
    if st.get("mbufs_in_use_at_exit") != 0:
        p.append(f"mbufs_in_use_at_exit = {st.get('mbufs_in_use_at_exit')} (expected 0)")
    out_fwd = sum(t["packets_out"] for t in T)
    in_fwd = sum(t["packets_in"] for t in T)
    tun_txfull = sum(t["tx_full"] for t in T)
    # MTU: a fragmented packet leaves as several ESP packets (each counted where it ends: sent, tx_full, ESP drop);
    # a too-big one is dropped (its ICMP error is a new packet on the inside port, not one of these).
    extra = sum(t.get("fragments", 0) - t.get("fragmented", 0) for t in T)
    icmp_out = sum(t.get("icmp_too_big", 0) for t in T)
    mtu_drops = d.get("too_big", 0) + d.get("frag_failed", 0)
    out_drops = (d["inside_not_ip"] + d["inside_malformed"] + d["not_routed"] + d["no_tunnel"] + tun_txfull
                 + st["esp_out_drops"] + mtu_drops)
    if st["inside_rx"] + extra != out_fwd + out_drops:
        p.append(f"inside_rx {st['inside_rx']} + extra fragments {extra} != packets_out {out_fwd} + drops {out_drops} "
                 f"(not_ip {d['inside_not_ip']}, malformed {d['inside_malformed']}, not_routed {d['not_routed']}, "
                 f"no_tunnel {d['no_tunnel']}, tx_full {tun_txfull}, esp_out {st['esp_out_drops']}, "
                 f"too_big/frag_failed {mtu_drops})")
    in_drops = (d["outside_not_ip"] + d["inner_selector"] + st["esp_in_drops"] + (d["tx_full"] - tun_txfull)
                + d.get("to_host", 0))
    if st["outside_rx"] != in_fwd + in_drops:
        p.append(f"outside_rx {st['outside_rx']} != packets_in {in_fwd} + drops {in_drops} "
                 f"(outside_not_ip {d['outside_not_ip']}, inner_selector {d['inner_selector']}, "
                 f"esp_in {st['esp_in_drops']}, inside tx_full {d['tx_full'] - tun_txfull}, "
                 f"to_host {d.get('to_host', 0)})")
    esp_out = sum(v for t in T for k, v in t["esp_drops"].items() if k.startswith("out_"))
    esp_in = sum(v for t in T for k, v in t["esp_drops"].items() if k.startswith("in_"))
    esp_in += sum(st["esp_unknown_sa_drops"].values())
    if st["esp_out_drops"] != esp_out:
        p.append(f"esp_out_drops {st['esp_out_drops']} != sum of tunnels' out_* reasons {esp_out}")
    if st["esp_in_drops"] != esp_in:
        p.append(f"esp_in_drops {st['esp_in_drops']} != tunnels' in_* + unknown-SA reasons {esp_in}")
    if st["outside_tx"] != out_fwd:
        p.append(f"outside_tx {st['outside_tx']} != sum packets_out {out_fwd}")
    if st["inside_tx"] != in_fwd:
        p.append(f"inside_tx {st['inside_tx']} != sum packets_in {in_fwd}")
    if inside_fed is not None and st["inside_rx"] != inside_fed:
        p.append(f"inside_rx {st['inside_rx']} != {inside_fed} frames in the inside pcap")
    if outside_fed is not None and st["outside_rx"] != outside_fed:
        p.append(f"outside_rx {st['outside_rx']} != {outside_fed} frames in the instance rx pcaps")
    ports = st.get("ports", {})
    if ports:
        if ports["inside"]["ipackets"] != st["inside_rx"]:
            p.append(f"port inside ipackets {ports['inside']['ipackets']} != inside_rx {st['inside_rx']}")
        if ports["inside"]["opackets"] != st["inside_tx"] + icmp_out:
            p.append(f"port inside opackets {ports['inside']['opackets']} != inside_tx {st['inside_tx']} + too-big "
                     f"ICMP errors {icmp_out}")
        o_rx = ports["out-a"]["ipackets"] + ports["out-b"]["ipackets"]
        if o_rx != st["outside_rx"]:
            p.append(f"ports out-a+out-b ipackets {o_rx} != outside_rx {st['outside_rx']}")
        for port in ("out-a", "out-b"):
            want = sum(t["packets_out"] for t in T if run.gw.by_name[t["name"]].port == port)
            if ports[port]["opackets"] != want:
                p.append(f"port {port} opackets {ports[port]['opackets']} != its tunnels' packets_out {want}")
            if run.out[port] is not None and len(run.out[port]) != ports[port]["opackets"]:
                p.append(f"{port}.pcap holds {len(run.out[port])} frames, port opackets {ports[port]['opackets']}")
        if run.out["inside"] is not None and len(run.out["inside"]) != ports["inside"]["opackets"]:
            p.append(f"inside.pcap holds {len(run.out['inside'])} frames, opackets {ports['inside']['opackets']}")
        # The workers' own per-port counts agree with the driver's wherever the driver keeps its counts.
        for port, c in ports.items():
            for mine, pmd in (("rx_packets", "ipackets"), ("tx_packets", "opackets")):
                if c[mine] != c[pmd]:
                    p.append(f"port {port} {mine} {c[mine]} != driver's {pmd} {c[pmd]}")
    return p


class GatewayCase(unittest.TestCase):
    maxDiff = 4000
    mg = None
    decoded = None

    @classmethod
    def launch(cls, name, config, trace, extra=()):
        """Runs meshgate on trace's frames and decrypts what came out of the instance ports."""
        cls.trace = trace
        cls.mg = Run(name, config, trace.frames, extra=extra)
        cls.mg.trace, cls.mg.gw = trace, cls.gw
        cls.decoded = decrypt_outputs(cls.gw, cls.mg) if cls.mg.out["out-a"] is not None else []

    def fail_run(self, msg):
        self.fail(f"{msg}\n{self.mg.describe()}")

    def assert_accounting(self, inside_fed, outside_fed):
        probs = accounting_problems(self.mg, inside_fed, outside_fed)
        if probs:
            self.fail_run("accounting: " + "; ".join(probs))

    def assert_decoded_clean(self, strict=True):
        """Every ESP frame decrypts, and its inner packet is one of the input packets: byte for byte (strict) or
        after cutting trailing bytes beyond the inner IP length (not strict)."""
        bad = [d for d in self.decoded if d.error]
        if bad:
            ex = "; ".join(f"{d.port}#{d.pos}: {d.error}" for d in bad[:5])
            self.fail_run(f"{len(bad)} of {len(self.decoded)} ESP frames did not decrypt: {ex}")
        unknown = [d for d in self.decoded if (d.index if strict else d.loose_index) is None]
        if unknown:
            d = unknown[0]
            self.fail_run(f"{len(unknown)} decrypted inner packets match no input packet byte for byte; "
                          f"first ({d.port}#{d.pos}, {len(d.inner)} B): {d.inner[:64].hex()}")

    def assert_exactly_once(self, expected_indices, strict=True):
        cnt = collections.Counter(d.index if strict else d.loose_index for d in self.decoded)
        cnt.pop(None, None)
        dup = {i: c for i, c in cnt.items() if c > 1}
        missing = sorted(set(expected_indices) - set(cnt))
        extra = sorted(set(cnt) - set(expected_indices))
        if dup or missing or extra:
            self.fail_run(f"inner packets not exactly once: {len(missing)} missing (first {missing[:10]}), "
                          f"{len(dup)} duplicated (e.g. {list(dup.items())[:5]}), "
                          f"{len(extra)} unexpected (first {extra[:10]})")

    def placement(self):
        """packet index -> tunnel name, for every decrypted packet."""
        return {d.index: d.tunnel for d in self.decoded if d.index is not None}

# ------------------------------------------------------------------------------------------------ main


def main():
    """Runs the tests of the __main__ module (unittest args pass through); returns the exit code."""
    global ARGS, TMP, KEEP
    doc = sys.modules["__main__"].__doc__ or ""  # the suite's own docstring
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--meshgate", required=True)
    ap.add_argument("--spread", default="")
    ap.add_argument("--esp-tool", default="")
    ap.add_argument("--source-root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory (printed)")
    ARGS, rest = ap.parse_known_args()
    ARGS.meshgate = os.path.abspath(ARGS.meshgate)
    ARGS.spread = os.path.abspath(ARGS.spread) if ARGS.spread else ""
    ARGS.esp_tool = os.path.abspath(ARGS.esp_tool) if ARGS.esp_tool else ""
    ARGS.source_root = os.path.abspath(ARGS.source_root)
    apps = os.path.dirname(os.path.dirname(ARGS.meshgate))
    if not ARGS.esp_tool:
        ARGS.esp_tool = os.path.join(apps, "meshgate-esp", "meshgate-esp")
    if not ARGS.spread:
        cand = os.path.join(apps, "meshgate-spread", "meshgate-spread")
        ARGS.spread = cand if os.path.exists(cand) else ""
    KEEP = ARGS.keep
    TMP = tempfile.mkdtemp(prefix="mg-gateway-")
    t0 = time.monotonic()
    try:
        prog = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
        r = prog.result
    finally:
        if KEEP:
            print(f"scratch kept in {TMP}")
        else:
            shutil.rmtree(TMP, ignore_errors=True)
    failed = len(r.failures) + len(r.errors)
    passed = r.testsRun - failed - len(r.skipped)
    print(f"{passed} passed, {failed} failed, {len(r.skipped)} skipped in {time.monotonic() - t0:.1f} s")
    return 0 if failed == 0 and r.testsRun > 0 else 1

