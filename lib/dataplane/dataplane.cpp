#include "dataplane/dataplane.h"

#include <fmt/core.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_pdump.h>
#include <rte_rcu_qsbr.h>
#include <rte_telemetry.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "ctrl/ctrl.h"
#include "dataplane/sa_config.h"
#include "flow/flow.h"
#include "net/net.h"

namespace mg::dp {

namespace {

constexpr uint16_t kBurst = 32;
constexpr uint16_t kEthLen = 14;
std::atomic<bool> g_stop{false};

struct Prefix4 {
  uint32_t net, mask;
};
struct Prefix6 {
  uint8_t net[16];
  uint8_t len;
};

// What a worker needs of a tunnel. The first cache line is the per-burst part; probe addresses (a few packets
// per interval) follow.
struct alignas(64) RtTunnel {
  esp::Sa* out;
  uint16_t port;   // instance port id
  uint8_t l2[kEthLen];  // dst = device next hop, src = port MAC, type = outer IP version
  uint8_t blackhole;    // fault injection: drop everything of this tunnel
  uint8_t probe;        // send probes now (liveness with probes, not down by the operator)
  uint8_t probe_v6;     // the probes (and the address answered) are IPv6: ICMPv6 echo
  uint8_t local_set;    // reflector: echo requests to `local` are answered
  uint8_t probe_src[16], probe_dst[16];  // inner addresses of our probes (IPv4: the first 4 bytes)
  uint8_t local[16];    // reflector: our inner address on this tunnel (its probe_source)
};
static_assert(offsetof(RtTunnel, local_set) < 64, "the per-burst fields share one cache line");
static_assert(sizeof(RtTunnel) == 128);

// Probe packets: ICMP/ICMPv6 echo with this identifier and payload magic; the payload also carries the TSC at
// send, so a reply gives the round trip.
constexpr uint16_t kProbeId = 0x6d67;  // "mg"
constexpr uint8_t kProbeMagic[8] = {'m', 'g', '-', 'p', 'r', 'o', 'b', 'e'};
constexpr uint16_t kProbeLen4 = 20 + 8 + 16;
constexpr uint16_t kProbeLen6 = 40 + 8 + 16;
constexpr uint8_t kIcmp6EchoRequest = 128, kIcmp6EchoReply = 129;

// RFC 1624 incremental update of a one's complement checksum when a 16-bit word changes from `from` to `to`.
inline uint16_t csum_update(uint16_t sum, uint16_t from, uint16_t to) noexcept {
  uint32_t x = uint32_t(uint16_t(~sum)) + uint16_t(~from) + to;
  x = (x & 0xffff) + (x >> 16);
  x = (x & 0xffff) + (x >> 16);
  return uint16_t(~x);
}

}  // namespace

const char* to_string(Drop d) noexcept {
  switch (d) {
    case Drop::kInsideNotIp: return "inside_not_ip";
    case Drop::kNotRouted: return "not_routed";
    case Drop::kNoTunnel: return "no_tunnel";
    case Drop::kOutsideNotIp: return "outside_not_ip";
    case Drop::kInnerSelector: return "inner_selector";
    case Drop::kTxFull: return "tx_full";
    case Drop::kCount: break;
  }
  return "?";
}

// The immutable state workers read. Owns the selection table; SAs are shared with the next state.
struct State {
  uint64_t generation = 0;
  std::unique_ptr<const flow::SelectionTable> sel;
  std::vector<RtTunnel> tunnels;
  std::vector<esp::SaTable*> in_table;  // by outside-port index
  bool intercept = false;  // look at decrypted ICMP: probe replies (liveness with probes) or requests (reflect)
  bool reflect = false;
};

struct alignas(64) TunnelCtr {
  uint64_t packets_out, packets_in, bytes_in, tx_full;
  uint64_t probes_out, probe_replies_in, reflect_in, reflected, probe_drops, fault_drops;
  uint64_t probes_deferred;  // probes and replies that waited for room in the TX queue (then sent or dropped)
  uint64_t rtt_sum_us, rtt_max_us;  // probe round trips (replies to this worker's probes)
};

struct alignas(64) WorkerCtr {
  uint64_t inside_rx, inside_tx, outside_rx, outside_tx;
  uint64_t drops[kDropCount];
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
  std::vector<Pace> opace;   // per outside-port index
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
    uint8_t reflect;
  };
  static constexpr uint16_t kCtlMax = 32;
  CtlTx ctl[kCtlMax];
  uint16_t nctl = 0;
};

struct PortRt {
  std::string name;
  uint16_t id = 0;
  uint16_t nrx = 0, ntx = 0;
  rte_ether_addr mac{};
};

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
  std::vector<Prefix4> pfx4;
  std::vector<Prefix6> pfx6;
  std::vector<std::unique_ptr<Worker>> workers;
  rte_rcu_qsbr* qsbr = nullptr;
  std::atomic<State*> state{nullptr};
  uint64_t generation = 0;
  uint64_t tsc_hz = 0;
  uint64_t start_tsc = 0;
  uint8_t inside_l2[12];  // dst, src
  nlohmann::json report = nlohmann::json::object();
  mutable std::mutex snap_mu;  // guards nothing the workers touch: the model snapshot for telemetry
  bool eal_up = false;
  bool ports_up = false;
  std::unique_ptr<ctrl::Block> ctrl;           // the operators' control block (null when disabled)
  std::vector<esp::SaStats> retired_out, retired_in;  // counters of SAs replaced by resets, by tunnel
  std::vector<uint32_t> resets;                // by instance
  Stats baseline;                              // `clear counters` subtracts this (workers never see a reset)
  uint64_t cmds_ok = 0, cmds_rejected = 0;
  std::vector<bool> suspended;                 // by tunnel: inbound SA out of the tables during a reset
  esp::SaStats retired_tables;                 // pre-SA drops of inbound tables replaced by resets
  Liveness live;                               // main's verdicts; read by stats() under snap_mu
  std::vector<std::vector<uint32_t>> proof_seen;  // by worker, by tunnel: the last watchdog value main read
  nlohmann::json live_events = nlohmann::json::array();
  bool live_any = false;
  std::vector<uint8_t> blackhole;              // by tunnel: fault injection (Options::faults)

  // Inbound SA tables, one per outside port, of the tunnels whose instance uses that port (suspended ones left
  // out). The caller keeps the old tables alive until a publish() has synchronised.
  bool build_tables(std::string* err, std::vector<std::unique_ptr<esp::SaTable>>* old = nullptr) {
    std::vector<std::unique_ptr<esp::SaTable>> next;
    for (uint16_t pi : outside) {
      std::vector<esp::Sa*> list;
      for (size_t t = 0; t < gw.tunnels.size(); ++t)
        if (instance_port[gw.tunnels[t].instance] == pi && !suspended[t]) list.push_back(sa_in[t].get());
      std::string e;
      auto tb = esp::SaTable::build(list, uint16_t(workers.size()), &e);
      if (!tb) {
        *err = fmt::format("inbound SA table of port '{}': {}", ports[pi].name, e);
        return false;
      }
      next.push_back(std::move(tb));
    }
    in_tables.swap(next);
    if (old != nullptr) {
      std::lock_guard lk(snap_mu);
      for (const auto& tb : next) {
        const esp::SaStats ts = tb->stats();
        for (size_t r = 0; r < esp::kDropCount; ++r) retired_tables.drops[r] += ts.drops[r];
      }
      *old = std::move(next);
    }
    return true;
  }
  bool reset_instance(uint32_t i, std::string* err);
  void liveness_start();
  void liveness_poll(const Dataplane& dp, double el);
  void handle_commands(Dataplane& dp);
  void refresh_mirror(const Dataplane& dp);

  std::vector<uint32_t> probe_iv_ms;  // by tunnel: its liveness interval (immutable once workers run)
  uint32_t live_interval_ms(uint32_t t) const noexcept { return probe_iv_ms[t]; }
  uint32_t now_ms() const noexcept { return uint32_t((rte_get_tsc_cycles() - start_tsc) * 1000 / tsc_hz); }
  void publish();
  bool routed4(uint32_t dst) const noexcept {
    for (const auto& p : pfx4)
      if ((dst & p.mask) == p.net) return true;
    return false;
  }
  bool routed6(const uint8_t* a) const noexcept {
    for (const auto& p : pfx6) {
      const uint8_t full = p.len / 8, rem = p.len % 8;
      if (std::memcmp(a, p.net, full) != 0) continue;
      if (rem && ((a[full] ^ p.net[full]) & uint8_t(0xff << (8 - rem)))) continue;
      return true;
    }
    return false;
  }
  uint16_t paced(Pace& p, uint64_t pps) const noexcept {
    const uint64_t t = rte_get_tsc_cycles();
    p.tokens = std::min<uint64_t>(p.tokens + (t - p.last) * pps / tsc_hz, kBurst);
    if (p.tokens || t - p.last > tsc_hz) p.last = t;
    return uint16_t(p.tokens);
  }
  void outbound(Worker& w, const State& st, uint16_t q) noexcept;
  void send_tunnel(Worker& w, const State& st, flow::TunnelId t, rte_mbuf** grp, uint16_t g) noexcept;
  void inbound(Worker& w, const State& st, uint16_t oidx, uint16_t q) noexcept;
  bool intercept(Worker& w, const State& st, rte_mbuf* m) noexcept;
  void send_one(Worker& w, const RtTunnel& rt, uint32_t t, rte_mbuf* m, bool reflect) noexcept;
  bool try_send(Worker& w, const RtTunnel& rt, rte_mbuf* m) noexcept;
  void flush_ctl(Worker& w, const State& st) noexcept;
  void send_probes(Worker& w, const State& st) noexcept;
  bool probing = false;  // liveness with probes: workers run send_probes
  int worker_main(Worker& w);
};

namespace {

int launch_worker(void* arg) {
  auto* pair = static_cast<std::pair<Dataplane::Impl*, Worker*>*>(arg);
  return pair->first->worker_main(*pair->second);
}

bool is_ip_ethertype(const uint8_t* eth) noexcept {
  return (eth[12] == 0x08 && eth[13] == 0x00) || (eth[12] == 0x86 && eth[13] == 0xdd);
}

}  // namespace

// ------------------------------------------------------------------------------------------------ hot path

