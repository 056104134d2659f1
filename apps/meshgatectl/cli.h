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
  double watch_s = 0;        // --watch: show again every S seconds (0: once)
  uint32_t count = 0;        // --count: stop after N frames of --watch (0: until interrupted)
  std::string format = "prometheus";  // show metrics: prometheus (text 0.0.4) | openmetrics
  std::string output;        // show metrics: write FILE atomically (temporary file + rename) instead of stdout
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
  std::vector<c::PortInfo> ports;
};
// Throws Fail{kExitBusy} when a record kept changing.
Snapshot read_mirror(const c::Block& b);

// The views of `show`, in the order the help lists them.
inline constexpr const char* kShowViews[] = {"gateway", "instances", "tunnels", "sa",    "flows",
                                             "counters", "errors",   "ports",   "rates", "metrics"};
// The verbs (first word), likewise.
inline constexpr const char* kVerbs[] = {"show", "tunnel", "instance", "mode", "clear", "ping", "reload", "help"};

// `show gateway|instances|tunnels|sa|flows|counters|errors` of one snapshot, human or JSON (o.json).
void show(const c::Block& b, const Options& o, const std::string& what, const Snapshot& s);
// `show ports` (ports.cpp): the driver's counters beside the workers' own, per port.
void show_ports(const Snapshot& s, const Options& o);
// `show rates` (ports.cpp): packets/s and bits/s per tunnel and port between two snapshots (their updated_ns).
void show_rates(const Snapshot& before, const Snapshot& after, const Options& o);
// `show metrics` (metrics.cpp): the snapshot as Prometheus text 0.0.4 or OpenMetrics 1.0; every sample labelled
// gateway="<gateway>", the control block's name (what --gateway names on meshgate and meshgatectl). help: the
// block's CounterHelp (rows left empty get a generic HELP line).
std::string metrics_text(const Snapshot& s, const c::CounterHelp& help, bool openmetrics, const std::string& gateway);
// Writes text to path through a temporary file in its directory and rename(2), so a reader (node-exporter's
// textfile collector) never sees half a file. Throws Fail{kExitRefused} on an I/O error.
void write_atomically(const std::string& path, const std::string& text);
// Any `show` view, once or every o.watch_s seconds (ports.cpp).
int run_show(const c::Block& b, const Options& o, const std::string& what);
// The closest of `known` to `word` (edit distance at most 2, or a prefix), "" when none is close.
std::string suggest(const std::string& word, const std::vector<std::string>& known);

}  // namespace mgctl
