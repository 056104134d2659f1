// Encap/decap over real mbufs: every cipher, engine and IP version pair at many sizes; the wire layout;
// outer header policy; the bad-input table with drop reasons and mbuf accounting; several workers on
// one SA.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <thread>

#include "esp_fixture.h"

using mg::crypto::Cipher;
using mg::crypto::Engine;
using mg::esp::Direction;
using mg::esp::Drop;
using namespace mg::test;
namespace net = mg::net;

namespace {

struct Combo {
  Cipher cipher;
  Engine enc_engine;
  Engine dec_engine;
  int inner;
  int outer;
};

std::string combo_name(const ::testing::TestParamInfo<Combo>& i) {
  std::string s = mg::crypto::to_string(i.param.cipher);
  s += std::string("_") + mg::crypto::to_string(i.param.enc_engine) + "_to_" +
       mg::crypto::to_string(i.param.dec_engine) + "_in" + std::to_string(i.param.inner) + "_out" +
       std::to_string(i.param.outer);
  std::replace(s.begin(), s.end(), '-', '_');
  return s;
}

std::vector<Combo> all_combos() {
  std::vector<Combo> v;
  const Combo base[] = {{Cipher::kAesGcm128, Engine::kIpsecMb, Engine::kIpsecMb, 0, 0},
                        {Cipher::kAesGcm256, Engine::kIpsecMb, Engine::kIpsecMb, 0, 0},
                        {Cipher::kChacha20Poly1305, Engine::kIpsecMb, Engine::kIpsecMb, 0, 0},
                        {Cipher::kChacha20Poly1305, Engine::kSodium, Engine::kSodium, 0, 0},
                        // Across engines: each must read what the other wrote.
                        {Cipher::kChacha20Poly1305, Engine::kIpsecMb, Engine::kSodium, 0, 0},
                        {Cipher::kChacha20Poly1305, Engine::kSodium, Engine::kIpsecMb, 0, 0}};
  for (Combo c : base)
    for (int in : {4, 6})
      for (int out : {4, 6}) {
        c.inner = in;
        c.outer = out;
        v.push_back(c);
      }
  return v;
}

}  // namespace

class RoundTrip : public ::testing::TestWithParam<Combo> {};

TEST_P(RoundTrip, EveryPayloadSizeComesBackByteForByte) {
  MbufGuard guard;
  const Combo c = GetParam();
  SaParams po{c.cipher, c.enc_engine, c.outer};
  SaParams pi{c.cipher, c.dec_engine, c.outer};
  auto out = make_sa(po, Direction::kOutbound);
  auto in = make_sa(pi, Direction::kInbound);
  ASSERT_TRUE(out && in);
  const uint32_t l3 = c.inner == 4 ? 28 : 48;  // IP + UDP headers of the inner packet
  // The largest inner packet whose padded trailer and ICV still fit the 2048-byte data room.
  const uint32_t largest = 2048 - 18 - l3;
  const uint32_t sizes[] = {0, 1, 49, 64, 511, 1400, largest};
  std::vector<std::vector<uint8_t>> inner;
  rte_mbuf* m[std::size(sizes)];
  for (size_t i = 0; i < std::size(sizes); ++i) {
    inner.push_back(udp_packet(c.inner, sizes[i], uint32_t(i)));
    m[i] = make_mbuf(inner.back());
    ASSERT_NE(m[i], nullptr);
  }
  const uint16_t n = uint16_t(std::size(sizes));
  ASSERT_EQ(mg::esp::encap_burst(*out, 0, m, n), n) << "drops: " << out->stats().total_drops();
  for (uint16_t i = 0; i < n; ++i) {
    const auto b = mbuf_bytes(m[i]);
    const uint32_t hl = c.outer == 4 ? 20 : 40;
    const uint32_t pad = (4 - ((inner[i].size() + 2) & 3)) & 3;
    ASSERT_EQ(b.size(), hl + 8 + 8 + inner[i].size() + pad + 2 + 16);
    EXPECT_EQ((b.size() - hl - 16 - 16) % 4, 0u) << "ciphertext + trailer is 4-byte aligned";
    if (c.outer == 4) {
      EXPECT_EQ(b[9], net::kProtoEsp);
      EXPECT_EQ(net::load_be16(&b[2]), b.size());
      EXPECT_EQ(net::ipv4_header_checksum(b.data(), 20), 0) << "valid outer checksum";
    } else {
      EXPECT_EQ(b[6], net::kProtoEsp);
      EXPECT_EQ(net::load_be16(&b[4]), b.size() - 40);
    }
    EXPECT_EQ(net::load_be32(&b[hl]), po.spi);
  }
  ASSERT_EQ(mg::esp::decap_burst(*in, 1, m, n), n) << "drops: " << in->stats().total_drops();
  for (uint16_t i = 0; i < n; ++i) {
    EXPECT_EQ(mbuf_bytes(m[i]), inner[i]) << "size " << sizes[i];
    EXPECT_EQ(m[i]->hash.usr, 7u);
  }
  EXPECT_EQ(out->stats().packets, n);
  EXPECT_EQ(in->stats().packets, n);
  uint64_t bytes = 0;
  for (auto& v : inner) bytes += v.size();
  EXPECT_EQ(in->stats().bytes, bytes);
  free_all(m, n);
}