void Dataplane::Impl::outbound(Worker& w, const State& st, uint16_t q) noexcept {
  const PortRt& ip = ports[inside];
  const uint16_t want = opt.pace_pps ? paced(w.pace, opt.pace_pps) : kBurst;
  if (want == 0) return;
  rte_mbuf* pkts[kBurst];
  const uint16_t n = rte_eth_rx_burst(ip.id, q, pkts, want);
  if (n == 0) return;
  if (opt.pace_pps) w.pace.tokens -= n;
  w.ctr.inside_rx += n;

  const uint8_t* l3[kBurst];
  uint32_t len[kBurst];
  rte_mbuf* ok[kBurst];
  uint16_t k = 0;
  for (uint16_t i = 0; i < n; ++i) {
    rte_mbuf* m = pkts[i];
    const uint8_t* e = rte_pktmbuf_mtod(m, const uint8_t*);
    if (rte_pktmbuf_data_len(m) < kEthLen + 20 || !is_ip_ethertype(e)) {
      ++w.ctr.drops[size_t(Drop::kInsideNotIp)];
      rte_pktmbuf_free(m);
      continue;
    }
    const uint8_t* p = e + kEthLen;
    const bool v6 = e[12] == 0x86;
    const bool routed = v6 ? (rte_pktmbuf_data_len(m) >= kEthLen + 40 && routed6(p + 24))
                           : routed4(net::load_be32(p + 16));
    if (!routed) {
      ++w.ctr.drops[size_t(Drop::kNotRouted)];
      rte_pktmbuf_free(m);
      continue;
    }
    rte_pktmbuf_adj(m, kEthLen);
    // Ethernet pads short frames to 60 bytes: only the IP datagram goes into the tunnel.
    const uint32_t ip_len = v6 ? 40u + net::load_be16(p + 4) : net::load_be16(p + 2);
    if (ip_len < rte_pktmbuf_pkt_len(m) && ip_len >= (v6 ? 40u : 20u)) rte_pktmbuf_trim(m, uint16_t(rte_pktmbuf_pkt_len(m) - ip_len));
    l3[k] = p;
    len[k] = rte_pktmbuf_pkt_len(m);
    ok[k++] = m;
  }
  if (k == 0) return;

  uint64_t hashes[kBurst];
  flow::TunnelId tun[kBurst];
  flow::spread_burst(*w.pins, *st.sel, l3, len, k, now_ms(), hashes, tun);

  // Group by tunnel, keeping each tunnel's packets in arrival order. A burst of one tunnel needs no grouping.
  bool one = tun[0] != flow::kNoTunnel;
  for (uint16_t i = 1; i < k && one; ++i) one = tun[i] == tun[0];
  if (one) {
    send_tunnel(w, st, tun[0], ok, k);
    return;
  }
  uint8_t done[kBurst] = {};
  rte_mbuf* grp[kBurst];
  for (uint16_t i = 0; i < k; ++i) {
    if (done[i]) continue;
    const flow::TunnelId t = tun[i];
    if (t == flow::kNoTunnel) {
      ++w.ctr.drops[size_t(Drop::kNoTunnel)];
      rte_pktmbuf_free(ok[i]);
      continue;
    }
    uint16_t g = 0;
    for (uint16_t j = i; j < k; ++j) {
      if (!done[j] && tun[j] == t) {
        grp[g++] = ok[j];
        done[j] = 1;
      }
    }
    send_tunnel(w, st, t, grp, g);
  }
}

// Encrypts one tunnel's packets and sends them on its instance port. Bytes are counted by the SA.
void Dataplane::Impl::send_tunnel(Worker& w, const State& st, flow::TunnelId t, rte_mbuf** grp, uint16_t g) noexcept {
  const RtTunnel& rt = st.tunnels[t];
  TunnelCtr& tc = w.tctr[t];
  if (rt.blackhole) [[unlikely]] {
    for (uint16_t j = 0; j < g; ++j) rte_pktmbuf_free(grp[j]);
    tc.fault_drops += g;
    return;
  }
  const uint16_t e = esp::encap_burst(*rt.out, w.id, grp, g);
  for (uint16_t j = e; j < g; ++j) rte_pktmbuf_free(grp[j]);  // reason counted in the SA
  for (uint16_t j = 0; j < e; ++j) {
    uint8_t* l2 = reinterpret_cast<uint8_t*>(rte_pktmbuf_prepend(grp[j], kEthLen));
    std::memcpy(l2, rt.l2, kEthLen);
  }
  const uint16_t s = rte_eth_tx_burst(ports[rt.port].id, w.id, grp, e);
  for (uint16_t j = s; j < e; ++j) rte_pktmbuf_free(grp[j]);
  tc.packets_out += s;
  tc.tx_full += e - s;
  w.ctr.outside_tx += s;
  w.ctr.drops[size_t(Drop::kTxFull)] += e - s;
}

void Dataplane::Impl::inbound(Worker& w, const State& st, uint16_t oidx, uint16_t q) noexcept {
  const PortRt& op = ports[outside[oidx]];
  const uint16_t want = opt.pace_outside_pps ? paced(w.opace[oidx], opt.pace_outside_pps) : kBurst;
  if (want == 0) return;
  rte_mbuf* pkts[kBurst];
  const uint16_t n = rte_eth_rx_burst(op.id, q, pkts, want);
  if (n == 0) return;
  if (opt.pace_outside_pps) w.opace[oidx].tokens -= n;
  w.ctr.outside_rx += n;
  uint16_t k = 0;
  for (uint16_t i = 0; i < n; ++i) {
    rte_mbuf* m = pkts[i];
    if (rte_pktmbuf_data_len(m) < kEthLen || !is_ip_ethertype(rte_pktmbuf_mtod(m, const uint8_t*))) {
      ++w.ctr.drops[size_t(Drop::kOutsideNotIp)];
      rte_pktmbuf_free(m);
      continue;
    }
    rte_pktmbuf_adj(m, kEthLen);
    pkts[k++] = m;
  }
  const uint16_t d = esp::decap_burst(*st.in_table[oidx], w.id, pkts, k);
  for (uint16_t i = d; i < k; ++i) rte_pktmbuf_free(pkts[i]);  // reason counted in the SA or the table
  if (d == 0) return;
  const uint32_t now = now_ms();
  uint16_t s = 0;
  for (uint16_t i = 0; i < d; ++i) {
    rte_mbuf* m = pkts[i];
    if (st.tunnels[m->hash.usr].blackhole) [[unlikely]] {
      ++w.tctr[m->hash.usr].fault_drops;
      rte_pktmbuf_free(m);
      continue;
    }
    // The ICV verified: proof of life of its tunnel, whatever the inner packet turns out to be.
    std::atomic<uint32_t>& pr = w.proof(m->hash.usr);
    if (pr.load(std::memory_order_relaxed) != now) pr.store(now, std::memory_order_relaxed);
    if (st.intercept && intercept(w, st, m)) continue;  // a probe reply or a request we reflected
    // Traffic other than probe replies: the tunnel is busy and needs no probe. Worker-private, main never reads it.
    if (probing) w.busy[m->hash.usr] = now;
    const uint8_t* p = rte_pktmbuf_mtod(m, const uint8_t*);
    const bool v6 = (p[0] >> 4) == 6;
    // Route-based selector: what comes out of a tunnel must come from the networks behind the tunnels.
    if (!(v6 ? routed6(p + 8) : routed4(net::load_be32(p + 12)))) {
      ++w.ctr.drops[size_t(Drop::kInnerSelector)];
      rte_pktmbuf_free(m);
      continue;
    }
    TunnelCtr& tc = w.tctr[m->hash.usr];
    ++tc.packets_in;
    tc.bytes_in += rte_pktmbuf_pkt_len(m);
    uint8_t* l2 = reinterpret_cast<uint8_t*>(rte_pktmbuf_prepend(m, kEthLen));
    std::memcpy(l2, inside_l2, 12);
    l2[12] = v6 ? 0x86 : 0x08;
    l2[13] = v6 ? 0xdd : 0x00;
    pkts[s++] = m;
  }
  const uint16_t t = rte_eth_tx_burst(ports[inside].id, w.id, pkts, s);
  for (uint16_t i = t; i < s; ++i) rte_pktmbuf_free(pkts[i]);
  w.ctr.inside_tx += t;
  w.ctr.drops[size_t(Drop::kTxFull)] += s - t;
}

// Encrypts one packet (an inner IP datagram) with tunnel t's outbound SA and sends it on its instance port; a
// full TX queue defers it (flush_ctl). For probes and reflected replies only (a few per tunnel per interval),
// never for data: the plaintext is copied first so that a refused packet can be encrypted again. Counts what it
// sends or drops.
void Dataplane::Impl::send_one(Worker& w, const RtTunnel& rt, uint32_t t, rte_mbuf* m, bool reflect) noexcept {
  TunnelCtr& tc = w.tctr[t];
  rte_mbuf* keep = w.nctl < Worker::kCtlMax ? rte_pktmbuf_copy(m, pool, 0, UINT32_MAX) : nullptr;
  if (w.nctl == 0 && try_send(w, rt, m)) {
    if (keep) rte_pktmbuf_free(keep);
    ++(reflect ? tc.reflected : tc.probes_out);
    return;
  }
  if (w.nctl) rte_pktmbuf_free(m);  // older ones go first
  if (keep == nullptr) {
    ++tc.probe_drops;
    return;
  }
  // Half an interval at most: later than that the next probe is due anyway.
  const uint64_t wait = std::max<uint64_t>(tsc_hz / 1000, tsc_hz * live_interval_ms(t) / 2000);
  w.ctl[w.nctl++] = {keep, rte_get_tsc_cycles() + wait, t, uint8_t(reflect)};
  ++tc.probes_deferred;
}

// Encrypts m (consumed in every case) and hands it to the TX queue of the tunnel's port.
bool Dataplane::Impl::try_send(Worker& w, const RtTunnel& rt, rte_mbuf* m) noexcept {
  if (esp::encap_burst(*rt.out, w.id, &m, 1) != 1) {  // reason counted in the SA
    rte_pktmbuf_free(m);
    return false;
  }
  uint8_t* l2 = reinterpret_cast<uint8_t*>(rte_pktmbuf_prepend(m, kEthLen));
  std::memcpy(l2, rt.l2, kEthLen);
  if (rte_eth_tx_burst(ports[rt.port].id, w.id, &m, 1) != 1) {
    rte_pktmbuf_free(m);
    return false;
  }
  ++w.ctr.outside_tx;
  return true;
}

// Sends deferred probes and replies, oldest first, before the loop's data gets to the TX queues.
void Dataplane::Impl::flush_ctl(Worker& w, const State& st) noexcept {
  const uint64_t now = rte_get_tsc_cycles();
  uint16_t k = 0;
  for (uint16_t i = 0; i < w.nctl; ++i) {
    Worker::CtlTx c = w.ctl[i];
    TunnelCtr& tc = w.tctr[c.tunnel];
    if (st.tunnels[c.tunnel].blackhole) [[unlikely]] {  // fault injection since: nothing leaves on it
      rte_pktmbuf_free(c.m);
      ++tc.fault_drops;
      continue;
    }
    rte_mbuf* e = k == 0 ? rte_pktmbuf_copy(c.m, pool, 0, UINT32_MAX) : nullptr;  // in order: none after a refusal
    if (e != nullptr && try_send(w, st.tunnels[c.tunnel], e)) {
      rte_pktmbuf_free(c.m);
      ++(c.reflect ? tc.reflected : tc.probes_out);
    } else if (now >= c.until) {
      rte_pktmbuf_free(c.m);
      ++tc.probe_drops;
    } else {
      w.ctl[k++] = c;
    }
  }
  w.nctl = k;
}

