// Private to lib/dataplane: the types its files share. One file per concern, as in DPDK's lib/ipsec:
//   worker.cpp   the per-packet path: outbound, inbound, the worker loop
//   mtu.cpp      what does not fit a tunnel: MSS clamping, too-big ICMP, IPv4 fragmentation before encryption
//   probe.cpp    liveness probes, the reflector, the deferred probe queue
//   host.cpp     the exception path: outside ports' kernel twins, next hops from the kernel
//   tunif.cpp    tunnel interfaces: each tunnel's own kernel interface (BGP, BFD) in and out of that tunnel
//   kroute.cpp   the route table: static routes and those learned from a kernel table
//   announce.cpp the prefixes this box can reach now, in a kernel table for the routing daemon to announce
//   control.cpp  main's changes: publish (RCU), apply, operator commands, drains, events and faults
//   liveness_poll.cpp  the watchdog ticks -> detector -> verdicts published like a command
//   reset.cpp    instance reset: new SAs, inbound SA tables
//   audit.cpp    the audit trail: operator commands, events, liveness verdicts, SA changes
//   stats.cpp    counters collected by the tables of dataplane.h, JSON, text table
//   mirror.cpp   the control block's mirror
//   telemetry.cpp  DPDK telemetry (/meshgate/...): totals, tunnels, SAs, workers
//   setup.cpp    EAL, ports, queues, workers, SAs
//   notify.cpp   systemd's notify protocol: READY, STATUS, WATCHDOG, STOPPING
//   dataplane.cpp  the public façade and the main loop
// Internal code calls Impl, never the public Dataplane methods. What the workers read and write per burst (tunnel
// runtime, the published State, counters, Worker) is in runtime.h; the control side (Impl) is here.
#pragma once

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>

#include <algorithm>
#include <array>
#include <tuple>
#include <atomic>
#include <condition_variable>
#include <map>
#include <cstring>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "ctrl/ctrl.h"
#include "dataplane/dataplane.h"
#include "dataplane/runtime.h"
#include "dataplane/sa_config.h"
#include "flow/flow.h"
#include "hostif/hostif.h"
#include "keying/keying.h"
#include "log/log.h"
#include "net/local.h"
#include "seqstate/seqstate.h"