TEST_P(RoundTrip, OneByteMoreThanTheLargestHasNoTailroom) {
  MbufGuard guard;
  const Combo c = GetParam();
  auto out = make_sa(SaParams{c.cipher, c.enc_engine, c.outer}, Direction::kOutbound);
  const uint32_t l3 = c.inner == 4 ? 28 : 48;
  rte_mbuf* m = make_mbuf(udp_packet(c.inner, 2048 - 18 - l3 + 1));
  EXPECT_EQ(mg::esp::encap_burst(*out, 0, &m, 1), 0);
  EXPECT_EQ(drops(*out, Drop::kOutNoTailroom), 1u);
  rte_pktmbuf_free(m);
}

INSTANTIATE_TEST_SUITE_P(Esp, RoundTrip, ::testing::ValuesIn(all_combos()), combo_name);

// ------------------------------------------------------------------------------------ outer policy

TEST(OuterHeader, TemplateTtlDscpCopyAndDfCopy) {
  MbufGuard guard;
  SaParams p;
  auto out = make_sa(p, Direction::kOutbound);
  auto inner = udp_packet(4, 100);
  inner[1] = 0xb9;  // DSCP 46 (EF), ECN 01
  inner[6] = 0x40;  // DF
  inner[10] = inner[11] = 0;
  net::store_be16(&inner[10], net::ipv4_header_checksum(inner.data(), 20));
  rte_mbuf* m = make_mbuf(inner);
  ASSERT_EQ(mg::esp::encap_burst(*out, 0, &m, 1), 1);
  const auto b = mbuf_bytes(m);
  EXPECT_EQ(b[1], 0xb9);
  EXPECT_EQ(b[6] & 0x40, 0x40);
  EXPECT_EQ(b[8], 64);
  EXPECT_EQ(net::ipv4_header_checksum(b.data(), 20), 0) << "incremental checksum covers the copied bits";
  EXPECT_EQ(net::load_be32(&b[12]), 0xc0000201u);
  EXPECT_EQ(net::load_be32(&b[16]), 0xc6336407u);
  rte_pktmbuf_free(m);
}

TEST(OuterHeader, DscpSetAndDfClearPolicies) {
  MbufGuard guard;
  std::string err;
  mg::esp::SaConfig c;
  ASSERT_TRUE(mg::esp::parse_sa_spec(
      "spi=0x77,cipher=aes-gcm-256,key=" + std::string(72, 'a') + ",src=10.0.0.1,dst=10.0.0.2,ttl=9,dscp=10,df=clear",
      &c, &err))
      << err;
  auto out = mg::esp::Sa::create(c, Direction::kOutbound, 1, &err);
  ASSERT_TRUE(out) << err;
  EXPECT_TRUE(c.keymat.empty()) << "create wipes and clears the caller's key";
  auto inner = udp_packet(4, 10);
  inner[6] = 0x40;
  rte_mbuf* m = make_mbuf(inner);
  ASSERT_EQ(mg::esp::encap_burst(*out, 0, &m, 1), 1);
  const auto b = mbuf_bytes(m);
  EXPECT_EQ(b[1], 10 << 2);
  EXPECT_EQ(b[6] & 0x40, 0);
  EXPECT_EQ(b[8], 9);
  EXPECT_EQ(net::ipv4_header_checksum(b.data(), 20), 0);
  rte_pktmbuf_free(m);
}

