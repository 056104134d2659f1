// meshgate-spread's view of the gateway config: the [flow] section and the tunnels with their weights, with the
// key names and defaults of lib/config (the gateway's loader). Other sections and keys are ignored, so the
// gateway's own file can be given (its SAs, ports and keys are not needed here and not checked).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace mg::spread {

struct TunnelConf {
  std::string name;      // `name` if given, else "instance/device"
  std::string instance;
  std::string device;
  uint32_t weight = 1;
};

struct SpreadConf {
  uint64_t seed = 0x6d657368676174ull;  // lib/config's default, so an omitted seed places flows as the gateway
  uint32_t table_size = 65537;
  double pin_idle_timeout_s = 30.0;     // [flow] pin_idle_timeout_ms
  uint32_t pin_capacity = 1u << 20;     // [flow] pin_capacity: pins per worker
  std::vector<std::string> instances;
  std::vector<std::string> devices;
  std::vector<TunnelConf> tunnels;
};

// A config or input the tool cannot use; the message is meant for the operator as is.
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Throws InputError naming the file, the key and what is wrong.
SpreadConf load_config(const std::string& path);

// Tunnel by index ("2"), by name, by "instance/device", or InputError.
uint16_t find_tunnel(const SpreadConf& c, const std::string& ref);

}  // namespace mg::spread
