// load_gateway's liveness: [liveness], [tunnel.liveness], device probe addresses, and their resolution into
// every tunnel's LivenessSettings.
#include <string>

#include "config/gateway_internal.h"

namespace mg::config::detail {

// probe_address / probe_source: an inner address, so either IP version, but one an ICMP echo can be sent from or
// to: the same addresses as a tunnel endpoint are unusable. *bad is set when the key is there but unusable, so
// that resolution does not pile a second, misleading error on top of this one.
std::optional<net::IpAddr> read_probe_ip(Reader& r, Sink& sink, const char* key, bool* bad) {
  if (r.table().get(key)) *bad = true;
  const std::optional<std::string> s = r.str(key);
  if (!s) return std::nullopt;
  net::IpAddr a;
  if (!net::parse_ip(s->c_str(), &a)) {
    sink.add(r.line(key), "probe-address",
             r.where() + " `" + key + "` = \"" + *s + "\" is not an IPv4 or IPv6 address");
    return std::nullopt;
  }
  if (const char* why = unusable_endpoint(a)) {
    sink.add(r.line(key), "probe-address",
             r.where() + " `" + key + "` = \"" + *s + "\" is " + why +
                 "; liveness probes need a unicast address");
    return std::nullopt;
  }
  *bad = false;
  return a;
}

// The keys [liveness] and [tunnel.liveness] share.
namespace {

void read_liveness_common(Reader& r, LivenessKeys* k) {
  k->line = r.line();
  k->enabled = r.boolean("enabled");
  // Same bounds as meshgate --liveness: an interval longer than a minute is no longer failure detection.
  if (const auto v = r.ranged("interval_ms", 1, 60000, "liveness-range")) k->interval_ms = uint32_t(*v);
  if (const auto v = r.ranged("multiplier", 1, 100, "liveness-range")) k->multiplier = uint32_t(*v);
  if (const auto v = r.ranged("hold_down_ms", 0, 3600000, "liveness-range")) k->hold_down_ms = uint32_t(*v);
  k->probes = r.boolean("probes");
}

}  // namespace

// [liveness]: the defaults of every tunnel, and what is not per tunnel.
void read_liveness_global(Reader& r, Sink& sink, LivenessKeys* k, LivenessGlobal* lg) {
  read_liveness_common(r, k);
  lg->present = true;
  lg->line = r.line();
  if (const auto v = r.boolean("damping")) lg->damping = *v;
  if (const auto v = r.boolean("monitor")) lg->monitor = *v;
  if (const auto v = r.boolean("reflect")) lg->reflect = *v;
  misplaced(r, sink, "probe_source",
            "belongs in [tunnel.liveness]: it is our inner address on one tunnel, different for every tunnel");
  misplaced(r, sink, "probe_address",
            "belongs in [[device]] (for all the device's tunnels) or in [tunnel.liveness] (for one tunnel)");
}

// [tunnel.liveness]: one tunnel's overrides of [liveness].
void read_liveness_tunnel(Reader& r, Sink& sink, LivenessKeys* k) {
  read_liveness_common(r, k);
  bool bad_source = false, bad_address = false;
  k->probe_source = read_probe_ip(r, sink, "probe_source", &bad_source);
  k->probe_source_line = r.line("probe_source");
  k->probe_address = read_probe_ip(r, sink, "probe_address", &bad_address);
  k->bad_address = bad_source || bad_address;
  for (const char* key : {"damping", "monitor", "reflect"})
    misplaced(r, sink, key, "belongs in [liveness]: it applies to the whole gateway, not to one tunnel");
}

std::string ip_version_text(const net::IpAddr& a) { return "IPv" + std::to_string(a.version); }

// Every tunnel's LivenessSettings from its [tunnel.liveness], [liveness] and the defaults. Address problems are
// reported only for tunnels that use the addresses: probing ones, or all of them when the gateway reflects.
void resolve_liveness(Gateway& g, const LivenessKeys& global, const std::vector<TunnelLiveness>& per,
                      const std::vector<bool>& device_bad_probe, Sink& sink) {
  for (size_t i = 0; i < g.tunnels.size() && i < per.size(); ++i) {
    Tunnel& t = g.tunnels[i];
    const LivenessKeys& k = per[i].keys;
    LivenessSettings& s = t.liveness;
    s.enabled = k.enabled.value_or(global.enabled.value_or(g.liveness.present));
    s.interval_ms = k.interval_ms.value_or(global.interval_ms.value_or(s.interval_ms));
    s.multiplier = k.multiplier.value_or(global.multiplier.value_or(s.multiplier));
    s.hold_down_ms = k.hold_down_ms.value_or(global.hold_down_ms.value_or(s.hold_down_ms));
    s.probes = k.probes.value_or(global.probes.value_or(s.probes));
    if (!per[i].refs_ok || k.bad_address || device_bad_probe[t.device]) continue;

    const Instance& in = g.instances[t.instance];
    const Device& d = g.devices[t.device];
    const bool needed = (s.enabled && s.probes) || g.liveness.reflect;
    std::string from;  // where probe_address came from, so that a message points at the line to change
    if (k.probe_address) {
      s.probe_address = *k.probe_address;
      from = "its [tunnel.liveness] `probe_address`";
    } else if (d.probe_address.version != 0) {
      s.probe_address = d.probe_address;
      from = "device \"" + d.name + "\" `probe_address` (line " + std::to_string(d.line) + ")";
    } else if (const int v = tunnel_ip_version(g, t); v != 0) {
      s.probe_address = v == 4 ? d.ipv4 : d.ipv6;
      from = "device \"" + d.name + "\"'s outer address";
    }
    // Without a probe_address the tunnel has no IP version in common, which tunnel-ip-version reports.
    if (s.probe_address.version == 0) continue;

    if (k.probe_source) {
      s.probe_source = *k.probe_source;
      if (needed && s.probe_source.version != s.probe_address.version)
        sink.add(k.probe_source_line, "probe-version",
                 "tunnel \"" + t.name + "\" [tunnel.liveness] `probe_source` " + ip_text(s.probe_source) + " is " +
                     ip_version_text(s.probe_source) + " but its probe_address " + ip_text(s.probe_address) +
                     " (from " + from + ") is " + ip_version_text(s.probe_address) +
                     "; a probe goes from one to the other, so both must be of the same IP version");
      continue;
    }
    s.probe_source = s.probe_address.version == 4 ? in.ipv4 : in.ipv6;
    if (needed && s.probe_source.version == 0)
      sink.add(k.line ? k.line : t.line, "probe-source",
               "tunnel \"" + t.name + "\" probes " + ip_text(s.probe_address) + " (from " + from +
                   "), but instance \"" + in.name + "\" has no " + ip_version_text(s.probe_address) +
                   " address to send them from; set probe_source in [tunnel.liveness] (our inner " +
                   ip_version_text(s.probe_address) + " address on this tunnel)");
  }
}

}  // namespace mg::config::detail