TEST(OuterHeader, CongestionMarkSurvivesDecap) {
  MbufGuard guard;
  SaParams p;
  auto in = make_sa(p, Direction::kInbound);
  auto inner = udp_packet(4, 10);
  inner[1] = 0x02;  // ECT(0)
  inner[10] = inner[11] = 0;
  net::store_be16(&inner[10], net::ipv4_header_checksum(inner.data(), 20));
  auto pkt = esp_packet(p, 1, inner);
  pkt[1] = 0x03;  // a router on the path marked CE on the outer header
  pkt[10] = pkt[11] = 0;
  net::store_be16(&pkt[10], net::ipv4_header_checksum(pkt.data(), 20));
  rte_mbuf* m = make_mbuf(pkt);
  ASSERT_EQ(mg::esp::decap_burst(*in, 0, &m, 1), 1);
  const auto b = mbuf_bytes(m);
  EXPECT_EQ(b[1] & 3, 3);
  EXPECT_EQ(net::ipv4_header_checksum(b.data(), 20), 0);
  rte_pktmbuf_free(m);
}

// RFC 6040 4.2: an outer CE mark over an inner Not-ECT packet cannot be passed on, so the packet is dropped
// (counted); over ECT(1) (IPv6) the mark is copied; over CE nothing changes.
TEST(OuterHeader, CongestionMarkOverNotEctDropped) {
  MbufGuard guard;
  SaParams p;
  auto in = make_sa(p, Direction::kInbound);
  uint64_t seq = 1;
  for (const auto& [ver, ecn, pass] : std::vector<std::tuple<int, uint8_t, bool>>{
           {4, 0, false}, {6, 0, false}, {6, 1, true}, {4, 3, true}}) {
    SCOPED_TRACE(testing::Message() << "IPv" << ver << " inner ECN " << int(ecn));
    auto inner = udp_packet(ver, 10);
    if (ver == 4) {
      inner[1] = ecn;
      inner[10] = inner[11] = 0;
      net::store_be16(&inner[10], net::ipv4_header_checksum(inner.data(), 20));
    } else {
      inner[1] = uint8_t((inner[1] & 0xcf) | (ecn << 4));
    }
    auto pkt = esp_packet(p, seq++, inner);
    pkt[1] = 0x03;
    pkt[10] = pkt[11] = 0;
    net::store_be16(&pkt[10], net::ipv4_header_checksum(pkt.data(), 20));
    rte_mbuf* m = make_mbuf(pkt);
    const uint64_t before = drops(*in, Drop::kInCeNotEct);
    const uint16_t got = mg::esp::decap_burst(*in, 0, &m, 1);
    EXPECT_EQ(got, pass ? 1 : 0);
    EXPECT_EQ(drops(*in, Drop::kInCeNotEct), before + (pass ? 0 : 1));
    if (got == 1) {
      const auto b = mbuf_bytes(m);
      EXPECT_EQ(ver == 4 ? b[1] & 3 : (b[1] >> 4) & 3, 3);
    }
    rte_pktmbuf_free(m);
  }
}

// ------------------------------------------------------------------------------------ bad input

