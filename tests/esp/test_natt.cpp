// NAT traversal (RFC 3948) in the ESP engine: ESP in UDP both ways for every cipher and engine over IPv4 and IPv6
// outer headers (the wire layout checked field by field, the IPv6 UDP checksum by a sum written out here), what a
// receiver makes of raw ESP for a UDP SA and the reverse, of another port, of NAT-keepalives, of IKE behind the
// non-ESP marker and on port 500 (counted, or handed over with a HostList in a multi-chunk burst that keeps its
// order), of a bad UDP length and of a UDP fragment; the path MTU of a UDP SA; config validation and SA specs.
#include <gtest/gtest.h>

#include <algorithm>

#include "esp_fixture.h"
#include "net/mtu.h"
#include "net/natt.h"

using mg::crypto::Cipher;
using mg::crypto::Engine;
using mg::esp::Direction;
using mg::esp::Drop;
using namespace mg::test;
namespace net = mg::net;

namespace {

struct NattCombo {
  Cipher cipher;
  Engine enc, dec;
  int outer;
};

std::vector<NattCombo> natt_combos() {
  std::vector<NattCombo> v;
  for (int outer : {4, 6}) {
    v.push_back({Cipher::kAesGcm128, Engine::kIpsecMb, Engine::kIpsecMb, outer});
    v.push_back({Cipher::kAesGcm256, Engine::kIpsecMb, Engine::kIpsecMb, outer});
    v.push_back({Cipher::kChacha20Poly1305, Engine::kIpsecMb, Engine::kSodium, outer});
    v.push_back({Cipher::kChacha20Poly1305, Engine::kSodium, Engine::kIpsecMb, outer});
  }
  return v;
}

std::string natt_name(const ::testing::TestParamInfo<NattCombo>& i) {
  std::string s = std::string(mg::crypto::to_string(i.param.cipher)) + "_" + mg::crypto::to_string(i.param.enc) +
                  "_to_" + mg::crypto::to_string(i.param.dec) + "_out" + std::to_string(i.param.outer);
  std::replace(s.begin(), s.end(), '-', '_');
  return s;
}

SaParams udp_params(Cipher c = Cipher::kAesGcm128, Engine e = Engine::kIpsecMb, int outer = 4) {
  SaParams p{c, e, outer};
  p.encap = net::Encap::kUdp;
  p.sport = 4501;  // a NAT changed the sender's port; the destination stays 4500
  p.dport = 4500;
  return p;
}

// RFC 768 / RFC 8200 8.1 checksum of the UDP datagram behind a 40-byte IPv6 header, written out independently of
// lib/net and DPDK: 0 when the checksum field carried is right.
uint16_t udp6_verify(const std::vector<uint8_t>& b) {
  uint64_t sum = 0;
  auto add = [&](const uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; i += 2) sum += uint32_t(p[i]) << 8 | (i + 1 < n ? p[i + 1] : 0);
  };
  add(&b[8], 32);
  const uint32_t ulen = uint32_t(b.size() - 40);
  sum += (ulen >> 16) + (ulen & 0xffff) + net::kProtoUdp;
  add(&b[40], ulen);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return uint16_t(~sum);
}

// Wraps a raw-ESP datagram (outer IPv4 or IPv6 without extension headers) in UDP: what a NAT-T sender makes of it.
std::vector<uint8_t> to_udp(const std::vector<uint8_t>& esp_pkt, uint16_t sport, uint16_t dport) {
  const bool v6 = esp_pkt[0] >> 4 == 6;
  const size_t hl = v6 ? 40 : 20;
  std::vector<uint8_t> b(esp_pkt.begin(), esp_pkt.begin() + long(hl));
  b.resize(hl + 8);
  net::store_be16(&b[hl], sport);
  net::store_be16(&b[hl + 2], dport);
  net::store_be16(&b[hl + 4], uint16_t(esp_pkt.size() - hl + 8));
  b.insert(b.end(), esp_pkt.begin() + long(hl), esp_pkt.end());
  if (v6) {
    b[6] = net::kProtoUdp;
    net::store_be16(&b[4], uint16_t(b.size() - 40));
  } else {
    b[9] = net::kProtoUdp;
    net::store_be16(&b[2], uint16_t(b.size()));
    b[10] = b[11] = 0;
    net::store_be16(&b[10], net::ipv4_header_checksum(b.data(), 20));
  }
  return b;
}

