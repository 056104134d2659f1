// Private to lib/dataplane: the hot half of the gateway, what the workers read and write per burst: the published
// State with its per-tunnel runtime (RtTunnel, trivially copyable, first cache line per burst), the route
// selectors, the per-worker counters and the Worker itself. The control half (Dataplane::Impl) is internal.h.
#pragma once

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "dataplane/dataplane.h"
#include "esp/esp.h"
#include "flow/flow.h"
#include "net/local.h"
#include "net/net.h"
#include "route/route.h"

namespace mg::dp {

inline constexpr uint16_t kBurst = 32;
inline constexpr uint16_t kEthLen = 14;
extern std::atomic<bool> g_stop;  // dataplane.cpp; request_stop() sets it from a signal handler

// The inner selector of what comes out of tunnel t (data in worker.cpp, echo requests the reflector answers in
// probe.cpp): its source must be routed, by the longest match, through a set of tunnels that holds t.
inline bool source_ok(const route::Table& rt, uint32_t t, bool v6, const uint8_t* src) noexcept {
  const route::SetId s = v6 ? rt.lookup6(src) : rt.lookup4(net::load_be32(src));
  return s != route::kNoRoute && rt.set(s).test(t);
}

// What a worker needs of a tunnel. The first cache line is the per-burst part; probe addresses (a few packets
// per interval) follow.
struct alignas(64) RtTunnel {
  esp::Sa* out;
  uint16_t port;        // instance port id
  uint8_t l2[kEthLen];  // dst = device next hop, src = port MAC, type = outer IP version
  uint8_t blackhole;    // fault injection: drop everything of this tunnel
  uint8_t probe;        // send probes now (liveness with probes, not down by the operator)
  uint8_t probe_v6;     // the probes (and the address answered) are IPv6: ICMPv6 echo
  uint8_t local_set;    // reflector: echo requests to `local` are answered
  uint16_t path_mtu;    // largest inner datagram that fits once encrypted (mtu.cpp)
  uint16_t mss4, mss6;  // MSS clamp of SYNs per inner IP version; 0 = off
  uint8_t held;         // an instance reset is replacing `out`: nothing more may be encrypted with it
  uint8_t no_next_hop;  // the next-hop MAC comes from the kernel (exception path) and is not known yet: drop
  uint8_t tunif;        // the tunnel has a kernel interface: decrypted packets to `local` go up to it (tunif.cpp)
  uint8_t probe_src[16], probe_dst[16];  // inner addresses of our probes (IPv4: the first 4 bytes)
  uint8_t local[16];    // reflector: our inner address on this tunnel (its probe_source)
  uint8_t icmp_src_ok;  // bit 0: icmp_src4 set, bit 1: icmp_src6 set
  uint8_t icmp_src4[4], icmp_src6[16];  // source of the too-big ICMP errors about this tunnel's packets
};
static_assert(offsetof(RtTunnel, tunif) < 64, "the per-burst fields share one cache line");
static_assert(sizeof(RtTunnel) == 128);
static_assert(std::is_trivially_copyable_v<RtTunnel>);

// The immutable state workers read. Owns the selection table; SAs are shared with the next state.
struct State {
  uint64_t generation = 0;
  std::unique_ptr<const flow::SelectionTable> sel;
  // Where destinations go (lib/route): a set id per route, and the selection table of each set (sel itself for
  // the set of every tunnel, else one of set_sel). The route table is shared by the states it did not change in.
  std::shared_ptr<const route::Table> routes;
  std::vector<std::unique_ptr<const flow::SelectionTable>> set_sel;
  const flow::SelectionTable* by_set[route::kMaxSets] = {};
  std::vector<RtTunnel> tunnels;
  std::vector<esp::SaTable*> in_table;  // by outside-port index
  bool intercept = false;  // look at decrypted ICMP: probe replies (liveness with probes) or requests (reflect)
  bool reflect = false;
};

// Counters a worker writes (one writer each; main reads them racily, every value is a monotonic 64-bit word).
struct alignas(64) TunnelCtr : TunnelWorkerCounters {};
struct alignas(64) PortCtr : PortWorkerCounters {};
struct alignas(64) WorkerCtr : WorkerCounters {
  uint64_t drops[kDropCount] = {};
};

// A token bucket of `pps` packets per second, at most one burst deep (demos and tests: net_pcap reads a pcap
// as fast as it is polled).
struct Pace {
  uint64_t tokens = 0, last = 0;
};

struct Worker {
  uint16_t id = 0;
  unsigned lcore = 0;
  std::vector<uint16_t> inside_rxq;                  // inside port queues this worker polls
  std::vector<std::vector<uint16_t>> outside_rxq;    // per outside-port index
  std::unique_ptr<flow::PinTable> pins;
  WorkerCtr ctr{};
  std::unique_ptr<TunnelCtr[]> tctr;
  std::unique_ptr<PortCtr[]> pctr;  // by index into Impl::ports
  // Liveness watchdog: per tunnel, the ms tick of the last authenticated inbound packet this worker decrypted.
  // One writer (this worker), read by main; relaxed atomics compile to plain stores and loads. Written only
  // when the tick changed, so a busy tunnel dirties its line at most once per ms.
  // Cache lines of their own: main reads them every loop, and a line shared with something the worker writes
  // per burst would bounce between the two cores.
  struct alignas(64) ProofLine {
    std::atomic<uint32_t> v[16];
  };
  std::unique_ptr<ProofLine[]> proof_lines;
  std::atomic<uint32_t>& proof(uint32_t t) noexcept { return proof_lines[t / 16].v[t % 16]; }
  Pace pace;                 // inside RX
  // Too-big ICMP token bucket (mtu.cpp): credit in 1/tsc_hz tokens, gaining icmp_rate per TSC cycle.
  uint64_t icmp_credit = 0, icmp_last = 0;
  std::vector<Pace> opace;   // per outside-port index
  std::vector<Pace> hpace;   // per host slot (outside ports, then the inside): frames handed to a twin (host_pps)
  uint32_t idle_loops = 0;   // loops in a row without a packet: the pin sweep runs in those
  std::atomic<bool> polling{false};  // set once the worker entered its loop (READY=1 waits for every worker)
  // Probes: tunnels t with t % workers == id are this worker's to probe; due times in TSC cycles.
  std::vector<uint32_t> probe_tunnels;
  std::vector<uint64_t> probe_due;   // by tunnel
  std::vector<uint32_t> busy;        // by tunnel: ms tick of the last inbound packet that was not a probe reply
  uint64_t probe_next = UINT64_MAX;  // the earliest due time: one compare per 16 loops when nothing is due
  uint32_t loops = 0;
  uint64_t rng = 0x9e3779b97f4a7c15ull;
  uint16_t probe_seq = 0;
  // Probes and reflected replies that a full TX queue refused, kept as plaintext and tried again first thing
  // every loop until `until` (TSC). Under overload the TX ring is full most of the time; dropping a probe there
  // would turn a busy tunnel into a false alarm (three refused probes in a row = down), so control traffic
  // waits its turn ahead of the next data burst instead. Each try encrypts a fresh copy: a probe encrypted once
  // and sent after the data that overtook it meanwhile would reach the peer below its replay window.
  struct CtlTx {
    rte_mbuf* m;      // inner packet, not yet encrypted
    uint64_t until;
    uint32_t tunnel;
    uint8_t kind;     // CtlKind
  };
  static constexpr uint16_t kCtlMax = 32;
  CtlTx ctl[kCtlMax];
  uint16_t nctl = 0;
  // Tunnel interfaces (tunif.cpp): what the kernel sent on the interfaces of this worker's tunnels (t % workers),
  // from main; and per tunnel, the token bucket of what goes up to its interface (interface_pps).
  rte_ring* tdown = nullptr;
  std::vector<Pace> tpace;
};

// What a worker encrypts on its own besides data (probe.cpp send_one): each kind has its own counters.
enum class CtlKind : uint8_t { kProbe, kReflect, kKernel };

struct PortRt {
  std::string name;
  uint16_t id = 0;
  uint16_t nrx = 0, ntx = 0;
  rte_ether_addr mac{};
};

}  // namespace mg::dp
