#!/usr/bin/python3
"""Operator tests: meshgatectl driving a forwarding meshgate (net_pcap vdevs, paced traffic, workers running).

Every scenario starts meshgate with subprocess.Popen (a unique --control-name and --file-prefix, --pace-pps so the
traffic lasts a few seconds, a per-packet index in every inner payload), waits until `meshgatectl show gateway
--json` shows it running, issues commands when inside_rx reaches chosen packet counts, waits for the exit and
decrypts out-a/out-b with scapy (tests/common/gwtest.py's helpers). "After the reply" is measured twice:
by the tunnel's ESP sequence number (last_seq_out read from the mirror right after the reply: a higher one was
encrypted after it) and by the packet index (inside_rx read right after the reply, + one RX burst of slack).

  TunnelDownTest      `tunnel a-1 down` mid-stream: no a-1 packet after the reply, a-1's flows each move once to
                      one survivor, flows of a-2/b-1/b-2 never change tunnel and lose nothing; new flows while it
                      is down avoid a-1; `tunnel a-1 up`: moved flows stay, new flows reach a-1; moved_down.
  DrainTest           `tunnel b-2 drain --deadline 1`: no new flow on b-2; b-2's pinned flows stay on it until
                      the deadline (checked 0.7 s after the reply); flows that go idle before it lose nothing and
                      never move; after the deadline no packet on b-2, the rest moved once; moved_drain.
  MaintenanceTest     `instance gw-a maintenance`: gw-a shown not up, no gw-a packet after the reply, its flows
                      on gw-b; `instance gw-a up`: shown up, pinned flows stay on gw-b, new flows use gw-a.
  ResetTest           `instance gw-b reset` under traffic: gw-a's flows keep their tunnel and lose nothing; per SPI
                      the ESP sequence numbers (= IVs) never repeat and keep increasing across the reset; gw-b is
                      up again and `show instances` counts one reset.
  ResetAccountingTest unknown-SPI ESP on both instance ports while gw-a, then gw-b, is reset: every drop counted
                      exactly once (the replaced inbound tables' drops were lost or added per port).
  ResetKeyFileTest    keys in 0600 files; `instance gw-b reset` while one of them is a FIFO: refused at once, the
                      file named, forwarding and control go on; with the file back the reset goes through.
  ResetKeysTest       gw-b's outbound keys A -> B -> A by two resets under traffic (the config file rewritten in
                      between): every frame decrypts under the key its SPI names, no (key, IV) pair twice -- key A
                      continues after everything it sent before B (issue 15, defect 2).
  ResetMtuTest        `mtu = 1400` written on every tunnel, then `instance gw-b reset`: gw-b's tunnels take path MTU
                      1346 (MSS 1306), gw-a's keep 1446; new 1400-byte DF flows on gw-b get ICMP frag-needed 1346.
  ModeSwitchTest      gateway-standby.toml, `mode active-active` mid-stream: before, everything on the active
                      instance; after, new flows over all four tunnels, pinned flows stay; no loss.
  BadInputTest        unknown tunnel/instance, weights -1 / 99999999 / abc, bad deadline, bad mode: exit 2 (or 1
                      with a message), generation and tunnel table unchanged; --gateway nosuchgw: exit 3.
  KillTest            meshgatectl killed (-9) at random points of a command and of a mirror read: meshgate keeps
                      forwarding and the next meshgatectl works; meshgate killed (-9): exit 3, then a new meshgate
                      with the same control name starts over the stale block and meshgatectl works with it.
Every clean run: exit 0, mbufs_in_use_at_exit == 0, inside_rx = packets_out + drops (+ every inner packet out
exactly once where the scenario decrypts).

Run: /usr/bin/python3 tests/operator/test_operator.py --meshgate build/apps/meshgate/meshgate \
         --meshgatectl build/apps/meshgatectl/meshgatectl [--source-root .] [--keep] [unittest args, e.g. -k Drain]
Exit: 0 all passed, 1 a failure, 77 (meson: skipped) when scapy is missing.
"""
import argparse
import collections
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import gwtest  # noqa: E402  (exits 77 when scapy is missing)

ARGS = None
TMP = None
SLACK = 32          # packets: one RX burst the worker may have taken before the counter we read moved
PPS = 4000


# ------------------------------------------------------------------------------------------------ traffic


def _fold(x):
    while x >> 16:
        x = (x & 0xffff) + (x >> 16)
    return x


def _words(b, lo, hi):
    return sum(int.from_bytes(b[k:k + 2], "big") for k in range(lo, hi, 2))


def fast_inner(fl, idx, frame_len):
    """fl.inner(idx, frame_len) made fast: scapy builds one template per (flow, size) and the packet index is
    patched into the payload tag with an incremental L4 checksum update (RFC 1624); the result is a valid, unique
    packet carrying gwtest.MARK + index (IP id, TCP/ICMP seq and padding are those of the template)."""
    cache = fl.__dict__.setdefault("templates", {})   # frame length -> (packet 0, tag, checksum offsets, UDP)
    t = cache.get(frame_len)
    if t is None:
        b = fl.inner(0, frame_len)
        l3 = 40 if fl.v6 else (b[0] & 0x0f) * 4
        ck = l3 + {"tcp": 16, "udp": 6}.get(fl.proto, 2)
        t = cache[frame_len] = (b, b.find(gwtest.MARK) + len(gwtest.MARK), ck, fl.proto == "udp")
    b, off, ck, udp = t
    if idx == 0:
        return b
    nb = bytearray(b)
    nb[off:off + 8] = b"%08d" % idx
    lo, hi = off & ~1, (off + 9) & ~1            # even offsets: L3 headers are 20/40 bytes, so aligned to L4
    old = _fold(_words(b, lo, hi))
    new = _fold(_words(nb, lo, hi))
    hc = int.from_bytes(b[ck:ck + 2], "big")
    x = (~_fold((~hc & 0xffff) + (~old & 0xffff) + new)) & 0xffff
    if udp and x == 0:
        x = 0xffff
    nb[ck:ck + 2] = x.to_bytes(2, "big")
    return bytes(nb)


def build_trace(groups, total, rng, sizes=(64, 96, 128, 200)):
    """groups: list of (flows, start, stop). Every flow of a group sends its first packet at the group's start
    (in order) and its last before stop; each packet index picks a random live flow."""
    tr = gwtest.Trace()
    bounds = sorted({g[1] for g in groups} | {g[2] for g in groups})
    alive, pending = [], []
    for i in range(total):
        if i in bounds:
            alive = [f for g in groups if g[1] <= i < g[2] for f in g[0]]
            pending += [f for g in groups if g[1] == i for f in g[0]]
        if not alive:
            raise ValueError(f"no live flow at packet {i}")
        f = pending.pop(0) if pending else rng.choice(alive)
        inner = fast_inner(f, i, rng.choice(sizes))
        tr.add_inner(f, inner, gwtest.frame(inner))
    return tr


def two_groups(seed, n1, n2, net, start2, total):
    """n1 flows from packet 0 and n2 new ones from start2, all until total; returns (g1, g2, trace)."""
    rng = random.Random(seed)
    g1 = gwtest.make_flows(n1, rng, first_id=0, v4_net=net, v6_net=net)
    g2 = gwtest.make_flows(n2, rng, first_id=100, v4_net=net + 1, v6_net=net + 1)
    return g1, g2, build_trace([(g1, 0, total), (g2, start2, total)], total, rng)


# ------------------------------------------------------------------------------------------------ a live gateway


class Step:
    """One command: what was sent, the reply, and the counters read right before and right after it."""

    def __init__(self, args):
        self.args = args
        self.rc = self.reply = self.text = None
        self.rx_before = self.rx_after = None
        self.seq_after = {}       # tunnel -> last_seq_out in the mirror right after the reply
        self.t_sent = self.t_reply = None
        self.shown = {}           # extra `show X --json` results taken after the reply


