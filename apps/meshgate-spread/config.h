// meshgate-spread's view of the gateway config: the [flow] section and the tunnels with their weights. Other
// sections and keys of the gateway config are ignored, so the gateway's own file can be given.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace mg::spread {

struct TunnelConf {
  std::string name;      // "instance/device"
  std::string instance;
  std::string device;
  uint32_t weight = 1;
};

struct SpreadConf {
  uint64_t seed = 0;
  uint32_t table_size = 65537;
  double pin_idle_timeout_s = 30.0;
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

// Tunnel by index ("2"), by "instance/device" name, or InputError.
uint16_t find_tunnel(const SpreadConf& c, const std::string& ref);

}  // namespace mg::spread