namespace mg::dp {

// The one conversion of a tunnel or instance state to the control block's wire value.
inline ctrl::State to_wire(AdminState s) noexcept {
  switch (s) {
    case AdminState::kUp: return ctrl::State::kUp;
    case AdminState::kDraining: return ctrl::State::kDrain;
    case AdminState::kDown: break;
  }
  return ctrl::State::kDown;
}
inline AdminState from_wire(ctrl::State s) noexcept {
  switch (s) {
    case ctrl::State::kUp: return AdminState::kUp;
    case ctrl::State::kDrain: return AdminState::kDraining;
    case ctrl::State::kDown: break;
  }
  return AdminState::kDown;
}
// The mirror's liveness word: 0 off, then the detector's states (ctrl.h TunnelInfo::liveness).
inline uint32_t liveness_wire(bool enabled, LiveState s) noexcept {
  if (!enabled) return 0;
  switch (s) {
    case LiveState::kUp: return 1;
    case LiveState::kDown: return 2;
    case LiveState::kHolding: return 3;
    case LiveState::kSuppressed: return 4;
  }
  return 0;
}

// What an apply did: refused (err says why), changed and published, or a no-op (nothing published).
enum class Applied : uint8_t { kRefused, kChanged, kNoChange };

struct Dataplane::Impl {
  config::Gateway gw;
  config::PmdConfig pmd;
  Options opt;
  Model model{gw};
  rte_mempool* pool = nullptr;
  std::vector<PortRt> ports;            // every port used
  uint16_t inside = 0;                  // index into ports
  std::vector<uint16_t> outside;        // indexes into ports (distinct), in order of first use
  std::vector<uint16_t> instance_port;  // instance -> index into ports
  std::vector<std::unique_ptr<esp::Sa>> sa_out, sa_in;  // by tunnel
  std::vector<std::unique_ptr<esp::SaTable>> in_tables; // by outside index
  std::shared_ptr<const route::Table> routes;  // [inside] prefixes (every tunnel) and [[route]] tables (setup.cpp)
  std::vector<std::unique_ptr<Worker>> workers;
  rte_rcu_qsbr* qsbr = nullptr;
  std::atomic<State*> state{nullptr};
  uint64_t generation = 0;
  // Flows moved (down + drain deadline, as the pin tables count them) when the current state was published: the
  // gateway counter moved_last_change is what moved since (read by the telemetry thread too).
  std::atomic<uint64_t> moved_at_publish{0};
  uint64_t tsc_hz = 0;
  uint64_t start_tsc = 0;
  uint8_t inside_l2[12];  // dst, src
  nlohmann::json report = nlohmann::json::object();
  mutable std::mutex snap_mu;  // guards nothing the workers touch: the model, SAs and liveness for readers
  bool eal_up = false;
  bool ports_up = false;
  std::unique_ptr<ctrl::Block> ctrl;           // the operators' control block (null when disabled)
  std::vector<esp::SaStats> retired_out, retired_in;  // counters of SAs replaced by resets, by tunnel
  std::vector<uint32_t> resets;                // by instance
  Stats baseline;                              // `clear counters` subtracts this (workers never see a reset)
  uint64_t cmds_ok = 0, cmds_rejected = 0;
  std::vector<bool> suspended;                 // by tunnel: inbound SA out of the tables during a reset
  esp::SaStats retired_tables;                 // pre-SA drops of inbound tables replaced by resets
  std::vector<std::unique_ptr<esp::SaTable>> retiring_tables;  // replaced, workers may still count on them
  Liveness live;                               // main's verdicts; read by stats() under snap_mu
  std::vector<std::vector<uint32_t>> proof_seen;  // by worker, by tunnel: the last watchdog value main read
  nlohmann::json live_events = nlohmann::json::array();
  bool live_any = false;
  std::vector<uint8_t> blackhole;              // by tunnel: fault injection (Options::faults)
  std::vector<uint32_t> probe_iv_ms;           // by tunnel: its liveness interval (immutable once workers run)
  bool probing = false;                        // liveness with probes: workers run send_probes
  std::vector<config::TunnelMtu> tunnel_mtu;   // by tunnel: link and path MTU, MSS clamps (setup_mtu)
  std::unique_ptr<seqstate::Store> seq_store;  // null with Options::unsafe_volatile_seq
  std::vector<std::unique_ptr<seqstate::Reservation>> seq_res;  // by tunnel: its outbound SA's reservation
  std::vector<uint8_t> seq_failing;            // by tunnel: the last extension failed (reported once)
  // The durable writes of extensions run on their own thread (seq.cpp): a slow disk (an fsync can take seconds
  // under other I/O) must not stall main's loop, which answers commands and runs liveness. One write in flight
  // per tunnel; seq_gen[t] tells a finished write whether its reservation is still the tunnel's.
  struct SeqSlot {
    bool busy = false, done = false, ok = false;
    uint64_t gen = 0, next = 0;
    seqstate::Fingerprint fp{};
    std::string err;
  };
  std::vector<SeqSlot> seq_slots;               // guarded by seq_mu
  std::vector<uint64_t> seq_gen;                // main only
  std::mutex seq_mu;
  std::condition_variable seq_cv;
  bool seq_quit = false;                        // guarded by seq_mu
  std::thread seq_writer;
  void seq_writer_main();
  void seq_stop() noexcept;
  // keying.cpp: SAs of tunnels keyed by IKE, installed through the keying socket. sa_out[t] is the one in use (null
  // until the first is installed); ike_out_old[t] holds those a newer one replaced (make-before-break), kept, unused,
  // until the daemon deletes them; ike_in[t] every inbound SA installed (old and new during a rekey).
  std::vector<std::vector<std::unique_ptr<esp::Sa>>> ike_in, ike_out_old;
  std::unique_ptr<keying::Server> keying;
  struct IkeSaInfo {
    uint32_t reqid = 0;
    uint64_t soft_bytes = 0, hard_bytes = 0, soft_packets = 0, hard_packets = 0;
    uint64_t last_packets = 0;   // packets when last sampled, and when that count last changed (ms tick)
    uint32_t last_change_ms = 0;
    bool used = false, soft_sent = false, hard_sent = false;
    uint32_t installed_ms = 0;
    uint64_t conn = 0;          // the keying connection that installed it (keying::Server::Peer::conn)
    uint32_t orphan_ms = 0;     // when it was first seen replaced while its daemon was gone (0: not yet)
  };
  std::map<const esp::Sa*, IkeSaInfo> ike_info;
  std::map<uint32_t, std::pair<uint32_t, uint32_t>> spi_offered;  // GET_SPI: spi -> (tunnel, ms tick offered)