class Live:
    """One meshgate process started with Popen; meshgatectl against its control block."""

    def __init__(self, name, config, trace, pps=PPS, idle_ms=400, control=None, suffix="", a_rx=(), b_rx=(),
                 outside_pps=0):
        self.name = name
        self.trace = trace
        self.gw = gwtest.Gw(config)
        self.dir = os.path.join(TMP, name + suffix)
        os.makedirs(os.path.join(self.dir, "out"), exist_ok=True)
        self.inside_in = os.path.join(self.dir, "inside-rx.pcap")
        gwtest.write_pcap(self.inside_in, trace.frames)
        empty = os.path.join(self.dir, "empty.pcap")
        gwtest.write_pcap(empty, [])
        self.stats_path = os.path.join(self.dir, "stats.json")
        self.control = control or f"op-{name}-{os.getpid()}"
        self.prefix = f"mg-op-{name}{suffix}-{os.getpid()}"
        self.state_dir = os.path.join(self.dir, "state")   # sequence numbers of this run's keys (from 1)
        os.makedirs(self.state_dir, exist_ok=True)
        rx = {}
        for port, frames in (("a", a_rx), ("b", b_rx)):
            rx[port] = empty
            if frames:
                rx[port] = os.path.join(self.dir, f"{port}-rx.pcap")
                gwtest.write_pcap(rx[port], list(frames))
        self.env = dict(os.environ, MESHGATE_INSIDE_PCAP=self.inside_in, MESHGATE_OUT=os.path.join(self.dir, "out"),
                        MESHGATE_OUT_A_RX=rx["a"], MESHGATE_OUT_B_RX=rx["b"], STATE_DIRECTORY=self.state_dir)
        self.cmd = [ARGS.meshgate, "-c", config, "--pmd", gwtest.pmd_cfg(), "--stats-json", self.stats_path,
                    f"--eal=--file-prefix={self.prefix}", "--control-name", self.control,
                    "--pace-pps", str(pps), "--exit-when-idle-ms", str(idle_ms), "-q"]
        if outside_pps:
            self.cmd += ["--pace-outside-pps", str(outside_pps)]
        self.log = []             # (argv, rc, output) of every meshgatectl call, for failure messages
        self.steps = {}
        self.problems = []        # what went wrong while driving the scenario
        self.rc, self.stats, self.out, self.decoded = None, None, {}, []
        self.stdout_f = open(os.path.join(self.dir, "meshgate.out"), "w")
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=self.stdout_f, stderr=subprocess.STDOUT)

    # -- meshgatectl
    def ctl(self, *args, as_json=True, timeout=15, gateway=None):
        argv = [ARGS.meshgatectl, "--gateway", gateway or self.control] + (["--json"] if as_json else []) + list(args)
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
            rc, out, err = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired:
            rc, out, err = "timeout", "", ""
        parsed = None
        if as_json and out.strip()[:1] in ("{", "["):
            try:
                parsed = json.loads(out)
            except ValueError:
                parsed = None
        self.log.append((" ".join(argv[1:]), rc, (out + err).strip()[:300]))
        return rc, parsed, out + err

    def show(self, what):
        rc, j, txt = self.ctl("show", what)
        if rc != 0 or j is None:
            raise AssertionError(f"meshgatectl --gateway {self.control} --json show {what}: exit {rc}: {txt[-300:]}"
                                 f"\n{self.describe()}")
        return j

    def rx(self):
        return self.show("gateway")["inside_rx"]

    def wait_running(self, timeout=30):
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            if self.proc.poll() is not None:
                raise AssertionError(f"meshgate exited ({self.proc.returncode}) before it was seen running\n"
                                     f"{self.describe()}")
            rc, j, _ = self.ctl("show", "gateway")
            if rc == 0 and j and j.get("inside_rx", 0) > 0 and j.get("pid") == self.proc.pid:
                return j
            time.sleep(0.02)
        raise AssertionError(f"meshgate not running with traffic after {timeout} s\n{self.describe()}")

    def wait_rx(self, n, timeout=30, counter="inside_rx"):
        """Polls a gateway counter (inside_rx) until it reaches n; returns the value seen."""
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            v = self.show("gateway")[counter]
            if v >= n:
                return v
            if self.proc.poll() is not None:
                break
            time.sleep(0.004)
        raise AssertionError(f"{counter} never reached {n}\n{self.describe()}")

    def step(self, label, *args, show=()):
        """Sends a command, then reads inside_rx and every tunnel's last_seq_out from the mirror."""
        s = Step(args)
        s.rx_before = self.rx()
        s.t_sent = time.monotonic()
        s.rc, s.reply, s.text = self.ctl(*args)
        s.t_reply = time.monotonic()
        s.rx_after = self.rx()
        s.seq_after = {t["name"]: t["last_seq_out"] for t in self.show("tunnels")}
        for what in show:
            s.shown[what] = self.show(what)
        if s.rc != 0 or not (s.reply or {}).get("ok"):
            self.problems.append(f"meshgatectl {' '.join(args)}: exit {s.rc}, output {s.text.strip()[:300]}")
        self.steps[label] = s
        return s

    # -- end of the run
    def finish(self, timeout=90, decrypt=True):
        try:
            self.rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.rc = "timeout"
        self.stdout_f.close()
        shutil.rmtree(f"/var/run/dpdk/{self.prefix}", ignore_errors=True)   # our own EAL runtime dir
        if os.path.exists(self.stats_path):
            with open(self.stats_path) as f:
                self.stats = json.load(f)
        for port in ("inside", "out-a", "out-b"):
            pth = os.path.join(self.dir, "out", f"{port}.pcap")
            self.out[port] = gwtest.read_pcap(pth) if os.path.exists(pth) else None
        if decrypt and self.out["out-a"] is not None and self.out["out-b"] is not None:
            self.decoded = gwtest.decrypt_outputs(self.gw, self, self.trace)

    def kill(self):
        if not self.stdout_f.closed:
            self.stdout_f.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        shutil.rmtree(f"/var/run/dpdk/{self.prefix}", ignore_errors=True)

    def describe(self):
        tail = ""
        try:
            with open(os.path.join(self.dir, "meshgate.out")) as f:
                tail = f.read()[-600:]
        except OSError:
            pass
        ctl = "\n".join(f"  meshgatectl {a} -> {rc}: {o[:160]}" for a, rc, o in self.log[-8:])
        return (f"command: MESHGATE_INSIDE_PCAP={self.inside_in} MESHGATE_OUT={self.dir}/out "
                f"MESHGATE_OUT_A_RX=/MESHGATE_OUT_B_RX={self.dir}/empty.pcap " + " ".join(self.cmd)
                + f"\nexit {self.rc}\nlast meshgatectl calls:\n{ctl}\noutput tail: {tail}")


# ------------------------------------------------------------------------------------------------ checks