namespace {

// An ESP packet (outer IPv4) whose plaintext is exactly `pt` (trailer included), sealed with p's key:
// for trailers our encap would never write.
std::vector<uint8_t> craft(const SaParams& p, uint64_t seq, const std::vector<uint8_t>& pt) {
  std::string err;
  auto aead = mg::crypto::make_aead(p.cipher, p.engine, test_keymat(p.cipher), &err);
  EXPECT_TRUE(aead) << err;
  std::vector<uint8_t> b(20 + 16 + pt.size() + 16);
  b[0] = 0x45;
  net::store_be16(&b[2], uint16_t(b.size()));
  b[8] = 64;
  b[9] = net::kProtoEsp;
  net::store_be32(&b[12], 0xc6336407);
  net::store_be32(&b[16], 0xc0000201);
  net::store_be16(&b[10], net::ipv4_header_checksum(b.data(), 20));
  net::store_be32(&b[20], p.spi);
  net::store_be32(&b[24], uint32_t(seq));
  net::store_be64(&b[28], seq);
  std::copy(pt.begin(), pt.end(), b.begin() + 36);
  uint8_t aad[8];
  net::store_be32(aad, p.spi);
  net::store_be32(aad + 4, uint32_t(seq));
  mg::crypto::AeadOp op{};
  op.data = &b[36];
  op.len = uint32_t(pt.size());
  op.aad = aad;
  op.aad_len = 8;
  op.icv = &b[36 + pt.size()];
  net::store_be64(op.iv, seq);
  mg::crypto::seal_burst(*aead, &op, 1);
  return b;
}

std::vector<uint8_t> with_trailer(std::vector<uint8_t> inner, std::vector<uint8_t> pad, uint8_t padlen, uint8_t nh) {
  inner.insert(inner.end(), pad.begin(), pad.end());
  inner.push_back(padlen);
  inner.push_back(nh);
  return inner;
}

void fix_v4(std::vector<uint8_t>& b) {
  b[10] = b[11] = 0;
  net::store_be16(&b[10], net::ipv4_header_checksum(b.data(), 20));
}

struct BadCase {
  const char* name;
  std::vector<uint8_t> bytes;
  Drop reason;
  bool on_table;  // counted before an SA is known
};

}  // namespace

