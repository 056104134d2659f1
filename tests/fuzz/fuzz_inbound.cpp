// libFuzzer target: inbound ESP decapsulation through an SA table of eight SAs, every cipher and engine
// (AES-GCM-128/256 and ChaCha20-Poly1305 through IPsec-MB, ChaCha20-Poly1305 through libsodium), with and without
// ESN, four of them ESP in UDP (RFC 3948; one on port 4600, the others on 4500). Every packet sits in a heap buffer
// of exactly its size (exact_mbuf.h), so a read past its end is an ASan report, not a silent read of the next bytes
// of a pool mbuf.
//
// The input is a list of records (FuzzedDataProvider), each one packet of one burst:
//   raw       any outer bytes (parsers, SPI lookup, length checks); optionally ends the burst before it
//   udp       an outer IPv4/IPv6 UDP datagram to port 4500, 4600, 500 or another, from any port, whose payload is
//             a NAT-keepalive, the non-ESP marker and bytes, or any bytes; its UDP length right or any value
//   sealed    outer IPv4/IPv6 (+ a destination-options header, or L2 padding) + ESP under one of the SAs, sealed
//             here with a valid ICV (ChaCha sealed by the *other* engine), sequence number chosen by the input;
//             the plaintext is either all input bytes (trailer rules) or input bytes + a correct trailer;
//             in UDP to the SA's port (any source port and checksum) or raw, as the SA says, or the other way, or
//             in UDP to a NAT-T port that is not the SA's (those must fail);
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
//   - what the outer bytes are, by the RFC 3948 rules restated here: every NAT-keepalive is counted as one, every
//     IKE datagram (UDP 500, the zero marker on a NAT-T port) as one, or (two bursts in three, which pass a
//     HostList) handed over in order and nothing else with it; in every third burst the HostList also carries the
//     port's addresses, and ICMP / ND / UDP fragments to them (net/local.h, restated here) are handed over too;
//   - the SA and table counters add up: each SA's packets = what it delivered, all drops + handed over = all not
//     delivered;
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
  uint16_t udp_port;          // ESP in UDP to this port; 0: raw ESP
};
constexpr SaDef kSas[8] = {
    {0x100, crypto::Cipher::kAesGcm128, crypto::Engine::kIpsecMb, crypto::Engine::kIpsecMb, false, 64, 0},
    {0x101, crypto::Cipher::kAesGcm128, crypto::Engine::kIpsecMb, crypto::Engine::kIpsecMb, true, 1024, 4500},
    {0x200, crypto::Cipher::kAesGcm256, crypto::Engine::kIpsecMb, crypto::Engine::kIpsecMb, false, 128, 4500},
    {0x201, crypto::Cipher::kAesGcm256, crypto::Engine::kIpsecMb, crypto::Engine::kIpsecMb, true, 64, 0},
    {0x300, crypto::Cipher::kChacha20Poly1305, crypto::Engine::kIpsecMb, crypto::Engine::kSodium, false, 64, 0},
    {0x301, crypto::Cipher::kChacha20Poly1305, crypto::Engine::kIpsecMb, crypto::Engine::kSodium, true, 256, 4600},
    {0x400, crypto::Cipher::kChacha20Poly1305, crypto::Engine::kSodium, crypto::Engine::kIpsecMb, false, 1024, 4500},
    {0x401, crypto::Cipher::kChacha20Poly1305, crypto::Engine::kSodium, crypto::Engine::kIpsecMb, true, 64, 0},
};
constexpr uint16_t kPorts[4] = {4500, 4600, 500, 53};  // what udp records and misdirected sealed ones aim at
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

// RFC 3948 2.2, 2.3 and RFC 7296 2.23 restated for the table above: what a datagram is before any SPI is looked
// at. Written out here rather than taken from lib/net, so that the product is checked against it.
enum class Kind { kOther, kEsp, kKeepalive, kIke };
Kind outer_kind(const std::vector<uint8_t>& b) {
  net::L3Info li;
  if (net::parse_l3(b.data(), uint32_t(b.size()), &li) != net::ParseStatus::kOk || li.fragment) return Kind::kOther;
  if (li.proto == net::kProtoEsp) return Kind::kEsp;
  if (li.proto != net::kProtoUdp || li.ip_len - li.l4_off < 8) return Kind::kOther;
  const uint8_t* u = b.data() + li.l4_off;
  const uint16_t dport = uint16_t(u[2] << 8 | u[3]), ulen = uint16_t(u[4] << 8 | u[5]);
  if (dport != 500 && dport != 4500 && dport != 4600) return Kind::kOther;
  if (ulen < 8 || ulen > li.ip_len - li.l4_off) return Kind::kOther;  // a bad UDP length: counted as bad outer
  if (dport == 500) return Kind::kIke;
  const size_t n = ulen - 8u;
  if (n == 1 && u[8] == 0xff) return Kind::kKeepalive;
  if (n >= 4 && (u[8] | u[9] | u[10] | u[11]) == 0) return Kind::kIke;
  return n >= 4 ? Kind::kEsp : Kind::kOther;
}