class OperatorCase(gwtest.GatewayCase):
    """gwtest.GatewayCase's checks (accounting, decrypt, exactly once) on a Live run in cls.mg."""
    mg = None

    @classmethod
    def drive(cls, name, config, trace, scenario, **kw):
        cls.gw = gwtest.Gw(config)
        cls.trace = trace
        t0 = time.monotonic()
        cls.mg = Live(name, config, trace, **kw)
        cls.mg.trace = trace
        try:
            cls.mg.wait_running()
            scenario(cls.mg)
        except AssertionError as e:
            cls.mg.problems.append(str(e))
        finally:
            cls.mg.finish()
            cls.decoded = cls.mg.decoded
            print(f"  [{name}: {time.monotonic() - t0:.1f} s]", file=sys.stderr)

    # -- helpers
    def per_flow(self):
        """fid -> [(index, tunnel)] in index order."""
        pf = collections.defaultdict(list)
        for i, t in sorted(self.placement().items()):
            pf[self.trace.flow[i].fid].append((i, t))
        return pf

    def sent_per_flow(self):
        return collections.Counter(f.fid for f in self.trace.flow if f is not None)

    def inst(self, tunnel):
        return self.gw.by_name[tunnel].instance

    def step(self, label):
        s = self.mg.steps.get(label)
        if s is None or s.rx_after is None:
            self.fail_run(f"step '{label}' did not run: {self.mg.problems}")
        return s

    def assert_before(self, label, index):
        """The command's reply came before packet `index` was received (else the trace is too short for it)."""
        s = self.step(label)
        self.assertLess(s.rx_after + SLACK, index,
                        f"'{label}' replied at inside_rx {s.rx_after}, the scenario needs it before packet {index} "
                        f"(machine too slow?)")

    def late_packets(self, tunnels, label, until_index=None):
        """Packets on `tunnels` encrypted after the reply of step `label` (sequence number above the mirror's
        last_seq_out right after the reply, or index >= inside_rx after the reply + SLACK), optionally only those
        received before until_index."""
        s = self.step(label)
        bad = []
        for d in self.decoded:
            if d.tunnel not in tunnels or d.index is None:
                continue
            if until_index is not None and d.index >= until_index:
                continue
            if d.seq > s.seq_after[d.tunnel] or d.index >= s.rx_after + SLACK:
                bad.append((d.index, d.tunnel, d.seq))
        return bad

    def assert_unmoved_lossless(self, fids, what):
        """Each flow of fids on one tunnel throughout, every packet it sent out."""
        pf = self.per_flow()
        sent = self.sent_per_flow()
        moved = [(f, sorted({t for _, t in pf[f]})) for f in fids if len({t for _, t in pf[f]}) != 1]
        lost = [(f, sent[f], len(pf[f])) for f in fids if len(pf[f]) != sent[f]]
        self.assertFalse(moved, f"{len(moved)} of {len(fids)} {what} changed tunnel: {moved[:8]}")
        self.assertFalse(lost, f"{len(lost)} {what} lost packets (flow, sent, out): {lost[:8]}")


class Checks:
    """Tests every scenario gets (a mixin, so that unittest does not run them on the base class)."""

    def test_commands_accepted(self):
        self.assertFalse(self.mg.problems, "scenario: " + "; ".join(self.mg.problems) + "\n" + self.mg.describe())

    def test_clean_exit_and_accounting(self):
        self.assert_accounting(len(self.trace.frames), 0)

    def test_no_packet_lost(self):
        self.assert_decoded_clean()
        self.assert_exactly_once(range(len(self.trace.frames)))



def dual():
    return gwtest.dual_cfg()


# ------------------------------------------------------------------------------------------------ 1 tunnel down


class OutAndBackCase(OperatorCase):
    """80 flows from the start; command OUT at packet 2000; 30 new flows from 3200; command BACK at 4400; 40 new
    flows from 5600 (4000 pps, 8400 packets)."""
    OUT, G2, BACK, G3, TOTAL = 2000, 3200, 4400, 5600, 8400

    @classmethod
    def out_and_back(cls, name, seed, net, out_cmd, back_cmd, show):
        rng = random.Random(seed)
        cls.g1 = gwtest.make_flows(80, rng, first_id=0, v4_net=net, v6_net=net)
        cls.g2 = gwtest.make_flows(30, rng, first_id=100, v4_net=net + 1, v6_net=net + 1)
        cls.g3 = gwtest.make_flows(40, rng, first_id=200, v4_net=net + 2, v6_net=net + 2)
        tr = build_trace([(cls.g1, 0, cls.TOTAL), (cls.g2, cls.G2, cls.TOTAL), (cls.g3, cls.G3, cls.TOTAL)],
                         cls.TOTAL, rng)

        def scenario(mg):
            mg.wait_rx(cls.OUT)
            mg.step("out", *out_cmd, show=show)
            mg.wait_rx(cls.BACK)
            mg.step("back", *back_cmd, show=show)
        cls.drive(name, dual(), tr, scenario)


class TunnelDownTest(Checks, OutAndBackCase):
    @classmethod
    def setUpClass(cls):
        cls.out_and_back("tunnel-down", 5101, 21, ("tunnel", "a-1", "down"), ("tunnel", "a-1", "up"), ("tunnels",))

    def first(self):
        return {f: pl[0][1] for f, pl in self.per_flow().items()}

    def test_shown_state(self):
        d = {t["name"]: t for t in self.step("out").shown["tunnels"]}
        u = {t["name"]: t for t in self.step("back").shown["tunnels"]}
        self.assertEqual((d["a-1"]["admin"], d["a-1"]["state"]), ("down", "down"), f"after down: {d['a-1']}")
        self.assertEqual((u["a-1"]["admin"], u["a-1"]["state"]), ("up", "up"), f"after up: {u['a-1']}")

    def test_no_a1_packet_after_down_reply(self):
        self.assert_decoded_clean()
        self.assert_before("out", self.G2)
        bad = self.late_packets({"a-1"}, "out", until_index=self.step("back").rx_before)
        self.assertFalse(bad, f"{len(bad)} packets (index, tunnel, seq) on a-1 encrypted after the down reply "
                              f"(inside_rx {self.step('out').rx_after}, last_seq_out "
                              f"{self.step('out').seq_after['a-1']}): {bad[:8]}")

    def test_a1_flows_move_once_to_one_survivor(self):
        self.assert_decoded_clean()
        s = self.step("out")
        first, pf = self.first(), self.per_flow()
        on_a1 = [f.fid for f in self.g1 if first.get(f.fid) == "a-1"]
        self.assertGreaterEqual(len(on_a1), 8, f"only {len(on_a1)} of 80 flows started on a-1")
        probs, moved = [], 0
        for fid in on_a1:
            before = {t for i, t in pf[fid] if i < s.rx_before}
            after = {t for i, t in pf[fid] if i >= s.rx_after + SLACK}
            if before != {"a-1"} or len(after) != 1 or "a-1" in after:
                probs.append((fid, sorted(before), sorted(after)))
            moved += any(t != "a-1" for _, t in pf[fid])
        self.assertFalse(probs, f"a-1 flows not (a-1 before the command, one survivor after): {probs[:8]}")
        self.assertEqual(self.mg.stats["flows"]["moved_down"], moved, "flows.moved_down vs flows seen moving")

    def test_other_tunnels_flows_untouched(self):
        self.assert_decoded_clean()
        first = self.first()
        others = [f.fid for f in self.g1 if first.get(f.fid) not in (None, "a-1")]
        self.assertGreaterEqual(len(others), 40, "too few flows on a-2/b-1/b-2 for the check")
        self.assert_unmoved_lossless(others, "flows pinned to a-2/b-1/b-2")

    def test_new_flows_while_down_avoid_a1(self):
        self.assert_decoded_clean()
        pf = self.per_flow()
        bad = [(f.fid, sorted({t for _, t in pf[f.fid]})) for f in self.g2
               if any(t == "a-1" for _, t in pf[f.fid]) or len({t for _, t in pf[f.fid]}) != 1]
        self.assertFalse(bad, f"flows started while a-1 was down: not on one surviving tunnel: {bad[:8]}")

    def test_after_up_pinned_stay_new_flows_reach_a1(self):
        self.assert_decoded_clean()
        self.assert_before("back", self.G3)
        pf = self.per_flow()
        back = [(f.fid, [(i, t) for i, t in pf[f.fid] if i >= self.step("out").rx_after + SLACK and t == "a-1"][:3])
                for f in self.g1 + self.g2]
        back = [b for b in back if b[1]]
        self.assertFalse(back, f"{len(back)} flows pinned elsewhere went (back) to a-1 after up: {back[:5]}")
        multi = [(f.fid, sorted({t for _, t in pf[f.fid]})) for f in self.g3 if len({t for _, t in pf[f.fid]}) != 1]
        self.assertFalse(multi, f"new flows after up on more than one tunnel: {multi[:5]}")
        on_a1 = sum(1 for f in self.g3 if pf[f.fid] and pf[f.fid][0][1] == "a-1")
        self.assertGreater(on_a1, 0, "no new flow started after `tunnel a-1 up` reached a-1")


# ------------------------------------------------------------------------------------------------ 2 drain


