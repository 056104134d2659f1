// meshgate-spread's view of a gateway file: the [flow] settings and the tunnels with their weights. The file is
// read by lib/config, the gateway's own loader (with LoadOptions that skip SAs, keys and ports, which the analyser
// does not need), so names, defaults and rules are the gateway's: a file meshgate accepts, the tool accepts, and a
// file the tool accepts differs from one meshgate accepts only by its SAs and ports.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace mg::spread {

struct TunnelConf {
  std::string name;      // the gateway's tunnel name (default "<instance>-<device>")
  std::string instance;
  std::string device;
  uint32_t weight = 1;
};

struct SpreadConf {
  uint64_t seed = 0;
  uint32_t table_size = 0;
  double pin_idle_timeout_s = 0;   // [flow] pin_idle_timeout_ms
  uint32_t pin_capacity = 0;       // [flow] pin_capacity: pins per worker
  std::vector<TunnelConf> tunnels;
};

// A config or input the tool cannot use; the message is meant for the operator as is.
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Throws InputError listing every problem lib/config found (file, line, message, rule).
SpreadConf load_config(const std::string& path);

// Tunnel by index ("2"), by name, by "instance/device", or InputError.
uint16_t find_tunnel(const SpreadConf& c, const std::string& ref);

}  // namespace mg::spread