// The exception path's rule (net/local.h) restated: ICMP / ICMPv6, or a fragment of UDP, to our address (IPv6 also to
// fe80::/10 and link-scope multicast) is the host's when the caller gives its addresses.
constexpr uint8_t kLocal4[4] = {192, 0, 2, 1};
constexpr uint8_t kLocal6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
bool host_oracle(const std::vector<uint8_t>& b) {
  net::L3Info li;
  if (net::parse_l3(b.data(), uint32_t(b.size()), &li) != net::ParseStatus::kOk) return false;
  const bool frag_udp = li.fragment && li.proto == 17;
  if (li.version == 4) return (li.proto == 1 || frag_udp) && std::memcmp(&b[16], kLocal4, 4) == 0;
  const uint8_t* d = &b[24];
  return (li.proto == 58 || frag_udp) &&
         (std::memcmp(d, kLocal6, 16) == 0 || (d[0] == 0xfe && d[1] >= 0x80 && d[1] <= 0xbf) ||
          (d[0] == 0xff && d[1] % 16 == 2));
}

// Wraps the ESP at b[esp_off..) in a UDP header (the IP header and any extension header stay in front of it).
void wrap_udp(std::vector<uint8_t>* b, size_t esp_off, size_t esp_len, uint16_t sport, uint16_t dport,
              uint16_t csum, bool v6, bool ext) {
  uint8_t u[8];
  net::store_be16(u, sport);
  net::store_be16(u + 2, dport);
  net::store_be16(u + 4, uint16_t(esp_len + 8));
  net::store_be16(u + 6, csum);  // never verified by the receiver: any value
  b->insert(b->begin() + long(esp_off), u, u + 8);
  std::vector<uint8_t>& p = *b;
  if (v6) {
    net::store_be16(&p[4], uint16_t(net::load_be16(&p[4]) + 8));
    p[ext ? 40 : 6] = net::kProtoUdp;
  } else {
    net::store_be16(&p[2], uint16_t(net::load_be16(&p[2]) + 8));
    p[9] = net::kProtoUdp;
    p[10] = p[11] = 0;
    const uint16_t c = csum16(p.data(), 20);
    p[10] = uint8_t(c >> 8);
    p[11] = uint8_t(c);
  }
}