class DrainTest(Checks, OperatorCase):
    DRAIN, IDLE_STOP, G2, TOTAL = 2000, 3000, 3000, 10400
    DEADLINE = 1.0

    @classmethod
    def setUpClass(cls):
        rng = random.Random(5102)
        cls.g1a = gwtest.make_flows(50, rng, first_id=0, v4_net=31, v6_net=0x31)     # send all along
        cls.g1b = gwtest.make_flows(50, rng, first_id=100, v4_net=32, v6_net=0x32)   # stop before the deadline
        cls.g2 = gwtest.make_flows(40, rng, first_id=200, v4_net=33, v6_net=0x33)    # new after the command
        tr = build_trace([(cls.g1a, 0, cls.TOTAL), (cls.g1b, 0, cls.IDLE_STOP), (cls.g2, cls.G2, cls.TOTAL)],
                         cls.TOTAL, rng)

        def scenario(mg):
            mg.wait_rx(cls.DRAIN)
            s = mg.step("drain", "tunnel", "b-2", "drain", "--deadline", str(cls.DEADLINE), show=("tunnels",))
            time.sleep(max(0.0, s.t_sent + 0.7 * cls.DEADLINE - time.monotonic()))
            v = mg.rx()
            mg.mid = (time.monotonic() - s.t_sent, v)     # read back before t_sent + deadline: still draining
            time.sleep(max(0.0, s.t_reply + cls.DEADLINE + 0.3 - time.monotonic()))
            t = time.monotonic()
            mg.past = (t - s.t_reply, mg.rx())            # read after t_reply + deadline: all moved
            mg.past_tunnels = mg.show("tunnels")
        cls.drive("drain", dual(), tr, scenario)

    def flows_on_b2(self, group):
        pf = self.per_flow()
        return [f.fid for f in group if pf[f.fid] and pf[f.fid][0][1] == "b-2"]

    def test_shown_draining(self):
        t = {x["name"]: x for x in self.step("drain").shown["tunnels"]}
        # meshgatectl spells it "drain"; docs/ARCHITECTURE.md and the stats JSON "draining": either is the draining state.
        self.assertIn(t["b-2"]["admin"], ("drain", "draining"), f"b-2 after the drain command: {t['b-2']}")
        self.assertIn(t["b-2"]["state"], ("drain", "draining"), f"b-2 after the drain command: {t['b-2']}")

    def test_no_new_flow_on_b2(self):
        self.assert_decoded_clean()
        self.assert_before("drain", self.G2)
        pf = self.per_flow()
        bad = [(f.fid, sorted({t for _, t in pf[f.fid]})) for f in self.g2 if any(t == "b-2" for _, t in pf[f.fid])]
        self.assertFalse(bad, f"{len(bad)} flows started after the drain landed on b-2: {bad[:8]}")

    def test_idle_flows_lose_nothing_and_stay(self):
        self.assert_decoded_clean()
        self.assert_before("drain", self.IDLE_STOP)
        fids = self.flows_on_b2(self.g1b)
        self.assertGreaterEqual(len(fids), 5, f"only {len(fids)} stopping flows started on b-2")
        self.assert_unmoved_lossless(fids, "b-2 flows that went idle before the deadline")

    def test_pinned_flows_stay_until_the_deadline(self):
        self.assert_decoded_clean()
        secs, mid = self.mg.mid
        self.assertLess(secs, self.DEADLINE, "mid-drain sample taken too late")
        fids = set(self.flows_on_b2(self.g1a))
        self.assertGreaterEqual(len(fids), 5, f"only {len(fids)} continuing flows started on b-2")
        early = [(i, t, self.trace.flow[i].fid) for i, t in self.placement().items()
                 if i < mid and self.trace.flow[i].fid in fids and t != "b-2"]
        self.assertFalse(early, f"b-2's pinned flows left it before the deadline (mid-drain sample: inside_rx {mid}, "
                                f"read back {secs:.2f} s after sending the command): {early[:8]}")

    def test_after_deadline_flows_moved(self):
        self.assert_decoded_clean()
        secs, past = self.mg.past
        self.assertLess(past + 400, self.TOTAL, f"the trace ended too soon after the deadline (inside_rx {past})")
        late = [(i, self.trace.flow[i].fid) for i, t in self.placement().items() if i >= past and t == "b-2"]
        self.assertFalse(late, f"{len(late)} packets on b-2 received {secs:.2f} s after the drain reply "
                               f"(deadline {self.DEADLINE} s; inside_rx then {past}): {late[:8]}")
        pf = self.per_flow()
        fids = self.flows_on_b2(self.g1a)
        probs = []
        for fid in fids:
            seq = [t for _, t in pf[fid]]
            k = next((j for j, t in enumerate(seq) if t != "b-2"), len(seq))
            if k == len(seq) or len(set(seq[k:])) != 1:
                probs.append((fid, [t for j, t in enumerate(seq) if j == 0 or seq[j - 1] != t]))
        self.assertFalse(probs, f"continuing b-2 flows not (b-2, then one other tunnel): {probs[:8]}")
        fl = self.mg.stats["flows"]
        self.assertEqual(fl["moved_drain"], len(fids),
                         f"flows.moved_drain vs the {len(fids)} b-2 flows moved by the passed drain deadline "
                         f"(stats flows: {fl}; no tunnel was set down by a command in this run)")

    def test_other_tunnels_flows_untouched(self):
        self.assert_decoded_clean()
        pf = self.per_flow()
        fids = [f.fid for f in self.g1a + self.g1b if pf[f.fid] and pf[f.fid][0][1] != "b-2"]
        self.assert_unmoved_lossless(fids, "flows of a-1/a-2/b-1")


# ------------------------------------------------------------------------------------------------ 3 maintenance


class MaintenanceTest(Checks, OutAndBackCase):
    @classmethod
    def setUpClass(cls):
        cls.out_and_back("maintenance", 5103, 41, ("instance", "gw-a", "maintenance"), ("instance", "gw-a", "up"),
                         ("instances", "tunnels"))

    def test_shown_state(self):
        m = self.step("out").shown
        u = self.step("back").shown
        ia = {i["name"]: i for i in m["instances"]}["gw-a"]
        self.assertNotEqual(ia["admin"], "up", f"gw-a in maintenance shown as {ia}")
        ta = [(t["name"], t["state"]) for t in m["tunnels"] if t["instance"] == "gw-a"]
        self.assertTrue(all(s != "up" for _, s in ta), f"gw-a's tunnels during maintenance: {ta}")
        self.assertEqual({i["name"]: i for i in u["instances"]}["gw-a"]["admin"], "up", f"after up: {u['instances']}")
        tu = [(t["name"], t["state"]) for t in u["tunnels"]]
        self.assertTrue(all(s == "up" for _, s in tu), f"tunnels after instance up: {tu}")

    def test_no_gw_a_packet_during_maintenance(self):
        self.assert_decoded_clean()
        self.assert_before("out", self.G2)
        bad = self.late_packets({"a-1", "a-2"}, "out", until_index=self.step("back").rx_before)
        self.assertFalse(bad, f"{len(bad)} packets (index, tunnel, seq) on gw-a after the maintenance reply: {bad[:8]}")

    def test_gw_a_flows_on_gw_b(self):
        self.assert_decoded_clean()
        s = self.step("out")
        pf = self.per_flow()
        fids = [f.fid for f in self.g1 if pf[f.fid] and self.inst(pf[f.fid][0][1]) == "gw-a"]
        self.assertGreaterEqual(len(fids), 15, f"only {len(fids)} flows started on gw-a")
        probs = []
        for fid in fids:
            after = {t for i, t in pf[fid] if i >= s.rx_after + SLACK}
            if len(after) != 1 or self.inst(next(iter(after))) != "gw-b":
                probs.append((fid, sorted(after)))
        self.assertFalse(probs, f"gw-a flows not on one gw-b tunnel after maintenance: {probs[:8]}")
        g2 = [(f.fid, sorted({t for _, t in pf[f.fid]})) for f in self.g2
              if {self.inst(t) for _, t in pf[f.fid]} != {"gw-b"}]
        self.assertFalse(g2, f"flows started during maintenance not on gw-b only: {g2[:8]}")

    def test_gw_b_flows_untouched(self):
        self.assert_decoded_clean()
        pf = self.per_flow()
        fids = [f.fid for f in self.g1 if pf[f.fid] and self.inst(pf[f.fid][0][1]) == "gw-b"]
        self.assertGreaterEqual(len(fids), 15)
        self.assert_unmoved_lossless(fids, "gw-b flows")

    def test_after_up_pinned_stay_new_use_gw_a(self):
        self.assert_decoded_clean()
        self.assert_before("back", self.G3)
        s = self.step("out")
        pf = self.per_flow()
        back = [(f.fid, [(i, t) for i, t in pf[f.fid] if i >= s.rx_after + SLACK and self.inst(t) == "gw-a"][:3])
                for f in self.g1 + self.g2]
        back = [b for b in back if b[1]]
        self.assertFalse(back, f"{len(back)} flows pinned on gw-b went back to gw-a after up: {back[:5]}")
        on_a = sum(1 for f in self.g3 if pf[f.fid] and self.inst(pf[f.fid][0][1]) == "gw-a")
        self.assertGreater(on_a, 0, "no new flow after `instance gw-a up` used gw-a")


