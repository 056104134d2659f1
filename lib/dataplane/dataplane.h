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
#include <iterator>
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

// Data-plane drop reasons (ESP reasons are esp::Drop, counted by the SAs). Declared once: the enum and its name
// table below must stay in step (static_assert in dataplane.cpp).
enum class Drop : uint8_t {
  kInsideNotIp,      // inside frame is not IPv4/IPv6 (or shorter than Ethernet + 20)
  kInsideMalformed,  // inside IP header invalid: IPv4 IHL < 5, total length beyond the frame or below the header,
                     // IPv6 payload length past the frame, version not matching the ethertype, truncated headers
  kNotRouted,        // inner destination outside the [inside] prefixes
  kNoTunnel,         // no tunnel can take a new flow (none up with weight > 0)
  kOutsideNotIp,     // outside frame is not IPv4/IPv6
  kInnerSelector,    // decrypted inner source outside the [inside] prefixes (also an echo request to the
                     // reflector, unless it comes from the tunnel's probe address)
  kTxFull,           // the TX queue did not take the packet
  kTooBig,           // inner packet over its tunnel's path MTU that may not be fragmented (IPv4 DF, IPv6)
  kFragFailed,       // inner IPv4 packet to fragment, but no mbuf for a fragment (or a header that cannot be split)
  kToHost,           // the host's (IKE to an instance, ARP/ND/ICMP for it) on a port without a kernel twin
                     // (pmd_config `host`): no exception path to hand it to
  kHostRateLimited,  // the host's, over the port's `host_pps` (per worker): the kernel twin is not flooded; or
                     // for a tunnel's interface, over its `interface_pps`
  kHostQueueFull,    // the host's (twin or tunnel interface), but the ring to the main lcore (which writes to the
                     // kernel) was full
  kNoNextHop,        // the tunnel's next-hop MAC is to be learned from the kernel and is not known yet
  kCount
};
inline constexpr size_t kDropCount = size_t(Drop::kCount);
inline constexpr const char* kDropNames[] = {"inside_not_ip", "inside_malformed", "not_routed", "no_tunnel",
                                             "outside_not_ip", "inner_selector", "tx_full", "too_big",
                                             "frag_failed", "to_host", "host_rate_limited",
                                             "host_queue_full", "no_next_hop"};
static_assert(std::size(kDropNames) == kDropCount, "one name per Drop reason");
const char* to_string(Drop d) noexcept;

// --event and --fault (apps/meshgate parses their command-line grammar): operator-like changes and injected faults
// at a time or packet count, for demos and tests.
struct Event {
  double at_s = -1;           // seconds after start, or
  uint64_t at_packets = 0;    // once inside RX has reached this many packets
  bool instance = false;      // instance or tunnel
  uint32_t index = 0;
  AdminState state = AdminState::kDown;
  std::string text;           // as given, for reports
};

// Fault injection (tests and demos of liveness): from `at_s` seconds after start, tunnel `tunnel` is a black hole
// in this gateway (nothing sent on it, its inbound ESP dropped after decryption, so it proves nothing), or heals.
struct Fault {
  double at_s = 0;
  uint32_t tunnel = 0;
  bool blackhole = true;
  std::string text;
};

struct Options {
  std::vector<std::string> eal_extra;  // appended to the pmd_config's EAL arguments
  double stats_interval_s = 0;         // print the counters table every S seconds (0: only at exit)
  double duration_s = 0;               // stop after S seconds (0: until SIGINT/SIGTERM)
  uint32_t exit_when_idle_ms = 0;      // stop once no packet arrived for this long (after the first one)
  uint64_t pace_pps = 0;               // per-worker inside RX rate limit, for demos and tests
  uint64_t pace_outside_pps = 0;       // per-worker, per-outside-port RX rate limit (tests feeding ESP pcaps)
  // Liveness, probes and the reflector are configured per tunnel in the gateway file (config::LivenessSettings,
  // [liveness]); meshgate's command line overrides them before create().
  std::vector<Event> events;
  std::vector<Fault> faults;
  bool quiet = false;
  bool control = true;                 // create the control block /dev/shm/meshgate.<name>
  std::string control_name;            // default: the gateway name
  // Outbound sequence numbers survive restarts through this directory (lib/seqstate): every static-key SA
  // continues after the numbers any earlier run may have used. Without a usable directory create() refuses,
  // unless unsafe_volatile_seq (numbers start at 1 each run: (key, IV) pairs repeat; labs only).
  std::string state_dir;
  bool state_dir_create = false;       // make state_dir (mode 0700) when missing and its parent exists
  bool unsafe_volatile_seq = false;
};

