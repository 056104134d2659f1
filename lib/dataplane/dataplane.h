// mg::dp::Dataplane — the gateway process: DPDK ports from a pmd_config, poll-mode workers that carry traffic
// between the inside port and the tunnels of every instance, and the main-lcore control that changes tunnel and
// instance state under traffic.
//
// Outbound (per worker, per burst): inside RX -> L2 strip -> route check (inner destination in [inside]
// prefixes) -> flow hash -> pin table / selection table -> group by tunnel -> ESP encap -> L2 of the tunnel's
// instance port -> TX on that port. Inbound: each outside port's RX -> SA by SPI among the tunnels that terminate
// on that port -> decap -> inner source check (in [inside] prefixes) -> inside TX. Any tunnel may bring any flow.
//
// State: main builds an immutable State (selection table, per-tunnel runtime, inbound SA tables), publishes it
// with one atomic store, waits for every worker's RCU quiescent state (rte_rcu_qsbr) and frees the old one.
// Workers never lock. Every drop has a reason: data-plane reasons here (Drop), ESP reasons in the SAs.
//
// Threads: create(), the apply_* calls and run() belong to the main lcore (apply_* may also be called before
// run()); stats() may be called from any thread (counters are read racily; each is a monotonic 64-bit value).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "dataplane/liveness.h"
#include "dataplane/model.h"
#include "esp/esp.h"

namespace mg::dp {

enum ExitCode : int {
  kExitOk = 0,
  kExitRuntime = 1,  // failure after start (e.g. mbuf leak detected at exit, worker launch)
  kExitConfig = 2,   // bad config or usage
  kExitEal = 3,      // EAL initialisation failed
  kExitPort = 4,     // a port could not be probed, configured or started
};

enum class Drop : uint8_t {
  kInsideNotIp,     // inside frame is not IPv4/IPv6 (or shorter than Ethernet)
  kNotRouted,       // inner destination outside the [inside] prefixes
  kNoTunnel,        // no tunnel can take a new flow (none up with weight > 0), or the inner header is invalid
  kOutsideNotIp,    // outside frame is not IPv4/IPv6
  kInnerSelector,   // decrypted inner source outside the [inside] prefixes
  kTxFull,          // the TX queue did not take the packet
  kCount
};
inline constexpr size_t kDropCount = size_t(Drop::kCount);
const char* to_string(Drop d) noexcept;

struct Event {
  double at_s = -1;           // seconds after start, or
  uint64_t at_packets = 0;    // once inside RX has reached this many packets
  bool instance = false;      // instance or tunnel
  uint32_t index = 0;
  AdminState state = AdminState::kDown;
  std::string text;           // as given, for reports
};
// "2.5:instance:gw-a:down", "p10000:tunnel:a-1:drain" (p = after that many inside packets).
bool parse_event(const std::string& s, const config::Gateway& g, Event* out, std::string* err);

// Fault injection (tests and demos of liveness): from `at_s` seconds after start, tunnel `tunnel` is a black hole
// in this gateway (nothing sent on it, its inbound ESP dropped after decryption, so it proves nothing), or heals.
struct Fault {
  double at_s = 0;
  uint32_t tunnel = 0;
  bool blackhole = true;
  std::string text;
};
// "2.5:a-1:blackhole", "4:a-1:heal".
bool parse_fault(const std::string& s, const config::Gateway& g, Fault* out, std::string* err);

struct Options {
  std::vector<std::string> eal_extra;  // appended to the pmd_config's EAL arguments
  double stats_interval_s = 0;         // print the counters table every S seconds (0: only at exit)
  double duration_s = 0;               // stop after S seconds (0: until SIGINT/SIGTERM)
  uint32_t exit_when_idle_ms = 0;      // stop once no packet arrived for this long (after the first one)
  uint64_t pace_pps = 0;               // per-worker inside RX rate limit, for demos and tests
  uint64_t pace_outside_pps = 0;       // per-worker, per-outside-port RX rate limit (tests feeding ESP pcaps)
  // Liveness, probes and the reflector are configured per tunnel in the gateway file (config::LivenessSettings,
  // [liveness]); meshgate's command line overrides them with apply_liveness_overrides() before create().
  std::vector<Event> events;
  std::vector<Fault> faults;
  bool quiet = false;
  bool control = true;                 // create the control block /dev/shm/meshgate.<name>
  std::string control_name;            // default: the gateway name
};

struct TunnelStats {
  std::string name;
  std::string instance;
  std::string device;
  AdminState admin = AdminState::kUp;
  AdminState effective = AdminState::kUp;
  uint32_t weight = 0;
  uint32_t effective_weight = 0;
  uint64_t packets_out = 0, bytes_out = 0;  // encrypted and sent (bytes: inner)
  uint64_t packets_in = 0, bytes_in = 0;    // decrypted and passed on (bytes: inner)
  uint64_t tx_full = 0;                     // encrypted but refused by the TX queue
  // Probes and reflection (not in packets_out/packets_in; outside_tx and outside_rx count them):
  uint64_t probes_out = 0;                  // probes sent
  uint64_t probe_replies_in = 0;            // echo replies to our probes, consumed
  uint64_t reflect_in = 0;                  // echo requests to reflect, consumed
  uint64_t reflected = 0;                   // echo replies sent back on the tunnel
  uint64_t probe_drops = 0;                 // a probe or reply not sent (no mbuf, ESP refused, TX full too long)
  uint64_t probes_deferred = 0;             // a probe or reply that found the TX queue full and waited
  uint64_t probe_rtt_sum_us = 0, probe_rtt_max_us = 0;  // round trips of answered probes (avg = sum / replies)
  uint64_t fault_drops = 0;                 // dropped by an injected black hole (both directions)
  uint64_t pinned = 0;                      // pins resident now, all workers
  uint64_t placed = 0;                      // flows placed here (new and moved)
  uint64_t esp_drops[esp::kDropCount] = {};  // both SAs
  // Liveness (DESIGN.md "Liveness"): off unless enabled.
  bool live_enabled = false;
  LiveState live = LiveState::kUp;
  int64_t last_proof_ms_ago = -1;           // -1: no authenticated inbound packet yet
  uint32_t live_interval_ms = 0, live_multiplier = 0;
  uint64_t flaps = 0, suppressions = 0;
  uint32_t penalty = 0;
};

struct Stats {
  uint64_t generation = 0;
  uint64_t inside_rx = 0, inside_tx = 0, outside_rx = 0, outside_tx = 0;
  uint64_t drops[kDropCount] = {};
  uint64_t esp_out_drops = 0, esp_in_drops = 0;   // summed over SAs and the pre-SA tables
  uint64_t esp_table_drops[esp::kDropCount] = {};  // inbound drops before an SA was known
  uint64_t flows_new = 0, moved_down = 0, moved_drain = 0, moved_idle = 0, evicted = 0;
  std::vector<TunnelStats> tunnels;
  double elapsed_s = 0;
};
nlohmann::json to_json(const Stats& s);
std::string format_table(const Stats& s);

class Dataplane {
 public:
  // Probes ports, creates SAs and the first state. On failure returns the exit code and sets *err.
  static int create(config::Gateway g, config::PmdConfig p, Options o, std::unique_ptr<Dataplane>* out,
                    std::string* err);
  ~Dataplane();
  Dataplane(const Dataplane&) = delete;
  Dataplane& operator=(const Dataplane&) = delete;

