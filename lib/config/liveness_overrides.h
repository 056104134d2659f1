// Command-line overrides of a gateway file's liveness settings (meshgate --liveness, --probe-source, ...), applied
// to the loaded model before the data plane sees it. In lib/config because it edits and re-checks the model with
// the loader's resolution rules (probe_source follows probe_address's IP version); the data plane only ever reads
// the resolved LivenessSettings.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "config/config.h"
#include "net/net.h"

namespace mg::config {

// Unset: the file's value is kept.
struct LivenessOverrides {
  std::optional<bool> enabled;
  std::optional<uint32_t> interval_ms, multiplier, hold_down_ms;
  std::optional<bool> probes, damping, monitor, reflect;
  net::IpAddr probe_source, probe_address;  // version 0: not overridden
};

// Applies o to every tunnel of g. A new probe_address of another IP version re-resolves the tunnels'
// probe_source from their instance's outer address unless probe_source is overridden too. False with *err
// (nothing changed) when a tunnel would be left with addresses of two versions or none it needs.
bool apply_liveness_overrides(Gateway* g, const LivenessOverrides& o, std::string* err);

}  // namespace mg::config
