// Liveness probes, the reflector and the deferred probe queue (docs/ARCHITECTURE.md "Liveness"). A few packets per tunnel
// per interval, sent by the worker that owns the tunnel (t % workers); replies and requests are recognised among
// decrypted inbound packets with two byte compares before anything else.
#include <rte_mbuf.h>

#include "dataplane/internal.h"
#include "net/icmp.h"
#include "net/net.h"

namespace mg::dp {

namespace {

// Probe packets: ICMP/ICMPv6 echo with this identifier and payload magic; the payload also carries the TSC at
// send, so a reply gives the round trip.
constexpr uint16_t kProbeId = 0x6d67;  // "mg"
constexpr uint8_t kProbeMagic[8] = {'m', 'g', '-', 'p', 'r', 'o', 'b', 'e'};
constexpr uint16_t kProbeLen4 = 20 + 8 + 16;
constexpr uint16_t kProbeLen6 = 40 + 8 + 16;

// RFC 1624 incremental update of a one's complement checksum when a 16-bit word changes from `from` to `to`.
inline uint16_t csum_update(uint16_t sum, uint16_t from, uint16_t to) noexcept {
  uint32_t x = uint32_t(uint16_t(~sum)) + uint16_t(~from) + to;
  x = (x & 0xffff) + (x >> 16);
  x = (x & 0xffff) + (x >> 16);
  return uint16_t(~x);
}

uint64_t xorshift(uint64_t& s) noexcept {
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return s;
}

// Each kind's counters: sent, and not sent in the end.
uint64_t& sent_of(TunnelCtr& tc, uint8_t kind) noexcept {
  return kind == uint8_t(CtlKind::kKernel) ? tc.from_kernel : kind == uint8_t(CtlKind::kReflect) ? tc.reflected
                                                                                                 : tc.probes_out;
}
uint64_t& dropped_of(TunnelCtr& tc, uint8_t kind) noexcept {
  return kind == uint8_t(CtlKind::kKernel) ? tc.kernel_drops : tc.probe_drops;
}

}  // namespace

// First probes spread over one interval, so that tunnels (and workers) do not start in step.
void Dataplane::Impl::probe_start(Worker& w) noexcept {
  w.rng ^= uint64_t(w.id + 1) * 0x2545f4914f6cdd1dull ^ w.pace.last;
  for (uint32_t t : w.probe_tunnels) {
    const uint64_t iv = std::max<uint64_t>(1, tsc_hz * probe_iv_ms[t] / 1000);
    w.probe_due[t] = w.pace.last + xorshift(w.rng) % iv;
    w.probe_next = std::min(w.probe_next, w.probe_due[t]);
  }
}

// Still deferred at stop: not sent.
void Dataplane::Impl::probe_stop(Worker& w) noexcept {
  for (uint16_t i = 0; i < w.nctl; ++i) {
    rte_pktmbuf_free(w.ctl[i].m);
    ++dropped_of(w.tctr[w.ctl[i].tunnel], w.ctl[i].kind);
  }
  w.nctl = 0;
}

// Encrypts one packet (an inner IP datagram) with tunnel t's outbound SA and sends it on its instance port; a
// full TX queue defers it (flush_ctl). For probes, reflected replies and what a tunnel's kernel interface sends
// (a few packets per tunnel per interval, BGP's and BFD's), never for data: the plaintext is copied first so
// that a refused packet can be encrypted again. Counts what it sends or drops by kind.
void Dataplane::Impl::send_one(Worker& w, const RtTunnel& rt, uint32_t t, rte_mbuf* m, CtlKind kind) noexcept {
  TunnelCtr& tc = w.tctr[t];
  rte_mbuf* keep = w.nctl < Worker::kCtlMax ? rte_pktmbuf_copy(m, pool, 0, UINT32_MAX) : nullptr;
  if (w.nctl == 0 && try_send(w, rt, tc, m)) {
    if (keep) rte_pktmbuf_free(keep);
    ++sent_of(tc, uint8_t(kind));
    return;
  }
  if (w.nctl) rte_pktmbuf_free(m);  // older ones go first
  if (keep == nullptr) {
    ++dropped_of(tc, uint8_t(kind));
    return;
  }
  // Half a liveness interval at most: later than that the next probe is due anyway. What the kernel sent waits
  // as long (its protocols retransmit on their own clocks).
  const uint64_t wait = std::max<uint64_t>(tsc_hz / 1000, tsc_hz * probe_iv_ms[t] / 2000);
  w.ctl[w.nctl++] = {keep, rte_get_tsc_cycles() + wait, t, uint8_t(kind)};
  ++tc.probes_deferred;
}

// Encrypts m (consumed in every case) and hands it to the TX queue of the tunnel's port.
bool Dataplane::Impl::try_send(Worker& w, const RtTunnel& rt, TunnelCtr& tc, rte_mbuf* m) noexcept {
  // Keyed by IKE with the inbound SA installed, outbound not (yet), or no next-hop MAC yet: nothing can go back.
  if (rt.out == nullptr || rt.no_next_hop) {
    rte_pktmbuf_free(m);
    return false;
  }
  if (esp::encap_burst(*rt.out, w.id, &m, 1) != 1) {  // reason counted in the SA
    rte_pktmbuf_free(m);
    ++tc.probe_esp_refused;  // so that the data's accounting can leave it out of the SA's drops
    return false;
  }
  uint8_t* l2 = reinterpret_cast<uint8_t*>(rte_pktmbuf_prepend(m, kEthLen));
  std::memcpy(l2, rt.l2, kEthLen);
  if (rte_eth_tx_burst(ports[rt.port].id, w.id, &m, 1) != 1) {
    rte_pktmbuf_free(m);
    ++w.pctr[rt.port].tx_refused;
    return false;
  }
  ++w.ctr.outside_tx;
  ++w.pctr[rt.port].tx_packets;
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
    // A reset is replacing the tunnel's SA and has read where its sequence numbers ended: one more packet on it
    // would take a number the new SA takes too (same key, same IV).
    if (st.tunnels[c.tunnel].held) [[unlikely]] {
      rte_pktmbuf_free(c.m);
      ++dropped_of(tc, c.kind);
      continue;
    }
    rte_mbuf* e = k == 0 ? rte_pktmbuf_copy(c.m, pool, 0, UINT32_MAX) : nullptr;  // in order: none after a refusal
    if (e != nullptr && try_send(w, st.tunnels[c.tunnel], tc, e)) {
      rte_pktmbuf_free(c.m);
      ++sent_of(tc, c.kind);
    } else if (now >= c.until) {
      rte_pktmbuf_free(c.m);
      ++dropped_of(tc, c.kind);
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
  if (icmp[0] == (v6 ? net::kIcmp6EchoReply : net::kIcmpEchoReply) && net::load_be16(icmp + 4) == kProbeId &&
      len >= hl + 8 + 16 && std::memcmp(icmp + 8, kProbeMagic, sizeof kProbeMagic) == 0) {
    ++tc.probe_replies_in;  // its proof of life is already recorded
    uint64_t sent;
    std::memcpy(&sent, icmp + 16, 8);
    const uint64_t now = rte_get_tsc_cycles();
    if (sent <= now) {  // a reply to another process's probe (same id) could carry anything
      const uint64_t us = (now - sent) * 1000000 / tsc_hz;
      tc.probe_rtt_sum_us += us;
      tc.probe_rtt_max_us = std::max(tc.probe_rtt_max_us, us);
    }
    rte_pktmbuf_free(m);
    return true;
  }
  if (!st.reflect || !rt.local_set || bool(rt.probe_v6) != v6 || icmp[0] != (v6 ? net::kIcmp6EchoRequest : net::kIcmpEchoRequest) ||
      icmp[1] != 0 || std::memcmp(v6 ? p + 24 : p + 16, rt.local, v6 ? 16 : 4) != 0)
    return false;
  // The inner selector of data (worker.cpp), so that an echo request cannot get an answer from where no data may
  // come from: its source is routed through this tunnel, or it is the tunnel's own probe peer (probe addresses
  // live only inside their tunnel and need not be routed).
  const uint8_t* from = v6 ? p + 8 : p + 12;
  if (!source_ok(*st.routes, t, v6, from) &&
      std::memcmp(from, rt.probe_dst, v6 ? 16 : 4) != 0) {
    ++w.ctr.drops[size_t(Drop::kInnerSelector)];
    rte_pktmbuf_free(m);
    return true;
  }
  ++tc.reflect_in;
  // Echo reply: swap the addresses (neither the IPv4 header checksum nor the ICMPv6 pseudo-header sum changes),
  // the type becomes the reply's (checksum updated incrementally).
  uint8_t* src = v6 ? p + 8 : p + 12;
  uint8_t a[16];
  const size_t al = v6 ? 16 : 4;
  std::memcpy(a, src, al);
  std::memcpy(src, src + al, al);
  std::memcpy(src + al, a, al);
  const uint8_t reply = v6 ? net::kIcmp6EchoReply : net::kIcmpEchoReply;
  const uint16_t sum = csum_update(net::load_be16(icmp + 2), uint16_t(icmp[0] << 8), uint16_t(reply << 8));
  icmp[0] = reply;
  icmp[2] = uint8_t(sum >> 8);
  icmp[3] = uint8_t(sum);
  // Ethernet padding must not go into the tunnel.
  const uint32_t ip_len = v6 ? 40u + net::load_be16(p + 4) : net::load_be16(p + 2);
  if (ip_len >= hl + 8 && ip_len < rte_pktmbuf_pkt_len(m)) rte_pktmbuf_trim(m, uint16_t(rte_pktmbuf_pkt_len(m) - ip_len));
  send_one(w, rt, t, m, CtlKind::kReflect);
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
      due = now + iv * 3 / 4 + (iv / 4 ? xorshift(w.rng) % (iv / 4) : 0);
      const RtTunnel& rt = st.tunnels[t];
      // Replies to our own probes do not make a tunnel busy: only other authenticated traffic does.
      const bool busy = int32_t(now_ms_v - w.busy[t]) < int32_t(iv_ms);
      if (rt.probe && !busy) {
        const bool v6 = rt.probe_v6;
        // Payload: our magic and the TSC at send (a reply gives the round trip).
        uint8_t payload[16];
        std::memcpy(payload, kProbeMagic, sizeof kProbeMagic);
        std::memcpy(payload + 8, &now, 8);
        net::EchoSpec e;
        e.v6 = v6;
        e.src = rt.probe_src;
        e.dst = rt.probe_dst;
        e.id = kProbeId;
        e.seq = ++w.probe_seq;
        e.payload = payload;
        e.payload_len = sizeof payload;
        const uint16_t len = v6 ? kProbeLen6 : kProbeLen4;
        rte_mbuf* m = rte_pktmbuf_alloc(pool);
        uint8_t* p = m ? reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, len)) : nullptr;
        if (p == nullptr || net::build_echo(p, len, e) != len) {
          if (m) rte_pktmbuf_free(m);
          ++w.tctr[t].probe_drops;
        } else {
          send_one(w, rt, t, m, CtlKind::kProbe);
        }
      }
    }
    next = std::min(next, due);
  }
  w.probe_next = next;
}

}  // namespace mg::dp