# ------------------------------------------------------------------------------------------------ 4 reset


class ResetTest(Checks, OperatorCase):
    RESET, G2, TOTAL = 2400, 3600, 7200

    @classmethod
    def setUpClass(cls):
        cls.g1, cls.g2, tr = two_groups(5104, 80, 40, 51, cls.G2, cls.TOTAL)

        def scenario(mg):
            mg.before_instances = mg.show("instances")
            mg.wait_rx(cls.RESET)
            mg.step("reset", "instance", "gw-b", "reset", show=("instances", "tunnels"))
        cls.drive("reset", dual(), tr, scenario)

    def test_gw_b_up_again_and_reset_counted(self):
        s = self.step("reset")
        before = {i["name"]: i for i in self.mg.before_instances}
        after = {i["name"]: i for i in s.shown["instances"]}
        self.assertEqual(after["gw-b"]["admin"], "up", f"gw-b after reset: {after['gw-b']}")
        self.assertEqual(after["gw-b"]["resets"], before["gw-b"]["resets"] + 1, f"resets: {before} -> {after}")
        self.assertEqual(after["gw-a"]["resets"], before["gw-a"]["resets"], "gw-a's reset count moved")
        st = [(t["name"], t["state"]) for t in s.shown["tunnels"]]
        self.assertTrue(all(x == "up" for _, x in st), f"tunnels after the reset: {st}")

    def test_gw_a_flows_untouched(self):
        self.assert_decoded_clean()
        pf = self.per_flow()
        fids = [f.fid for f in self.g1 + self.g2 if pf[f.fid] and self.inst(pf[f.fid][0][1]) == "gw-a"]
        self.assertGreaterEqual(len(fids), 20)
        self.assert_unmoved_lossless(fids, "gw-a flows")

    def test_sequence_numbers_never_repeat(self):
        self.assert_decoded_clean()
        s = self.step("reset")
        by_spi = collections.defaultdict(list)
        for d in self.decoded:   # pcap order = transmit order per port; an SA lives on one port
            by_spi[d.spi].append(d)
        spanning = 0
        for spi, ds in sorted(by_spi.items()):
            seqs = [d.seq for d in ds]
            ivs = [int.from_bytes(d.iv, "big") for d in ds]
            dup_seq = [x for x, c in collections.Counter(seqs).items() if c > 1]
            dup_iv = [x for x, c in collections.Counter(ivs).items() if c > 1]
            self.assertFalse(dup_seq, f"SPI {spi:#x}: sequence numbers used twice: {dup_seq[:10]}")
            self.assertFalse(dup_iv, f"SPI {spi:#x}: IVs used twice (key, IV reuse): {dup_iv[:10]}")
            drops = [(ds[k - 1].seq, ds[k].seq, ds[k].index) for k in range(1, len(ds)) if ds[k].seq <= ds[k - 1].seq]
            self.assertFalse(drops, f"SPI {spi:#x}: sequence numbers not increasing (prev, next, index): {drops[:8]}")
            if self.gw.by_out_spi[spi].instance == "gw-b":
                pre = [d for d in ds if d.index is not None and d.index < s.rx_before]
                post = [d for d in ds if d.index is not None and d.index >= s.rx_after + SLACK]
                if pre and post:
                    spanning += 1
                    self.assertGreater(post[0].seq, pre[-1].seq,
                                       f"SPI {spi:#x}: sequence restarted across the reset")
        self.assertGreater(spanning, 0, "no gw-b SA carried packets both before and after the reset: the "
                                        "continuity check checked nothing")


