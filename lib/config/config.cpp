// Error, SecretBytes and describe() of mg::config.
#include <algorithm>
#include <cstdio>
#include <string>

#include "config/config.h"
#include "config/reader.h"
#include "crypto/aead.h"

namespace mg::config {

namespace {

std::string ip_text(const net::IpAddr& a) {
  if (a.version == 0) return "-";
  char b[64];
  return net::format_ip(a, b, sizeof b);
}

std::string hex32(uint32_t v) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%08x", v);
  return b;
}

const char* df_text(net::DfPolicy d) noexcept {
  switch (d) {
    case net::DfPolicy::kCopy: return "copy";
    case net::DfPolicy::kSet: return "set";
    case net::DfPolicy::kClear: return "clear";
  }
  return "?";
}

// Never the key itself: only its length.
std::string sa_text(const SaSpec& s, bool inbound) {
  std::string o = "spi " + hex32(s.spi) + "  " + crypto::to_string(s.cipher) + "  engine " +
                  crypto::to_string(s.engine) + "  esn " + (s.esn ? "on" : "off");
  if (inbound) o += "  window " + std::to_string(s.replay_window);
  o += "  key <" + std::to_string(s.keymat.size()) + " bytes>";
  // As on the wire of this SA's packets: source port -> destination port.
  if (s.encap == net::Encap::kUdp)
    o += "  encap udp " + std::to_string(inbound ? s.udp_remote_port : s.udp_local_port) + " -> " +
         std::to_string(inbound ? s.udp_local_port : s.udp_remote_port);
  else
    o += "  encap none";
  return o;
}

const char* on_off(bool b) noexcept { return b ? "on" : "off"; }

// "liveness 20ms x3 hold 1000ms probes 192.0.2.1 -> 198.51.100.1", or "liveness off"; with reflect, the address
// whose echo requests this tunnel answers, since that is used even when the tunnel's own liveness is off.
std::string liveness_text(const LivenessGlobal& lg, const LivenessSettings& s) {
  std::string o = "liveness ";
  if (s.enabled) {
    o += std::to_string(s.interval_ms) + "ms x" + std::to_string(s.multiplier) + " hold " +
         std::to_string(s.hold_down_ms) + "ms ";
    o += s.probes ? "probes " + ip_text(s.probe_source) + " -> " + ip_text(s.probe_address)
                  : std::string("no probes (inbound traffic only)");
  } else {
    o += "off";
  }
  if (lg.reflect) o += "  reflects echo to " + ip_text(s.probe_source);
  return o;
}

// Device arguments may carry a secret (net_memif's secret=...): shown as <hidden>.
std::string devargs_text(const std::string& d) {
  std::string o;
  size_t i = 0;
  while (i < d.size()) {
    const size_t end = std::min(d.find(',', i), d.size());
    const std::string item = d.substr(i, end - i);
    if (i) o += ",";
    o += item.starts_with("secret=") ? std::string("secret=<hidden>") : item;
    i = end + 1;
  }
  return o;
}

}  // namespace

const char* to_string(Mode m) noexcept {
  switch (m) {
    case Mode::kActiveActive: return "active-active";
    case Mode::kActiveStandby: return "active-standby";
  }
  return "?";
}

SecretBytes& SecretBytes::operator=(SecretBytes&& o) noexcept {
  if (this != &o) {
    crypto::secure_wipe(bytes_.data(), bytes_.size());
    bytes_ = std::move(o.bytes_);
    o.bytes_.clear();
  }
  return *this;
}

SecretBytes::~SecretBytes() { crypto::secure_wipe(bytes_.data(), bytes_.size()); }

std::string Error::format() const {
  std::string o = file;
  if (line > 0) o.append(":").append(std::to_string(line));
  o += ": " + message + " [" + rule + "]";
  return o;
}

int tunnel_ip_version(const Gateway& g, const Tunnel& t) noexcept {
  if (t.instance >= g.instances.size() || t.device >= g.devices.size()) return 0;
  const Instance& i = g.instances[t.instance];
  const Device& d = g.devices[t.device];
  if (i.ipv4.version == 4 && d.ipv4.version == 4) return 4;
  if (i.ipv6.version == 6 && d.ipv6.version == 6) return 6;
  return 0;
}

