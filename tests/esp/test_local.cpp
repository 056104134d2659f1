// The exception path's classification (net/local.h) and its use in an inbound burst: what of the traffic reaching
// an instance's port is the host's besides IKE. ARP for the instance (not for others, not other hardware types);
// ICMP and ICMPv6 to its addresses, to the link-local range and link-scope multicast (ND); fragments of UDP to it
// (IKE too big for one packet). Everything else keeps its old fate: ICMP to another address, TCP to the instance,
// ESP fragments, each with its drop reason. Host packets leave the burst in order, nothing counted.
#include <gtest/gtest.h>

#include "esp_fixture.h"
#include "net/local.h"

using mg::esp::Direction;
using mg::esp::Drop;
using namespace mg::test;
namespace net = mg::net;

namespace {

constexpr uint8_t kInst4[4] = {192, 0, 2, 1};
const uint8_t kInst6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

net::LocalAddrs local() {
  net::LocalAddrs a;
  std::memcpy(a.v4, kInst4, 4);
  std::memcpy(a.v6, kInst6, 16);
  a.has4 = a.has6 = true;
  return a;
}

std::vector<uint8_t> ip4(uint8_t proto, const uint8_t dst[4], uint16_t frag, size_t payload) {
  std::vector<uint8_t> b(20 + payload, 0);
  b[0] = 0x45;
  b[8] = 64;
  b[9] = proto;
  net::store_be16(&b[6], frag);
  net::store_be32(&b[12], 0xc6336407);
  std::memcpy(&b[16], dst, 4);
  net::store_be16(&b[2], uint16_t(b.size()));
  net::store_be16(&b[10], net::ipv4_header_checksum(b.data(), 20));
  return b;
}

std::vector<uint8_t> ip6(uint8_t next, const uint8_t dst[16], size_t payload) {
  std::vector<uint8_t> b(40 + payload, 0);
  b[0] = 0x60;
  net::store_be16(&b[4], uint16_t(payload));
  b[6] = next;
  b[7] = 255;
  b[8] = 0xfe;
  b[9] = 0x80;
  b[23] = 7;
  std::memcpy(&b[24], dst, 16);
  return b;
}

std::vector<uint8_t> arp(uint16_t op, const uint8_t tpa[4], uint16_t htype = 1) {
  std::vector<uint8_t> a(net::kArpLen, 0);
  net::store_be16(&a[0], htype);
  net::store_be16(&a[2], 0x0800);
  a[4] = 6;
  a[5] = 4;
  net::store_be16(&a[6], op);
  std::memcpy(&a[24], tpa, 4);
  return a;
}

bool bound(const std::vector<uint8_t>& b) {
  net::L3Info li;
  EXPECT_EQ(net::parse_l3(b.data(), uint32_t(b.size()), &li), net::ParseStatus::kOk);
  return net::host_bound(b.data(), li, local());
}

}  // namespace

TEST(Local, ArpForTheInstanceOnly) {
  const auto la = local();
  const uint8_t other[4] = {192, 0, 2, 9};
  EXPECT_TRUE(net::arp_for_us(arp(1, kInst4).data(), net::kArpLen, la)) << "a request for our address";
  EXPECT_TRUE(net::arp_for_us(arp(2, kInst4).data(), net::kArpLen, la)) << "a reply to our request";
  EXPECT_FALSE(net::arp_for_us(arp(1, other).data(), net::kArpLen, la)) << "someone else's";
  EXPECT_FALSE(net::arp_for_us(arp(1, kInst4, 6).data(), net::kArpLen, la)) << "not Ethernet";
  EXPECT_FALSE(net::arp_for_us(arp(3, kInst4).data(), net::kArpLen, la)) << "RARP";
  EXPECT_FALSE(net::arp_for_us(arp(1, kInst4).data(), net::kArpLen - 1, la)) << "truncated";
  net::LocalAddrs v6only = la;
  v6only.has4 = false;
  EXPECT_FALSE(net::arp_for_us(arp(1, kInst4).data(), net::kArpLen, v6only)) << "no IPv4 address: no ARP";
}