// A decrypted inner packet (m starts at it) that liveness consumes: an echo reply to one of our probes, or, as a
// reflector, an echo request to this tunnel's own inner address, answered on the same tunnel. ICMP over IPv4
// without options and ICMPv6 right after the IPv6 header. Returns true when m was consumed (freed or sent).
// Cheap for data: two byte compares before anything else.
bool Dataplane::Impl::intercept(Worker& w, const State& st, rte_mbuf* m) noexcept {
  uint8_t* p = rte_pktmbuf_mtod(m, uint8_t*);
  const uint32_t len = rte_pktmbuf_data_len(m);
  bool v6;
  if (p[0] == 0x45 && p[9] == net::kProtoIcmp && len >= 28) v6 = false;
  else if ((p[0] >> 4) == 6 && p[6] == net::kProtoIcmp6 && len >= 48) v6 = true;
  else return false;
  const uint32_t hl = v6 ? 40 : 20;
  uint8_t* icmp = p + hl;
  const uint32_t t = m->hash.usr;
  const RtTunnel& rt = st.tunnels[t];
  TunnelCtr& tc = w.tctr[t];
  if (icmp[0] == (v6 ? kIcmp6EchoReply : 0) && net::load_be16(icmp + 4) == kProbeId &&
      len >= hl + 8 + 16 && std::memcmp(icmp + 8, kProbeMagic, sizeof kProbeMagic) == 0) {
    ++tc.probe_replies_in;  // its proof of life is already recorded
    uint64_t sent;
    std::memcpy(&sent, icmp + 16, 8);
    const uint64_t now = rte_get_tsc_cycles();
    if (sent <= now) {  // a reply to another process's probe (same id) could carry anything
      const uint64_t us = (now - sent) * 1000000 / tsc_hz;
      tc.rtt_sum_us += us;
      tc.rtt_max_us = std::max(tc.rtt_max_us, us);
    }
    rte_pktmbuf_free(m);
    return true;
  }
  if (!st.reflect || !rt.local_set || bool(rt.probe_v6) != v6 || icmp[0] != (v6 ? kIcmp6EchoRequest : 8) ||
      icmp[1] != 0 || std::memcmp(v6 ? p + 24 : p + 16, rt.local, v6 ? 16 : 4) != 0)
    return false;
  ++tc.reflect_in;
  // Echo reply: swap the addresses (neither the IPv4 header checksum nor the ICMPv6 pseudo-header sum changes),
  // the type becomes the reply's (checksum updated incrementally).
  uint8_t* src = v6 ? p + 8 : p + 12;
  uint8_t a[16];
  const size_t al = v6 ? 16 : 4;
  std::memcpy(a, src, al);
  std::memcpy(src, src + al, al);
  std::memcpy(src + al, a, al);
  const uint8_t reply = v6 ? kIcmp6EchoReply : 0;
  const uint16_t sum = csum_update(net::load_be16(icmp + 2), uint16_t(icmp[0] << 8), uint16_t(reply << 8));
  icmp[0] = reply;
  icmp[2] = uint8_t(sum >> 8);
  icmp[3] = uint8_t(sum);
  // Ethernet padding must not go into the tunnel.
  const uint32_t ip_len = v6 ? 40u + net::load_be16(p + 4) : net::load_be16(p + 2);
  if (ip_len >= hl + 8 && ip_len < rte_pktmbuf_pkt_len(m)) rte_pktmbuf_trim(m, uint16_t(rte_pktmbuf_pkt_len(m) - ip_len));
  send_one(w, rt, t, m, true);
  return true;
}

// Sends the probes that are due among this worker's tunnels and schedules the next ones 75..100 % of an
// interval later (jitter, so that the probes of many tunnels do not bunch). A tunnel that had authenticated
// inbound traffic (other than probe replies) on this worker within the last interval needs no probe: that
// traffic is its proof.
void Dataplane::Impl::send_probes(Worker& w, const State& st) noexcept {
  const uint64_t now = rte_get_tsc_cycles();
  const uint32_t now_ms_v = now_ms();
  uint64_t next = UINT64_MAX;
  for (uint32_t t : w.probe_tunnels) {
    uint64_t& due = w.probe_due[t];
    if (now >= due) {
      const uint32_t iv_ms = probe_iv_ms[t];
      const uint64_t iv = tsc_hz * iv_ms / 1000;
      w.rng ^= w.rng << 13;
      w.rng ^= w.rng >> 7;
      w.rng ^= w.rng << 17;
      due = now + iv * 3 / 4 + (iv / 4 ? w.rng % (iv / 4) : 0);
      const RtTunnel& rt = st.tunnels[t];
      // Replies to our own probes do not make a tunnel busy: only other authenticated traffic does.
      const bool busy = int32_t(now_ms_v - w.busy[t]) < int32_t(iv_ms);
      if (rt.probe && !busy) {
        const bool v6 = rt.probe_v6;
        const uint16_t len = v6 ? kProbeLen6 : kProbeLen4;
        rte_mbuf* m = rte_pktmbuf_alloc(pool);
        uint8_t* p = m ? reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, len)) : nullptr;
        if (p == nullptr) {
          if (m) rte_pktmbuf_free(m);
          ++w.tctr[t].probe_drops;
        } else {
          std::memset(p, 0, len);
          uint8_t* icmp;
          if (v6) {
            p[0] = 0x60;
            net::store_be16(p + 4, len - 40);
            p[6] = net::kProtoIcmp6;
            p[7] = 64;  // hop limit
            std::memcpy(p + 8, rt.probe_src, 16);
            std::memcpy(p + 24, rt.probe_dst, 16);
            icmp = p + 40;
            icmp[0] = kIcmp6EchoRequest;
          } else {
            p[0] = 0x45;
            p[3] = uint8_t(len);
            p[8] = 64;  // TTL
            p[9] = net::kProtoIcmp;
            std::memcpy(p + 12, rt.probe_src, 4);
            std::memcpy(p + 16, rt.probe_dst, 4);
            net::store_be16(p + 10, net::ipv4_header_checksum(p, 20));
            icmp = p + 20;
            icmp[0] = 8;
          }
          net::store_be16(icmp + 4, kProbeId);
          net::store_be16(icmp + 6, ++w.probe_seq);
          std::memcpy(icmp + 8, kProbeMagic, sizeof kProbeMagic);
          std::memcpy(icmp + 16, &now, 8);
          // RFC 1071 sum over the 24-byte message (ICMPv6: with the pseudo-header).
          net::store_be16(icmp + 2, v6 ? net::icmpv6_checksum(p, len) : net::ipv4_header_checksum(icmp, 24));
          send_one(w, rt, t, m, false);
        }
      }
    }
    next = std::min(next, due);
  }
  w.probe_next = next;
}

int Dataplane::Impl::worker_main(Worker& w) {
  rte_rcu_qsbr_thread_register(qsbr, w.id);
  rte_rcu_qsbr_thread_online(qsbr, w.id);
  w.pace.last = rte_get_tsc_cycles();
  if (probing) {
    // First probes spread over one interval, so that tunnels (and workers) do not start in step.
    w.rng ^= uint64_t(w.id + 1) * 0x2545f4914f6cdd1dull ^ w.pace.last;
    for (uint32_t t : w.probe_tunnels) {
      const uint64_t iv = std::max<uint64_t>(1, tsc_hz * probe_iv_ms[t] / 1000);
      w.rng ^= w.rng << 13;
      w.rng ^= w.rng >> 7;
      w.rng ^= w.rng << 17;
      w.probe_due[t] = w.pace.last + w.rng % iv;
      w.probe_next = std::min(w.probe_next, w.probe_due[t]);
    }
  }
  for (auto& p : w.opace) p.last = w.pace.last;
  while (!g_stop.load(std::memory_order_relaxed)) {
    const State* st = state.load(std::memory_order_acquire);
    if (w.nctl) [[unlikely]] flush_ctl(w, *st);
    for (uint16_t q : w.inside_rxq) outbound(w, *st, q);
    for (uint16_t o = 0; o < outside.size(); ++o)
      for (uint16_t q : w.outside_rxq[o]) inbound(w, *st, o, q);
    // The clock is read every 16th loop only (a few tens of us apart at full rate, well inside the jitter).
    if (probing && (++w.loops & 15) == 0 && rte_get_tsc_cycles() >= w.probe_next) send_probes(w, *st);
    // Nothing of `st` is held past this point: main may free it once every worker has said so.
    rte_rcu_qsbr_quiescent(qsbr, w.id);
  }
  for (uint16_t i = 0; i < w.nctl; ++i) {  // still deferred at stop: not sent
    rte_pktmbuf_free(w.ctl[i].m);
    ++w.tctr[w.ctl[i].tunnel].probe_drops;
  }
  w.nctl = 0;
  rte_rcu_qsbr_thread_offline(qsbr, w.id);
  rte_rcu_qsbr_thread_unregister(qsbr, w.id);
  return 0;
}

// ------------------------------------------------------------------------------------------------ control

void Dataplane::Impl::publish() {
  auto st = std::make_unique<State>();
  st->generation = ++generation;
  st->sel = flow::SelectionTable::build(model.specs(), gw.flow.seed, gw.flow.table_size);
  st->tunnels.resize(gw.tunnels.size());
  for (size_t t = 0; t < gw.tunnels.size(); ++t) {
    const auto& ct = gw.tunnels[t];
    RtTunnel& r = st->tunnels[t];
    r.out = sa_out[t].get();
    r.port = instance_port[ct.instance];
    std::memcpy(r.l2, gw.devices[ct.device].mac, 6);
    std::memcpy(r.l2 + 6, ports[r.port].mac.addr_bytes, 6);
    const bool v6 = config::tunnel_ip_version(gw, ct) == 6;
    r.l2[12] = v6 ? 0x86 : 0x08;
    r.l2[13] = v6 ? 0xdd : 0x00;
    // Probe addresses come resolved from the config (tunnel, device, outer addresses; command-line overrides).
    const config::LivenessSettings& ls = ct.liveness;
    const bool admin_down = model.tunnel_admin(uint32_t(t)) == AdminState::kDown ||
                            model.instance_admin(ct.instance) == AdminState::kDown;
    r.blackhole = t < blackhole.size() ? blackhole[t] : 0;
    const bool addrs = ls.probe_source.version != 0 && ls.probe_source.version == ls.probe_address.version;
    r.probe = probing && ls.enabled && ls.probes && addrs && !admin_down && !r.blackhole;
    r.probe_v6 = ls.probe_source.version == 6;
    std::memcpy(r.probe_src, ls.probe_source.bytes, 16);
    std::memcpy(r.probe_dst, ls.probe_address.bytes, 16);
    r.local_set = ls.probe_source.version != 0;
    std::memcpy(r.local, ls.probe_source.bytes, 16);
  }
  st->reflect = gw.liveness.reflect;
  st->intercept = gw.liveness.reflect || probing;
  for (auto& t : in_tables) st->in_table.push_back(t.get());
  State* old = state.exchange(st.release(), std::memory_order_acq_rel);
  if (old != nullptr) {
    // Returns once every online worker has passed a quiescent state after the store above.
    if (qsbr != nullptr) rte_rcu_qsbr_synchronize(qsbr, RTE_QSBR_THRID_INVALID);
    delete old;
  }
}

bool Dataplane::apply_tunnel(uint32_t t, AdminState s, std::optional<uint32_t> deadline_ms, std::string* err) {
  std::optional<uint32_t> dl;
  if (deadline_ms) dl = impl_->now_ms() + *deadline_ms;
  {
    std::lock_guard lk(impl_->snap_mu);
    if (!impl_->model.set_tunnel(t, s, dl, err)) return false;
  }
  impl_->publish();
  return true;
}

bool Dataplane::apply_instance(uint32_t i, AdminState s, std::optional<uint32_t> deadline_ms, std::string* err) {
  std::optional<uint32_t> dl;
  if (deadline_ms) dl = impl_->now_ms() + *deadline_ms;
  {
    std::lock_guard lk(impl_->snap_mu);
    if (!impl_->model.set_instance(i, s, dl, err)) return false;
  }
  impl_->publish();
  return true;
}

