// Tunnel interfaces (docs/ARCHITECTURE.md "Tunnel interfaces"): a tunnel with `interface = "NAME"` has a kernel
// interface of its own, a point-to-point TUN carrying the tunnel's inner address (its liveness probe_source) with
// the device's (probe_address) at the far end. The host's daemons (BIRD for BGP and BFD, ping) talk to the device
// over it: decrypted packets to our inner address go up to it, and what the kernel sends on it is encrypted into
// that tunnel alone, by the worker that owns the tunnel (t % workers), never placed by the flow table. Main alone
// touches the TUNs; workers and main meet in rings, as on the exception path (host.cpp).
#include <fmt/core.h>
#include <rte_errno.h>

#include "dataplane/internal.h"
#include "net/net.h"

namespace mg::dp {

namespace {

constexpr unsigned kUpRing = 1024;    // workers -> main, every interface: a BGP table's burst between main's rounds
constexpr unsigned kDownRing = 512;   // main -> one worker
constexpr int kReadsPerRound = 64;    // per interface and main round (1 ms): 64 k packets/s each at most
// Room the encapsulation needs around an inner datagram in one mbuf: Ethernet, outer IPv6, UDP and ESP header in
// front (headroom), padding, trailer and ICV behind.
constexpr uint32_t kEncapTail = 64;

// What the kernel sent that may go into a tunnel: one unicast IP datagram, its header whole and its length the
// datagram's. Multicast (MLD, IGMP, a routing daemon's hellos) has no single receiver behind a tunnel.
bool kernel_datagram_ok(const uint8_t* p, uint32_t n) noexcept {
  if (n >= 40 && (p[0] >> 4) == 6) return 40u + net::load_be16(p + 4) == n && p[24] != 0xff;
  if (n < 20 || (p[0] >> 4) != 4) return false;
  const uint32_t ihl = uint32_t(p[0] & 15) * 4;
  return ihl >= 20 && ihl <= n && net::load_be16(p + 2) == n && (p[16] & 0xf0) != 0xe0 &&
         net::load_be32(p + 16) != 0xffffffffu;
}

}  // namespace

int Dataplane::Impl::tunif_setup(std::string* err) {
  tunif.resize(gw.tunnels.size());
  tunif_ctr.assign(gw.tunnels.size(), {});
  for (auto& w : workers) w->tpace.resize(gw.tunnels.size());
  const uint32_t room = uint32_t(rte_pktmbuf_data_room_size(pool)) - RTE_PKTMBUF_HEADROOM - kEncapTail;
  for (size_t t = 0; t < gw.tunnels.size(); ++t) {
    const config::Tunnel& ct = gw.tunnels[t];
    if (ct.interface.empty()) continue;
    if (!nl) {
      nl = hostif::Netlink::open(err);
      if (!nl) return kExitPort;
    }
    auto tun = hostif::Tun::open(ct.interface, err);
    if (!tun) {
      *err = fmt::format("tunnel '{}': {}", ct.name, *err);
      return kExitPort;
    }
    const net::IpAddr& local = ct.liveness.probe_source;
    const net::IpAddr& peer = ct.liveness.probe_address;
    // The kernel fragments or says "too big" (PMTU) itself above the tunnel's path MTU; nothing it sends then
    // needs the MTU step, and every datagram fits one mbuf with room for the encapsulation.
    const uint32_t mtu = std::min<uint32_t>(tunnel_mtu[t].path, room);
    // Without it (a read-only /proc/sys in a container) the kernel's IPv6 chatter on the interface (router
    // solicitations, MLD) is only refused as multicast and counted: said, not fatal.
    if (local.version == 4 && !tun->disable_ipv6(err))
      log::warning(log::Type::kHost, "tunnel {}: interface {}: IPv6 left on: {}", ct.name, ct.interface, *err);
    if (!nl->set_link(tun->ifindex(), false, mtu, err) || !nl->add_peer_address(tun->ifindex(), local, peer, err) ||
        !nl->set_link(tun->ifindex(), true, 0, err)) {
      *err = fmt::format("tunnel '{}': interface '{}': {}", ct.name, ct.interface, *err);
      return kExitPort;
    }
    char a[64], b[64];
    log::info(log::Type::kHost, "tunnel {}: kernel interface {} (ifindex {}), {} peer {}, MTU {}", ct.name,
              ct.interface, tun->ifindex(), net::format_ip(local, a, sizeof a), net::format_ip(peer, b, sizeof b),
              mtu);
    tunif[t] = std::move(tun);
    any_tunif = true;
  }
  if (!any_tunif) return kExitOk;
  tunif_up = rte_ring_create("mg_tunif_up", kUpRing, int(rte_socket_id()), RING_F_SC_DEQ);
  if (tunif_up == nullptr) {
    *err = fmt::format("tunnel interfaces: ring: {}", rte_strerror(rte_errno));
    return kExitEal;
  }
  for (auto& w : workers) {
    const std::string name = fmt::format("mg_tunif_dn_{}", w->id);
    w->tdown = rte_ring_create(name.c_str(), kDownRing, int(rte_socket_id()), RING_F_SP_ENQ | RING_F_SC_DEQ);
    if (w->tdown == nullptr) {
      *err = fmt::format("tunnel interfaces: ring: {}", rte_strerror(rte_errno));
      return kExitEal;
    }
  }
  return kExitOk;
}

// Worker, inbound, after the ICV verified and liveness had its look: a packet to our inner address on a tunnel
// with an interface goes up, if its source may come out of this tunnel (the device's inner address, or a network
// routed through the tunnel), within the interface's rate.
bool Dataplane::Impl::tunif_up_one(Worker& w, const State& st, uint32_t t, rte_mbuf* m) noexcept {
  const RtTunnel& rt = st.tunnels[t];
  const uint8_t* p = rte_pktmbuf_mtod(m, const uint8_t*);
  const bool v6 = (p[0] >> 4) == 6;
  if (v6 != bool(rt.probe_v6) || std::memcmp(v6 ? p + 24 : p + 16, rt.local, v6 ? 16 : 4) != 0) return false;
  const uint8_t* from = v6 ? p + 8 : p + 12;
  if (std::memcmp(from, rt.probe_dst, v6 ? 16 : 4) != 0 && !source_ok(*st.routes, t, v6, from)) {
    ++w.ctr.drops[size_t(Drop::kInnerSelector)];
    rte_pktmbuf_free(m);
    return true;
  }
  // A token bucket of interface_pps per second, 64 deep (as the twins'): a BGP session's bursts pass, a flood
  // toward the host does not.
  Pace& pc = w.tpace[t];
  const uint64_t now = rte_get_tsc_cycles(), pps = gw.tunnels[t].interface_pps;
  pc.tokens = std::min<uint64_t>(pc.tokens + std::min<uint64_t>(now - pc.last, 64 * tsc_hz) * pps / tsc_hz, 64);
  if (pc.tokens || now - pc.last > tsc_hz) pc.last = now;
  if (pc.tokens == 0) {
    ++w.ctr.drops[size_t(Drop::kHostRateLimited)];
    rte_pktmbuf_free(m);
    return true;
  }
  --pc.tokens;
  // Ethernet padding must not reach the kernel as part of the datagram.
  const uint32_t ip_len = v6 ? 40u + net::load_be16(p + 4) : net::load_be16(p + 2);
  if (ip_len < rte_pktmbuf_pkt_len(m)) rte_pktmbuf_trim(m, uint16_t(rte_pktmbuf_pkt_len(m) - ip_len));
  m->hash.usr = t;
  if (rte_ring_mp_enqueue(tunif_up, m) != 0) {
    ++w.ctr.drops[size_t(Drop::kHostQueueFull)];
    rte_pktmbuf_free(m);
    return true;
  }
  ++w.tctr[t].to_kernel;
  return true;
}

// Worker: what the kernel sent on its tunnels' interfaces, each packet encrypted into its own tunnel.
void Dataplane::Impl::tunif_send(Worker& w, const State& st) noexcept {
  rte_mbuf* pkts[kBurst];
  const unsigned n = rte_ring_sc_dequeue_burst(w.tdown, reinterpret_cast<void**>(pkts), kBurst, nullptr);
  for (unsigned i = 0; i < n; ++i) {
    const uint32_t t = pkts[i]->hash.usr;
    const RtTunnel& rt = st.tunnels[t];
    if (rt.blackhole) [[unlikely]] {  // fault injection: nothing leaves on it
      rte_pktmbuf_free(pkts[i]);
      ++w.tctr[t].fault_drops;
    } else if (rt.held) [[unlikely]] {  // a reset is replacing its SA (see flush_ctl)
      rte_pktmbuf_free(pkts[i]);
      ++w.tctr[t].kernel_drops;
    } else {
      send_one(w, rt, t, pkts[i], CtlKind::kKernel);
    }
  }
}

// Main, every round.
void Dataplane::Impl::tunif_poll() noexcept {
  if (!any_tunif) return;
  rte_mbuf* pkts[kBurst];
  uint8_t buf[RTE_MBUF_DEFAULT_DATAROOM];
  // Workers -> kernel. A refusal (interface down, no memory) loses the packet, counted.
  for (int round = 0; round < 8; ++round) {
    const unsigned n = rte_ring_sc_dequeue_burst(tunif_up, reinterpret_cast<void**>(pkts), kBurst, nullptr);
    if (n == 0) break;
    for (unsigned i = 0; i < n; ++i) {
      rte_mbuf* m = pkts[i];
      const uint32_t t = m->hash.usr;
      const uint32_t len = rte_pktmbuf_pkt_len(m);
      const uint8_t* p = len <= sizeof buf ? static_cast<const uint8_t*>(rte_pktmbuf_read(m, 0, len, buf)) : nullptr;
      if (p == nullptr || !tunif[t]->write(p, len)) ++tunif_ctr[t].unwritten;
      rte_pktmbuf_free(m);
    }
  }
  // Kernel -> the tunnel's worker. Read straight into an mbuf; an empty read gives it back.
  const uint32_t nw = uint32_t(workers.size());
  for (size_t t = 0; t < tunif.size(); ++t) {
    if (!tunif[t]) continue;
    for (int r = 0; r < kReadsPerRound; ++r) {
      rte_mbuf* m = rte_pktmbuf_alloc(pool);
      if (m == nullptr) {
        // No mbuf: the datagram waits in the kernel's queue (which drops beyond its length, as for any slow reader).
        ++tunif_ctr[t].refused;
        break;
      }
      uint8_t* p = rte_pktmbuf_mtod(m, uint8_t*);
      const uint32_t cap = rte_pktmbuf_tailroom(m) - kEncapTail;
      const long got = tunif[t]->read(p, cap + 1);  // one more: a datagram longer than cap shows as such
      if (got <= 0) {
        rte_pktmbuf_free(m);
        break;
      }
      if (uint32_t(got) > cap || !kernel_datagram_ok(p, uint32_t(got))) {
        rte_pktmbuf_free(m);
        ++tunif_ctr[t].refused;
        continue;
      }
      rte_pktmbuf_append(m, uint16_t(got));
      m->hash.usr = uint32_t(t);
      if (rte_ring_sp_enqueue(workers[t % nw]->tdown, m) != 0) {
        rte_pktmbuf_free(m);
        ++tunif_ctr[t].refused;
      }
    }
  }
}

void Dataplane::Impl::tunif_drain() noexcept {
  std::vector<rte_ring*> rings{tunif_up};
  for (auto& w : workers) rings.push_back(w->tdown), w->tdown = nullptr;
  for (rte_ring* r : rings) {
    if (r == nullptr) continue;
    void* m;
    while (rte_ring_dequeue(r, &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
    rte_ring_free(r);
  }
  tunif_up = nullptr;
  tunif.clear();  // the interfaces go with their descriptors
  any_tunif = false;
}

}  // namespace mg::dp