namespace {

std::string mss_text(int32_t m) {
  return m < 0 ? std::string("auto") : m == 0 ? std::string("off") : std::to_string(m);
}

// A tunnel's MTU figures; the port's MTU from the pmd_config when given.
std::string mtu_text(const Gateway& g, const Tunnel& t, const PmdConfig* p) {
  uint32_t port_mtu = kDefaultPortMtu;
  std::string from = "tunnel";
  if (t.mtu == 0) {
    const std::string port = t.instance < g.instances.size() ? g.instances[t.instance].port : "";
    const PortSpec* ps = nullptr;
    for (size_t i = 0; p && i < p->ports.size(); ++i)
      if (p->ports[i].name == port) ps = &p->ports[i];
    if (ps && ps->mtu) port_mtu = ps->mtu;
    from = "port " + port + (ps && ps->mtu ? "" : ", device default assumed");
  }
  const TunnelMtu m = tunnel_mtu(g, t, port_mtu);
  std::string o = "mtu " + std::to_string(m.link) + " (" + from + ")  inner path MTU " + std::to_string(m.path) +
                  "  mss clamp " + (t.mss_clamp == 0 ? std::string("off") : "v4 " + std::to_string(m.mss4) + " v6 " +
                                                                                  std::to_string(m.mss6)) +
                  "  icmp source";
  for (int ver : {4, 6}) {
    const net::IpAddr a = icmp_source(g, t, ver);
    o += ' ';  // appended piecewise: GCC 12 warns (-Wrestrict, a false positive) on " " + (x ? a : b + c)
    if (a.version) o += ip_text(a);
    else o += "none (v" + std::to_string(ver) + ")";
  }
  return o;
}

}  // namespace

std::string describe(const Gateway& g, const PmdConfig* pmd) {
  std::string o;
  o += "gateway " + g.name + "  mode " + to_string(g.mode) + "  (" + g.source + ")\n";
  o += "pmd_config " + (g.pmd_config.empty() ? std::string("(none: give one on the command line)") : g.pmd_config) + "\n";
  if (g.unsafe_volatile_sequence) o += "state_dir (none: unsafe_volatile_sequence, sequence numbers restart at 1)\n";
  else if (!g.state_dir.empty()) o += "state_dir " + g.state_dir + "\n";
  o += "inside port " + g.inside_port + "  next hop " + detail::format_mac(g.inside_mac) + "\n";
  o += "  prefixes routed into the tunnels:";
  for (const Prefix& p : g.inside_prefixes) o.append(" ").append(ip_text(p.addr)).append("/").append(std::to_string(p.len));
  o += " (every tunnel)\n";
  for (const RouteCfg& rc : g.routes) {
    o += "  route";
    for (const Prefix& p : rc.prefixes) o.append(" ").append(ip_text(p.addr)).append("/").append(std::to_string(p.len));
    o += " via";
    for (uint32_t t : rc.tunnels) o += " " + g.tunnels[t].name;
    o += "\n";
  }
  if (g.routing.kernel_table != 0)
    o += "  routes learned from kernel table " + std::to_string(g.routing.kernel_table) + " (through the tunnels' "
         "interfaces), at most one update per " + std::to_string(g.routing.update_interval_ms) + " ms\n";
  if (g.routing.announce_table != 0)
    o += "  routes announced in kernel table " + std::to_string(g.routing.announce_table) +
         " (each prefix while a tunnel of its set takes new flows)\n";
  char seed[32];
  std::snprintf(seed, sizeof seed, "0x%llx", static_cast<unsigned long long>(g.flow.seed));
  o += std::string("flow seed ") + seed + "  table " + std::to_string(g.flow.table_size) + "  pin idle " +
       std::to_string(g.flow.pin_idle_timeout_ms) + " ms  pin capacity " + std::to_string(g.flow.pin_capacity) +
       " per worker\n";
  const size_t live = size_t(std::count_if(g.tunnels.begin(), g.tunnels.end(),
                                            [](const Tunnel& t) { return t.liveness.enabled; }));
  if (g.liveness.present || live != 0)
    o += "liveness on " + std::to_string(live) + " of " + std::to_string(g.tunnels.size()) + " tunnels  damping " +
         on_off(g.liveness.damping) + "  monitor " + (g.liveness.monitor ? "on (report only, no tunnel taken out)" : "off") +
         "  reflect " + on_off(g.liveness.reflect) + (g.liveness.present ? "" : "  (no [liveness] table)") + "\n";
  else
    o += "liveness off (no [liveness] table)\n";
  o += "mtu  mss clamp " + mss_text(g.mtu.mss_clamp) + "  too-big ICMP " + std::to_string(g.mtu.icmp_rate) +
       "/s burst " + std::to_string(g.mtu.icmp_burst) + " per worker  inside address ipv4 " + ip_text(g.inside_ipv4) +
       " ipv6 " + ip_text(g.inside_ipv6) + (g.mtu.line ? "" : "  (no [mtu] table)") + "\n";
  o += "instances (" + std::to_string(g.instances.size()) + "):\n";
  for (const Instance& i : g.instances) {
    o += "  " + i.name + "  ipv4 " + ip_text(i.ipv4) + "  ipv6 " + ip_text(i.ipv6) + "  port " + i.port;
    if (g.mode == Mode::kActiveStandby) o += i.standby ? "  standby" : "  active";
    o += "\n";
  }
  o += "devices (" + std::to_string(g.devices.size()) + "):\n";
  for (const Device& d : g.devices) {
    o += "  " + d.name + "  ipv4 " + ip_text(d.ipv4) + "  ipv6 " + ip_text(d.ipv6) + "  next hop " +
         detail::format_mac(d.mac);
    if (d.probe_address.version != 0) o += "  probe address " + ip_text(d.probe_address);
    o += "\n";
  }
  o += "tunnels (" + std::to_string(g.tunnels.size()) + "):\n";
  for (const Tunnel& t : g.tunnels) {
    const std::string inst = t.instance < g.instances.size() ? g.instances[t.instance].name : "?";
    const std::string dev = t.device < g.devices.size() ? g.devices[t.device].name : "?";
    o += "  " + t.name + "  " + inst + " <-> " + dev + "  IPv" + std::to_string(tunnel_ip_version(g, t)) +
         "  weight " + std::to_string(t.weight) + "  ttl " + std::to_string(t.ttl) + "  df " + df_text(t.df) +
         "  dscp " + (t.dscp_policy == net::DscpPolicy::kCopy ? std::string("copy") : std::to_string(t.tos >> 2)) +
         "\n";
    if (t.ike) {
      o += "    keyed by IKE ";
      o += t.if_id ? "(if_id " + std::to_string(t.if_id) + ")" : std::string("(by its addresses)");
      o += ": SAs installed through the keying socket\n";
    } else {
      o += "    out " + sa_text(t.out, false) + "\n";
      o += "    in  " + sa_text(t.in, true) + "\n";
    }
    o += "    " + liveness_text(g.liveness, t.liveness) + "\n";
    o += "    " + mtu_text(g, t, pmd) + "\n";
    if (!t.interface.empty())
      o += "    interface " + t.interface + "  " + ip_text(t.liveness.probe_source) + " peer " +
           ip_text(t.liveness.probe_address) + "  up to " + std::to_string(t.interface_pps) + " pps per worker" +
           (t.announce_table ? "  device prefixes in table " + std::to_string(t.announce_table) : std::string()) +
           "\n";
  }
  return o;
}