bool Dataplane::apply_weight(uint32_t t, uint32_t w, std::string* err) {
  {
    std::lock_guard lk(impl_->snap_mu);
    if (!impl_->model.set_weight(t, w, err)) return false;
  }
  impl_->publish();
  return true;
}

void Dataplane::apply_mode(config::Mode m) {
  {
    std::lock_guard lk(impl_->snap_mu);
    impl_->model.set_mode(m);
  }
  impl_->publish();
}

uint64_t Dataplane::generation() const noexcept { return impl_->generation; }
const config::Gateway& Dataplane::gateway() const noexcept { return impl_->gw; }
const nlohmann::json& Dataplane::report() const noexcept { return impl_->report; }
void Dataplane::request_stop() noexcept { g_stop.store(true, std::memory_order_relaxed); }

namespace {

Stats collect(const Dataplane::Impl& d);

void subtract(Stats& s, const Stats& b) {
  s.inside_rx -= b.inside_rx;
  s.inside_tx -= b.inside_tx;
  s.outside_rx -= b.outside_rx;
  s.outside_tx -= b.outside_tx;
  for (size_t r = 0; r < kDropCount; ++r) s.drops[r] -= b.drops[r];
  s.esp_out_drops -= b.esp_out_drops;
  s.esp_in_drops -= b.esp_in_drops;
  for (size_t r = 0; r < esp::kDropCount; ++r) s.esp_table_drops[r] -= b.esp_table_drops[r];
  s.flows_new -= b.flows_new;
  s.moved_down -= b.moved_down;
  s.moved_drain -= b.moved_drain;
  s.moved_idle -= b.moved_idle;
  s.evicted -= b.evicted;
  for (size_t t = 0; t < s.tunnels.size() && t < b.tunnels.size(); ++t) {
    TunnelStats& x = s.tunnels[t];
    const TunnelStats& y = b.tunnels[t];
    x.packets_out -= y.packets_out;
    x.bytes_out -= y.bytes_out;
    x.packets_in -= y.packets_in;
    x.bytes_in -= y.bytes_in;
    x.tx_full -= y.tx_full;
    x.probes_out -= y.probes_out;
    x.probe_replies_in -= y.probe_replies_in;
    x.reflect_in -= y.reflect_in;
    x.reflected -= y.reflected;
    x.probe_drops -= y.probe_drops;
    x.probes_deferred -= y.probes_deferred;
    x.probe_rtt_sum_us -= y.probe_rtt_sum_us;
    x.fault_drops -= y.fault_drops;
    x.placed -= y.placed;  // pinned is a gauge: never subtracted
    for (size_t r = 0; r < esp::kDropCount; ++r) x.esp_drops[r] -= y.esp_drops[r];
  }
}

}  // namespace

Stats Dataplane::stats() const {
  Stats s = collect(*impl_);
  std::lock_guard lk(impl_->snap_mu);
  subtract(s, impl_->baseline);
  return s;
}

void Dataplane::clear_counters() {
  Stats now = collect(*impl_);
  std::lock_guard lk(impl_->snap_mu);
  impl_->baseline = std::move(now);
}

namespace {

Stats collect(const Dataplane::Impl& d) {
  Stats s;
  s.generation = d.generation;
  s.elapsed_s = d.tsc_hz ? double(rte_get_tsc_cycles() - d.start_tsc) / double(d.tsc_hz) : 0;
  s.tunnels.resize(d.gw.tunnels.size());
  {
    std::lock_guard lk(d.snap_mu);
    for (size_t t = 0; t < d.gw.tunnels.size(); ++t) {
      TunnelStats& ts = s.tunnels[t];
      const auto& ct = d.gw.tunnels[t];
      ts.name = ct.name;
      ts.instance = d.gw.instances[ct.instance].name;
      ts.device = d.gw.devices[ct.device].name;
      ts.admin = d.model.tunnel_admin(uint32_t(t));
      ts.effective = d.model.effective(uint32_t(t));
      ts.weight = d.model.weight(uint32_t(t));
      ts.effective_weight = d.model.effective_weight(uint32_t(t));
      if (t < d.live.tunnels() && d.live.enabled(uint32_t(t))) {
        const uint32_t now = d.now_ms();
        ts.live_enabled = true;
        ts.live_interval_ms = ct.liveness.interval_ms;
        ts.live_multiplier = ct.liveness.multiplier;
        ts.live = d.live.state(uint32_t(t));
        ts.last_proof_ms_ago = d.live.ever_proof(uint32_t(t)) ? std::max<int32_t>(0, int32_t(now - d.live.last_proof(uint32_t(t)))) : -1;
        ts.flaps = d.live.flaps(uint32_t(t));
        ts.suppressions = d.live.suppressions(uint32_t(t));
        ts.penalty = d.live.penalty(uint32_t(t), now);
      }
    }
  }
  for (const auto& wp : d.workers) {
    const Worker& w = *wp;
    s.inside_rx += w.ctr.inside_rx;
    s.inside_tx += w.ctr.inside_tx;
    s.outside_rx += w.ctr.outside_rx;
    s.outside_tx += w.ctr.outside_tx;
    for (size_t r = 0; r < kDropCount; ++r) s.drops[r] += w.ctr.drops[r];
    const auto& pc = w.pins->counters();
    s.flows_new += pc.new_flows;
    s.moved_down += pc.moved_down;
    s.moved_drain += pc.moved_drain;
    s.moved_idle += pc.moved_idle;
    s.evicted += pc.evicted;
    for (size_t t = 0; t < s.tunnels.size(); ++t) {
      TunnelStats& ts = s.tunnels[t];
      ts.packets_out += w.tctr[t].packets_out;
      ts.packets_in += w.tctr[t].packets_in;
      ts.bytes_in += w.tctr[t].bytes_in;
      ts.tx_full += w.tctr[t].tx_full;
      ts.probes_out += w.tctr[t].probes_out;
      ts.probe_replies_in += w.tctr[t].probe_replies_in;
      ts.reflect_in += w.tctr[t].reflect_in;
      ts.reflected += w.tctr[t].reflected;
      ts.probe_drops += w.tctr[t].probe_drops;
      ts.probes_deferred += w.tctr[t].probes_deferred;
      ts.probe_rtt_sum_us += w.tctr[t].rtt_sum_us;
      ts.probe_rtt_max_us = std::max(ts.probe_rtt_max_us, w.tctr[t].rtt_max_us);
      ts.fault_drops += w.tctr[t].fault_drops;
      ts.pinned += w.pins->tunnel_counters(flow::TunnelId(t)).pinned;
      ts.placed += w.pins->tunnel_counters(flow::TunnelId(t)).placed;
    }
  }
  std::lock_guard lk(d.snap_mu);  // resets swap SAs under it
  for (size_t t = 0; t < s.tunnels.size(); ++t) {
    esp::SaStats o = d.sa_out[t]->stats();
    esp::SaStats i = d.sa_in[t]->stats();
    const esp::SaStats& ro = d.retired_out[t];
    const esp::SaStats& ri = d.retired_in[t];
    for (size_t r = 0; r < esp::kDropCount; ++r) {
      o.drops[r] += ro.drops[r];
      i.drops[r] += ri.drops[r];
    }
    s.tunnels[t].bytes_out = o.bytes + ro.bytes;  // inner bytes encrypted (tx_full ones included)
    for (size_t r = 0; r < esp::kDropCount; ++r) {
      s.tunnels[t].esp_drops[r] = o.drops[r] + i.drops[r];
      s.esp_out_drops += o.drops[r];
      s.esp_in_drops += i.drops[r];
    }
  }
  for (const auto& tb : d.in_tables) {
    const auto ts = tb->stats();
    for (size_t r = 0; r < esp::kDropCount; ++r) {
      s.esp_table_drops[r] += ts.drops[r] + d.retired_tables.drops[r];
      s.esp_in_drops += ts.drops[r] + d.retired_tables.drops[r];
    }
  }
  return s;
}

}  // namespace

nlohmann::json to_json(const Stats& s) {
  nlohmann::json j;
  j["generation"] = s.generation;
  j["elapsed_s"] = s.elapsed_s;
  j["inside_rx"] = s.inside_rx;
  j["inside_tx"] = s.inside_tx;
  j["outside_rx"] = s.outside_rx;
  j["outside_tx"] = s.outside_tx;
  nlohmann::json drops = nlohmann::json::object();
  for (size_t r = 0; r < kDropCount; ++r) drops[to_string(Drop(r))] = s.drops[r];
  j["drops"] = drops;
  j["esp_out_drops"] = s.esp_out_drops;
  j["esp_in_drops"] = s.esp_in_drops;
  nlohmann::json tdrops = nlohmann::json::object();
  for (size_t r = 0; r < esp::kDropCount; ++r)
    if (s.esp_table_drops[r]) tdrops[esp::to_string(esp::Drop(r))] = s.esp_table_drops[r];
  j["esp_unknown_sa_drops"] = tdrops;
  j["flows"] = {{"new", s.flows_new}, {"moved_down", s.moved_down}, {"moved_drain", s.moved_drain},
                {"moved_idle", s.moved_idle}, {"evicted", s.evicted}};
  nlohmann::json ts = nlohmann::json::array();
  for (const auto& t : s.tunnels) {
    nlohmann::json e;
    e["name"] = t.name;
    e["instance"] = t.instance;
    e["device"] = t.device;
    e["admin"] = to_string(t.admin);
    e["state"] = to_string(t.effective);
    e["weight"] = t.weight;
    e["effective_weight"] = t.effective_weight;
    e["packets_out"] = t.packets_out;
    e["bytes_out"] = t.bytes_out;
    e["packets_in"] = t.packets_in;
    e["bytes_in"] = t.bytes_in;
    e["tx_full"] = t.tx_full;
    e["probes_out"] = t.probes_out;
    e["probe_replies_in"] = t.probe_replies_in;
    e["reflect_in"] = t.reflect_in;
    e["reflected"] = t.reflected;
    e["probe_drops"] = t.probe_drops;
    e["probes_deferred"] = t.probes_deferred;
    e["fault_drops"] = t.fault_drops;
    e["pinned"] = t.pinned;
    e["placed"] = t.placed;
    nlohmann::json ed = nlohmann::json::object();
    for (size_t r = 0; r < esp::kDropCount; ++r)
      if (t.esp_drops[r]) ed[esp::to_string(esp::Drop(r))] = t.esp_drops[r];
    e["esp_drops"] = ed;
    if (t.live_enabled) {
      e["liveness"] = {{"state", to_string(t.live)}, {"last_proof_ms_ago", t.last_proof_ms_ago},
                       {"flaps", t.flaps}, {"suppressions", t.suppressions}, {"penalty", t.penalty},
                       {"interval_ms", t.live_interval_ms}, {"multiplier", t.live_multiplier},
                       {"probe_rtt_avg_us", t.probe_replies_in ? t.probe_rtt_sum_us / t.probe_replies_in : 0},
                       {"probe_rtt_max_us", t.probe_rtt_max_us}};
    }
    ts.push_back(e);
  }
  j["tunnels"] = ts;
  return j;
}