// ---- Counters, each declared once ----
// A list below names a counter, its kind and what it counts. The lists generate the counter structs and the
// tables (kTunnelCounters, kGatewayCounters, kWorkerCounters) that drive every output: collection from the
// workers, `clear counters`, JSON, the text table, DPDK telemetry and the control block's mirror (so meshgatectl
// shows every counter). A new counter is one line here plus the code that counts it.
enum class CounterKind : uint8_t {
  kCounter,  // monotonic, summed over workers, restarts from 0 at `clear counters`
  kKept,     // a gauge or a lifetime figure: summed, never cleared
  kMax,      // the largest value any worker saw; never cleared
};
template <class S>
struct CounterDef {
  const char* name;
  uint64_t S::*member;
  CounterKind kind;
  const char* description;
};

// Per tunnel, counted by each worker in its own TunnelCtr (worker.cpp, probe.cpp).
#define MG_DP_TUNNEL_WORKER_COUNTERS(X)                                                                       \
  X(packets_out, kCounter, "packets encrypted and sent")                                                       \
  X(packets_in, kCounter, "packets decrypted and passed on")                                                   \
  X(bytes_in, kCounter, "inner bytes decrypted and passed on")                                                 \
  X(tx_full, kCounter, "encrypted but refused by the TX queue")                                                \
  X(probes_out, kCounter, "liveness probes sent (also in outside_tx, not in packets_out)")                     \
  X(probe_replies_in, kCounter, "echo replies to our probes, consumed")                                        \
  X(reflect_in, kCounter, "echo requests to our inner address, consumed to reflect")                           \
  X(reflected, kCounter, "echo replies sent back on the tunnel")                                               \
  X(probe_drops, kCounter, "probes or replies not sent (no mbuf, ESP refused, TX queue full too long)")        \
  X(probe_esp_refused, kCounter, "tries of a probe or reply its SA refused (also in esp_drops: not data)")       \
  X(probes_deferred, kCounter, "probes, replies or interface packets that found the TX queue full and waited") \
  X(probe_rtt_sum_us, kCounter, "round trips of answered probes, summed (average = sum / probe_replies_in)")   \
  X(probe_rtt_max_us, kMax, "longest round trip of an answered probe")                                         \
  X(fault_drops, kCounter, "dropped by an injected black hole (both directions)")                            \
  X(mss_clamped, kCounter, "TCP SYNs whose MSS option was lowered to the tunnel's clamp (both directions)")    \
  X(too_big, kCounter, "inner packets over the path MTU that may not be fragmented (also drop too_big)")       \
  X(icmp_too_big, kCounter, "ICMP frag-needed / ICMPv6 packet-too-big sent to the inside sender")              \
  X(icmp_rate_limited, kCounter, "too_big packets left without ICMP by the per-worker rate limit")             \
  X(icmp_suppressed, kCounter, "too_big packets never answered: ICMP errors, non-unicast, later fragments")     \
  X(icmp_failed, kCounter, "too-big ICMP not sent: no mbuf or the inside TX queue was full")                   \
  X(fragmented, kCounter, "inner IPv4 packets without DF over the path MTU, fragmented before encryption")      \
  X(fragments, kCounter, "fragments made of them, each its own ESP packet (in packets_out when sent)")         \
  X(to_kernel, kCounter, "decrypted packets for the tunnel's interface, handed toward it (BGP, BFD, ping)")    \
  X(from_kernel, kCounter, "packets the tunnel's interface sent, encrypted into the tunnel and sent")          \
  X(kernel_drops, kCounter, "packets of the tunnel's interface not sent (no mbuf, SA refused, held, TX full too long)")
// Per tunnel, gathered by main from their owners: the SAs, the workers' pin tables, the liveness detector.
#define MG_DP_TUNNEL_OTHER_COUNTERS(X)                                                                        \
  X(bytes_out, kCounter, "inner bytes encrypted by the outbound SA (tx_full ones included)")                   \
  X(esp_drops, kCounter, "ESP drops of both SAs, every reason (JSON: an object by reason)")                \
  X(pinned, kKept, "flows pinned to the tunnel now, all workers")                                              \
  X(placed, kCounter, "flows placed on the tunnel (new and moved)")                                            \
  X(moved_in, kCounter, "flows moved here from another tunnel")                                                \
  X(flaps, kKept, "liveness verdicts up -> down")                                                              \
  X(suppressions, kKept, "times flap damping suppressed the tunnel")                                          \
  X(kernel_refused, kCounter, "datagrams the tunnel's interface sent that cannot go in (not IP, multicast, queue full)") \
  X(kernel_unwritten, kCounter, "decrypted packets for the tunnel's interface that the kernel did not take")
