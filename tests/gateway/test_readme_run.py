#!/usr/bin/python3
"""README "Running the gateway", as an operator would follow it: scripts/make_pcaps.py makes the captures, its
printed exports are the environment, and meshgate runs configs/gateway-dual.toml (pmd_config/vdev-demo.toml) with
the README's options. Checked: the exports name files that exist; meshgate exits 0 with every mbuf back; it read
every inside packet and accounted for each (sent into a tunnel or dropped with a reason; here every one is
sent, since all four tunnels are up); each instance's port carried ESP with only that instance's outbound SPIs;
every inbound ESP packet the captures hold was decrypted and delivered on the inside port.

usage: test_readme_run.py --meshgate PATH --source-root DIR      exit 0 ok, 1 failed, 77 skipped (no scapy)
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import tomllib


def pcap_frames(path):
    """Frames of a classic pcap file (the format net_pcap and scapy write)."""
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    end = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    off, out = 24, []
    while off + 16 <= len(data):
        incl = struct.unpack(end + "I", data[off + 8:off + 12])[0]
        out.append(data[off + 16:off + 16 + incl])
        off += 16 + incl
    return out


def esp_spi(frame):
    """The SPI of an Ethernet + IPv4/IPv6 + ESP frame, else None."""
    eth = struct.unpack("!H", frame[12:14])[0]
    if eth == 0x0800 and frame[14 + 9] == 50:
        ihl = (frame[14] & 15) * 4
        return struct.unpack("!I", frame[14 + ihl:14 + ihl + 4])[0]
    if eth == 0x86DD and frame[14 + 6] == 50:
        return struct.unpack("!I", frame[54:58])[0]
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--meshgate", required=True)
    ap.add_argument("--source-root", required=True)
    a = ap.parse_args()
    if subprocess.run(["/usr/bin/python3", "-c", "import scapy"], capture_output=True).returncode != 0:
        print("SKIP: /usr/bin/python3 has no scapy (Debian's python3-scapy)")
        return 77
    config = os.path.join(a.source_root, "configs", "gateway-dual.toml")
    cfg = tomllib.load(open(config, "rb"))
    work = tempfile.mkdtemp(prefix="mg-readme-run.")
    failures = []

    def check(ok, what):
        print(("ok   " if ok else "FAIL ") + what)
        if not ok:
            failures.append(what)

    try:
        flows, per_flow, per_tunnel = 300, 4, 25
        p = subprocess.run(["/usr/bin/python3", os.path.join(a.source_root, "scripts", "make_pcaps.py"), work,
                            "--flows", str(flows), "--packets", str(per_flow), "--per-tunnel", str(per_tunnel)],
                           capture_output=True, text=True, timeout=300)
        check(p.returncode == 0, f"make_pcaps.py exit {p.returncode}" + (f": {p.stderr[-300:]}" if p.returncode else ""))
        env = dict(os.environ, STATE_DIRECTORY=os.path.join(work, "state"))
        for line in p.stdout.splitlines():
            assert line.startswith("export "), line
            for item in line[len("export "):].split():
                k, v = item.split("=", 1)
                env[k] = v
        need = ("MESHGATE_INSIDE_PCAP", "MESHGATE_OUT", "MESHGATE_OUT_A_RX", "MESHGATE_OUT_B_RX")
        check(all(k in env and os.path.exists(env[k]) for k in need), f"exports name existing files: {need}")
        stats_path = os.path.join(work, "stats.json")
        prefix = f"mg-readme-{os.getpid()}"
        cmd = [a.meshgate, "-c", config, "--stats-interval", "1", "--exit-when-idle-ms", "500",
               "--stats-json", stats_path, f"--eal=--file-prefix={prefix}"]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)
        check(r.returncode == 0, f"meshgate exit {r.returncode}" + (f": {r.stderr[-600:]}" if r.returncode else ""))
        if r.returncode != 0 or not os.path.exists(stats_path):
            return 1
        s = json.load(open(stats_path))
        n_in = flows * per_flow
        check(s["inside_rx"] == n_in, f"inside_rx {s['inside_rx']} == {n_in} packets in in.pcap")
        sent = sum(t["packets_out"] for t in s["tunnels"])
        drops = {k: v for k, v in s["drops"].items() if v}
        check(s["inside_rx"] == sent + sum(drops.values()), f"inside_rx = sent {sent} + drops {drops}")
        check(sent == n_in, f"every inside packet went into a tunnel (sent {sent}, drops {drops})")
        check(s["mbufs_in_use_at_exit"] == 0, f"mbufs in use at exit {s['mbufs_in_use_at_exit']}")
        out_spis = {}
        for t in cfg["tunnel"]:
            out_spis.setdefault(t["instance"], set()).add(t["out"]["spi"])
        ports = {"out-a": cfg["instance"][0]["name"], "out-b": cfg["instance"][1]["name"]}
        esp_total = 0
        for port, inst in ports.items():
            frames = pcap_frames(os.path.join(env["MESHGATE_OUT"], f"{port}.pcap"))
            spis = [esp_spi(f) for f in frames]
            esp_total += sum(1 for x in spis if x is not None)
            check(spis and set(spis) <= out_spis[inst],
                  f"{port}: {len(frames)} frames, all ESP of {inst}'s outbound SAs {sorted(out_spis[inst])}")
        check(esp_total == sent, f"ESP frames on the outside ports {esp_total} == packets sent {sent}")
        n_rx = per_tunnel * len(cfg["tunnel"])
        inside_out = pcap_frames(os.path.join(env["MESHGATE_OUT"], "inside.pcap"))
        check(s["inside_tx"] == n_rx and len(inside_out) == n_rx,
              f"inbound: {n_rx} ESP packets in the captures, inside_tx {s['inside_tx']}, inside.pcap {len(inside_out)}")
        names = [t["name"] for t in cfg["tunnel"]]
        check(all(n in r.stdout for n in names), f"the counters table on stdout names every tunnel {names}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{len(failures)} failed" if failures else "all ok")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