TEST(BadInput, EveryCaseHasItsReasonAndNoMbufLeaks) {
  MbufGuard guard;
  SaParams p;
  auto in = make_sa(p, Direction::kInbound);
  mg::esp::Sa* list[] = {in.get()};
  std::string err;
  auto table = mg::esp::SaTable::build(list, 2, &err);
  ASSERT_TRUE(table) << err;

  const auto inner = udp_packet(4, 33);  // 61 bytes: pad 1
  uint64_t seq = 1;
  const auto good = [&] { return esp_packet(p, seq++, inner); };
  std::vector<BadCase> cases;
  {
    auto b = good();
    b.resize(12);
    cases.push_back({"truncated outer", b, Drop::kInTruncated, true});
  }
  {
    auto b = good();
    b[0] = 0x44;
    cases.push_back({"IHL 4", b, Drop::kInBadOuter, true});
  }
  {
    auto b = good();
    net::store_be16(&b[2], uint16_t(b.size() + 1));
    fix_v4(b);
    cases.push_back({"total length beyond the buffer", b, Drop::kInBadOuter, true});
  }
  {
    auto b = good();
    b[0] = 0x55;
    cases.push_back({"version 5", b, Drop::kInBadOuter, true});
  }
  {
    auto b = good();
    b[6] = 0x20;  // MF
    fix_v4(b);
    cases.push_back({"outer fragment", b, Drop::kInFragment, true});
  }
  {
    auto b = good();
    b[9] = net::kProtoUdp;
    fix_v4(b);
    cases.push_back({"not ESP", b, Drop::kInNotEsp, true});
  }
  {
    auto b = good();
    net::store_be32(&b[20], 0);
    cases.push_back({"SPI 0", b, Drop::kInZeroSpi, true});
  }
  {
    auto b = good();
    net::store_be32(&b[20], 0xdead);
    cases.push_back({"unknown SPI", b, Drop::kInUnknownSpi, true});
  }
  {
    auto b = good();
    b.resize(20 + 8 + 8 + 10);  // ESP shorter than header + IV + ICV
    net::store_be16(&b[2], uint16_t(b.size()));
    fix_v4(b);
    cases.push_back({"ESP shorter than the ICV", b, Drop::kInRunt, false});
  }
  {
    auto b = good();
    b.back() ^= 0x80;
    cases.push_back({"corrupted ICV", b, Drop::kInAuth, false});
  }
  {
    auto b = good();
    b[40] ^= 0x01;
    cases.push_back({"corrupted ciphertext", b, Drop::kInAuth, false});
  }
  {
    auto b = good();
    b[24] ^= 0x01;  // sequence number is in the AAD
    cases.push_back({"corrupted sequence number", b, Drop::kInAuth, false});
  }
  cases.push_back({"pad length 0xFF under a valid ICV", craft(p, seq++, with_trailer(inner, {1}, 0xff, 4)),
                   Drop::kInBadPadLen, false});
  cases.push_back({"padding not 1,2,3", craft(p, seq++, with_trailer(inner, {1, 9, 3}, 3, 4)), Drop::kInBadPadding,
                   false});
  cases.push_back({"next header 59", craft(p, seq++, with_trailer(inner, {1}, 1, 59)), Drop::kInDummy, false});
  cases.push_back({"next header 17", craft(p, seq++, with_trailer(inner, {1}, 1, 17)), Drop::kInBadNextHeader,
                   false});
  cases.push_back({"next header 41 over an IPv4 packet", craft(p, seq++, with_trailer(inner, {1}, 1, 41)),
                   Drop::kInBadInner, false});
  {
    auto bad_inner = inner;
    net::store_be16(&bad_inner[2], 200);  // inner claims more than the payload holds
    cases.push_back({"inner longer than the payload", craft(p, seq++, with_trailer(bad_inner, {1}, 1, 4)),
                     Drop::kInBadInner, false});
  }
  cases.push_back({"empty payload, only the trailer", craft(p, seq++, with_trailer({}, {1, 2}, 2, 4)),
                   Drop::kInBadInner, false});

  // One at a time: each case alone gives its reason.
  for (const BadCase& c : cases) {
    const auto before_sa = in->stats();
    const auto before_t = table->stats();
    rte_mbuf* m = make_mbuf(c.bytes);
    ASSERT_NE(m, nullptr) << c.name;
    EXPECT_EQ(mg::esp::decap_burst(*table, 0, &m, 1), 0) << c.name;
    rte_pktmbuf_free(m);
    const auto after = c.on_table ? table->stats() : in->stats();
    const auto& before = c.on_table ? before_t : before_sa;
    EXPECT_EQ(after.drops[size_t(c.reason)], before.drops[size_t(c.reason)] + 1)
        << c.name << ": expected " << mg::esp::to_string(c.reason);
    EXPECT_EQ(after.total_drops(), before.total_drops() + 1) << c.name << ": exactly one reason";
  }
  EXPECT_EQ(in->stats().packets, 0u);

  // All in one burst with valid packets between them: the valid ones come out first, in order.
  std::vector<rte_mbuf*> burst;
  std::vector<rte_mbuf*> valid;
  for (const BadCase& c : cases) {
    if (c.reason == Drop::kInDummy || c.reason == Drop::kInBadPadLen || c.reason == Drop::kInBadPadding ||
        c.reason == Drop::kInBadNextHeader || c.reason == Drop::kInBadInner)
      continue;  // crafted with sequence numbers that are now replays
    burst.push_back(make_mbuf(c.bytes));
    valid.push_back(make_mbuf(good()));
    burst.push_back(valid.back());
  }
  const uint16_t k = mg::esp::decap_burst(*table, 1, burst.data(), uint16_t(burst.size()));
  ASSERT_EQ(k, valid.size());
  for (size_t i = 0; i < valid.size(); ++i) {
    EXPECT_EQ(burst[i], valid[i]);
    EXPECT_EQ(mbuf_bytes(burst[i]), inner);
  }
  free_all(burst.data(), uint16_t(burst.size()));
}

TEST(BadInput, TfcPaddingIsTrimmedToTheInnerLength) {
  MbufGuard guard;
  SaParams p;
  auto in = make_sa(p, Direction::kInbound);
  const auto inner = udp_packet(4, 21);
  auto tfc = inner;
  tfc.insert(tfc.end(), 37, 0xee);  // RFC 4303 2.4 traffic flow confidentiality padding
  const size_t pad = (4 - ((tfc.size() + 2) & 3)) & 3;
  std::vector<uint8_t> padding;
  for (size_t i = 0; i < pad; ++i) padding.push_back(uint8_t(i + 1));
  rte_mbuf* m = make_mbuf(craft(p, 1, with_trailer(tfc, padding, uint8_t(pad), 4)));
  ASSERT_EQ(mg::esp::decap_burst(*in, 0, &m, 1), 1);
  EXPECT_EQ(mbuf_bytes(m), inner);
  rte_pktmbuf_free(m);
}

