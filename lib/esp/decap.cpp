// Inbound bursts: outer classification (net::classify_outer), SPI lookup, encapsulation as the SA says, replay
// pre-check, one AEAD burst per SA, then the verdicts, over chunks of packets.
#include "esp/burst.h"
#include "net/local.h"
#include "net/natt.h"

namespace mg::esp {

using namespace detail;

struct DecapAccess {
  static const SaRuntime& rt(const Sa& sa) noexcept { return sa.rt_; }
  static SaCounters& ctr(Sa& sa, uint16_t w) noexcept { return sa.counters_[w]; }
  static ReplayWindow& replay(Sa& sa) noexcept { return sa.replay_; }
};

namespace {

struct Pending {
  Sa* sa;
  uint64_t seq;
  uint16_t esp_off;
  uint8_t outer_tos;
  uint8_t op;  // index into ops
};

// RFC 6040 normal mode: congestion marked on the outer header survives decapsulation. False when the packet must
// be dropped instead: outer CE over an inner Not-ECT one (section 4.2), whose sender could not see the mark.
inline bool propagate_ce(uint8_t* inner, uint8_t ver, uint8_t outer_tos) noexcept {
  if ((outer_tos & 3) != 3) return true;
  const uint8_t ecn = ver == 4 ? inner[1] & 3 : (inner[1] >> 4) & 3;
  if (ecn == 0) return false;
  if (ecn == 3) return true;
  if (ver == 4) {
    inner[1] |= 3;
    inner[10] = inner[11] = 0;
    net::store_be16(inner + 10, net::ipv4_header_checksum(inner, uint32_t(inner[0] & 0x0f) * 4));
  } else {
    inner[1] |= 0x30;
  }
  return true;
}

template <class Lookup, class NatTPort>
uint16_t decap_impl(Lookup&& lookup, NatTPort&& nat_t_port, uint64_t* pre_drops, uint16_t worker, rte_mbuf* pkts[],
                    uint16_t n, HostList* host) noexcept {
  Kept k;
  if (host) host->n = 0;
  for (uint32_t off = 0; off < n; off += kChunk) {  // 32 bits: a uint16_t wraps to 0 past the last chunk of n > 65472
    const uint16_t c = uint16_t(std::min<uint32_t>(kChunk, n - off));
    rte_mbuf** chunk = pkts + off;
    uint8_t bad[kChunk];
    Pending pend[kChunk];
    crypto::AeadOp ops[kChunk];
    uint8_t aad[kChunk][crypto::kMaxAadLen];
    uint16_t nops = 0;

    // Stage 1: outer header, SPI, length and replay pre-check; nothing here touches crypto.
    for (uint16_t i = 0; i < c; ++i) {
      rte_mbuf* m = chunk[i];
      bad[i] = 1;
      if (m->nb_segs != 1) {
        count_drop(pre_drops, Drop::kInChained);
        continue;
      }
      uint8_t* p = mtod(m);
      net::L3Info li;
      const net::ParseStatus ps = net::parse_l3(p, rte_pktmbuf_pkt_len(m), &li);
      if (ps != net::ParseStatus::kOk) {
        count_drop(pre_drops, ps == net::ParseStatus::kTruncated ? Drop::kInTruncated : Drop::kInBadOuter);
        continue;
      }
      if (host && host->local && net::host_bound(p, li, *host->local)) [[unlikely]] {
        host->pkts[host->n++] = m;
        bad[i] = kTaken;
        continue;
      }
      if (li.fragment) {
        count_drop(pre_drops, Drop::kInFragment);
        continue;
      }
      const net::OuterClass oc = net::classify_outer(p, li, nat_t_port);
      if (oc.kind != net::OuterKind::kEsp && oc.kind != net::OuterKind::kEspInUdp) [[unlikely]] {
        if (oc.kind == net::OuterKind::kIke && host) {
          host->pkts[host->n++] = m;
          bad[i] = kTaken;
          continue;
        }
        count_drop(pre_drops, oc.kind == net::OuterKind::kKeepalive ? Drop::kInNatKeepalive
                              : oc.kind == net::OuterKind::kIke     ? Drop::kInIke
                              : oc.kind == net::OuterKind::kBadUdp  ? Drop::kInBadOuter
                                                                    : Drop::kInNotEsp);
        continue;
      }
      const uint32_t esp_len = oc.esp_len;
      uint8_t* esp = p + oc.esp_off;
      if (esp_len < kEspHdr) {
        count_drop(pre_drops, Drop::kInRunt);
        continue;
      }
      const uint32_t spi = net::load_be32(esp);
      if (spi == 0) {
        count_drop(pre_drops, Drop::kInZeroSpi);
        continue;
      }
      Sa* sa = lookup(spi);
      if (sa == nullptr) {
        count_drop(pre_drops, Drop::kInUnknownSpi);
        continue;
      }
      const SaRuntime& rt = DecapAccess::rt(*sa);
      uint64_t* sdrops = DecapAccess::ctr(*sa, worker).drops;
      const bool in_udp = oc.kind == net::OuterKind::kEspInUdp;
      if (in_udp != (rt.encap == uint8_t(net::Encap::kUdp))) {
        count_drop(sdrops, Drop::kInEncapMismatch);
        continue;
      }
      if (in_udp && oc.dport != rt.in.udp_port) {
        count_drop(sdrops, Drop::kInUdpPort);
        continue;
      }
      if (esp_len < kMinEsp) {
        count_drop(sdrops, Drop::kInRunt);
        continue;
      }
      const ReplayWindow& rw = DecapAccess::replay(*sa);
      const uint32_t seq_lo = net::load_be32(esp + 4);
      uint64_t seq = seq_lo;
      if (rt.esn && !rw.infer_esn(seq_lo, &seq)) {
        count_drop(sdrops, Drop::kInTooOld);
        continue;
      }
      const ReplayWindow::Result r = rw.check(seq);
      if (r != ReplayWindow::Result::kOk) {
        count_drop(sdrops, r == ReplayWindow::Result::kZero     ? Drop::kInSeqZero
                           : r == ReplayWindow::Result::kReplay ? Drop::kInReplay
                                                                : Drop::kInTooOld);
        continue;
      }
      crypto::AeadOp& op = ops[nops];
      write_aad(aad[nops], spi, seq, rt.esn, &op.aad_len);
      op.aad = aad[nops];
      std::memcpy(op.iv, esp + kEspHdr, kIv);
      op.data = esp + kEspHdr + kIv;
      op.len = esp_len - kEspHdr - kIv - kIcv;
      op.icv = op.data + op.len;
      op.ok = 0;
      pend[i] = Pending{sa, seq, oc.esp_off, li.tos, uint8_t(nops)};
      ++nops;
      bad[i] = 0;
    }

    // Stage 2: one AEAD burst per SA present in the chunk (usually one).
    {
      uint8_t done[kChunk] = {};
      crypto::AeadOp group[kChunk];
      uint8_t gidx[kChunk];
      for (uint16_t i = 0; i < c; ++i) {
        if (bad[i] || done[pend[i].op]) continue;
        Sa* sa = pend[i].sa;
        uint16_t g = 0;
        for (uint16_t j = i; j < c; ++j) {
          if (bad[j] || pend[j].sa != sa) continue;
          gidx[g] = pend[j].op;
          group[g++] = ops[pend[j].op];
          done[pend[j].op] = 1;
        }
        crypto::open_burst(*DecapAccess::rt(*sa).aead, group, g);
        for (uint16_t j = 0; j < g; ++j) ops[gidx[j]].ok = group[j].ok;
      }
    }

    // Stage 3: verdicts. The window moves only for packets whose ICV verified.
    for (uint16_t i = 0; i < c; ++i) {
      if (bad[i]) continue;
      bad[i] = 1;
      const Pending& pd = pend[i];
      const crypto::AeadOp& op = ops[pd.op];
      SaCounters& ctr = DecapAccess::ctr(*pd.sa, worker);
      if (!op.ok) {
        count_drop(ctr.drops, Drop::kInAuth);
        continue;
      }
      const ReplayWindow::Result r = DecapAccess::replay(*pd.sa).check_and_update(pd.seq);
      if (r != ReplayWindow::Result::kOk) {  // a copy earlier in this burst, or on another worker, got there first
        count_drop(ctr.drops, r == ReplayWindow::Result::kReplay ? Drop::kInReplay : Drop::kInTooOld);
        continue;
      }
      const uint8_t* pt = op.data;
      const uint32_t len = op.len;
      const uint8_t nh = pt[len - 1];
      const uint32_t padlen = pt[len - 2];
      if (padlen + 2 > len) {
        count_drop(ctr.drops, Drop::kInBadPadLen);
        continue;
      }
      const uint32_t ilen = len - 2 - padlen;
      bool pad_ok = true;
      for (uint32_t p = 0; p < padlen; ++p) pad_ok &= pt[ilen + p] == uint8_t(p + 1);
      if (!pad_ok) {
        count_drop(ctr.drops, Drop::kInBadPadding);
        continue;
      }
      if (nh == net::kProtoNoNext) {
        count_drop(ctr.drops, Drop::kInDummy);
        continue;
      }
      if (nh != net::kProtoIpip && nh != net::kProtoIpv6) {
        count_drop(ctr.drops, Drop::kInBadNextHeader);
        continue;
      }
      net::L3Info in;
      if (net::parse_l3(pt, ilen, &in) != net::ParseStatus::kOk ||
          in.version != (nh == net::kProtoIpip ? 4 : 6)) {
        count_drop(ctr.drops, Drop::kInBadInner);
        continue;
      }
      if (!propagate_ce(const_cast<uint8_t*>(pt), in.version, pd.outer_tos)) {
        count_drop(ctr.drops, Drop::kInCeNotEct);
        continue;
      }
      rte_mbuf* m = chunk[i];
      rte_pktmbuf_adj(m, uint16_t(pd.esp_off + kEspHdr + kIv));
      // Drops ESP trailer, ICV, TFC padding (RFC 4303 2.4) and any L2 padding behind the outer datagram.
      rte_pktmbuf_trim(m, uint16_t(rte_pktmbuf_pkt_len(m) - in.ip_len));
      m->hash.usr = DecapAccess::rt(*pd.sa).in.user_id;
      ++ctr.packets;
      ctr.bytes += in.ip_len;
      bad[i] = 0;
    }

    merge_chunk(pkts, &k, off, compact(chunk, bad, c));
  }
  return k.good;
}

}  // namespace

uint16_t decap_burst(SaTable& table, uint16_t worker, rte_mbuf* pkts[], uint16_t n, HostList* host) noexcept {
  return decap_impl([&table](uint32_t spi) { return table.find(spi); },
                    [&table](uint16_t port) { return table.nat_t_port(port); }, table.drops(worker), worker, pkts, n,
                    host);
}

uint16_t decap_burst(Sa& sa, uint16_t worker, rte_mbuf* pkts[], uint16_t n) noexcept {
  Sa* s = &sa;
  const uint32_t want = sa.spi();
  const uint16_t port = DecapAccess::rt(sa).in.udp_port;
  return decap_impl([s, want](uint32_t spi) { return spi == want ? s : nullptr; },
                    [port](uint16_t p) { return port != 0 && p == port; }, DecapAccess::ctr(sa, worker).drops,
                    worker, pkts, n, nullptr);
}


}  // namespace mg::esp
