// [mtu], the MTU keys of [[tunnel]] and [inside]'s own addresses (docs/ARCHITECTURE.md "MTU and fragments"), and the figures
// derived from them: link and path MTU, MSS clamp and ICMP source per tunnel.
#include <algorithm>
#include <string>

#include "config/config.h"
#include "config/gateway_internal.h"
#include "crypto/aead.h"
#include "net/mtu.h"

namespace mg::config {

namespace detail {

namespace {

constexpr int64_t kMssMin = 536;   // RFC 879: the IPv4 default, the least any host must take
constexpr int64_t kMssMax = int64_t(net::kMaxLinkMtu) - 40;

// "auto", true (= auto), an MSS, or 0 / false (off).
std::optional<int32_t> read_mss_clamp(Reader& r, Sink& sink) {
  const toml::node* n = r.get("mss_clamp");
  if (n == nullptr) return std::nullopt;
  if (n->is_string() && n->as_string()->get() == "auto") return -1;
  if (n->is_boolean()) return n->as_boolean()->get() ? -1 : 0;
  if (n->is_integer()) {
    const int64_t v = n->as_integer()->get();
    if (v == 0) return 0;
    if (v >= kMssMin && v <= kMssMax) return int32_t(v);
  }
  sink.add(line_of(*n), "mss-clamp",
           r.where() + " `mss_clamp` must be \"auto\" (from the tunnel's path MTU), an MSS in " +
               std::to_string(kMssMin) + ".." + std::to_string(kMssMax) + ", or 0 / false (off)");
  return std::nullopt;
}

}  // namespace

void read_mtu_global(Reader& top, Sink& sink, MtuSettings* m) {
  const toml::table* t = top.subtable("mtu");
  if (t == nullptr) return;
  Reader r(sink, *t, "[mtu]");
  m->line = r.line();
  if (const auto v = read_mss_clamp(r, sink)) m->mss_clamp = *v;
  if (const auto v = r.ranged("icmp_rate", 0, 1000000, "icmp-rate")) m->icmp_rate = uint32_t(*v);
  if (const auto v = r.ranged("icmp_burst", 1, 100000, "icmp-rate")) m->icmp_burst = uint32_t(*v);
  r.finish();
}

TunnelMtuKeys read_tunnel_mtu(Reader& r, Sink& sink, Tunnel* t) {
  TunnelMtuKeys k;
  if (const auto v = r.ranged("mtu", 576, net::kMaxLinkMtu, "tunnel-mtu")) {
    t->mtu = uint32_t(*v);
    k.mtu_line = r.line("mtu");
  }
  k.mss_clamp = read_mss_clamp(r, sink);
  return k;
}

void read_inside_addresses(Reader& r, Sink& sink, Gateway* g) {
  read_ips(r, sink, &g->inside_ipv4, &g->inside_ipv6, "inside-address", "the source of ICMP errors");
  if (const auto v = r.ranged("ipv4_prefix_len", 1, 32, "prefix")) g->inside_ipv4_prefix_len = uint8_t(*v);
  if (const auto v = r.ranged("ipv6_prefix_len", 1, 128, "prefix")) g->inside_ipv6_prefix_len = uint8_t(*v);
}

void resolve_mtu(Gateway& g, const std::vector<TunnelMtuKeys>& keys, Sink& sink) {
  for (size_t i = 0; i < g.tunnels.size() && i < keys.size(); ++i) {
    Tunnel& t = g.tunnels[i];
    t.mss_clamp = keys[i].mss_clamp.value_or(g.mtu.mss_clamp);
    const int ver = tunnel_ip_version(g, t);
    if (t.mtu == 0 || ver == 0) continue;
    const bool udp = t.out.encap == net::Encap::kUdp;
    const uint32_t lo = min_tunnel_mtu(ver == 6, udp);
    if (t.mtu < lo)
      sink.add(keys[i].mtu_line, "tunnel-mtu",
               "tunnel \"" + t.name + "\" `mtu` = " + std::to_string(t.mtu) + " is below " + std::to_string(lo) +
                   ": over IPv" + std::to_string(ver) + (udp ? " in UDP" : "") +
                   " a 1280-byte IPv6 packet (the IPv6 minimum MTU) must fit once encrypted");
  }
}

void cross_check_mtu(const Gateway& g, const PmdConfig& p, Sink& sink) {
  for (const Tunnel& t : g.tunnels) {
    if (t.mtu == 0 || t.instance >= g.instances.size()) continue;
    for (const PortSpec& s : p.ports)
      if (s.name == g.instances[t.instance].port && s.mtu != 0 && t.mtu > s.mtu)
        sink.add(t.line, "tunnel-mtu",
                 "tunnel \"" + t.name + "\" `mtu` = " + std::to_string(t.mtu) + " exceeds the MTU of its port \"" +
                     s.name + "\" (" + std::to_string(s.mtu) + " in " + p.source + ")");
  }
}

}  // namespace detail

uint32_t min_tunnel_mtu(bool outer_v6, bool udp_encap) noexcept {
  uint32_t m = net::kIpv6MinMtu;
  while (net::esp_inner_mtu(m, outer_v6, crypto::kIvLen, crypto::kIcvLen, udp_encap) < net::kIpv6MinMtu) ++m;
  return m;
}

TunnelMtu tunnel_mtu(const Gateway& g, const Tunnel& t, uint32_t port_mtu) noexcept {
  TunnelMtu r;
  r.link = t.mtu ? t.mtu : port_mtu;
  // Every cipher here has an 8-byte IV and a 16-byte ICV (RFC 4106, RFC 7634), so the overhead is the cipher's
  // only through these constants.
  r.path = net::esp_inner_mtu(r.link, tunnel_ip_version(g, t) == 6, crypto::kIvLen, crypto::kIcvLen,
                              t.out.encap == net::Encap::kUdp);
  if (t.mss_clamp != 0) {
    r.mss4 = net::mss_for_mtu(r.path, false);
    r.mss6 = net::mss_for_mtu(r.path, true);
    if (t.mss_clamp > 0) {
      r.mss4 = std::min<uint16_t>(r.mss4, uint16_t(t.mss_clamp));
      r.mss6 = std::min<uint16_t>(r.mss6, uint16_t(t.mss_clamp));
    }
  }
  return r;
}

net::IpAddr icmp_source(const Gateway& g, const Tunnel& t, int ver) noexcept {
  const net::IpAddr& inside = ver == 4 ? g.inside_ipv4 : g.inside_ipv6;
  if (inside.version == ver) return inside;
  if (t.liveness.probe_source.version == ver) return t.liveness.probe_source;
  if (t.instance < g.instances.size()) {
    const Instance& i = g.instances[t.instance];
    const net::IpAddr& a = ver == 4 ? i.ipv4 : i.ipv6;
    if (a.version == ver) return a;
  }
  return net::IpAddr{};
}

}  // namespace mg::config