TEST(Local, IcmpNdAndUdpFragmentsToTheInstance) {
  const uint8_t other4[4] = {192, 0, 2, 9};
  const uint8_t other6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9};
  const uint8_t ll[16] = {0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  const uint8_t sn[16] = {0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 1};
  EXPECT_TRUE(bound(ip4(net::kProtoIcmp, kInst4, 0, 8)));
  EXPECT_FALSE(bound(ip4(net::kProtoIcmp, other4, 0, 8))) << "ICMP through us is not ours";
  EXPECT_FALSE(bound(ip4(net::kProtoTcp, kInst4, 0, 20))) << "only ICMP, ND and IKE";
  EXPECT_FALSE(bound(ip4(net::kProtoUdp, kInst4, 0, 8))) << "whole UDP: classify_outer's (IKE) or not ours";
  EXPECT_TRUE(bound(ip4(net::kProtoUdp, kInst4, 0x2000, 8))) << "first fragment of UDP";
  EXPECT_TRUE(bound(ip4(net::kProtoUdp, kInst4, 0x00b9, 8))) << "last fragment of UDP";
  EXPECT_FALSE(bound(ip4(net::kProtoEsp, kInst4, 0x2000, 8))) << "ESP fragments stay (counted in_fragment)";
  EXPECT_TRUE(bound(ip6(net::kProtoIcmp6, kInst6, 8)));
  EXPECT_TRUE(bound(ip6(net::kProtoIcmp6, ll, 8))) << "to the twin's link-local address";
  EXPECT_TRUE(bound(ip6(net::kProtoIcmp6, sn, 8))) << "neighbour solicitation to solicited-node multicast";
  EXPECT_FALSE(bound(ip6(net::kProtoIcmp6, other6, 8)));
  EXPECT_FALSE(bound(ip6(net::kProtoTcp, kInst6, 20)));
  auto frag6 = ip6(net::kProtoFragment, kInst6, 16);
  frag6[40] = net::kProtoUdp;
  net::store_be16(&frag6[42], 1);  // offset 0, more fragments
  EXPECT_TRUE(bound(frag6)) << "a fragment of UDP over IPv6";
  frag6[40] = net::kProtoEsp;
  EXPECT_FALSE(bound(frag6));
}

// In a burst: the host's packets leave it in order, ESP decrypts as before, the rest is counted as before.
TEST(Local, InboundBurstHandsOverWhatIsTheHosts) {
  MbufGuard guard;
  SaParams p{mg::crypto::Cipher::kAesGcm128, mg::crypto::Engine::kIpsecMb, 4};
  auto in = make_sa(p, Direction::kInbound);
  std::vector<mg::esp::Sa*> sas{in.get()};
  std::string err;
  auto table = mg::esp::SaTable::build(sas, 2, &err);
  ASSERT_NE(table, nullptr) << err;
  const uint8_t other4[4] = {192, 0, 2, 9};
  std::vector<std::vector<uint8_t>> bytes = {
      ip4(net::kProtoIcmp, kInst4, 0, 8),             // host
      esp_packet(p, 1, std::vector<uint8_t>(60, 0x45)),  // ESP (not a valid inner packet: counted by the SA)
      ip4(net::kProtoIcmp, other4, 0, 8),             // in_not_esp
      ip4(net::kProtoUdp, kInst4, 0x2000, 8),         // host
      ip4(net::kProtoEsp, kInst4, 0x2000, 8),         // in_fragment
      ip4(net::kProtoTcp, kInst4, 0, 20),             // in_not_esp
  };
  std::vector<rte_mbuf*> pkts;
  for (const auto& b : bytes) pkts.push_back(make_mbuf(b));
  rte_mbuf* hostp[8];
  const net::LocalAddrs la = local();
  mg::esp::HostList hl{hostp};
  hl.local = &la;
  std::vector<rte_mbuf*> orig = pkts;
  const uint16_t k = mg::esp::decap_burst(*table, 0, pkts.data(), uint16_t(pkts.size()), &hl);
  ASSERT_EQ(hl.n, 2);
  EXPECT_EQ(hostp[0], orig[0]);
  EXPECT_EQ(hostp[1], orig[3]);
  const auto st = table->stats();
  EXPECT_EQ(st.drops[size_t(Drop::kInNotEsp)], 2u);
  EXPECT_EQ(st.drops[size_t(Drop::kInFragment)], 1u);
  free_all(pkts.data(), uint16_t(pkts.size() - hl.n));
  free_all(hostp, hl.n);
  (void)k;

  // Without `local` (a port with no kernel twin) the same ICMP and fragment are drops, as before.
  rte_mbuf* again[2] = {make_mbuf(bytes[0]), make_mbuf(bytes[3])};
  mg::esp::HostList ike_only{hostp};
  EXPECT_EQ(mg::esp::decap_burst(*table, 0, again, 2, &ike_only), 0);
  EXPECT_EQ(ike_only.n, 0);
  EXPECT_EQ(table->stats().drops[size_t(Drop::kInNotEsp)], 3u);
  EXPECT_EQ(table->stats().drops[size_t(Drop::kInFragment)], 2u);
  free_all(again, 2);
}