// An outer header (IPv4 or IPv6) in front of `payload` sent as UDP sport -> dport with UDP length ulen.
std::vector<uint8_t> udp_datagram(bool v6, uint16_t sport, uint16_t dport, uint16_t ulen,
                                  const std::vector<uint8_t>& payload) {
  const size_t hl = v6 ? 40 : 20;
  std::vector<uint8_t> b(hl + 8);
  b.insert(b.end(), payload.begin(), payload.end());
  if (v6) {
    b[0] = 0x60;
    net::store_be16(&b[4], uint16_t(b.size() - 40));
    b[6] = net::kProtoUdp;
    b[7] = 64;
    b[8] = 0x20, b[9] = 0x01, b[23] = 1, b[24] = 0x20, b[25] = 0x01, b[39] = 2;
  } else {
    b[0] = 0x45;
    net::store_be16(&b[2], uint16_t(b.size()));
    b[8] = 64;
    b[9] = net::kProtoUdp;
    b[12] = 192, b[15] = 1, b[16] = 198, b[19] = 7;
    const uint16_t c = csum16(b.data(), 20);
    b[10] = uint8_t(c >> 8);
    b[11] = uint8_t(c);
  }
  net::store_be16(&b[hl], sport);
  net::store_be16(&b[hl + 2], dport);
  net::store_be16(&b[hl + 4], ulen);
  return b;
}

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
    if (d.udp_port) {
      cfg.encap = mg::net::Encap::kUdp;
      cfg.udp_sport = 4500;
      cfg.udp_dport = d.udp_port;
    }
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
    if (kind == 0 && (ctl & 8)) {
      const bool v6 = (ctl & 0x10) != 0;
      const uint16_t dport = kPorts[(ctl >> 5) & 3];
      const uint16_t sport = (ctl & 0x80) ? fdp.ConsumeIntegral<uint16_t>() : 4500;
      const uint8_t what = fdp.ConsumeIntegral<uint8_t>();
      std::vector<uint8_t> pay;
      if ((what & 3) == 0) pay = {0xff};
      else if ((what & 3) == 1) pay = {0, 0, 0, 0};
      const std::vector<uint8_t> more = fdp.ConsumeBytes<uint8_t>(fdp.ConsumeIntegralInRange<uint16_t>(0, 64));
      if ((what & 3) != 0) pay.insert(pay.end(), more.begin(), more.end());
      const uint16_t ulen = (what & 4) ? fdp.ConsumeIntegral<uint16_t>() : uint16_t(8 + pay.size());
      r.wire = udp_datagram(v6, sport, dport, ulen, pay);
    } else if (kind == 0) {
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
      // How it travels: as its SA says (mostly), the other way, or in UDP to a NAT-T port that is not the SA's.
      const uint8_t wrap = fdp.ConsumeIntegral<uint8_t>();
      const uint8_t how = wrap & 7;
      const bool as_sa = how < 5;
      const bool in_udp = how == 7 || (as_sa == (d.udp_port != 0));
      const uint16_t to_port = how == 7 ? (d.udp_port == 4500 ? 4600 : 4500) : d.udp_port ? d.udp_port : 4500;
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
      if (in_udp) {
        const uint16_t sport = (wrap & 8) ? fdp.ConsumeIntegral<uint16_t>() : 4500;  // a NAT may change it
        const uint16_t csum = (wrap & 16) ? fdp.ConsumeIntegral<uint16_t>() : 0;
        wrap_udp(&b, esp_off, esp_len, sport, to_port, csum, v6, ext != 0);
      }
      r.wire = std::move(b);
      r.sa = si;
      r.seq = seq;
      // Wrongly encapsulated, it can never be delivered, so it moves no window either.
      r.authentic = !flip && as_sa;
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
  size_t delivered = 0, handed = 0, keepalives = 0, ike_counted = 0;
  size_t start = 0;
  for (unsigned burst = 0; start < recs.size(); ++burst) {
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
    rte_mbuf* host[kMaxRecords];
    esp::HostList hl{host};
    // Bursts in turn: without a host list, with one for IKE, with one and the port's addresses (exception path).
    const bool take = burst % 3 != 0, local = burst % 3 == 2;
    net::LocalAddrs la;
    std::memcpy(la.v4, kLocal4, 4);
    std::memcpy(la.v6, kLocal6, 16);
    la.has4 = la.has6 = true;
    if (local) hl.local = &la;
    const uint16_t k = esp::decap_burst(*table, 0, pkts, n, take ? &hl : nullptr);
    CHECK(k <= n);
    // The host list holds exactly the IKE datagrams of the burst, in order; without one they are counted.
    uint16_t h = 0;
    for (uint16_t i = 0; i < n; ++i) {
      const bool mine = local && host_oracle(recs[start + i].wire);
      if (mine) {
        CHECK(h < hl.n && host[h++] == orig[i]);
        continue;
      }
      const Kind kd = outer_kind(recs[start + i].wire);
      if (kd == Kind::kKeepalive) ++keepalives;
      if (kd != Kind::kIke) continue;
      if (take) CHECK(h < hl.n && host[h++] == orig[i]);
      else ++ike_counted;
    }
    CHECK(h == (take ? hl.n : 0));
    handed += h;
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
    for (uint16_t i = 0; i < n - h; ++i) rte_pktmbuf_free(pkts[i]);
    for (uint16_t i = 0; i < h; ++i) rte_pktmbuf_free(host[i]);
    start = end;
  }

  // ---- accounting: every packet either delivered or dropped under exactly one reason
  uint64_t drops = table->stats().total_drops();
  for (size_t i = 0; i < kNumSas; ++i) {
    const esp::SaStats st = sas[i]->stats();
    CHECK(st.packets == delivered_per_sa[i]);
    drops += st.total_drops();
  }
  CHECK(drops + delivered + handed == recs.size());
  CHECK(table->stats().drops[size_t(esp::Drop::kInNatKeepalive)] == keepalives);
  CHECK(table->stats().drops[size_t(esp::Drop::kInIke)] == ike_counted);
  CHECK(mg::fuzz::exact_live() == 0);
  CHECK(rte_mempool_in_use_count(mp) == base);
  return 0;
}