  // Runs workers and the control loop until stopped; drains, closes ports, checks mbuf accounting.
  int run();
  // Async-signal-safe.
  static void request_stop() noexcept;

  // Control: validate, change the model, publish a new state, wait for every worker to run on it.
  bool apply_tunnel(uint32_t t, AdminState s, std::optional<uint32_t> deadline_ms, std::string* err);
  bool apply_instance(uint32_t i, AdminState s, std::optional<uint32_t> deadline_ms, std::string* err);
  bool apply_weight(uint32_t t, uint32_t w, std::string* err);
  void apply_mode(config::Mode m);
  // Re-reads the gateway file and rebuilds the SAs of instance i's tunnels: its tunnels go down (flows move to
  // the other instance), the new SAs take over, the tunnels return to their previous state. An SA whose key is
  // unchanged continues its sequence numbers and replay window, so no (key, IV) pair is ever used twice; a new
  // key starts from 1. Refused (false, *err) when the file does not load or its tunnels differ from the running
  // ones (restart for that).
  bool apply_reset(uint32_t i, std::string* err);
  // `clear counters`: later stats() count from now (gauges such as pinned flows are kept).
  void clear_counters();

  uint64_t generation() const noexcept;
  Stats stats() const;
  const config::Gateway& gateway() const noexcept;
  // JSON of the final stats and event snapshots (written by run()).
  const nlohmann::json& report() const noexcept;

  struct Impl;

 private:
  Dataplane() = default;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mg::dp
