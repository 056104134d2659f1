// lib/route: prefixes as text, the table's merging and set numbering, and longest prefix match through rte_lpm /
// rte_lpm6 checked against a linear scan of the same routes (an oracle that shares no code with rte_lpm).
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "eal_env.h"
#include "route/route.h"

namespace r = mg::route;

namespace {

// "ADDRESS/LENGTH" through inet_pton (the test's own parser: lib/config owns the product's).
r::Route route(const std::string& prefix, std::initializer_list<int> tunnels) {
  r::Route x;
  const size_t slash = prefix.find('/');
  const std::string addr = prefix.substr(0, slash);
  x.family = addr.find(':') == std::string::npos ? 4 : 6;
  EXPECT_EQ(inet_pton(x.family == 4 ? AF_INET : AF_INET6, addr.c_str(), x.addr), 1) << prefix;
  x.len = uint8_t(std::stoi(prefix.substr(slash + 1)));
  for (int t : tunnels) x.tunnels.set(size_t(t));
  return x;
}

uint32_t v4(const char* s) {
  in_addr a{};
  EXPECT_EQ(inet_pton(AF_INET, s, &a), 1) << s;
  return ntohl(a.s_addr);
}

std::array<uint8_t, 16> v6(const char* s) {
  std::array<uint8_t, 16> a{};
  EXPECT_EQ(inet_pton(AF_INET6, s, a.data()), 1) << s;
  return a;
}

class RouteTest : public ::testing::Test {
 protected:
  void SetUp() override { mg::test::pool(); }  // the EAL: rte_lpm lives in its memory
};

// The longest matching route by a plain scan: its merged set, or none.
bool covers(const r::Route& rt, int family, const uint8_t* a) {
  if (rt.family != family) return false;
  for (uint32_t b = 0; b < rt.len; ++b) {
    const uint8_t m = uint8_t(0x80u >> (b % 8));
    if ((rt.addr[b / 8] & m) != (a[b / 8] & m)) return false;
  }
  return true;
}
const r::TunnelSet* oracle(const r::Table& t, int family, const uint8_t* a) {
  const r::Route* best = nullptr;
  for (const r::Route& rt : t.routes())
    if (covers(rt, family, a) && (best == nullptr || rt.len > best->len)) best = &rt;
  return best ? &best->tunnels : nullptr;
}

}  // namespace

TEST(RoutePrefix, Formats) {
  EXPECT_EQ(r::format_prefix(route("10.1.0.0/16", {0})), "10.1.0.0/16");
  EXPECT_EQ(r::format_prefix(route("2001:db8::/32", {0})), "2001:db8::/32");
  EXPECT_EQ(r::format_prefix(route("0.0.0.0/0", {0})), "0.0.0.0/0");
}

TEST_F(RouteTest, LongestMatchAndMergedSets) {
  std::string err;
  const auto t = r::Table::build({route("10.0.0.0/8", {0, 1, 2, 3}), route("10.1.0.0/16", {0, 2}),
                                  route("10.1.2.0/24", {1}), route("10.1.2.0/24", {3}),  // merged: {1, 3}
                                  route("2001:db8::/32", {0, 1, 2, 3}), route("2001:db8:b::/48", {2, 3})},
                                 4, &err);
  ASSERT_NE(t, nullptr) << err;
  EXPECT_EQ(t->routes4(), 3u);
  EXPECT_EQ(t->routes6(), 2u);
  EXPECT_EQ(t->sets(), 4u);  // {0-3}, {0,2}, {1,3}, {2,3}
  auto set = [&](r::SetId s) { return s == r::kNoRoute ? std::string("none") : t->set(s).to_string().substr(252); };
  EXPECT_EQ(set(t->lookup4(v4("10.9.9.9"))), "1111");
  EXPECT_EQ(set(t->lookup4(v4("10.1.9.9"))), "0101");
  EXPECT_EQ(set(t->lookup4(v4("10.1.2.200"))), "1010");
  EXPECT_EQ(set(t->lookup4(v4("11.0.0.1"))), "none");
  EXPECT_EQ(set(t->lookup6(v6("2001:db8:a::1").data())), "1111");
  EXPECT_EQ(set(t->lookup6(v6("2001:db8:b::1").data())), "1100");
  EXPECT_EQ(set(t->lookup6(v6("2001:db9::1").data())), "none");
}

