#!/usr/bin/python3
"""Never the same (key, IV) twice across restarts (issue 15, defect 1).

AES-GCM and ChaCha20-Poly1305 give away the plaintexts' XOR and the authentication key when a (key, IV) pair
repeats, and with static keys every run used to start its sequence numbers (= IVs) at 1 again. Here three runs
of configs/gateway-dual.toml share one state directory ($STATE_DIRECTORY, as systemd's StateDirectory= gives it):

  run 1   a short trace, clean exit
  run 2   a long paced trace, killed with SIGKILL mid-stream (no exit path runs: a crash)
  run 3   a short trace, clean exit

and every ESP frame of the three captures is read back with scapy (decrypted, so it is really the SA's): no
(SPI, IV) pair twice, the IV is the 64-bit sequence number, and each run starts above everything an earlier run
sent on that SA. The state files are named by key fingerprints and hold no key. Without a usable state directory
meshgate refuses to start (exit 2, a message naming the directory and the unsafe switch); --unsafe-no-seq-state
and [gateway] unsafe_volatile_sequence run with a warning.

Run: /usr/bin/python3 tests/gateway/test_restart_nonce.py --meshgate build/apps/meshgate/meshgate
"""
import collections
import os
import random
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import gwtest  # noqa: E402  (exits 77 when scapy is missing)


