// lib/net's header structs and echo builder (net/icmp.h) against datagrams scapy built: every byte, checksums
// included, must be equal. Each case names the scapy expression that made its bytes
// (/usr/bin/python3, scapy 2.5: raw(<expression>).hex()).
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "net/icmp.h"
#include "net/net.h"
#include "packets.h"

namespace mg::net::test {
namespace {

using flow::test::unhex;

std::array<uint8_t, 16> addr(const char* text) {
  IpAddr a;
  EXPECT_TRUE(parse_ip(text, &a)) << text;
  std::array<uint8_t, 16> b{};
  std::memcpy(b.data(), a.bytes, 16);
  return b;
}

const uint8_t kProbePayload[16] = {'m', 'g', '-', 'p', 'r', 'o', 'b', 'e', 0, 1, 2, 3, 4, 5, 6, 7};
const uint8_t kAbc[3] = {'a', 'b', 'c'};

struct Case {
  const char* scapy;  // the expression
  const char* hex;    // raw(expression).hex()
  bool v6, reply;
  const char *src, *dst;
  uint16_t id, seq;
  uint8_t ttl;
  const uint8_t* payload;
  uint16_t payload_len;
};

const Case kCases[] = {
    {R"(IP(src="192.0.2.1", dst="198.51.100.2", id=0, ttl=64) / ICMP(type=8, id=0x6d67, seq=1) / )"
     R"(Raw(b"mg-probe" + bytes(range(8))))",
     "4500002c0000000040018e9ac0000201c633640208000edb6d6700016d672d70726f62650001020304050607", false, false,
     "192.0.2.1", "198.51.100.2", 0x6d67, 1, 64, kProbePayload, 16},
    {R"(IP(src="10.255.0.9", dst="10.0.0.1", id=0, ttl=255) / ICMP(type=0, id=0xffff, seq=0xfffe) / Raw(b"abc"))",
     "4500001f00000000ff01a6d50aff00090a00000100003b9efffffffe616263", false, true, "10.255.0.9", "10.0.0.1", 0xffff,
     0xfffe, 255, kAbc, 3},
    {R"(IP(src="192.0.2.1", dst="192.0.2.2", id=0, ttl=64) / ICMP(type=8, id=1, seq=2))",
     "4500001c000000004001f6ddc0000201c00002020800f7fc00010002", false, false, "192.0.2.1", "192.0.2.2", 1, 2, 64,
     nullptr, 0},
    {R"(IPv6(src="2001:db8:ffff::1", dst="2001:db8:ffff::2", hlim=64) / )"
     R"(ICMPv6EchoRequest(id=0x6d67, seq=1, data=b"mg-probe" + bytes(range(8))))",
     "6000000000183a4020010db8ffff0000000000000000000120010db8ffff0000000000000000000280003b136d6700016d672d70726f62"
     "650001020304050607",
     true, false, "2001:db8:ffff::1", "2001:db8:ffff::2", 0x6d67, 1, 64, kProbePayload, 16},
    {R"(IPv6(src="fe80::1", dst="2001:db8::ab", hlim=1) / ICMPv6EchoReply(id=7, seq=0x1234, data=b"abc"))",
     "60000000000b3a01fe80000000000000000000000000000120010db80000000000000000000000ab81007b3600071234616263", true,
     true, "fe80::1", "2001:db8::ab", 7, 0x1234, 1, kAbc, 3},
    {R"(IPv6(src="2001:db8::1", dst="2001:db8::2", hlim=64) / ICMPv6EchoRequest(id=1, seq=2))",
     "6000000000083a4020010db800000000000000000000000120010db80000000000000000000000028000244500010002", true, false,
     "2001:db8::1", "2001:db8::2", 1, 2, 64, nullptr, 0},
};

EchoSpec spec_of(const Case& c, std::array<uint8_t, 16>& src, std::array<uint8_t, 16>& dst) {
  src = addr(c.src);
  dst = addr(c.dst);
  return EchoSpec{.v6 = c.v6, .reply = c.reply, .src = src.data(), .dst = dst.data(), .id = c.id, .seq = c.seq,
                  .ttl = c.ttl, .payload = c.payload, .payload_len = c.payload_len};
}

TEST(Echo, BuildsWhatScapyBuilds) {
  for (const Case& c : kCases) {
    const std::vector<uint8_t> want = unhex(c.hex);
    std::array<uint8_t, 16> src, dst;
    const EchoSpec s = spec_of(c, src, dst);
    std::vector<uint8_t> out(want.size() + 8, 0xee);
    ASSERT_EQ(build_echo(out.data(), out.size(), s), want.size()) << c.scapy;
    EXPECT_EQ(std::vector<uint8_t>(out.begin(), out.begin() + ptrdiff_t(want.size())), want) << c.scapy;
    for (size_t i = want.size(); i < out.size(); ++i) EXPECT_EQ(out[i], 0xee) << "wrote past the datagram";
  }
}

TEST(Echo, CapacityExactlyTheDatagramIsEnoughOneLessWritesNothing) {
  for (const Case& c : kCases) {
    const std::vector<uint8_t> want = unhex(c.hex);
    std::array<uint8_t, 16> src, dst;
    const EchoSpec s = spec_of(c, src, dst);
    std::vector<uint8_t> out(want.size(), 0xee);
    EXPECT_EQ(build_echo(out.data(), want.size() - 1, s), 0) << c.scapy;
    EXPECT_EQ(out, std::vector<uint8_t>(want.size(), 0xee)) << "nothing written when it does not fit";
    EXPECT_EQ(build_echo(out.data(), want.size(), s), want.size()) << c.scapy;
    EXPECT_EQ(out, want) << c.scapy;
  }
  // 20 + 8 + 65535 bytes cannot be one IPv4 datagram (16-bit total length).
  std::vector<uint8_t> big(70000), payload(65535);
  const uint8_t a[4] = {192, 0, 2, 1};
  EXPECT_EQ(build_echo(big.data(), big.size(), EchoSpec{.src = a, .dst = a, .payload = payload.data(),
                                                        .payload_len = 65535}),
            0);
}

TEST(Echo, ReceiversChecksumsAndParserAcceptTheResult) {
  for (const Case& c : kCases) {
    std::array<uint8_t, 16> src, dst;
    const EchoSpec s = spec_of(c, src, dst);
    uint8_t out[128];
    const uint16_t len = build_echo(out, sizeof out, s);
    ASSERT_GT(len, 0);
    L3Info l3;
    ASSERT_EQ(parse_l3(out, len, &l3), ParseStatus::kOk) << c.scapy;
    EXPECT_EQ(l3.proto, c.v6 ? kProtoIcmp6 : kProtoIcmp);
    EXPECT_EQ(l3.ip_len, len);
    EXPECT_FALSE(l3.fragment);
    if (c.v6) {
      EXPECT_EQ(icmpv6_checksum(out, len), 0) << c.scapy;
    } else {
      EXPECT_EQ(ipv4_header_checksum(out, 20), 0) << c.scapy;
      EXPECT_EQ(ipv4_header_checksum(out + 20, len - 20u), 0) << c.scapy;
    }
  }
}

// The structs read scapy's bytes field by field in host order: the byte order lives in Be16/Be32, not in the
// caller.
TEST(HeaderStructs, OverlayScapyBytes) {
  const std::vector<uint8_t> v4 = unhex(kCases[0].hex);
  Ipv4Hdr h4;
  std::memcpy(&h4, v4.data(), sizeof h4);
  EXPECT_EQ(h4.ver_ihl, 0x45);
  EXPECT_EQ(h4.total_len.get(), 44);
  EXPECT_EQ(h4.ttl, 64);
  EXPECT_EQ(h4.proto, kProtoIcmp);
  EXPECT_EQ(h4.csum.get(), 0x8e9a);
  EXPECT_EQ(std::memcmp(h4.dst, addr("198.51.100.2").data(), 4), 0);
  IcmpEcho e4;
  std::memcpy(&e4, v4.data() + 20, sizeof e4);
  EXPECT_EQ(e4.type, kIcmpEchoRequest);
  EXPECT_EQ(e4.csum.get(), 0x0edb);
  EXPECT_EQ(e4.id.get(), 0x6d67);
  EXPECT_EQ(e4.seq.get(), 1);

  const std::vector<uint8_t> v6 = unhex(kCases[4].hex);
  Ipv6Hdr h6;
  std::memcpy(&h6, v6.data(), sizeof h6);
  EXPECT_EQ(h6.vtc_flow.get(), 0x60000000u);
  EXPECT_EQ(h6.payload_len.get(), 11);
  EXPECT_EQ(h6.next, kProtoIcmp6);
  EXPECT_EQ(h6.hop_limit, 1);
  EXPECT_EQ(std::memcmp(h6.src, addr("fe80::1").data(), 16), 0);
  IcmpEcho e6;
  std::memcpy(&e6, v6.data() + 40, sizeof e6);
  EXPECT_EQ(e6.type, kIcmp6EchoReply);
  EXPECT_EQ(e6.csum.get(), 0x7b36);
  EXPECT_EQ(e6.id.get(), 7);
  EXPECT_EQ(e6.seq.get(), 0x1234);

  Be32 x;
  x.set(0x01020304);
  EXPECT_EQ(x.b[0], 1);
  EXPECT_EQ(x.b[3], 4);
  EXPECT_EQ(x.get(), 0x01020304u);
}

}  // namespace
}  // namespace mg::net::test
