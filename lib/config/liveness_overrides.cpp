// apply_liveness_overrides: meshgate's command-line liveness flags over the gateway file's resolved settings.
#include "config/liveness_overrides.h"

#include <vector>

namespace mg::config {

bool apply_liveness_overrides(Gateway* g, const LivenessOverrides& o, std::string* err) {
  std::vector<LivenessSettings> next;
  for (const auto& t : g->tunnels) {
    LivenessSettings ls = t.liveness;
    if (o.enabled) ls.enabled = *o.enabled;
    if (o.interval_ms) ls.interval_ms = *o.interval_ms;
    if (o.multiplier) ls.multiplier = *o.multiplier;
    if (o.hold_down_ms) ls.hold_down_ms = *o.hold_down_ms;
    if (o.probes) ls.probes = *o.probes;
    if (o.probe_address.version) ls.probe_address = o.probe_address;
    if (o.probe_source.version) {
      ls.probe_source = o.probe_source;
    } else if (ls.probe_address.version != ls.probe_source.version) {
      const auto& in = g->instances[t.instance];
      ls.probe_source = ls.probe_address.version == 6 ? in.ipv6 : in.ipv4;
    }
    const bool needs = (ls.enabled && ls.probes) || o.reflect.value_or(g->liveness.reflect);
    if (needs && (ls.probe_source.version == 0 || ls.probe_source.version != ls.probe_address.version)) {
      char a[64], b[64];
      if (err)
        *err = "tunnel '" + t.name + "': probe source " +
               (ls.probe_source.version ? net::format_ip(ls.probe_source, a, sizeof a) : "(none)") +
               " and probe address " + (ls.probe_address.version ? net::format_ip(ls.probe_address, b, sizeof b) : "(none)") +
               " are not of one IP version (give --probe-source of the address's version)";
      return false;
    }
    next.push_back(ls);
  }
  for (size_t t = 0; t < next.size(); ++t) g->tunnels[t].liveness = next[t];
  if (o.damping) g->liveness.damping = *o.damping;
  if (o.monitor) g->liveness.monitor = *o.monitor;
  if (o.reflect) g->liveness.reflect = *o.reflect;
  return true;
}

}  // namespace mg::config