  // host.cpp: the exception path. By outside index, that port's kernel twin (pmd_config `host`), if it has one.
  // Workers hand the host's frames to main through `up` (many producers); main writes them to the twin, reads what
  // the kernel sends and gives it to worker 0 through `down`, who sends it out the port on its own TX queue (the
  // port's queues are the workers'). Set up before the workers run; only the rings change after.
  struct HostPort {
    uint16_t port = 0;            // the port it serves (index into ports)
    uint16_t twin = UINT16_MAX;   // index into ports; UINT16_MAX: none
    int ifindex = 0;              // the twin's kernel interface
    rte_ring* up = nullptr;
    rte_ring* down = nullptr;
    net::LocalAddrs local;        // the instances' addresses on this port (the inside port: [inside] ipv4 / ipv6)
    uint64_t pps = 0;             // per worker
  };
  std::vector<HostPort> host;            // by outside index, then the inside port's (inside_slot())
  size_t inside_slot() const noexcept { return outside.size(); }
  bool inside_twin = false;              // the inside port has a twin: its host's frames go up (worker.cpp)
  std::vector<PortCtr> main_pctr;        // by port index: main's share of the port counters (the twins' traffic)
  std::vector<uint64_t> host_ring_full;  // by host slot: kernel frames the ring to worker 0 refused (main)
  bool any_host = false;
  std::unique_ptr<hostif::Netlink> nl;
  // Next hops learned from the kernel, by tunnel: a device without a static `next_hop_mac` whose tunnel's instance
  // port has a twin. The MAC goes into RtTunnel::l2 at publish(); until one is known the tunnel drops (no_next_hop).
  struct NextHop {
    bool learn = false, known = false;
    uint8_t mac[6] = {};
    net::IpAddr via;
    hostif::Netlink::NhStatus last = hostif::Netlink::NhStatus::kError;
    std::string last_err;
  };
  std::vector<NextHop> nh;
  uint64_t nh_next_tsc = 0, nh_refresh_tsc = 0;
  int host_setup(std::string* err);  // after the ports started: twins' MAC, MTU, link, addresses; rings
  void host_poll() noexcept;         // main loop: up -> twins, twins -> down
  void host_tick();                  // main loop: next hops from the kernel (publishes a change)
  void host_drain() noexcept;        // after the workers stopped: frames left in the rings go back to the pool
  void host_send_down(Worker& w) noexcept;  // worker 0: frames from the kernel out their port
  // A worker's frames for the host of outside port oidx (Ethernet header in place): rate limit, then the ring.
  void host_up(Worker& w, size_t oidx, rte_mbuf* const pkts[], uint16_t n) noexcept;

  // tunif.cpp: tunnel interfaces (config `interface`). By tunnel, its TUN (null: none). Workers hand decrypted
  // packets for it to main through tunif_up (many producers, hash.usr = tunnel); main writes them to the kernel,
  // reads what the kernel sends and gives it to the tunnel's worker (t % workers) through that worker's tdown.
  std::vector<std::unique_ptr<hostif::Tun>> tunif;
  struct TunIfCtr {
    uint64_t refused = 0, unwritten = 0;
  };
  std::vector<TunIfCtr> tunif_ctr;  // by tunnel, main's (stats: kernel_refused, kernel_unwritten)
  rte_ring* tunif_up = nullptr;
  bool any_tunif = false;
  int tunif_setup(std::string* err);  // after setup_mtu: the TUNs, their addresses, MTU and link; the rings
  void tunif_poll() noexcept;         // main loop: up -> kernel, kernel -> the tunnels' workers
  void tunif_drain() noexcept;        // after the workers stopped: rings emptied and freed, TUNs closed
  // A decrypted packet on tunnel t with a kernel interface: true when it was the interface's (taken or dropped).
  bool tunif_up_one(Worker& w, const State& st, uint32_t t, rte_mbuf* m) noexcept;
  void tunif_send(Worker& w, const State& st) noexcept;  // a worker: its tunnels' kernel packets into the tunnels

  uint32_t now_ms() const noexcept { return uint32_t((rte_get_tsc_cycles() - start_tsc) * 1000 / tsc_hz); }