TEST(BadInput, OutboundReasons) {
  MbufGuard guard;
  SaParams p;
  auto out = make_sa(p, Direction::kOutbound);
  rte_mbuf* m[4];
  auto v5 = udp_packet(4, 10);
  v5[0] = 0x55;
  m[0] = make_mbuf(v5);
  m[1] = make_mbuf(std::vector<uint8_t>(10, 0x45));  // shorter than an IPv4 header
  m[2] = rte_pktmbuf_alloc(pool());                  // no headroom
  m[2]->data_off = 0;
  std::memcpy(rte_pktmbuf_append(m[2], 60), udp_packet(4, 32).data(), 60);
  m[3] = make_mbuf(udp_packet(4, 10));
  rte_mbuf* seg = make_mbuf(std::vector<uint8_t>(10, 0));
  ASSERT_EQ(rte_pktmbuf_chain(m[3], seg), 0);
  EXPECT_EQ(mg::esp::encap_burst(*out, 0, m, 4), 0);
  EXPECT_EQ(drops(*out, Drop::kOutBadInner), 2u);
  EXPECT_EQ(drops(*out, Drop::kOutNoHeadroom), 1u);
  EXPECT_EQ(drops(*out, Drop::kOutChained), 1u);
  EXPECT_EQ(out->last_seq(), 0u) << "no sequence number is spent on a packet dropped before crypto";
  free_all(m, 4);
}

TEST(BadInput, SaConfigValidation) {
  std::string err;
  mg::esp::SaConfig c;
  const std::string key16 = std::string(40, 'b');
  struct {
    std::string spec;
    const char* field;
  } bad[] = {
      {"spi=0,cipher=aes-gcm-128,key=" + key16, "spi"},
      {"spi=1,cipher=aes-gcm-192,key=" + key16, "cipher"},
      {"spi=1,cipher=aes-gcm-128,key=" + key16.substr(2), "key"},
      {"spi=1,cipher=aes-gcm-128,key=zz" + key16.substr(2), "key"},
      {"spi=1,cipher=aes-gcm-128,key=" + key16 + ",window=100", "window"},
      {"spi=1,cipher=aes-gcm-128,key=" + key16 + ",window=131072", "window"},
      {"spi=1,cipher=aes-gcm-128,key=" + key16 + ",engine=sodium", "engine"},
      {"spi=1,cipher=aes-gcm-128,key=" + key16 + ",src=300.1.1.1", "src"},
      {"spi=1,cipher=aes-gcm-128,key=" + key16 + ",colour=blue", "colour"},
      {"cipher=aes-gcm-128,key=" + key16, "spi"},
      {"spi=0x100000000,cipher=aes-gcm-128,key=" + key16, "spi"},
  };
  for (auto& b : bad) {
    err.clear();
    EXPECT_FALSE(mg::esp::parse_sa_spec(b.spec, &c, &err)) << b.spec;
    EXPECT_NE(err.find(b.field), std::string::npos) << b.spec << " -> " << err;
  }
  // Outbound needs endpoints of one IP version.
  ASSERT_TRUE(mg::esp::parse_sa_spec("spi=1,cipher=aes-gcm-128,key=" + key16 + ",src=10.0.0.1,dst=2001:db8::1", &c, &err));
  EXPECT_EQ(mg::esp::Sa::create(c, Direction::kOutbound, 1, &err), nullptr);
  EXPECT_NE(err.find("version"), std::string::npos) << err;
  // A duplicate SPI in a table is refused.
  SaParams p;
  auto a = make_sa(p, Direction::kInbound);
  auto b = make_sa(p, Direction::kInbound);
  mg::esp::Sa* two[] = {a.get(), b.get()};
  EXPECT_EQ(mg::esp::SaTable::build(two, 2, &err), nullptr);
  EXPECT_NE(err.find("duplicate"), std::string::npos) << err;
}

// ------------------------------------------------------------------------------------ workers

