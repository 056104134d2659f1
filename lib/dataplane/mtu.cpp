// What does not fit a tunnel (docs/ARCHITECTURE.md "MTU and fragments"), between flow placement and ESP encapsulation:
// TCP SYNs get their MSS clamped to what the tunnel carries (and decrypted SYNs on their way in, so both ends
// learn it), inner IPv4 packets without DF over the tunnel's path MTU are fragmented, each fragment its own ESP
// packet, and the others (IPv4 with DF, IPv6) are dropped with an ICMP "fragmentation needed" / ICMPv6 "packet too
// big" back out of the inside port to their sender, rate-limited per worker. The figures are computed once per
// tunnel (setup_mtu, fill_mtu), never per packet. No allocation here beyond the mbufs of fragments and ICMP errors.
#include <fmt/core.h>
#include <rte_mbuf.h>

#include "dataplane/internal.h"
#include "net/icmp.h"
#include "net/mtu.h"
#include "net/net.h"

namespace mg::dp {

// Tunnel t's figures as `g` describes it, on its port's MTU: at start, and at `instance reset` with the file
// as it is then (an operator changes `mtu` or `mss_clamp`, or a new cipher changes the overhead).
int Dataplane::Impl::mtu_of(const config::Gateway& g, size_t t, config::TunnelMtu* out, std::string* err) const {
  const config::Tunnel& ct = g.tunnels[t];
  const PortRt& port = ports[instance_port[ct.instance]];
  uint16_t pm = 0;
  if (rte_eth_dev_get_mtu(port.id, &pm) != 0 || pm == 0) pm = uint16_t(config::kDefaultPortMtu);
  const bool v6 = config::tunnel_ip_version(g, ct) == 6;
  const bool udp = ct.out.encap == net::Encap::kUdp;
  if (ct.mtu > pm) {
    *err = fmt::format("tunnel '{}': mtu {} exceeds the MTU {} of its port '{}'", ct.name, ct.mtu, pm, port.name);
    return kExitConfig;
  }
  if (ct.mtu == 0 && pm < config::min_tunnel_mtu(v6, udp)) {
    *err = fmt::format("tunnel '{}': its port '{}' has MTU {}, below {}, the least that carries a 1280-byte IPv6 "
                       "packet once encrypted over IPv{}{}; give the port a larger `mtu` in the pmd_config",
                       ct.name, port.name, pm, config::min_tunnel_mtu(v6, udp), v6 ? 6 : 4, udp ? " in UDP" : "");
    return kExitConfig;
  }
  *out = config::tunnel_mtu(g, ct, pm);
  return kExitOk;
}

int Dataplane::Impl::setup_mtu(std::string* err) {
  tunnel_mtu.resize(gw.tunnels.size());
  for (size_t t = 0; t < gw.tunnels.size(); ++t)
    if (const int rc = mtu_of(gw, t, &tunnel_mtu[t], err); rc != kExitOk) return rc;
  // Buckets start full: the first errors after start are not held back.
  const uint64_t now = rte_get_tsc_cycles();
  for (auto& w : workers) {
    w->icmp_credit = uint64_t(gw.mtu.icmp_burst) * tsc_hz;
    w->icmp_last = now;
  }
  return kExitOk;
}

void Dataplane::Impl::fill_mtu(RtTunnel& r, uint32_t t) const noexcept {
  const config::TunnelMtu& m = tunnel_mtu[t];
  r.path_mtu = uint16_t(std::min<uint32_t>(m.path, 0xffff));
  r.mss4 = m.mss4;
  r.mss6 = m.mss6;
  const net::IpAddr s4 = config::icmp_source(gw, gw.tunnels[t], 4), s6 = config::icmp_source(gw, gw.tunnels[t], 6);
  r.icmp_src_ok = uint8_t((s4.version == 4 ? 1 : 0) | (s6.version == 6 ? 2 : 0));
  std::memcpy(r.icmp_src4, s4.bytes, 4);
  std::memcpy(r.icmp_src6, s6.bytes, 16);
}

bool Dataplane::Impl::any_too_big(const RtTunnel& rt, rte_mbuf* const pkts[], uint16_t n) noexcept {
  for (uint16_t i = 0; i < n; ++i)
    if (rte_pktmbuf_pkt_len(pkts[i]) > rt.path_mtu) return true;
  return false;
}

void Dataplane::Impl::clamp_mss(const RtTunnel& rt, TunnelCtr& tc, rte_mbuf* const pkts[], uint16_t n) noexcept {
  for (uint16_t i = 0; i < n; ++i) {
    rte_mbuf* m = pkts[i];
    if (m->nb_segs != 1 || rte_pktmbuf_data_len(m) < 40) continue;
    uint8_t* p = rte_pktmbuf_mtod(m, uint8_t*);
    const bool v6 = (p[0] >> 4) == 6;
    // Only TCP reaches the parser: over IPv6 also whatever hides behind extension headers.
    const uint8_t next = v6 ? p[6] : p[9];
    if (next != net::kProtoTcp &&
        (!v6 || (next != net::kProtoHopOpts && next != net::kProtoRouting && next != net::kProtoDstOpts)))
      continue;
    if (net::clamp_mss(p, rte_pktmbuf_data_len(m), v6 ? rt.mss6 : rt.mss4) == net::MssResult::kClamped)
      ++tc.mss_clamped;
  }
}

uint16_t Dataplane::Impl::fit_mtu(Worker& w, const RtTunnel& rt, TunnelCtr& tc, rte_mbuf* const pkts[], uint16_t n,
                                  rte_mbuf* out[], uint16_t cap) noexcept {
  uint16_t k = 0;
  for (uint16_t i = 0; i < n; ++i) {
    rte_mbuf* m = pkts[i];
    const uint8_t* p = rte_pktmbuf_mtod(m, const uint8_t*);
    // A chained mbuf goes on to the encapsulation, which refuses it with its own reason (out_chained).
    if (rte_pktmbuf_pkt_len(m) <= rt.path_mtu || m->nb_segs != 1) {
      if (k < cap) {
        out[k++] = m;
      } else {
        ++w.ctr.drops[size_t(Drop::kFragFailed)];
        rte_pktmbuf_free(m);
      }
      continue;
    }
    if ((p[0] >> 4) == 4 && !(p[6] & 0x40)) {  // IPv4 without DF
      k = fragment(w, rt, tc, m, out, k, cap);
      continue;
    }
    ++tc.too_big;
    ++w.ctr.drops[size_t(Drop::kTooBig)];
    send_too_big(w, rt, tc, m);
    rte_pktmbuf_free(m);
  }
  return k;
}

// Cuts m into fragments of at most the path MTU: m itself becomes the first (trimmed, its header rewritten in
// place), fresh mbufs the others. All or nothing: without an mbuf for every fragment, none is sent.
uint16_t Dataplane::Impl::fragment(Worker& w, const RtTunnel& rt, TunnelCtr& tc, rte_mbuf* m, rte_mbuf* out[],
                                   uint16_t k, uint16_t cap) noexcept {
  uint8_t* p = rte_pktmbuf_mtod(m, uint8_t*);
  const uint32_t len = rte_pktmbuf_data_len(m);
  net::Ipv4FragPlan plan;
  bool ok = net::ipv4_frag_plan(p, len, rt.path_mtu, &plan) && plan.count <= cap - k;
  uint16_t made = 1;
  for (; ok && made < plan.count; ++made) {
    rte_mbuf* f = rte_pktmbuf_alloc(pool);
    const uint32_t flen = net::ipv4_frag_len(plan, made);
    uint8_t* d = f ? reinterpret_cast<uint8_t*>(rte_pktmbuf_append(f, uint16_t(plan.hl_rest + flen))) : nullptr;
    if (d == nullptr) {
      if (f) rte_pktmbuf_free(f);
      ok = false;
      break;
    }
    net::ipv4_frag_header(p, plan, made, d);
    std::memcpy(d + plan.hl_rest, p + plan.hl_first + net::ipv4_frag_offset(plan, made), flen);
    out[k + made] = f;
  }
  if (!ok) {
    for (uint16_t j = 1; j < made; ++j) rte_pktmbuf_free(out[k + j]);
    ++w.ctr.drops[size_t(Drop::kFragFailed)];
    rte_pktmbuf_free(m);
    return k;
  }
  // The later fragments copied what they need from the original header: now the first may be rewritten.
  uint8_t h[60];
  net::ipv4_frag_header(p, plan, 0, h);
  std::memcpy(p, h, plan.hl_first);
  rte_pktmbuf_trim(m, uint16_t(len - plan.hl_first - plan.data_first));
  out[k] = m;
  ++tc.fragmented;
  tc.fragments += plan.count;
  return uint16_t(k + plan.count);
}

bool Dataplane::Impl::icmp_token(Worker& w) noexcept {
  const uint64_t rate = gw.mtu.icmp_rate;
  if (rate == 0) return false;
  const uint64_t now = rte_get_tsc_cycles(), full = uint64_t(gw.mtu.icmp_burst) * tsc_hz;
  const uint64_t dt = now - w.icmp_last;
  w.icmp_last = now;
  w.icmp_credit = dt >= full / rate ? full : std::min(full, w.icmp_credit + dt * rate);
  if (w.icmp_credit < tsc_hz) return false;
  w.icmp_credit -= tsc_hz;
  return true;
}

// The error goes back the way the packet came: out of the inside port, to [inside] next_hop_mac (as decrypted
// traffic does), on this worker's TX queue. Its source is the tunnel's icmp_src (config::icmp_source).
void Dataplane::Impl::send_too_big(Worker& w, const RtTunnel& rt, TunnelCtr& tc, const rte_mbuf* m) noexcept {
  const uint8_t* p = rte_pktmbuf_mtod(m, const uint8_t*);
  const uint32_t len = rte_pktmbuf_data_len(m);
  const bool v6 = (p[0] >> 4) == 6;
  if (!(rt.icmp_src_ok & (v6 ? 2 : 1)) || net::icmp_error_allowed(p, len) != net::ErrorVerdict::kSend) {
    ++tc.icmp_suppressed;
    return;
  }
  if (!icmp_token(w)) {
    ++tc.icmp_rate_limited;
    return;
  }
  rte_mbuf* r = rte_pktmbuf_alloc(pool);
  if (r == nullptr) {
    ++tc.icmp_failed;
    return;
  }
  uint8_t* d = rte_pktmbuf_mtod(r, uint8_t*);
  const uint16_t room = rte_pktmbuf_tailroom(r);
  const net::TooBigSpec spec{.invoking = p, .invoking_len = len, .src = v6 ? rt.icmp_src6 : rt.icmp_src4,
                             .mtu = rt.path_mtu, .ttl = 64};
  const uint16_t ilen = room > kEthLen ? net::build_too_big(d + kEthLen, room - kEthLen, spec) : 0;
  if (ilen == 0 || rte_pktmbuf_append(r, uint16_t(kEthLen + ilen)) == nullptr) {
    rte_pktmbuf_free(r);
    ++tc.icmp_failed;
    return;
  }
  std::memcpy(d, inside_l2, 12);
  d[12] = v6 ? 0x86 : 0x08;
  d[13] = v6 ? 0xdd : 0x00;
  if (rte_eth_tx_burst(ports[inside].id, w.id, &r, 1) != 1) {
    rte_pktmbuf_free(r);
    ++tc.icmp_failed;
    ++w.pctr[inside].tx_refused;
    return;
  }
  ++tc.icmp_too_big;
  ++w.pctr[inside].tx_packets;
}

}  // namespace mg::dp