// The inverse: a UDP-encapsulated datagram (outer IPv4) back to raw ESP.
std::vector<uint8_t> to_raw(const std::vector<uint8_t>& udp_pkt) {
  std::vector<uint8_t> b(udp_pkt.begin(), udp_pkt.begin() + 20);
  b.insert(b.end(), udp_pkt.begin() + 28, udp_pkt.end());
  b[9] = net::kProtoEsp;
  net::store_be16(&b[2], uint16_t(b.size()));
  b[10] = b[11] = 0;
  net::store_be16(&b[10], net::ipv4_header_checksum(b.data(), 20));
  return b;
}

// An outer IPv4 UDP datagram from the device to the gateway carrying `payload`.
std::vector<uint8_t> udp4(uint16_t sport, uint16_t dport, const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> b(28);
  b[0] = 0x45;
  b[8] = 64;
  b[9] = net::kProtoUdp;
  net::store_be32(&b[12], 0xc6336407);
  net::store_be32(&b[16], 0xc0000201);
  net::store_be16(&b[20], sport);
  net::store_be16(&b[22], dport);
  net::store_be16(&b[24], uint16_t(8 + payload.size()));
  b.insert(b.end(), payload.begin(), payload.end());
  net::store_be16(&b[2], uint16_t(b.size()));
  net::store_be16(&b[10], net::ipv4_header_checksum(b.data(), 20));
  return b;
}

// One packet through the table; the reason it was dropped for (kCount: delivered), and exactly one reason.
Drop decap_one(mg::esp::SaTable& table, mg::esp::Sa& sa, const std::vector<uint8_t>& bytes) {
  const auto t0 = table.stats(), s0 = sa.stats();
  rte_mbuf* m = make_mbuf(bytes);
  EXPECT_NE(m, nullptr);
  const uint16_t k = mg::esp::decap_burst(table, 0, &m, 1);
  rte_pktmbuf_free(m);
  const auto t1 = table.stats(), s1 = sa.stats();
  const uint64_t n = (t1.total_drops() - t0.total_drops()) + (s1.total_drops() - s0.total_drops());
  EXPECT_EQ(n + k, 1u) << "exactly one outcome";
  for (size_t r = 0; r < mg::esp::kDropCount; ++r)
    if (t1.drops[r] != t0.drops[r] || s1.drops[r] != s0.drops[r]) return Drop(r);
  return Drop::kCount;
}

std::unique_ptr<mg::esp::SaTable> table_of(std::initializer_list<mg::esp::Sa*> sas) {
  std::vector<mg::esp::Sa*> v(sas);
  std::string err;
  auto t = mg::esp::SaTable::build(v, 2, &err);
  EXPECT_TRUE(t) << err;
  return t;
}

}  // namespace

class NattRoundTrip : public ::testing::TestWithParam<NattCombo> {};