  // kroute.cpp: the route table: static routes ([inside], [[route]]) and those learned from a kernel table
  // ([routing] kernel_table), rebuilt and published when that table changes (at most once per update_interval_ms).
  struct KernelRoutes {
    std::unique_ptr<hostif::RouteWatch> watch;
    bool dirty = false;
    uint64_t next_tsc = 0;
    uint64_t updates = 0, failed = 0, learned = 0, refused = 0;
    std::string last_err;  // said once per different error
  } kr;
  // The table of the static routes and `learned` (merged by prefix: a prefix in both reaches the union of tunnels).
  bool build_routes(const std::vector<route::Route>& learned, std::string* err);
  bool routes_setup(std::string* err);  // after tunif_setup: the watch, and the table's routes as they are now
  // announce.cpp: [routing] announce_table, the prefixes this box can reach now (synced by publish()).
  struct Announce {
    struct Key {
      uint8_t family;
      std::array<uint8_t, 16> addr;
      uint8_t len;
      bool operator<(const Key& o) const noexcept {
        return std::tie(family, addr, len) < std::tie(o.family, o.addr, o.len);
      }
    };
    struct Table {
      uint32_t id;                // the kernel table
      uint32_t tunnel;            // UINT32_MAX: [routing] announce_table; else this tunnel's device_prefixes
      std::map<Key, int> now;     // announced: prefix -> the interface it goes out of
    };
    bool on = false;
    std::vector<Table> tables;
    uint64_t changes = 0, failed = 0;
    std::string last_err;
    size_t inside_routes() const noexcept {
      return !tables.empty() && tables[0].tunnel == UINT32_MAX ? tables[0].now.size() : 0;
    }
  } ann;
  bool announce_setup(std::string* err);  // before the first publish: leftovers of an earlier run removed
  void announce_sync();                   // publish(): the tables made to match the state
  void announce_apply(Announce::Table& tb, const std::map<Announce::Key, int>& want);
  void announce_clear() noexcept;         // at stop, before the interfaces go
  void routes_poll();                   // main loop
  void learn_routes();                  // read the kernel table, build, publish (or keep the old table, counted)
  int setup(std::string* err);
  int setup_ports(std::map<std::string, uint16_t>* by_name, std::string* err);
  int start_port(const PortRt& pr, const config::PortSpec& ps, std::string* err);
  void close_ports() noexcept;
  // Inbound SA tables, one per outside port, of the tunnels whose instance uses that port (suspended ones left
  // out). With `old`, the tables replaced go there: the caller keeps them alive until a publish() synchronised.
  bool build_tables(std::string* err);
  void retire_tables();

  // worker.cpp: the per-packet path
  int worker_main(Worker& w);
  uint16_t outbound(Worker& w, const State& st, uint16_t q) noexcept;  // returns packets received
  void send_tunnel(Worker& w, const State& st, flow::TunnelId t, rte_mbuf** grp, uint16_t g) noexcept;
  uint16_t inbound(Worker& w, const State& st, uint16_t oidx, uint16_t q) noexcept;

  // mtu.cpp: the step between flow placement and encryption (and the MSS clamp of decrypted SYNs)
  int setup_mtu(std::string* err);                     // after setup(): each tunnel's figures from its port
  int mtu_of(const config::Gateway& g, size_t t, config::TunnelMtu* out, std::string* err) const;
  void fill_mtu(RtTunnel& r, uint32_t t) const noexcept;  // publish()
  // Whether any of pkts[0..n) is over the path MTU (the common case: none, and nothing else happens).
  static bool any_too_big(const RtTunnel& rt, rte_mbuf* const pkts[], uint16_t n) noexcept;
  // pkts[0..n) -> out[0..k): packets that fit, in order, with fragments in place of the IPv4 packets that were cut;
  // the others are answered (ICMP), freed and counted. out has room for cap (fragments beyond it: frag_failed).
  uint16_t fit_mtu(Worker& w, const RtTunnel& rt, TunnelCtr& tc, rte_mbuf* const pkts[], uint16_t n,
                   rte_mbuf* out[], uint16_t cap) noexcept;
  static void clamp_mss(const RtTunnel& rt, TunnelCtr& tc, rte_mbuf* const pkts[], uint16_t n) noexcept;
  void send_too_big(Worker& w, const RtTunnel& rt, TunnelCtr& tc, const rte_mbuf* m) noexcept;
  uint16_t fragment(Worker& w, const RtTunnel& rt, TunnelCtr& tc, rte_mbuf* m, rte_mbuf* out[], uint16_t k,
                    uint16_t cap) noexcept;
  bool icmp_token(Worker& w) noexcept;

  // probe.cpp
  void probe_start(Worker& w) noexcept;
  void probe_stop(Worker& w) noexcept;
  bool intercept(Worker& w, const State& st, rte_mbuf* m) noexcept;
  void send_one(Worker& w, const RtTunnel& rt, uint32_t t, rte_mbuf* m, CtlKind kind) noexcept;
  bool try_send(Worker& w, const RtTunnel& rt, TunnelCtr& tc, rte_mbuf* m) noexcept;
  void flush_ctl(Worker& w, const State& st) noexcept;
  void send_probes(Worker& w, const State& st) noexcept;