std::string describe(const PmdConfig& p) {
  std::string o = "pmd_config " + p.source + "\n";
  o += "eal";
  for (const std::string& a : p.eal_args) o += " " + a;
  o += "\nworkers lcores";
  for (unsigned l : p.worker_lcores) o.append(" ").append(std::to_string(l));
  o += "  mbufs " + std::to_string(p.mbufs) + "\n";
  o += "ports (" + std::to_string(p.ports.size()) + "):\n";
  for (const PortSpec& s : p.ports) {
    o += "  " + s.name + "  " + (s.vdev ? "vdev " : "pci ") + devargs_text(s.devargs) + "\n";
    if (!s.host.empty())
      o += "    exception path: kernel twin " + s.host + ", at most " + std::to_string(s.host_pps) +
           " frames/s per worker to it\n";
    if (s.is_host) {
      o += "    kernel twin (exception path): 1 RX / 1 TX queue, main lcore only  rx_desc " + std::to_string(s.rx_desc) +
           "  tx_desc " + std::to_string(s.tx_desc) + "\n";
      continue;
    }
    o += "    rxq " + (s.rx_queues ? std::to_string(s.rx_queues) : std::string("per-worker")) + "  txq " +
         (s.tx_queues ? std::to_string(s.tx_queues) : std::string("per-worker")) + "  rx_desc " +
         std::to_string(s.rx_desc) + "  tx_desc " + std::to_string(s.tx_desc) + "  rss " + (s.rss ? "on" : "off") +
         "  ipv4 cksum offload " + (s.ipv4_cksum_offload ? "on" : "off") + "  mtu " +
         (s.mtu ? std::to_string(s.mtu) : std::string("default")) + "\n";
  }
  return o;
}

}  // namespace mg::config