TEST_P(NattRoundTrip, UdpOnTheWireAndBackByteForByte) {
  MbufGuard guard;
  const NattCombo c = GetParam();
  SaParams po = udp_params(c.cipher, c.enc, c.outer), pi = udp_params(c.cipher, c.dec, c.outer);
  auto out = make_sa(po, Direction::kOutbound);
  auto in = make_sa(pi, Direction::kInbound);
  ASSERT_TRUE(out && in);
  auto table = table_of({in.get()});
  const uint32_t sizes[] = {0, 1, 49, 511, 1400, 2048 - 18 - 48 - 8};
  std::vector<std::vector<uint8_t>> inner;
  rte_mbuf* m[std::size(sizes)];
  for (size_t i = 0; i < std::size(sizes); ++i) {
    inner.push_back(udp_packet(i % 2 ? 6 : 4, sizes[i], uint32_t(i)));
    m[i] = make_mbuf(inner.back());
    ASSERT_NE(m[i], nullptr);
  }
  const uint16_t n = uint16_t(std::size(sizes));
  ASSERT_EQ(mg::esp::encap_burst(*out, 0, m, n), n) << "drops: " << out->stats().total_drops();
  const uint32_t hl = c.outer == 4 ? 20 : 40;
  for (uint16_t i = 0; i < n; ++i) {
    const auto b = mbuf_bytes(m[i]);
    const uint32_t pad = (4 - ((inner[i].size() + 2) & 3)) & 3;
    ASSERT_EQ(b.size(), hl + 8 + 8 + 8 + inner[i].size() + pad + 2 + 16);
    if (c.outer == 4) {
      EXPECT_EQ(b[9], net::kProtoUdp);
      EXPECT_EQ(net::load_be16(&b[2]), b.size());
      EXPECT_EQ(net::ipv4_header_checksum(b.data(), 20), 0) << "valid outer checksum";
      EXPECT_EQ(net::load_be16(&b[hl + 6]), 0) << "RFC 3948 2.1: UDP checksum 0 over IPv4";
    } else {
      EXPECT_EQ(b[6], net::kProtoUdp);
      EXPECT_EQ(net::load_be16(&b[4]), b.size() - 40);
      EXPECT_NE(net::load_be16(&b[hl + 6]), 0) << "RFC 8200 8.1: a UDP checksum over IPv6";
      EXPECT_EQ(udp6_verify(b), 0) << "IPv6 UDP checksum verifies, size " << sizes[i];
    }
    EXPECT_EQ(net::load_be16(&b[hl]), 4501);
    EXPECT_EQ(net::load_be16(&b[hl + 2]), 4500);
    EXPECT_EQ(net::load_be16(&b[hl + 4]), b.size() - hl) << "UDP length";
    EXPECT_EQ(net::load_be32(&b[hl + 8]), po.spi) << "the SPI right behind the UDP header (no marker)";
    EXPECT_EQ(net::load_be32(&b[hl + 12]), i + 1u);
  }
  ASSERT_EQ(mg::esp::decap_burst(*table, 1, m, n), n) << "drops: " << in->stats().total_drops() << " table "
                                                       << table->stats().total_drops();
  for (uint16_t i = 0; i < n; ++i) {
    EXPECT_EQ(mbuf_bytes(m[i]), inner[i]) << "size " << sizes[i];
    EXPECT_EQ(m[i]->hash.usr, 7u);
  }
  free_all(m, n);
}

INSTANTIATE_TEST_SUITE_P(Esp, NattRoundTrip, ::testing::ValuesIn(natt_combos()), natt_name);

TEST(Natt, ZeroUdpChecksumOverIpv6IsAccepted) {
  // scapy (and RFC 6936 senders) send ESP in UDP over IPv6 with checksum 0; the ICV protects the ESP packet.
  MbufGuard guard;
  SaParams p = udp_params(Cipher::kAesGcm128, Engine::kIpsecMb, 6);
  auto in = make_sa(p, Direction::kInbound);
  auto table = table_of({in.get()});
  auto b = esp_packet(p, 1, udp_packet(4, 20));
  ASSERT_EQ(b[6], net::kProtoUdp);
  b[46] = b[47] = 0;
  EXPECT_EQ(decap_one(*table, *in, b), Drop::kCount);
}

TEST(Natt, EncapsulationMustMatchTheSa) {
  MbufGuard guard;
  SaParams pu = udp_params(), pr;
  pr.spi = 0x2002;
  auto in_udp = make_sa(pu, Direction::kInbound);
  auto in_raw = make_sa(pr, Direction::kInbound);
  auto table = table_of({in_udp.get(), in_raw.get()});
  const auto inner = udp_packet(4, 40);

  const auto udp_ok = esp_packet(pu, 1, inner);
  ASSERT_EQ(udp_ok[9], net::kProtoUdp);
  EXPECT_EQ(decap_one(*table, *in_udp, to_raw(esp_packet(pu, 2, inner))), Drop::kInEncapMismatch)
      << "raw ESP for a UDP SA";
  EXPECT_EQ(decap_one(*table, *in_raw, to_udp(esp_packet(pr, 1, inner), 4500, 4500)), Drop::kInEncapMismatch)
      << "ESP in UDP for a raw SA";
  EXPECT_EQ(drops(*in_udp, Drop::kInEncapMismatch), 1u);
  EXPECT_EQ(drops(*in_raw, Drop::kInEncapMismatch), 1u);
  // Neither mismatch moved a window: the same numbers, encapsulated right, still pass.
  EXPECT_EQ(decap_one(*table, *in_udp, esp_packet(pu, 2, inner)), Drop::kCount);
  EXPECT_EQ(decap_one(*table, *in_raw, esp_packet(pr, 1, inner)), Drop::kCount);
  EXPECT_EQ(decap_one(*table, *in_udp, udp_ok), Drop::kCount);
}