std::string format_table(const Stats& s) {
  uint64_t total_out = 0;
  for (const auto& t : s.tunnels) total_out += t.packets_out;
  std::string o = fmt::format("gen {}  {:.1f}s  inside rx {} tx {}  outside rx {} tx {}\n", s.generation,
                              s.elapsed_s, s.inside_rx, s.inside_tx, s.outside_rx, s.outside_tx);
  o += fmt::format("{:<12} {:<10} {:<10} {:>6} {:>12} {:>7} {:>10} {:>10} {:>12} {:>8}\n", "tunnel", "instance",
                   "state", "weight", "pkts out", "share", "flows", "placed", "pkts in", "esp drop");
  for (const auto& t : s.tunnels) {
    uint64_t ed = 0;
    for (uint64_t d : t.esp_drops) ed += d;
    o += fmt::format("{:<12} {:<10} {:<10} {:>6} {:>12} {:>6.1f}% {:>10} {:>10} {:>12} {:>8}\n", t.name, t.instance,
                     to_string(t.effective), t.effective_weight, t.packets_out,
                     total_out ? 100.0 * double(t.packets_out) / double(total_out) : 0.0, t.pinned, t.placed,
                     t.packets_in, ed);
  }
  std::string drops;
  for (size_t r = 0; r < kDropCount; ++r)
    if (s.drops[r]) drops += fmt::format(" {}={}", to_string(Drop(r)), s.drops[r]);
  for (size_t r = 0; r < esp::kDropCount; ++r)
    if (s.esp_table_drops[r]) drops += fmt::format(" {}={}", esp::to_string(esp::Drop(r)), s.esp_table_drops[r]);
  o += fmt::format("drops:{} esp_out={} esp_in={}  flows new={} moved_down={} moved_drain={} evicted={}\n",
                   drops.empty() ? " none" : drops, s.esp_out_drops, s.esp_in_drops, s.flows_new, s.moved_down,
                   s.moved_drain, s.evicted);
  return o;
}

bool parse_event(const std::string& s, const config::Gateway& g, Event* out, std::string* err) {
  std::vector<std::string> f;
  size_t a = 0;
  for (size_t b; (b = s.find(':', a)) != std::string::npos; a = b + 1) f.push_back(s.substr(a, b - a));
  f.push_back(s.substr(a));
  auto fail = [&](const std::string& m) {
    if (err) *err = "event '" + s + "': " + m + " (form: SECONDS|pPACKETS:tunnel|instance:NAME:up|down|drain)";
    return false;
  };
  if (f.size() != 4) return fail("needs four fields");
  Event e;
  e.text = s;
  try {
    if (!f[0].empty() && f[0][0] == 'p') {
      size_t used = 0;
      e.at_packets = std::stoull(f[0].substr(1), &used);
      if (used != f[0].size() - 1) return fail("bad packet count");
    } else {
      size_t used = 0;
      e.at_s = std::stod(f[0], &used);
      if (used != f[0].size() || e.at_s < 0) return fail("bad time");
    }
  } catch (...) {
    return fail("bad time or packet count");
  }
  if (f[1] == "tunnel") {
    e.instance = false;
    auto it = std::find_if(g.tunnels.begin(), g.tunnels.end(), [&](auto& t) { return t.name == f[2]; });
    if (it == g.tunnels.end()) return fail("no tunnel named '" + f[2] + "'");
    e.index = uint32_t(it - g.tunnels.begin());
  } else if (f[1] == "instance") {
    e.instance = true;
    auto it = std::find_if(g.instances.begin(), g.instances.end(), [&](auto& i) { return i.name == f[2]; });
    if (it == g.instances.end()) return fail("no instance named '" + f[2] + "'");
    e.index = uint32_t(it - g.instances.begin());
  } else {
    return fail("'" + f[1] + "' is neither tunnel nor instance");
  }
  if (!parse_admin_state(f[3], &e.state)) return fail("state '" + f[3] + "' is not up, down or drain");
  *out = e;
  return true;
}

bool parse_fault(const std::string& s, const config::Gateway& g, Fault* out, std::string* err) {
  const size_t a = s.find(':'), b = a == std::string::npos ? a : s.find(':', a + 1);
  auto fail = [&](const std::string& m) {
    if (err) *err = "fault '" + s + "': " + m + " (form: SECONDS:TUNNEL:blackhole|heal)";
    return false;
  };
  if (b == std::string::npos) return fail("needs three fields");
  Fault f;
  f.text = s;
  try {
    size_t used = 0;
    f.at_s = std::stod(s.substr(0, a), &used);
    if (used != a || f.at_s < 0) return fail("bad time");
  } catch (...) {
    return fail("bad time");
  }
  const std::string name = s.substr(a + 1, b - a - 1), what = s.substr(b + 1);
  auto it = std::find_if(g.tunnels.begin(), g.tunnels.end(), [&](auto& t) { return t.name == name; });
  if (it == g.tunnels.end()) return fail("no tunnel named '" + name + "'");
  f.tunnel = uint32_t(it - g.tunnels.begin());
  if (what != "blackhole" && what != "heal") return fail("'" + what + "' is neither blackhole nor heal");
  f.blackhole = what == "blackhole";
  *out = f;
  return true;
}

// ------------------------------------------------------------------------------------------------ setup

namespace {

Dataplane* g_dp = nullptr;  // telemetry callbacks run on DPDK's telemetry thread

int tel_stats(const char*, const char*, rte_tel_data* d) {
  if (g_dp == nullptr) return -1;
  const Stats s = g_dp->stats();  // counters read racily (monotonic), model under its own mutex
  rte_tel_data_start_dict(d);
  rte_tel_data_add_dict_u64(d, "generation", s.generation);
  rte_tel_data_add_dict_u64(d, "inside_rx", s.inside_rx);
  rte_tel_data_add_dict_u64(d, "inside_tx", s.inside_tx);
  rte_tel_data_add_dict_u64(d, "outside_rx", s.outside_rx);
  rte_tel_data_add_dict_u64(d, "outside_tx", s.outside_tx);
  for (size_t r = 0; r < kDropCount; ++r) rte_tel_data_add_dict_u64(d, to_string(Drop(r)), s.drops[r]);
  rte_tel_data_add_dict_u64(d, "esp_out_drops", s.esp_out_drops);
  rte_tel_data_add_dict_u64(d, "esp_in_drops", s.esp_in_drops);
  rte_tel_data_add_dict_u64(d, "flows_new", s.flows_new);
  rte_tel_data_add_dict_u64(d, "flows_moved_down", s.moved_down);
  rte_tel_data_add_dict_u64(d, "flows_moved_drain", s.moved_drain);
  return 0;
}

int tel_tunnels(const char*, const char*, rte_tel_data* d) {
  if (g_dp == nullptr) return -1;
  const Stats s = g_dp->stats();
  rte_tel_data_start_dict(d);
  for (const auto& t : s.tunnels) {
    rte_tel_data* c = rte_tel_data_alloc();
    if (c == nullptr) return -1;
    rte_tel_data_start_dict(c);
    rte_tel_data_add_dict_string(c, "instance", t.instance.c_str());
    rte_tel_data_add_dict_string(c, "device", t.device.c_str());
    rte_tel_data_add_dict_string(c, "state", to_string(t.effective));
    rte_tel_data_add_dict_u64(c, "weight", t.effective_weight);
    rte_tel_data_add_dict_u64(c, "packets_out", t.packets_out);
    rte_tel_data_add_dict_u64(c, "bytes_out", t.bytes_out);
    rte_tel_data_add_dict_u64(c, "packets_in", t.packets_in);
    rte_tel_data_add_dict_u64(c, "bytes_in", t.bytes_in);
    rte_tel_data_add_dict_u64(c, "flows_pinned", t.pinned);
    uint64_t ed = 0;
    for (uint64_t x : t.esp_drops) ed += x;
    rte_tel_data_add_dict_u64(c, "esp_drops", ed);
    rte_tel_data_add_dict_string(c, "liveness", t.live_enabled ? to_string(t.live) : "off");
    if (t.live_enabled) {
      rte_tel_data_add_dict_int(c, "last_proof_ms_ago", int(std::min<int64_t>(t.last_proof_ms_ago, INT32_MAX)));
      rte_tel_data_add_dict_u64(c, "flaps", t.flaps);
      rte_tel_data_add_dict_u64(c, "suppressions", t.suppressions);
      rte_tel_data_add_dict_u64(c, "probes_out", t.probes_out);
      rte_tel_data_add_dict_u64(c, "probe_replies_in", t.probe_replies_in);
      rte_tel_data_add_dict_u64(c, "probe_rtt_max_us", t.probe_rtt_max_us);
    }
    if (t.reflect_in) rte_tel_data_add_dict_u64(c, "reflected", t.reflected);
    rte_tel_data_add_dict_container(d, t.name.c_str(), c, 0);
  }
  return 0;
}

std::string eal_port_name(const std::string& devargs) { return devargs.substr(0, devargs.find(',')); }

}  // namespace

Dataplane::~Dataplane() {
  if (!impl_) return;
  Impl& d = *impl_;
  if (d.ports_up) {
    for (auto& p : d.ports) {
      rte_eth_dev_stop(p.id);
      rte_eth_dev_close(p.id);  // net_pcap flushes its output files here
    }
  }
  delete d.state.exchange(nullptr);
  d.in_tables.clear();
  d.sa_out.clear();  // wipes keys
  d.sa_in.clear();
  if (d.qsbr) rte_free(d.qsbr);
  g_dp = nullptr;
  if (d.eal_up) rte_eal_cleanup();
}

