// Replays a trace through one worker's pin table and the selection table, as the data plane would, applying
// tunnel events on the way, and measures the spread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "spread_conf.h"
#include "flow/flow.h"
#include "trace.h"

namespace mg::spread {

struct Event {
  enum class Kind { kDown, kUp, kDrain, kWeight };
  Kind kind;
  uint16_t tunnel;
  uint64_t at;          // applied before this packet (0-based)
  uint32_t weight = 0;  // kWeight only
  double deadline_s = -1;  // kDrain: pins move this long after the event (trace time); < 0: only when idle
  std::string text;     // as given, normalised (the tunnel as "instance/device")
};

// "down T [at N]", "up T [at N]", "drain T [at N] [for S]", "weight T W [at N]"; T is a tunnel index or
// "instance/device"; N a packet number or a percentage of the trace ("50%"). Events without "at" are spread
// evenly over the trace in the order given. Throws InputError.
std::vector<Event> parse_events(const std::vector<std::string>& texts, const SpreadConf& c, uint64_t packets);

struct TunnelResult {
  uint64_t flows = 0;    // flows that used the tunnel (a flow that moved counts on each tunnel it used)
  uint64_t packets = 0;
  uint64_t bytes = 0;
  flow::TunnelCounters pins;  // the worker's per-tunnel counters at the end
  flow::TunnelState end_state = flow::TunnelState::kUp;
  uint32_t end_weight = 0;
};

struct EventResult {
  Event event;
  uint32_t time_ms = 0;
  uint64_t active_flows = 0;    // flows seen within the idle timeout before the event
  uint64_t moved_at_once = 0;   // of those, flows whose tunnel the event changed right away
  uint64_t seen_again = 0;      // active flows that sent again before the next event
  uint64_t moved_observed = 0;  // of those, flows that arrived on another tunnel than before the event
};

struct Imbalance {
  double flows = 0, packets = 0, bytes = 0;  // max/mean of load per unit of weight over tunnels of weight > 0
};

struct Result {
  uint64_t seed = 0;
  std::vector<TunnelResult> tunnels;
  std::vector<EventResult> events;
  Imbalance imbalance;
  flow::SpreadCounters counters;
  uint64_t packets = 0, bytes = 0, no_tunnel_packets = 0;
};

struct SimOptions {
  uint64_t seed = 0;
  uint32_t pin_capacity = 1u << 20;
  bool measure_events = true;  // the per-event walk over all flows; a seed sweep can do without
};

// Throws InputError when the config cannot build a selection table (e.g. table_size not prime).
Result simulate(const Trace& t, const SpreadConf& c, const std::vector<Event>& events, const SimOptions& o);

}  // namespace mg::spread
