#!/usr/bin/env bash
# Installs every Debian package that meshgate's build, tests, benchmarks and demo need.
# Idempotent: when everything is present it only runs one dpkg-query and exits.
set -euo pipefail

PKGS=(
  build-essential pkg-config meson ninja-build
  libdpdk-dev dpdk
  dpdk-dev                   # dpdk-dumpcap, dpdk-pdump, dpdk-telemetry.py: capture and telemetry (tests/capture)
  libipsec-mb-dev libsodium-dev
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  libfmt-dev libtomlplusplus-dev libcli11-dev nlohmann-json3-dev
  libpcap-dev libxxhash-dev libmnl-dev
  python3-scapy tshark iproute2 iputils-ping
  python3-prometheus-client prometheus help2man   # suite ctl: metrics parsers (promtool); man pages at build time
  bird2                      # suite routing: BGP and BFD over the tunnels' interfaces
  ethtool tcpdump            # ike/tests e2e lab: checksum offload off on veths, captures of the ESP on the wire
  clang libclang-rt-14-dev
  # ike/: charon and its peer for the tests; what scripts/strongswan-src.sh needs to configure strongSwan's source
  strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-standard-plugins
  dpkg-dev libcap-dev libgmp-dev libssl-dev libgcrypt20-dev
  # sd_notify (libsystemd); the service suite: systemd-analyze, and debhelper to build the .deb
  libsystemd-dev systemd debhelper
)

missing=()
for p in "${PKGS[@]}"; do
  st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$st" = "installed" ] || missing+=("$p")
done

# strongSwan's configured source for ike/kernel-meshgate (quick when present). Without it the plugin is not built
# (-Dike=auto), which is a warning here, not a failure.
strongswan_src() {
  "$(dirname "$0")/strongswan-src.sh" >/dev/null || echo "setup: strongSwan source unavailable, ike/kernel-meshgate will not be built" >&2
}

if [ ${#missing[@]} -eq 0 ]; then
  strongswan_src
  exit 0
fi

echo "setup: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# tshark asks whether non-root users may capture; answer once, non-interactively.
echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
strongswan_src