int Dataplane::create(config::Gateway g, config::PmdConfig p, Options o, std::unique_ptr<Dataplane>* out,
                      std::string* err) {
  std::unique_ptr<Dataplane> dp(new Dataplane());
  dp->impl_ = std::make_unique<Impl>();
  Impl& d = *dp->impl_;
  d.gw = std::move(g);
  d.pmd = std::move(p);
  d.opt = std::move(o);
  d.model = Model(d.gw);

  // The control block first: a second meshgate of the same name must not get as far as the EAL.
  if (d.opt.control) {
    std::string e;
    d.ctrl = ctrl::Block::create(d.opt.control_name.empty() ? d.gw.name : d.opt.control_name, &e);
    if (!d.ctrl) {
      *err = "control block: " + e;
      return kExitRuntime;
    }
  }

  // Prefixes, in the forms the hot path compares.
  for (const auto& px : d.gw.inside_prefixes) {
    if (px.addr.version == 4) {
      const uint32_t mask = px.len == 0 ? 0 : ~uint32_t(0) << (32 - px.len);
      d.pfx4.push_back({net::load_be32(px.addr.bytes) & mask, mask});
    } else {
      Prefix6 p6{};
      std::memcpy(p6.net, px.addr.bytes, 16);
      p6.len = px.len;
      d.pfx6.push_back(p6);
    }
  }

  // EAL: the pmd_config's arguments, one --vdev / -a per port, then the caller's extras.
  std::vector<std::string> args{"meshgate"};
  for (const auto& a : d.pmd.eal_args) args.push_back(a);
  for (const auto& port : d.pmd.ports) {
    if (port.vdev) args.push_back("--vdev=" + port.devargs);
    else args.push_back("-a" + port.devargs);
  }
  for (const auto& a : d.opt.eal_extra) args.push_back(a);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  if (rte_eal_init(int(argv.size()), argv.data()) < 0) {
    *err = fmt::format("EAL init failed: {}", rte_strerror(rte_errno));
    return kExitEal;
  }
  d.eal_up = true;
  d.tsc_hz = rte_get_tsc_hz();
  if (rte_pdump_init() != 0 && !d.opt.quiet)
    fmt::print(stderr, "meshgate: pdump unavailable ({}); dpdk-dumpcap will not attach\n", rte_strerror(rte_errno));

  // Workers on the configured lcores; main stays on the main lcore.
  const unsigned main_lcore = rte_get_main_lcore();
  for (unsigned lc : d.pmd.worker_lcores) {
    if (lc == main_lcore || !rte_lcore_is_enabled(lc)) {
      *err = fmt::format("worker lcore {} is not an enabled non-main lcore (main is {}); check [eal] args -l",
                         lc, main_lcore);
      return kExitConfig;
    }
    auto w = std::make_unique<Worker>();
    w->id = uint16_t(d.workers.size());
    w->lcore = lc;
    d.workers.push_back(std::move(w));
  }
  const uint16_t nw = uint16_t(d.workers.size());
  if (nw == 0) {
    *err = "no worker lcores in the pmd_config";
    return kExitConfig;
  }

  d.pool = rte_pktmbuf_pool_create("mg_pool", d.pmd.mbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, int(rte_socket_id()));
  if (d.pool == nullptr) {
    *err = fmt::format("mbuf pool of {} failed: {}", d.pmd.mbufs, rte_strerror(rte_errno));
    return kExitEal;
  }

  // Ports: probe, configure one TX queue per worker, RX queues up to what the device has.
  std::map<std::string, uint16_t> by_name;
  for (const auto& ps : d.pmd.ports) {
    PortRt pr;
    pr.name = ps.name;
    const std::string dev = ps.vdev ? eal_port_name(ps.devargs) : ps.devargs;
    if (rte_eth_dev_get_port_by_name(dev.c_str(), &pr.id) != 0) {
      *err = fmt::format("port '{}': device '{}' was not probed (check devargs and drivers)", ps.name, dev);
      return kExitPort;
    }
    rte_eth_dev_info info;
    if (rte_eth_dev_info_get(pr.id, &info) != 0) {
      *err = fmt::format("port '{}': no device info", ps.name);
      return kExitPort;
    }
    pr.nrx = std::min<uint16_t>(ps.rx_queues ? ps.rx_queues : nw, info.max_rx_queues);
    pr.ntx = ps.tx_queues ? ps.tx_queues : nw;
    if (pr.ntx < nw || pr.ntx > info.max_tx_queues) {
      *err = fmt::format("port '{}' has {} TX queues (device max {}); {} workers need one each", ps.name, pr.ntx,
                         info.max_tx_queues, nw);
      return kExitPort;
    }
    rte_eth_conf conf{};
    if (pr.nrx > 1 && ps.rss && info.flow_type_rss_offloads) {
      conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
      conf.rx_adv_conf.rss_conf.rss_hf =
          (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP) & info.flow_type_rss_offloads;
    }
    if (ps.ipv4_cksum_offload && (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_IPV4_CKSUM))
      conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_IPV4_CKSUM;
    if (ps.mtu) conf.rxmode.mtu = ps.mtu;
    int rc = rte_eth_dev_configure(pr.id, pr.nrx, pr.ntx, &conf);
    uint16_t nrxd = ps.rx_desc, ntxd = ps.tx_desc;
    if (rc == 0) rc = rte_eth_dev_adjust_nb_rx_tx_desc(pr.id, &nrxd, &ntxd);
    for (uint16_t q = 0; rc == 0 && q < pr.nrx; ++q)
      rc = rte_eth_rx_queue_setup(pr.id, q, nrxd, rte_eth_dev_socket_id(pr.id), nullptr, d.pool);
    for (uint16_t q = 0; rc == 0 && q < pr.ntx; ++q)
      rc = rte_eth_tx_queue_setup(pr.id, q, ntxd, rte_eth_dev_socket_id(pr.id), nullptr);
    if (rc != 0) {
      *err = fmt::format("port '{}': configure/queue setup failed: {}", ps.name, rte_strerror(-rc));
      return kExitPort;
    }
    rte_eth_macaddr_get(pr.id, &pr.mac);
    by_name[ps.name] = uint16_t(d.ports.size());
    d.ports.push_back(pr);
  }
  for (auto& pr : d.ports) {
    const int rc = rte_eth_dev_start(pr.id);
    if (rc != 0) {
      *err = fmt::format("port '{}': start failed: {}", pr.name, rte_strerror(-rc));
      return kExitPort;
    }
    rte_eth_promiscuous_enable(pr.id);  // best effort: vdevs may not have it
  }
  d.ports_up = true;
  if (!d.opt.quiet) {
    for (const auto& pr : d.ports)
      fmt::print("meshgate: port {} (id {}): {} RX / {} TX queues, MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}\n",
                 pr.name, pr.id, pr.nrx, pr.ntx, pr.mac.addr_bytes[0], pr.mac.addr_bytes[1], pr.mac.addr_bytes[2],
                 pr.mac.addr_bytes[3], pr.mac.addr_bytes[4], pr.mac.addr_bytes[5]);
  }

  d.inside = by_name.at(d.gw.inside_port);
  std::memcpy(d.inside_l2, d.gw.inside_mac, 6);
  std::memcpy(d.inside_l2 + 6, d.ports[d.inside].mac.addr_bytes, 6);
  for (const auto& inst : d.gw.instances) {
    const uint16_t pi = by_name.at(inst.port);
    d.instance_port.push_back(pi);
    if (std::find(d.outside.begin(), d.outside.end(), pi) == d.outside.end()) d.outside.push_back(pi);
  }

  // Queues to workers: queue q of a port goes to worker q % workers.
  for (auto& w : d.workers) {
    for (uint16_t q = w->id; q < d.ports[d.inside].nrx; q += nw) w->inside_rxq.push_back(q);
    w->outside_rxq.resize(d.outside.size());
    for (size_t o = 0; o < d.outside.size(); ++o)
      for (uint16_t q = w->id; q < d.ports[d.outside[o]].nrx; q += nw) w->outside_rxq[o].push_back(q);
    w->pins = std::make_unique<flow::PinTable>(d.gw.flow.pin_capacity, d.gw.flow.pin_idle_timeout_ms);
    w->tctr = std::make_unique<TunnelCtr[]>(d.gw.tunnels.size());
    w->proof_lines = std::make_unique<Worker::ProofLine[]>((d.gw.tunnels.size() + 15) / 16);
    for (uint32_t t = 0; t < d.gw.tunnels.size(); ++t) w->proof(t).store(0, std::memory_order_relaxed);
    w->opace.resize(d.outside.size());
    w->probe_due.assign(d.gw.tunnels.size(), 0);
    w->busy.assign(d.gw.tunnels.size(), 0);
    for (uint32_t t = w->id; t < d.gw.tunnels.size(); t += nw) w->probe_tunnels.push_back(t);
    std::memset(static_cast<void*>(w->tctr.get()), 0, sizeof(TunnelCtr) * d.gw.tunnels.size());
  }

  // SAs: one outbound and one inbound per tunnel; an inbound table per outside port holds the SAs of the
  // tunnels whose instance uses that port (only those may be decrypted there).
  for (size_t t = 0; t < d.gw.tunnels.size(); ++t) {
    const auto& ct = d.gw.tunnels[t];
    esp::SaConfig oc = dp::outbound_sa(d.gw, ct);
    esp::SaConfig ic = dp::inbound_sa(d.gw, ct);
    oc.user_id = ic.user_id = uint32_t(t);
    std::string e;
    auto so = esp::Sa::create(oc, esp::Direction::kOutbound, nw, &e);
    if (!so) {
      *err = fmt::format("tunnel '{}' outbound SA: {}", ct.name, e);
      return kExitConfig;
    }
    auto si = esp::Sa::create(ic, esp::Direction::kInbound, nw, &e);
    if (!si) {
      *err = fmt::format("tunnel '{}' inbound SA: {}", ct.name, e);
      return kExitConfig;
    }
    d.sa_out.push_back(std::move(so));
    d.sa_in.push_back(std::move(si));
  }
  d.retired_out.resize(d.gw.tunnels.size());
  d.retired_in.resize(d.gw.tunnels.size());
  d.suspended.assign(d.gw.tunnels.size(), false);
  d.resets.assign(d.gw.instances.size(), 0);
  if (!d.build_tables(err)) return kExitConfig;

  const size_t qsz = rte_rcu_qsbr_get_memsize(nw);
  d.qsbr = static_cast<rte_rcu_qsbr*>(rte_zmalloc("mg_qsbr", qsz, RTE_CACHE_LINE_SIZE));
  if (d.qsbr == nullptr || rte_rcu_qsbr_init(d.qsbr, nw) != 0) {
    *err = "RCU QSBR init failed";
    return kExitEal;
  }
  d.probe_iv_ms.resize(d.gw.tunnels.size());
  for (size_t t = 0; t < d.gw.tunnels.size(); ++t) {
    const config::LivenessSettings& ls = d.gw.tunnels[t].liveness;
    d.probe_iv_ms[t] = std::max<uint32_t>(1, ls.interval_ms);
    d.probing |= ls.enabled && ls.probes;
  }
  d.blackhole.assign(d.gw.tunnels.size(), 0);
  d.start_tsc = rte_get_tsc_cycles();
  d.publish();
  g_dp = dp.get();
  rte_telemetry_register_cmd("/meshgate/stats", tel_stats, "Gateway totals and drops by reason. No parameters");
  rte_telemetry_register_cmd("/meshgate/tunnels", tel_tunnels, "Per-tunnel state and counters. No parameters");
  *out = std::move(dp);
  return kExitOk;
}


// ------------------------------------------------------------------------------------------------ reset