TEST(Natt, PortsOfTheTableAndOfTheSa) {
  MbufGuard guard;
  SaParams p4500 = udp_params(), p4600 = udp_params();
  p4600.spi = 0x3003;
  p4600.dport = 4600;
  auto a = make_sa(p4500, Direction::kInbound);
  auto b = make_sa(p4600, Direction::kInbound);
  auto table = table_of({a.get(), b.get()});
  EXPECT_TRUE(table->nat_t_port(4500));
  EXPECT_TRUE(table->nat_t_port(4600));
  EXPECT_FALSE(table->nat_t_port(4601));
  EXPECT_FALSE(table->nat_t_port(0));
  const auto inner = udp_packet(4, 40);
  EXPECT_EQ(decap_one(*table, *b, esp_packet(p4600, 1, inner)), Drop::kCount) << "UDP to the SA's own port 4600";
  EXPECT_EQ(decap_one(*table, *b, to_udp(to_raw(esp_packet(p4600, 2, inner)), 4501, 4500)), Drop::kInUdpPort)
      << "the SA's packet to 4500, not its port";
  EXPECT_EQ(decap_one(*table, *a, to_udp(to_raw(esp_packet(p4500, 1, inner)), 4501, 4600)), Drop::kInUdpPort)
      << "4500's SA reached on another SA's port";
  EXPECT_EQ(decap_one(*table, *a, to_udp(to_raw(esp_packet(p4500, 2, inner)), 4501, 4601)), Drop::kInNotEsp)
      << "a port no SA has is not ESP";
  // A table without another port: 4600 is not NAT-T there.
  auto only = table_of({a.get()});
  EXPECT_FALSE(only->nat_t_port(4600));
  // One SA on its own (decap_burst(Sa&)) knows its own port.
  rte_mbuf* m = make_mbuf(esp_packet(p4600, 3, inner));
  EXPECT_EQ(mg::esp::decap_burst(*b, 0, &m, 1), 1);
  rte_pktmbuf_free(m);
}

TEST(Natt, KeepaliveMarkerIkeAndMalformedUdp) {
  MbufGuard guard;
  SaParams p = udp_params();
  auto in = make_sa(p, Direction::kInbound);
  auto table = table_of({in.get()});
  struct Case {
    const char* name;
    std::vector<uint8_t> bytes;
    Drop want;
  };
  std::vector<uint8_t> ike(28, 0);  // non-ESP marker + the start of an IKE header
  ike[4] = 0x11;
  std::vector<uint8_t> ike500(ike.begin() + 4, ike.end());
  auto short_len = udp4(4500, 4500, {1, 2, 3, 4, 5, 6, 7, 8});
  net::store_be16(&short_len[24], 7);
  auto long_len = udp4(4500, 4500, {1, 2, 3, 4, 5, 6, 7, 8});
  net::store_be16(&long_len[24], 17);
  auto frag = esp_packet(p, 1, udp_packet(4, 40));
  frag[6] = 0x20;  // MF
  frag[10] = frag[11] = 0;
  net::store_be16(&frag[10], net::ipv4_header_checksum(frag.data(), 20));
  auto trailing = udp4(4500, 4500, {0xff, 0, 0, 0});  // UDP says 1 byte: the rest is behind the UDP datagram
  net::store_be16(&trailing[24], 9);
  const Case cases[] = {
      {"NAT-keepalive", udp4(4500, 4500, {0xff}), Drop::kInNatKeepalive},
      {"NAT-keepalive from a NATed port", udp4(61000, 4500, {0xff}), Drop::kInNatKeepalive},
      {"keepalive length from the UDP header", trailing, Drop::kInNatKeepalive},
      {"one byte, not 0xFF", udp4(4500, 4500, {0xfe}), Drop::kInNotEsp},
      {"two bytes 0xFF 0xFF", udp4(4500, 4500, {0xff, 0xff}), Drop::kInNotEsp},
      {"empty UDP to 4500", udp4(4500, 4500, {}), Drop::kInNotEsp},
      {"IKE behind the non-ESP marker", udp4(4500, 4500, ike), Drop::kInIke},
      {"IKE on 500", udp4(500, 500, ike500), Drop::kInIke},
      {"4 zero bytes only", udp4(4500, 4500, {0, 0, 0, 0}), Drop::kInIke},
      {"SPI and nothing more", udp4(4500, 4500, {0, 0, 0x10, 0x01}), Drop::kInRunt},
      {"UDP length below its header", short_len, Drop::kInBadOuter},
      {"UDP length past the datagram", long_len, Drop::kInBadOuter},
      {"UDP to 53", udp4(4500, 53, {0, 0, 0x10, 0x01, 0, 0, 0, 1}), Drop::kInNotEsp},
      {"ESP in UDP, outer fragment", frag, Drop::kInFragment},
  };
  for (const Case& c : cases) EXPECT_EQ(decap_one(*table, *in, c.bytes), c.want) << c.name;
  EXPECT_EQ(in->stats().total_drops(), 0u) << "all counted before an SA";
}

