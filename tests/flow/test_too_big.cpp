// lib/net's "too big" errors (net/icmp.h build_too_big, icmp_error_allowed) against datagrams scapy built: every
// byte, checksums included. Each case names the scapy expression (/usr/bin/python3, scapy 2.5: raw(...).hex()).
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "net/icmp.h"
#include "net/net.h"
#include "packets.h"

namespace mg::net::test {
namespace {

using flow::test::unhex;

std::vector<uint8_t> addr(const char* text) {
  IpAddr a;
  EXPECT_TRUE(parse_ip(text, &a)) << text;
  return std::vector<uint8_t>(a.bytes, a.bytes + (a.version == 4 ? 4 : 16));
}

struct Case {
  const char* scapy;     // the expression of `want`; `invoking` is the packet it quotes
  const char* invoking;
  const char* want;
  const char* src;
  uint32_t mtu;
  uint8_t ttl;
};

const Case kCases[] = {
    // invoking: IP(src="10.1.0.5", dst="10.128.0.9", flags="DF", id=0x1234, ttl=61) / UDP(sport=1111, dport=2222)
    //           / Raw(b"abcdefghij")
    {R"(IP(src="10.0.0.1", dst="10.1.0.5", id=0, ttl=64) / ICMP(type=3, code=4, nexthopmtu=1446) / raw(inv)[:28])",
     "45000026123440003d1117050a0100050a800009045708ae0012e3366162636465666768696a",
     "4500003800000000400166bf0a0000010a01000503040708000005a645000026123440003d1117050a0100050a800009045708ae0012e336",
     "10.0.0.1", 1446, 64},
    // invoking with an option (IHL 7): IP(src="10.1.0.5", dst="10.128.0.9", flags="DF", id=7, ttl=3,
    //           options=[IPOption_RR(routers=["1.2.3.4"])]) / TCP(sport=1, dport=2, flags="PA") / Raw(b"zz")
    {R"(IP(src="192.0.2.1", dst="10.1.0.5", id=0, ttl=255) / ICMP(type=3, code=4, nexthopmtu=576) / raw(inv)[:36])",
     "4700003200074000030650260a0100050a80000907070401020304000001000200000000000000005018200000bf00007a7a",
     "4500004000000000ff01efb5c00002010a0100050304fab8000002404700003200074000030650260a0100050a80000907070401020304"
     "000001000200000000",
     "192.0.2.1", 576, 255},
    // invoking: IPv6(src="2001:db8:a::5", dst="2001:db8:b::9", hlim=61) / UDP(sport=1111, dport=2222)
    //           / Raw(b"abcdefghij")
    {R"(IPv6(src="2001:db8:a::1", dst="2001:db8:a::5", hlim=64) / ICMPv6PacketTooBig(mtu=1446) / raw(inv))",
     "600000000012113d20010db8000a0000000000000000000520010db8000b00000000000000000009045708ae00129c306162636465666768"
     "696a",
     "6000000000423a4020010db8000a0000000000000000000120010db8000a0000000000000000000502002b25000005a66000000000121"
     "13d20010db8000a0000000000000000000520010db8000b00000000000000000009045708ae00129c306162636465666768696a",
     "2001:db8:a::1", 1446, 64},
};

TEST(TooBig, BuildsWhatScapyBuilds) {
  for (const Case& c : kCases) {
    const std::vector<uint8_t> inv = unhex(c.invoking), want = unhex(c.want), src = addr(c.src);
    std::vector<uint8_t> out(want.size() + 8, 0xee);
    const TooBigSpec s{.invoking = inv.data(), .invoking_len = uint32_t(inv.size()), .src = src.data(),
                       .mtu = c.mtu, .ttl = c.ttl};
    ASSERT_EQ(build_too_big(out.data(), out.size(), s), want.size()) << c.scapy;
    EXPECT_EQ(std::vector<uint8_t>(out.begin(), out.begin() + ptrdiff_t(want.size())), want) << c.scapy;
    for (size_t i = want.size(); i < out.size(); ++i) ASSERT_EQ(out[i], 0xee) << "wrote past the datagram";
    // One byte less of room: nothing written.
    std::vector<uint8_t> small(want.size() - 1, 0xee);
    EXPECT_EQ(build_too_big(small.data(), small.size(), s), 0) << c.scapy;
    EXPECT_EQ(small, std::vector<uint8_t>(want.size() - 1, 0xee));
  }
}

// A large IPv6 packet is quoted up to the 1280-byte limit. scapy: IPv6(src="2001:db8:a::1", dst="2001:db8:a::5",
// hlim=64) / ICMPv6PacketTooBig(mtu=1300) / raw(inv)[:1232] is 1280 bytes with checksum 0x0066, where inv =
// IPv6(src="2001:db8:a::5", dst="2001:db8:b::9", hlim=61) / UDP(sport=1111, dport=2222) /
// Raw(bytes(i & 0xff for i in range(1400))).
TEST(TooBig, Ipv6QuotesAsMuchAsFitsIn1280) {
  std::vector<uint8_t> inv = unhex(
      "600000000580113d20010db8000a0000000000000000000520010db8000b00000000000000000009045708ae0580");
  for (uint32_t i = 0; i < 1402; ++i) inv.push_back(uint8_t(i < 2 ? 0 : i - 2));
  // UDP checksum as any receiver computes it (pseudo-header + datagram); scapy wrote the same value.
  uint32_t sum = 0x0580 + 17;
  for (uint32_t i = 8; i < 40; i += 2) sum += load_be16(inv.data() + i);
  for (uint32_t i = 40; i < inv.size(); i += 2) sum += load_be16(inv.data() + i);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  store_be16(inv.data() + 46, uint16_t(~sum));
  const std::vector<uint8_t> src = addr("2001:db8:a::1");
  uint8_t out[1400];
  ASSERT_EQ(build_too_big(out, sizeof out, TooBigSpec{.invoking = inv.data(), .invoking_len = uint32_t(inv.size()),
                                                      .src = src.data(), .mtu = 1300}),
            kTooBigMaxLen);
  EXPECT_EQ(load_be16(out + 4), 1280 - 40);
  EXPECT_EQ(out[40], kIcmp6PacketTooBig);
  EXPECT_EQ(load_be32(out + 44), 1300u);
  EXPECT_EQ(std::memcmp(out + 48, inv.data(), 1232), 0);
  EXPECT_EQ(load_be16(out + 42), 0x0066) << "scapy's checksum";
  EXPECT_EQ(icmpv6_checksum(out, 1280), 0);
}

TEST(TooBig, RefusesWhatCannotBeBuilt) {
  const std::vector<uint8_t> inv = unhex(kCases[0].invoking), src = addr("10.0.0.1");
  uint8_t out[256];
  TooBigSpec s{.invoking = inv.data(), .invoking_len = uint32_t(inv.size()), .src = src.data(), .mtu = 70000};
  EXPECT_EQ(build_too_big(out, sizeof out, s), 0) << "an IPv4 next-hop MTU is 16 bits";
  s.mtu = 1446;
  s.invoking_len = 19;
  EXPECT_EQ(build_too_big(out, sizeof out, s), 0) << "shorter than a header";
  std::vector<uint8_t> bad = inv;
  bad[0] = 0x4f;  // IHL 60 > 38 bytes
  s.invoking = bad.data();
  s.invoking_len = uint32_t(bad.size());
  EXPECT_EQ(build_too_big(out, sizeof out, s), 0) << "IHL past the data";
  // Only the datagram is quoted, never the Ethernet padding behind it.
  std::vector<uint8_t> tiny = unhex("450000180001400040110000c0000201c0000202000100020004ffff");
  tiny.resize(46, 0xaa);
  s.invoking = tiny.data();
  s.invoking_len = uint32_t(tiny.size());
  ASSERT_EQ(build_too_big(out, sizeof out, s), 20 + 8 + 24);
}

TEST(TooBig, NeverForErrorsOrNonUnicast) {
  auto v4 = [](const char* src, const char* dst, uint8_t proto, uint16_t frag, uint8_t l4_first) {
    std::vector<uint8_t> p(28, 0);
    p[0] = 0x45;
    store_be16(p.data() + 2, 28);
    store_be16(p.data() + 6, frag);
    p[8] = 64;
    p[9] = proto;
    std::memcpy(p.data() + 12, addr(src).data(), 4);
    std::memcpy(p.data() + 16, addr(dst).data(), 4);
    p[20] = l4_first;
    return p;
  };
  auto verdict = [](const std::vector<uint8_t>& p) { return icmp_error_allowed(p.data(), uint32_t(p.size())); };
  EXPECT_EQ(verdict(v4("10.1.0.5", "10.128.0.9", kProtoUdp, kIpv4Df, 0)), ErrorVerdict::kSend);
  EXPECT_EQ(verdict(v4("10.1.0.5", "10.128.0.9", kProtoIcmp, kIpv4Df, 8)), ErrorVerdict::kSend) << "echo request";
  EXPECT_EQ(verdict(v4("10.1.0.5", "10.128.0.9", kProtoIcmp, kIpv4Df, 3)), ErrorVerdict::kIcmpError);
  EXPECT_EQ(verdict(v4("10.1.0.5", "10.128.0.9", kProtoIcmp, kIpv4Df, 11)), ErrorVerdict::kIcmpError);
  EXPECT_EQ(verdict(v4("10.1.0.5", "10.128.0.9", kProtoIcmp, kIpv4Df, 200)), ErrorVerdict::kIcmpError)
      << "an unknown type is not known to be a query";
  EXPECT_EQ(verdict(v4("0.0.0.0", "10.128.0.9", kProtoUdp, kIpv4Df, 0)), ErrorVerdict::kNotUnicast);
  EXPECT_EQ(verdict(v4("127.0.0.1", "10.128.0.9", kProtoUdp, kIpv4Df, 0)), ErrorVerdict::kNotUnicast);
  EXPECT_EQ(verdict(v4("224.0.0.5", "10.128.0.9", kProtoUdp, kIpv4Df, 0)), ErrorVerdict::kNotUnicast);
  EXPECT_EQ(verdict(v4("10.1.0.5", "239.1.1.1", kProtoUdp, kIpv4Df, 0)), ErrorVerdict::kNotUnicast);
  EXPECT_EQ(verdict(v4("10.1.0.5", "255.255.255.255", kProtoUdp, kIpv4Df, 0)), ErrorVerdict::kNotUnicast);
  EXPECT_EQ(verdict(v4("10.1.0.5", "10.128.0.9", kProtoUdp, 3, 0)), ErrorVerdict::kLaterFragment);
  EXPECT_EQ(verdict(v4("10.1.0.5", "10.128.0.9", kProtoUdp, kIpv4Mf, 0)), ErrorVerdict::kSend) << "first fragment";
  std::vector<uint8_t> cut = v4("10.1.0.5", "10.128.0.9", kProtoUdp, 0, 0);
  cut.resize(19);
  EXPECT_EQ(verdict(cut), ErrorVerdict::kMalformed);

  auto v6 = [](const char* src, const char* dst, uint8_t next, uint8_t l4_first) {
    std::vector<uint8_t> p(48, 0);
    p[0] = 0x60;
    store_be16(p.data() + 4, 8);
    p[6] = next;
    p[7] = 64;
    std::memcpy(p.data() + 8, addr(src).data(), 16);
    std::memcpy(p.data() + 24, addr(dst).data(), 16);
    p[40] = l4_first;
    return p;
  };
  EXPECT_EQ(verdict(v6("2001:db8:a::5", "2001:db8:b::9", kProtoUdp, 0)), ErrorVerdict::kSend);
  EXPECT_EQ(verdict(v6("2001:db8:a::5", "ff02::1", kProtoUdp, 0)), ErrorVerdict::kSend)
      << "RFC 4443 2.4 (e.3): Packet Too Big may answer a multicast destination";
  EXPECT_EQ(verdict(v6("2001:db8:a::5", "2001:db8:b::9", kProtoIcmp6, 128)), ErrorVerdict::kSend) << "echo";
  EXPECT_EQ(verdict(v6("2001:db8:a::5", "2001:db8:b::9", kProtoIcmp6, 1)), ErrorVerdict::kIcmpError);
  EXPECT_EQ(verdict(v6("2001:db8:a::5", "2001:db8:b::9", kProtoIcmp6, 2)), ErrorVerdict::kIcmpError);
  EXPECT_EQ(verdict(v6("::", "2001:db8:b::9", kProtoUdp, 0)), ErrorVerdict::kNotUnicast);
  EXPECT_EQ(verdict(v6("::1", "2001:db8:b::9", kProtoUdp, 0)), ErrorVerdict::kNotUnicast);
  EXPECT_EQ(verdict(v6("ff05::2", "2001:db8:b::9", kProtoUdp, 0)), ErrorVerdict::kNotUnicast);
}

}  // namespace
}  // namespace mg::net::test