class ResetAccountingTest(OperatorCase):
    """Unknown-SPI ESP on both instance ports while gw-a, then gw-b, is reset: every replaced inbound table's drops
    are counted once, none lost at the swap (issue 15, defect 7: 20,000 received, 27,820 drops reported)."""
    N = 3000   # per port

    @classmethod
    def setUpClass(cls):
        cls.g1, cls.g2, tr = two_groups(5106, 20, 10, 53, 400, 800)
        gw = gwtest.Gw(dual())
        ports = {"out-a": [], "out-b": []}
        for port in ports:   # to the port's instance from one of its devices, with SPIs no tunnel has
            t = next(t for t in gw.tunnels if t.port == port)
            for k in range(cls.N):
                esp = (0x7e570000 + k % 7).to_bytes(4, "big") + (k + 1).to_bytes(4, "big") + bytes(64)
                ports[port].append(gwtest.frame(bytes(gwtest.IP(src=t.dev_ip, dst=t.inst_ip, proto=50) / esp)))

        def scenario(mg):
            mg.wait_rx(cls.N // 2, counter="outside_rx")
            mg.step("reset-a", "instance", "gw-a", "reset")
            mg.mid = mg.show("counters")["gateway"]
            mg.wait_rx(cls.N, counter="outside_rx")
            mg.step("reset-b", "instance", "gw-b", "reset")
        cls.drive("reset-accounting", dual(), tr, scenario, a_rx=ports["out-a"], b_rx=ports["out-b"],
                  outside_pps=1000)

    def test_commands_accepted(self):
        self.assertFalse(self.mg.problems, "scenario: " + "; ".join(self.mg.problems) + "\n" + self.mg.describe())

    def test_every_unknown_spi_counted_once(self):
        st = self.mg.stats
        self.assertIsNotNone(st, self.mg.describe())
        self.assertEqual(st["outside_rx"], 2 * self.N, self.mg.describe())
        self.assertEqual(st["esp_unknown_sa_drops"], {"in_unknown_spi": 2 * self.N}, self.mg.describe())
        self.assertEqual(st["esp_in_drops"], 2 * self.N)
        # Between the two resets, the mirror counted no more drops than packets received.
        self.assertLessEqual(self.mg.mid["esp_in_drops"], self.mg.mid["outside_rx"], self.mg.mid)

    def test_clean_exit_and_accounting(self):
        self.assert_accounting(len(self.trace.frames), 2 * self.N)


def with_key_files(src, dst_dir):
    """A copy of gateway file src in dst_dir whose SAs read their keys from 0600 files keys/<spi>.key; its path."""
    os.makedirs(os.path.join(dst_dir, "keys"), mode=0o700, exist_ok=True)
    out, spi = [], None
    with open(src) as f:
        for line in f:
            t = line.strip()
            if t.startswith("spi ="):
                spi = int(t.split("=")[1].split("#")[0].strip(), 0)
            if t.startswith("key =") and spi is not None:
                path = os.path.join(dst_dir, "keys", f"{spi:#x}.key")
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as k:
                    k.write(t.split('"')[1] + "\n")
                line = f'key_file = "keys/{spi:#x}.key"\n'
            elif t.startswith("pmd_config ="):
                line = f'pmd_config = "{gwtest.pmd_cfg()}"\n'
            out.append(line)
    path = os.path.join(dst_dir, "gateway.toml")
    with open(path, "w") as f:
        f.write("".join(out))
    return path


class ResetKeyFileTest(Checks, OperatorCase):
    """`instance gw-b reset` while one of gw-b's key files has become a FIFO: refused at once with the file named
    (the loader used to wait in open() for a writer, the main lcore with it: no reply, no further command); the
    gateway forwards on and answers; with the file back, the reset goes through."""
    TOTAL = 7200

    @classmethod
    def setUpClass(cls):
        _, _, tr = two_groups(5111, 60, 20, 53, 3000, cls.TOTAL)
        d = os.path.join(TMP, "reset-key-file-config")
        config = with_key_files(dual(), d)
        key = os.path.join(d, "keys", f"{gwtest.Gw(config).by_name['b-1'].inn.spi:#x}.key")
        cls.key = key

        def scenario(mg):
            mg.wait_rx(1500)
            with open(key) as f:
                text = f.read()
            os.unlink(key)
            os.mkfifo(key, 0o600)
            cls.gen_before_fifo = mg.show("gateway")["generation"]
            t0 = time.monotonic()
            rc, _, txt = mg.ctl("instance", "gw-b", "reset", as_json=False, timeout=30)
            cls.fifo = (rc, txt.strip(), time.monotonic() - t0)
            cls.gen_after_fifo = mg.show("gateway")["generation"]
            os.unlink(key)
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
            mg.step("reset", "instance", "gw-b", "reset", show=("instances",))
        cls.drive("reset-key-file", config, tr, scenario)

    def test_reset_with_a_fifo_refused_at_once(self):
        rc, txt, took = self.fifo
        self.assertEqual(rc, 1, f"reset with a FIFO key file: exit {rc}, {txt!r}")
        # The reply holds 111 characters: the start and the end of the message, where the file and reason are.
        self.assertIn(os.path.basename(self.key) + " is a FIFO, not a regular file", txt)
        self.assertLess(took, 10, "the refusal took long: the loader waited on the FIFO")
        self.assertEqual(self.gen_after_fifo, self.gen_before_fifo, "the refused reset changed the state")
        with open(os.path.join(self.mg.dir, "meshgate.out")) as f:
            self.assertIn(f"{self.key} is a FIFO, not a regular file", f.read(), "the whole message on stderr")

    def test_reset_after_the_file_is_back(self):
        s = self.step("reset")
        self.assertEqual(s.rc, 0, s.text)
        self.assertEqual({i["name"]: i["resets"] for i in s.shown["instances"]}["gw-b"], 1)


# ------------------------------------------------------------------------------------------------ 4b keys A -> B -> A


class ResetKeysTest(OperatorCase):
    FIRST, SECOND, TOTAL = 2400, 4800, 8400
    B_KEYS = {"b-1": (0x1013, "3b1f0e6a5d2c4b7a8e9f0a1b2c3d4e5f60718293"),
              "b-2": (0x1014, "a4c3b2e1f0d9c8b7a6958473625140392817f6e5")}

    @classmethod
    def setUpClass(cls):
        _, _, tr = two_groups(5115, 80, 40, 71, 3600, cls.TOTAL)
        d = os.path.join(TMP, "keys")
        os.makedirs(d, exist_ok=True)
        with open(gwtest.dual_cfg()) as f:
            text_a = f.read().replace('pmd_config = "../pmd_config/vdev-demo.toml"',
                                      f'pmd_config = "{gwtest.pmd_cfg()}"')
        gw_a = gwtest.Gw(gwtest.dual_cfg())
        text_b = text_a
        for name, (spi, key) in cls.B_KEYS.items():
            t = gw_a.by_name[name]
            text_b = text_b.replace(f"spi = {t.out.spi:#x}", f"spi = {spi:#x}").replace(t.out.keymat.hex(), key)
        cfg, cfg_b = os.path.join(d, "gateway.toml"), os.path.join(d, "gateway-b.toml")

        def write(text):   # whole or not at all: a reset must never read half a file
            with open(cfg + ".tmp", "w") as f:
                f.write(text)
            os.replace(cfg + ".tmp", cfg)
        write(text_a)
        with open(cfg_b, "w") as f:
            f.write(text_b)
        cls.gw_b = gwtest.Gw(cfg_b)

        def scenario(mg):
            mg.wait_rx(cls.FIRST)
            write(text_b)
            mg.step("to-b", "instance", "gw-b", "reset")
            mg.wait_rx(cls.SECOND)
            write(text_a)
            mg.step("back-to-a", "instance", "gw-b", "reset")
        cls.drive("reset-keys", cfg, tr, scenario)

    def frames(self):
        """(spi, seq, iv, decrypted) of every frame of out-b, each decrypted by scapy with the key its SPI names."""
        sas = {t.out.spi: t.out.scapy_sa() for g in (self.gw, self.gw_b) for t in g.tunnels if t.instance == "gw-b"}
        res = []
        for fr in self.mg.out["out-b"] or []:
            ip = fr[14:]
            ihl = (ip[0] & 0x0f) * 4
            spi, seq = struct.unpack("!II", ip[ihl:ihl + 8])
            sa = sas.get(spi)
            ok = False
            if sa is not None:
                sa.esn = 0   # far below 2^32 packets here
                try:
                    ok = gwtest.raw(sa.decrypt(gwtest.IP(ip))) is not None
                except Exception:  # noqa: BLE001 - any decode failure is a finding
                    ok = False
            res.append((spi, seq, ip[ihl + 8:ihl + 16], ok))
        return res

    def test_both_resets_accepted_and_clean_exit(self):
        self.assertFalse(self.mg.problems, f"scenario: {self.mg.problems}\n{self.mg.describe()}")
        self.assert_accounting(len(self.trace.frames), 0)

    def test_every_frame_decrypts_under_the_key_of_its_spi(self):
        fr = self.frames()
        bad = [(hex(s), q) for s, q, _, ok in fr if not ok]
        if bad:
            self.fail(f"{len(bad)} of {len(fr)} out-b frames do not decrypt (SPI, seq): {bad[:8]}")
        spis = collections.Counter(s for s, *_ in fr)
        for name, (spi, _) in self.B_KEYS.items():
            self.assertGreater(spis[spi], 0, f"{name}: nothing sent under key B (SPI {spi:#x}): {spis}")

    def test_no_key_iv_pair_twice(self):
        fr = self.frames()
        pairs = collections.Counter((s, iv) for s, _, iv, _ in fr)
        dup = [(hex(s), int.from_bytes(iv, "big"), c) for (s, iv), c in pairs.items() if c > 1]
        if dup:
            self.fail(f"{len(dup)} (SPI = key, IV) pairs sent more than once, e.g. (SPI, IV, times) {dup[:6]}: key A "
                      f"came back and started its IVs again")
        # The check above checked something only if key A was used before B and again after it.
        for name, (spi_b, _) in self.B_KEYS.items():
            spi_a = self.gw.by_name[name].out.spi
            pos_b = [k for k, f in enumerate(fr) if f[0] == spi_b]
            before = [k for k, f in enumerate(fr) if f[0] == spi_a and pos_b and k < pos_b[0]]
            after = [k for k, f in enumerate(fr) if f[0] == spi_a and pos_b and k > pos_b[-1]]
            self.assertTrue(before and after, f"{name}: key A sent {len(before)} frames before key B and "
                                              f"{len(after)} after it: the scenario did not bring A back")


# ------------------------------------------------------------------------------------------------ 5 mode switch


class ResetMtuTest(OperatorCase):
    """`instance reset` also rereads the tunnels' `mtu` (and so the path MTU and the MSS clamp): the file gets
    `mtu = 1400` on every tunnel, gw-b is reset, and only gw-b's tunnels change (1446 -> 1346 over IPv4 with
    AES-GCM). 1400-byte DF packets of flows new after the reset that land on gw-b are refused with ICMP
    frag-needed quoting 1346; those on gw-a still leave whole. (It used to keep the figures of the start.)"""
    FIRST, START2, TOTAL = 2400, 3600, 6000

    @classmethod
    def setUpClass(cls):
        def flows(first, net):
            return [gwtest.Flow(first + k, False, "udp", f"10.{net}.0.{k + 1}", f"10.128.{net}.{k + 1}",
                                2000 + k, 4000 + k, df=True) for k in range(40)]
        tr = build_trace([(flows(0, 91), 0, cls.TOTAL), (flows(100, 92), cls.START2, cls.TOTAL)], cls.TOTAL,
                         random.Random(1300), sizes=(1414,))
        d = os.path.join(TMP, "mtu-reset")
        os.makedirs(d, exist_ok=True)
        with open(gwtest.dual_cfg()) as f:
            text = f.read().replace('pmd_config = "../pmd_config/vdev-demo.toml"', f'pmd_config = "{gwtest.pmd_cfg()}"')
        cfg = os.path.join(d, "gateway.toml")
        with open(cfg, "w") as f:
            f.write(text)
        assert text.count("[tunnel.out]") == 4
        smaller = text.replace("[tunnel.out]", "mtu = 1400\n[tunnel.out]")

        def scenario(mg):
            mg.wait_rx(cls.FIRST)
            with open(cfg + ".tmp", "w") as f:   # whole or not at all
                f.write(smaller)
            os.replace(cfg + ".tmp", cfg)
            mg.step("reset", "instance", "gw-b", "reset")
        cls.drive("reset-mtu", cfg, tr, scenario)

    def tunnels(self):
        return {t["name"]: t for t in self.mg.stats["tunnels"]}

    def test_reset_accepted_and_accounting(self):
        self.assertFalse(self.mg.problems, f"scenario: {self.mg.problems}\n{self.mg.describe()}")
        self.assert_before("reset", self.START2)
        self.assert_accounting(len(self.trace.frames), 0)

    def test_new_figures_on_the_reset_instance_only(self):
        t = self.tunnels()
        for name in ("b-1", "b-2"):
            self.assertEqual((t[name]["mtu"]["link"], t[name]["mtu"]["path"], t[name]["mtu"]["mss_clamp_v4"]),
                             (1400, 1346, 1306), t[name])
        for name in ("a-1", "a-2"):
            self.assertEqual((t[name]["mtu"]["link"], t[name]["mtu"]["path"]), (1500, 1446), t[name])

    def test_too_big_after_the_reset_on_gw_b_only(self):
        t = self.tunnels()
        b_big = t["b-1"]["too_big"] + t["b-2"]["too_big"]
        self.assertGreater(b_big, 0, "no new flow landed on gw-b after the reset (trace too short?)")
        self.assertEqual(t["a-1"]["too_big"] + t["a-2"]["too_big"], 0)
        icmp = [gwtest.IP(fr[14:]) for fr in self.mg.out["inside"] or [] if fr[12:14] == b"\x08\x00"]
        icmp = [p for p in icmp if p.haslayer(gwtest.ICMP) and p[gwtest.ICMP].type == 3 and p[gwtest.ICMP].code == 4]
        self.assertEqual(len(icmp), t["b-1"]["icmp_too_big"] + t["b-2"]["icmp_too_big"])
        self.assertGreater(len(icmp), 0)
        self.assertEqual({p[gwtest.ICMP].nexthopmtu for p in icmp}, {1346})
        # Every ESP datagram gw-b sent fits its link: the 1400-byte packets before the reset (1454 bytes once
        # encrypted, on the old 1500 link) and none of them after it.
        s = self.step("reset")
        for d in self.decoded:
            if d.tunnel in ("b-1", "b-2") and d.seq > s.seq_after[d.tunnel]:
                self.fail(f"{d.tunnel} sent sequence number {d.seq} after the reset: a 1400-byte packet over a "
                          "1346-byte path")


class ModeSwitchTest(Checks, OperatorCase):
    SWITCH, G2, TOTAL = 2000, 3200, 6400

    @classmethod
    def setUpClass(cls):
        cls.g1, cls.g2, tr = two_groups(5105, 60, 60, 61, cls.G2, cls.TOTAL)
        cls.active = gwtest.Gw(gwtest.standby_cfg()).active_instance()

        def scenario(mg):
            mg.mode_before = mg.show("gateway")["mode"]
            mg.wait_rx(cls.SWITCH)
            mg.step("mode", "mode", "active-active", show=("gateway",))
        cls.drive("mode", gwtest.standby_cfg(), tr, scenario)

    def test_mode_shown(self):
        self.assertEqual(self.mg.mode_before, "active-standby")
        self.assertEqual(self.step("mode").shown["gateway"]["mode"], "active-active")

    def test_before_switch_all_on_active(self):
        self.assert_decoded_clean()
        s = self.step("mode")
        bad = [(i, t) for i, t in self.placement().items() if i < s.rx_before and self.inst(t) != self.active]
        self.assertFalse(bad, f"before the switch packets left via the standby instance: {bad[:8]}")

    def test_pinned_flows_stay(self):
        self.assert_decoded_clean()
        self.assert_unmoved_lossless([f.fid for f in self.g1], "flows pinned before the switch")

    def test_new_flows_spread_over_all_tunnels(self):
        self.assert_decoded_clean()
        self.assert_before("mode", self.G2)
        pf = self.per_flow()
        used = collections.Counter(pf[f.fid][0][1] for f in self.g2 if pf[f.fid])
        self.assertEqual(set(used), {t.name for t in self.gw.tunnels},
                         f"60 new flows after `mode active-active` used {dict(used)}")
        self.assert_unmoved_lossless([f.fid for f in self.g2], "new flows")


# ------------------------------------------------------------------------------------------------ 6 bad input


class BadInputTest(Checks, OperatorCase):
    TOTAL = 6000

    @classmethod
    def setUpClass(cls):
        rng = random.Random(5106)
        flows = gwtest.make_flows(20, rng, first_id=0, v4_net=71, v6_net=0x71)
        tr = build_trace([(flows, 0, cls.TOTAL)], cls.TOTAL, rng, sizes=(64,))
        cls.results = []

        def scenario(mg):
            cases = [
                ("unknown tunnel name", ("tunnel", "nosuch", "down"), (2,)),
                ("tunnel index out of range", ("tunnel", "7", "down"), (1, 2)),
                ("unknown instance", ("instance", "gw-z", "up"), (2,)),
                ("negative weight", ("tunnel", "a-1", "weight", "-1"), (1, 2)),
                ("huge weight", ("tunnel", "a-1", "weight", "99999999"), (1, 2)),
                ("weight not a number", ("tunnel", "a-1", "weight", "abc"), (1, 2)),
                ("weight missing", ("tunnel", "a-1", "weight"), (1, 2)),
                ("negative deadline", ("tunnel", "a-1", "drain", "--deadline", "-1"), (1, 2)),
                ("deadline of years", ("tunnel", "a-1", "drain", "--deadline", "1e9"), (1, 2)),
                ("unknown mode", ("mode", "active-passive"), (2,)),
                ("unknown action", ("tunnel", "a-1", "explode"), (2,)),
            ]
            for what, args, want in cases:
                g0 = mg.show("gateway")["generation"]
                t0 = [(t["admin"], t["state"], t["weight"]) for t in mg.show("tunnels")]
                rc, _, txt = mg.ctl(*args, as_json=False)
                g1 = mg.show("gateway")["generation"]
                t1 = [(t["admin"], t["state"], t["weight"]) for t in mg.show("tunnels")]
                cls.results.append((what, args, want, rc, txt.strip(), g0, g1, t0, t1))
            rc, _, txt = mg.ctl("show", "tunnels", gateway="nosuchgw")
            cls.nosuch = (rc, txt.strip())
            g0 = mg.show("gateway")["generation"]
            cls.good = (mg.ctl("tunnel", "a-1", "weight", "3"), g0, mg.show("gateway")["generation"])
        cls.drive("bad-input", dual(), tr, scenario, pps=2000)

    def test_bad_input_refused_and_changes_nothing(self):
        self.assertEqual(len(self.results), 11, f"scenario did not finish: {self.mg.problems}")
        probs = []
        for what, args, want, rc, txt, g0, g1, t0, t1 in self.results:
            if rc not in want or not txt:
                probs.append(f"{what}: meshgatectl {' '.join(args)} -> exit {rc} (want {want} with a message), "
                             f"output {txt[:120]!r}")
            if g0 != g1 or t0 != t1:
                probs.append(f"{what}: meshgatectl {' '.join(args)} changed the state: generation {g0} -> {g1}, "
                             f"tunnels {t0} -> {t1}")
        self.assertFalse(probs, "\n".join(probs))

    def test_no_such_gateway_exit_3(self):
        rc, txt = self.nosuch
        self.assertEqual(rc, 3, f"meshgatectl --gateway nosuchgw show tunnels: exit {rc}, output {txt!r}")
        self.assertTrue(txt, "no message for a missing gateway")

    def test_good_command_still_works(self):
        (rc, reply, txt), g0, g1 = self.good
        self.assertEqual(rc, 0, f"tunnel a-1 weight 3 after the bad ones: {txt}")
        self.assertGreater(g1, g0, "a good command did not bump the generation")


# ------------------------------------------------------------------------------------------------ 7 kill -9


class KillTest(Checks, OperatorCase):
    TOTAL, TOTAL2 = 8000, 3000
    ROUNDS = 15

    @classmethod
    def setUpClass(cls):
        rng = random.Random(5107)
        flows = gwtest.make_flows(20, rng, first_id=0, v4_net=81, v6_net=0x81)
        tr = build_trace([(flows, 0, cls.TOTAL)], cls.TOTAL, rng, sizes=(64,))
        tr2 = build_trace([(flows, 0, cls.TOTAL2)], cls.TOTAL2, rng, sizes=(64,))
        cls.gw = gwtest.Gw(dual())
        cls.trace = tr2
        cls.rounds, cls.restart = [], {}
        control = f"op-kill-{os.getpid()}"
        cls.victim = Live("kill", dual(), tr, pps=2000, control=control)
        cls.mg = None
        try:
            cls.victim.wait_running()
            kinds = [("tunnel", "a-2", "weight", "1"), ("show", "tunnels"), ("show", "counters"), ("ping",),
                     ("tunnel", "b-1", "drain", "--deadline", "30")]
            runtime = {}   # how long each kind runs here (median of 3), so the kills land inside it
            for args in kinds:
                ts = []
                for _ in range(3):
                    p = subprocess.Popen([ARGS.meshgatectl, "--gateway", control, "--json"] + list(args),
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    t = time.monotonic()
                    p.wait()
                    ts.append(time.monotonic() - t)
                runtime[args] = sorted(ts)[1]
            for k in range(cls.ROUNDS):
                args = kinds[k % len(kinds)]
                rx0 = cls.victim.rx()
                # A command's client is killed while it waits for the reply, whatever the host's speed: the gateway
                # is stopped until the client is dead, so the command is still in flight. A show (a mirror read
                # that needs no gateway) is killed at a random point of its measured run time.
                hold = args[0] != "show"
                if hold:
                    cls.victim.proc.send_signal(signal.SIGSTOP)
                p = subprocess.Popen([ARGS.meshgatectl, "--gateway", control, "--json"] + list(args),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(rng.uniform(0.05, 0.3) if hold else rng.uniform(0.3, 1.0) * runtime[args])
                p.send_signal(signal.SIGKILL)
                p.wait()
                if hold:
                    cls.victim.proc.send_signal(signal.SIGCONT)
                rc, j, txt = cls.victim.ctl("ping")         # the next meshgatectl
                time.sleep(0.05)
                rx1 = cls.victim.rx()
                cls.rounds.append((args, p.returncode, rc, txt.strip()[:200], rx0, rx1))
            print(f"  [kill: {sum(1 for r in cls.rounds if r[1] == -signal.SIGKILL)} of {cls.ROUNDS} meshgatectl "
                  f"runs killed while running]", file=sys.stderr)
            cls.undrain = cls.victim.ctl("tunnel", "b-1", "up")
            cls.victim_alive = cls.victim.proc.poll() is None
            cls.victim.kill()
            cls.after_kill = cls.victim.ctl("show", "gateway", as_json=False)
            cls.block_left = os.path.exists(f"/dev/shm/meshgate.{control}")
            # A new meshgate over the stale block.
            cls.mg = Live("kill", dual(), tr2, pps=2000, control=control, suffix="-2")
            cls.mg.trace = tr2
            j = cls.mg.wait_running()
            cls.restart["pid"] = (j.get("pid"), cls.mg.proc.pid)
            cls.restart["ping"] = cls.mg.ctl("ping")
            cls.restart["cmd"] = cls.mg.ctl("tunnel", "a-1", "weight", "2")
        except AssertionError as e:
            cls.restart["error"] = str(e)
        finally:
            cls.victim.kill()
            if cls.mg is not None:
                cls.mg.finish()
                cls.decoded = cls.mg.decoded
            if cls.mg is None or cls.mg.rc != 0:
                try:
                    os.unlink(f"/dev/shm/meshgate.{control}")   # our own block, left by a failed run
                except OSError:
                    pass

    def setUp(self):
        if self.mg is None:
            self.fail(f"scenario failed before the restart: {self.restart}\n{self.victim.describe()}")

    def test_commands_accepted(self):
        self.assertNotIn("error", self.restart, self.restart.get("error"))

    def test_killed_clients_leave_forwarding_and_ctl_working(self):
        self.assertEqual(len(self.rounds), self.ROUNDS, f"rounds did not complete: {self.restart}")
        probs = [f"round {k} ({' '.join(a)} killed, its exit {prc}): next `meshgatectl ping` exit {rc} {txt!r}"
                 for k, (a, prc, rc, txt, _, _) in enumerate(self.rounds) if rc != 0]
        stalls = [f"round {k}: inside_rx {r0} -> {r1}" for k, (_, _, _, _, r0, r1) in enumerate(self.rounds)
                  if r1 <= r0]
        self.assertFalse(probs, "\n".join(probs) + "\n" + self.victim.describe())
        self.assertFalse(stalls, "forwarding stalled after a killed meshgatectl: " + "; ".join(stalls))
        self.assertTrue(self.victim_alive, f"meshgate died during the kill rounds\n{self.victim.describe()}")
        self.assertEqual(self.undrain[0], 0, f"tunnel b-1 up after the rounds: {self.undrain[2]}")
        killed = sum(1 for r in self.rounds if r[1] == -signal.SIGKILL)
        commands = sum(1 for r in self.rounds if r[0][0] != "show")
        self.assertGreaterEqual(killed, commands, f"only {killed} of {self.ROUNDS} meshgatectl runs were still "
                                                  f"running when killed ({commands} commands held in flight)")

    def test_killed_gateway_exit_3(self):
        rc, _, txt = self.after_kill
        self.assertEqual(rc, 3, f"meshgatectl show gateway after meshgate was killed: exit {rc}, {txt!r}")

    def test_new_gateway_over_stale_block(self):
        self.assertTrue(self.block_left, "the killed meshgate's block vanished: the restart tested nothing stale")
        pid, want = self.restart["pid"]
        self.assertEqual(pid, want, "show gateway does not show the new meshgate's pid")
        self.assertEqual(self.restart["ping"][0], 0, f"ping to the new meshgate: {self.restart['ping'][2]}")
        self.assertEqual(self.restart["cmd"][0], 0, f"command to the new meshgate: {self.restart['cmd'][2]}")


# ------------------------------------------------------------------------------------------------ main


def main():
    global ARGS, TMP
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--meshgate", required=True)
    ap.add_argument("--meshgatectl", required=True)
    ap.add_argument("--source-root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory (printed)")
    ARGS, rest = ap.parse_known_args()
    ARGS.meshgate = os.path.abspath(ARGS.meshgate)
    ARGS.meshgatectl = os.path.abspath(ARGS.meshgatectl)
    ARGS.source_root = os.path.abspath(ARGS.source_root)
    ARGS.spread = ARGS.esp_tool = ""
    TMP = tempfile.mkdtemp(prefix="mg-operator-")
    gwtest.ARGS, gwtest.TMP = ARGS, TMP
    t0 = time.monotonic()
    try:
        prog = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
        r = prog.result
    finally:
        if ARGS.keep:
            print(f"scratch kept in {TMP}")
        else:
            shutil.rmtree(TMP, ignore_errors=True)
    failed = len(r.failures) + len(r.errors)
    passed = r.testsRun - failed - len(r.skipped)
    print(f"runtime {time.monotonic() - t0:.1f} s")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and r.testsRun > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
