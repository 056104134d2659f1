// lib/config: [mtu], the tunnel keys `mtu` and `mss_clamp`, [inside] ipv4/ipv6, and the figures derived from them
// (tunnel_mtu, min_tunnel_mtu, icmp_source), each rule with the line it names.
#include "config_fixture.h"

namespace mg::config {
namespace {

using namespace mg::config::test;

const std::string kTunnelA = "[[tunnel]]\ninstance = \"gw-a\"\n";

TEST_F(Config, MtuDefaults) {
  const Gateway g = good_gw(gateway());
  EXPECT_EQ(g.mtu.mss_clamp, -1) << "auto";
  EXPECT_EQ(g.mtu.icmp_rate, 100u);
  EXPECT_EQ(g.mtu.icmp_burst, 10u);
  EXPECT_EQ(g.tunnels[0].mtu, 0u) << "0 = the port's";
  EXPECT_EQ(g.tunnels[0].mss_clamp, -1);
  EXPECT_EQ(g.inside_ipv4.version, 0);
  // Over IPv4 with a 1500-byte port: 1500 - 20 - 8 - 8 - 16, less the trailer, aligned to 4.
  const TunnelMtu m = tunnel_mtu(g, g.tunnels[0], kDefaultPortMtu);
  EXPECT_EQ(m.link, 1500u);
  EXPECT_EQ(m.path, 1446u);
  EXPECT_EQ(m.mss4, 1406);
  EXPECT_EQ(m.mss6, 1386);
}

TEST_F(Config, MtuKeysRead) {
  const std::string text = edit(gateway(), kTunnelA, kTunnelA + "mtu = 1400\nmss_clamp = 1300\n") +
                           "[mtu]\nmss_clamp = false\nicmp_rate = 5\nicmp_burst = 2\n";
  const Gateway g = good_gw(edit(text, "port = \"inside\"\n",
                                 "port = \"inside\"\nipv4 = \"10.0.0.1\"\nipv6 = \"2001:db8:a::1\"\n"));
  EXPECT_EQ(g.mtu.mss_clamp, 0);
  EXPECT_EQ(g.mtu.icmp_rate, 5u);
  EXPECT_EQ(g.mtu.icmp_burst, 2u);
  EXPECT_EQ(g.tunnels[0].mtu, 1400u);
  EXPECT_EQ(g.tunnels[0].mss_clamp, 1300) << "the tunnel's own value";
  EXPECT_EQ(g.tunnels[1].mss_clamp, 0) << "[mtu]'s: off";
  const TunnelMtu a = tunnel_mtu(g, g.tunnels[0], 9000);
  EXPECT_EQ(a.link, 1400u) << "the tunnel's mtu wins over the port's";
  EXPECT_EQ(a.path, 1346u);
  EXPECT_EQ(a.mss4, 1300) << "below the derived 1306";
  EXPECT_EQ(a.mss6, 1286) << "never above what the path allows (1346 - 60)";
  const TunnelMtu b = tunnel_mtu(g, g.tunnels[1], 1500);
  EXPECT_EQ(b.mss4, 0);
  EXPECT_EQ(b.mss6, 0);
  EXPECT_EQ(icmp_source(g, g.tunnels[0], 4).version, 4);
  EXPECT_EQ(icmp_source(g, g.tunnels[0], 4).bytes[3], 1);
  EXPECT_EQ(icmp_source(g, g.tunnels[0], 6).bytes[5], 0x0a);

  // "auto" and true are the default; each tunnel falls back to [mtu].
  const Gateway h = good_gw(gateway() + "[mtu]\nmss_clamp = 1360\n");
  EXPECT_EQ(h.tunnels[0].mss_clamp, 1360);
  EXPECT_EQ(good_gw(edit(gateway(), kTunnelA, kTunnelA + "mss_clamp = \"auto\"\n") + "[mtu]\nmss_clamp = 0\n")
                .tunnels[0].mss_clamp,
            -1);
  EXPECT_EQ(good_gw(gateway() + "[mtu]\nmss_clamp = true\n").mtu.mss_clamp, -1);
}

TEST_F(Config, IcmpSourceFallsBackToTheProbeSourceThenTheInstance) {
  const Gateway g = good_gw(gateway());
  const net::IpAddr a = icmp_source(g, g.tunnels[0], 4);
  EXPECT_EQ(a, g.instances[0].ipv4) << "no [inside] address, no liveness: the instance's";
  EXPECT_EQ(icmp_source(g, g.tunnels[0], 6).version, 0) << "no IPv6 address anywhere: none";
  const Gateway h = good_gw(edit(gateway(), "[tunnel.out]\nspi = 0x1001",
                                 "[tunnel.liveness]\nprobe_source = \"10.9.9.9\"\n[tunnel.out]\nspi = 0x1001"));
  EXPECT_EQ(icmp_source(h, h.tunnels[0], 4).bytes[1], 9) << "the tunnel's inner address";
}

TEST_F(Config, TunnelMtuRange) {
  bad_gw(edit(gateway(), kTunnelA, kTunnelA + "mtu = 575 #@\n"), "tunnel-mtu", "576..9216");
  bad_gw(edit(gateway(), kTunnelA, kTunnelA + "mtu = 9217 #@\n"), "tunnel-mtu", "576..9216");
  // In range, but a 1280-byte IPv6 packet would not fit once encrypted over IPv4 (1336 does).
  bad_gw(edit(gateway(), kTunnelA, kTunnelA + "mtu = 1335 #@\n"), "tunnel-mtu", "below 1336");
  good_gw(edit(gateway(), kTunnelA, kTunnelA + "mtu = 1336\n"));
  EXPECT_EQ(min_tunnel_mtu(false), 1336u);
  EXPECT_EQ(min_tunnel_mtu(true), 1356u);
}

TEST_F(Config, MssClamp) {
  for (const char* bad : {"535", "9177", "-1", "\"on\"", "1.5"})
    bad_gw(edit(gateway(), kTunnelA, kTunnelA + "mss_clamp = " + bad + " #@\n"), "mss-clamp", "536..9176");
  bad_gw(gateway() + "[mtu]\nmss_clamp = \"yes\" #@\n", "mss-clamp", "[mtu] `mss_clamp`");
}

TEST_F(Config, IcmpRate) {
  bad_gw(gateway() + "[mtu]\nicmp_rate = -1 #@\n", "icmp-rate", "icmp_rate");
  bad_gw(gateway() + "[mtu]\nicmp_burst = 0 #@\n", "icmp-rate", "icmp_burst");
  bad_gw(gateway() + "[mtu]\nicmp_limit = 3 #@\n", "unknown-key", "icmp_limit");
  EXPECT_EQ(good_gw(gateway() + "[mtu]\nicmp_rate = 0\n").mtu.icmp_rate, 0u) << "0: never sent";
}

TEST_F(Config, InsideAddress) {
  const std::string at = "port = \"inside\"\n";
  bad_gw(edit(gateway(), at, at + "ipv4 = \"2001:db8::1\" #@\n"), "inside-address", "not an IPv4 address");
  bad_gw(edit(gateway(), at, at + "ipv6 = \"10.0.0.1\" #@\n"), "inside-address", "not an IPv6 address");
  bad_gw(edit(gateway(), at, at + "ipv4 = \"224.0.0.1\" #@\n"), "inside-address", "source of ICMP errors");
}

TEST_F(Config, TunnelMtuAbovePortMtuIsACrossCheckError) {
  const std::string text = edit(gateway(), kTunnelA, kTunnelA + "mtu = 1500\n");
  const Gateway g = good_gw(text);
  std::vector<Error> errs;
  auto p = pmd(edit(base_pmd(), "devargs = \"net_null1\"\n", "devargs = \"net_null1\"\nmtu = 1400\n"), &errs);
  ASSERT_TRUE(p.has_value());
  EXPECT_FALSE(cross_check(g, *p, &errs));
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_EQ(errs[0].rule, "tunnel-mtu");
  EXPECT_NE(errs[0].message.find("exceeds the MTU of its port \"out-a\" (1400"), std::string::npos) << errs[0].message;
  // The same tunnel on a port that leaves the MTU to the device: nothing to check here (the data plane does).
  errs.clear();
  auto q = pmd(base_pmd(), &errs);
  EXPECT_TRUE(cross_check(g, *q, &errs));
}

TEST_F(Config, DescribeShowsEachTunnelsMtu) {
  const Gateway g = good_gw(edit(gateway(), kTunnelA, kTunnelA + "mtu = 1400\n"));
  std::vector<Error> errs;
  auto p = pmd(edit(base_pmd(), "devargs = \"net_null2\"\n", "devargs = \"net_null2\"\nmtu = 9000\n"), &errs);
  ASSERT_TRUE(p.has_value());
  const std::string d = describe(g, &*p);
  EXPECT_NE(d.find("mtu 1400 (tunnel)  inner path MTU 1346  mss clamp v4 1306 v6 1286  icmp source 192.0.2.1"),
            std::string::npos)
      << d;
  EXPECT_NE(d.find("mtu 9000 (port out-b)  inner path MTU 8946"), std::string::npos) << d;
  EXPECT_NE(describe(g).find("mtu 1500 (port out-b, device default assumed)  inner path MTU 1446"), std::string::npos);
}

}  // namespace
}  // namespace mg::config
