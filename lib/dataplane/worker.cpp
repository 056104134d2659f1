// The per-packet path: inside RX -> flow -> ESP encap -> outside TX, outside RX -> ESP decap -> inside TX, and
// the worker loop around them. No allocation, lock, exception or log here.
#include <rte_mbuf.h>

#include "dataplane/internal.h"
#include "net/net.h"

namespace mg::dp {

namespace {

uint16_t paced(Pace& p, uint64_t pps, uint64_t hz) noexcept {
  const uint64_t t = rte_get_tsc_cycles();
  p.tokens = std::min<uint64_t>(p.tokens + (t - p.last) * pps / hz, kBurst);
  if (p.tokens || t - p.last > hz) p.last = t;
  return uint16_t(p.tokens);
}

bool is_ip_ethertype(const uint8_t* eth) noexcept {
  return (eth[12] == 0x08 && eth[13] == 0x00) || (eth[12] == 0x86 && eth[13] == 0xdd);
}

// The inner IP header as far as the route check and the trim below rely on it: version matching the ethertype,
// a header that fits, a datagram length that neither undercuts its header nor runs past the frame. Anything
// deeper (extension headers, ports) is the flow key's to judge.
bool inner_header_ok(const uint8_t* p, uint32_t l3len, bool v6) noexcept {
  if (v6) return (p[0] >> 4) == 6 && l3len >= 40 && 40u + net::load_be16(p + 4) <= l3len;
  const uint32_t ihl = uint32_t(p[0] & 15) * 4, tot = net::load_be16(p + 2);
  return (p[0] >> 4) == 4 && ihl >= 20 && ihl <= l3len && tot >= ihl && tot <= l3len;
}

// A frame on the inside port that is the host's when that port has a kernel twin: ARP for the gateway's inside
// address, IP to it (BGP, BFD, ping from the inside router), IPv6 to the link (ND, link-local).
bool inside_host_frame(const uint8_t* e, uint32_t len, const net::LocalAddrs& la) noexcept {
  if (len < kEthLen + 20) return false;
  const uint16_t type = net::load_be16(e + 12);
  const uint8_t* p = e + kEthLen;
  if (type == net::kEtherArp) return net::arp_for_us(p, len - kEthLen, la);
  if (type == 0x0800) return la.has4 && std::memcmp(p + 16, la.v4, 4) == 0;
  if (type != 0x86dd || len < kEthLen + 40) return false;
  const uint8_t* dst = p + 24;
  return (la.has6 && std::memcmp(dst, la.v6, 16) == 0) || (dst[0] == 0xfe && (dst[1] & 0xc0) == 0x80) ||
         (dst[0] == 0xff && (dst[1] & 0x0f) == 0x02);
}

}  // namespace

uint16_t Dataplane::Impl::outbound(Worker& w, const State& st, uint16_t q) noexcept {
  const uint16_t want = opt.pace_pps ? paced(w.pace, opt.pace_pps, tsc_hz) : kBurst;
  if (want == 0) return 0;
  rte_mbuf* pkts[kBurst];
  const uint16_t n = rte_eth_rx_burst(ports[inside].id, q, pkts, want);
  if (n == 0) return 0;
  if (opt.pace_pps) w.pace.tokens -= n;
  w.ctr.inside_rx += n;
  w.pctr[inside].rx_packets += n;

  const uint8_t* l3[kBurst];
  uint32_t len[kBurst];
  rte_mbuf* ok[kBurst];
  // Destinations for the route lookup, by family: the packet's index in ok[] beside each.
  uint32_t dst4[kBurst];
  uint8_t dst6[kBurst][16];
  uint16_t at4[kBurst], at6[kBurst];
  uint16_t k = 0, n4 = 0, n6 = 0;
  rte_mbuf* up[kBurst];
  uint16_t nup = 0;
  for (uint16_t i = 0; i < n; ++i) {
    rte_mbuf* m = pkts[i];
    const uint8_t* e = rte_pktmbuf_mtod(m, const uint8_t*);
    // The inside twin's (docs/ARCHITECTURE.md "The exception path"): the inside router's ARP, BGP and BFD.
    if (inside_twin && inside_host_frame(e, rte_pktmbuf_data_len(m), host[inside_slot()].local)) [[unlikely]] {
      up[nup++] = m;
      continue;
    }
    Drop why = Drop::kCount;
    const uint32_t l3len = rte_pktmbuf_data_len(m) - kEthLen;
    const uint8_t* p = e + kEthLen;
    const bool v6 = e[12] == 0x86;
    if (rte_pktmbuf_data_len(m) < kEthLen + 20 || !is_ip_ethertype(e)) why = Drop::kInsideNotIp;
    else if (!inner_header_ok(p, l3len, v6)) why = Drop::kInsideMalformed;
    if (why != Drop::kCount) [[unlikely]] {
      ++w.ctr.drops[size_t(why)];
      rte_pktmbuf_free(m);
      continue;
    }
    if (v6) {
      std::memcpy(dst6[n6], p + 24, 16);
      at6[n6++] = k;
    } else {
      dst4[n4] = net::load_be32(p + 16);
      at4[n4++] = k;
    }
    rte_pktmbuf_adj(m, kEthLen);
    // Ethernet pads short frames to 60 bytes: only the IP datagram goes into the tunnel.
    const uint32_t ip_len = v6 ? 40u + net::load_be16(p + 4) : net::load_be16(p + 2);
    if (ip_len < rte_pktmbuf_pkt_len(m)) rte_pktmbuf_trim(m, uint16_t(rte_pktmbuf_pkt_len(m) - ip_len));
    l3[k] = p;
    len[k] = rte_pktmbuf_pkt_len(m);
    ok[k++] = m;
  }
  if (nup) [[unlikely]] host_up(w, inside_slot(), up, nup);
  if (k == 0) return n;

  // Routes (docs/ARCHITECTURE.md "Routes"): each destination's set of tunnels, one bulk lookup per family; what no
  // route covers is dropped (not_routed).
  route::SetId set[kBurst], got[kBurst];
  if (n4) {
    st.routes->lookup4_burst(dst4, n4, got);
    for (uint16_t j = 0; j < n4; ++j) set[at4[j]] = got[j];
  }
  if (n6) {
    st.routes->lookup6_burst(dst6, n6, got);
    for (uint16_t j = 0; j < n6; ++j) set[at6[j]] = got[j];
  }
  uint16_t kept = 0;
  bool one_set = true;
  for (uint16_t i = 0; i < k; ++i) {
    if (set[i] == route::kNoRoute) [[unlikely]] {
      ++w.ctr.drops[size_t(Drop::kNotRouted)];
      rte_pktmbuf_free(ok[i]);
      continue;
    }
    l3[kept] = l3[i];
    len[kept] = len[i];
    set[kept] = set[i];
    ok[kept++] = ok[i];
  }
  k = kept;
  if (k == 0) return n;
  for (uint16_t i = 1; i < k && one_set; ++i) one_set = set[i] == set[0];

  uint64_t hashes[kBurst];
  flow::TunnelId tun[kBurst];
  const uint32_t now = now_ms();
  if (one_set) [[likely]] {
    w.pins->spread_burst(*st.by_set[set[0]], l3, len, k, now, hashes, tun);
  } else {
    // Several route sets in one burst: each set's packets through its own selection table, in arrival order.
    uint8_t done[kBurst] = {};
    for (uint16_t i = 0; i < k; ++i) {
      if (done[i]) continue;
      const uint8_t* gl3[kBurst];
      uint32_t glen[kBurst];
      uint16_t idx[kBurst], g = 0;
      for (uint16_t j = i; j < k; ++j)
        if (!done[j] && set[j] == set[i]) {
          gl3[g] = l3[j];
          glen[g] = len[j];
          idx[g++] = j;
          done[j] = 1;
        }
      uint64_t gh[kBurst];
      flow::TunnelId gt[kBurst];
      w.pins->spread_burst(*st.by_set[set[i]], gl3, glen, g, now, gh, gt);
      for (uint16_t j = 0; j < g; ++j) {
        hashes[idx[j]] = gh[j];
        tun[idx[j]] = gt[j];
      }
    }
  }

  // Group by tunnel, keeping each tunnel's packets in arrival order. A burst of one tunnel needs no grouping.
  bool one = tun[0] != flow::kNoTunnel;
  for (uint16_t i = 1; i < k && one; ++i) one = tun[i] == tun[0];
  if (one) {
    send_tunnel(w, st, tun[0], ok, k);
    return n;
  }
  uint8_t done[kBurst] = {};
  rte_mbuf* grp[kBurst];
  for (uint16_t i = 0; i < k; ++i) {
    if (done[i]) continue;
    const flow::TunnelId t = tun[i];
    if (t == flow::kNoTunnel) {
      // No flow key (a header the flow parser refused) is the packet's fault, not an outage.
      ++w.ctr.drops[size_t(hashes[i] == flow::kInvalidHash ? Drop::kInsideMalformed : Drop::kNoTunnel)];
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
  return n;
}

// Encrypts one tunnel's packets and sends them on its instance port. Bytes are counted by the SA.
void Dataplane::Impl::send_tunnel(Worker& w, const State& st, flow::TunnelId t, rte_mbuf** grp, uint16_t g) noexcept {
  const RtTunnel& rt = st.tunnels[t];
  TunnelCtr& tc = w.tctr[t];
  if (rt.blackhole | rt.no_next_hop) [[unlikely]] {
    for (uint16_t j = 0; j < g; ++j) rte_pktmbuf_free(grp[j]);
    if (rt.blackhole) tc.fault_drops += g;
    else w.ctr.drops[size_t(Drop::kNoNextHop)] += g;
    return;
  }
  // ---- MTU step (mtu.cpp): SYNs clamped; packets over the path MTU fragmented, or dropped with an ICMP error.
  if (rt.mss4 | rt.mss6) clamp_mss(rt, tc, grp, g);
  rte_mbuf* fit[2 * kBurst];  // a packet of one mbuf (2 KB of data) makes at most two fragments of >= 1280 bytes
  if (any_too_big(rt, grp, g)) [[unlikely]] {
    g = fit_mtu(w, rt, tc, grp, g, fit, uint16_t(std::size(fit)));
    grp = fit;
  }
  // ---- end of the MTU step
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
  w.pctr[rt.port].tx_packets += s;
  w.pctr[rt.port].tx_refused += e - s;
  w.ctr.outside_tx += s;
  w.ctr.drops[size_t(Drop::kTxFull)] += e - s;
}

uint16_t Dataplane::Impl::inbound(Worker& w, const State& st, uint16_t oidx, uint16_t q) noexcept {
  const uint16_t want = opt.pace_outside_pps ? paced(w.opace[oidx], opt.pace_outside_pps, tsc_hz) : kBurst;
  if (want == 0) return 0;
  rte_mbuf* pkts[kBurst];
  const uint16_t n = rte_eth_rx_burst(ports[outside[oidx]].id, q, pkts, want);
  if (n == 0) return 0;
  if (opt.pace_outside_pps) w.opace[oidx].tokens -= n;
  w.ctr.outside_rx += n;
  w.pctr[outside[oidx]].rx_packets += n;
  const HostPort& hp = host[oidx];
  const bool twin = hp.up != nullptr;
  rte_mbuf* up[kBurst];
  uint16_t nup = 0;
  uint16_t k = 0;
  for (uint16_t i = 0; i < n; ++i) {
    rte_mbuf* m = pkts[i];
    const uint8_t* e = rte_pktmbuf_mtod(m, const uint8_t*);
    if (rte_pktmbuf_data_len(m) < kEthLen || !is_ip_ethertype(e)) [[unlikely]] {
      if (rte_pktmbuf_data_len(m) >= kEthLen && net::load_be16(e + 12) == net::kEtherArp &&
          net::arp_for_us(e + kEthLen, rte_pktmbuf_data_len(m) - kEthLen, hp.local)) {
        if (twin) up[nup++] = m;
        else ++w.ctr.drops[size_t(Drop::kToHost)], rte_pktmbuf_free(m);
        continue;
      }
      ++w.ctr.drops[size_t(Drop::kOutsideNotIp)];
      rte_pktmbuf_free(m);
      continue;
    }
    rte_pktmbuf_adj(m, kEthLen);
    pkts[k++] = m;
  }
  rte_mbuf* hostp[kBurst];
  esp::HostList hl{hostp};
  hl.local = &hp.local;
  const uint16_t d = esp::decap_burst(*st.in_table[oidx], w.id, pkts, k, &hl);
  for (uint16_t i = d; i < k - hl.n; ++i) rte_pktmbuf_free(pkts[i]);  // reason counted in the SA or the table
  if (hl.n) [[unlikely]] {
    // The host's (IKE, ICMP, ND, fragments to the instance): Ethernet header back in place (adj only moved the
    // start; decap does not write into packets it gives back), then to the kernel twin, or counted.
    for (uint16_t i = 0; i < hl.n; ++i) {
      if (twin) {
        rte_pktmbuf_prepend(hostp[i], kEthLen);
        up[nup++] = hostp[i];
      } else {
        rte_pktmbuf_free(hostp[i]);
      }
    }
    if (!twin) w.ctr.drops[size_t(Drop::kToHost)] += hl.n;
  }
  if (nup) [[unlikely]] host_up(w, oidx, up, nup);
  if (d == 0) return n;
  const uint32_t now = now_ms();
  uint16_t s = 0;
  for (uint16_t i = 0; i < d; ++i) {
    rte_mbuf* m = pkts[i];
    const uint32_t t = m->hash.usr;
    if (st.tunnels[t].blackhole) [[unlikely]] {
      ++w.tctr[t].fault_drops;
      rte_pktmbuf_free(m);
      continue;
    }
    // The ICV verified: proof of life of its tunnel, whatever the inner packet turns out to be.
    std::atomic<uint32_t>& pr = w.proof(t);
    if (pr.load(std::memory_order_relaxed) != now) pr.store(now, std::memory_order_relaxed);
    if (st.intercept && intercept(w, st, m)) continue;  // a probe reply or a request we reflected
    if (st.tunnels[t].tunif && tunif_up_one(w, st, t, m)) [[unlikely]] continue;  // for the tunnel's interface
    // Traffic other than probe replies: the tunnel is busy and needs no probe. Worker-private, main never reads it.
    if (probing) w.busy[t] = now;
    const uint8_t* p = rte_pktmbuf_mtod(m, const uint8_t*);
    const bool v6 = (p[0] >> 4) == 6;
    // Route-based selector: what comes out of a tunnel must come from a network routed through it.
    if (!source_ok(*st.routes, t, v6, v6 ? p + 8 : p + 12)) {
      ++w.ctr.drops[size_t(Drop::kInnerSelector)];
      rte_pktmbuf_free(m);
      continue;
    }
    TunnelCtr& tc = w.tctr[t];
    if (st.tunnels[t].mss4 | st.tunnels[t].mss6) clamp_mss(st.tunnels[t], tc, &m, 1);  // mtu.cpp
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
  w.pctr[inside].tx_packets += t;
  w.pctr[inside].tx_refused += s - t;
  return n;
}

int Dataplane::Impl::worker_main(Worker& w) {
  rte_rcu_qsbr_thread_register(qsbr, w.id);
  rte_rcu_qsbr_thread_online(qsbr, w.id);
  w.pace.last = rte_get_tsc_cycles();
  for (auto& p : w.opace) p.last = w.pace.last;
  if (probing) probe_start(w);
  // Idle pins are reclaimed a few buckets at a time: in loops that found no packet, and now and then under
  // load, so that the `pinned` gauges count live flows (a whole 2^20-bucket table takes ~32k sweeps).
  constexpr uint32_t kSweepBuckets = 32;
  w.polling.store(true, std::memory_order_release);
  while (!g_stop.load(std::memory_order_relaxed)) {
    const State* st = state.load(std::memory_order_acquire);
    if (w.nctl) [[unlikely]] flush_ctl(w, *st);
    uint32_t got = 0;
    for (uint16_t q : w.inside_rxq) got += outbound(w, *st, q);
    for (uint16_t o = 0; o < outside.size(); ++o)
      for (uint16_t q : w.outside_rxq[o]) got += inbound(w, *st, o, q);
    // The clock is read every 16th loop only (a few tens of us apart at full rate, well inside the jitter).
    if ((++w.loops & 15) == 0) {
      if (probing && rte_get_tsc_cycles() >= w.probe_next) send_probes(w, *st);
      if (w.id == 0 && any_host) host_send_down(w);
      if (w.tdown != nullptr && !rte_ring_empty(w.tdown)) tunif_send(w, *st);
      if (got == 0 || (w.loops & 1023) == 0) w.pins->expire(now_ms(), kSweepBuckets);
    }
    // Nothing of `st` is held past this point: main may free it once every worker has said so.
    rte_rcu_qsbr_quiescent(qsbr, w.id);
  }
  probe_stop(w);
  rte_rcu_qsbr_thread_offline(qsbr, w.id);
  rte_rcu_qsbr_thread_unregister(qsbr, w.id);
  return 0;
}

}  // namespace mg::dp