// Per worker (and summed for the gateway).
#define MG_DP_WORKER_COUNTERS(X)                                                                              \
  X(inside_rx, kCounter, "packets received on the inside port")                                                \
  X(inside_tx, kCounter, "packets sent on the inside port (decrypted)")                                        \
  X(outside_rx, kCounter, "packets received on outside ports")                                                 \
  X(outside_tx, kCounter, "packets sent on outside ports (ESP, probes included)")
// Per port, counted by each worker beside the port's own (PMD) counters, which a driver may lose: net_memif zeroes
// its counters when the peer leaves. Lifetime figures of the exit report's "ports" section.
#define MG_DP_PORT_WORKER_COUNTERS(X)                                                                         \
  X(rx_packets, kCounter, "packets the workers received from the port")                                        \
  X(tx_packets, kCounter, "packets the port's TX queues took")                                                 \
  X(tx_refused, kCounter, "tries the port's TX queues refused (data: tx_full; a probe waits and tries again)")   \
  X(to_host, kCounter, "frames for the host handed toward the port's kernel twin (IKE, ARP/ND, ICMP)")          \
  X(from_host, kCounter, "frames the kernel twin sent, put on this port's TX queue (also in tx_packets)")
// Gateway totals gathered by main.
#define MG_DP_GATEWAY_OTHER_COUNTERS(X)                                                                       \
  X(esp_out_drops, kCounter, "outbound ESP drops, every SA and reason")                                        \
  X(esp_in_drops, kCounter, "inbound ESP drops, every SA and the pre-SA tables")                               \
  X(flows_new, kCounter, "new flows pinned")                                                                   \
  X(moved_down, kCounter, "flows moved because their tunnel went down")                                        \
  X(moved_drain, kCounter, "flows moved because their tunnel's drain deadline passed")                         \
  X(moved_route, kCounter, "flows moved because their tunnel left the set of their route's tunnels")         \
  X(moved_idle, kCounter, "idle pins on a draining tunnel released and placed again")                          \
  X(moved_last_change, kKept, "flows moved (down, drain deadline, route) since the last published change")    \
  X(evicted, kCounter, "pins evicted from a full pin table")                                                   \
  X(expired, kCounter, "idle pins reclaimed by the workers' sweep")                                            \
  X(commands_ok, kCounter, "control commands applied")                                                         \
  X(commands_rejected, kCounter, "control commands refused or invalid")                                        \
  X(route_updates, kCounter, "route tables built from the kernel table ([routing] kernel_table) and published")  \
  X(route_updates_failed, kCounter, "kernel table reads or route tables that failed (the previous table stays)") \
  X(routes_learned, kKept, "routes of the kernel table in use now (through tunnels' interfaces)")             \
  X(routes_refused, kKept, "routes of the kernel table not usable now (not through a tunnel's interface, not unicast)") \
  X(routes_announced, kKept, "prefixes in the announce table now ([routing] announce_table)")                  \
  X(announce_changes, kCounter, "routes added, moved or removed in the announce table")                        \
  X(announce_failed, kCounter, "changes of the announce table the kernel refused (tried again at the next change)")

#define MG_DP_COUNTER_MEMBER(name, kind, text) uint64_t name = 0;
struct TunnelWorkerCounters {
  MG_DP_TUNNEL_WORKER_COUNTERS(MG_DP_COUNTER_MEMBER)
};
struct TunnelOtherCounters {
  MG_DP_TUNNEL_OTHER_COUNTERS(MG_DP_COUNTER_MEMBER)
};
struct WorkerCounters {
  MG_DP_WORKER_COUNTERS(MG_DP_COUNTER_MEMBER)
};
struct GatewayOtherCounters {
  MG_DP_GATEWAY_OTHER_COUNTERS(MG_DP_COUNTER_MEMBER)
};
struct PortWorkerCounters {
  MG_DP_PORT_WORKER_COUNTERS(MG_DP_COUNTER_MEMBER)
};

