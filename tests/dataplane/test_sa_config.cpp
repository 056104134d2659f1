// The SA builders of lib/dataplane (tunnel of the gateway model -> esp::SaConfig): outer addresses of the
// tunnel's IP version in the right direction, the key copied, TTL/DF/DSCP, the tunnel index as user_id.
// Moved from tests/config/test_config.cpp with the builders (lib/config no longer knows lib/esp); the gateway
// files come from the lib/config tests' fixture.
#include <gtest/gtest.h>

#include "config_fixture.h"
#include "dataplane/sa_config.h"

namespace mg::config {
namespace {

using namespace mg::config::test;
using mg::dp::inbound_sa;
using mg::dp::outbound_sa;

TEST_F(Config, TunnelIpVersion) {
  std::string s = edit(gateway(), "ipv4 = \"198.51.100.1\"", "ipv6 = \"2001:db8:100::1\"");
  s = edit(s, "[[tunnel]]\ninstance = \"gw-a\"", "[[tunnel]] #@\ninstance = \"gw-a\"");
  bad_gw(s, "tunnel-ip-version", "no IP version in common");
  // IPv6 on both sides: a v6 tunnel.
  s = edit(gateway(), "ipv4 = \"198.51.100.1\"", "ipv6 = \"2001:db8:100::1\"");
  s = edit(s, "ipv4 = \"192.0.2.1\"", "ipv6 = \"2001:db8:1::1\"");
  s = edit(s, "ipv4 = \"192.0.2.2\"", "ipv6 = \"2001:db8:1::2\"");
  const Gateway g = good_gw(s);
  EXPECT_EQ(tunnel_ip_version(g, g.tunnels[0]), 6);
  const esp::SaConfig o = outbound_sa(g, g.tunnels[0]);
  EXPECT_EQ(o.outer_src, g.instances[0].ipv6);
  EXPECT_EQ(o.outer_dst, g.devices[0].ipv6);
}

TEST_F(Config, SaBuilders) {
  std::string s = edit(gateway(), "instance = \"gw-b\"\n", "instance = \"gw-b\"\nttl = 33\ndf = \"clear\"\ndscp = 10\n");
  s = edit(s, "key = \"" + std::string(kK3) + "\"", "key = \"" + std::string(kK3) + "\"\nesn = true");
  const Gateway g = good_gw(s);
  const Tunnel& t = g.tunnels[1];
  const esp::SaConfig o = outbound_sa(g, t);
  EXPECT_EQ(o.spi, 0x1002u);
  EXPECT_EQ(o.outer_src, g.instances[1].ipv4);
  EXPECT_EQ(o.outer_dst, g.devices[0].ipv4);
  EXPECT_EQ(o.keymat, t.out.keymat.bytes());
  EXPECT_TRUE(o.esn);
  EXPECT_EQ(o.ttl, 33);
  EXPECT_EQ(o.df, esp::DfPolicy::kClear);
  EXPECT_EQ(o.dscp_policy, esp::DscpPolicy::kSet);
  EXPECT_EQ(o.tos, 40);
  EXPECT_EQ(o.user_id, 1u);
  const esp::SaConfig i = inbound_sa(g, t);
  EXPECT_EQ(i.spi, 0x2002u);
  EXPECT_EQ(i.outer_src, g.devices[0].ipv4);  // device -> instance
  EXPECT_EQ(i.outer_dst, g.instances[1].ipv4);
  EXPECT_EQ(i.keymat, t.in.keymat.bytes());
  EXPECT_EQ(i.replay_window, 1024u);
  EXPECT_FALSE(i.esn);
}

}  // namespace
}  // namespace mg::config
