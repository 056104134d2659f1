#!/usr/bin/env bash
# meshgate's main job on an embedded default, no NIC needed. Until the gateway data plane lands this runs
# the ESP engine end to end: a capture of mixed inner traffic is encrypted with meshgate-esp (AES-GCM-128
# and ChaCha20-Poly1305, outer IPv4 and IPv6), decoded by tshark with the same SA, decrypted back, and
# compared byte for byte with the original.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
BUILD=${BUILD:-build}
[ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" >/dev/null
ninja -C "$BUILD" apps/meshgate-esp/meshgate-esp >/dev/null
TOOL=$BUILD/apps/meshgate-esp/meshgate-esp
work=$(mktemp -d /tmp/meshgate-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT

/usr/bin/python3 - "$work/inner.pcap" <<'PY'
import logging, sys
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.all import Ether, IP, IPv6, UDP, TCP, ICMP, Raw, wrpcap
pk = []
for i in range(2000):
    size = (64, 200, 512, 1200, 1400)[i % 5]
    e = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    if i % 3 == 0:
        p = e / IPv6(src="2001:db8:a::%x" % (i % 250 + 1), dst="2001:db8:b::1") / TCP(sport=1024 + i, dport=443)
    elif i % 3 == 1:
        p = e / IP(src="10.0.%d.%d" % (i // 250, i % 250 + 1), dst="10.128.0.1") / UDP(sport=1024 + i, dport=53)
    else:
        p = e / IP(src="10.1.0.%d" % (i % 250 + 1), dst="10.128.0.2") / ICMP(id=i)
    pk.append(p / Raw(bytes(max(0, size - len(p)))))
wrpcap(sys.argv[1], pk)
print(f"demo: {len(pk)} inner packets (IPv4/IPv6, TCP/UDP/ICMP, 64-1400 B) -> {sys.argv[1]}")
PY

run() {  # cipher outer-src outer-dst key
  local cipher=$1 src=$2 dst=$3 key=$4
  local spec="spi=0x1001,cipher=$cipher,key=$key,src=$src,dst=$dst"
  echo
  echo "== $cipher, outer $src -> $dst"
  "$TOOL" encrypt --sa "$spec" "$work/inner.pcap" "$work/esp.pcap"
  if [ "$cipher" = aes-gcm-128 ] && command -v tshark >/dev/null; then
    local proto=IPv4; [[ $src == *:* ]] && proto=IPv6
    local n
    n=$(tshark -n -r "$work/esp.pcap" -o esp.enable_encryption_decode:TRUE \
      -o "uat:esp_sa:\"$proto\",\"$src\",\"$dst\",\"0x00001001\",\"AES-GCM with 16 octet ICV [RFC4106]\",\"0x$key\",\"NULL\",\"\"" \
      -Y 'udp || tcp || icmp' 2>/dev/null | wc -l)
    echo "tshark (independent decoder) decrypted $n inner packets"
  fi
  "$TOOL" decrypt --sa "$spec" "$work/esp.pcap" "$work/back.pcap"
  /usr/bin/python3 - "$work/inner.pcap" "$work/back.pcap" <<'PY'
import logging, sys
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.all import rdpcap, raw
a = [raw(p.payload) for p in rdpcap(sys.argv[1])]
b = [raw(p.payload) for p in rdpcap(sys.argv[2])]
same = sum(x == y for x, y in zip(a, b))
print(f"round trip: {same}/{len(a)} inner packets identical byte for byte")
sys.exit(0 if same == len(a) == len(b) else 1)
PY
}

run aes-gcm-128 192.0.2.1 198.51.100.7 000102030405060708090a0b0c0d0e0fcafebabe
run chacha20-poly1305 2001:db8:1::1 2001:db8:2::7 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1fdeadbeef
echo
echo "demo: done. Throughput: $BUILD/bench/esp/esp_bench (see bench/README.md)."