struct TunnelStats : TunnelWorkerCounters, TunnelOtherCounters {
  std::string name;
  std::string instance;
  std::string device;
  AdminState admin = AdminState::kUp;
  AdminState effective = AdminState::kUp;
  uint32_t weight = 0;
  uint32_t effective_weight = 0;
  uint64_t esp_drop_reasons[esp::kDropCount] = {};  // both SAs, by esp::Drop (their sum: esp_drops)
  // Liveness (docs/ARCHITECTURE.md "Liveness"): off unless enabled.
  bool live_enabled = false;
  LiveState live = LiveState::kUp;
  int64_t last_proof_ms_ago = -1;           // -1: no authenticated inbound packet yet
  uint32_t live_interval_ms = 0, live_multiplier = 0;
  uint32_t penalty = 0;
  // MTU (docs/ARCHITECTURE.md "MTU and fragments"): the tunnel's link MTU, the inner path MTU, the MSS clamps (0: off).
  uint32_t mtu = 0, path_mtu = 0, mss_clamp_v4 = 0, mss_clamp_v6 = 0;
  // Keys: "static" (the file) or "ike" (the keying interface), and every SA the tunnel has now.
  bool ike = false;
  struct SaView {
    bool outbound = false;
    uint32_t spi = 0;
    const char* state = "active";  // active | replaced (outbound, a newer one took over, not yet deleted) | ended
    uint64_t packets = 0, bytes = 0;
    uint64_t seq = 0;              // outbound: last number used; inbound: highest accepted
    bool esn = false, udp = false;  // extended sequence numbers; ESP in UDP (NAT-T)
    int64_t age_ms = -1;           // since the keying daemon installed it; -1: a static SA (as old as the run)
    const char* cipher = "";       // crypto::to_string of its cipher
    uint32_t window = 0;           // inbound: replay window size
    bool needs_rekey = false;      // outbound: its sequence numbers or hard lifetime ran out
  };
  std::vector<SaView> sas;
  // NAT traversal of the running SAs: raw ESP or ESP in UDP, with the ports of each SA's packets on the wire; and
  // whether each uses extended sequence numbers, which nothing on the wire shows (an IKE peer negotiated them).
  struct Encap {
    net::Encap mode = net::Encap::kNone;
    uint16_t sport = 0, dport = 0;
    bool esn = false;
  } encap_out, encap_in;
};

struct Stats : WorkerCounters, GatewayOtherCounters {
  uint64_t generation = 0;
  uint64_t drops[kDropCount] = {};
  uint64_t esp_table_drops[esp::kDropCount] = {};  // inbound drops before an SA was known
  std::vector<TunnelStats> tunnels;
  double elapsed_s = 0;
};

#define MG_DP_TUNNEL_DEF(name, kind, text) {#name, &TunnelStats::name, CounterKind::kind, text},
#define MG_DP_GATEWAY_DEF(name, kind, text) {#name, &Stats::name, CounterKind::kind, text},
#define MG_DP_WORKER_DEF(name, kind, text) {#name, &WorkerCounters::name, CounterKind::kind, text},
#define MG_DP_TUNNEL_WORKER_DEF(name, kind, text) {#name, &TunnelWorkerCounters::name, CounterKind::kind, text},
inline constexpr CounterDef<TunnelStats> kTunnelCounters[] = {
    MG_DP_TUNNEL_WORKER_COUNTERS(MG_DP_TUNNEL_DEF) MG_DP_TUNNEL_OTHER_COUNTERS(MG_DP_TUNNEL_DEF)};
inline constexpr CounterDef<Stats> kGatewayCounters[] = {
    MG_DP_WORKER_COUNTERS(MG_DP_GATEWAY_DEF) MG_DP_GATEWAY_OTHER_COUNTERS(MG_DP_GATEWAY_DEF)};
inline constexpr CounterDef<WorkerCounters> kWorkerCounters[] = {MG_DP_WORKER_COUNTERS(MG_DP_WORKER_DEF)};
inline constexpr CounterDef<TunnelWorkerCounters> kTunnelWorkerCounters[] = {
    MG_DP_TUNNEL_WORKER_COUNTERS(MG_DP_TUNNEL_WORKER_DEF)};
#define MG_DP_PORT_DEF(name, kind, text) {#name, &PortWorkerCounters::name, CounterKind::kind, text},
inline constexpr CounterDef<PortWorkerCounters> kPortCounters[] = {MG_DP_PORT_WORKER_COUNTERS(MG_DP_PORT_DEF)};

nlohmann::json to_json(const Stats& s);
std::string format_table(const Stats& s);

// What this build does for systemd (a sentence for `meshgate --check`): sd_notify through libsystemd, or nothing.
const char* notify_support() noexcept;

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
