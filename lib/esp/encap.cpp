// Outbound bursts: ESP tunnel-mode encapsulation, raw or in UDP (RFC 3948), over chunks of packets.
#include <rte_ip.h>

#include "esp/burst.h"

namespace mg::esp {

using namespace detail;

uint16_t encap_burst(Sa& sa, uint16_t worker, rte_mbuf* pkts[], uint16_t n) noexcept {
  const SaRuntime& rt = sa.rt_;
  SaCounters& ctr = sa.counters_[worker];
  const bool v6 = rt.flags & SaRuntime::kOuterV6;
  const bool udp = rt.encap == uint8_t(net::Encap::kUdp);
  const uint32_t ip_len = v6 ? 40 : 20;
  Kept k;
  for (uint32_t off = 0; off < n; off += kChunk) {  // 32 bits: a uint16_t wraps to 0 past the last chunk of n > 65472
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
    const uint64_t end = sa.end_.load(std::memory_order_relaxed);  // 2^32 - 1, 2^64 - 1, or a hard lifetime
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

}  // namespace mg::esp