TEST(Natt, HostListTakesIkeAndKeepsBothOrdersOverChunks) {
  MbufGuard guard;
  SaParams p = udp_params();
  auto in = make_sa(p, Direction::kInbound);
  auto table = table_of({in.get()});
  const auto inner = udp_packet(4, 40);
  std::vector<uint8_t> ike(24, 0);
  ike[4] = 0x22;
  // 150 packets, over three chunks of the engine: every third is IKE, every fifth fails (unknown SPI), the rest
  // decrypt. Each group must come out in arrival order.
  std::vector<rte_mbuf*> pkts, want_good, want_fail, want_host;
  uint64_t seq = 1;
  for (int i = 0; i < 150; ++i) {
    rte_mbuf* m;
    if (i % 3 == 0) {
      ike[5] = uint8_t(i);
      m = make_mbuf(udp4(4500, 4500, ike));
      want_host.push_back(m);
    } else if (i % 5 == 0) {
      m = make_mbuf(udp4(4500, 4500, {0, 0, 0xde, 0xad, 0, 0, 0, 1}));
      want_fail.push_back(m);
    } else {
      m = make_mbuf(esp_packet(p, seq++, inner));
      want_good.push_back(m);
    }
    ASSERT_NE(m, nullptr);
    pkts.push_back(m);
  }
  rte_mbuf* host[150];
  mg::esp::HostList hl{host};
  const uint16_t k = mg::esp::decap_burst(*table, 0, pkts.data(), uint16_t(pkts.size()), &hl);
  ASSERT_EQ(k, want_good.size());
  ASSERT_EQ(hl.n, want_host.size());
  EXPECT_EQ(std::vector<rte_mbuf*>(pkts.begin(), pkts.begin() + k), want_good);
  EXPECT_EQ(std::vector<rte_mbuf*>(pkts.begin() + k, pkts.begin() + k + long(want_fail.size())), want_fail);
  EXPECT_EQ(std::vector<rte_mbuf*>(host, host + hl.n), want_host);
  EXPECT_EQ(k + want_fail.size() + hl.n, pkts.size());
  EXPECT_EQ(table->stats().drops[size_t(Drop::kInIke)], 0u) << "handed over, not counted";
  EXPECT_EQ(table->stats().drops[size_t(Drop::kInUnknownSpi)], want_fail.size());
  free_all(pkts.data(), uint16_t(k + want_fail.size()));
  free_all(host, hl.n);
}