bool Dataplane::Impl::reset_instance(uint32_t inst, std::string* err) {
  if (inst >= gw.instances.size()) {
    *err = fmt::format("instance {} does not exist", inst);
    return false;
  }
  std::vector<config::Error> errs;
  auto fresh = config::load_gateway(gw.source, &errs);
  if (!fresh) {
    *err = fmt::format("{} does not load: {}", gw.source, errs.empty() ? "?" : errs.front().format());
    return false;
  }
  if (fresh->tunnels.size() != gw.tunnels.size() || fresh->instances.size() != gw.instances.size()) {
    *err = "the config's tunnels or instances differ from the running ones; restart meshgate to change them";
    return false;
  }
  std::vector<uint32_t> mine;
  for (uint32_t t = 0; t < gw.tunnels.size(); ++t) {
    const auto& a = gw.tunnels[t];
    const auto& b = fresh->tunnels[t];
    if (a.name != b.name || a.instance != b.instance || a.device != b.device) {
      *err = fmt::format("tunnel {} changed in the config; restart meshgate to change tunnels", a.name);
      return false;
    }
    if (a.instance == inst) mine.push_back(t);
  }
  // New SAs first, so nothing changes when one cannot be made.
  const uint16_t nw = uint16_t(workers.size());
  std::vector<std::unique_ptr<esp::Sa>> nout(mine.size()), nin(mine.size());
  for (size_t k = 0; k < mine.size(); ++k) {
    const uint32_t t = mine[k];
    auto& ft = fresh->tunnels[t];
    auto& ct = gw.tunnels[t];
    const bool same_out = ft.out.keymat.bytes() == ct.out.keymat.bytes();
    const bool same_in = ft.in.keymat.bytes() == ct.in.keymat.bytes();
    if (same_in && ft.in.replay_window != sa_in[t]->replay().size()) {
      *err = fmt::format("tunnel {}: the inbound replay window changed but the key did not; change the key too",
                         ct.name);
      return false;
    }
    esp::SaConfig oc = dp::outbound_sa(*fresh, ft);
    esp::SaConfig ic = dp::inbound_sa(*fresh, ft);
    oc.user_id = ic.user_id = t;
    std::string e;
    nout[k] = esp::Sa::create(oc, esp::Direction::kOutbound, nw, &e);
    if (nout[k]) nin[k] = esp::Sa::create(ic, esp::Direction::kInbound, nw, &e);
    if (!nout[k] || !nin[k]) {
      *err = fmt::format("tunnel {}: {}", ct.name, e);
      return false;
    }
    (void)same_out;
  }
  // Phase 1: the instance goes down (its flows move to the other instance) and its inbound SAs leave the
  // tables; after the synchronise in publish() no worker can reach the old SAs.
  const AdminState was = model.instance_admin(inst);
  {
    std::lock_guard lk(snap_mu);
    model.set_instance(inst, AdminState::kDown, std::nullopt, err);
    for (uint32_t t : mine) suspended[t] = true;
  }
  std::vector<std::unique_ptr<esp::SaTable>> old_tables;
  if (!build_tables(err, &old_tables)) return false;
  publish();
  old_tables.clear();
  // Phase 2: swap in the new SAs. A key that did not change continues its sequence number and replay window:
  // never the same (key, IV) pair twice, never a replay accepted twice.
  std::vector<std::unique_ptr<esp::Sa>> retired;
  {
    std::lock_guard lk(snap_mu);
    for (size_t k = 0; k < mine.size(); ++k) {
      const uint32_t t = mine[k];
      auto& ft = fresh->tunnels[t];
      auto& ct = gw.tunnels[t];
      if (ft.out.keymat.bytes() == ct.out.keymat.bytes()) nout[k]->resume_after(sa_out[t]->last_seq());
      if (ft.in.keymat.bytes() == ct.in.keymat.bytes()) nin[k]->adopt_replay(*sa_in[t]);
      const esp::SaStats so = sa_out[t]->stats(), si = sa_in[t]->stats();
      retired_out[t].packets += so.packets;
      retired_in[t].packets += si.packets;
      retired_out[t].bytes += so.bytes;
      retired_in[t].bytes += si.bytes;
      for (size_t r = 0; r < esp::kDropCount; ++r) {
        retired_out[t].drops[r] += so.drops[r];
        retired_in[t].drops[r] += si.drops[r];
      }
      retired.push_back(std::move(sa_out[t]));
      retired.push_back(std::move(sa_in[t]));
      sa_out[t] = std::move(nout[k]);
      sa_in[t] = std::move(nin[k]);
      ct.out = std::move(ft.out);
      ct.in = std::move(ft.in);
      suspended[t] = false;
    }
    model.set_instance(inst, was, std::nullopt, err);
    ++resets[inst];
  }
  if (!build_tables(err, &old_tables)) return false;
  publish();
  old_tables.clear();
  retired.clear();  // wipes the old keys
  return true;
}

bool Dataplane::apply_reset(uint32_t i, std::string* err) { return impl_->reset_instance(i, err); }

// ------------------------------------------------------------------------------------------------ control block

namespace {

ctrl::State to_ctrl(AdminState s) {
  return s == AdminState::kUp ? ctrl::State::kUp : s == AdminState::kDraining ? ctrl::State::kDrain : ctrl::State::kDown;
}

}  // namespace

void Dataplane::Impl::handle_commands(Dataplane& dp) {
  ctrl::Command c;
  for (int budget = 16; budget > 0 && ctrl->poll(&c); --budget) {
    ctrl::Reply r;
    r.request_id = c.request_id;
    std::string msg;
    ctrl::Status st = ctrl::Status::kOk;
    bool reserved_zero = c.flags == 0;
    for (uint8_t b : c.reserved) reserved_zero &= b == 0;
    const auto op = ctrl::Op(c.op);
    if (c.version != ctrl::kLayoutVersion) {
      st = ctrl::Status::kBadVersion;
      msg = fmt::format("layout version {} (this gateway speaks {})", c.version, ctrl::kLayoutVersion);
    } else if (c.length != sizeof(ctrl::Command)) {
      st = ctrl::Status::kBadLength;
      msg = fmt::format("length {} (expected {})", c.length, sizeof(ctrl::Command));
    } else if (c.op >= uint16_t(ctrl::Op::kCount)) {
      st = ctrl::Status::kBadOp;
      msg = fmt::format("unknown opcode {}", c.op);
    } else if (!reserved_zero) {
      st = ctrl::Status::kBadValue;
      msg = "flags and reserved bytes must be zero";
    } else if ((op == ctrl::Op::kTunnelState || op == ctrl::Op::kTunnelWeight) && c.target >= gw.tunnels.size()) {
      st = ctrl::Status::kBadTarget;
      msg = fmt::format("tunnel {} out of range (0..{})", c.target, gw.tunnels.size() - 1);
    } else if ((op == ctrl::Op::kInstanceState || op == ctrl::Op::kInstanceReset) && c.target >= gw.instances.size()) {
      st = ctrl::Status::kBadTarget;
      msg = fmt::format("instance {} out of range (0..{})", c.target, gw.instances.size() - 1);
    } else if ((op == ctrl::Op::kTunnelState || op == ctrl::Op::kInstanceState) && c.value > 2) {
      st = ctrl::Status::kBadValue;
      msg = fmt::format("state {} (0 up, 1 drain, 2 down)", c.value);
    } else if (c.deadline_ms != 0 && !((op == ctrl::Op::kTunnelState || op == ctrl::Op::kInstanceState) &&
                                       c.value == uint32_t(ctrl::State::kDrain))) {
      st = ctrl::Status::kBadValue;
      msg = "a deadline goes with drain only";
    } else if (c.deadline_ms > ctrl::kMaxDeadlineMs) {
      st = ctrl::Status::kBadValue;
      msg = fmt::format("deadline {} ms is above 24 h", c.deadline_ms);
    } else if (op == ctrl::Op::kTunnelWeight && c.value > ctrl::kMaxWeight) {
      st = ctrl::Status::kBadValue;
      msg = fmt::format("weight {} is above {}", c.value, ctrl::kMaxWeight);
    } else if (op == ctrl::Op::kMode && c.value > 1) {
      st = ctrl::Status::kBadValue;
      msg = fmt::format("mode {} (0 active-active, 1 active-standby)", c.value);
    } else {
      const AdminState as = c.value == 0 ? AdminState::kUp : c.value == 1 ? AdminState::kDraining : AdminState::kDown;
      const std::optional<uint32_t> dl = c.deadline_ms ? std::optional<uint32_t>(c.deadline_ms) : std::nullopt;
      bool ok = true;
      switch (op) {
        case ctrl::Op::kNop: break;
        case ctrl::Op::kTunnelState: ok = dp.apply_tunnel(c.target, as, dl, &msg); break;
        case ctrl::Op::kTunnelWeight: ok = dp.apply_weight(c.target, c.value, &msg); break;
        case ctrl::Op::kInstanceState: ok = dp.apply_instance(c.target, as, dl, &msg); break;
        case ctrl::Op::kInstanceReset: ok = dp.apply_reset(c.target, &msg); break;
        case ctrl::Op::kMode:
          dp.apply_mode(c.value == 0 ? config::Mode::kActiveActive : config::Mode::kActiveStandby);
          break;
        case ctrl::Op::kClearCounters: dp.clear_counters(); break;
        case ctrl::Op::kCount: break;
      }
      if (!ok) st = ctrl::Status::kRefused;
    }
    if (st == ctrl::Status::kOk) ++cmds_ok;
    else ++cmds_rejected;
    r.status = st;
    r.generation = generation;
    if (msg.empty()) msg = st == ctrl::Status::kOk ? "ok" : ctrl::to_string(st);
    ctrl::copy_name(r.message, sizeof(r.message), msg);
    refresh_mirror(dp);  // a client that saw the reply reads the new state from the mirror
    ctrl->reply(r);
  }
}

void Dataplane::Impl::refresh_mirror(const Dataplane& dp) {
  const Stats s = dp.stats();
  ctrl::GatewayInfo g{};
  ctrl::copy_name(g.name, sizeof(g.name), gw.name);
  g.mode = model.mode() == config::Mode::kActiveActive ? 0 : 1;
  g.n_tunnels = uint32_t(gw.tunnels.size());
  g.n_instances = uint32_t(gw.instances.size());
  g.n_workers = uint32_t(workers.size());
  g.generation = generation;
  g.inside_rx = s.inside_rx;
  g.inside_tx = s.inside_tx;
  g.outside_rx = s.outside_rx;
  g.outside_tx = s.outside_tx;
  for (size_t r = 0; r < kDropCount && r < ctrl::kMaxDropReasons; ++r) {
    g.drops[r] = s.drops[r];
    ctrl::copy_name(g.drop_names[r], sizeof(g.drop_names[r]), to_string(Drop(r)));
  }
  for (size_t r = 0; r < esp::kDropCount && r < ctrl::kMaxDropReasons; ++r) {
    uint64_t v = s.esp_table_drops[r];
    for (const auto& t : s.tunnels) v += t.esp_drops[r];
    g.esp_drops[r] = v;
    ctrl::copy_name(g.esp_drop_names[r], sizeof(g.esp_drop_names[r]), esp::to_string(esp::Drop(r)));
  }
  g.flows_new = s.flows_new;
  g.moved_down = s.moved_down;
  g.moved_drain = s.moved_drain;
  g.moved_idle = s.moved_idle;
  g.evicted = s.evicted;
  g.commands_ok = cmds_ok;
  g.commands_rejected = cmds_rejected;
  g.updated_ns = uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                              std::chrono::system_clock::now().time_since_epoch()).count());
  ctrl->write_gateway(g);
  for (uint32_t i = 0; i < gw.instances.size() && i < ctrl::kMaxInstances; ++i) {
    ctrl::InstanceInfo r{};
    const auto& in = gw.instances[i];
    ctrl::copy_name(r.name, sizeof(r.name), in.name);
    char buf[64];
    std::string ips = in.ipv4.version ? net::format_ip(in.ipv4, buf, sizeof(buf)) : "";
    if (in.ipv6.version) ips += std::string(ips.empty() ? "" : " ") + net::format_ip(in.ipv6, buf, sizeof(buf));
    ctrl::copy_name(r.ip, sizeof(r.ip), ips);
    r.admin = uint32_t(to_ctrl(model.instance_admin(i)));
    r.standby = model.standby(i) ? 1 : 0;
    r.resets = resets[i];
    ctrl->write_instance(i, r);
  }
  for (uint32_t t = 0; t < gw.tunnels.size() && t < ctrl::kMaxTunnels; ++t) {
    ctrl::TunnelInfo r{};
    const TunnelStats& ts = s.tunnels[t];
    ctrl::copy_name(r.name, sizeof(r.name), ts.name);
    ctrl::copy_name(r.instance, sizeof(r.instance), ts.instance);
    ctrl::copy_name(r.device, sizeof(r.device), ts.device);
    r.instance_index = gw.tunnels[t].instance;
    r.admin = uint32_t(to_ctrl(ts.admin));
    r.state = uint32_t(to_ctrl(ts.effective));
    r.weight = ts.weight;
    r.effective_weight = ts.effective_weight;
    r.out_spi = gw.tunnels[t].out.spi;
    r.in_spi = gw.tunnels[t].in.spi;
    r.packets_out = ts.packets_out;
    r.bytes_out = ts.bytes_out;
    r.packets_in = ts.packets_in;
    r.bytes_in = ts.bytes_in;
    r.pinned = ts.pinned;
    r.placed = ts.placed;
    for (const auto& w : workers) r.moved_in += w->pins->tunnel_counters(flow::TunnelId(t)).moved_in;
    for (uint64_t d : ts.esp_drops) r.esp_drops += d;
    {
      std::lock_guard lk(snap_mu);
      r.last_seq_out = sa_out[t]->last_seq();
    }
    if (ts.live_enabled) {
      r.liveness = 1 + uint32_t(ts.live);  // LiveState order: up, down, holding, suppressed
      r.liveness_penalty = ts.penalty;
      r.last_proof_ms_ago = ts.last_proof_ms_ago;
      r.flaps = ts.flaps;
    }
    r.probes_out = ts.probes_out;
    r.probe_replies_in = ts.probe_replies_in;
    r.reflected = ts.reflected;
    ctrl->write_tunnel(t, r);
  }
  for (uint32_t w = 0; w < workers.size() && w < ctrl::kMaxWorkers; ++w) {
    ctrl::WorkerInfo r{};
    r.lcore = workers[w]->lcore;
    r.inside_rx = workers[w]->ctr.inside_rx;
    r.inside_tx = workers[w]->ctr.inside_tx;
    r.outside_rx = workers[w]->ctr.outside_rx;
    r.outside_tx = workers[w]->ctr.outside_tx;
    ctrl->write_worker(w, r);
  }
  ctrl->set_generation(generation);
}

