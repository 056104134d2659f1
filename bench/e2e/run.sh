#!/usr/bin/env bash
# End-to-end benchmark of meshgate (see bench/README.md, "End-to-end"):
#   meshgate outbound with the inside port on net_pcap infinite_rx=1 and the instance ports on net_null, for
#   64, 512, 1420 B inner IPv4 packets and IMIX, 1 and 2 workers, 1 and 4 tunnels, each point repeated;
#   in the same run plain forwarding through the same vdevs (bench/e2e/fwd.cpp) and the raw AEAD seal of
#   bench/esp/esp_bench, and meshgate's rate as a share of the harness limit 1 / (t_forward + t_aead).
#
#   bench/e2e/run.sh                 full run: 10 s measured per point, 3 repeats (about 13 minutes)
#   bench/e2e/run.sh --quick         smoke test: 2 s per point, 1 repeat (about 2 minutes)
#   options: --duration S  --repeats N  --sizes "64 512 1420 imix"  --build DIR (default build-e2e)
#            --out DIR (default bench/e2e/results/<UTC time>)  --no-build
#
# Measurement: meshgate runs for warmup + S seconds with two no-op events (`--event T:tunnel:<first>:up` on a
# tunnel that is already up) at T = warmup and T = warmup + S; each event stores a snapshot of the counters
# (workers' outside_tx, elapsed_s) in --stats-json. Rate = difference of outside_tx / difference of elapsed_s,
# so start-up and the first second are not measured. The final port statistics (out-* opackets) are checked
# against the final outside_tx. e2e_fwd measures the same way (snapshots of port stats after the warmup).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
duration=10 repeats=3 warmup=1 build="$root/build-e2e" out="" do_build=1
sizes="64 512 1420 imix"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) duration=2 repeats=1 ;;
    --duration) duration=$2; shift ;;
    --repeats) repeats=$2; shift ;;
    --sizes) sizes=$2; shift ;;
    --build) build=$(realpath -m "$2"); shift ;;
    --out) out=$(realpath -m "$2"); shift ;;
    --no-build) do_build=0 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$out" ] || out="$here/results/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out/raw"
tag="e2e$$"
# EAL runtime directories of this run's --file-prefix (root: /var/run/dpdk, others: $XDG_RUNTIME_DIR or /tmp).
cleanup() {
  local d
  for d in /var/run/dpdk "${XDG_RUNTIME_DIR:-/tmp}/dpdk" /tmp/dpdk; do rm -rf "$d/$tag-fwd" "$d/$tag-mg" 2>/dev/null; done
  return 0
}
trap cleanup EXIT

if [ "$do_build" = 1 ]; then
  if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" "$root" >"$out/meson-setup.log" 2>&1 || { cat "$out/meson-setup.log"; exit 1; }
  elif [ ! -f "$build/bench/e2e/e2e_fwd" ]; then
    meson setup --reconfigure "$build" "$root" >"$out/meson-setup.log" 2>&1 || true
  fi
  ninja -C "$build" apps/meshgate/meshgate bench/esp/esp_bench bench/e2e/e2e_fwd >"$out/ninja.log" 2>&1 \
    || { tail -30 "$out/ninja.log"; exit 1; }
fi
mg="$build/apps/meshgate/meshgate" fwd="$build/bench/e2e/e2e_fwd" esp="$build/bench/esp/esp_bench"
for b in "$mg" "$fwd" "$esp"; do [ -x "$b" ] || { echo "run.sh: $b missing (build first)" >&2; exit 1; }; done

load() { cut -d' ' -f1-3 /proc/loadavg; }
log() { echo "[$(date -u +%H:%M:%S) load $(load)] $*" | tee -a "$out/run.log"; }

