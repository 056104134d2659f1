// libFuzzer target: inbound ESP decapsulation through an SA table of eight SAs, every cipher and engine
// (AES-GCM-128/256 and ChaCha20-Poly1305 through IPsec-MB, ChaCha20-Poly1305 through libsodium), with and without
// ESN. Every packet sits in a heap buffer of exactly its size (exact_mbuf.h), so a read past its end is an ASan
// report, not a silent read of the next bytes of a pool mbuf.
//
// The input is a list of records (FuzzedDataProvider), each one packet of one burst:
//   raw       any outer bytes (parsers, SPI lookup, length checks); optionally ends the burst before it
//   sealed    outer IPv4/IPv6 (+ a destination-options header, or L2 padding) + ESP under one of the SAs, sealed
//             here with a valid ICV (ChaCha sealed by the *other* engine), sequence number chosen by the input;
//             the plaintext is either all input bytes (trailer rules) or input bytes + a correct trailer;
//             optionally one byte flipped after sealing (must then fail)
//   duplicate a byte-for-byte copy of an earlier record (a replay)
// SAs are made afresh for every input and their keys derive from the input's hash, so runs are reproducible and
// a raw record can never carry a valid ICV. Checked after every input, each failure traps:
//   - a delivered packet is a sealed, unflipped record whose plaintext obeys RFC 4303 (padding 1, 2, ..., next
//     header 4 or 41 matching a valid inner header) and comes out as exactly its inner datagram (RFC 6040 CE
//     copied to an ECN-capable inner packet), tagged with its SA's user id;
//   - no (SA, sequence number) is delivered twice;
//   - a well-formed record sealed with a sequence number above every earlier one of its SA (and, with ESN, less
//     than 2^31 above the last one that had to pass) is delivered;
//   - the SA and table counters add up: each SA's packets = what it delivered, all drops = all not delivered;
//   - every mbuf and every heap buffer is back.
#include <fuzzer/FuzzedDataProvider.h>
#include <rte_mbuf.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "esp/esp.h"
#include "exact_mbuf.h"
#include "fuzz_check.h"
#include "fuzz_eal.h"
#include "net/net.h"

