// Encapsulation and decapsulation bursts. Each burst runs in stages over chunks of up to kChunk packets:
// checks and header work per packet, then one AEAD burst per SA, then the verdicts. Failed mbufs are moved
// behind the successful ones with std::rotate, which keeps both groups in order without allocating.
#include <rte_ip.h>
#include <rte_mbuf.h>

#include <algorithm>
#include <cstring>

#include "esp/esp.h"
#include "net/natt.h"

namespace mg::esp {

namespace {

constexpr uint16_t kChunk = 64;
constexpr uint32_t kEspHdr = 8;
constexpr uint32_t kIv = crypto::kIvLen;
constexpr uint32_t kIcv = crypto::kIcvLen;
constexpr uint32_t kMinEsp = kEspHdr + kIv + 2 + kIcv;  // header, IV, pad length + next header, ICV

inline void count_drop(uint64_t* drops, Drop d) noexcept { ++drops[size_t(d)]; }

inline uint8_t* mtod(rte_mbuf* m) noexcept { return rte_pktmbuf_mtod(m, uint8_t*); }

inline uint8_t inner_tos(const uint8_t* ip, uint8_t ver) noexcept {
  return ver == 4 ? ip[1] : uint8_t((ip[0] & 0x0f) << 4 | ip[1] >> 4);
}

// Verdicts of a chunk's packets.
constexpr uint8_t kGood = 0, kFailed = 1, kTaken = 2;  // kTaken: handed to the host list, no longer in pkts

// Where a burst's survivors are: pkts[0..good) decapsulated or encrypted, pkts[good..kept) failed, in order.
struct Kept {
  uint16_t good = 0, kept = 0;
};

// Compacts chunk[0..c) by verdict: goods first, then failures, each group in its original order; taken ones are
// left out. Returns the goods and the total kept.
inline Kept compact(rte_mbuf** chunk, const uint8_t* bad, uint16_t c) noexcept {
  rte_mbuf* fails[kChunk];
  uint16_t g = 0, f = 0;
  for (uint16_t i = 0; i < c; ++i) {
    if (bad[i] == kGood) chunk[g++] = chunk[i];
    else if (bad[i] == kFailed) fails[f++] = chunk[i];
  }
  std::memcpy(chunk + g, fails, f * sizeof(rte_mbuf*));
  return Kept{g, uint16_t(g + f)};
}

// Appends a compacted chunk at pkts + off to the earlier chunks' survivors *k (off >= k->kept): its goods behind
// their goods, its failures behind their failures.
inline void merge_chunk(rte_mbuf** pkts, Kept* k, uint32_t off, Kept chunk) noexcept {
  if (k->kept != off) std::memmove(pkts + k->kept, pkts + off, chunk.kept * sizeof(rte_mbuf*));
  if (k->good != k->kept && chunk.good != 0)
    std::rotate(pkts + k->good, pkts + k->kept, pkts + k->kept + chunk.good);
  k->good = uint16_t(k->good + chunk.good);
  k->kept = uint16_t(k->kept + chunk.kept);
}

inline void write_aad(uint8_t* aad, uint32_t spi, uint64_t seq, bool esn, uint32_t* aad_len) noexcept {
  net::store_be32(aad, spi);
  if (esn) {
    net::store_be32(aad + 4, uint32_t(seq >> 32));
    net::store_be32(aad + 8, uint32_t(seq));
    *aad_len = 12;
  } else {
    net::store_be32(aad + 4, uint32_t(seq));
    *aad_len = 8;
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------- outbound

uint16_t encap_burst(Sa& sa, uint16_t worker, rte_mbuf* pkts[], uint16_t n) noexcept {
  const SaRuntime& rt = sa.rt_;
  SaCounters& ctr = sa.counters_[worker];
  const bool v6 = rt.flags & SaRuntime::kOuterV6;
  const bool udp = rt.encap == uint8_t(net::Encap::kUdp);
  const uint32_t ip_len = v6 ? 40 : 20;
  Kept k;
  for (uint16_t off = 0; off < n; off += kChunk) {
    const uint16_t c = uint16_t(std::min<uint32_t>(kChunk, n - off));
    rte_mbuf** chunk = pkts + off;
    uint8_t bad[kChunk];
    uint16_t valid = 0;

    // Stage 1: everything that can fail before a sequence number is spent.
    for (uint16_t i = 0; i < c; ++i) {
      rte_mbuf* m = chunk[i];
      Drop d = Drop::kCount;
      const uint32_t ilen = rte_pktmbuf_pkt_len(m);
      const uint8_t* ip = mtod(m);
      const uint32_t pad = (4 - ((ilen + 2) & 3)) & 3;
      const uint32_t tail = pad + 2 + kIcv;
      const uint32_t head = rt.hdr_len + kEspHdr + kIv;
      if (m->nb_segs != 1) {
        d = Drop::kOutChained;
      } else if (ilen < 20 || !((ip[0] >> 4) == 4 || ((ip[0] >> 4) == 6 && ilen >= 40))) {
        d = Drop::kOutBadInner;
      } else if (rte_pktmbuf_headroom(m) < head) {
        d = Drop::kOutNoHeadroom;
      } else if (rte_pktmbuf_tailroom(m) < tail) {
        d = Drop::kOutNoTailroom;
      } else if (head + ilen + tail - (v6 ? 40 : 0) > 65535) {  // also bounds the UDP length
        d = Drop::kOutTooBig;
      }
      bad[i] = d != Drop::kCount;
      if (bad[i]) count_drop(ctr.drops, d);
      else ++valid;
    }

    // One reservation per chunk: any number of workers can share this SA without repeating a number. It stops
    // at the limit control has made durable and at the last number of the space; a fetch-add could pass both
    // (and wrap a 64-bit counter to 0).
    const uint64_t end = rt.esn ? UINT64_MAX : 0xffffffffull;
    uint64_t cur = sa.seq_.load(std::memory_order_relaxed), got = 0, space_left = 0;
    while (valid) {
      const uint64_t lim = std::min(sa.limit_.load(std::memory_order_acquire), end);
      space_left = end - std::min(cur, end);
      got = lim > cur ? std::min<uint64_t>(valid, lim - cur) : 0;
      if (got == 0 || sa.seq_.compare_exchange_weak(cur, cur + got, std::memory_order_relaxed)) break;
    }
    uint64_t seq = cur + 1;

    // Stage 2: headers, trailer and the AEAD op of each packet.
    crypto::AeadOp ops[kChunk];
    uint8_t aad[kChunk][crypto::kMaxAadLen];
    uint16_t nops = 0;
    uint64_t j = 0;  // index among the valid packets
    for (uint16_t i = 0; i < c; ++i) {
      if (bad[i]) continue;
      if (j++ >= got) {
        // RFC 4303 3.3.3: a counter must not cycle; the key has to be replaced. Below the end of the space, the
        // numbers are only not reserved yet.
        const bool cycle = j > space_left;
        if (cycle) sa.needs_rekey_.store(true, std::memory_order_relaxed);
        count_drop(ctr.drops, cycle ? Drop::kOutSeqOverflow : Drop::kOutSeqUnreserved);
        bad[i] = 1;
        continue;
      }
      const uint64_t s = seq++;
      rte_mbuf* m = chunk[i];
      const uint32_t ilen = rte_pktmbuf_pkt_len(m);
      const uint8_t* ip = mtod(m);
      const uint8_t ver = ip[0] >> 4;
      const uint8_t tos = inner_tos(ip, ver);
      const bool inner_df = ver == 4 ? (ip[6] & 0x40) != 0 : true;
      const uint32_t pad = (4 - ((ilen + 2) & 3)) & 3;

      uint8_t* t = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, uint16_t(pad + 2 + kIcv)));
      for (uint32_t p = 0; p < pad; ++p) t[p] = uint8_t(p + 1);
      t[pad] = uint8_t(pad);
      t[pad + 1] = ver == 4 ? net::kProtoIpip : net::kProtoIpv6;

      uint8_t* o = reinterpret_cast<uint8_t*>(rte_pktmbuf_prepend(m, uint16_t(rt.hdr_len + kEspHdr + kIv)));
      // Constant lengths: the copy becomes a few vector moves instead of a memcpy call. It covers the UDP header
      // when there is one; without, its last 8 bytes land where the ESP header is written next.
      if (v6) std::memcpy(o, rt.tmpl, 48);
      else std::memcpy(o, rt.tmpl, 28);
      const uint32_t total = rte_pktmbuf_pkt_len(m);
      if (udp) net::store_be16(o + ip_len + 4, uint16_t(total - ip_len));
      if (!v6) {
        net::store_be16(o + 2, uint16_t(total));
        net::store_be16(o + 4, uint16_t(s));  // varies per packet; DF datagrams need no more (RFC 6864)
        // Incremental checksum from the template's sum: re-reading the header just written would stall on store
        // forwarding.
        uint32_t sum = uint32_t(net::load_be16(rt.tmpl + 10)) + total + uint16_t(s);
        if (rt.flags & SaRuntime::kDscpCopy) {
          o[1] = tos;
          sum += tos;
        }
        if ((rt.flags & SaRuntime::kDfCopy) && inner_df) {
          o[6] |= 0x40;
          sum += 0x4000;
        }
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        net::store_be16(o + 10, uint16_t(~sum));
      } else {
        net::store_be16(o + 4, uint16_t(total - 40));
        if (rt.flags & SaRuntime::kDscpCopy) {
          o[0] = uint8_t(0x60 | tos >> 4);
          o[1] = uint8_t((o[1] & 0x0f) | tos << 4);
        }
      }
      uint8_t* esp = o + rt.hdr_len;
      net::store_be32(esp, rt.spi);
      net::store_be32(esp + 4, uint32_t(s));
      net::store_be64(esp + 8, s);

      crypto::AeadOp& op = ops[nops];
      write_aad(aad[nops], rt.spi, s, rt.esn, &op.aad_len);
      op.aad = aad[nops];
      net::store_be64(op.iv, s);
      op.data = esp + kEspHdr + kIv;
      op.len = ilen + pad + 2;
      op.icv = op.data + op.len;
      ++nops;
      ++ctr.packets;
      ctr.bytes += ilen;
    }

    // Stage 3: one AEAD burst for the chunk.
    if (nops) crypto::seal_burst(*rt.aead, ops, nops);

    // Stage 4: over IPv6 a UDP checksum is required (RFC 8200 8.1; the zero checksum of RFC 6936 needs the
    // receiver's consent, which a NAT-T peer has not given), and it covers the ciphertext.
    if (udp && v6 && nops) {
      for (uint16_t i = 0; i < c; ++i) {
        if (bad[i]) continue;
        uint8_t* o = mtod(chunk[i]);
        const uint16_t ck = rte_ipv6_udptcp_cksum(reinterpret_cast<const rte_ipv6_hdr*>(o), o + 40);
        std::memcpy(o + 46, &ck, 2);  // DPDK's sum is in memory order already
      }
    }

    merge_chunk(pkts, &k, off, compact(chunk, bad, c));
  }
  return k.good;
}

// ---------------------------------------------------------------------------------------------- inbound

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
  for (uint16_t off = 0; off < n; off += kChunk) {
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