TEST(Natt, PathMtuFillsTheLinkExactly) {
  MbufGuard guard;
  for (int outer : {4, 6}) {
    const uint32_t link = 1500, path = net::esp_inner_mtu(link, outer == 6, 8, 16, true);
    EXPECT_EQ(path + 8, net::esp_inner_mtu(link, outer == 6, 8, 16)) << "8 bytes of UDP header";
    auto out = make_sa(udp_params(Cipher::kAesGcm128, Engine::kIpsecMb, outer), Direction::kOutbound);
    for (uint32_t size : {path, path + 1}) {
      rte_mbuf* m = make_mbuf(udp_packet(4, size - 28));
      ASSERT_EQ(mg::esp::encap_burst(*out, 0, &m, 1), 1);
      if (size == path) EXPECT_EQ(rte_pktmbuf_pkt_len(m), link) << "outer v" << outer;
      else EXPECT_GT(rte_pktmbuf_pkt_len(m), link) << "outer v" << outer;
      rte_pktmbuf_free(m);
    }
  }
}

TEST(Natt, SaConfigAndSpec) {
  for (uint16_t bad : {uint16_t(0), uint16_t(500)}) {
    for (bool src : {true, false}) {
      mg::esp::SaConfig c = sa_config(udp_params());
      (src ? c.udp_sport : c.udp_dport) = bad;
      std::string err;
      EXPECT_EQ(mg::esp::Sa::create(c, Direction::kOutbound, 1, &err), nullptr) << bad;
      EXPECT_NE(err.find("port"), std::string::npos) << err;
    }
  }
  {  // ports of a raw SA are not looked at
    mg::esp::SaConfig c = sa_config(SaParams{});
    c.udp_dport = 500;
    std::string err;
    EXPECT_NE(mg::esp::Sa::create(c, Direction::kInbound, 1, &err), nullptr) << err;
  }
  const std::string base = "spi=0x1001,cipher=aes-gcm-128,key=" + std::string(40, 'a') +
                           ",src=192.0.2.1,dst=198.51.100.7";
  mg::esp::SaConfig c;
  std::string err;
  ASSERT_TRUE(mg::esp::parse_sa_spec(base + ",encap=udp", &c, &err)) << err;
  EXPECT_EQ(c.encap, net::Encap::kUdp);
  EXPECT_EQ(c.udp_sport, 4500);
  EXPECT_EQ(c.udp_dport, 4500);
  ASSERT_TRUE(mg::esp::parse_sa_spec(base + ",encap=udp,sport=61000,dport=4600", &c, &err)) << err;
  EXPECT_EQ(c.udp_sport, 61000);
  EXPECT_EQ(c.udp_dport, 4600);
  ASSERT_TRUE(mg::esp::parse_sa_spec(base + ",encap=none", &c, &err)) << err;
  EXPECT_EQ(c.encap, net::Encap::kNone);
  for (const char* bad : {",encap=tcp", ",sport=4500", ",encap=udp,dport=0", ",encap=udp,sport=500",
                          ",encap=udp,dport=65536", ",encap=udp,dport=x"}) {
    EXPECT_FALSE(mg::esp::parse_sa_spec(base + bad, &c, &err)) << bad;
    EXPECT_TRUE(err.starts_with("encap") || err.starts_with("sport") || err.starts_with("dport")) << err;
  }
}

TEST(Natt, ClassifierAlone) {
  // net::classify_outer, the one place the exception path will reuse: offsets and lengths it reports.
  auto b = udp4(4500, 4500, {0, 0, 0x10, 0x01, 0, 0, 0, 1, 9, 9});
  b.push_back(0xee);  // L2 padding behind the datagram: not counted
  net::L3Info li;
  ASSERT_EQ(net::parse_l3(b.data(), uint32_t(b.size()), &li), net::ParseStatus::kOk);
  const auto none = [](uint16_t) { return false; };
  const net::OuterClass c = net::classify_outer(b.data(), li, none);
  EXPECT_EQ(c.kind, net::OuterKind::kEspInUdp);
  EXPECT_EQ(c.esp_off, 28);
  EXPECT_EQ(c.esp_len, 10u);
  EXPECT_EQ(c.dport, 4500);
  auto other = udp4(4500, 4700, {0, 0, 0x10, 0x01});
  ASSERT_EQ(net::parse_l3(other.data(), uint32_t(other.size()), &li), net::ParseStatus::kOk);
  EXPECT_EQ(net::classify_outer(other.data(), li, none).kind, net::OuterKind::kOther);
  EXPECT_EQ(net::classify_outer(other.data(), li, [](uint16_t p) { return p == 4700; }).kind,
            net::OuterKind::kEspInUdp);
}