  // control.cpp: main lcore only
  void publish();
  Applied apply_tunnel(uint32_t t, AdminState s, std::optional<uint32_t> deadline_ms, std::string* msg);
  Applied apply_instance(uint32_t i, AdminState s, std::optional<uint32_t> deadline_ms, std::string* msg);
  Applied apply_weight(uint32_t t, uint32_t w, std::string* msg);
  Applied apply_mode(config::Mode m, std::string* msg);
  void handle_commands();
  void expire_drains();
  // Due --event and --fault entries; `fired` marks the ones done, `events` gets their report.
  void run_events(double el, uint64_t inside_rx, std::vector<bool>& fired, std::vector<bool>& faulted,
                  nlohmann::json& events);

  // audit.cpp: one NOTICE line on meshgate.audit per command, event, verdict, SA change (never a key)
  std::string command_text(const ctrl::Command& c, bool valid) const;
  void audit_command(const ctrl::Command& c, bool valid, const ctrl::Reply& r, const std::string& msg);
  void audit_event(const Event& ev, double el, bool ok, const std::string& err);
  void audit_verdict(uint32_t t, bool up, int32_t silence_ms, bool damped);
  void audit_sa(size_t t, bool out, const esp::Sa& sa, std::string_view what);

  // liveness_poll.cpp
  void liveness_start();
  void liveness_poll(double el);

  // reset.cpp
  bool reset_instance(uint32_t i, std::string* err);

  // keying.cpp: the keying interface (lib/keying) on main
  bool keying_open(std::string* err);   // setup: the socket, when a tunnel is keyed by IKE or [keying] names one
  void keying_poll();                   // main loop: requests, last-use sampling, lifetimes -> EXPIRE
  mg_keying_reply keying_handle(const keying::Request& r);
  uint64_t keying_conn = 0;             // the connection whose request keying_handle is answering
  // Deletes tunnel t's SA (direction, SPI): out of the tables, published, counters kept, key wiped. False: none.
  bool keying_delete(size_t t, bool out, uint32_t spi, const char* why);
  void keying_orphans();                // SAs of a daemon that is gone, once the tunnel has newer ones
  uint32_t orphans_next_ms = 0;
  // Every SA of tunnel t (static, current, replaced, inbound ones): fn(sa, outbound).
  template <class F>
  void for_each_sa(size_t t, F fn) const {
    if (sa_out[t]) fn(*sa_out[t], true);
    if (sa_in[t]) fn(*sa_in[t], false);
    if (t < ike_out_old.size())
      for (const auto& s : ike_out_old[t]) fn(*s, true);
    if (t < ike_in.size())
      for (const auto& s : ike_in[t]) fn(*s, false);
  }

  // seq.cpp: outbound sequence numbers across restarts and resets (lib/seqstate)
  bool seq_open(std::string* err);   // the state directory, before anything else is set up
  bool seq_setup(std::string* err);  // every outbound SA, before any worker runs
  // Reads the key's mark, reserves its first block durably, starts `sa` after the mark under that limit.
  bool seq_begin(const config::SaSpec& spec, esp::Sa& sa, std::unique_ptr<seqstate::Reservation>* res,
                 std::string* err);
  bool seq_begin_key(const std::vector<uint8_t>& keymat, bool esn, uint32_t spi, esp::Sa& sa,
                     std::unique_ptr<seqstate::Reservation>* res, std::string* err);
  void seq_poll(double now_s);

  // stats.cpp
  Stats collect() const;
  Stats stats() const;  // collect() less the `clear counters` baseline
  void clear_counters();
  // The ports' own counters, sampled by main every 100 ms keeping each one's largest value: a driver may zero
  // them when its link goes (net_memif does when the peer leaves), and the exit report is read after that.
  std::vector<rte_eth_stats> pmd_seen;
  void sample_ports() noexcept;
  PortWorkerCounters port_worker_totals(size_t port) const noexcept;  // every worker's and main's, summed
  nlohmann::json port_stats();

  // notify.cpp (main only)
  struct Notify {
    bool on = false, ready = false;
    uint64_t wd_period = 0, wd_next = 0;  // TSC cycles; 0: no watchdog asked for
    uint64_t status_gen = UINT64_MAX;     // the generation STATUS was last computed for
    std::string status;
  } notify;
  void notify_start() noexcept;
  void notify_poll(uint64_t now);
  void notify_stopping() noexcept;

  // mirror.cpp
  void refresh_mirror();
  // telemetry.cpp
  void register_telemetry();
  void unregister_telemetry() noexcept;
};

}  // namespace mg::dp
