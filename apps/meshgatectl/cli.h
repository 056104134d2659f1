// meshgatectl's parts, shared by main.cpp (options, connection, commands) and show.cpp (the `show` views).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "ctrl/ctrl.h"

namespace mgctl {

namespace c = mg::ctrl;

enum Exit : int { kExitOk = 0, kExitRefused = 1, kExitUsage = 2, kExitNoGateway = 3, kExitBusy = 4 };

// Thrown to end the program with an exit code and a message.
struct Fail {
  int code;
  std::string message;
};

struct Options {
  std::string gateway;
  bool json = false;
  uint32_t timeout_ms = 2000;
};

// A NUL-padded fixed-size field as a string.
inline std::string str(const char* field, size_t cap) { return std::string(field, strnlen(field, cap)); }
#define FIELD(x) ::mgctl::str((x), sizeof(x))

// One consistent copy of each mirror record (gateway first: it says how many of the others there are).
struct Snapshot {
  c::GatewayInfo gw{};
  std::vector<c::InstanceInfo> instances;
  std::vector<c::TunnelInfo> tunnels;
  std::vector<c::WorkerInfo> workers;
};
// Throws Fail{kExitBusy} when a record kept changing.
Snapshot read_mirror(const c::Block& b);

// `show gateway|instances|tunnels|flows|counters|errors`, human or JSON (o.json).
void show(const c::Block& b, const Options& o, const std::string& what);

}  // namespace mgctl
