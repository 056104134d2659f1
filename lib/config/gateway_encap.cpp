// NAT traversal keys (RFC 3948 ESP in UDP): `encap`, `udp_local_port` and `udp_remote_port` of a [[tunnel]], for both
// its SAs, and of [tunnel.out] / [tunnel.in], for that SA alone; the SA's own key wins.
#include <string>

#include "config/gateway_internal.h"

namespace mg::config::detail {

namespace {

constexpr const char* kPortKeys[2] = {"udp_local_port", "udp_remote_port"};

}  // namespace

EncapKeys read_encap(Reader& r, Sink& sink) {
  EncapKeys k;
  if (const auto e = r.str("encap")) {
    if (*e == "udp") k.encap = net::Encap::kUdp;
    else if (*e == "none") k.encap = net::Encap::kNone;
    else sink.add(r.line("encap"), "encap", r.where() + " `encap` = \"" + *e + "\" is not \"none\" or \"udp\"");
  }
  for (int i = 0; i < 2; ++i) {
    const toml::node* n = r.table().get(kPortKeys[i]);
    if (n == nullptr) continue;
    k.port_line[i] = r.line(kPortKeys[i]);
    const auto v = r.integer(kPortKeys[i]);
    if (!v) continue;
    if (*v < 1 || *v > 65535 || *v == net::kIkePort)
      sink.add(k.port_line[i], "udp-port",
               r.where() + " `" + kPortKeys[i] + "` = " + std::to_string(*v) +
                   " must be a UDP port 1..65535 other than 500 (a receiver takes UDP to 500 for IKE)");
    else
      k.port[i] = uint16_t(*v);
  }
  k.where = r.where();
  return k;
}

void resolve_encap(const EncapKeys& tunnel, const EncapKeys& out_keys, const EncapKeys& in_keys, bool sas,
                   Tunnel* t, Sink& sink) {
  bool any_udp = false;
  for (int d = 0; d < 2 && sas; ++d) {
    const EncapKeys& k = d == 0 ? out_keys : in_keys;
    SaSpec& s = d == 0 ? t->out : t->in;
    s.encap = k.encap.value_or(tunnel.encap.value_or(net::Encap::kNone));
    s.udp_local_port = k.port[0].value_or(tunnel.port[0].value_or(net::kNatTPort));
    s.udp_remote_port = k.port[1].value_or(tunnel.port[1].value_or(net::kNatTPort));
    const bool udp = s.encap == net::Encap::kUdp;
    any_udp |= udp;
    for (int i = 0; i < 2 && !udp; ++i)
      if (k.port_line[i])
        sink.add(k.port_line[i], "udp-port",
                 k.where + " `" + kPortKeys[i] + "` applies only to ESP in UDP; this SA has encap = \"none\" "
                 "(set encap = \"udp\" here or in its [[tunnel]])");
  }
  if (!sas) any_udp = tunnel.encap == net::Encap::kUdp;
  for (int i = 0; i < 2 && !any_udp; ++i)
    if (tunnel.port_line[i])
      sink.add(tunnel.port_line[i], "udp-port",
               tunnel.where + " `" + kPortKeys[i] + "` applies only to ESP in UDP, and neither SA of this tunnel "
               "has encap = \"udp\"");
}

}  // namespace mg::config::detail