// ------------------------------------------------------------------------------------------------ liveness

void Dataplane::Impl::liveness_start() {
  std::lock_guard lk(snap_mu);
  const uint32_t now = now_ms();
  live = Liveness(uint32_t(gw.tunnels.size()));
  live_any = false;
  for (uint32_t t = 0; t < gw.tunnels.size(); ++t) {
    const config::LivenessSettings& ls = gw.tunnels[t].liveness;
    LivenessConfig c;
    c.enabled = ls.enabled;
    c.interval_ms = ls.interval_ms;
    c.multiplier = ls.multiplier;
    c.hold_down_ms = ls.hold_down_ms;
    if (!gw.liveness.damping) c.penalty = 0;
    live.configure(t, c, now);
    live_any |= ls.enabled;
  }
  proof_seen.assign(workers.size(), std::vector<uint32_t>(gw.tunnels.size(), 0));
  for (size_t w = 0; w < workers.size(); ++w)
    for (size_t t = 0; t < gw.tunnels.size(); ++t)
      proof_seen[w][t] = workers[w]->proof(uint32_t(t)).load(std::memory_order_relaxed);
}

// Reads the workers' watchdog ticks, runs the detector, and publishes its verdicts the way an operator command
// is published (model change, new State, RCU synchronise). Main lcore, every loop.
void Dataplane::Impl::liveness_poll(const Dataplane& dp, double el) {
  if (!live_any) return;
  static thread_local std::vector<Liveness::Change> changes;  // main only; keeps its capacity between calls
  changes.clear();
  {
    std::lock_guard lk(snap_mu);
    for (size_t w = 0; w < workers.size(); ++w) {
      for (uint32_t t = 0; t < gw.tunnels.size(); ++t) {
        const uint32_t v = workers[w]->proof(t).load(std::memory_order_relaxed);
        if (v == proof_seen[w][t]) continue;
        proof_seen[w][t] = v;
        live.proof(t, v);
      }
    }
    live.tick(now_ms(), &changes);
    // Monitor mode: verdicts are reported, the tunnels keep their traffic (operators trying timers out).
    if (!gw.liveness.monitor)
      for (const auto& c : changes) model.set_live(c.tunnel, c.up);
  }
  if (changes.empty()) return;
  const uint64_t pub0 = rte_get_tsc_cycles();
  if (!gw.liveness.monitor) publish();
  const uint64_t pub_us = (rte_get_tsc_cycles() - pub0) * 1000000 / tsc_hz;
  const uint32_t done = now_ms();
  uint64_t inside_rx = 0, outside_rx = 0;
  for (const auto& w : workers) {
    inside_rx += w->ctr.inside_rx;
    outside_rx += w->ctr.outside_rx;
  }
  for (const auto& c : changes) {
    const std::string& name = gw.tunnels[c.tunnel].name;
    const std::string text = fmt::format("liveness:{}:{}", name, c.up ? "up" : "down");
    live_events.push_back({{"event", text},
                           {"tunnel", name},
                           {"up", c.up},
                           {"at_s", el},
                           {"at_ms", c.at},
                           {"last_proof_ms", c.last_proof},
                           {"silence_ms", int32_t(c.at - c.last_proof)},   // last proof -> verdict
                           {"publish_ms", int32_t(done - c.at)},           // verdict -> every worker on it
                           {"publish_us", pub_us},                          // build + store + RCU synchronise
                           {"generation", generation},
                           {"inside_rx", inside_rx},
                           {"outside_rx", outside_rx},
                           {"applied", !gw.liveness.monitor}});
    if (!opt.quiet)
      fmt::print("meshgate: liveness: tunnel {} {} at {:.3f}s (last proof {} ms before){}\n", name,
                 c.up ? "up" : "down", el, int32_t(c.at - c.last_proof),
                 gw.liveness.monitor ? " [monitor: not applied]" : "");
  }
  (void)dp;
}

// ------------------------------------------------------------------------------------------------ run

int Dataplane::run() {
  Impl& d = *impl_;
  g_stop.store(false);
  std::vector<std::pair<Impl*, Worker*>> args;
  args.reserve(d.workers.size());
  for (auto& w : d.workers) args.emplace_back(&d, w.get());
  for (auto& a : args) {
    if (rte_eal_remote_launch(launch_worker, &a, a.second->lcore) != 0) {
      g_stop.store(true);
      rte_eal_mp_wait_lcore();
      fmt::print(stderr, "meshgate: cannot launch a worker on lcore {}\n", a.second->lcore);
      return kExitRuntime;
    }
  }
  const uint64_t hz = d.tsc_hz;
  const uint64_t t0 = rte_get_tsc_cycles();
  d.liveness_start();
  uint64_t next_stats = d.opt.stats_interval_s > 0 ? t0 + uint64_t(d.opt.stats_interval_s * double(hz)) : UINT64_MAX;
  uint64_t last_rx = 0, last_change = t0;
  std::vector<bool> fired(d.opt.events.size(), false);
  std::vector<bool> faulted(d.opt.faults.size(), false);
  nlohmann::json events = nlohmann::json::array();
  uint64_t next_mirror = t0;

  while (!g_stop.load(std::memory_order_relaxed)) {
    // Short naps: a command waits at most this long before main sees it (latency target: p99 < 1 ms).
    std::this_thread::sleep_for(std::chrono::microseconds(50));
    const uint64_t now = rte_get_tsc_cycles();
    const double el = double(now - t0) / double(hz);
    uint64_t inside_rx = 0, outside_rx = 0;
    for (const auto& w : d.workers) {
      inside_rx += w->ctr.inside_rx;
      outside_rx += w->ctr.outside_rx;
    }
    for (size_t e = 0; e < d.opt.events.size(); ++e) {
      const Event& ev = d.opt.events[e];
      if (fired[e]) continue;
      const bool due = ev.at_s >= 0 ? el >= ev.at_s : inside_rx >= ev.at_packets;
      if (!due) continue;
      fired[e] = true;
      const Stats s = stats();
      std::string err;
      const bool ok = ev.instance ? apply_instance(ev.index, ev.state, std::nullopt, &err)
                                  : apply_tunnel(ev.index, ev.state, std::nullopt, &err);
      if (!d.opt.quiet)
        fmt::print("meshgate: event '{}' at {:.3f}s{}\n", ev.text, el, ok ? "" : " failed: " + err);
      events.push_back({{"event", ev.text}, {"at_s", el}, {"ok", ok}, {"before", to_json(s)}});
    }
    for (size_t f = 0; f < d.opt.faults.size(); ++f) {
      const Fault& ft = d.opt.faults[f];
      if (faulted[f] || el < ft.at_s) continue;
      faulted[f] = true;
      d.blackhole[ft.tunnel] = ft.blackhole ? 1 : 0;
      d.publish();
      if (!d.opt.quiet) fmt::print("meshgate: fault '{}' at {:.3f}s\n", ft.text, el);
      events.push_back({{"event", "fault:" + ft.text}, {"at_s", el}, {"at_ms", d.now_ms()}, {"ok", true}});
    }
    {
      bool changed;
      {
        std::lock_guard lk(d.snap_mu);
        changed = d.model.expire_drains(d.now_ms());
      }
      if (changed) d.publish();
    }
    d.liveness_poll(*this, el);
    if (d.ctrl) {
      d.handle_commands(*this);
      if (now >= next_mirror) {
        d.refresh_mirror(*this);
        next_mirror = now + hz / 10;
      }
    }
    if (now >= next_stats) {
      fmt::print("{}", format_table(stats()));
      next_stats = now + uint64_t(d.opt.stats_interval_s * double(hz));
    }
    if (d.opt.duration_s > 0 && el >= d.opt.duration_s) break;
    const uint64_t rx = inside_rx + outside_rx;
    if (rx != last_rx) {
      last_rx = rx;
      last_change = now;
    } else if (d.opt.exit_when_idle_ms && rx > 0 && (now - last_change) * 1000 / hz >= d.opt.exit_when_idle_ms) {
      break;
    }
  }
  g_stop.store(true);
  rte_eal_mp_wait_lcore();

  nlohmann::json port_stats = nlohmann::json::object();
  for (auto& p : d.ports) {
    rte_eth_stats es{};
    if (rte_eth_stats_get(p.id, &es) == 0) {
      port_stats[p.name] = {{"ipackets", es.ipackets}, {"opackets", es.opackets}, {"imissed", es.imissed},
                            {"ierrors", es.ierrors}, {"oerrors", es.oerrors}, {"rx_nombuf", es.rx_nombuf}};
      if (!d.opt.quiet && (es.imissed || es.ierrors || es.oerrors || es.rx_nombuf))
        fmt::print(stderr, "meshgate: port {}: imissed {} ierrors {} oerrors {} rx_nombuf {}\n", p.name, es.imissed,
                   es.ierrors, es.oerrors, es.rx_nombuf);
    }
  }
  // Queues drained: stop and close the ports (their RX rings give their mbufs back, pcap files are flushed).
  for (auto& p : d.ports) {
    rte_eth_dev_stop(p.id);
    rte_eth_dev_close(p.id);
  }
  d.ports_up = false;
  const Stats fin = stats();
  const unsigned in_use = rte_mempool_in_use_count(d.pool);
  d.report = to_json(fin);
  d.report["events"] = events;
  d.report["liveness_events"] = d.live_events;
  d.report["ports"] = port_stats;
  d.report["mbufs_in_use_at_exit"] = in_use;
  if (!d.opt.quiet) {
    fmt::print("{}", format_table(fin));
    fmt::print("meshgate: stopped; mbufs in use after closing ports: {}\n", in_use);
  }
  if (in_use != 0) {
    fmt::print(stderr, "meshgate: {} mbufs were not returned to the pool\n", in_use);
    return kExitRuntime;
  }
  return kExitOk;
}

}  // namespace mg::dp