# Inputs: one pcap per size (4096 packets over 1024 flows), the 1-tunnel and 4-tunnel configs.
for s in $sizes; do python3 "$here/mkpcap.py" "$out/in-$s.pcap" "$s" --packets 4096 --flows 1024; done
# One tunnel: gateway-single.toml without its second tunnel (instance gw-b stays, without tunnels, so the
# active-active rule of two instances still holds).
python3 - "$root/configs/gateway-single.toml" "$out/gw-1t.toml" <<'PY'
import sys
src = open(sys.argv[1]).read()
cut = src.index('[[tunnel]]\nname = "b-1"')
open(sys.argv[2], "w").write(src[:cut])
PY
cp "$root/configs/gateway-dual.toml" "$out/gw-4t.toml"
declare -A first_tunnel=([1]=a-1 [4]=a-1)
declare -A pmd=([1]="$root/pmd_config/vdev-bench.toml" [2]="$root/pmd_config/vdev-bench-2w.toml")

{
  echo "date_utc: $(date -u '+%Y-%m-%d %H:%M:%S')"
  echo "commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) CPUs"
  echo "duration_s: $duration"
  echo "warmup_s: $warmup"
  echo "repeats: $repeats"
  echo "sizes: $sizes"
  echo "load_start: $(load)"
} >"$out/meta.txt"
log "start: $(tr '\n' ';' <"$out/meta.txt")"

run_fwd() {  # size rep
  local s=$1 r=$2 j="$out/raw/fwd-$1-r$2.json"
  "$fwd" --no-huge -m 2048 --no-pci -l 0-1 --file-prefix "$tag-fwd" --log-level=error \
    --vdev="net_pcap0,rx_pcap=$out/in-$s.pcap,infinite_rx=1" --vdev=net_null0,no-rx=1 \
    -- --duration "$duration" --warmup "$warmup" --json "$j" >>"$out/fwd.log" 2>&1 \
    || { log "fwd $s r$r FAILED (see fwd.log)"; return 0; }
  python3 - "$j" "$(load)" <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); j["load"] = sys.argv[2]; json.dump(j, open(sys.argv[1], "w"))
PY
  log "fwd size=$s r$r: $(python3 -c "import json;print('%.2f Mpps' % (json.load(open('$j'))['pps']/1e6))")"
}

run_mg() {  # size workers tunnels rep
  local s=$1 w=$2 t=$3 r=$4 j="$out/raw/mg-$1-w$2-t$3-r$4.json"
  local t1=$warmup t2; t2=$(python3 -c "print($warmup + $duration)")
  MESHGATE_INSIDE_PCAP="$out/in-$s.pcap" "$mg" -c "$out/gw-${t}t.toml" --pmd "${pmd[$w]}" -q \
    --duration "$t2" --event "$t1:tunnel:${first_tunnel[$t]}:up" --event "$t2:tunnel:${first_tunnel[$t]}:up" \
    --stats-json "$j" --control-name "$tag-mg" --eal=--file-prefix="$tag-mg" --eal=--log-level=error >>"$out/meshgate.log" 2>&1 \
    || { log "meshgate $s w$w t$t r$r FAILED (see meshgate.log)"; rm -f "$j"; return 0; }
  python3 - "$j" "$(load)" <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); j["load"] = sys.argv[2]; json.dump(j, open(sys.argv[1], "w"))
PY
  log "meshgate size=$s workers=$w tunnels=$t r$r: $(python3 "$here/summarize.py" --one "$j")"
}

# Repeats outermost, so that a noisy minute of this shared machine hits one repeat of every point rather than
# every repeat of one point.
for r in $(seq 1 "$repeats"); do
  for s in $sizes; do
    run_fwd "$s" "$r"
    for w in 1 2; do
      for t in 1 4; do run_mg "$s" "$w" "$t" "$r"; done
    done
  done
done

# Raw AEAD (and encap, for reference) on CPU 1, where the 1-worker runs have their worker.
log "esp_bench: seal + encap, aes-gcm-128/ipsecmb"
taskset -c 1 "$esp" --benchmark_filter='^(seal|encap)/aes-gcm-128/ipsecmb/' --benchmark_repetitions=3 \
  --benchmark_report_aggregates_only=true --benchmark_format=json >"$out/esp.json" 2>>"$out/esp.log" \
  || log "esp_bench FAILED (see esp.log)"
echo "load_end: $(load)" >>"$out/meta.txt"
log "done"
python3 "$here/summarize.py" "$out" | tee "$out/table.md"
echo "results: $out (results.json, table.md, raw/)"
