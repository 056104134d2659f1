// Flow-key extraction: which fields each kind of packet hashes on (rule in net/flow_key.h).
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "net/flow_key.h"
#include "packets.h"

namespace mg::flow::test {
namespace {

using net::FlowKey;

FlowKey key_of(const std::vector<uint8_t>& p) {
  FlowKey k;
  EXPECT_EQ(net::extract_flow_key(p.data(), uint32_t(p.size()), &k), net::ParseStatus::kOk);
  return k;
}

bool same_key(const FlowKey& a, const FlowKey& b) { return std::memcmp(&a, &b, sizeof a) == 0; }

TEST(FlowKey, Ipv4TcpUdpSctpUseFiveTuple) {
  for (uint8_t proto : {net::kProtoTcp, net::kProtoUdp, net::kProtoSctp}) {
    const FlowKey k = key_of(ipv4({.proto = proto, .sport = 1234, .dport = 443}));
    EXPECT_EQ(k.version, 4);
    EXPECT_EQ(k.proto, proto);
    EXPECT_EQ(k.ports, 1);
    EXPECT_EQ(net::load_be16(reinterpret_cast<const uint8_t*>(&k.sport)), 1234);
    EXPECT_EQ(net::load_be16(reinterpret_cast<const uint8_t*>(&k.dport)), 443);
    EXPECT_EQ(net::load_be32(k.addr), 0x0a000001u);
    EXPECT_EQ(net::load_be32(k.addr + 4), 0x0a000002u);
    EXPECT_EQ(k.hash_len(), 16u);
  }
  // Ports matter: two connections between the same hosts are two flows.
  EXPECT_NE(hash_of(ipv4({.sport = 1}), 7), hash_of(ipv4({.sport = 2}), 7));
}

TEST(FlowKey, Ipv6UdpUsesFiveTupleAfterExtensionHeaders) {
  const FlowKey plain = key_of(ipv6({.sport = 53, .dport = 5353}));
  const FlowKey hbh = key_of(ipv6({.sport = 53, .dport = 5353, .hop_by_hop = true}));
  EXPECT_EQ(plain.version, 6);
  EXPECT_EQ(plain.ports, 1);
  EXPECT_EQ(plain.hash_len(), 40u);
  EXPECT_EQ(plain.addr[15], 1);
  EXPECT_EQ(plain.addr[31], 2);
  EXPECT_TRUE(same_key(plain, hbh)) << "a hop-by-hop header must not change the flow";
  EXPECT_NE(hash_of(ipv6({.sport = 53}), 7), hash_of(ipv6({.sport = 54}), 7));
}

TEST(FlowKey, IcmpAndOtherProtocolsUseThreeTuple) {
  // ICMP echo: the identifier sits where ports would; two pings between the same hosts share a key.
  const FlowKey a = key_of(ipv4({.proto = net::kProtoIcmp, .sport = 0x0800, .dport = 1}));
  const FlowKey b = key_of(ipv4({.proto = net::kProtoIcmp, .sport = 0x0800, .dport = 2}));
  EXPECT_EQ(a.ports, 0);
  EXPECT_EQ(a.sport, 0);
  EXPECT_TRUE(same_key(a, b));
  const FlowKey c = key_of(ipv6({.proto = net::kProtoIcmp6, .sport = 0x8000, .dport = 9}));
  EXPECT_EQ(c.ports, 0);
  EXPECT_EQ(c.proto, net::kProtoIcmp6);
  const FlowKey gre = key_of(ipv4({.proto = 47, .sport = 5, .dport = 6}));
  EXPECT_EQ(gre.ports, 0);
  EXPECT_EQ(gre.proto, 47);
}

TEST(FlowKey, Ipv4FragmentsOfOneDatagramShareTheKey) {
  const FlowKey first = key_of(ipv4({.sport = 4000, .dport = 53, .frag = net::kIpv4Mf, .payload = 1480}));
  const FlowKey middle = key_of(ipv4({.frag = net::kIpv4Mf | 185, .payload = 1480}));
  const FlowKey last = key_of(ipv4({.frag = 370, .payload = 100}));
  EXPECT_EQ(first.ports, 0) << "the first fragment must not use the ports its later fragments lack";
  EXPECT_TRUE(same_key(first, middle));
  EXPECT_TRUE(same_key(first, last));
  EXPECT_EQ(first.proto, net::kProtoUdp);
}

TEST(FlowKey, Ipv6FragmentsOfOneDatagramShareTheKey) {
  const FlowKey first = key_of(ipv6({.sport = 4000, .dport = 53, .frag = 0, .payload = 1232}));
  const FlowKey later = key_of(ipv6({.frag = 154, .payload = 200}));
  const FlowKey later_hbh = key_of(ipv6({.hop_by_hop = true, .frag = 154, .payload = 200}));
  EXPECT_EQ(first.ports, 0);
  EXPECT_EQ(first.proto, net::kProtoFragment);
  EXPECT_TRUE(same_key(first, later));
  EXPECT_TRUE(same_key(first, later_hbh));
}

// Known gap in net::parse_l3 (lib/net/net.cpp, not this component's): for a later IPv6 fragment whose fragment
// header announces another extension header (here destination options), parse_v6 walks on into the fragment's
// payload, which is opaque data, and fails with kBadExtHeader, so the fragment would be dropped while its first
// fragment passes. Enable once parse_v6 stops at a fragment header with a non-zero offset.
TEST(FlowKey, Ipv6LaterFragmentBeforeDestOptsParses) {
  std::vector<uint8_t> p(40 + 8 + 16, 0);
  p[0] = 0x60;
  net::store_be16(&p[4], 24);
  p[6] = net::kProtoFragment;
  p[40] = net::kProtoDstOpts;
  net::store_be16(&p[42], uint16_t(100 << 3));
  p[49] = 200;  // payload bytes that happen to read as a 1608-byte option header
  FlowKey k;
  EXPECT_EQ(net::extract_flow_key(p.data(), uint32_t(p.size()), &k), net::ParseStatus::kOk);
}

TEST(FlowKey, BadPacketsAreRejectedAndHashInvalid) {
  FlowKey k;
  const uint8_t junk[4] = {0x45, 0, 0, 4};
  EXPECT_NE(net::extract_flow_key(junk, sizeof junk, &k), net::ParseStatus::kOk);
  const uint8_t v5[20] = {0x55};
  EXPECT_EQ(net::extract_flow_key(v5, sizeof v5, &k), net::ParseStatus::kBadVersion);
  auto p = ipv4({});
  const uint8_t* pkts[3] = {junk, v5, p.data()};
  const uint32_t lens[3] = {sizeof junk, sizeof v5, uint32_t(p.size())};
  uint64_t h[3];
  EXPECT_EQ(hash_burst(pkts, lens, 3, 1, h), 1);
  EXPECT_EQ(h[0], kInvalidHash);
  EXPECT_EQ(h[1], kInvalidHash);
  EXPECT_NE(h[2], kInvalidHash);
}

// Robustness: arbitrary bytes (mostly IPv4/IPv6-looking, every length up to 96) never read out of bounds (run
// under -Db_sanitize=address to see it) and a key is produced only with the version the first nibble says.
TEST(FlowKey, RandomBytesAreSafe) {
  std::mt19937_64 rng(9);
  size_t ok = 0;
  for (int n = 0; n < 200000; ++n) {
    std::vector<uint8_t> p(rng() % 97);
    for (auto& b : p) b = uint8_t(rng());
    if (!p.empty()) p[0] = uint8_t((rng() & 1 ? 0x40 : 0x60) | (p[0] & 0x0f));
    if (p.size() >= 4 && (rng() & 1)) net::store_be16(&p[2], uint16_t(p.size()));   // plausible IPv4 length
    if (p.size() >= 40 && (rng() & 1)) net::store_be16(&p[4], uint16_t(p.size() - 40));  // and IPv6
    FlowKey k;
    if (net::extract_flow_key(p.data(), uint32_t(p.size()), &k) == net::ParseStatus::kOk) {
      ++ok;
      EXPECT_EQ(k.version, p[0] >> 4);
    }
  }
  EXPECT_GT(ok, 1000u) << "the generator should reach the parsing paths";
}

TEST(FlowKey, ShortTransportHeaderFallsBackToThreeTuple) {
  const FlowKey k = key_of(ipv4({.proto = net::kProtoTcp, .payload = 3}));
  EXPECT_EQ(k.ports, 0);
}

// End to end: every fragment of one datagram, and every ICMP packet between two hosts, on one tunnel, for many
// datagrams (one tunnel per datagram, whichever it is).
TEST(FlowKey, FragmentsAndIcmpLandOnOneTunnel) {
  const auto specs = tunnels({1, 1, 1, 1});
  const auto sel = SelectionTable::build(specs, 99);
  PinTable pins(4096, 1000);
  std::set<TunnelId> used;
  for (uint32_t d = 0; d < 200; ++d) {
    const uint32_t src = 0x0a000000 + d;
    std::vector<std::vector<uint8_t>> pk = {
        ipv4({.src = src, .sport = 4000, .frag = net::kIpv4Mf, .payload = 1480}),
        ipv4({.src = src, .frag = 185, .payload = 100}),
        ipv4({.src = src, .proto = net::kProtoIcmp, .sport = 0x0800, .dport = uint16_t(d)}),
        ipv6({.src_last = uint8_t(d), .sport = 9, .frag = 0, .payload = 1232}),
        ipv6({.src_last = uint8_t(d), .frag = 154, .payload = 64})};
    const uint8_t* ptr[5];
    uint32_t len[5];
    for (int i = 0; i < 5; ++i) ptr[i] = pk[i].data(), len[i] = uint32_t(pk[i].size());
    uint64_t h[5];
    TunnelId t[5];
    // Later fragment first: arrival order must not matter.
    std::swap(ptr[0], ptr[1]);
    std::swap(len[0], len[1]);
    ASSERT_EQ(spread_burst(pins, *sel, ptr, len, 5, 1, h, t), 5);
    EXPECT_EQ(t[0], t[1]) << "IPv4 fragments of datagram " << d;
    EXPECT_EQ(t[3], t[4]) << "IPv6 fragments of datagram " << d;
    used.insert(t[0]);
    used.insert(t[2]);
  }
  EXPECT_EQ(used.size(), 4u) << "3-tuple traffic should still spread over all tunnels";
}

}  // namespace
}  // namespace mg::flow::test
