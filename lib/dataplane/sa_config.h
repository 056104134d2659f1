// The ESP engine's SA configuration built from a tunnel of the gateway model. Here in lib/dataplane, which knows
// both sides, rather than in lib/config: the config loader must not depend on lib/esp (and through it on DPDK),
// so that `meshgate --check` and the offline tools link no DPDK.
#pragma once

#include "config/config.h"
#include "esp/esp.h"

namespace mg::dp {

// Outbound (instance -> device) and inbound (device -> instance) SA of tunnel t, which must be an element of
// g.tunnels (its index becomes user_id). Copies the key into keymat; esp::Sa::create wipes it.
esp::SaConfig outbound_sa(const config::Gateway& g, const config::Tunnel& t);
esp::SaConfig inbound_sa(const config::Gateway& g, const config::Tunnel& t);

}  // namespace mg::dp