TEST(Workers, TwoWorkersOnOneSaNeverRepeatASequenceNumber) {
  MbufGuard guard;
  SaParams p;
  auto out = make_sa(p, Direction::kOutbound);
  constexpr int kBursts = 200, kBurst = 32;
  std::vector<uint32_t> seen[2];
  auto work = [&](uint16_t w) {
    rte_mbuf* m[kBurst];
    for (int b = 0; b < kBursts; ++b) {
      for (auto& x : m) {
        x = rte_pktmbuf_alloc(pool());
        std::memcpy(rte_pktmbuf_append(x, 60), udp_packet(4, 32, w).data(), 60);
      }
      const uint16_t k = mg::esp::encap_burst(*out, w, m, kBurst);
      for (uint16_t i = 0; i < k; ++i) seen[w].push_back(net::load_be32(rte_pktmbuf_mtod(m[i], uint8_t*) + 24));
      free_all(m, kBurst);
    }
  };
  std::thread t0(work, 0), t1(work, 1);
  t0.join();
  t1.join();
  std::set<uint32_t> all(seen[0].begin(), seen[0].end());
  all.insert(seen[1].begin(), seen[1].end());
  EXPECT_EQ(seen[0].size() + seen[1].size(), size_t(2 * kBursts * kBurst));
  EXPECT_EQ(all.size(), size_t(2 * kBursts * kBurst)) << "a sequence number (and IV) was used twice";
  EXPECT_EQ(*all.begin(), 1u);
  EXPECT_EQ(*all.rbegin(), uint32_t(2 * kBursts * kBurst));
  EXPECT_EQ(out->counters(0).packets + out->counters(1).packets, uint64_t(2 * kBursts * kBurst));
}

TEST(Workers, BurstsLargerThanOneChunkKeepOrder) {
  MbufGuard guard;
  SaParams p;
  auto out = make_sa(p, Direction::kOutbound);
  auto in = make_sa(p, Direction::kInbound);
  std::vector<rte_mbuf*> m;
  std::vector<std::vector<uint8_t>> inner;
  for (int i = 0; i < 200; ++i) {
    inner.push_back(udp_packet(i % 2 ? 6 : 4, uint32_t(i), uint32_t(i)));
    m.push_back(make_mbuf(inner.back()));
  }
  // Every 7th packet is not IP: it must land behind the others without disturbing their order.
  for (int i = 0; i < 200; i += 7) rte_pktmbuf_mtod(m[i], uint8_t*)[0] = 0x00;
  const uint16_t k = mg::esp::encap_burst(*out, 0, m.data(), 200);
  EXPECT_EQ(k, 200 - 29);
  ASSERT_EQ(mg::esp::decap_burst(*in, 0, m.data(), k), k);
  size_t j = 0;
  for (int i = 0; i < 200; ++i) {
    if (i % 7 == 0) continue;
    EXPECT_EQ(mbuf_bytes(m[j]), inner[i]) << i;
    ++j;
  }
  free_all(m.data(), 200);
}

// lib/net checksums used by liveness probes, against packets scapy built (checksums scapy computed).
TEST(NetChecksum, Icmpv6EchoMatchesScapy) {
  struct Case {
    const char* hex;
    uint16_t cksum;
  };
  const Case cases[] = {
      // IPv6 2001:db8:ffff::1 -> ::2, echo request id 0x6d67 seq 1, "mg-probe" + 00..07 (a meshgate probe).
      {"6000000000183a4020010db8ffff0000000000000000000120010db8ffff0000000000000000000280003b136d6700016d672d70"
       "726f62650001020304050607",
       0x3b13},
      // fe80::1 -> ff02::1, echo request id 1 seq 2, "abc": an odd message length.
      {"60000000000b3a40fe800000000000000000000000000001ff0200000000000000000000000000018000bdce00010002616263",
       0xbdce},
  };
  for (const Case& c : cases) {
    std::vector<uint8_t> b;
    for (const char* h = c.hex; h[0] && h[1]; h += 2) b.push_back(uint8_t(std::stoi(std::string(h, 2), nullptr, 16)));
    EXPECT_EQ(net::icmpv6_checksum(b.data(), uint32_t(b.size())), 0) << "a correct packet sums to zero";
    b[42] = b[43] = 0;
    EXPECT_EQ(net::icmpv6_checksum(b.data(), uint32_t(b.size())), c.cksum);
    b[9] ^= 1;  // the source address is covered (pseudo-header)
    EXPECT_NE(net::icmpv6_checksum(b.data(), uint32_t(b.size())), c.cksum);
  }
}