TEST_F(RouteTest, RefusesBadRoutes) {
  std::string err;
  r::Route host = route("10.0.0.0/8", {0});
  host.addr[3] = 1;  // host bits
  EXPECT_EQ(r::Table::build({host}, 4, &err), nullptr);
  EXPECT_NE(err.find("host bits"), std::string::npos) << err;
  r::Route longv4 = route("10.0.0.0/8", {0});
  longv4.len = 33;
  EXPECT_EQ(r::Table::build({longv4}, 4, &err), nullptr);
  EXPECT_NE(err.find("length"), std::string::npos) << err;
  EXPECT_EQ(r::Table::build({route("10.0.0.0/8", {})}, 4, &err), nullptr);
  EXPECT_NE(err.find("no tunnel"), std::string::npos) << err;
  EXPECT_EQ(r::Table::build({route("10.0.0.0/8", {5})}, 4, &err), nullptr);
  EXPECT_NE(err.find("tunnel 5 does not exist"), std::string::npos) << err;
  std::vector<r::Route> many;
  for (int i = 0; i < int(r::kMaxSets) + 1; ++i) many.push_back(route("10." + std::to_string(i) + ".0.0/16", {i}));
  EXPECT_EQ(r::Table::build(many, 256, &err), nullptr);
  EXPECT_NE(err.find("distinct sets"), std::string::npos) << err;
  many.pop_back();
  EXPECT_NE(r::Table::build(many, 256, &err), nullptr) << err;
}

TEST_F(RouteTest, EmptyTableRoutesNothing) {
  std::string err;
  const auto t = r::Table::build({}, 4, &err);
  ASSERT_NE(t, nullptr) << err;
  EXPECT_EQ(t->lookup4(v4("10.0.0.1")), r::kNoRoute);
  EXPECT_EQ(t->lookup6(v6("::1").data()), r::kNoRoute);
}

// 10 k random routes of every length (many longer than /24: rte_lpm's tbl8 groups) and 2 k IPv6 ones: every burst
// lookup equals the scan's answer, for addresses inside routes and anywhere.
TEST_F(RouteTest, MatchesALinearScanAtTenThousandRoutes) {
  std::mt19937 rng(7);
  std::vector<r::Route> routes;
  for (int i = 0; i < 10000; ++i) {
    r::Route x;
    x.family = 4;
    x.len = uint8_t(8 + rng() % 25);
    const uint32_t a = (rng() & (x.len ? ~0u << (32 - x.len) : 0)) | 0x0a000000u * (i % 2);
    const uint32_t net = a & (x.len ? ~0u << (32 - x.len) : 0);
    const uint32_t be = htonl(net);
    std::memcpy(x.addr, &be, 4);
    x.tunnels.set(rng() % 4);
    routes.push_back(x);
  }
  for (int i = 0; i < 2000; ++i) {
    r::Route x;
    x.family = 6;
    x.len = uint8_t(16 + rng() % 113);
    x.addr[0] = 0x20;
    x.addr[1] = 0x01;
    for (int b = 2; b < 16; ++b) x.addr[b] = uint8_t(rng() % 4);  // few values: many nested prefixes
    for (uint32_t b = x.len; b < 128; ++b) x.addr[b / 8] &= uint8_t(~(0x80u >> (b % 8)));
    x.tunnels.set(rng() % 4);
    routes.push_back(x);
  }
  std::string err;
  const auto t = r::Table::build(routes, 4, &err);
  ASSERT_NE(t, nullptr) << err;
  EXPECT_LE(t->sets(), 15u);
  uint32_t hits = 0;
  for (int round = 0; round < 200; ++round) {
    uint32_t dst[32];
    uint8_t dst6[32][16];
    for (int i = 0; i < 32; ++i) {
      const r::Route& near = t->routes()[rng() % t->routes().size()];
      uint8_t a[16];
      std::memcpy(a, near.addr, 16);
      if (near.family == 4) a[3] ^= uint8_t(rng() % 2 ? rng() : 0);  // inside the route or a neighbour
      uint32_t be;
      std::memcpy(&be, a, 4);
      dst[i] = i % 4 == 0 ? uint32_t(rng()) : ntohl(be);
      std::memcpy(dst6[i], near.family == 6 ? near.addr : a, 16);
      dst6[i][15] ^= uint8_t(rng() % 2);
    }
    r::SetId got[32], got6[32];
    t->lookup4_burst(dst, 32, got);
    t->lookup6_burst(dst6, 32, got6);
    for (int i = 0; i < 32; ++i) {
      const uint32_t be = htonl(dst[i]);
      const r::TunnelSet* want = oracle(*t, 4, reinterpret_cast<const uint8_t*>(&be));
      ASSERT_EQ(got[i] == r::kNoRoute, want == nullptr) << i;
      if (want) {
        ASSERT_EQ(t->set(got[i]), *want);
      }
      const r::TunnelSet* want6 = oracle(*t, 6, dst6[i]);
      ASSERT_EQ(got6[i] == r::kNoRoute, want6 == nullptr) << i;
      if (want6) {
        ASSERT_EQ(t->set(got6[i]), *want6);
      }
      hits += want != nullptr;
    }
  }
  EXPECT_GT(hits, 3000u);  // the addresses mostly fall inside routes: the comparison is not all misses
}
