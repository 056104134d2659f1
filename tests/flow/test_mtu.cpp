// lib/net/mtu.h: the inner path MTU of an ESP tunnel, TCP MSS clamping and IPv4 fragmentation, against scapy's
// bytes (/usr/bin/python3, scapy 2.5: raw(...).hex(); `fragment()` for the fragments) and against restated rules.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "net/mtu.h"
#include "net/net.h"
#include "packets.h"

namespace mg::net::test {
namespace {

using flow::test::unhex;

// ---- path MTU

// Restated from RFC 4303 2.4 and lib/esp's encap: outer header, ESP header, IV, payload padded so that payload +
// 2 trailer bytes is a multiple of 4, ICV.
uint32_t encrypted_len(uint32_t inner, bool v6) {
  const uint32_t pad = (4 - ((inner + 2) % 4)) % 4;
  return (v6 ? 40 : 20) + 8 + 8 + inner + pad + 2 + 16;
}

TEST(PathMtu, LargestInnerThatFitsExactly) {
  EXPECT_EQ(esp_inner_mtu(1500, false, 8, 16), 1446u);
  EXPECT_EQ(esp_inner_mtu(1500, true, 8, 16), 1426u);
  EXPECT_EQ(esp_inner_mtu(1400, false, 8, 16), 1346u);
  for (uint32_t mtu = 100; mtu <= kMaxLinkMtu; ++mtu)
    for (bool v6 : {false, true}) {
      const uint32_t m = esp_inner_mtu(mtu, v6, 8, 16);
      ASSERT_LE(encrypted_len(m, v6), mtu) << mtu << (v6 ? " v6" : " v4");
      ASSERT_GT(encrypted_len(m + 1, v6), mtu) << mtu << (v6 ? " v6" : " v4");
    }
  EXPECT_EQ(esp_inner_mtu(60, false, 8, 16), 0u) << "nothing fits";
}

TEST(PathMtu, MssLeavesRoomForTheHeaders) {
  EXPECT_EQ(mss_for_mtu(1446, false), 1406);
  EXPECT_EQ(mss_for_mtu(1446, true), 1386);
  EXPECT_EQ(mss_for_mtu(40, false), 0);
}

// ---- MSS clamping

struct MssCase {
  const char* scapy;
  const char* before;
  const char* after;  // the same expression with the clamped MSS: scapy's checksum is the oracle
  uint16_t clamp;
};

// syn4(m) = IP(src="10.1.0.5", dst="10.128.0.9", ttl=61, id=1) / TCP(sport=40000, dport=443, flags="S", seq=1000,
//   options=[("MSS", m), ("SAckOK", b""), ("Timestamp", (1, 0)), ("WScale", 7)]); syn4odd: a NOP first, so that
//   the MSS value sits at an odd offset. syn6(m) = IPv6(src="2001:db8:a::5", dst="2001:db8:b::9", hlim=61) /
//   IPv6ExtHdrDestOpt() / TCP(sport=40000, dport=443, flags="SA", seq=1000, ack=5, options=[("NOP", None),
//   ("NOP", None), ("MSS", m)]).
const MssCase kMss[] = {
    {"syn4(1460) -> syn4(1360)",
     "4500003c000100003d06692d0a0100050a8000099c4001bb000003e800000000a00220006b940000020405b40402080a0000000100000000"
     "03030700",
     "4500003c000100003d06692d0a0100050a8000099c4001bb000003e800000000a00220006bf80000020405500402080a0000000100000000"
     "03030700",
     1360},
    {"syn4odd(1460) -> syn4odd(1360)",
     "4500003c000100003d06692d0a0100050a8000099c4001bb000003e800000000a0022000c03e000001020405b40402080a000000010000"
     "0000030307",
     "4500003c000100003d06692d0a0100050a8000099c4001bb000003e800000000a0022000243f000001020405500402080a000000010000"
     "0000030307",
     1360},
    {"syn6(1440) -> syn6(1286), behind a destination options header",
     "6000000000243c3d20010db8000a0000000000000000000520010db8000b0000000000000000000906000104000000009c4001bb000003"
     "e8000000057012200069a800000101020405a00000",
     "6000000000243c3d20010db8000a0000000000000000000520010db8000b0000000000000000000906000104000000009c4001bb000003"
     "e800000005701220006a4200000101020405060000",
     1286},
};

TEST(Mss, ClampsToWhatScapyComputes) {
  for (const MssCase& c : kMss) {
    std::vector<uint8_t> p = unhex(c.before);
    const std::vector<uint8_t> want = unhex(c.after);
    EXPECT_EQ(clamp_mss(p.data(), uint32_t(p.size()), c.clamp), MssResult::kClamped) << c.scapy;
    EXPECT_EQ(p, want) << c.scapy;
    // Clamping again, or to a larger value, changes nothing.
    EXPECT_EQ(clamp_mss(p.data(), uint32_t(p.size()), c.clamp), MssResult::kUnchanged) << c.scapy;
    EXPECT_EQ(clamp_mss(p.data(), uint32_t(p.size()), 1500), MssResult::kUnchanged) << c.scapy;
    EXPECT_EQ(p, want) << c.scapy;
  }
}

TEST(Mss, LeavesEverythingElseAlone) {
  const std::vector<uint8_t> syn = unhex(kMss[0].before);
  auto run = [](std::vector<uint8_t> p, uint16_t mss = 1000) {
    const std::vector<uint8_t> before = p;
    const MssResult r = clamp_mss(p.data(), uint32_t(p.size()), mss);
    if (r != MssResult::kClamped) {
      EXPECT_EQ(p, before) << "changed although not clamped";
    }
    return r;
  };
  std::vector<uint8_t> p = syn;
  p[33] = 0x10;  // ACK only
  EXPECT_EQ(run(p), MssResult::kNotSyn);
  p = syn;
  p[9] = kProtoUdp;
  EXPECT_EQ(run(p), MssResult::kNotSyn);
  p = syn;
  store_be16(p.data() + 6, 0x0003);  // a later fragment: the bytes there are not a TCP header
  EXPECT_EQ(run(p), MssResult::kNotSyn);
  EXPECT_EQ(run(syn, 0), MssResult::kNotSyn) << "0 = clamping off";
  p = syn;
  p[40] = 1, p[41] = 1, p[42] = 1, p[43] = 1;  // the MSS option replaced by NOPs
  EXPECT_EQ(run(p), MssResult::kNoOption);
  p = syn;
  p[41] = 0;  // option length 0 would loop forever
  EXPECT_EQ(run(p), MssResult::kMalformed);
  p = syn;
  p[41] = 40;  // runs past the TCP header
  EXPECT_EQ(run(p), MssResult::kMalformed);
  p = syn;
  p[41] = 3;  // an MSS option must be 4 bytes
  EXPECT_EQ(run(p), MssResult::kMalformed);
  p = syn;
  p[32] = 0xf0;  // data offset 60 > the segment
  EXPECT_EQ(run(p), MssResult::kMalformed);
  p = syn;
  p.resize(30);
  EXPECT_EQ(run(p), MssResult::kMalformed) << "truncated";
  for (uint32_t n = 0; n < syn.size(); ++n) {  // every truncation of the datagram: no read past n
    std::vector<uint8_t> t(syn.begin(), syn.begin() + n);
    (void)run(t);
  }
}

// Full one's complement sum over the data, restated: the incremental update must agree for any offset and values.
uint16_t full_sum(const std::vector<uint8_t>& d) {
  uint32_t s = 0;
  for (size_t i = 0; i < d.size(); i += 2) s += uint32_t(d[i]) << 8 | (i + 1 < d.size() ? d[i + 1] : 0);
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return uint16_t(~s);
}

TEST(Mss, IncrementalChecksumAgreesWithAFullSumAtAnyOffset) {
  std::mt19937 rng(7);
  for (int it = 0; it < 20000; ++it) {
    std::vector<uint8_t> d(2 + rng() % 60);
    for (auto& b : d) b = uint8_t(rng());
    const uint32_t off = rng() % uint32_t(d.size() - 1);
    const uint16_t c0 = full_sum(d), old_v = load_be16(d.data() + off), new_v = uint16_t(rng());
    store_be16(d.data() + off, new_v);
    const uint16_t c1 = full_sum(d), inc = csum_replace16(c0, off, old_v, new_v);
    // One's complement has two zeros; a receiver accepts either.
    ASSERT_TRUE(inc == c1 || (uint16_t(inc ^ c1) == 0xffff && (inc == 0 || c1 == 0)))
        << "offset " << off << " " << old_v << "->" << new_v << ": " << inc << " vs " << c1;
  }
}

// ---- IPv4 fragmentation

// Fragment i of `in` as the data plane assembles it: the header the plan gives, then its slice of the payload.
std::vector<uint8_t> piece(const std::vector<uint8_t>& in, const Ipv4FragPlan& p, uint16_t i) {
  std::vector<uint8_t> f(60 + ipv4_frag_len(p, i));
  const uint16_t h = ipv4_frag_header(in.data(), p, i, f.data());
  std::memcpy(f.data() + h, in.data() + p.hl_first + ipv4_frag_offset(p, i), ipv4_frag_len(p, i));
  f.resize(h + ipv4_frag_len(p, i));
  return f;
}

// in = IP(src="10.1.0.5", dst="10.128.0.9", id=0x4242, ttl=61) / UDP(sport=1111, dport=2222) /
//      Raw(bytes(i & 0xff for i in range(92))); scapy's fragment(in, fragsize=40) = the fragments for an MTU of 60.
TEST(Fragment, AsScapyFragments) {
  const std::vector<uint8_t> in = unhex(
      "45000078424200003d1126a50a0100050a800009045708ae0064bf46000102030405060708090a0b0c0d0e0f10111213141516171819"
      "1a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f"
      "505152535455565758595a5b");
  const char* want[] = {
      "4500003c424220003d1106e10a0100050a800009045708ae0064bf46000102030405060708090a0b0c0d0e0f10111213141516171819"
      "1a1b1c1d1e1f",
      "4500003c424220053d1106dc0a0100050a800009202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f4041"
      "424344454647",
      "450000284242000a3d1126eb0a0100050a80000948494a4b4c4d4e4f505152535455565758595a5b",
  };
  Ipv4FragPlan p;
  ASSERT_TRUE(ipv4_frag_plan(in.data(), uint32_t(in.size()), 60, &p));
  ASSERT_EQ(p.count, 3);
  for (uint16_t i = 0; i < p.count; ++i) {
    const std::vector<uint8_t> f = piece(in, p, i);
    EXPECT_LE(f.size(), 60u);
    EXPECT_EQ(f, unhex(want[i])) << "fragment " << i;
  }
}

// in = IP(src="10.1.0.5", dst="10.128.0.9", id=0x4243, ttl=61, options=[IPOption_RR(routers=["1.2.3.4"]),
//      IPOption_LSRR(routers=["5.6.7.8"])]) / UDP(sport=1111, dport=2222) / Raw(bytes(i & 0xff for i in range(92)))
// For an MTU of 76: the first fragment keeps both options (36-byte header, 40 bytes of data), the later ones only
// LSRR, whose copied flag is set (28-byte header, 48 bytes): scapy's IP(..., flags, frag, proto=17,
// options=[...]) / Raw(slice) for each.
TEST(Fragment, LaterFragmentsCarryOnlyCopiedOptions) {
  const std::vector<uint8_t> in = unhex(
      "49000088424300003d11fdf30a0100050a80000907070401020304830704050607080000045708ae0064bdc1000102030405060708090a"
      "0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f4041"
      "42434445464748494a4b4c4d4e4f505152535455565758595a5b");
  const char* want[] = {
      "4900004c424320003d11de2f0a0100050a80000907070401020304830704050607080000045708ae0064bdc1000102030405060708090a"
      "0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
      "4700004c424320053d116fb70a0100050a8000098307040506070800202122232425262728292a2b2c2d2e2f303132333435363738393a"
      "3b3c3d3e3f404142434445464748494a4b4c4d4e4f",
      "470000284243000b3d118fd50a0100050a8000098307040506070800505152535455565758595a5b",
  };
  Ipv4FragPlan p;
  ASSERT_TRUE(ipv4_frag_plan(in.data(), uint32_t(in.size()), 76, &p));
  ASSERT_EQ(p.count, 3);
  EXPECT_EQ(p.hl_first, 36);
  EXPECT_EQ(p.hl_rest, 28);
  for (uint16_t i = 0; i < p.count; ++i) EXPECT_EQ(piece(in, p, i), unhex(want[i])) << "fragment " << i;
}

TEST(Fragment, RefusesWhatMustNotBeFragmented) {
  std::vector<uint8_t> in(1000, 0);
  in[0] = 0x45;
  store_be16(in.data() + 2, 1000);
  Ipv4FragPlan p;
  ASSERT_TRUE(ipv4_frag_plan(in.data(), 1000, 576, &p));
  EXPECT_EQ(p.count, 2);
  store_be16(in.data() + 6, kIpv4Df);
  EXPECT_FALSE(ipv4_frag_plan(in.data(), 1000, 576, &p)) << "DF";
  store_be16(in.data() + 6, 0);
  EXPECT_FALSE(ipv4_frag_plan(in.data(), 1000, 27, &p)) << "no room for 8 bytes of data";
  EXPECT_FALSE(ipv4_frag_plan(in.data(), 999, 576, &p)) << "total length past the data";
  store_be16(in.data() + 6, 0x1fff);  // offset 65528 + 980 bytes runs past 65535
  EXPECT_FALSE(ipv4_frag_plan(in.data(), 1000, 576, &p));
  store_be16(in.data() + 6, 0);
  in[0] = 0x46;
  in[20] = 0x44, in[21] = 9;  // an option longer than the header
  EXPECT_FALSE(ipv4_frag_plan(in.data(), 1000, 576, &p));
  in[0] = 0x65;
  EXPECT_FALSE(ipv4_frag_plan(in.data(), 1000, 576, &p)) << "not IPv4";
}

TEST(Fragment, AFragmentFragmentedAgainKeepsItsOffsetAndMore) {
  // A middle fragment (offset 100 units, MF): every piece keeps MF, offsets continue from 100.
  std::vector<uint8_t> in(20 + 1000, 0x5a);
  in[0] = 0x45;
  store_be16(in.data() + 2, 1020);
  store_be16(in.data() + 6, kIpv4Mf | 100);
  Ipv4FragPlan p;
  ASSERT_TRUE(ipv4_frag_plan(in.data(), uint32_t(in.size()), 500, &p));
  ASSERT_EQ(p.count, 3);  // 480 + 480 + 40
  uint32_t covered = 0;
  for (uint16_t i = 0; i < p.count; ++i) {
    uint8_t h[60];
    ASSERT_EQ(ipv4_frag_header(in.data(), p, i, h), 20);
    const uint16_t fo = load_be16(h + 6);
    EXPECT_TRUE(fo & kIpv4Mf) << i;
    EXPECT_EQ(uint32_t(fo & kIpv4OffMask), 100 + covered / 8) << i;
    EXPECT_EQ(ipv4_header_checksum(h, 20), 0);
    EXPECT_LE(load_be16(h + 2), 500);
    covered += ipv4_frag_len(p, i);
  }
  EXPECT_EQ(covered, 1000u);
}

}  // namespace
}  // namespace mg::net::test
