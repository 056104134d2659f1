#include "dataplane/sa_config.h"

namespace mg::dp {

namespace {

const net::IpAddr& pick(const net::IpAddr& v4, const net::IpAddr& v6, int version) noexcept {
  return version == 4 ? v4 : v6;
}

esp::SaConfig sa_config(const config::Gateway& g, const config::Tunnel& t, const config::SaSpec& s, bool inbound) {
  esp::SaConfig c;
  c.spi = s.spi;
  c.cipher = s.cipher;
  c.engine = s.engine;
  c.keymat.reserve(s.keymat.size());
  c.keymat.assign(s.keymat.bytes().begin(), s.keymat.bytes().end());
  c.esn = s.esn;
  c.replay_window = s.replay_window;
  const int v = config::tunnel_ip_version(g, t);
  if (v != 0 && t.instance < g.instances.size() && t.device < g.devices.size()) {
    const config::Instance& in = g.instances[t.instance];
    const config::Device& d = g.devices[t.device];
    const net::IpAddr& local = pick(in.ipv4, in.ipv6, v);
    const net::IpAddr& remote = pick(d.ipv4, d.ipv6, v);
    c.outer_src = inbound ? remote : local;
    c.outer_dst = inbound ? local : remote;
  }
  c.ttl = t.ttl;
  c.dscp_policy = t.dscp_policy;
  c.tos = t.tos;
  c.df = t.df;
  c.encap = s.encap;
  c.udp_sport = inbound ? s.udp_remote_port : s.udp_local_port;
  c.udp_dport = inbound ? s.udp_local_port : s.udp_remote_port;
  const config::Tunnel* base = g.tunnels.data();
  c.user_id = (&t >= base && &t < base + g.tunnels.size()) ? uint32_t(&t - base) : 0;
  return c;
}

}  // namespace

esp::SaConfig outbound_sa(const config::Gateway& g, const config::Tunnel& t) { return sa_config(g, t, t.out, false); }
esp::SaConfig inbound_sa(const config::Gateway& g, const config::Tunnel& t) { return sa_config(g, t, t.in, true); }

}  // namespace mg::dp