def trace(seed, flows, packets):
    rng = random.Random(seed)
    fl = gwtest.make_flows(flows, rng, first_id=seed % 1000)
    tr = gwtest.Trace()
    for f in gwtest.interleave([(f, packets // flows) for f in fl], rng):
        tr.add(f, rng.choice([64, 128, 300]))
    return tr


class RestartTest(gwtest.GatewayCase):
    @classmethod
    def setUpClass(cls):
        cls.gw = gwtest.Gw(gwtest.dual_cfg())
        cls.state = os.path.join(gwtest.TMP, "restart-state")
        os.makedirs(cls.state, exist_ok=True)
        cls.runs = []
        for k, (tr, kw) in enumerate([
                (trace(1501, 40, 2000), {}),
                # ~10 s of traffic at 2000 pps; killed once 2 s have passed and some 80 KB of gw-a's ESP is on disk
                # (net_pcap writes through a stdio buffer: what the kill cuts off was never seen by anyone).
                (trace(1502, 40, 20000), {"extra": ["--pace-pps", "2000"], "kill_after": (2.0, 80000)}),
                (trace(1503, 40, 2000), {})]):
            r = gwtest.Run(f"restart-{k + 1}", gwtest.dual_cfg(), tr.frames, state_dir=cls.state, **kw)
            r.trace, r.gw = tr, cls.gw
            r.decoded = gwtest.decrypt_outputs(cls.gw, r) if r.out["out-a"] is not None else []
            cls.runs.append(r)

    def test_runs_as_planned(self):
        r1, r2, r3 = self.runs
        for r in (r1, r3):
            self.mg = r
            self.assert_accounting(len(r.trace.frames), 0)
        self.assertTrue(r2.killed, f"run 2 ended by itself before the kill\n{r2.describe()}")
        for r in self.runs:
            self.assertGreater(len(r.decoded), 500, f"{r.name}: too little ESP to check\n{r.describe()}")
            bad = [d for d in r.decoded if d.error]
            if bad:
                self.fail(f"{r.name}: {len(bad)} frames did not decrypt, first: {bad[0].error}")

    def test_no_spi_iv_pair_twice_across_runs(self):
        seen = collections.Counter()
        for r in self.runs:
            for d in r.decoded:
                if d.spi is not None:
                    seen[(d.spi, d.iv)] += 1
        dup = [(hex(s), int.from_bytes(iv, "big"), n) for (s, iv), n in seen.items() if n > 1]
        if dup:
            self.fail(f"{len(dup)} of {len(seen)} (SPI, IV) pairs sent more than once across the three runs (same "
                      f"static key, same IV), e.g. (SPI, IV, times) {dup[:6]}")
        self.assertGreater(len(seen), 3000)

    def test_iv_is_the_sequence_number(self):
        for r in self.runs:
            bad = [d.pos for d in r.decoded if d.spi is not None and int.from_bytes(d.iv, "big") & 0xffffffff != d.seq]
            if bad:
                self.fail(f"{r.name}: IV low half is not the ESP sequence number at {bad[:5]}")

    def test_each_run_starts_above_the_earlier_ones(self):
        top = {}
        for r in self.runs:
            by_spi = collections.defaultdict(list)
            for d in r.decoded:
                if d.spi is not None:
                    by_spi[d.spi].append(int.from_bytes(d.iv, "big"))
            for spi, ivs in by_spi.items():
                if spi in top:
                    self.assertGreater(min(ivs), top[spi], f"{r.name}: SPI {spi:#x} starts at {min(ivs)}, an earlier "
                                                           f"run reached {top[spi]}")
                top[spi] = max(top.get(spi, 0), max(ivs))
        self.assertEqual(len(top), 4, f"SAs seen: {sorted(hex(s) for s in top)}")

    def test_state_files_hold_no_key(self):
        names = sorted(os.listdir(self.state))
        self.assertEqual(len([n for n in names if n.endswith(".seq")]), 4, f"state files: {names}")
        keys = [t.out.keymat.hex() for t in self.gw.tunnels] + [t.inn.keymat.hex() for t in self.gw.tunnels]
        for n in names:
            with open(os.path.join(self.state, n), "rb") as f:
                body = f.read().decode(errors="replace").lower()
            leaks = [k for k in keys if k[:16] in n.lower() or k[:16] in body]
            self.assertFalse(leaks, f"{n} shows key material")


class RefusalTest(unittest.TestCase):
    def run_mg(self, name, extra=(), env_state=None, config=None):
        tr = trace(1510, 4, 40)
        return gwtest.Run(name, config or gwtest.dual_cfg(), tr.frames, extra=extra,
                          state_dir=env_state or os.path.join(gwtest.TMP, name, "state"))

    def test_missing_state_directory_refuses_to_start(self):
        missing = os.path.join(gwtest.TMP, "no-such-dir", "state")
        r = self.run_mg("refuse-missing", extra=["--state-dir", missing])
        self.assertEqual(r.rc, 2, r.describe())
        self.assertIn(missing, r.stderr)
        self.assertIn("does not exist", r.stderr)
        self.assertIn("--unsafe-no-seq-state", r.stderr, "the message names the way out")
        self.assertFalse(r.out["out-a"], "nothing may be sent")

    def test_state_directory_that_is_a_file_refuses_to_start(self):
        f = os.path.join(gwtest.TMP, "a-file")
        with open(f, "w") as fh:
            fh.write("x")
        r = self.run_mg("refuse-file", extra=["--state-dir", f])
        self.assertEqual(r.rc, 2, r.describe())
        self.assertIn("not a directory", r.stderr)

    def test_environment_directory_is_created_when_its_parent_exists(self):
        d = os.path.join(gwtest.TMP, "env-parent", "meshgate")
        os.makedirs(os.path.dirname(d), exist_ok=True)
        r = self.run_mg("env-created", env_state=d)
        self.assertEqual(r.rc, 0, r.describe())
        self.assertEqual(len([n for n in os.listdir(d) if n.endswith(".seq")]), 4)

    def test_unsafe_switch_runs_with_a_warning(self):
        r = self.run_mg("unsafe-flag", extra=["--state-dir", os.path.join(gwtest.TMP, "nope", "nope"),
                                              "--unsafe-no-seq-state"])
        self.assertEqual(r.rc, 0, r.describe())
        self.assertIn("WARNING: unsafe volatile sequence numbers", r.stderr)

    def test_unsafe_config_key_runs_with_a_warning(self):
        cfg = os.path.join(gwtest.TMP, "unsafe.toml")
        with open(gwtest.dual_cfg()) as f:
            text = f.read().replace('pmd_config = "../pmd_config/vdev-demo.toml"',
                                    f'pmd_config = "{gwtest.pmd_cfg()}"\nunsafe_volatile_sequence = true\n'
                                    f'state_dir = "/nonexistent/meshgate"')
        with open(cfg, "w") as f:
            f.write(text)
        r = self.run_mg("unsafe-key", config=cfg)
        self.assertEqual(r.rc, 0, r.describe())
        self.assertIn("WARNING: unsafe volatile sequence numbers", r.stderr)


if __name__ == "__main__":
    sys.exit(gwtest.main())
