// [[tunnel]] `interface`: the tunnel's kernel interface (docs/ARCHITECTURE.md "Tunnel interfaces").
#include "config/gateway_internal.h"

namespace mg::config::detail {

namespace {

// What the kernel takes as an interface name and what no tool misreads: 1..15 of [A-Za-z0-9_.-], not "." or "..".
bool interface_name_ok(const std::string& n) {
  if (n.empty() || n.size() > kMaxInterfaceName || n == "." || n == "..") return false;
  for (const char c : n)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
          c == '-'))
      return false;
  return true;
}

}  // namespace

void read_tunnel_interface(Reader& r, Sink& sink, Tunnel* t) {
  if (const auto n = r.str("interface")) {
    t->interface_line = r.line("interface");
    if (interface_name_ok(*n))
      t->interface = *n;
    else
      sink.add(t->interface_line, "tunnel-interface",
               r.where() + " `interface` = \"" + *n + "\" is not a kernel interface name: 1 to " +
                   std::to_string(kMaxInterfaceName) + " of letters, digits, '_', '.', '-'");
  }
  if (const auto v = r.ranged("announce_table", 1, 0xffffffffll, "tunnel-interface")) {
    t->announce_table = uint32_t(*v);
    t->announce_line = r.line("announce_table");
    if (*v >= 253 && *v <= 255)
      sink.add(t->announce_line, "tunnel-interface",
               r.where() + " `announce_table` = " + std::to_string(*v) + " is one of the kernel's own tables (default, "
               "main, local): choose a table of its own");
    if (!r.table().get("interface"))
      sink.add(t->announce_line, "tunnel-interface",
               r.where() + " `announce_table`: its routes go out of the tunnel's `interface`, which it has not");
  }
  if (const auto pps = r.ranged("interface_pps", 1, 10000000, "tunnel-interface")) {
    t->interface_pps = uint32_t(*pps);
    if (!r.table().get("interface"))
      sink.add(r.line("interface_pps"), "tunnel-interface",
               r.where() + " `interface_pps` limits what goes up to the tunnel's `interface`, which it has not");
  }
}

void check_interfaces(const Gateway& g, const std::vector<TunnelLiveness>& per, Sink& sink) {
  for (size_t i = 0; i < g.tunnels.size(); ++i) {
    const Tunnel& t = g.tunnels[i];
    if (t.interface.empty()) continue;
    for (size_t j = 0; j < i; ++j)
      if (g.tunnels[j].interface == t.interface)
        sink.add(t.interface_line, "tunnel-interface",
                 "tunnel \"" + t.name + "\" `interface` \"" + t.interface + "\" is already tunnel \"" +
                     g.tunnels[j].name + "\"'s (line " + std::to_string(g.tunnels[j].interface_line) + ")");
    if (i >= per.size() || !per[i].refs_ok || per[i].keys.bad_address) continue;  // reported already
    const LivenessKeys& k = per[i].keys;
    const Device& d = g.devices[t.device];
    const bool peer_written = k.probe_address.has_value() || d.probe_address.version != 0;
    if (!k.probe_source || !peer_written) {
      sink.add(t.interface_line, "tunnel-interface",
               "tunnel \"" + t.name + "\" `interface` \"" + t.interface + "\" carries the tunnel's inner addresses: "
               "set [tunnel.liveness] `probe_source` (ours, e.g. \"169.254.10.1\") and `probe_address` (the "
               "device's, e.g. \"169.254.10.2\"; or the device's `probe_address`)");
      continue;
    }
    const LivenessSettings& s = t.liveness;
    if (s.probe_source.version != s.probe_address.version) {
      if (!((s.enabled && s.probes) || g.liveness.reflect))  // else probe-version says so already
        sink.add(t.interface_line, "tunnel-interface",
                 "tunnel \"" + t.name + "\" `interface`: its inner addresses " + ip_text(s.probe_source) + " and " +
                     ip_text(s.probe_address) + " are of different IP versions");
      continue;
    }
    if (s.probe_source == s.probe_address)
      sink.add(t.interface_line, "tunnel-interface",
               "tunnel \"" + t.name + "\" `interface`: our inner address and the device's are both " +
                   ip_text(s.probe_source));
  }
}

}  // namespace mg::config::detail