namespace {

namespace crypto = mg::crypto;
namespace esp = mg::esp;
namespace net = mg::net;

struct SaDef {
  uint32_t spi;
  crypto::Cipher cipher;
  crypto::Engine engine;      // the receiver's
  crypto::Engine seal_engine; // the sender's: the other one where both have the cipher
  bool esn;
  uint32_t window;
};
constexpr SaDef kSas[8] = {
    {0x100, crypto::Cipher::kAesGcm128, crypto::Engine::kIpsecMb, crypto::Engine::kIpsecMb, false, 64},
    {0x101, crypto::Cipher::kAesGcm128, crypto::Engine::kIpsecMb, crypto::Engine::kIpsecMb, true, 1024},
    {0x200, crypto::Cipher::kAesGcm256, crypto::Engine::kIpsecMb, crypto::Engine::kIpsecMb, false, 128},
    {0x201, crypto::Cipher::kAesGcm256, crypto::Engine::kIpsecMb, crypto::Engine::kIpsecMb, true, 64},
    {0x300, crypto::Cipher::kChacha20Poly1305, crypto::Engine::kIpsecMb, crypto::Engine::kSodium, false, 64},
    {0x301, crypto::Cipher::kChacha20Poly1305, crypto::Engine::kIpsecMb, crypto::Engine::kSodium, true, 256},
    {0x400, crypto::Cipher::kChacha20Poly1305, crypto::Engine::kSodium, crypto::Engine::kIpsecMb, false, 1024},
    {0x401, crypto::Cipher::kChacha20Poly1305, crypto::Engine::kSodium, crypto::Engine::kIpsecMb, true, 64},
};
constexpr size_t kNumSas = sizeof(kSas) / sizeof(kSas[0]);
constexpr uint16_t kMaxRecords = 64;

uint64_t splitmix(uint64_t* s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint16_t csum16(const uint8_t* p, size_t n) {  // RFC 1071, written out here rather than taken from lib/net
  uint32_t s = 0;
  for (size_t i = 0; i + 1 < n; i += 2) s += uint32_t(p[i] << 8 | p[i + 1]);
  if (n & 1) s += uint32_t(p[n - 1] << 8);
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return uint16_t(~s);
}

struct Record {
  std::vector<uint8_t> wire;
  int sa = -1;             // sealed records (and their duplicates): index into kSas
  uint64_t seq = 0;
  bool authentic = false;  // sealed and not flipped: the ICV verifies
  bool well_formed = false;  // the plaintext obeys the trailer and inner-header rules
  bool must_deliver = false;
  std::vector<uint8_t> inner;  // expected output when delivered
  bool ce_on_not_ect = false;  // outer CE over a Not-ECT inner packet: RFC 6040 4.2 says drop, forwarding is
                               // tolerated here (it is what the product does today), so it is never a must
  bool flush_before = false;
};

// What a receiver must make of a plaintext (RFC 4303 2.4, 2.6), restated: the inner datagram or nothing.
bool expected_inner(const std::vector<uint8_t>& pt, uint8_t outer_ecn, std::vector<uint8_t>* out,
                    bool* ce_on_not_ect) {
  const size_t len = pt.size();
  if (len < 2) return false;
  const size_t padlen = pt[len - 2];
  const uint8_t nh = pt[len - 1];
  if (padlen + 2 > len) return false;
  const size_t ilen = len - 2 - padlen;
  for (size_t i = 0; i < padlen; ++i)
    if (pt[ilen + i] != uint8_t(i + 1)) return false;
  if (nh != net::kProtoIpip && nh != net::kProtoIpv6) return false;
  net::L3Info li;
  if (net::parse_l3(pt.data(), uint32_t(ilen), &li) != net::ParseStatus::kOk) return false;
  if (li.version != (nh == net::kProtoIpip ? 4 : 6)) return false;
  out->assign(pt.begin(), pt.begin() + li.ip_len);
  std::vector<uint8_t>& o = *out;
  const uint8_t inner_ecn = li.version == 4 ? (o[1] & 3) : ((o[1] >> 4) & 3);
  *ce_on_not_ect = outer_ecn == 3 && inner_ecn == 0;
  if (outer_ecn == 3 && (inner_ecn == 1 || inner_ecn == 2)) {
    if (li.version == 4) {
      o[1] |= 3;
      o[10] = o[11] = 0;
      const uint16_t c = csum16(o.data(), size_t(o[0] & 15) * 4);
      o[10] = uint8_t(c >> 8);
      o[11] = uint8_t(c);
    } else {
      o[1] |= 0x30;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  rte_mempool* mp = mg::fuzz::fuzz_pool();
  const unsigned base = rte_mempool_in_use_count(mp);

  // Keys from the input's hash: reproducible, and no raw record can hold a valid ICV.
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < size; ++i) h = (h ^ data[i]) * 0x100000001b3ull;
  std::unique_ptr<esp::Sa> sas[kNumSas];
  crypto::AeadPtr seal[kNumSas];
  esp::Sa* list[kNumSas];
  for (size_t i = 0; i < kNumSas; ++i) {
    const SaDef& d = kSas[i];
    std::vector<uint8_t> km(crypto::key_len(d.cipher) + crypto::kSaltLen);
    for (auto& b : km) b = uint8_t(splitmix(&h));
    std::string err;
    seal[i] = crypto::make_aead(d.cipher, d.seal_engine, km, &err);
    esp::SaConfig cfg;
    cfg.spi = d.spi;
    cfg.cipher = d.cipher;
    cfg.engine = d.engine;
    cfg.keymat = km;
    cfg.esn = d.esn;
    cfg.replay_window = d.window;
    cfg.user_id = uint32_t(1000 + i);
    sas[i] = esp::Sa::create(cfg, esp::Direction::kInbound, 1, &err);
    CHECK(sas[i] && seal[i]);
    list[i] = sas[i].get();
    crypto::secure_wipe(km.data(), km.size());
  }
  std::string err;
  auto table = esp::SaTable::build(list, 1, &err);
  CHECK(table != nullptr);

  // ---- build the records
  FuzzedDataProvider fdp(data, size);
  std::vector<Record> recs;
  uint64_t max_sealed[kNumSas] = {};  // highest authentic sequence number sealed so far, per SA
  uint64_t must_top[kNumSas] = {};    // highest one that had to pass the window
  uint64_t burst_base[kNumSas] = {};  // must_top when the current burst began: the least the window's top is
                                      // there, and the receiver infers ESN high halves from the burst's start
  while (fdp.remaining_bytes() > 0 && recs.size() < kMaxRecords) {
    const uint8_t ctl = fdp.ConsumeIntegral<uint8_t>();
    Record r;
    const unsigned kind = ctl & 3;
    if ((kind == 0 || kind == 3) && (ctl & 4) && !recs.empty()) {
      r.flush_before = true;
      std::memcpy(burst_base, must_top, sizeof must_top);
    }
    if (kind == 0) {
      r.wire = fdp.ConsumeBytes<uint8_t>(fdp.ConsumeIntegralInRange<uint16_t>(0, 2048));
    } else if (kind == 3) {
      if (recs.empty()) continue;
      const bool flush = r.flush_before;
      r = recs[fdp.ConsumeIntegralInRange<size_t>(0, recs.size() - 1)];
      r.must_deliver = false;
      r.flush_before = flush;
    } else {
      const int si = int((ctl >> 2) & 7);
      const SaDef& d = kSas[si];
      const bool v6 = (ctl & 0x20) != 0;
      const bool extra = (ctl & 0x40) != 0;
      const bool flip = (ctl & 0x80) != 0;
      // Sequence number: just ahead of the highest so far (the common case), somewhat behind it, or any value.
      const uint8_t sm = fdp.ConsumeIntegral<uint8_t>();
      uint64_t seq;
      if (sm < 128) seq = max_sealed[si] + 1 + (sm & 15);
      else if (sm < 208) seq = max_sealed[si] - (sm & 127);
      else seq = fdp.ConsumeIntegral<uint64_t>();
      if (!d.esn) seq &= 0xffffffffull;
      const uint8_t outer_tos = fdp.ConsumeIntegral<uint8_t>();
      std::vector<uint8_t> pt;
      if (kind == 1) {
        pt = fdp.ConsumeBytes<uint8_t>(fdp.ConsumeIntegralInRange<uint16_t>(0, 1500));
      } else {
        pt = fdp.ConsumeBytes<uint8_t>(fdp.ConsumeIntegralInRange<uint16_t>(0, 1500));
        const uint8_t t = fdp.ConsumeIntegral<uint8_t>();
        const uint8_t pad = t & 15;
        for (uint8_t i = 0; i < pad; ++i) pt.push_back(uint8_t(i + 1));
        pt.push_back(pad);
        const uint8_t ver = pt.size() > 0 ? pt[0] >> 4 : 0;
        const uint8_t nhs[4] = {uint8_t(ver == 6 ? net::kProtoIpv6 : net::kProtoIpip), net::kProtoNoNext,
                                uint8_t(ver == 6 ? net::kProtoIpip : net::kProtoIpv6), fdp.ConsumeIntegral<uint8_t>()};
        pt.push_back((t >> 4) < 12 ? nhs[0] : nhs[(t >> 4) & 3]);
      }
      // Outer header (+ options) + ESP header + IV + ciphertext + ICV.
      const size_t ext = v6 && extra ? 8 : 0;
      const size_t esp_off = (v6 ? 40 : 20) + ext;
      const size_t esp_len = 16 + pt.size() + 16;
      const size_t trail = !v6 && extra ? fdp.ConsumeIntegralInRange<size_t>(1, 8) : 0;  // L2 padding
      if (esp_off + esp_len > 65535 - 64) continue;
      std::vector<uint8_t> b(esp_off + esp_len + trail, 0);
      if (v6) {
        b[0] = 0x60 | (outer_tos >> 4);
        b[1] = uint8_t(outer_tos << 4);
        net::store_be16(&b[4], uint16_t(esp_len + ext));
        b[6] = ext ? net::kProtoDstOpts : net::kProtoEsp;
        b[7] = 64;
        b[8] = 0x20, b[9] = 0x01, b[10] = 0x0d, b[11] = 0xb8, b[23] = 1;
        b[24] = 0x20, b[25] = 0x01, b[26] = 0x0d, b[27] = 0xb8, b[39] = 2;
        if (ext) {
          b[40] = net::kProtoEsp;
          b[41] = 0;
          b[42] = 1;  // PadN, 4 bytes of padding
          b[43] = 4;
        }
      } else {
        b[0] = 0x45;
        b[1] = outer_tos;
        net::store_be16(&b[2], uint16_t(esp_off + esp_len));
        b[8] = 64;
        b[9] = net::kProtoEsp;
        b[12] = 192, b[13] = 0, b[14] = 2, b[15] = 1;
        b[16] = 198, b[17] = 51, b[18] = 100, b[19] = 7;
        const uint16_t c = csum16(b.data(), 20);
        b[10] = uint8_t(c >> 8);
        b[11] = uint8_t(c);
      }
      uint8_t* e = &b[esp_off];
      net::store_be32(e, d.spi);
      net::store_be32(e + 4, uint32_t(seq));
      net::store_be64(e + 8, seq ^ 0x5a5a5a5a00000000ull);  // any IV works as long as it is never reused
      if (!pt.empty()) std::memcpy(e + 16, pt.data(), pt.size());
      for (size_t i = 0; i < trail; ++i) b[esp_off + esp_len + i] = fdp.ConsumeIntegral<uint8_t>();
      uint8_t aad[12];
      crypto::AeadOp op{};
      net::store_be32(aad, d.spi);
      if (d.esn) {
        net::store_be32(aad + 4, uint32_t(seq >> 32));
        net::store_be32(aad + 8, uint32_t(seq));
        op.aad_len = 12;
      } else {
        net::store_be32(aad + 4, uint32_t(seq));
        op.aad_len = 8;
      }
      op.aad = aad;
      op.data = e + 16;
      op.len = uint32_t(pt.size());
      op.icv = e + 16 + pt.size();
      std::memcpy(op.iv, e + 8, 8);
      crypto::seal_burst(*seal[si], &op, 1);
      if (flip) {
        const size_t at = esp_off + fdp.ConsumeIntegralInRange<size_t>(0, esp_len - 1);
        b[at] ^= uint8_t(1u << (fdp.ConsumeIntegral<uint8_t>() & 7));
      }
      r.wire = std::move(b);
      r.sa = si;
      r.seq = seq;
      r.authentic = !flip;
      r.well_formed = expected_inner(pt, uint8_t(outer_tos & 3), &r.inner, &r.ce_on_not_ect);
      if (r.authentic && seq != 0) {
        // Above everything sealed before (nothing can have moved the window past it) and, with ESN, close
        // enough to the least the window's top can be for any correct receiver to infer the high half.
        const bool inferable = !d.esn || seq - burst_base[si] < (uint64_t(1) << 31);
        if (seq > max_sealed[si] && inferable) {
          r.must_deliver = r.well_formed && !r.ce_on_not_ect;
          must_top[si] = seq;
        }
        if (seq > max_sealed[si]) max_sealed[si] = seq;
      }
    }
    recs.push_back(std::move(r));
  }

  // ---- run the bursts
  std::set<std::pair<int, uint64_t>> delivered_ids;
  uint64_t delivered_per_sa[kNumSas] = {};
  size_t delivered = 0;
  size_t start = 0;
  while (start < recs.size()) {
    size_t end = start + 1;
    while (end < recs.size() && !recs[end].flush_before) ++end;
    rte_mbuf* pkts[kMaxRecords];
    rte_mbuf* orig[kMaxRecords];
    uint16_t n = 0;
    for (size_t i = start; i < end; ++i) {
      rte_mbuf* m = mg::fuzz::exact_mbuf(mp, recs[i].wire.data(), recs[i].wire.size());
      CHECK(m != nullptr);
      pkts[n] = orig[n] = m;
      ++n;
    }
    const uint16_t k = esp::decap_burst(*table, 0, pkts, n);
    CHECK(k <= n);
    std::vector<bool> got(n, false);
    uint16_t j = 0;
    for (uint16_t i = 0; i < k; ++i) {
      // Survivors keep their order: find each among the originals.
      while (j < n && orig[j] != pkts[i]) ++j;
      CHECK(j < n);
      got[j] = true;
      const Record& r = recs[start + j];
      CHECK(r.authentic && r.well_formed);
      CHECK(delivered_ids.insert({r.sa, r.seq}).second);
      CHECK(pkts[i]->hash.usr == uint32_t(1000 + r.sa));
      const uint8_t* p = rte_pktmbuf_mtod(pkts[i], const uint8_t*);
      const size_t len = rte_pktmbuf_pkt_len(pkts[i]);
      CHECK(pkts[i]->nb_segs == 1 && rte_pktmbuf_data_len(pkts[i]) == len);
      CHECK(len == r.inner.size() && std::memcmp(p, r.inner.data(), len) == 0);
      ++delivered_per_sa[r.sa];
      ++delivered;
    }
    for (uint16_t i = 0; i < n; ++i) CHECK(got[i] || !recs[start + i].must_deliver);
    for (uint16_t i = 0; i < n; ++i) rte_pktmbuf_free(pkts[i]);
    start = end;
  }

  // ---- accounting: every packet either delivered or dropped under exactly one reason
  uint64_t drops = table->stats().total_drops();
  for (size_t i = 0; i < kNumSas; ++i) {
    const esp::SaStats st = sas[i]->stats();
    CHECK(st.packets == delivered_per_sa[i]);
    drops += st.total_drops();
  }
  CHECK(drops + delivered == recs.size());
  CHECK(mg::fuzz::exact_live() == 0);
  CHECK(rte_mempool_in_use_count(mp) == base);
  return 0;
}
